"""Directional ablation: remove a direction from everything that writes to the residual stream.

With `offsets`, the ablation is affine (ACE, Marshall et al. 2024, "Refusal in LLMs: an affine
function"): instead of moving each state's projection on r-hat to zero, it moves it to a
reference value, the mean projection of harmless prompts at that site
(`harmless_offsets`): h <- h - (h . r) r + (mu_harmless . r) r.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import torch
from transformer_lens.model_bridge import TransformerBridge

from interp._types import Float
from interp.activations import batches, collect_batch, columns_for
from interp.data.promptset import texts_of
from interp.directions import Direction, check_vector
from interp.errors import EmptyPromptSetError
from interp.interventions.actadd import InterventionError
from interp.interventions.apply import Hook
from interp.native import per_token
from interp.sites import Site

__all__ = [
    "ABLATION_STREAMS",
    "DirectionalAblation",
    "ablation_sites",
    "as_unit",
    "harmless_offsets",
    "project_out",
]

#: The streams ablation edits at every block (the residual input and both sublayer outputs).
ABLATION_STREAMS: tuple[str, ...] = ("resid_pre", "attn_out", "mlp_out")


def ablation_sites(n_layers: int) -> list[Site]:
    """Every site `DirectionalAblation` hooks, block by block (same order as the hooks)."""
    return [Site(stream, layer) for layer in range(n_layers) for stream in ABLATION_STREAMS]


def as_unit(
    direction: Direction | torch.Tensor, model: TransformerBridge
) -> Float[torch.Tensor, " d_model"]:
    """The unit vector of `direction`, checked against `model` (float32, CPU)."""
    if isinstance(direction, Direction):
        direction.check(model)
        return direction.unit
    vec = check_vector(direction, int(model.cfg.d_model))
    return vec / vec.norm()


_HALF = (torch.bfloat16, torch.float16)


def project_out(
    x: Float[torch.Tensor, "*batch d_model"], unit: Float[torch.Tensor, " d_model"]
) -> Float[torch.Tensor, "*batch d_model"]:
    """Remove the component along `unit`: x - (x . r) r on the last axis.

    float32 / float64 activations use `unit` in their own dtype. Half-precision ones (bf16,
    fp16) are projected in float32 (with a float32 `unit`) and rounded back once, so the
    rounding of a bf16 `unit` (not quite unit norm) and of the dot product adds no error.
    """
    if x.dtype in _HALF:
        xf, r = x.to(torch.float32), unit.to(torch.float32)
        return (xf - (xf @ r).unsqueeze(-1) * r).to(x.dtype)
    return x - (x @ unit).unsqueeze(-1) * unit


def _ablation_fn(unit: Float[torch.Tensor, " d_model"], offset: float = 0.0) -> Callable[..., Any]:
    # One converted copy per (device, dtype), so the hook does no transfer per call.
    converted: dict[tuple[torch.device, torch.dtype], torch.Tensor] = {}

    def hook(x: torch.Tensor, hook: Any) -> torch.Tensor:  # noqa: ARG001 - TL hook signature
        key = (x.device, x.dtype)
        r = converted.get(key)
        if r is None:
            dtype = torch.float32 if x.dtype in _HALF else x.dtype
            r = converted[key] = unit.to(x.device, dtype)
        if offset == 0.0:
            # Plain ablation stays bit-identical to the offset-free hook.
            return project_out(x, r)
        # `r` is float32 for half-precision x: cast the sum back to x's dtype.
        return (project_out(x, r) + offset * r).to(x.dtype)

    return per_token(hook)


def _check_offsets(offsets: Mapping[str, float]) -> dict[str, float]:
    out: dict[str, float] = {}
    for label, value in offsets.items():
        site = Site.parse(label)
        if site.stream not in ABLATION_STREAMS:
            raise InterventionError(
                f"ablation offset for {label!r}: offsets apply to the ablated streams "
                f"({', '.join(ABLATION_STREAMS)}), e.g. 'resid_pre.3'"
            )
        if not math.isfinite(float(value)):
            raise InterventionError(f"ablation offset for {label!r} must be finite, got {value}")
        out[site.label] = float(value)
    return out


@dataclass(frozen=True, eq=False)
class DirectionalAblation:
    """Project a direction out of every block's input, attention output and MLP output.

    Applies at every position, prompt and generated tokens alike (Arditi et al. 2024). On
    families without sublayer post-norms (Llama, Qwen2) this equals `orthogonalize`.

    With `offsets` it is ACE's affine ablation (Marshall et al. 2024): at each listed site
    the projection on r-hat is set to the offset instead of zero,
    ``x <- x - (x . r) r + offset * r``; `harmless_offsets` measures the harmless mean
    projection of every site. Sites not listed (and offset 0) get plain ablation, so
    ``offsets=None`` and all-zero offsets are the same intervention. Either way applying it
    twice equals applying it once. `orthogonalize` knows nothing of offsets.

    Attributes:
        direction: A `Direction` or a raw [d_model] vector; only its unit vector is used.
        offsets: Optional site label (`resid_pre.3`, `attn_out.3`, `mlp_out.3`) -> the
            projection on r-hat that the state keeps there.
    """

    direction: Direction | Float[torch.Tensor, " d_model"]
    offsets: Mapping[str, float] | None = None

    def __post_init__(self) -> None:
        if self.offsets is not None:
            object.__setattr__(self, "offsets", MappingProxyType(_check_offsets(self.offsets)))

    def hooks(self, model: TransformerBridge) -> list[Hook]:
        """One projection hook per ablation site of `model`."""
        unit = as_unit(self.direction, model)
        n_layers = int(model.cfg.n_layers)
        offsets = dict(self.offsets or {})
        for label in offsets:
            Site.parse(label).check(n_layers)
        plain = _ablation_fn(unit)
        return [
            (
                site.hook_name,
                _ablation_fn(unit, offsets[site.label]) if offsets.get(site.label) else plain,
            )
            for site in ablation_sites(n_layers)
        ]


def _offset_column(model: TransformerBridge, position: str) -> tuple[list[str], int]:
    """The positions to collect and the column of `position` among them."""
    kind = "eoi" if position.startswith("eoi") else position
    columns = columns_for(model, [kind])
    if position not in columns:
        raise ValueError(f"no position {position!r} for this model; positions are {columns}")
    return [kind], columns.index(position)


@torch.no_grad()
def harmless_offsets(
    model: TransformerBridge,
    direction: Direction | torch.Tensor,
    harmless: Sequence[str] | Any,
    *,
    position: str | None = None,
    system: str | None = None,
    batch_size: int = 32,
) -> dict[str, float]:
    """Mean projection of harmless prompts on r-hat at every ablation site (ACE's reference).

    The states are read without any intervention, at one prompt position: the direction's
    own (`eoi-k` or `last`) by default, `last` for a raw vector.

    Args:
        model: The bridge.
        direction: The direction (a `Direction` or a raw [d_model] vector).
        harmless: Prompts the model answers (strings or a `PromptSet`).
        position: Position label (`last`, `eoi-1`, ...) to read the states at.
        system: System prompt used when rendering.
        batch_size: Prompts per forward pass.

    Returns:
        Site label -> mean (h . r-hat), float64-accumulated; pass it as
        `DirectionalAblation(direction, offsets=...)`.

    Raises:
        EmptyPromptSetError: `harmless` is empty.
    """
    texts = texts_of(harmless)
    if not texts:
        raise EmptyPromptSetError("harmless_offsets needs harmless prompts; none were given")
    unit = as_unit(direction, model).to(torch.float64)
    if position is None:
        own = direction.position if isinstance(direction, Direction) else "last"
        position = own if own == "last" or own.startswith("eoi-") else "last"
    positions, column = _offset_column(model, position)
    needed = ablation_sites(int(model.cfg.n_layers))
    total = torch.zeros(len(needed), dtype=torch.float64)
    for _, batch in batches(model, texts, system, batch_size):
        acts = collect_batch(model, batch, needed, positions)
        for i, site in enumerate(needed):
            total[i] += (acts[site.label][:, column].to(torch.float64) @ unit).sum()
    return {site.label: float(total[i] / len(texts)) for i, site in enumerate(needed)}
