"""Score refusal-direction candidates with single forward passes, and select one.

The refusal score of a prompt is the log-odds of the model's refusal tokens at the first
response position: with p_ref the summed probability of those tokens,
``score = log p_ref - log(1 - p_ref)`` (Arditi et al. 2024). The refusal tokens are derived
from the model's own refusals (`refusal_tokens`), never hard-coded per family.

For every candidate (layer x position) on validation prompts:

* bypass score: mean refusal score on harmful prompts with the direction ablated everywhere;
* induce score: mean refusal score on harmless prompts with the raw vector added at its layer;
* KL: mean KL(base || ablated) of the last-position next-token distribution on harmless prompts.

`select_direction` applies the paper's filters (KL <= 0.1, induce >= 0, layer < 80% depth) and
picks the lowest bypass score; `ScoreTable.pareto` lists the bypass-vs-KL trade-off.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from tqdm.auto import tqdm
from transformer_lens.model_bridge import TransformerBridge

from interp._checks import check_real
from interp._types import Float
from interp.activations import batches
from interp.chat import ChatBatch
from interp.data.promptset import texts_of
from interp.directions import Candidates, Direction, DirectionError
from interp.evaluation import Judge, SubstringJudge
from interp.generation import generate
from interp.interventions import ActAdd, DirectionalAblation, apply
from interp.min_samples import MIN_PER_CLASS, require_per_class

__all__ = [
    "ScoreTable",
    "Selection",
    "SelectionConfig",
    "refusal_score",
    "refusal_tokens",
    "layer_cut",
    "score_candidates",
    "select_direction",
]


def refusal_tokens(
    model: TransformerBridge,
    harmful: Sequence[str] | Any,
    *,
    judge: Judge | None = None,
    system: str | None = None,
    max_new_tokens: int = 24,
    min_share: float = 0.05,
    batch_size: int = 32,
    min_per_class: int = MIN_PER_CLASS,
) -> tuple[int, ...]:
    """The first tokens of the model's own greedy refusals to `harmful` prompts.

    Args:
        model: The bridge.
        harmful: Prompts the model should refuse (train split).
        judge: Decides which responses are refusals (DRO substring judge by default).
        system: System prompt used when generating.
        max_new_tokens: Response length given to the judge.
        min_share: Keep first tokens that start at least this share of the refusals.
        batch_size: Prompts per forward pass.
        min_per_class: Refusals required (`interp.MIN_PER_CLASS` by default).

    Returns:
        Token ids, most frequent first.

    Raises:
        DirectionError: The model refused none of the prompts.
        TooFewExamplesError: It refused fewer than `min_per_class` of them.
    """
    chosen = judge if judge is not None else SubstringJudge("dro")
    out = generate(
        model, harmful, system=system, max_new_tokens=max_new_tokens, batch_size=batch_size
    )
    flags = chosen.is_refusal(out.texts, out.prompts)
    firsts = Counter(toks[0] for toks, flag in zip(out.tokens, flags, strict=True) if flag and toks)
    if not firsts:
        raise DirectionError(
            f"the model refused none of the {len(out.texts)} harmful prompts, so there are no "
            "refusal tokens to score with; use prompts it refuses or pass refusal tokens explicitly"
        )
    total = sum(firsts.values())
    require_per_class(
        "the refusal tokens (first tokens of the model's own refusals)",
        {f"refusals of {len(out.texts)} harmful prompts": total},
        minimum=min_per_class,
        fix="Pass more harmful prompts that the model refuses, or the refusal tokens explicitly.",
    )
    return tuple(tok for tok, n in firsts.most_common() if n / total >= min_share)


def refusal_score(
    logits: Float[torch.Tensor, "*batch d_vocab"], tokens: Sequence[int]
) -> Float[torch.Tensor, "*batch"]:
    """Log-odds of the refusal tokens: log p_ref - log(1 - p_ref), per row of [batch, d_vocab].

    Computed from log-softmax with two log-sum-exps, so it stays finite for p_ref near 0 or 1.
    """
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
    batch = batch.to(model.cfg.device)
    logits = model(batch.tokens, attention_mask=batch.attention_mask)
    return logits[:, -1].double().cpu()


def _kl(
    base_logits: Float[torch.Tensor, "batch d_vocab"],
    new_logits: Float[torch.Tensor, "batch d_vocab"],
) -> Float[torch.Tensor, " batch"]:
    """KL(base || new) per row, from logits [batch, d_vocab]."""
    p_log = torch.log_softmax(base_logits, dim=-1)
    q_log = torch.log_softmax(new_logits, dim=-1)
    return (p_log.exp() * (p_log - q_log)).sum(-1)


class CandidateGrid:
    """A table laid out on the candidates' (layer x position) grid.

    Subclasses are frozen dataclasses with a `candidates` field and [n_layers, n_positions]
    arrays, and name the arrays `rows` reports in `ROW_FIELDS`.
    """

    candidates: Candidates
    ROW_FIELDS: ClassVar[tuple[str, ...]] = ()

    @property
    def layers(self) -> tuple[int, ...]:
        """Layer of each row."""
        return self.candidates.layers

    @property
    def columns(self) -> tuple[str, ...]:
        """Position label of each column."""
        return self.candidates.columns

    def rows(self) -> list[dict[str, Any]]:
        """One dict per candidate: layer, position and the `ROW_FIELDS` values."""
        arrays = {name: getattr(self, name) for name in self.ROW_FIELDS}
        return [
            {"layer": layer, "position": col, **{k: float(v[i, j]) for k, v in arrays.items()}}
            for i, layer in enumerate(self.layers)
            for j, col in enumerate(self.columns)
        ]


@dataclass(frozen=True, eq=False)
class ScoreTable(CandidateGrid):
    """Scores of every candidate; arrays are float64 [n_layers, n_positions].

    Attributes:
        candidates: The scored candidates.
        bypass: Mean refusal score on harmful prompts under ablation (lower = stronger).
        induce: Mean refusal score on harmless prompts with the vector added at its layer.
        kl: Mean KL(base || ablated) on harmless prompts at the last position.
        base_harmful: Mean refusal score on the harmful prompts without intervention.
        base_harmless: Mean refusal score on the harmless prompts without intervention.
        refusal_tokens: The token ids the scores use.
    """

    candidates: Candidates
    bypass: Float[torch.Tensor, "layer n_positions"]
    induce: Float[torch.Tensor, "layer n_positions"]
    kl: Float[torch.Tensor, "layer n_positions"]
    base_harmful: float
    base_harmless: float
    refusal_tokens: tuple[int, ...]
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


def _score_one(
    model: TransformerBridge,
    direction: Direction,
    harmful: Sequence[ChatBatch],
    harmless: Sequence[ChatBatch],
    base_safe: Sequence[torch.Tensor],
    tokens: Sequence[int],
) -> tuple[float, float, float]:
    bypass, induce, kl = [], [], []
    with apply(model, DirectionalAblation(direction)):
        bypass = [refusal_score(_last_logits(model, b), tokens) for b in harmful]
        ablated = [_last_logits(model, b) for b in harmless]
    kl = [_kl(base, new) for base, new in zip(base_safe, ablated, strict=True)]
    with apply(model, ActAdd(direction, 1.0)):
        induce = [refusal_score(_last_logits(model, b), tokens) for b in harmless]
    return tuple(float(torch.cat(x).mean()) for x in (bypass, induce, kl))  # type: ignore[return-value]


def score_candidates(
    model: TransformerBridge,
    candidates: Candidates,
    harmful: Sequence[str] | Any,
    harmless: Sequence[str] | Any,
    tokens: Sequence[int],
    *,
    system: str | None = None,
    batch_size: int = 32,
    progress: bool = False,
    min_per_class: int = MIN_PER_CLASS,
) -> ScoreTable:
    """Bypass, induce and KL scores of every candidate on validation prompts.

    Only single forward passes are used (no generation): 3 per candidate and batch.

    Args:
        model: The bridge the candidates come from.
        candidates: From `diff_in_means`.
        harmful: Validation prompts the model refuses.
        harmless: Validation prompts it answers.
        tokens: Refusal token ids (from `refusal_tokens`).
        system: System prompt used when rendering.
        batch_size: Prompts per forward pass.
        progress: Show a progress bar over candidates.
        min_per_class: Validation prompts required of each kind (`interp.MIN_PER_CLASS`).

    Returns:
        The full score table.

    Raises:
        TooFewExamplesError: Fewer than `min_per_class` harmful or harmless prompts.
    """
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
    base_harm = torch.cat([refusal_score(_last_logits(model, b), tokens) for b in harm])
    base_safe = [_last_logits(model, b) for b in safe]
    shape = tuple(candidates.vectors.shape[:2])
    bypass, induce, kl = (torch.full(shape, math.nan, dtype=torch.float64) for _ in range(3))
    cells = [(i, j) for i in range(shape[0]) for j in range(shape[1])]
    for i, j in tqdm(cells, desc="score candidates", disable=not progress):
        vec = candidates.vectors[i, j]
        if not bool(torch.isfinite(vec).all()) or float(vec.norm()) <= 1e-12:
            continue  # a zero or NaN candidate scores NaN and is never selected
        direction = candidates.direction(candidates.layers[i], candidates.columns[j])
        bypass[i, j], induce[i, j], kl[i, j] = _score_one(
            model, direction, harm, safe, base_safe, tokens
        )
    return ScoreTable(
        candidates=candidates,
        bypass=bypass,
        induce=induce,
        kl=kl,
        base_harmful=float(base_harm.mean()),
        base_harmless=float(torch.cat([refusal_score(x, tokens) for x in base_safe]).mean()),
        refusal_tokens=tuple(int(t) for t in tokens),
    )


@dataclass(frozen=True)
class SelectionConfig:
    """Filters applied before picking the lowest bypass score (the paper's defaults).

    Attributes:
        max_kl: Discard candidates whose KL on harmless prompts exceeds this.
        min_induce: Keep only candidates whose induce score is above this (strictly).
        max_layer_fraction: Discard layers `>= int(max_layer_fraction * n_layers)`, the
            reference's rule (`layer_cut`): at 0.8 it keeps layers 0-3 of 6, 0-21 of 28, 0-24
            of 32.
    """

    max_kl: float = 0.1
    min_induce: float = 0.0
    max_layer_fraction: float = 0.8

    def __post_init__(self) -> None:
        check_real(self.max_layer_fraction, "max_layer_fraction", low=0, high=1, low_open=True)
        check_real(self.max_kl, "max_kl", low=0)
        check_real(self.min_induce, "min_induce")


def layer_cut(n_layers: int, fraction: float = 0.8) -> int:
    """The first discarded layer: candidates need `layer < int(fraction * n_layers)`.

    The reference implementation (Arditi et al.'s `filter_fn`) discards
    `layer >= int(0.8 * n_layers)`; this is that rule, so that both keep the same layers.
    """
    return int(fraction * n_layers)


@dataclass(frozen=True, eq=False)
class Selection:
    """The selected candidate and why.

    Attributes:
        direction: The chosen direction.
        bypass: Its bypass score.
        induce: Its induce score.
        kl: Its KL on harmless prompts.
        table: The full score table.
        config: The filters used.
        kept: Mask [n_layers, n_positions] of candidates that passed the filters.
    """

    direction: Direction
    bypass: float
    induce: float
    kl: float
    table: ScoreTable
    config: SelectionConfig = field(default_factory=SelectionConfig)
    kept: torch.Tensor | None = None


def select_direction(table: ScoreTable, config: SelectionConfig | None = None) -> Selection:
    """Pick the candidate with the lowest bypass score among those passing the filters.

    Raises:
        DirectionError: No candidate passes; the message says which filter removed most.
    """
    config = config or SelectionConfig()
    n_layers = len(table.layers)
    layers = torch.tensor(table.layers, dtype=torch.float64)[:, None].expand_as(table.bypass)
    finite = table.bypass.isfinite() & table.induce.isfinite() & table.kl.isfinite()
    cut = layer_cut(max(n_layers, max(table.layers) + 1), config.max_layer_fraction)
    checks = {
        "KL": table.kl <= config.max_kl,
        "induce": table.induce > config.min_induce,
        "layer": layers < cut,
    }
    kept = finite & checks["KL"] & checks["induce"] & checks["layer"]
    if not bool(kept.any()):
        # Count only real candidates per filter; a zero mean difference (NaN scores) is no
        # candidate at all and is listed apart.
        counts = ", ".join(f"{k}: {int((finite & ~v).sum())}" for k, v in checks.items())
        n_real, n_zero = int(finite.sum()), int((~finite).sum())
        raise DirectionError(
            f"no candidate passes the filters (of {n_real} candidates, removed by {counts}; "
            f"{n_zero} more had a zero mean difference); relax SelectionConfig (max_kl, "
            "min_induce, max_layer_fraction) or use more prompts"
        )
    masked = torch.where(kept, table.bypass, torch.full_like(table.bypass, math.inf))
    flat = int(masked.argmin())
    i, j = divmod(flat, masked.shape[1])
    direction = table.candidates.direction(
        table.layers[i],
        table.columns[j],
        operation="diff_in_means; selected by lowest bypass score under directional ablation",
    )
    return Selection(
        direction=direction,
        bypass=float(table.bypass[i, j]),
        induce=float(table.induce[i, j]),
        kl=float(table.kl[i, j]),
        table=table,
        config=config,
        kept=kept,
    )
