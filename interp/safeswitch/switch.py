"""SafeSwitch: prober-gated generation with the refusal head (docs/methods/safeswitch.md#the-switch-at-inference).

Each batch is decoded once with the model's own head through the shared decoding loop; a hook
reads `ln_final` at the last prompt token (stage 1: is the request harmful?) and after `n_decode`
greedy tokens (stage 2: will the model comply?). Rows whose two probabilities both reach their
thresholds are regenerated from the prompt with the refusal head in place of the LM head (again
through the shared loop, flagged rows batched together); every other row keeps its base answer,
token for token. A threshold of 1.0 disables its stage (never fires), 0.0 always fires.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformer_lens.model_bridge import TransformerBridge

from interp._artifact import Artifact, ModelIdentity, Saved
from interp.chat import ChatBatch, encode
from interp.data.promptset import texts_of
from interp.generation import (
    Completions,
    batched,
    cut_at_eos,
    eos_token_ids,
    greedy_decode,
    input_order,
)
from interp.safeswitch.prober import SafeSwitchProber, check_threshold
from interp.safeswitch.refusal_head import RefusalHead
from interp.sites import Site

__all__ = ["SafeSwitch", "SwitchResult", "calibrate_threshold", "fires"]


def fires(p: torch.Tensor, threshold: float) -> torch.Tensor:
    """Where a stage fires: `p >= threshold`, except that threshold 1.0 never fires.

    Example:
        >>> fires(torch.tensor([0.2, 0.5, 1.0]), 0.5).tolist()
        [False, True, True]
        >>> fires(torch.tensor([1.0]), 1.0).tolist()
        [False]
    """
    if threshold >= 1.0:
        return torch.zeros(p.shape, dtype=torch.bool)
    return p >= threshold


def _check_threshold(name: str, value: float) -> float:
    return check_threshold(
        name, value, "use 1.0 to disable the stage and 0.0 to make it always fire"
    )


def calibrate_threshold(
    p_harmful: Sequence[float] | torch.Tensor,
    stage2_fires: Sequence[bool] | torch.Tensor,
    harmful: Sequence[int],
    target_fpr: float,
) -> float:
    """The smallest stage-1 threshold whose flag rate on harmless rows is <= `target_fpr`.

    A false positive is a harmless row (label 0) that both stages flag; the stage-2 decision
    is taken as given. Lower thresholds catch more harmful requests, so the smallest admissible
    one is returned (a target is always met: 1.0 flags nothing).

    Raises:
        ValueError: There are no harmless rows to measure false positives on.

    Example:
        >>> calibrate_threshold([0.9, 0.4, 0.8, 0.3], [True] * 4, [1, 0, 1, 0], 0.0)
        0.4000000000000001
    """
    _check_threshold("target_fpr", target_fpr)
    p = torch.as_tensor(p_harmful, dtype=torch.float64)
    second = torch.as_tensor(stage2_fires, dtype=torch.bool)
    labels = torch.as_tensor(np.asarray(harmful, dtype=np.int64))
    negatives = p[(labels == 0) & second].sort(descending=True).values
    n_neg = int((labels == 0).sum())
    if n_neg == 0:
        raise ValueError("calibration needs harmless (label 0) validation prompts; none given")
    allowed = math.floor(target_fpr * n_neg + 1e-9)
    if len(negatives) <= allowed:
        return 0.0
    # Just above the (allowed + 1)-th highest harmless score: at most `allowed` rows reach it.
    return min(1.0, math.nextafter(float(negatives[allowed]), math.inf))


@dataclass(frozen=True)
class SwitchResult:
    """SafeSwitch answers and what the gate saw.

    Attributes:
        completions: The answers SafeSwitch returns (refusal head where flagged).
        base: The model's own greedy answers for every row (the LM head).
        p_harmful: Stage-1 probability per row.
        p_complies: Stage-2 probability per row.
        flagged: Whether the row was answered by the refusal head.
    """

    completions: Completions
    base: Completions
    p_harmful: tuple[float, ...]
    p_complies: tuple[float, ...]
    flagged: tuple[bool, ...]

    @property
    def flag_rate(self) -> float:
        """Fraction of rows answered by the refusal head (NaN for none)."""
        return sum(self.flagged) / len(self.flagged) if self.flagged else float("nan")


@dataclass(frozen=True, eq=False)
class SafeSwitch(Artifact):
    """Answer with the refusal head only where the prober predicts unsafe behaviour.

    `save(dir)` / `SafeSwitch.load(dir, model)` (`interp._artifact.Artifact`): the thresholds
    and system prompt in `safeswitch.json`, the parts in `prober/` and `refusal_head/`, each
    checked on load by its own `load`; `transferred_from` reports a deliberate transfer.

    Attributes:
        prober: A fitted `SafeSwitchProber` (its `n_decode` sets the stage-2 position).
        head: A fitted `RefusalHead`.
        stage1_threshold: Stage 1 fires when P(harmful) >= this (1.0: never).
        stage2_threshold: Stage 2 fires when P(complies) >= this (1.0: never).
        system: System prompt of every generation (SafeSwitch uses the helpful prompt).
    """

    prober: SafeSwitchProber
    head: RefusalHead
    stage1_threshold: float = 0.5
    stage2_threshold: float = 0.5
    system: str | None = "helpful"

    _KIND, _VERSION, _WHAT = "safeswitch", 1, "SafeSwitch"
    _TRANSFER = None

    def __post_init__(self) -> None:
        for name in ("stage1_threshold", "stage2_threshold"):
            object.__setattr__(self, name, _check_threshold(name, getattr(self, name)))
        self.prober._check()
        self.head._check()

    @property
    def transferred_from(self) -> dict[str, str] | None:
        """The model the parts were made on, when loaded onto another on purpose; else None."""
        return self.head.transferred_from_ or self.prober.transferred_from_

    def _identity(self) -> ModelIdentity:
        return self.head.model_

    def _payload(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        meta = {
            "stage1_threshold": self.stage1_threshold,
            "stage2_threshold": self.stage2_threshold,
            "system": self.system,
        }
        return meta, {}

    def _extra(self, folder: Path) -> None:
        self.prober.save(folder / "prober")
        self.head.save(folder / "refusal_head")

    @classmethod
    def _from_saved(cls, saved: Saved) -> SafeSwitch:
        options = {"allow_other_model": saved.allow_other_model, "verify": saved.verify}
        return cls(
            SafeSwitchProber.load(saved.path / "prober", saved.model, **options),
            RefusalHead.load(saved.path / "refusal_head", saved.model, **options),
            stage1_threshold=saved.meta["stage1_threshold"],
            stage2_threshold=saved.meta["stage2_threshold"],
            system=saved.meta["system"],
        )

    def _decode_base(
        self, model: TransformerBridge, batch: ChatBatch, max_new_tokens: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Base greedy tokens plus the stage-1 and stage-2 `ln_final` states of a batch."""
        n = int(self.prober.n_decode)
        states: list[torch.Tensor] = []

        def grab(x: torch.Tensor, hook: Any) -> None:  # noqa: ARG001 - TransformerLens signature
            states.append(x[:, -1].detach().to("cpu", torch.float32))

        hooks = [(Site("ln_final").hook_name, grab)]
        tokens = greedy_decode(model, batch, max_new_tokens=max_new_tokens, fwd_hooks=hooks)
        if len(states) <= n:
            # Every row ended (or the budget ran out) before the stage-2 token: decode on past
            # EOS exactly as `prober_features` did when the prober was trained.
            states.clear()
            greedy_decode(model, batch, max_new_tokens=n + 1, fwd_hooks=hooks, stop_at_eos=False)
        return tokens, states[0], states[n]

    def probabilities(
        self, model: TransformerBridge, prompts: Sequence[str] | Any, *, batch_size: int = 32
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """P(harmful) and P(complies) per prompt, from `n_decode + 1` greedy steps."""
        texts = texts_of(prompts)
        s1, s2, order = [], [], []
        for chunk, batch in batched(model, texts, self.system, batch_size):
            _, a, b = self._decode_base(model, batch, int(self.prober.n_decode) + 1)
            s1.append(a)
            s2.append(b)
            order.extend(chunk)
        back = input_order(order)  # batches come grouped by length
        p1, p2 = self.prober.predict_proba(torch.cat(s1)[back], torch.cat(s2)[back])
        return p1, p2

    def generate(
        self,
        model: TransformerBridge,
        prompts: Sequence[str] | Any,
        *,
        max_new_tokens: int = 48,
        batch_size: int = 32,
        progress: bool = False,
    ) -> Completions:
        """The switched answers: a `interp.generation.Decoder`, like `interp.generate`.

        `generate_gated` returns the same answers with the base model's answers and the
        gate's probabilities and decisions beside them.
        """
        return self.generate_gated(
            model, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size, progress=progress
        ).completions

    def generate_gated(
        self,
        model: TransformerBridge,
        prompts: Sequence[str] | Any,
        *,
        max_new_tokens: int = 48,
        batch_size: int = 32,
        progress: bool = False,
    ) -> SwitchResult:
        """Gated greedy answers, batched (flagged and unflagged rows share each base batch).

        Args:
            model: The bridge.
            prompts: User messages (strings or a `PromptSet`).
            max_new_tokens: Longest answer.
            batch_size: Prompts per forward pass.
            progress: Show a progress bar.

        Returns:
            The switched answers, the base answers and the gate's probabilities, in input order.
        """
        texts = texts_of(prompts)
        eos = eos_token_ids(model)
        base: dict[int, tuple[int, ...]] = {}
        final: dict[int, tuple[int, ...]] = {}
        switched: set[int] = set()
        p1s: dict[int, float] = {}
        p2s: dict[int, float] = {}
        chunks = batched(
            model, texts, self.system, batch_size, progress=progress, desc="safeswitch"
        )
        for chunk, batch in chunks:
            tokens, s1, s2 = self._decode_base(model, batch, max_new_tokens)
            p1, p2 = self.prober.predict_proba(s1, s2)
            flag = fires(p1, self.stage1_threshold) & fires(p2, self.stage2_threshold)
            for row, idx in enumerate(chunk):
                base[idx] = final[idx] = tuple(cut_at_eos(tokens[row].tolist(), eos))
                p1s[idx], p2s[idx] = float(p1[row]), float(p2[row])
            flagged = [idx for row, idx in enumerate(chunk) if bool(flag[row])]
            switched.update(flagged)
            if flagged:
                sub = encode(model, [texts[i] for i in flagged], self.system)
                head_tokens = greedy_decode(
                    model, sub, max_new_tokens=max_new_tokens, fwd_hooks=self.head.hooks(model)
                )
                for row, idx in enumerate(flagged):
                    final[idx] = tuple(cut_at_eos(head_tokens[row].tolist(), eos))
        flags = tuple(i in switched for i in range(len(texts)))
        return SwitchResult(
            completions=self._completions(model, texts, final),
            base=self._completions(model, texts, base),
            p_harmful=tuple(p1s[i] for i in range(len(texts))),
            p_complies=tuple(p2s[i] for i in range(len(texts))),
            flagged=flags,
        )

    def _completions(
        self, model: TransformerBridge, texts: list[str], tokens: dict[int, tuple[int, ...]]
    ) -> Completions:
        rows = tuple(tokens[i] for i in range(len(texts)))
        decoded = tuple(model.tokenizer.decode(list(t), skip_special_tokens=True) for t in rows)
        return Completions(prompts=tuple(texts), texts=decoded, tokens=rows, system=self.system)

    def calibrate(
        self,
        model: TransformerBridge,
        prompts: Any,
        harmful: Sequence[int] | None = None,
        *,
        target_fpr: float = 0.05,
        batch_size: int = 32,
    ) -> SafeSwitch:
        """A copy whose stage-1 threshold meets `target_fpr` on validation prompts.

        Args:
            model: The bridge.
            prompts: Validation user messages (a `PromptSet` carries its labels).
            harmful: 1 for harmful requests, 0 for harmless ones (default: `prompts.labels`).
            target_fpr: Highest admissible fraction of harmless requests flagged.
            batch_size: Prompts per forward pass.

        Returns:
            A new `SafeSwitch` (this one is unchanged); stage 2 keeps its threshold.
        """
        labels = list(harmful if harmful is not None else prompts.labels)
        p1, p2 = self.probabilities(model, prompts, batch_size=batch_size)
        threshold = calibrate_threshold(
            p1, fires(p2, self.stage2_threshold), labels, target_fpr=target_fpr
        )
        return dataclasses.replace(self, stage1_threshold=threshold)
