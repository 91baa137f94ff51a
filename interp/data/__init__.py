"""Prompt sets and loaders for the standard LLM-safety datasets and local files.

`PromptSet` is the immutable, columnar set of prompts every later stage consumes. The loaders
read each dataset's original file format; `load_dataset` finds a standard set by short name
under a data folder the caller gives.
"""

from interp.data._records import SUPPORTED_SUFFIXES, read_records
from interp.data.heldout import HELD_OUT_SETS, PUBLIC_SPLITS, held_out_sets, public_prompts
from interp.data.loaders import (
    load_advbench,
    load_dro,
    load_file,
    load_harmbench,
    load_hf_dataset,
    load_jailbreakbench,
    load_malicious_instruct,
    load_refusal_direction,
    load_sorry_bench,
    load_strongreject,
    load_trustllm,
    load_xstest,
)
from interp.data.promptset import (
    HARMFUL,
    HARMFUL_KINDS,
    HARMLESS,
    UNKNOWN,
    Prompt,
    Prompts,
    PromptSet,
    as_prompt_set,
    split_by_kind,
    texts_of,
)
from interp.data.registry import (
    DATASET_GROUPS,
    DATASETS,
    DatasetSpec,
    dataset_path,
    list_datasets,
    load_dataset,
)

__all__ = [
    "DATASETS",
    "DATASET_GROUPS",
    "HARMFUL",
    "HARMFUL_KINDS",
    "HARMLESS",
    "HELD_OUT_SETS",
    "PUBLIC_SPLITS",
    "SUPPORTED_SUFFIXES",
    "UNKNOWN",
    "as_prompt_set",
    "DatasetSpec",
    "Prompt",
    "PromptSet",
    "Prompts",
    "dataset_path",
    "held_out_sets",
    "public_prompts",
    "list_datasets",
    "load_advbench",
    "load_dataset",
    "load_dro",
    "load_file",
    "load_harmbench",
    "load_hf_dataset",
    "load_jailbreakbench",
    "load_malicious_instruct",
    "load_refusal_direction",
    "load_sorry_bench",
    "load_strongreject",
    "load_trustllm",
    "load_xstest",
    "split_by_kind",
    "texts_of",
    "read_records",
]
