"""The SafeSwitch fitting recipe: the two-stage prober and the refusal head from prompts by kind."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

from transformer_lens.model_bridge import TransformerBridge

from interp.data.promptset import HARMFUL_KINDS, texts_of
from interp.min_samples import MIN_PER_CLASS, require_per_class
from interp.safeswitch.prober import SafeSwitchProber, prober_features
from interp.safeswitch.refusal_head import RefusalHead
from interp.safeswitch.refusal_pairs import refusal_pairs
from interp.safeswitch.switch import SafeSwitch

__all__ = ["fit_prober", "fit_safeswitch"]

Prompts = Sequence[str] | Any


def _sample(prompts: Prompts, n: int | None, seed: int) -> list[str]:
    """`n` prompts drawn without replacement (seeded, in their original order), or all."""
    texts = texts_of(prompts)
    if n is None or len(texts) <= n:
        return texts
    keep = sorted(random.Random(seed).sample(range(len(texts)), n))
    return [texts[i] for i in keep]


def _picked(
    train: Mapping[str, Prompts], n_per_kind: int | None, seed: int
) -> tuple[list[str], list[int]]:
    """The sampled training texts and their harmful (1) / harmless (0) labels."""
    picked = {kind: _sample(p, n_per_kind, seed) for kind, p in train.items()}
    texts = [t for kind in picked for t in picked[kind]]
    harmful = [int(kind in HARMFUL_KINDS) for kind in picked for _ in picked[kind]]
    return texts, harmful


def fit_prober(
    model: TransformerBridge,
    train: Mapping[str, Prompts],
    *,
    system: str | None = "helpful",
    n_per_kind: int | None = 64,
    max_new_tokens: int = 16,
    batch_size: int = 64,
    seed: int = 0,
    min_per_class: int = MIN_PER_CLASS,
) -> tuple[SafeSwitchProber, dict[str, int]]:
    """Fit SafeSwitch's two-stage prober as `fit_safeswitch` does (same sampling, same labels).

    Args: as `fit_safeswitch`.

    Returns:
        (the prober, its training counts: harmful and harmless queries, compliant answers
        and refusals).

    Raises:
        TooFewExamplesError: Fewer than `min_per_class` compliant or refused answers.
    """
    texts, harmful = _picked(train, n_per_kind, seed)
    feats = prober_features(
        model, texts, system=system, max_new_tokens=max_new_tokens, batch_size=batch_size
    )
    n_complied = sum(int(c) for c in feats.complied)
    counts = {
        "harmful queries": sum(harmful),
        "harmless queries": len(harmful) - sum(harmful),
        "compliant answers": n_complied,
        "refusals": len(texts) - n_complied,
    }
    require_per_class(
        "the SafeSwitch prober's stage-2 labels (the model's own greedy answers)",
        {k: counts[k] for k in ("compliant answers", "refusals")},
        minimum=min_per_class,
        fix="Pass more training prompts of the kinds the model refuses (or answers).",
    )
    prober = SafeSwitchProber(seed=seed).fit(
        feats.stage1, harmful, feats.stage2, feats.complied, model=model
    )
    return prober, counts


def fit_safeswitch(
    model: TransformerBridge,
    train: Mapping[str, Prompts],
    *,
    system: str | None = "helpful",
    n_per_kind: int | None = 64,
    max_new_tokens: int = 16,
    batch_size: int = 64,
    seed: int = 0,
    min_per_class: int = MIN_PER_CLASS,
    prober: SafeSwitchProber | None = None,
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
        min_per_class: Examples required of each behaviour-derived class: compliant and
            refused answers (the stage-2 labels), and refusals to train the head on
            (`interp.MIN_PER_CLASS` by default).
        prober: A prober already fitted by `fit_prober` with the same arguments, reused
            instead of fitting it again (the report fits it once for two sections).

    Returns:
        A SafeSwitch with default thresholds (0.5, 0.5).

    Raises:
        TooFewExamplesError: Fewer than `min_per_class` compliant or refused answers, or
            fewer refusals under the warning prompt for the head.
    """
    if prober is None:
        prober, _ = fit_prober(
            model, train, system=system, n_per_kind=n_per_kind, max_new_tokens=max_new_tokens,
            batch_size=batch_size, seed=seed, min_per_class=min_per_class,
        )  # fmt: skip
    texts, harmful = _picked(train, n_per_kind, seed)
    requests = [t for t, h in zip(texts, harmful, strict=True) if h]
    pairs = refusal_pairs(model, requests)
    require_per_class(
        "the refusal head's targets (the model's refusals under the warning prompt)",
        {f"refusals of {len(requests)} harmful prompts": len(pairs)},
        minimum=min_per_class,
        fix="Pass more harmful training prompts that the model refuses.",
    )
    head = RefusalHead(system=system, seed=seed).fit(model, pairs)
    return SafeSwitch(prober, head, system=system)
