"""Short names for the standard prompt sets, and `load_dataset` to load one by name or path.

The files are the ones in the shared data folder (one subfolder per source repository, each
file in its original format and name). The library never guesses that folder: the caller
passes `data_dir`, or a path.
"""

import difflib
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

from interp.data import loaders
from interp.data.promptset import HARMFUL, HARMLESS, PromptSet


@dataclass(frozen=True)
class DatasetSpec:
    """A named prompt set: which file to read and how.

    Attributes:
        name: The short name `load_dataset` accepts.
        file: The file, relative to the data folder.
        loader: The function that reads that file into a PromptSet.
        description: One line on what the set is.
    """

    name: str
    file: str
    loader: Callable[[Path], PromptSet]
    description: str


_RD = "refusal_direction"
_SS = "safeswitch"
_DRO = "llm_safeguard"


def _utility(column: str, category_column: str | None, source: str) -> Callable[[Path], PromptSet]:
    return partial(
        loaders.load_file,
        column=column,
        label=HARMLESS,
        kind="harmless",
        category_column=category_column,
        source=source,
    )


def _specs() -> list[DatasetSpec]:
    rd_json = loaders.load_refusal_direction
    harmful_txt = partial(loaders.load_dro, label=HARMFUL, kind="harmful")
    harmless_txt = partial(loaders.load_dro, label=HARMLESS, kind="harmless")
    return [
        DatasetSpec("advbench", f"{_RD}/raw/advbench.csv", loaders.load_advbench, "AdvBench harmful behaviors (goal column)"),
        DatasetSpec("harmbench", f"{_RD}/raw/harmbench_test.csv", loaders.load_harmbench, "HarmBench text test behaviors (all functional categories)"),
        DatasetSpec("harmbench_val", f"{_RD}/raw/harmbench_val.csv", loaders.load_harmbench, "HarmBench text val behaviors (all functional categories)"),
        DatasetSpec("jailbreakbench", f"{_RD}/raw/jailbreakbench.csv", loaders.load_jailbreakbench, "JailbreakBench harmful behaviors (plain goals, not jailbreaks)"),
        DatasetSpec("strongreject", f"{_RD}/raw/strongreject.csv", loaders.load_strongreject, "StrongREJECT forbidden prompts"),
        DatasetSpec("malicious_instruct", "malicious_instruct/MaliciousInstruct.txt", loaders.load_malicious_instruct, "MaliciousInstruct harmful questions"),
        DatasetSpec("tdc2023_dev", f"{_RD}/raw/tdc2023_dev_behaviors.json", rd_json, "TDC 2023 red-teaming dev behaviors"),
        DatasetSpec("tdc2023_test", f"{_RD}/raw/tdc2023_test_behaviors.json", rd_json, "TDC 2023 red-teaming test behaviors"),
        DatasetSpec("xstest", "xstest/xstest_prompts.csv", loaders.load_xstest, "XSTest: safe look-alikes (borderline) and unsafe contrasts (harmful)"),
        DatasetSpec("harmful_train", f"{_RD}/splits/harmful_train.json", rd_json, "Refusal-direction harmful train split"),
        DatasetSpec("harmful_val", f"{_RD}/splits/harmful_val.json", rd_json, "Refusal-direction harmful val split"),
        DatasetSpec("harmful_test", f"{_RD}/splits/harmful_test.json", rd_json, "Refusal-direction harmful test split"),
        DatasetSpec("harmless_train", f"{_RD}/splits/harmless_train.json", rd_json, "Refusal-direction harmless (Alpaca) train split"),
        DatasetSpec("harmless_val", f"{_RD}/splits/harmless_val.json", rd_json, "Refusal-direction harmless (Alpaca) val split"),
        DatasetSpec("harmless_test", f"{_RD}/splits/harmless_test.json", rd_json, "Refusal-direction harmless (Alpaca) test split"),
        DatasetSpec("alpaca", f"{_RD}/processed/alpaca.json", rd_json, "Alpaca instructions without input (harmless)"),
        DatasetSpec("rd_advbench", f"{_RD}/processed/advbench.json", rd_json, "AdvBench, refusal-direction processed form"),
        DatasetSpec("rd_harmbench_test", f"{_RD}/processed/harmbench_test.json", rd_json, "HarmBench test, standard behaviors only"),
        DatasetSpec("rd_harmbench_val", f"{_RD}/processed/harmbench_val.json", rd_json, "HarmBench val, standard behaviors only"),
        DatasetSpec("rd_jailbreakbench", f"{_RD}/processed/jailbreakbench.json", rd_json, "JailbreakBench, refusal-direction processed form"),
        DatasetSpec("rd_malicious_instruct", f"{_RD}/processed/malicious_instruct.json", rd_json, "MaliciousInstruct, refusal-direction processed form"),
        DatasetSpec("rd_strongreject", f"{_RD}/processed/strongreject.json", rd_json, "StrongREJECT, refusal-direction processed form"),
        DatasetSpec("tdc2023", f"{_RD}/processed/tdc2023.json", rd_json, "TDC 2023 behaviors (dev + test)"),
        DatasetSpec("sorry_bench", f"{_SS}/sorry-bench.jsonl", loaders.load_sorry_bench, "SORRY-Bench, 450 instructions x 10 prompt styles"),
        DatasetSpec("sorry_bench_train", f"{_SS}/sorry-bench-train.jsonl", loaders.load_sorry_bench, "SORRY-Bench, SafeSwitch train part"),
        DatasetSpec("sorry_bench_eval", f"{_SS}/sorry-bench-eval.jsonl", loaders.load_sorry_bench, "SORRY-Bench, SafeSwitch eval part"),
        DatasetSpec("trustllm_jailbreak_train", f"{_SS}/trustllm-jailbreak-train.jsonl", loaders.load_trustllm, "TrustLLM jailbreak prompts, train part"),
        DatasetSpec("trustllm_jailbreak", f"{_SS}/trustllm-jailbreak-eval.jsonl", loaders.load_trustllm, "TrustLLM jailbreak prompts, eval part"),
        DatasetSpec("trustllm_misuse_train", f"{_SS}/trustllm-misuse-train.jsonl", loaders.load_trustllm, "TrustLLM misuse questions, train part"),
        DatasetSpec("trustllm_misuse", f"{_SS}/trustllm-misuse-eval.jsonl", loaders.load_trustllm, "TrustLLM misuse questions, eval part"),
        DatasetSpec("trustllm_exaggerated_safety", f"{_SS}/trustllm-exaggerated_safety.jsonl", loaders.load_trustllm, "TrustLLM exaggerated-safety prompts (borderline)"),
        DatasetSpec("alpaca_eval", f"{_SS}/alpaca-eval.jsonl", _utility("turns", "dataset", "alpaca_eval"), "AlpacaEval instructions (harmless, utility)"),
        DatasetSpec("trivia_qa", f"{_SS}/trivia_qa.jsonl", _utility("turns", None, "trivia_qa"), "TriviaQA questions (harmless, utility)"),
        DatasetSpec("dro_alpaca_eval", f"{_DRO}/data_alpaca/alpaca_eval.json", _utility("instruction", "dataset", "dro/alpaca_eval"), "AlpacaEval as shuffled by DRO (harmless, utility)"),
        DatasetSpec("dro_harmful", f"{_DRO}/data/custom.txt", harmful_txt, "DRO custom harmful queries"),
        DatasetSpec("dro_harmless", f"{_DRO}/data_harmless/custom.txt", harmless_txt, "DRO custom harmless queries"),
        DatasetSpec("dro_harmless_test", f"{_DRO}/data_harmless/testset.txt", harmless_txt, "DRO harmless test queries"),
        DatasetSpec("dro_advbench", f"{_DRO}/data/advbench.txt", harmful_txt, "AdvBench goals as used by DRO"),
        DatasetSpec("dro_malicious_instruct", f"{_DRO}/data/MaliciousInstruct.txt", harmful_txt, "MaliciousInstruct as used by DRO"),
    ]  # fmt: skip


