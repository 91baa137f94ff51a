"""Activation addition: add `coeff * r` to the input of one block."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformer_lens.model_bridge import TransformerBridge

from interp._checks import check_int
from interp._types import Float
from interp.directions import Direction, check_vector
from interp.errors import InterpError, SiteError
from interp.interventions.apply import Hook
from interp.native import per_token
from interp.sites import Site

__all__ = ["ActAdd", "InterventionError"]


class InterventionError(InterpError, ValueError):
    """An intervention cannot be applied as asked (bad coefficient, position past the prompt)."""


def _add_fn(vector: torch.Tensor, positions: tuple[int, ...] | None) -> Callable[..., Any]:
    converted: dict[tuple[torch.device, torch.dtype], torch.Tensor] = {}

    def hook(x: torch.Tensor, hook: Any) -> torch.Tensor | None:  # noqa: ARG001 - TL signature
        key = (x.device, x.dtype)
        v = converted.get(key)
        if v is None:
            v = converted[key] = vector.to(x.device, x.dtype)
        if positions is None:
            return x + v
        n_pos = x.shape[1]
        if n_pos == 1:
            # A KV-cached decoding step: the positions index the prompt, which is already done.
            return None
        bad = [p for p in positions if not -n_pos <= p < n_pos]
        if bad:
            raise InterventionError(
                f"ActAdd positions {bad} are past the prompt, which has {n_pos} tokens "
                f"(valid: {-n_pos}..{n_pos - 1}; negative positions count from the end)"
            )
        out = x.clone()
        out[:, list(positions)] += v
        return out

    # At every position it acts on each token alone; at chosen positions it depends on the
    # pass's width, so a shared prefix (`interp.native.prefill`) must not be split off.
    return per_token(hook) if positions is None else hook


@dataclass(frozen=True, eq=False)
class ActAdd:
    """Add `coeff * r` to the residual stream at the input of block `layer`.

    Attributes:
        direction: A `Direction` or a raw [d_model] vector; added unnormalised (the
            difference in means itself), so `coeff=1` adds the harmful-minus-harmless gap.
        coeff: The multiplier (negative values subtract).
        layer: 0-based block whose input (`resid_pre`) is edited; defaults to the direction's
            own layer when `None`.
        positions: Prompt positions to edit (negative count from the end; left padding makes
            `-1` every row's last token); `None` edits every position, generated tokens too.
            With positions, only the prompt pass is edited.
    """

    direction: Direction | Float[torch.Tensor, " d_model"]
    coeff: float = 1.0
    layer: int | None = None
    positions: Sequence[int] | None = None

    def __post_init__(self) -> None:
        if not math.isfinite(float(self.coeff)):
            raise InterventionError(f"ActAdd coefficient must be finite, got {self.coeff}")
        if self.layer is not None:
            check_int(self.layer, "ActAdd layer", minimum=0)
        if self.layer is None and not isinstance(self.direction, Direction):
            raise InterventionError(
                "ActAdd with a raw vector needs a layer, e.g. ActAdd(v, 1.0, 3)"
            )
        if self.positions is not None:
            object.__setattr__(self, "positions", tuple(int(p) for p in self.positions))
            if not self.positions:
                raise InterventionError("ActAdd positions is empty; pass None for all positions")

    @property
    def target_layer(self) -> int:
        """The block whose input is edited."""
        if self.layer is not None:
            return int(self.layer)
        assert isinstance(self.direction, Direction)
        return self.direction.layer

    def hooks(self, model: TransformerBridge) -> list[Hook]:
        """The single addition hook at `resid_pre` of the target layer."""
        site = Site("resid_pre", self.target_layer)
        try:
            site.check(int(model.cfg.n_layers))
        except SiteError as err:
            raise SiteError(f"ActAdd: {err}") from None
        if isinstance(self.direction, Direction):
            vector = self.direction.check(model).vector
        else:
            vector = check_vector(self.direction, int(model.cfg.d_model))
        positions = None if self.positions is None else tuple(self.positions)
        return [(site.hook_name, _add_fn(float(self.coeff) * vector, positions))]
