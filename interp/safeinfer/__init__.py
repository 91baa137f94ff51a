"""SafeInfer (Banerjee et al., AAAI 2025): safety amplification and safety-guided decoding.

Fit -> apply -> decode:

- `icl_prompts` / `mean_head_activations` / `function_vector`: the function vector of
  in-context refusal demonstrations (every head's output before `o_proj`, averaged at the
  query's last token, summed over a head set through `o_proj`);
- `search_heads` / `HeadSearch`: the head set by causal indirect effect (mean head outputs
  patched into zero-shot prompts);
- `SafetyAmplification`: the intervention value adding `coef * FV` after one block at the
  last position of every forward pass;
- `GuidedDecoding` / `sgds_score`: sGDS against an unsafe copy of the same weights (refusal
  direction ablated), run in one doubled batch through the shared decoding loop;
- `SafeInfer` / `SafeInferConfig`: the estimator tying them together, with save / load.

See docs/methods/safeinfer.md for what the paper does and where this implementation departs.
"""

from interp.safeinfer.amplification import SafetyAmplification
from interp.safeinfer.config import (
    MODES,
    STRATEGIES,
    AlphaError,
    FunctionVectorMismatchError,
    HeadOutOfRangeError,
    LayerOutOfRangeError,
    SafeInferConfig,
    check_alpha,
    check_heads,
    default_layer,
)
from interp.safeinfer.function_vector import (
    REFUSAL_ANSWER,
    answer_token,
    function_vector,
    icl_prompts,
    mean_head_activations,
    zero_shot_prompts,
)
from interp.safeinfer.guided import GuidedDecoding, gumbel_noise, rows_only, sgds_score
from interp.safeinfer.head_search import HeadSearch, search_heads
from interp.safeinfer.safeinfer import SafeInfer

__all__ = [
    "MODES",
    "REFUSAL_ANSWER",
    "STRATEGIES",
    "AlphaError",
    "FunctionVectorMismatchError",
    "GuidedDecoding",
    "HeadOutOfRangeError",
    "HeadSearch",
    "LayerOutOfRangeError",
    "SafeInfer",
    "SafeInferConfig",
    "SafetyAmplification",
    "answer_token",
    "check_alpha",
    "check_heads",
    "default_layer",
    "function_vector",
    "gumbel_noise",
    "icl_prompts",
    "mean_head_activations",
    "rows_only",
    "search_heads",
    "sgds_score",
    "zero_shot_prompts",
]
