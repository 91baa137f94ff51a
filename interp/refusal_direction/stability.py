"""How stable a selection is: a bootstrap of the validation prompts over per-prompt scores.

`score_candidates` keeps every candidate's bypass score per harmful validation prompt and its
induce score and KL per harmless one. A resample draws each set's prompts with replacement
(seeded), averages those per-prompt values, applies the same filters as `select_direction`
(`candidate_filters`) and picks the lowest bypass score; no model is run again. Per candidate
this gives an interval for each score, the share of resamples in which it passes every
filter (`pass_share`), and the share in which it is the one selected (`selected_share`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from interp._types import Float
from interp.refusal_direction.filters import SelectionConfig, candidate_filters

__all__ = ["Stability", "bootstrap_stability"]


@dataclass(frozen=True, eq=False)
class Stability:
    """Bootstrap statistics of every candidate; arrays are float64 [n_layers, n_columns].

    Attributes:
        n_resamples: Resamples drawn.
        seed: Their seed.
        level: Coverage of the intervals (0.95 by default).
        bypass_lo: Lower end of the bypass interval (`bypass_hi` the upper; likewise below).
        bypass_hi: Upper end of the bypass interval.
        induce_lo: Lower end of the induce interval.
        induce_hi: Upper end of the induce interval.
        kl_lo: Lower end of the KL interval.
        kl_hi: Upper end of the KL interval.
        pass_share: Share of resamples in which the candidate passes every filter.
        selected_share: Share of resamples in which it is selected.
        none_share: Share of resamples in which no candidate passes.
    """

    n_resamples: int
    seed: int
    level: float
    bypass_lo: Float[torch.Tensor, "layer n_positions"]
    bypass_hi: Float[torch.Tensor, "layer n_positions"]
    induce_lo: Float[torch.Tensor, "layer n_positions"]
    induce_hi: Float[torch.Tensor, "layer n_positions"]
    kl_lo: Float[torch.Tensor, "layer n_positions"]
    kl_hi: Float[torch.Tensor, "layer n_positions"]
    pass_share: Float[torch.Tensor, "layer n_positions"]
    selected_share: Float[torch.Tensor, "layer n_positions"]
    none_share: float


def _resampled_means(
    per_prompt: Float[torch.Tensor, "layer n_positions prompts"], index: torch.Tensor
) -> Float[torch.Tensor, "layer n_positions resamples"]:
    """Mean of `per_prompt` over each row of `index` [n_resamples, n_prompts]."""
    return per_prompt[..., index].mean(-1)


def _interval(
    values: Float[torch.Tensor, "layer n_positions resamples"], level: float
) -> tuple[torch.Tensor, torch.Tensor]:
    tail = (1.0 - level) / 2
    q = torch.tensor([tail, 1.0 - tail], dtype=values.dtype)
    both = torch.nanquantile(values, q, dim=-1)
    return both[0], both[1]


def bootstrap_stability(
    bypass: Float[torch.Tensor, "layer n_positions harmful"],
    induce: Float[torch.Tensor, "layer n_positions harmless"],
    kl: Float[torch.Tensor, "layer n_positions harmless"],
    layers: tuple[int, ...],
    config: SelectionConfig | None = None,
) -> Stability:
    """Resample the validation prompts and re-select on the per-prompt scores.

    The harmful prompts (bypass) and the harmless prompts (induce and KL, which share their
    prompts and so one resample) are drawn independently, `config.n_resamples` times, with
    `torch.Generator().manual_seed(config.seed)`.

    Args:
        bypass: Bypass score of each candidate on each harmful validation prompt.
        induce: Induce score on each harmless validation prompt.
        kl: KL on each harmless validation prompt.
        layers: Layer of each first-axis row.
        config: Filters and bootstrap settings (`SelectionConfig()` by default).

    Returns:
        Intervals, pass shares and selected shares of every candidate.

    Raises:
        ValueError: `config.n_resamples` is 0, or the arrays do not line up.
    """
    config = config or SelectionConfig()
    if config.n_resamples < 1:
        raise ValueError("bootstrap_stability needs n_resamples >= 1 (SelectionConfig)")
    if bypass.shape[:2] != induce.shape[:2] or induce.shape != kl.shape:
        raise ValueError(
            f"per-prompt scores do not line up: bypass {tuple(bypass.shape)}, induce "
            f"{tuple(induce.shape)}, kl {tuple(kl.shape)}; pass [n_layers, n_columns, n_prompts]"
        )
    gen = torch.Generator().manual_seed(config.seed)
    n_harm, n_safe, n_b = bypass.shape[-1], induce.shape[-1], config.n_resamples
    harm_index = torch.randint(n_harm, (n_b, n_harm), generator=gen)
    safe_index = torch.randint(n_safe, (n_b, n_safe), generator=gen)
    b_bypass = _resampled_means(bypass.double(), harm_index)
    b_induce = _resampled_means(induce.double(), safe_index)
    b_kl = _resampled_means(kl.double(), safe_index)
    finite, checks = candidate_filters(b_bypass, b_induce, b_kl, layers, config)
    kept = finite & checks["KL"] & checks["induce"] & checks["layer"]
    masked = torch.where(kept, b_bypass, torch.full_like(b_bypass, torch.inf))
    flat = masked.reshape(-1, n_b)
    best = flat.argmin(0)
    some = kept.reshape(-1, n_b).any(0)
    chosen = torch.zeros_like(flat)
    chosen[best[some], torch.nonzero(some).flatten()] = 1.0
    grid = bypass.shape[:2]
    lo_hi = {name: _interval(v, config.level) for name, v in
             (("bypass", b_bypass), ("induce", b_induce), ("kl", b_kl))}  # fmt: skip
    return Stability(
        n_resamples=n_b,
        seed=config.seed,
        level=config.level,
        bypass_lo=lo_hi["bypass"][0],
        bypass_hi=lo_hi["bypass"][1],
        induce_lo=lo_hi["induce"][0],
        induce_hi=lo_hi["induce"][1],
        kl_lo=lo_hi["kl"][0],
        kl_hi=lo_hi["kl"][1],
        pass_share=kept.double().mean(-1),
        selected_share=chosen.mean(-1).reshape(grid),
        none_share=float((~some).double().mean()),
    )
