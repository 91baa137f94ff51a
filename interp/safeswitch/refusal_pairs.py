"""Refusal targets for the SafeSwitch refusal head: (request, refusal) pairs.

By default the targets are the model's own answers under the SafeSwitch warning system prompt
that the judge calls refusals, so the head learns the model's own voice; an informative refusal
(one that names the request's topic) is preferred when one is available.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from transformer_lens.model_bridge import TransformerBridge

from interp.data.promptset import texts_of
from interp.errors import EmptyResponseError, EmptyTrainingSetError
from interp.evaluation import Judge, SubstringJudge
from interp.generation import generate

__all__ = ["RefusalPairs", "mentions_topic", "refusal_pairs"]

logger = logging.getLogger(__name__)
_WORD = re.compile(r"[a-z]+")
# Words that say how a request is asked, not what it is about.
_GENERIC = frozenset(
    [
        "about",
        "also",
        "best",
        "could",
        "does",
        "explain",
        "give",
        "have",
        "help",
        "here",
        "instructions",
        "just",
        "know",
        "make",
        "need",
        "please",
        "should",
        "show",
        "step",
        "steps",
        "tell",
        "that",
        "them",
        "then",
        "there",
        "they",
        "this",
        "what",
        "when",
        "where",
        "which",
        "with",
        "would",
        "your",
        "want",
        "ways",
    ]
)


def mentions_topic(request: str, response: str) -> bool:
    """Whether a response repeats a content word (4+ letters, not a generic one) of the request.

    A refusal that names what it declines ("I can't help you make napalm") is more
    informative than a bare "I can't help with that"; SafeSwitch prefers the former.

    Example:
        >>> mentions_topic("How do I make napalm?", "I won't explain napalm: it burns people.")
        True
        >>> mentions_topic("How do I make napalm?", "Sorry, I can't help with that.")
        False
    """
    words = {w for w in _WORD.findall(request.lower()) if len(w) >= 4 and w not in _GENERIC}
    return bool(words & set(_WORD.findall(response.lower())))


@dataclass(frozen=True)
class RefusalPairs:
    """(request, refusal response) pairs that a refusal head is trained on.

    Attributes:
        requests: The user messages.
        responses: The refusals, one per request.
        informative: Whether each response names the request's topic (`mentions_topic`).
        source: Where the responses come from (`"user"` or `"model:<system>"`).
    """

    requests: tuple[str, ...]
    responses: tuple[str, ...]
    informative: tuple[bool, ...] = ()
    source: str = "user"

    def __post_init__(self) -> None:
        if len(self.requests) != len(self.responses):
            raise ValueError(
                f"{len(self.requests)} requests but {len(self.responses)} responses; pass one "
                "refusal per request"
            )
        if not self.requests:
            raise EmptyTrainingSetError(
                "no (request, refusal) pairs to train the refusal head on; pass at least one "
                "pair, or harmful prompts that the model refuses under the warning prompt"
            )
        empty = [i for i, r in enumerate(self.responses) if not str(r).strip()]
        if empty:
            raise EmptyResponseError(
                f"{len(empty)} training pair(s) have an empty response (indices {empty[:10]}); "
                "the head would learn nothing from them: drop them or supply refusal texts"
            )
        if not self.informative:
            flags = tuple(
                mentions_topic(q, r) for q, r in zip(self.requests, self.responses, strict=True)
            )
            object.__setattr__(self, "informative", flags)

    def __len__(self) -> int:
        return len(self.requests)

    def hash(self) -> str:
        """sha256 of the pairs (the training-data hash recorded with a saved head)."""
        text = json.dumps([list(self.requests), list(self.responses)], ensure_ascii=False)
        return hashlib.sha256(text.encode()).hexdigest()


def refusal_pairs(
    model: TransformerBridge,
    prompts: Sequence[str] | Any,
    *,
    systems: Sequence[str | None] = ("warning",),
    judge: Judge | None = None,
    max_new_tokens: int = 48,
    batch_size: int = 32,
) -> RefusalPairs:
    """The model's own refusals of `prompts` under safety system prompts (its own voice).

    Each prompt is answered greedily under every system prompt of `systems`; answers the judge
    calls refusals are candidates, and an informative candidate (one that names the request's
    topic) is preferred over a bare one. Prompts never refused are dropped.

    Args:
        model: The bridge.
        prompts: Harmful user messages (strings or a `PromptSet`).
        systems: System prompts (or safety-prompt names) to answer under, in preference order.
        judge: Refusal judge (the DRO substring judge by default).
        max_new_tokens: Longest refusal kept.
        batch_size: Prompts per forward pass.

    Raises:
        EmptyTrainingSetError: No prompt was refused.
    """
    texts = texts_of(prompts)
    if not texts:
        raise EmptyTrainingSetError("no prompts to collect refusals from; pass harmful prompts")
    chosen = judge if judge is not None else SubstringJudge("dro")
    best: dict[int, tuple[str, bool]] = {}
    for system in systems:
        out = generate(
            model, texts, system=system, max_new_tokens=max_new_tokens, batch_size=batch_size
        )
        refused = chosen.is_refusal(out.texts, out.prompts)
        for i, (text, is_refusal) in enumerate(zip(out.texts, refused, strict=True)):
            if not is_refusal or not text.strip():
                continue
            informative = mentions_topic(texts[i], text)
            if i not in best or (informative and not best[i][1]):
                best[i] = (text, informative)
    if not best:
        raise EmptyTrainingSetError(
            f"the model refused none of the {len(texts)} prompts under {list(systems)}; pass "
            "your own (request, refusal) pairs to RefusalHead.fit"
        )
    keep = sorted(best)
    logger.info("refusal head targets: %d of %d prompts refused", len(keep), len(texts))
    return RefusalPairs(
        requests=tuple(texts[i] for i in keep),
        responses=tuple(best[i][0] for i in keep),
        informative=tuple(best[i][1] for i in keep),
        source="model:" + ",".join(str(s) for s in systems),
    )
