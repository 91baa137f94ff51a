"""Score refusal-direction candidates with single forward passes, and select one.

The refusal score of a prompt is the log-odds of the model's refusal tokens at the first
response position: with p_ref the summed probability of those tokens,
``score = log p_ref - log(1 - p_ref)`` (Arditi et al. 2024). The refusal tokens are derived
from the model's own refusals (`refusal_tokens`: the first tokens covering 99 % of them),
never hard-coded per family; user-given ids are accepted wherever tokens are taken.

For every candidate (layer x column) on validation prompts:

* bypass score: refusal score on harmful prompts with the direction ablated everywhere;
* induce score: refusal score on harmless prompts with the raw vector added at its site;
* KL: KL(base || ablated) of the last-position next-token distribution on harmless prompts.

Each is kept per prompt (`ScoreTable.per_prompt_*`) and averaged. `select_direction` applies
the reference's filters (`SelectionConfig`: KL <= 0.1, induce > 0, layer < int(0.8 L)), picks
the lowest mean bypass score, and bootstraps the validation prompts over the per-prompt
scores (`interp.refusal_direction.stability`) to say how often that choice would be made.
`ScoreTable.pareto` lists the bypass-vs-KL trade-off.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from tqdm.auto import tqdm
from transformer_lens.model_bridge import TransformerBridge

from interp._types import Float
from interp.activations import batches
from interp.chat import ChatBatch
from interp.data.promptset import texts_of
from interp.directions import Candidates, Direction, DirectionError
from interp.interventions import DirectionalAblation, apply
from interp.min_samples import MIN_PER_CLASS, require_per_class
from interp.native import last_logits
from interp.refusal_direction.filters import (
    CandidateGrid,
    SelectionConfig,
    candidate_filters,
    layer_cut,
)
from interp.refusal_direction.stability import Stability, bootstrap_stability
from interp.refusal_direction.sweep import add_at_site
from interp.refusal_direction.tokens import RefusalTokens, as_refusal_tokens, token_ids

__all__ = [
    "ScoreTable",
    "Selection",
    "SelectionConfig",
    "layer_cut",
    "refusal_score",
    "score_candidates",
    "select_direction",
    "selectable_layers",
]

logger = logging.getLogger(__name__)


def refusal_score(
    logits: Float[torch.Tensor, "*batch d_vocab"], tokens: Sequence[int] | RefusalTokens
) -> Float[torch.Tensor, "*batch"]:
    """Log-odds of the refusal tokens: log p_ref - log(1 - p_ref), per row of [batch, d_vocab].

    Computed from log-softmax with two log-sum-exps, so it stays finite for p_ref near 0 or 1.
    """
    tokens = token_ids(tokens)
    if not tokens:
        raise DirectionError("refusal_score needs at least one refusal token id")
    logp = torch.log_softmax(logits.double(), dim=-1)
    mask = torch.zeros(logp.shape[-1], dtype=torch.bool, device=logp.device)
    mask[list(tokens)] = True
    log_ref = torch.logsumexp(logp[..., mask], dim=-1)
    log_rest = torch.logsumexp(logp[..., ~mask], dim=-1)
    return log_ref - log_rest


@torch.no_grad()
def _last_logits(
    model: TransformerBridge, batch: ChatBatch
) -> Float[torch.Tensor, "batch d_vocab"]:
    return last_logits(model, batch.tokens, batch.attention_mask).double().cpu()


def _kl(
    base_logits: Float[torch.Tensor, "batch d_vocab"],
    new_logits: Float[torch.Tensor, "batch d_vocab"],
) -> Float[torch.Tensor, " batch"]:
    """KL(base || new) per row, from logits [batch, d_vocab]."""
    p_log = torch.log_softmax(base_logits, dim=-1)
    q_log = torch.log_softmax(new_logits, dim=-1)
    return (p_log.exp() * (p_log - q_log)).sum(-1)


@dataclass(frozen=True, eq=False)
class ScoreTable(CandidateGrid):
    """Scores of every candidate; arrays are float64 [n_layers, n_positions].

    Attributes:
        candidates: The scored candidates.
        bypass: Mean refusal score on harmful prompts under ablation (lower = stronger).
        induce: Mean refusal score on harmless prompts with the vector added at its site.
        kl: Mean KL(base || ablated) on harmless prompts at the last position.
        base_harmful: Mean refusal score on the harmful prompts without intervention.
        base_harmless: Mean refusal score on the harmless prompts without intervention.
        refusal_tokens: The token ids the scores use.
        tokens: The same tokens with their coverage of the model's refusals (when derived
            by `refusal_tokens`; user-given ids have no coverage).
        per_prompt_bypass: Bypass score per harmful validation prompt [.., .., n_harmful].
        per_prompt_induce: Induce score per harmless validation prompt [.., .., n_harmless].
        per_prompt_kl: KL per harmless validation prompt [.., .., n_harmless].
    """

    candidates: Candidates
    bypass: Float[torch.Tensor, "layer n_positions"]
    induce: Float[torch.Tensor, "layer n_positions"]
    kl: Float[torch.Tensor, "layer n_positions"]
    base_harmful: float
    base_harmless: float
    refusal_tokens: tuple[int, ...]
    tokens: RefusalTokens | None = None
    per_prompt_bypass: Float[torch.Tensor, "layer n_positions harmful"] | None = None
    per_prompt_induce: Float[torch.Tensor, "layer n_positions harmless"] | None = None
    per_prompt_kl: Float[torch.Tensor, "layer n_positions harmless"] | None = None
    ROW_FIELDS: ClassVar[tuple[str, ...]] = ("bypass", "induce", "kl")

    def pareto(self) -> list[dict[str, Any]]:
        """Candidates not dominated in (bypass, KL), both lower-is-better, sorted by KL."""
        rows = [r for r in self.rows() if math.isfinite(r["bypass"]) and math.isfinite(r["kl"])]
        front = [
            r
            for r in rows
            if not any(
                o["bypass"] <= r["bypass"]
                and o["kl"] <= r["kl"]
                and (o["bypass"] < r["bypass"] or o["kl"] < r["kl"])
                for o in rows
            )
        ]
        return sorted(front, key=lambda r: (r["kl"], r["bypass"]))

    def stability(self, config: SelectionConfig | None = None) -> Stability | None:
        """The bootstrap of the per-prompt scores (None without them or with 0 resamples)."""
        config = config or SelectionConfig()
        arrays = (self.per_prompt_bypass, self.per_prompt_induce, self.per_prompt_kl)
        if config.n_resamples < 1 or any(a is None for a in arrays):
            return None
        bypass, induce, kl = arrays
        assert bypass is not None and induce is not None and kl is not None
        return bootstrap_stability(bypass, induce, kl, self.layers, config)


def _score_one(
    model: TransformerBridge,
    direction: Direction,
    harmful: Sequence[ChatBatch],
    harmless: Sequence[ChatBatch],
    base_safe: Sequence[torch.Tensor],
    tokens: Sequence[int],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-prompt bypass [n_harmful], induce [n_harmless] and KL [n_harmless] of one candidate."""
    with apply(model, DirectionalAblation(direction)):
        bypass = [refusal_score(_last_logits(model, b), tokens) for b in harmful]
        ablated = [_last_logits(model, b) for b in harmless]
    kl = [_kl(base, new) for base, new in zip(base_safe, ablated, strict=True)]
    with apply(model, add_at_site(direction, 1.0)):
        induce = [refusal_score(_last_logits(model, b), tokens) for b in harmless]
    return torch.cat(bypass), torch.cat(induce), torch.cat(kl)


