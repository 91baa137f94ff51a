"""Interventions as values: directional ablation, activation addition, weight orthogonalisation.

Hook-based interventions are small frozen dataclasses applied with one context manager::

    with interp.apply(model, DirectionalAblation(direction)):
        completions = interp.generate(model, prompts)

`orthogonalize` returns a new model with the direction removed from its weights, and `save_hf`
writes any bridge as a plain Hugging Face directory.
"""

from interp.interventions.ablation import DirectionalAblation, project_out
from interp.interventions.actadd import ActAdd, InterventionError
from interp.interventions.apply import Intervention, apply, fwd_hooks
from interp.interventions.evaluate import (
    CONDITIONS,
    DirectionEvaluation,
    evaluate_direction,
    max_logit_diff,
)
from interp.interventions.orthogonalize import POST_NORM_FAMILIES, orthogonalize, save_hf

__all__ = [
    "CONDITIONS",
    "POST_NORM_FAMILIES",
    "ActAdd",
    "DirectionEvaluation",
    "DirectionalAblation",
    "Intervention",
    "InterventionError",
    "apply",
    "evaluate_direction",
    "fwd_hooks",
    "max_logit_diff",
    "orthogonalize",
    "project_out",
    "save_hf",
]
