"""interp: mechanistic interpretability of LLM safety on TransformerLens' TransformerBridge.

The data flows one way, each layer importing only those below it:

1. foundation: `load_model` (`interp.model`, `interp.zoo`), `Site` (`interp.sites`), chat
   rendering (`render`, `encode`), `PromptSet` and the dataset loaders (`interp.data`), the
   model organism (`interp.organism`);
2. activations: `collect_activations`, `cache_activations` / `ActivationStore`, through the
   native forward path (`interp.native`);
3. decoding and judging: `generate` (`interp.generation`), the judges and the one
   evaluation loop (`interp.evaluation`);
4. analysis: probes (`interp.probes`), maps (`interp.projection`, `interp.plots`), directions
   (`interp.directions`) and the hook interventions (`interp.interventions`);
5. methods, one package each: `interp.refusal_direction`, `interp.safeswitch`, `interp.dro`,
   `interp.safeinfer`, the conditional-steering baseline `interp.cast`, and the comparison
   of all of them (`interp.comparison`);
6. the report (`interp.report`) and the command line (`interp.cli`).

This namespace holds the names most sessions need; each method package exports its own
fit -> apply -> evaluate -> plot names.
"""

from interp import (
    cast,
    comparison,
    data,
    dro,
    evaluation,
    interventions,
    probes,
    refusal_direction,
    safeinfer,
    safeswitch,
    zoo,
)
from interp._version import __version__, library_versions
from interp.activations import Activations, collect_activations
from interp.chat import SAFETY_PROMPTS, encode, eoi_tokens, render
from interp.data import PromptSet, load_dataset, load_file
from interp.directions import Direction, diff_in_means
from interp.evaluation import SubstringJudge, refusal_rate
from interp.generation import Completions, generate, reuse_generations
from interp.interventions import ActAdd, DirectionalAblation, apply, orthogonalize
from interp.min_samples import MIN_PER_CLASS
from interp.model import ModelInfo, load_model, model_fingerprint, model_info
from interp.probes import LinearProbe, fit_probes_per_layer
from interp.projection import PCA, UMAP
from interp.sites import Site
from interp.store import ActivationStore, cache_activations

__all__ = [
    "MIN_PER_CLASS",
    "PCA",
    "SAFETY_PROMPTS",
    "UMAP",
    "ActAdd",
    "ActivationStore",
    "Activations",
    "Completions",
    "Direction",
    "DirectionalAblation",
    "LinearProbe",
    "ModelInfo",
    "PromptSet",
    "Site",
    "SubstringJudge",
    "__version__",
    "apply",
    "cache_activations",
    "cast",
    "collect_activations",
    "comparison",
    "data",
    "diff_in_means",
    "dro",
    "encode",
    "eoi_tokens",
    "evaluation",
    "fit_probes_per_layer",
    "generate",
    "interventions",
    "library_versions",
    "load_dataset",
    "load_file",
    "load_model",
    "model_fingerprint",
    "model_info",
    "orthogonalize",
    "probes",
    "refusal_direction",
    "refusal_rate",
    "render",
    "reuse_generations",
    "safeinfer",
    "safeswitch",
    "zoo",
]