def score_candidates(
    model: TransformerBridge,
    candidates: Candidates,
    harmful: Sequence[str] | Any,
    harmless: Sequence[str] | Any,
    tokens: Sequence[int] | RefusalTokens,
    *,
    system: str | None = None,
    batch_size: int = 32,
    progress: bool = False,
    min_per_class: int = MIN_PER_CLASS,
    layers: Sequence[int] | None = None,
) -> ScoreTable:
    """Bypass, induce and KL scores of every candidate on validation prompts.

    Only single forward passes are used (no generation): 3 per candidate and batch, each
    computing the last position's logits only (`interp.native.last_logits`). The scores are
    kept per prompt too, for the bootstrap of `select_direction`.

    Args:
        model: The bridge the candidates come from.
        candidates: From `diff_in_means` or `sweep_candidates`.
        harmful: Validation prompts the model refuses.
        harmless: Validation prompts it answers.
        tokens: Refusal tokens (`refusal_tokens`' result, or token ids given by hand).
        system: System prompt used when rendering.
        batch_size: Prompts per forward pass.
        progress: Show a progress bar over candidates.
        min_per_class: Validation prompts required of each kind (`interp.MIN_PER_CLASS`).
        layers: Score only the candidates of these layers; the others keep NaN scores and
            are never selected. None scores every layer, as the reference does before its
            layer filter. `selectable_layers(n_layers, config)` is the set the filter keeps:
            passing it gives the same selection at 80 % of the cost (the report does).

    Returns:
        The full score table.

    Raises:
        TooFewExamplesError: Fewer than `min_per_class` harmful or harmless prompts.
    """
    info = as_refusal_tokens(tokens)
    ids = info.ids
    harm_texts = texts_of(harmful)
    safe_texts = texts_of(harmless)
    require_per_class(
        "selecting the refusal direction (validation prompts per kind)",
        {"harmful": len(harm_texts), "harmless": len(safe_texts)},
        minimum=min_per_class,
        fix="Pass more validation prompts of each kind.",
    )
    harm = [b for _, b in batches(model, harm_texts, system, batch_size)]
    safe = [b for _, b in batches(model, safe_texts, system, batch_size)]
    base_harm = torch.cat([refusal_score(_last_logits(model, b), ids) for b in harm])
    base_safe = [_last_logits(model, b) for b in safe]
    shape = tuple(candidates.vectors.shape[:2])
    pp_bypass = torch.full((*shape, len(harm_texts)), math.nan, dtype=torch.float64)
    pp_induce = torch.full((*shape, len(safe_texts)), math.nan, dtype=torch.float64)
    pp_kl = pp_induce.clone()
    wanted = None if layers is None else set(layers)
    rows = [i for i, layer in enumerate(candidates.layers) if wanted is None or layer in wanted]
    cells = [(i, j) for i in rows for j in range(shape[1])]
    for i, j in tqdm(cells, desc="score candidates", disable=not progress):
        vec = candidates.vectors[i, j]
        if not bool(torch.isfinite(vec).all()) or float(vec.norm()) <= 1e-12:
            continue  # a zero or NaN candidate scores NaN and is never selected
        direction = candidates.direction(candidates.layers[i], candidates.columns[j])
        pp_bypass[i, j], pp_induce[i, j], pp_kl[i, j] = _score_one(
            model, direction, harm, safe, base_safe, ids
        )
    return ScoreTable(
        candidates=candidates,
        bypass=pp_bypass.mean(-1),
        induce=pp_induce.mean(-1),
        kl=pp_kl.mean(-1),
        base_harmful=float(base_harm.mean()),
        base_harmless=float(torch.cat([refusal_score(x, ids) for x in base_safe]).mean()),
        refusal_tokens=ids,
        tokens=info,
        per_prompt_bypass=pp_bypass,
        per_prompt_induce=pp_induce,
        per_prompt_kl=pp_kl,
    )


