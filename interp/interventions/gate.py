"""Per-row gating: apply an intervention to some rows of a batch and leave the others alone."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from transformer_lens.model_bridge import TransformerBridge

from interp.interventions.actadd import InterventionError
from interp.interventions.apply import Hook, Intervention, fwd_hooks

__all__ = ["RowGated"]


def _gated_fn(fn: Callable[..., Any], rows: torch.Tensor) -> Callable[..., Any]:
    converted: dict[torch.device, torch.Tensor] = {}

    def hook(x: torch.Tensor, hook: Any) -> torch.Tensor:
        if x.shape[0] != rows.shape[0]:
            raise InterventionError(
                f"RowGated has a mask for {rows.shape[0]} rows but the batch has {x.shape[0]}; "
                "build the gate for the batch it runs on"
            )
        mask = converted.get(x.device)
        if mask is None:
            mask = converted[x.device] = rows.to(x.device)
        if not bool(mask.any()):
            return x
        out = fn(x, hook)
        if out is None:  # the inner hook leaves this call alone (e.g. a KV-cached step)
            return x
        if bool(mask.all()):
            return out
        # torch.where keeps ungated rows bit-identical to the input (no arithmetic on them).
        return torch.where(mask.view(-1, *([1] * (x.ndim - 1))), out, x)

    return hook


@dataclass(frozen=True, eq=False)
class RowGated:
    """An intervention applied only to the rows of a batch where `rows` is True.

    Every hook of `intervention` runs on the whole batch; rows outside the mask keep their
    input unchanged, bit for bit, at every forward pass (prompt and decoding steps alike), so
    a row's treatment is fixed for the whole generation. The mask belongs to one batch: its
    length must equal the batch size the hooks see. All rows True equals `intervention`
    itself, token for token; no row True equals no intervention. The inner hooks must not
    edit their input in place (none in `interp.interventions` does).

    Attributes:
        intervention: Any hook intervention (`ActAdd`, `DirectionalAblation`, ...).
        rows: Bool mask [batch]: which rows get the intervention.
    """

    intervention: Intervention
    rows: torch.Tensor

    def __post_init__(self) -> None:
        rows = torch.as_tensor(self.rows).detach().cpu()
        if rows.ndim != 1 or rows.dtype != torch.bool:
            raise InterventionError(
                f"RowGated rows must be a 1-D bool mask over the batch, got dtype {rows.dtype} "
                f"and shape {tuple(rows.shape)}"
            )
        object.__setattr__(self, "rows", rows)

    def hooks(self, model: TransformerBridge) -> list[Hook]:
        """The inner intervention's hooks, each masked to the gated rows."""
        return [
            (name, _gated_fn(fn, self.rows)) for name, fn in fwd_hooks(model, [self.intervention])
        ]
