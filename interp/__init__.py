"""interp: mechanistic interpretability of LLM safety on TransformerLens' TransformerBridge."""

from interp.activations import Activations, collect_activations
from interp.chat import SAFETY_PROMPTS, ChatBatch, encode, eoi_tokens, render
from interp.evaluation import Judge, SubstringJudge, refusal_rate
from interp.generation import Completions, generate
from interp.model import ModelInfo, load_model, model_info
from interp.sites import Site
from interp.store import ActivationStore, cache_activations

__version__ = "0.1.0"

__all__ = [
    "SAFETY_PROMPTS",
    "ActivationStore",
    "Activations",
    "ChatBatch",
    "Completions",
    "Judge",
    "ModelInfo",
    "Site",
    "SubstringJudge",
    "__version__",
    "cache_activations",
    "collect_activations",
    "encode",
    "eoi_tokens",
    "generate",
    "load_model",
    "model_info",
    "refusal_rate",
    "render",
]
