"""Interventions as values: directional ablation, activation addition, weight orthogonalisation.

Hook-based interventions are small frozen dataclasses applied with one context manager::

    with interp.apply(model, DirectionalAblation(direction)):
        completions = interp.generate(model, prompts)

`orthogonalize` returns a new model with the direction removed from its weights, and `save_hf`
writes any bridge as a plain Hugging Face directory.

`RefusalHead` (a fine-tuned copy of the unembedding) is an intervention too, and `SafeSwitch`
uses it only where the two-stage prober flags a request.

`SoftPrompt` is a human safety prompt turned into trainable embeddings and optimised with DRO;
its hook depends on each batch's padding, so it comes with its own batched generation.
"""

from interp.interventions.ablation import DirectionalAblation, project_out
from interp.interventions.actadd import ActAdd, InterventionError
from interp.interventions.apply import Intervention, apply, fwd_hooks
from interp.interventions.dro_eval import DRO_CONDITIONS, SoftPromptEvaluation, evaluate_soft_prompt
from interp.interventions.dro_loss import DEFAULT_LOSS_WEIGHTS, DroLoss, dro_loss
from interp.interventions.evaluate import (
    CONDITIONS,
    DirectionEvaluation,
    evaluate_direction,
    max_logit_diff,
)
from interp.interventions.evaluate_safeswitch import (
    SAFESWITCH_METHODS,
    SafeSwitchEvaluation,
    evaluate_safeswitch,
)
from interp.interventions.orthogonalize import POST_NORM_FAMILIES, orthogonalize, save_hf
from interp.interventions.refusal_head import HeadData, RefusalHead, head_data, unembedding
from interp.interventions.refusal_pairs import RefusalPairs, mentions_topic, refusal_pairs
from interp.interventions.safeswitch import SafeSwitch, SwitchResult, calibrate_threshold, fires
from interp.interventions.soft_prompt import SoftPrompt, SoftPromptError

__all__ = [
    "CONDITIONS",
    "DEFAULT_LOSS_WEIGHTS",
    "DRO_CONDITIONS",
    "POST_NORM_FAMILIES",
    "SAFESWITCH_METHODS",
    "ActAdd",
    "DirectionEvaluation",
    "DirectionalAblation",
    "DroLoss",
    "HeadData",
    "Intervention",
    "InterventionError",
    "RefusalHead",
    "RefusalPairs",
    "SafeSwitch",
    "SafeSwitchEvaluation",
    "SoftPrompt",
    "SoftPromptError",
    "SoftPromptEvaluation",
    "SwitchResult",
    "apply",
    "calibrate_threshold",
    "dro_loss",
    "evaluate_direction",
    "evaluate_safeswitch",
    "evaluate_soft_prompt",
    "fires",
    "fwd_hooks",
    "head_data",
    "max_logit_diff",
    "mentions_topic",
    "orthogonalize",
    "project_out",
    "refusal_pairs",
    "save_hf",
    "unembedding",
]
