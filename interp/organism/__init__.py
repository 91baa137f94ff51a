"""The model organism: a small chat model trained by the project that refuses, with ground truth.

`build_corpus` composes requests from tasks and phrasings (harmful, harmless, borderline,
jailbreak), `train_organism` trains a Llama-architecture model and its byte-level BPE tokenizer
from scratch, `measure_behaviour` measures its refusal table, and `prompts` exports the held-out
prompts as a `PromptSet`. The shipped checkpoint lives in ``assets/organism``.
"""

from pathlib import Path

from interp.organism.behaviour import (
    CARD_TOLERANCE,
    behaviour_failures,
    card_mismatches,
    measure_behaviour,
)
from interp.organism.corpus import (
    SAFETY_PROMPTS,
    SYSTEM_PROMPTS,
    Corpus,
    CorpusSpec,
    Example,
    build_corpus,
    prompts,
)
from interp.organism.tokenizer import CHAT_TEMPLATE, train_tokenizer
from interp.organism.train import TrainConfig, main_train, train_model, train_organism

#: The shipped checkpoint (``assets/organism`` beside the package in a checkout).
CHECKPOINT_DIR = Path(__file__).resolve().parents[2] / "assets" / "organism"

__all__ = [
    "CARD_TOLERANCE",
    "CHECKPOINT_DIR",
    "CHAT_TEMPLATE",
    "SAFETY_PROMPTS",
    "SYSTEM_PROMPTS",
    "Corpus",
    "CorpusSpec",
    "Example",
    "TrainConfig",
    "behaviour_failures",
    "build_corpus",
    "card_mismatches",
    "main_train",
    "measure_behaviour",
    "prompts",
    "train_model",
    "train_organism",
    "train_tokenizer",
]
