"""A final check by generation: do the best-scored candidates change what the model says?

The selection ranks candidates by first-token refusal scores. `verify_by_generation` takes
the top `k` of that ranking (those passing the filters first, by bypass score, then the best
of the rest) and decodes greedily on the validation prompts: the harmful ones with the
candidate ablated, the harmless ones with it added at its site (`add_at_site`, coefficient
1). The judge (the DRO substring judge by default) gives a refusal rate for each, and the
candidates are ranked again by generation: lowest refusal under ablation first, then highest
refusal under addition, then the score rank. Both rankings are in `GenerationCheck.rows`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from transformer_lens.model_bridge import TransformerBridge

from interp.evaluation import Judge, SubstringJudge
from interp.generation import generate
from interp.interventions import DirectionalAblation, Intervention, apply
from interp.refusal_direction.selection import Selection
from interp.refusal_direction.sweep import add_at_site

__all__ = ["CandidateCheck", "GenerationCheck", "verify_by_generation"]


@dataclass(frozen=True)
class CandidateCheck:
    """One checked candidate: its scores, its generated behaviour and both ranks.

    Attributes:
        layer: Its layer.
        column: Its column label (position; `site/position` in a site sweep).
        bypass: Its bypass score.
        induce: Its induce score.
        kl: Its KL on harmless prompts.
        passes: Whether it passed the selection filters.
        score_rank: 1-based rank by score (filter-passing first, then lowest bypass).
        ablation_refusal: Refusal rate on the harmful validation prompts, ablated.
        actadd_refusal: Refusal rate on the harmless validation prompts, with it added.
        generation_rank: 1-based rank by generation.
    """

    layer: int
    column: str
    bypass: float
    induce: float
    kl: float
    passes: bool
    score_rank: int
    ablation_refusal: float
    actadd_refusal: float
    generation_rank: int = 0


@dataclass(frozen=True)
class GenerationCheck:
    """The top candidates by score, checked by greedy generation.

    Attributes:
        checks: One entry per checked candidate, in score order.
        base_harmful_refusal: Refusal rate on the harmful validation prompts, no intervention.
        base_harmless_refusal: Refusal rate on the harmless validation prompts, no intervention.
        judge: Name of the judge.
        max_new_tokens: Greedy response length.
    """

    checks: tuple[CandidateCheck, ...]
    base_harmful_refusal: float
    base_harmless_refusal: float
    judge: str
    max_new_tokens: int

    def rows(self) -> list[dict[str, Any]]:
        """One JSON-ready dict per checked candidate, in score order."""
        return [
            {
                "layer": c.layer,
                "position": c.column,
                "bypass": round(c.bypass, 4),
                "induce": round(c.induce, 4),
                "kl": round(c.kl, 6),
                "passes_filters": c.passes,
                "score_rank": c.score_rank,
                "ablation_refusal_harmful": c.ablation_refusal,
                "actadd_refusal_harmless": c.actadd_refusal,
                "generation_rank": c.generation_rank,
            }
            for c in self.checks
        ]

    @property
    def best(self) -> CandidateCheck:
        """The candidate ranked first by generation."""
        return min(self.checks, key=lambda c: c.generation_rank)


def _top_k(selection: Selection, k: int) -> list[tuple[int, int, bool]]:
    """(row, column, passes) of the `k` best candidates: passing first, then by bypass."""
    table = selection.table
    cells = []
    for i in range(len(table.layers)):
        for j in range(len(table.columns)):
            bypass = float(table.bypass[i, j])
            if math.isfinite(bypass) and math.isfinite(float(table.kl[i, j])):
                passes = bool(selection.kept[i, j]) if selection.kept is not None else False
                cells.append((not passes, bypass, i, j))
    return [(i, j, not failed) for failed, _, i, j in sorted(cells)[:k]]


def _rate(
    model: TransformerBridge,
    prompts: Sequence[str] | Any,
    interventions: Sequence[Intervention],
    judge: Judge,
    options: dict[str, Any],
) -> float:
    with apply(model, *interventions):
        out = generate(model, prompts, **options)
    flags = judge.is_refusal(out.texts, out.prompts)
    return round(sum(flags) / max(len(flags), 1), 4)


def verify_by_generation(
    model: TransformerBridge,
    selection: Selection,
    harmful: Sequence[str] | Any,
    harmless: Sequence[str] | Any,
    *,
    k: int = 5,
    judge: Judge | None = None,
    system: str | None = None,
    max_new_tokens: int = 32,
    batch_size: int = 32,
) -> GenerationCheck:
    """Check the top-`k` candidates by score with greedy ablation and addition.

    Args:
        model: The bridge.
        selection: From `select_direction` (its table and filter mask give the ranking).
        harmful: Validation prompts the model refuses (ablation should stop the refusals).
        harmless: Validation prompts it answers (addition should make it refuse).
        k: Candidates to check (fewer if fewer have finite scores).
        judge: Refusal judge (the DRO substring judge by default).
        system: System prompt used when generating.
        max_new_tokens: Greedy response length.
        batch_size: Prompts per forward pass.

    Returns:
        Both rankings of the checked candidates and the base refusal rates.

    Raises:
        ValueError: `k` < 1.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1 candidates to check, got {k}")
    chosen = judge if judge is not None else SubstringJudge("dro")
    table = selection.table
    options = {"system": system, "max_new_tokens": max_new_tokens, "batch_size": batch_size}
    checks = []
    for rank, (i, j, passes) in enumerate(_top_k(selection, k), start=1):
        direction = table.candidates.direction(table.layers[i], table.columns[j])
        ablated = _rate(model, harmful, [DirectionalAblation(direction)], chosen, options)
        added = _rate(model, harmless, [add_at_site(direction, 1.0)], chosen, options)
        checks.append((ablated, -added, rank, i, j, passes))
    order = {check[2]: n for n, check in enumerate(sorted(checks), start=1)}
    return GenerationCheck(
        checks=tuple(
            CandidateCheck(
                layer=table.layers[i],
                column=table.columns[j],
                bypass=float(table.bypass[i, j]),
                induce=float(table.induce[i, j]),
                kl=float(table.kl[i, j]),
                passes=passes,
                score_rank=rank,
                ablation_refusal=ablated,
                actadd_refusal=-neg_added,
                generation_rank=order[rank],
            )
            for ablated, neg_added, rank, i, j, passes in checks
        ),
        base_harmful_refusal=_rate(model, harmful, [], chosen, options),
        base_harmless_refusal=_rate(model, harmless, [], chosen, options),
        judge=str(getattr(chosen, "name", type(chosen).__name__)),
        max_new_tokens=max_new_tokens,
    )
