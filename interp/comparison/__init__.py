"""The comparison: every method on the same held-out prompts of every kind, one judge.

A `Method` is a name, a family and a `generate(model, prompts, max_new_tokens) ->
Completions`; builders adapt the methods of the other packages (`baseline_method`,
`prompt_methods`, `soft_prompt_method`, `safeswitch_method`, `ablation_method`,
`actadd_method`), and `decoder_method` adapts any object with a `generate(model, prompts, ...)`
returning `Completions` (SafeInfer, CAST) in one line. `compare` measures refusal per kind with
bootstrap intervals, safety against over-refusal, KL / CE on harmless prompts and the decoding
cost, all against plain greedy decoding in the same run; `comparison_figure` plots it.

This package sits above the method packages (it adapts them) and below the report.
"""

from interp.comparison.compare import (
    COMPARISON_KINDS,
    TABLE_HEADER,
    Comparison,
    MethodResult,
    compare,
)
from interp.comparison.method import (
    FAMILIES,
    ComparisonError,
    Family,
    Method,
    ablation_method,
    actadd_method,
    baseline_method,
    decoder_method,
    intervention_method,
    prompt_method,
    prompt_methods,
    safeswitch_method,
    soft_prompt_method,
)
from interp.comparison.plots import comparison_figure

__all__ = [
    "COMPARISON_KINDS",
    "FAMILIES",
    "TABLE_HEADER",
    "Comparison",
    "ComparisonError",
    "Family",
    "Method",
    "MethodResult",
    "ablation_method",
    "actadd_method",
    "baseline_method",
    "compare",
    "comparison_figure",
    "decoder_method",
    "intervention_method",
    "prompt_method",
    "prompt_methods",
    "safeswitch_method",
    "soft_prompt_method",
]
