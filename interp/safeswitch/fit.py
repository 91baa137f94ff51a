"""The SafeSwitch fitting recipe: the two-stage prober and the refusal head from prompts by kind."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

from transformer_lens.model_bridge import TransformerBridge

from interp.data.promptset import HARMFUL_KINDS, texts_of
from interp.safeswitch.prober import SafeSwitchProber, prober_features
from interp.safeswitch.refusal_head import RefusalHead
from interp.safeswitch.switch import SafeSwitch

__all__ = ["fit_safeswitch"]

Prompts = Sequence[str] | Any


def _sample(prompts: Prompts, n: int | None, seed: int) -> list[str]:
    """`n` prompts drawn without replacement (seeded, in their original order), or all."""
    texts = texts_of(prompts)
    if n is None or len(texts) <= n:
        return texts
    keep = sorted(random.Random(seed).sample(range(len(texts)), n))
    return [texts[i] for i in keep]


def fit_safeswitch(
    model: TransformerBridge,
    train: Mapping[str, Prompts],
    *,
    system: str | None = "helpful",
    n_per_kind: int | None = 64,
    max_new_tokens: int = 16,
    batch_size: int = 64,
    seed: int = 0,
) -> SafeSwitch:
    """Fit the two-stage prober and the refusal head on training prompts of each kind.

    Args:
        model: The bridge.
        train: kind -> training prompts; `harmful` and `jailbreak` are the harmful kinds (label 1),
            every other kind is harmless (label 0). The refusal head learns the model's own
            refusals of the harmful kinds under the warning prompt.
        system: The deployment system prompt (prober features and head states).
        n_per_kind: Prompts sampled per kind (None: all).
        max_new_tokens: Length of the greedy answers that give the prober's compliance labels.
        batch_size: Prompts per forward pass.
        seed: Seed of the sampling, the prober and the head.

    Returns:
        A SafeSwitch with default thresholds (0.5, 0.5).
    """
    picked = {kind: _sample(p, n_per_kind, seed) for kind, p in train.items()}
    texts = [t for kind in picked for t in picked[kind]]
    harmful = [int(kind in HARMFUL_KINDS) for kind in picked for _ in picked[kind]]
    feats = prober_features(
        model, texts, system=system, max_new_tokens=max_new_tokens, batch_size=batch_size
    )
    prober = SafeSwitchProber(seed=seed).fit(feats.stage1, harmful, feats.stage2, feats.complied)
    requests = [t for t, h in zip(texts, harmful, strict=True) if h]
    head = RefusalHead(system=system, seed=seed).fit(model, requests)
    return SafeSwitch(prober, head, system=system)
