"""The reference's selection filters, and the (layer x column) grid every score table shares.

A candidate passes when its KL on harmless prompts is at most `max_kl`, its induce score is
above `min_induce` and its layer is below `int(max_layer_fraction * n_layers)` (Arditi et
al.'s `filter_fn`); NaN scores (a zero mean difference) never pass. `candidate_filters`
evaluates those checks on score arrays of any trailing shape, so the selection and its
bootstrap (`interp.refusal_direction.stability`) apply exactly the same rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from interp._checks import check_int, check_real
from interp.directions import Candidates

__all__ = ["CandidateGrid", "SelectionConfig", "candidate_filters", "layer_cut"]


@dataclass(frozen=True)
class SelectionConfig:
    """Filters applied before picking the lowest bypass score, and the stability check.

    Attributes:
        max_kl: Discard candidates whose KL on harmless prompts exceeds this.
        min_induce: Keep only candidates whose induce score is above this (strictly).
        max_layer_fraction: Discard layers `>= int(max_layer_fraction * n_layers)`, the
            reference's rule (`layer_cut`): at 0.8 it keeps layers 0-3 of 6, 0-21 of 28, 0-24
            of 32.
        n_resamples: Bootstrap resamples of the validation prompts (0 turns it off).
        seed: Seed of the bootstrap.
        level: Coverage of the bootstrap intervals (0.95: the 2.5 % and 97.5 % quantiles).
        min_selected_share: A selection chosen in fewer resamples than this share is flagged
            as unstable.
    """

    max_kl: float = 0.1
    min_induce: float = 0.0
    max_layer_fraction: float = 0.8
    n_resamples: int = 50
    seed: int = 0
    level: float = 0.95
    min_selected_share: float = 0.5

    def __post_init__(self) -> None:
        check_real(self.max_layer_fraction, "max_layer_fraction", low=0, high=1, low_open=True)
        if self.max_kl != float("inf"):  # inf: no KL filter
            check_real(self.max_kl, "max_kl", low=0)
        if self.min_induce != float("-inf"):  # -inf: no induce filter
            check_real(self.min_induce, "min_induce")
        check_int(self.n_resamples, "n_resamples (0 = no bootstrap)", minimum=0)
        check_int(self.seed, "seed", minimum=0)
        check_real(self.level, "level (e.g. 0.95)", low=0, high=1, low_open=True, high_open=True)
        check_real(self.min_selected_share, "min_selected_share", low=0, high=1)

    def to_dict(self) -> dict[str, Any]:
        """The values used, JSON-ready."""
        return {
            "max_kl": self.max_kl,
            "min_induce": self.min_induce,
            "max_layer_fraction": self.max_layer_fraction,
            "n_resamples": self.n_resamples,
            "seed": self.seed,
            "level": self.level,
            "min_selected_share": self.min_selected_share,
        }


def layer_cut(n_layers: int, fraction: float = 0.8) -> int:
    """The first discarded layer: candidates need `layer < int(fraction * n_layers)`.

    The reference implementation (Arditi et al.'s `filter_fn`) discards
    `layer >= int(0.8 * n_layers)`; this is that rule, so that both keep the same layers.

    >>> [layer_cut(n) for n in (6, 28, 32)]
    [4, 22, 25]
    """
    return int(fraction * n_layers)


def candidate_filters(
    bypass: torch.Tensor,
    induce: torch.Tensor,
    kl: torch.Tensor,
    layers: tuple[int, ...],
    config: SelectionConfig,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Finite mask and per-filter pass masks of score arrays [n_layers, n_columns, *rest].

    Returns:
        `finite` (all three scores finite) and `{"KL", "induce", "layer"}` -> pass mask, all
        of the scores' shape. A candidate is kept where `finite` and every check hold.
    """
    n_layers = max(len(layers), max(layers) + 1)
    cut = layer_cut(n_layers, config.max_layer_fraction)
    shape = (len(layers),) + (1,) * (bypass.ndim - 1)
    layer = torch.tensor(layers, dtype=torch.float64).reshape(shape).expand_as(bypass)
    finite = bypass.isfinite() & induce.isfinite() & kl.isfinite()
    checks = {"KL": kl <= config.max_kl, "induce": induce > config.min_induce, "layer": layer < cut}
    return finite, checks


class CandidateGrid:
    """A table laid out on the candidates' (layer x column) grid.

    Subclasses are frozen dataclasses with a `candidates` field and [n_layers, n_columns]
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
        """Column label of each column (a position, or `site/position` in a site sweep)."""
        return self.candidates.columns

    def rows(self) -> list[dict[str, Any]]:
        """One dict per candidate: layer, position (column label) and the `ROW_FIELDS` values."""
        arrays = {name: getattr(self, name) for name in self.ROW_FIELDS}
        return [
            {"layer": layer, "position": col, **{k: float(v[i, j]) for k, v in arrays.items()}}
            for i, layer in enumerate(self.layers)
            for j, col in enumerate(self.columns)
        ]
