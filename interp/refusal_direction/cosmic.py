"""COSMIC selection (Siu et al. 2025): score candidates by cosine similarity, no refusal tokens.

"COSMIC: Generalized Refusal Direction Identification in LLM Activations" (ACL Findings 2025,
arXiv:2506.00085). A good refusal direction r inverts the concept in activation space:

* comply score: with r-hat ablated everywhere, the harmful prompts' mean state should look
  like the harmless mean, i.e. cos(mean ablated harmful, mean harmless) is high;
* refuse score: with r added at its layer, the harmless prompts' mean state should look like
  the harmful mean, i.e. cos(mean steered harmless, mean harmful) is high.

States are `resid_pre` at the post-instruction (eoi) positions of a few *evaluation layers*,
concatenated into one vector per prompt set: the layers where the harmful and harmless means
are least alike (the lowest 10% by cosine, at least one). The score is comply + refuse; the
reference's layer cut and the KL filter on harmless prompts (both need no refusal tokens) are
kept (`select_cosmic`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from tqdm.auto import tqdm
from transformer_lens.model_bridge import TransformerBridge

from interp.activations import batches, collect_batch
from interp.chat import ChatBatch
from interp.data.promptset import texts_of
from interp.directions import Candidates, Direction, DirectionError
from interp.errors import EmptyPromptSetError
from interp.interventions import ActAdd, DirectionalAblation, Intervention, apply
from interp.refusal_direction.filters import CandidateGrid, SelectionConfig, layer_cut
from interp.refusal_direction.selection import _kl, _last_logits
from interp.sites import Site

__all__ = [
    "CosmicSelection",
    "CosmicTable",
    "cosmic_pair_scores",
    "cosmic_scores",
    "low_similarity_layers",
    "select_cosmic",
]


def _flat_cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    x, y = a.double().flatten(), b.double().flatten()
    return float((x @ y) / (x.norm() * y.norm()).clamp_min(1e-300))


def low_similarity_layers(
    mean_harmful: torch.Tensor, mean_harmless: torch.Tensor, n: int
) -> tuple[int, ...]:
    """The `n` layers whose harmful and harmless mean states are least alike (by cosine).

    Args:
        mean_harmful: Mean harmful states per layer, [n_layers, ...] (positions flattened).
        mean_harmless: The same for harmless prompts.
        n: How many layers to keep.

    Returns:
        Layer indices (rows), ascending.

    Example:
        >>> h = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
        >>> s = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
        >>> low_similarity_layers(h, s, 2)
        (1, 2)
    """
    sims = torch.tensor(
        [_flat_cosine(h, s) for h, s in zip(mean_harmful, mean_harmless, strict=True)]
    )
    order = torch.argsort(sims, stable=True)[: max(1, int(n))]
    return tuple(sorted(int(i) for i in order))


def cosmic_pair_scores(
    ablated_harmful: torch.Tensor,
    steered_harmless: torch.Tensor,
    mean_harmful: torch.Tensor,
    mean_harmless: torch.Tensor,
) -> tuple[float, float]:
    """COSMIC's (comply, refuse) scores from mean states: two cosines with the other class.

    Each argument is a mean state over the evaluation layers and positions (any shape; it is
    flattened). Both scores lie in [-1, 1], higher is better.

    Example:
        >>> h, s = torch.tensor([1.0, 1.0]), torch.tensor([1.0, 0.0])
        >>> [round(x, 6) for x in cosmic_pair_scores(s, h, h, s)]
        [1.0, 1.0]
    """
    return _flat_cosine(ablated_harmful, mean_harmless), _flat_cosine(
        steered_harmless, mean_harmful
    )


@dataclass(frozen=True, eq=False)
class CosmicTable(CandidateGrid):
    """COSMIC scores of every candidate; arrays are float64 [n_layers, n_positions].

    Attributes:
        candidates: The scored candidates.
        comply: cos(mean harmful state with r-hat ablated, mean harmless state).
        refuse: cos(mean harmless state with r added at its layer, mean harmful state).
        kl: Mean KL(base || ablated) on harmless prompts at the last position.
        eval_layers: The layers whose states are compared.
        base_similarity: cos(mean harmful, mean harmless) at those layers, no intervention
            (what each score starts from).
    """

    candidates: Candidates
    comply: torch.Tensor
    refuse: torch.Tensor
    kl: torch.Tensor
    eval_layers: tuple[int, ...]
    base_similarity: float
    ROW_FIELDS: ClassVar[tuple[str, ...]] = ("comply", "refuse", "score", "kl")

    @property
    def score(self) -> torch.Tensor:
        """The COSMIC score: comply + refuse (higher is better)."""
        return self.comply + self.refuse


def _mean_states(
    model: TransformerBridge,
    batches_: Sequence[ChatBatch],
    sites: Sequence[Site],
    positions: Sequence[str],
    interventions: Sequence[Intervention] = (),
) -> torch.Tensor:
    """Float64 mean over prompts of the states at `sites`: [n_sites, n_columns, d_model]."""
    total: torch.Tensor | None = None
    count = 0
    with apply(model, *interventions):
        for batch in batches_:
            acts = collect_batch(model, batch, sites, positions)
            part = torch.stack([acts[s.label] for s in sites]).double().sum(dim=1)
            total = part if total is None else total + part
            count += len(batch)
    assert total is not None
    return total / count


def cosmic_scores(
    model: TransformerBridge,
    candidates: Candidates,
    harmful: Sequence[str] | Any,
    harmless: Sequence[str] | Any,
    *,
    eval_layers: Sequence[int] | None = None,
    eval_fraction: float = 0.1,
    positions: Sequence[str] = ("eoi",),
    system: str | None = None,
    batch_size: int = 32,
    progress: bool = False,
) -> CosmicTable:
    """COSMIC's comply and refuse scores and the KL of every candidate on validation prompts.

    Three forward passes per candidate and batch (two stop at the deepest evaluation layer);
    no generation and no refusal tokens.

    Args:
        model: The bridge the candidates come from.
        candidates: From `diff_in_means`.
        harmful: Validation prompts the model should refuse.
        harmless: Validation prompts it should answer.
        eval_layers: Layers whose states are compared; by default the
            `ceil(eval_fraction * n_layers)` layers (at least one) where the harmful and
            harmless means are least alike.
        eval_fraction: Share of layers used when `eval_layers` is None (COSMIC: 10%).
        positions: Positions whose states are compared (post-instruction tokens by default).
        system: System prompt used when rendering.
        batch_size: Prompts per forward pass.
        progress: Show a progress bar over candidates.

    Returns:
        The score table.

    Raises:
        EmptyPromptSetError: A prompt set is empty.
    """
    harm_texts, safe_texts = texts_of(harmful), texts_of(harmless)
    if not harm_texts or not safe_texts:
        raise EmptyPromptSetError("cosmic_scores needs harmful and harmless validation prompts")
    n_layers = int(model.cfg.n_layers)
    harm = [b for _, b in batches(model, harm_texts, system, batch_size)]
    safe = [b for _, b in batches(model, safe_texts, system, batch_size)]
    stream = candidates.stream
    if eval_layers is None:
        every = [Site(stream, layer) for layer in range(n_layers)]
        base_harm = _mean_states(model, harm, every, positions)
        base_safe = _mean_states(model, safe, every, positions)
        n_eval = max(1, math.ceil(eval_fraction * n_layers))
        chosen = low_similarity_layers(base_harm, base_safe, n_eval)
        harm_ref, safe_ref = base_harm[list(chosen)], base_safe[list(chosen)]
    else:
        chosen = tuple(sorted(int(x) for x in eval_layers))
    sites = [Site(stream, layer).check(n_layers) for layer in chosen]
    if eval_layers is not None:
        harm_ref = _mean_states(model, harm, sites, positions)
        safe_ref = _mean_states(model, safe, sites, positions)
    base_safe_logits = [_last_logits(model, b) for b in safe]
    shape = tuple(candidates.vectors.shape[:2])
    comply, refuse, kl = (torch.full(shape, math.nan, dtype=torch.float64) for _ in range(3))
    cells = [(i, j) for i in range(shape[0]) for j in range(shape[1])]
    for i, j in tqdm(cells, desc="cosmic scores", disable=not progress):
        vec = candidates.vectors[i, j]
        if not bool(torch.isfinite(vec).all()) or float(vec.norm()) <= 1e-12:
            continue  # a zero or NaN candidate scores NaN and is never selected
        direction = candidates.direction(candidates.layers[i], candidates.columns[j])
        ablation = DirectionalAblation(direction)
        ablated = _mean_states(model, harm, sites, positions, [ablation])
        steered = _mean_states(model, safe, sites, positions, [ActAdd(direction, 1.0)])
        comply[i, j], refuse[i, j] = cosmic_pair_scores(ablated, steered, harm_ref, safe_ref)
        with apply(model, ablation):
            new = [_last_logits(model, b) for b in safe]
        kl[i, j] = float(
            torch.cat([_kl(a, b) for a, b in zip(base_safe_logits, new, strict=True)]).mean()
        )
    return CosmicTable(
        candidates=candidates,
        comply=comply,
        refuse=refuse,
        kl=kl,
        eval_layers=chosen,
        base_similarity=_flat_cosine(harm_ref, safe_ref),
    )


@dataclass(frozen=True, eq=False)
class CosmicSelection:
    """The candidate COSMIC selects and why.

    Attributes:
        direction: The chosen direction.
        score: Its comply + refuse score.
        comply: Its comply score.
        refuse: Its refuse score.
        kl: Its KL on harmless prompts.
        table: The full COSMIC table.
        config: The filters used (`max_kl`, `max_layer_fraction`; `min_induce` is unused).
        kept: Mask [n_layers, n_positions] of candidates that passed the filters.
    """

    direction: Direction
    score: float
    comply: float
    refuse: float
    kl: float
    table: CosmicTable
    config: SelectionConfig = field(default_factory=SelectionConfig)
    kept: torch.Tensor | None = None

    def ranking(self) -> list[dict[str, Any]]:
        """The kept candidates' rows, best COSMIC score first."""
        assert self.kept is not None
        rows = [
            r for r, k in zip(self.table.rows(), self.kept.flatten().tolist(), strict=True) if k
        ]
        return sorted(rows, key=lambda r: -r["score"])


