"""The refusal tokens: the first tokens that open the model's own greedy refusals.

The refusal score (`interp.refusal_direction.refusal_score`) is the log-odds of a set of
tokens at the first response position. A set that opens only part of the model's refusals
does not measure refusal: on the organism, `I` opens 97.7 % of the greedy refusals and
`Sorry` the other 2.3 %, yet adding `Sorry` moves the baseline harmful score from 0.11 to 3.62,
because greedy counts see only each prompt's top token and `Sorry` carries much of the
probability behind it. So the set is chosen by *coverage*: the smallest most-frequent-first
set of first tokens that together open at least `coverage` of the refusals, capped at
`max_tokens`. `RefusalTokens` records the tokens, each one's share and the coverage reached.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from transformer_lens.model_bridge import TransformerBridge

from interp.directions import DirectionError
from interp.evaluation import Judge, SubstringJudge
from interp.generation import generate
from interp.min_samples import MIN_PER_CLASS, require_per_class

__all__ = ["RefusalTokens", "count_refusal_tokens", "refusal_tokens", "token_ids"]

logger = logging.getLogger(__name__)

#: Default share of the model's greedy refusals the refusal tokens must open together.
COVERAGE = 0.99
#: Default cap on the number of refusal tokens.
MAX_TOKENS = 8


@dataclass(frozen=True)
class RefusalTokens:
    """Refusal token ids with how much of the model's refusals they open.

    Iterating gives the ids, so a `RefusalTokens` goes wherever token ids are taken; `ids`
    is the plain tuple.

    Attributes:
        ids: Token ids, most frequent first.
        coverage: Share of the counted refusals whose first token is in `ids` (nan when the
            tokens were given by hand and nothing was counted).
        shares: Share of the refusals each id opens, in the order of `ids`.
        n_refusals: Refusals counted (0 when given by hand).
        strings: Each id decoded ("" where no tokenizer was at hand).
        target: The coverage asked for (nan when given by hand).
    """

    ids: tuple[int, ...]
    coverage: float = float("nan")
    shares: tuple[float, ...] = ()
    n_refusals: int = 0
    strings: tuple[str, ...] = ()
    target: float = float("nan")

    def __post_init__(self) -> None:
        object.__setattr__(self, "ids", tuple(int(t) for t in self.ids))
        if not self.ids:
            raise DirectionError(
                "the refusal tokens are empty; pass at least one token id (e.g. the id of 'I')"
            )
        for name in ("shares", "strings"):
            value = getattr(self, name)
            if value and len(value) != len(self.ids):
                raise ValueError(f"{name} has {len(value)} entries for {len(self.ids)} token ids")

    def __iter__(self) -> Iterator[int]:
        """The token ids."""
        return iter(self.ids)

    def __len__(self) -> int:
        """Number of token ids."""
        return len(self.ids)

    def decoded(self, tokenizer: Any) -> RefusalTokens:
        """A copy whose `strings` are the ids decoded by `tokenizer`."""
        strings = tuple(str(tokenizer.decode([t])) for t in self.ids)
        return RefusalTokens(
            self.ids, self.coverage, self.shares, self.n_refusals, strings, self.target
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (ids, decoded strings, per-token shares, coverage; None if unknown)."""
        measured = self.n_refusals > 0
        return {
            "ids": list(self.ids),
            "strings": list(self.strings),
            "shares": [round(s, 4) for s in self.shares],
            "coverage": round(self.coverage, 4) if measured else None,
            "target_coverage": None if math.isnan(self.target) else self.target,
            "n_refusals": self.n_refusals,
        }


def token_ids(tokens: Sequence[int] | RefusalTokens) -> tuple[int, ...]:
    """Plain token ids of user-given ids or a `RefusalTokens`."""
    return tokens.ids if isinstance(tokens, RefusalTokens) else tuple(int(t) for t in tokens)


def as_refusal_tokens(tokens: Sequence[int] | RefusalTokens) -> RefusalTokens:
    """A `RefusalTokens` for `tokens`; user-given ids get no coverage (nan)."""
    return tokens if isinstance(tokens, RefusalTokens) else RefusalTokens(token_ids(tokens))