@dataclass(frozen=True, eq=False)
class Selection:
    """The selected candidate and why.

    Attributes:
        direction: The chosen direction (its `operation` names the refusal tokens used and
            their coverage).
        bypass: Its bypass score.
        induce: Its induce score.
        kl: Its KL on harmless prompts.
        table: The full score table.
        config: The filters and bootstrap settings used.
        kept: Mask [n_layers, n_positions] of candidates that passed the filters.
        stability: The bootstrap of the validation prompts (None when it was turned off or
            the table has no per-prompt scores).
        column: The chosen candidate's column label (its position; `site/position` in a
            site sweep).
    """

    direction: Direction
    bypass: float
    induce: float
    kl: float
    table: ScoreTable
    config: SelectionConfig = field(default_factory=SelectionConfig)
    kept: torch.Tensor | None = None
    stability: Stability | None = None
    column: str = ""

    @property
    def cell(self) -> tuple[int, int]:
        """(row, column) of the chosen candidate in the table's grid."""
        i = self.table.layers.index(self.direction.layer)
        return i, self.table.columns.index(self.column or self.direction.position)

    @property
    def selected_share(self) -> float:
        """Share of bootstrap resamples that select this candidate (nan without a bootstrap)."""
        if self.stability is None:
            return math.nan
        return float(self.stability.selected_share[self.cell])

    @property
    def pass_share(self) -> float:
        """Share of bootstrap resamples in which it passes the filters (nan without one)."""
        if self.stability is None:
            return math.nan
        return float(self.stability.pass_share[self.cell])

    @property
    def stable(self) -> bool | None:
        """Whether the selected share reaches `config.min_selected_share` (None: no bootstrap)."""
        if self.stability is None:
            return None
        return self.selected_share >= self.config.min_selected_share

    def rows(self) -> list[dict[str, Any]]:
        """The table's rows with `kept`, and the bootstrap's intervals and shares if any."""
        rows = self.table.rows()
        st = self.stability
        for n, row in enumerate(rows):
            i, j = divmod(n, len(self.table.columns))
            row["kept"] = bool(self.kept[i, j]) if self.kept is not None else False
            if st is not None:
                for name in ("bypass", "induce", "kl"):
                    row[f"{name}_lo"] = float(getattr(st, f"{name}_lo")[i, j])
                    row[f"{name}_hi"] = float(getattr(st, f"{name}_hi")[i, j])
                row["pass_share"] = float(st.pass_share[i, j])
                row["selected_share"] = float(st.selected_share[i, j])
        return rows


