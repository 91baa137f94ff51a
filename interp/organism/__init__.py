"""The model organism: a small chat model trained by the project that refuses, with ground truth.

`load_with_prompts` loads the organism or any chat model with the prompt splits that go with
it. `build_corpus` composes requests from tasks and phrasings (harmful, harmless, borderline,
jailbreak), `train_organism` trains a Llama-architecture model and its byte-level BPE tokenizer
from scratch, `measure_behaviour` measures its refusal table, and `prompts` exports the held-out
prompts as a `PromptSet`. The shipped checkpoint lives in ``assets/organism``.
"""

from interp.organism.behaviour import (
    CARD_TOLERANCE,
    behaviour_failures,
    card_mismatches,
    measure_behaviour,
)
from interp.organism.card import CARD_FILE, TRAINING_MARKER, organism_card
from interp.organism.corpus import (
    SAFETY_PROMPTS,
    SYSTEM_PROMPTS,
    Corpus,
    CorpusSpec,
    Example,
    build_corpus,
    prompts,
)
from interp.organism.study import CHECKPOINT_DIR, ORGANISM, PromptsFn, load_with_prompts
from interp.organism.tokenizer import CHAT_TEMPLATE, train_tokenizer
from interp.organism.train import TrainConfig, main_train, train_model, train_organism

__all__ = [
    "CARD_FILE",
    "CARD_TOLERANCE",
    "CHECKPOINT_DIR",
    "CHAT_TEMPLATE",
    "ORGANISM",
    "SAFETY_PROMPTS",
    "SYSTEM_PROMPTS",
    "TRAINING_MARKER",
    "Corpus",
    "CorpusSpec",
    "Example",
    "PromptsFn",
    "TrainConfig",
    "behaviour_failures",
    "build_corpus",
    "card_mismatches",
    "load_with_prompts",
    "main_train",
    "measure_behaviour",
    "organism_card",
    "prompts",
    "train_model",
    "train_organism",
    "train_tokenizer",
]
