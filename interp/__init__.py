"""interp: mechanistic interpretability of LLM safety on TransformerLens' TransformerBridge.

The data flows one way: prompts (`interp.data`, `interp.organism`) -> chat rendering
(`interp.chat`) -> activations (`collect_activations`, `cache_activations`) -> probes and
maps (`interp.probes`, `interp.projection`, `interp.plots`) and the refusal direction
(`interp.directions`, `interp.scores`) -> interventions (`interp.interventions`: ablation,
ActAdd, orthogonalisation, the SafeSwitch refusal head, the DRO soft prompt) -> generation
and judging (`generate`, `interp.evaluation`) -> the report (`interp report`).
"""

from interp._version import __version__, library_versions
from interp.activations import Activations, collect_activations
from interp.chat import SAFETY_PROMPTS, ChatBatch, encode, eoi_tokens, render
from interp.data import PromptSet, load_dataset, load_file
from interp.directions import Direction, diff_in_means
from interp.evaluation import Judge, SubstringJudge, refusal_rate
from interp.explorer import explore
from interp.generation import Completions, generate
from interp.interventions import (
    ActAdd,
    DirectionalAblation,
    RefusalHead,
    SafeSwitch,
    SoftPrompt,
    apply,
    orthogonalize,
)
from interp.model import ModelInfo, load_model, model_info
from interp.prober import SafeSwitchProber
from interp.probes import LinearProbe, ProbeSweep, fit_probes_per_layer
from interp.projection import PCA, UMAP, Projection
from interp.scores import refusal_score, refusal_tokens, score_candidates, select_direction
from interp.sites import Site
from interp.store import ActivationStore, cache_activations

__all__ = [
    "PCA",
    "SAFETY_PROMPTS",
    "UMAP",
    "ActAdd",
    "ActivationStore",
    "Activations",
    "ChatBatch",
    "Completions",
    "Direction",
    "DirectionalAblation",
    "Judge",
    "LinearProbe",
    "ModelInfo",
    "ProbeSweep",
    "Projection",
    "PromptSet",
    "RefusalHead",
    "SafeSwitch",
    "SafeSwitchProber",
    "Site",
    "SoftPrompt",
    "SubstringJudge",
    "__version__",
    "apply",
    "cache_activations",
    "collect_activations",
    "diff_in_means",
    "encode",
    "eoi_tokens",
    "explore",
    "fit_probes_per_layer",
    "generate",
    "library_versions",
    "load_dataset",
    "load_file",
    "load_model",
    "model_info",
    "orthogonalize",
    "refusal_rate",
    "refusal_score",
    "refusal_tokens",
    "render",
    "score_candidates",
    "select_direction",
]