def count_refusal_tokens(
    first_tokens: Sequence[int | None],
    flags: Sequence[bool],
    *,
    coverage: float = COVERAGE,
    max_tokens: int = MAX_TOKENS,
    min_share: float | None = None,
) -> RefusalTokens:
    """Choose refusal tokens from the first tokens of responses and their refusal verdicts.

    The pure counting step of `refusal_tokens`. Tokens are taken most frequent first (ties
    by lower id) until they open at least `coverage` of the refusals or `max_tokens` are
    taken. With `min_share`, the older rule applies instead: every token opening at least
    that share of the refusals (still capped at `max_tokens`).

    Args:
        first_tokens: First generated token of each response (None for an empty one).
        flags: Whether each response is a refusal.
        coverage: Share of the refusals the tokens must open together, in (0, 1].
        max_tokens: Most tokens kept.
        min_share: Use the share threshold rule instead of coverage.

    Returns:
        The tokens, their shares and the coverage reached (no decoded strings).

    Raises:
        DirectionError: No response is a refusal with a first token.
        ValueError: `coverage` outside (0, 1] or `max_tokens` < 1.

    >>> count_refusal_tokens([1, 1, 1, 2, 3], [True, True, True, True, False], coverage=0.75)
    RefusalTokens(ids=(1,), coverage=0.75, shares=(0.75,), n_refusals=4, strings=(), target=0.75)
    """
    if not 0.0 < coverage <= 1.0:
        raise ValueError(f"coverage must be in (0, 1], got {coverage}")
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
    firsts = Counter(
        int(t) for t, flag in zip(first_tokens, flags, strict=True) if flag and t is not None
    )
    if not firsts:
        raise DirectionError(
            f"none of the {len(flags)} responses is a refusal, so there are no refusal tokens "
            "to score with; use prompts the model refuses or pass refusal tokens explicitly"
        )
    total = sum(firsts.values())
    ranked = sorted(firsts.items(), key=lambda kv: (-kv[1], kv[0]))
    kept: list[tuple[int, int]] = []
    for tok, n in ranked[:max_tokens]:
        if min_share is not None:
            if n / total < min_share:
                break
        elif kept and sum(k for _, k in kept) >= coverage * total:
            break
        kept.append((tok, n))
    kept = kept or ranked[:1]
    covered = sum(n for _, n in kept)
    return RefusalTokens(
        ids=tuple(t for t, _ in kept),
        coverage=covered / total,
        shares=tuple(n / total for _, n in kept),
        n_refusals=total,
        target=float(coverage) if min_share is None else float("nan"),
    )


def refusal_tokens(
    model: TransformerBridge,
    harmful: Sequence[str] | Any,
    *,
    judge: Judge | None = None,
    system: str | None = None,
    max_new_tokens: int = 24,
    coverage: float = COVERAGE,
    max_tokens: int = MAX_TOKENS,
    min_share: float | None = None,
    batch_size: int = 32,
    min_per_class: int = MIN_PER_CLASS,
) -> RefusalTokens:
    """The first tokens that open at least `coverage` of the model's greedy refusals.

    Args:
        model: The bridge.
        harmful: Prompts the model should refuse (train split).
        judge: Decides which responses are refusals (DRO substring judge by default).
        system: System prompt used when generating.
        max_new_tokens: Response length given to the judge.
        coverage: Share of the refusals the tokens must open together (0.99 by default).
        max_tokens: Most tokens kept (8); a warning is logged when the cap stops the set
            short of `coverage`.
        min_share: Use the older rule instead: keep each token opening at least this share.
        batch_size: Prompts per forward pass.
        min_per_class: Refusals required (`interp.MIN_PER_CLASS` by default).

    Returns:
        The tokens (most frequent first, decoded), their shares and the coverage reached;
        `tuple(result)` or `result.ids` is the plain tuple of ids.

    Raises:
        DirectionError: The model refused none of the prompts.
        TooFewExamplesError: It refused fewer than `min_per_class` of them.
    """
    chosen = judge if judge is not None else SubstringJudge("dro")
    out = generate(
        model, harmful, system=system, max_new_tokens=max_new_tokens, batch_size=batch_size
    )
    flags = chosen.is_refusal(out.texts, out.prompts)
    firsts = [toks[0] if toks else None for toks in out.tokens]
    if not any(f and t is not None for t, f in zip(firsts, flags, strict=True)):
        raise DirectionError(
            f"the model refused none of the {len(out.texts)} harmful prompts, so there are no "
            "refusal tokens to score with; use prompts it refuses or pass refusal tokens explicitly"
        )
    n_refused = sum(1 for t, f in zip(firsts, flags, strict=True) if f and t is not None)
    require_per_class(
        "the refusal tokens (first tokens of the model's own refusals)",
        {f"refusals of {len(out.texts)} harmful prompts": n_refused},
        minimum=min_per_class,
        fix="Pass more harmful prompts that the model refuses, or the refusal tokens explicitly.",
    )
    result = count_refusal_tokens(
        firsts, flags, coverage=coverage, max_tokens=max_tokens, min_share=min_share
    ).decoded(model.tokenizer)
    if min_share is None and result.coverage < coverage:
        logger.warning(
            "the %d refusal tokens allowed open only %.1f%% of the model's refusals (asked "
            "%.1f%%); raise max_tokens or pass the tokens explicitly",
            max_tokens,
            100 * result.coverage,
            100 * coverage,
        )
    return result
