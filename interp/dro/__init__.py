"""DRO (Zheng et al., ICML 2024): a human safety prompt turned into a trained soft prompt.

Fit -> apply -> evaluate -> plot:

- `collect_anchor_data` / `AnchorSpace`: the anchor PCA of the model's final states over
  harmful and harmless queries with and without safety prompts, and the empirical refusal
  rates the loss is trained against;
- `SoftPrompt.fit`: the soft prompt optimised with `dro_loss` (refusal, harmfulness and
  a closeness regulariser); `SoftPrompt.generate` decodes with it;
- `evaluate_soft_prompt`: refusal per kind for no prompt, the human prompt and the soft one;
- the DRO geometry of representations (`dro_map`, `refusal_axis`, `prompt_shift`) and its
  figures.

See docs/methods/dro.md for what the paper does and where this implementation departs.
"""

from interp.dro.anchor import (
    ANCHOR_CONDITIONS,
    AnchorData,
    AnchorSpace,
    collect_anchor_data,
    empirical_refusal_rates,
    final_states,
    gumbel_sampler,
    sample_responses,
)
from interp.dro.evaluate import DRO_CONDITIONS, SoftPromptEvaluation, evaluate_soft_prompt
from interp.dro.geometry import (
    ConditionData,
    DroMap,
    collect_conditions,
    dro_map,
    prompt_shift,
    refusal_axis,
    shift_by_layer,
)
from interp.dro.loss import DEFAULT_LOSS_WEIGHTS, DroLoss, dro_loss
from interp.dro.plots import (
    dro_figure,
    dro_loss_figure,
    dro_refusal_figure,
    dro_shift_figure,
    prompt_shift_figure,
)
from interp.dro.soft_prompt import SoftPrompt, SoftPromptError

__all__ = [
    "ANCHOR_CONDITIONS",
    "DEFAULT_LOSS_WEIGHTS",
    "DRO_CONDITIONS",
    "AnchorData",
    "AnchorSpace",
    "ConditionData",
    "DroLoss",
    "DroMap",
    "SoftPrompt",
    "SoftPromptError",
    "SoftPromptEvaluation",
    "collect_anchor_data",
    "collect_conditions",
    "dro_figure",
    "dro_loss",
    "dro_loss_figure",
    "dro_map",
    "dro_refusal_figure",
    "dro_shift_figure",
    "empirical_refusal_rates",
    "evaluate_soft_prompt",
    "final_states",
    "gumbel_sampler",
    "prompt_shift",
    "prompt_shift_figure",
    "refusal_axis",
    "sample_responses",
    "shift_by_layer",
]