def _operation(tokens: RefusalTokens | None, ids: tuple[int, ...]) -> str:
    """The selected direction's `operation`: how it was chosen, and with which tokens."""
    info = tokens or RefusalTokens(ids)
    names = info.strings or tuple(str(t) for t in info.ids)
    listed = ", ".join(f"{t} {s!r}" for t, s in zip(info.ids, names, strict=True))
    cover = "" if math.isnan(info.coverage) else f", opening {info.coverage:.1%} of greedy refusals"
    return (
        "diff_in_means; selected by lowest bypass score under directional ablation; "
        f"refusal tokens [{listed}]{cover}"
    )


def selectable_layers(n_layers: int, config: SelectionConfig | None = None) -> tuple[int, ...]:
    """The layers whose candidates can pass the layer filter: `0 .. layer_cut - 1`.

    >>> selectable_layers(6)
    (0, 1, 2, 3)
    """
    config = config or SelectionConfig()
    return tuple(range(layer_cut(n_layers, config.max_layer_fraction)))


def select_direction(table: ScoreTable, config: SelectionConfig | None = None) -> Selection:
    """Pick the candidate with the lowest bypass score among those passing the filters.

    With per-prompt scores and `config.n_resamples > 0`, the validation prompts are also
    bootstrapped (`Selection.stability`); a selection chosen in fewer than
    `config.min_selected_share` of the resamples is logged as unstable (`Selection.stable`).

    Raises:
        DirectionError: No candidate passes; the message says which filter removed most.
    """
    config = config or SelectionConfig()
    finite, checks = candidate_filters(table.bypass, table.induce, table.kl, table.layers, config)
    kept = finite & checks["KL"] & checks["induce"] & checks["layer"]
    if not bool(kept.any()):
        # Count only real candidates per filter; a zero mean difference (NaN scores) is no
        # candidate at all and is listed apart.
        # Candidates beyond the layer cut may not have been scored (`layers=`): they count
        # for the layer filter whatever their scores.
        beyond = ~checks["layer"]
        removed = {k: finite & ~v for k, v in checks.items()}
        removed["layer"] = beyond
        counts = ", ".join(f"{k}: {int(v.sum())}" for k, v in removed.items())
        n_real = int((finite | beyond).sum())
        n_zero = int((~finite & ~beyond).sum())
        raise DirectionError(
            f"no candidate passes the filters (of {n_real} candidates, removed by {counts}; "
            f"{n_zero} more had a zero mean difference); relax SelectionConfig (max_kl, "
            "min_induce, max_layer_fraction) or use more prompts"
        )
    masked = torch.where(kept, table.bypass, torch.full_like(table.bypass, math.inf))
    i, j = divmod(int(masked.argmin()), masked.shape[1])
    direction = table.candidates.direction(
        table.layers[i], table.columns[j], operation=_operation(table.tokens, table.refusal_tokens)
    )
    selection = Selection(
        direction=direction,
        bypass=float(table.bypass[i, j]),
        induce=float(table.induce[i, j]),
        kl=float(table.kl[i, j]),
        table=table,
        config=config,
        kept=kept,
        stability=table.stability(config),
        column=table.columns[j],
    )
    if selection.stable is False:
        logger.warning(
            "the selected refusal direction (layer %d, %s) is chosen in only %.0f%% of %d "
            "bootstrap resamples of the validation prompts (< %.0f%%): the choice is unstable",
            direction.layer,
            selection.column,
            100 * selection.selected_share,
            config.n_resamples,
            100 * config.min_selected_share,
        )
    return selection