#: Every named prompt set, by short name.
DATASETS: dict[str, DatasetSpec] = {spec.name: spec for spec in _specs()}

#: Names that load several sets concatenated.
DATASET_GROUPS: dict[str, tuple[str, ...]] = {
    "trustllm": ("trustllm_jailbreak", "trustllm_misuse", "trustllm_exaggerated_safety"),
}


def list_datasets() -> list[str]:
    """Return every name `load_dataset` accepts (single sets and groups), sorted."""
    return sorted([*DATASETS, *DATASET_GROUPS])


def _unknown(name: str, data_dir: Path | None) -> ValueError:
    close = difflib.get_close_matches(name, list_datasets(), n=3)
    hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
    where = f" nor a file (looked in {str(data_dir)!r} too)" if data_dir else " nor a file"
    return ValueError(
        f"{name!r} is neither a known dataset name{where}.{hint} Known names: "
        f"{', '.join(list_datasets())}; or pass the path of a CSV/JSON/JSONL/TXT file."
    )


def dataset_path(name: str, data_dir: str | Path) -> Path:
    """Return the file a named set is read from under `data_dir`.

    Raises:
        KeyError: If `name` is not a single named set.
        FileNotFoundError: If the file is not there.
    """
    path = Path(data_dir) / DATASETS[name].file
    if not path.is_file():
        raise FileNotFoundError(
            f"dataset {name!r} expects the file {str(path)!r}, which does not exist; pass the "
            f"data_dir that holds {DATASETS[name].file!r}."
        )
    return path


