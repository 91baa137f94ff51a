"""Evaluate a direction's interventions with greedy generation and teacher-forced metrics.

Four conditions share one protocol: `base` (no intervention), `ablation`
(`DirectionalAblation`), `actadd` (`ActAdd` of the raw vector at its layer) and
`orthogonalized` (the weight-edited copy from `orthogonalize`). For each: the refusal rate per
kind of prompt (greedy decoding through the shared loop, judged by the DRO substring judge),
the KL of the next-token distribution at the last prompt position on harmless prompts against
`base`, and the cross-entropy of `base`'s own greedy harmless completions (teacher forced).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import torch
from transformer_lens.model_bridge import TransformerBridge

from interp.chat import encode
from interp.data.promptset import texts_of
from interp.directions import Direction
from interp.evaluation import Judge, SubstringJudge
from interp.evaluation.fidelity import completion_ce, mean_kl, next_token_logprobs
from interp.generation import generate
from interp.interventions.ablation import DirectionalAblation
from interp.interventions.actadd import ActAdd
from interp.interventions.apply import Intervention, apply
from interp.interventions.orthogonalize import orthogonalize
from interp.refusal_direction.sweep import SiteAdd

__all__ = ["CONDITIONS", "DirectionEvaluation", "evaluate_direction", "max_logit_diff"]

CONDITIONS: tuple[str, ...] = ("base", "ablation", "actadd", "orthogonalized")


@dataclass(frozen=True)
class DirectionEvaluation:
    """Behaviour of a model under each intervention condition.

    Attributes:
        refusal_rate: condition -> kind -> share of responses judged refusals.
        kl_harmless: condition -> mean KL(base || condition) at the last prompt position.
        ce_harmless: condition -> mean per-token cross-entropy of base's harmless completions.
        orthogonalized_max_logit_diff_vs_hooks: Max |logit difference| between the
            orthogonalised model and hook ablation on the evaluation prompts (real tokens).
        responses: condition -> kind -> the greedy responses.
        actadd_coeff: Coefficient of the `actadd` condition.
        actadd_layer: Layer of the `actadd` condition.
        refused: condition -> kind -> the judge's verdict on each response (True: refusal),
            the counts behind `refusal_rate`.
    """

    refusal_rate: dict[str, dict[str, float]]
    kl_harmless: dict[str, float]
    ce_harmless: dict[str, float]
    orthogonalized_max_logit_diff_vs_hooks: float
    responses: dict[str, dict[str, tuple[str, ...]]] = field(repr=False)
    actadd_coeff: float = 1.0
    actadd_layer: int = 0
    refused: dict[str, dict[str, tuple[bool, ...]]] = field(default_factory=dict, repr=False)


def _texts(prompts: Sequence[str] | Any) -> list[str]:
    return texts_of(prompts)


@torch.no_grad()
def max_logit_diff(
    model: TransformerBridge,
    other: TransformerBridge,
    texts: Sequence[str],
    interventions: Sequence[Intervention] = (),
    system: str | None = None,
) -> float:
    """Max |logits(other) - logits(model with interventions)| over real tokens of `texts`."""
    batch = encode(model, texts, system).to(model.cfg.device)
    with apply(model, *interventions):
        hooked = model(batch.tokens, attention_mask=batch.attention_mask)
    edited = other(batch.tokens, attention_mask=batch.attention_mask)
    real = batch.attention_mask.bool()
    return float((hooked - edited).abs()[real].max())


def evaluate_direction(
    model: TransformerBridge,
    direction: Direction,
    prompt_sets: Mapping[str, Sequence[str] | Any],
    *,
    actadd_coeff: float = 1.0,
    actadd_layer: int | None = None,
    judge: Judge | None = None,
    system: str | None = None,
    max_new_tokens: int = 32,
    batch_size: int = 32,
    orthogonalized: TransformerBridge | None = None,
) -> DirectionEvaluation:
    """Refusal rates, KL and cross-entropy under base / ablation / actadd / orthogonalised.

    Args:
        model: The bridge (left untouched).
        direction: The refusal direction.
        prompt_sets: kind -> held-out prompts; `harmless` (if present) gives KL and CE.
        actadd_coeff: Coefficient of the activation-addition condition.
        actadd_layer: Its layer (`resid_pre` of it; by default the direction's own site,
            which for a `resid_mid` / `resid_post` candidate is not a block input).
        judge: Refusal judge (DRO substring judge by default).
        system: System prompt for every condition.
        max_new_tokens: Greedy response length.
        batch_size: Prompts per forward pass.
        orthogonalized: A precomputed `orthogonalize(model, direction)` (built when None).

    Returns:
        The evaluation.
    """
    chosen = judge if judge is not None else SubstringJudge("dro")
    ortho = orthogonalized if orthogonalized is not None else orthogonalize(model, direction)
    layer = direction.layer if actadd_layer is None else actadd_layer
    # A candidate from another stream (a site sweep) is added where it was taken.
    actadd: Intervention = (
        ActAdd(direction, actadd_coeff, layer)
        if actadd_layer is not None or direction.site.stream == "resid_pre"
        else SiteAdd(direction, actadd_coeff)
    )
    setups: dict[str, tuple[TransformerBridge, list[Intervention]]] = {
        "base": (model, []),
        "ablation": (model, [DirectionalAblation(direction)]),
        "actadd": (model, [actadd]),
        "orthogonalized": (ortho, []),
    }
    rates: dict[str, dict[str, float]] = {c: {} for c in CONDITIONS}
    responses: dict[str, dict[str, tuple[str, ...]]] = {c: {} for c in CONDITIONS}
    refused: dict[str, dict[str, tuple[bool, ...]]] = {c: {} for c in CONDITIONS}
    kl: dict[str, float] = {}
    ce: dict[str, float] = {}
    harmless = _texts(prompt_sets["harmless"]) if "harmless" in prompt_sets else []
    base_completions: Sequence[Sequence[int]] = ()
    base_logp = next_token_logprobs(model, harmless, system, batch_size) if harmless else None
    for condition, (target, items) in setups.items():
        ctx: AbstractContextManager[Any] = apply(target, *items) if items else nullcontext()
        with ctx:
            for kind, prompts in prompt_sets.items():
                out = generate(
                    target,
                    prompts,
                    system=system,
                    max_new_tokens=max_new_tokens,
                    batch_size=batch_size,
                )
                flags = chosen.is_refusal(out.texts, out.prompts)
                rates[condition][kind] = round(sum(flags) / max(len(flags), 1), 4)
                responses[condition][kind] = out.texts
                refused[condition][kind] = tuple(bool(f) for f in flags)
                if condition == "base" and kind == "harmless":
                    base_completions = out.tokens
            if base_logp is not None:
                logp = next_token_logprobs(target, harmless, system, batch_size)
                kl[condition] = mean_kl(base_logp, logp)
                ce[condition] = completion_ce(
                    target, harmless, base_completions, system, batch_size
                )
    sample = [t for p in prompt_sets.values() for t in _texts(p)[:8]]
    diff = max_logit_diff(model, ortho, sample, [DirectionalAblation(direction)], system)
    return DirectionEvaluation(
        refusal_rate=rates,
        kl_harmless=kl,
        ce_harmless=ce,
        orthogonalized_max_logit_diff_vs_hooks=diff,
        responses=responses,
        actadd_coeff=float(actadd_coeff),
        actadd_layer=int(layer),
        refused=refused,
    )
