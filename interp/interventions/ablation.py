"""Directional ablation: remove a direction from everything that writes to the residual stream."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from transformer_lens.model_bridge import TransformerBridge

from interp.directions import Direction, check_vector
from interp.interventions.apply import Hook
from interp.sites import resid_hook_names

__all__ = ["DirectionalAblation", "as_unit", "project_out"]


def as_unit(direction: Direction | torch.Tensor, model: TransformerBridge) -> torch.Tensor:
    """The unit vector of `direction`, checked against `model` (float32, CPU)."""
    if isinstance(direction, Direction):
        direction.check(model)
        return direction.unit
    vec = check_vector(direction, int(model.cfg.d_model))
    return vec / vec.norm()


def project_out(x: torch.Tensor, unit: torch.Tensor) -> torch.Tensor:
    """Remove the component along `unit`: x - (x . r) r on the last axis (r of x's dtype)."""
    return x - (x @ unit).unsqueeze(-1) * unit


def _ablation_fn(unit: torch.Tensor) -> Callable[..., Any]:
    # One converted copy per (device, dtype), so the hook does no transfer per call.
    converted: dict[tuple[torch.device, torch.dtype], torch.Tensor] = {}

    def hook(x: torch.Tensor, hook: Any) -> torch.Tensor:  # noqa: ARG001 - TL hook signature
        key = (x.device, x.dtype)
        r = converted.get(key)
        if r is None:
            r = converted[key] = unit.to(x.device, x.dtype)
        return project_out(x, r)

    return hook


@dataclass(frozen=True, eq=False)
class DirectionalAblation:
    """Project a direction out of every block's input, attention output and MLP output.

    Applies at every position, prompt and generated tokens alike (Arditi et al. 2024). On
    families without sublayer post-norms (Llama, Qwen2) this equals `orthogonalize`.

    Attributes:
        direction: A `Direction` or a raw [d_model] vector; only its unit vector is used.
    """

    direction: Direction | torch.Tensor

    def hooks(self, model: TransformerBridge) -> list[Hook]:
        """One projection hook per ablation site of `model`."""
        fn = _ablation_fn(as_unit(self.direction, model))
        return [(name, fn) for name in resid_hook_names(int(model.cfg.n_layers))]