def load_dataset(
    name_or_path: str | Path, *, data_dir: str | Path | None = None, **kwargs: Any
) -> PromptSet:
    """Load a prompt set by short name (see `list_datasets`) or from a file path.

    A name reads its standard file under `data_dir` with its own loader. Anything else is
    taken as a path (relative paths are tried as given, then under `data_dir`) and read with
    `load_file`, to which `kwargs` (column, label, kind, ...) are passed.

    Args:
        name_or_path: A short name such as "advbench", "xstest" or "harmless_train", or a path.
        data_dir: The data folder holding the standard files (one subfolder per source). It
            has no default: the library does not guess where data lives.
        **kwargs: Passed to `load_file` when loading a path.

    Returns:
        The prompts; a named set is named after its short name.

    Raises:
        ValueError: If a name is given without `data_dir`, or `name_or_path` is neither a
            known name nor an existing file.
        FileNotFoundError: If a named set's file is not under `data_dir`.
    """
    key = str(name_or_path)
    if key in DATASETS or key in DATASET_GROUPS:
        if data_dir is None:
            raise ValueError(
                f"load_dataset({key!r}) needs data_dir=<folder with the standard data files> "
                "(the folder with refusal_direction/, xstest/, safeswitch/, ...)."
            )
        if kwargs:
            raise TypeError(f"named dataset {key!r} takes no options, got {sorted(kwargs)}")
        if key in DATASET_GROUPS:
            parts = [load_dataset(part, data_dir=data_dir) for part in DATASET_GROUPS[key]]
            return PromptSet.concat(parts, name=key)
        spec = DATASETS[key]
        prompts = spec.loader(dataset_path(key, data_dir))
        return replace(prompts, name=key)
    path = Path(name_or_path)
    if not path.is_file() and data_dir is not None and (Path(data_dir) / path).is_file():
        path = Path(data_dir) / path
    if not path.is_file():
        raise _unknown(key, Path(data_dir) if data_dir is not None else None)
    return loaders.load_file(path, **kwargs)
