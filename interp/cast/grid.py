"""The condition's grid search: F1 of "cosine >= threshold" for every (layer, threshold)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from interp._types import Bool, Float
from interp.errors import InterpError

__all__ = ["CastError", "ConditionGrid", "condition_grid", "cosine_to", "fires"]


class CastError(InterpError, ValueError):
    """Conditional steering cannot be fitted or applied as asked (bad grid, one-class data)."""


def cosine_to(
    states: Float[torch.Tensor, "prompts d_model"], vector: Float[torch.Tensor, " d_model"]
) -> Float[torch.Tensor, " prompts"]:
    """Cosine of each row of `states` [n, d] with `vector` [d] (float64; 0 for a zero row).

    Example:
        >>> cosine_to(torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0]]), torch.tensor([2.0, 0.0]))
        tensor([1.0000, 0.7071, 0.0000], dtype=torch.float64)
    """
    x = states.to(torch.float64)
    v = vector.to(torch.float64)
    return (x @ v) / (x.norm(dim=-1) * v.norm()).clamp_min(1e-300)


def fires(
    similarity: Float[torch.Tensor, "*rows"], threshold: float
) -> Bool[torch.Tensor, "*rows"]:
    """Where the condition holds: `similarity >= threshold` (bool, same shape).

    Example:
        >>> fires(torch.tensor([0.1, 0.5, 0.9]), 0.5).tolist()
        [False, True, True]
    """
    return similarity >= threshold


def _scores(predicted: torch.Tensor, labels: torch.Tensor) -> tuple[float, float, float]:
    """(precision, recall, F1) of bool predictions against 0/1 labels; 0 where undefined."""
    tp = int((predicted & labels).sum())
    fp = int((predicted & ~labels).sum())
    fn = int((~predicted & labels).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
    return precision, recall, f1


@dataclass(frozen=True, eq=False)
class ConditionGrid:
    """F1 of the condition at every candidate layer and threshold, on validation prompts.

    Harmful prompts are the positive class; a prompt is predicted harmful when the cosine of
    its state with the layer's condition vector is `>=` the threshold. Arrays are float64
    [n_layers, n_thresholds].

    Attributes:
        layers: The candidate layer of each row.
        thresholds: The thresholds tried at each layer.
        precision: Precision of each cell.
        recall: Recall of each cell.
        f1: F1 of each cell.
        n_positive: Harmful validation prompts.
        n_negative: Harmless validation prompts.
        best_layer: Layer of the chosen cell.
        best_threshold: Threshold of the chosen cell.
        best_f1: Its F1.
    """

    layers: tuple[int, ...]
    thresholds: torch.Tensor
    precision: torch.Tensor
    recall: torch.Tensor
    f1: torch.Tensor
    n_positive: int
    n_negative: int
    best_layer: int
    best_threshold: float
    best_f1: float

    def rows(self) -> list[dict[str, Any]]:
        """One dict per cell: layer, threshold, precision, recall, f1."""
        return [
            {
                "layer": layer,
                "threshold": float(self.thresholds[i, j]),
                "precision": float(self.precision[i, j]),
                "recall": float(self.recall[i, j]),
                "f1": float(self.f1[i, j]),
            }
            for i, layer in enumerate(self.layers)
            for j in range(self.thresholds.shape[1])
        ]

    def best_per_layer(self) -> list[dict[str, Any]]:
        """The best F1 of each layer and the threshold reaching it (first one)."""
        out = []
        for i, layer in enumerate(self.layers):
            j = int(self.f1[i].argmax())
            out.append(
                {
                    "layer": layer,
                    "threshold": float(self.thresholds[i, j]),
                    "f1": float(self.f1[i, j]),
                }
            )
        return out

    def tensors(self) -> dict[str, torch.Tensor]:
        """The arrays, for safetensors."""
        return {
            "grid_thresholds": self.thresholds.contiguous(),
            "grid_precision": self.precision.contiguous(),
            "grid_recall": self.recall.contiguous(),
            "grid_f1": self.f1.contiguous(),
        }

    def metadata(self) -> dict[str, Any]:
        """Everything but the arrays, JSON-ready."""
        return {
            "layers": list(self.layers),
            "n_positive": self.n_positive,
            "n_negative": self.n_negative,
            "best_layer": self.best_layer,
            "best_threshold": self.best_threshold,
            "best_f1": self.best_f1,
        }

    @classmethod
    def from_saved(cls, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> ConditionGrid:
        """Rebuild a grid from `tensors()` and `metadata()`."""
        return cls(
            layers=tuple(int(x) for x in meta["layers"]),
            thresholds=tensors["grid_thresholds"],
            precision=tensors["grid_precision"],
            recall=tensors["grid_recall"],
            f1=tensors["grid_f1"],
            n_positive=int(meta["n_positive"]),
            n_negative=int(meta["n_negative"]),
            best_layer=int(meta["best_layer"]),
            best_threshold=float(meta["best_threshold"]),
            best_f1=float(meta["best_f1"]),
        )


def _default_thresholds(similarity: torch.Tensor, n: int) -> torch.Tensor:
    """`n` evenly spaced thresholds from the lowest to the highest similarity of each layer."""
    low, high = similarity.min(dim=1).values, similarity.max(dim=1).values
    steps = torch.linspace(0.0, 1.0, n, dtype=torch.float64)
    return low[:, None] + (high - low)[:, None] * steps[None, :]


def condition_grid(
    similarity: torch.Tensor,
    labels: Sequence[int] | torch.Tensor,
    layers: Sequence[int],
    thresholds: Sequence[float] | torch.Tensor | None = None,
    *,
    n_thresholds: int = 101,
) -> ConditionGrid:
    """Grid-search the layer and threshold that maximise the condition's F1.

    The winner is the highest F1; ties go to the earliest layer, then to the middle one of
    that layer's tied thresholds (the widest margin the grid offers).

    Args:
        similarity: Cosine of each validation prompt's state with each layer's condition
            vector, [n_layers, n_prompts].
        labels: 1 for harmful (positive), 0 for harmless, per prompt.
        layers: The layer of each row of `similarity`.
        thresholds: Thresholds shared by every layer; by default `n_thresholds` evenly
            spaced between each layer's lowest and highest similarity.
        n_thresholds: Size of the default grid.

    Returns:
        The grid table and its best cell.

    Raises:
        CastError: Shapes disagree, the labels hold one class only, or the grid is empty.
    """
    sim = torch.as_tensor(similarity, dtype=torch.float64)
    y = torch.as_tensor(labels).to(torch.long)
    if sim.ndim != 2 or sim.shape[0] != len(layers) or sim.shape[1] != y.shape[0]:
        raise CastError(
            f"similarity must be [n_layers={len(layers)}, n_prompts={y.shape[0]}], "
            f"got {tuple(sim.shape)}"
        )
    positive = y == 1
    if not bool(positive.any()) or bool(positive.all()):
        raise CastError("the condition's grid search needs harmful and harmless validation prompts")
    if thresholds is None:
        if n_thresholds < 2:
            raise CastError(f"n_thresholds must be >= 2, got {n_thresholds}")
        grid = _default_thresholds(sim, n_thresholds)
    else:
        shared = torch.as_tensor(thresholds, dtype=torch.float64).flatten()
        if shared.numel() == 0:
            raise CastError("the threshold grid is empty; pass at least one threshold")
        grid = shared[None, :].expand(len(layers), -1).clone()
    shape = tuple(grid.shape)
    precision, recall, f1 = (torch.zeros(shape, dtype=torch.float64) for _ in range(3))
    for i in range(shape[0]):
        for j in range(shape[1]):
            p, r, f = _scores(fires(sim[i], float(grid[i, j])), positive)
            precision[i, j], recall[i, j], f1[i, j] = p, r, f
    best = float(f1.max())
    tied = f1 >= best - 1e-12
    i = int(tied.any(dim=1).nonzero()[0])
    cols = tied[i].nonzero().flatten()
    j = int(cols[len(cols) // 2])
    return ConditionGrid(
        layers=tuple(int(x) for x in layers),
        thresholds=grid,
        precision=precision,
        recall=recall,
        f1=f1,
        n_positive=int(positive.sum()),
        n_negative=int((~positive).sum()),
        best_layer=int(layers[i]),
        best_threshold=float(grid[i, j]),
        best_f1=best,
    )
