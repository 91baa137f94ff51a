"""SafeInfer's configuration and the errors its checks raise.

`SafeInferConfig` is the small frozen value behind `SafeInfer`: where and how strongly the
function vector is added, how strongly the unsafe model vetoes tokens, which heads make the
vector and which phases run. Every field is validated on construction with a message that
says how to fix it, and the checks against a model (`check_layer`, `check_heads`) are shared
with the intervention and the extraction code.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

from interp.errors import ArtifactMismatchError, InterpError, SiteError

__all__ = [
    "MODES",
    "STRATEGIES",
    "AlphaError",
    "FunctionVectorMismatchError",
    "HeadOutOfRangeError",
    "LayerOutOfRangeError",
    "Mode",
    "SafeInferConfig",
    "Strategy",
    "check_alpha",
    "check_heads",
    "check_layer",
    "default_layer",
]

Mode = Literal["sa", "sgds", "both"]
MODES: tuple[str, ...] = get_args(Mode)
#: How sGDS runs the unsafe model: the doubled batch with one cache, or two passes.
Strategy = Literal["doubled", "two_pass"]
STRATEGIES: tuple[str, ...] = get_args(Strategy)
Head = tuple[int, int]


class FunctionVectorMismatchError(ArtifactMismatchError):
    """A saved SafeInfer function vector belongs to another model."""


class AlphaError(InterpError, ValueError):
    """The sGDS weight alpha lies outside [0, 1)."""


class HeadOutOfRangeError(SiteError):
    """An attention head (layer, head) does not exist in the model."""


class LayerOutOfRangeError(SiteError):
    """A block index (the SA layer, a searched layer) is outside the model."""


def check_alpha(alpha: float) -> float:
    """Return `alpha` as a float after checking 0 <= alpha < 1.

    >>> check_alpha(0.99)
    0.99
    """
    value = float(alpha)
    if not (math.isfinite(value) and 0.0 <= value < 1.0):
        raise AlphaError(
            f"sGDS alpha must be in [0, 1), got {alpha}: the unsafe model's penalty weight is "
            "alpha / (1 - alpha), infinite at 1; use e.g. 0.99 (the paper) or 0 to switch it off"
        )
    return value


def check_layer(layer: int, n_layers: int, what: str = "layer") -> int:
    """Return `layer` after checking it is a block of a model with `n_layers` blocks."""
    if not 0 <= int(layer) < n_layers:
        raise LayerOutOfRangeError(
            f"{what} {layer} is out of range: the model has {n_layers} blocks, so use a layer "
            f"in 0..{n_layers - 1}"
        )
    return int(layer)


def check_heads(heads: Iterable[Sequence[int]], n_layers: int, n_heads: int) -> tuple[Head, ...]:
    """The heads as `(layer, head)` int pairs, each checked against the model, duplicates dropped.

    The paper's Mistral list sums a duplicated head twice; here each head counts once.
    """
    out: list[Head] = []
    for item in heads:
        pair = tuple(int(x) for x in item)
        if len(pair) != 2:
            raise HeadOutOfRangeError(f"a head is a (layer, head) pair, got {tuple(item)!r}")
        layer, head = pair
        if not (0 <= layer < n_layers and 0 <= head < n_heads):
            raise HeadOutOfRangeError(
                f"head ({layer}, {head}) is not in the model, which has {n_layers} layers of "
                f"{n_heads} heads: use layer 0..{n_layers - 1} and head 0..{n_heads - 1}"
            )
        if (layer, head) not in out:
            out.append((layer, head))
    return tuple(out)


def default_layer(n_layers: int) -> int:
    """The SA layer by default: a quarter of the depth (the paper's block 8 of 32).

    >>> default_layer(32), default_layer(30), default_layer(6)
    (8, 7, 1)
    """
    return n_layers // 4


@dataclass(frozen=True)
class SafeInferConfig:
    """What SafeInfer does at decoding time.

    Attributes:
        layer: 0-based block after which `coef * FV` is added (`resid_post`); None picks
            `default_layer` (a quarter of the depth) when fitting.
        coef: The function vector's multiplier (1.5 in the paper).
        alpha: sGDS weight in [0, 1): tokens the unsafe model prefers lose
            `alpha / (1 - alpha)` times their log-probability gap (0.99: a factor 99).
        heads: The (layer, head) pairs whose mean outputs make the FV; None searches them.
        mode: `"sa"` (amplification only), `"sgds"` (guided decoding only) or `"both"`.
    """

    layer: int | None = None
    coef: float = 1.5
    alpha: float = 0.99
    heads: tuple[Head, ...] | None = None
    mode: Mode = "both"

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise InterpError(f"SafeInfer mode must be one of {MODES}, got {self.mode!r}")
        if not math.isfinite(float(self.coef)):
            raise InterpError(f"SafeInfer coef must be finite, got {self.coef}")
        check_alpha(self.alpha)
        if self.layer is not None and int(self.layer) < 0:
            raise LayerOutOfRangeError(f"SA layer must be >= 0, got {self.layer}")
        if self.heads is not None:
            heads = tuple((int(a), int(b)) for a, b in self.heads)
            if any(a < 0 or b < 0 for a, b in heads):
                raise HeadOutOfRangeError(f"heads must be non-negative pairs, got {heads}")
            object.__setattr__(self, "heads", heads)

    @property
    def uses_sa(self) -> bool:
        """Whether the function vector is added (modes `sa` and `both`)."""
        return self.mode in ("sa", "both")

    @property
    def uses_sgds(self) -> bool:
        """Whether decoding is guided against the unsafe model (modes `sgds` and `both`)."""
        return self.mode in ("sgds", "both")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of the fields."""
        return {
            "layer": self.layer,
            "coef": float(self.coef),
            "alpha": float(self.alpha),
            "heads": None if self.heads is None else [list(h) for h in self.heads],
            "mode": self.mode,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SafeInferConfig:
        """The config written by `to_dict`; unknown keys are refused."""
        unknown = set(data) - {"layer", "coef", "alpha", "heads", "mode"}
        if unknown:
            raise InterpError(f"unknown SafeInfer config keys {sorted(unknown)}")
        heads = data.get("heads")
        return cls(
            layer=data.get("layer"),
            coef=float(data.get("coef", 1.5)),
            alpha=float(data.get("alpha", 0.99)),
            heads=None if heads is None else tuple((int(a), int(b)) for a, b in heads),
            mode=data.get("mode", "both"),
        )
