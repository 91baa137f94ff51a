"""Safety amplification (SA): add `coef * FV` after one block at the last token of every pass."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from transformer_lens.model_bridge import TransformerBridge

from interp._types import Float
from interp.directions import check_vector
from interp.errors import InterpError
from interp.interventions.apply import Hook
from interp.safeinfer.config import check_layer
from interp.sites import Site

__all__ = ["SafetyAmplification"]


def _add_last_fn(vector: torch.Tensor) -> Callable[..., Any]:
    converted: dict[tuple[torch.device, torch.dtype], torch.Tensor] = {}

    def hook(x: torch.Tensor, hook: Any) -> torch.Tensor:  # noqa: ARG001 - TL signature
        key = (x.device, x.dtype)
        v = converted.get(key)
        if v is None:
            v = converted[key] = vector.to(x.device, x.dtype)
        out = x.clone()
        out[:, -1] += v
        return out

    return hook


@dataclass(frozen=True, eq=False)
class SafetyAmplification:
    """Add `coef * vector` to the residual stream after block `layer`, at the last position.

    The addition hits the last position of every forward pass: with the project's left
    padding that is each row's last prompt token at prefill, and the new token at every
    KV-cached decoding step, which is where the paper adds it (its MLP wrapper of block 8,
    there for batch row 0 only; here for every row).

    Attributes:
        vector: The function vector [d_model] (float32; any norm, added as is).
        layer: 0-based block whose output (`resid_post`) is edited.
        coef: The multiplier (1.5 in the paper); 0 is the identity.
    """

    vector: Float[torch.Tensor, " d_model"]
    layer: int
    coef: float = 1.5

    def __post_init__(self) -> None:
        if not math.isfinite(float(self.coef)):
            raise InterpError(f"SafetyAmplification coef must be finite, got {self.coef}")
        object.__setattr__(self, "vector", check_vector(self.vector))

    def hooks(self, model: TransformerBridge) -> list[Hook]:
        """The single addition hook at `resid_post` of `layer`."""
        layer = check_layer(self.layer, int(model.cfg.n_layers), "SA layer")
        vector = check_vector(self.vector, int(model.cfg.d_model))
        return [(Site("resid_post", layer).hook_name, _add_last_fn(float(self.coef) * vector))]