def select_cosmic(table: CosmicTable, config: SelectionConfig | None = None) -> CosmicSelection:
    """Pick the candidate with the highest COSMIC score among those passing the filters.

    The filters are the reference's layer cut (`layer < int(max_layer_fraction * n_layers)`)
    and `kl <= max_kl`; the induce filter needs refusal tokens and is not applied.

    Raises:
        DirectionError: No candidate passes.
    """
    config = config or SelectionConfig()
    score = table.score
    layers = torch.tensor(table.layers, dtype=torch.float64)[:, None].expand_as(score)
    cut = layer_cut(max(len(table.layers), max(table.layers) + 1), config.max_layer_fraction)
    finite = score.isfinite() & table.kl.isfinite()
    kept = finite & (table.kl <= config.max_kl) & (layers < cut)
    if not bool(kept.any()):
        raise DirectionError(
            f"no candidate passes COSMIC's filters (of {int(finite.sum())} candidates, "
            f"{int((finite & (table.kl > config.max_kl)).sum())} exceed max_kl "
            f"{config.max_kl} and {int((finite & (layers >= cut)).sum())} sit at layer >= {cut}); "
            "relax SelectionConfig (max_kl, max_layer_fraction)"
        )
    masked = torch.where(kept, score, torch.full_like(score, -math.inf))
    i, j = divmod(int(masked.argmax()), masked.shape[1])
    direction = table.candidates.direction(
        table.layers[i],
        table.columns[j],
        operation="diff_in_means; selected by COSMIC cosine score (ablate harmful, add on harmless)",
    )
    return CosmicSelection(
        direction=direction,
        score=float(score[i, j]),
        comply=float(table.comply[i, j]),
        refuse=float(table.refuse[i, j]),
        kl=float(table.kl[i, j]),
        table=table,
        config=config,
        kept=kept,
    )
