"""Interventions as values: directional ablation, activation addition, weight orthogonalisation.

Hook-based interventions are small frozen dataclasses applied with one context manager::

    with interp.apply(model, DirectionalAblation(direction)):
        completions = interp.generate(model, prompts)

`RowGated(intervention, rows)` applies any of them to some rows of a batch only (the per-row
gate of conditional steering). `orthogonalize` returns a new model with the direction removed from its weights, and `save_hf`
writes any bridge as a plain Hugging Face directory. Methods that change decoding rather than
add hooks (the SafeSwitch refusal head, the DRO soft prompt) live in their method packages.
"""

from interp.interventions.ablation import (
    ABLATION_STREAMS,
    DirectionalAblation,
    ablation_sites,
    harmless_offsets,
    project_out,
)
from interp.interventions.actadd import ActAdd, InterventionError
from interp.interventions.apply import Intervention, apply, fwd_hooks
from interp.interventions.gate import RowGated
from interp.interventions.orthogonalize import POST_NORM_FAMILIES, orthogonalize, save_hf

__all__ = [
    "ABLATION_STREAMS",
    "POST_NORM_FAMILIES",
    "ActAdd",
    "DirectionalAblation",
    "Intervention",
    "InterventionError",
    "RowGated",
    "ablation_sites",
    "apply",
    "fwd_hooks",
    "harmless_offsets",
    "orthogonalize",
    "project_out",
    "save_hf",
]
