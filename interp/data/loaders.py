"""Loaders for local prompt files, Hugging Face datasets and the standard LLM-safety sets.

Every loader takes the path of one file in its original format (as published by the dataset's
authors) and returns a `PromptSet` with labels and kinds set from what the dataset is:

* harmful requests: label 1, kind "harmful";
* harmless requests: label 0, kind "harmless";
* safe prompts that look unsafe (over-refusal tests): label 0, kind "borderline";
* harmful goals wrapped in an attack template: label 1, kind "jailbreak".
"""

import importlib
from dataclasses import replace
from pathlib import Path
from typing import Any

from interp.data._records import build_promptset, read_records, require_columns
from interp.data.promptset import HARMFUL, HARMLESS, UNKNOWN, PromptSet
from interp.errors import DatasetFormatError


def load_file(
    path: str | Path,
    *,
    column: str | None = None,
    label: int = UNKNOWN,
    kind: str = "unknown",
    category_column: str | None = None,
    source: str | None = None,
    name: str | None = None,
) -> PromptSet:
    """Load prompts from any local CSV, TSV, JSON, JSONL or TXT file.

    TXT files hold one prompt per non-empty line. JSON files hold a list of strings or of
    objects; JSONL one object per line; CSV/TSV a header row. A column holding a list (such as
    the ``turns`` of MT-Bench-style files) gives its single turn.

    Args:
        path: The file; its suffix picks the format.
        column: The column with the prompt text. None picks the first present of "instruction",
            "prompt", "goal", "forbidden_prompt", "turns", "behavior", "text", "question",
            "query" (case-insensitive). Not allowed for TXT files and lists of strings.
        label: Label of every prompt (1 refuse, 0 answer, -1 unknown).
        kind: Kind of every prompt.
        category_column: Optional column with each prompt's category.
        source: Source of every prompt; by default the file's stem.
        name: Name of the set; by default the file's stem.

    Returns:
        The prompts, in file order.

    Raises:
        FileNotFoundError: If the file does not exist.
        DatasetFormatError: If the column is missing (the message lists the columns present),
            a prompt is empty or the file cannot be parsed.
        EmptyPromptSetError: If the file holds no prompts.
    """
    path = Path(path)
    records = read_records(path)
    if path.suffix.lower() == ".txt" and column is not None:
        raise DatasetFormatError(
            f"{path} is a TXT file (one prompt per line) and has no column {column!r}; "
            "pass column=None."
        )
    return build_promptset(
        str(path),
        records,
        column=column,
        label=label,
        kind=kind,
        category_column=category_column,
        source=path.stem if source is None else source,
        name=path.stem if name is None else name,
    )


def load_hf_dataset(
    dataset_id: str,
    split: str = "train",
    column: str | None = None,
    *,
    config: str | None = None,
    revision: str | None = None,
    label: int = UNKNOWN,
    kind: str = "unknown",
    category_column: str | None = None,
    name: str | None = None,
) -> PromptSet:
    """Load prompts from a Hugging Face Hub dataset (needs the network and `datasets`).

    `datasets` is imported only here, so the rest of `interp` works without it.

    Args:
        dataset_id: The Hub id, e.g. "JailbreakBench/JBB-Behaviors".
        split: The split to read.
        column: The column with the prompt text (None: detect, as in `load_file`).
        config: The dataset configuration (subset) name, if it has several.
        revision: A git revision of the dataset, to pin it.
        label: Label of every prompt.
        kind: Kind of every prompt.
        category_column: Optional column with each prompt's category.
        name: Name of the set; by default "<dataset_id>/<split>".

    Returns:
        The prompts, in dataset order.

    Raises:
        ImportError: If `datasets` is not installed.
        DatasetFormatError: If the column is missing.
    """
    try:
        datasets = importlib.import_module("datasets")
    except ImportError as error:
        raise ImportError(
            "load_hf_dataset needs the Hugging Face `datasets` package: `pip install datasets` "
            "(or download the file and use load_file)."
        ) from error
    table = datasets.load_dataset(dataset_id, config, split=split, revision=revision)
    return build_promptset(
        f"{dataset_id} [{split}]",
        list(table),
        column=column,
        label=label,
        kind=kind,
        category_column=category_column,
        source=dataset_id,
        name=name or f"{dataset_id}/{split}",
    )


def _harmful(path: Path, column: str, source: str, category_column: str | None) -> PromptSet:
    return build_promptset(
        str(path),
        read_records(path),
        column=column,
        label=HARMFUL,
        kind="harmful",
        category_column=category_column,
        source=source,
        name=source,
    )


def load_advbench(path: str | Path) -> PromptSet:
    """Load AdvBench's ``harmful_behaviors.csv`` (columns goal, target): 520 harmful goals."""
    return _harmful(Path(path), "goal", "advbench", None)


def load_harmbench(path: str | Path, *, functional_categories: tuple[str, ...] = ()) -> PromptSet:
    """Load a HarmBench behaviors CSV (``harmbench_behaviors_text_{val,test}.csv``).

    Contextual behaviors are rendered as HarmBench does: the context string, a blank line,
    ``---``, a blank line, then the behavior. Categories are the semantic categories.

    Args:
        path: The CSV file.
        functional_categories: Keep only these functional categories ("standard",
            "contextual", "copyright"); empty keeps all.

    Returns:
        The behaviors, label 1, kind "harmful".
    """
    path = Path(path)
    records = read_records(path)
    require_columns(str(path), records, "Behavior", "FunctionalCategory", "SemanticCategory")
    if functional_categories:
        records = [r for r in records if r["FunctionalCategory"] in functional_categories]

    def text(record: dict[str, Any]) -> str:
        context = (record.get("ContextString") or "").strip()
        behavior = record["Behavior"]
        return f"{context}\n\n---\n\n{behavior}" if context else behavior

    return build_promptset(
        str(path),
        records,
        column=None,
        text=text,
        label=HARMFUL,
        kind="harmful",
        category_column="SemanticCategory",
        source="harmbench",
        name="harmbench",
    )


def load_jailbreakbench(path: str | Path) -> PromptSet:
    """Load JailbreakBench's harmful ``behaviors.csv``: 100 goals with their category."""
    return _harmful(Path(path), "Goal", "jailbreakbench", "Category")


def load_strongreject(path: str | Path) -> PromptSet:
    """Load StrongREJECT's ``strongreject_dataset.csv``: 313 forbidden prompts by category."""
    return _harmful(Path(path), "forbidden_prompt", "strongreject", "category")


def load_malicious_instruct(path: str | Path) -> PromptSet:
    """Load MaliciousInstruct's TXT file: 100 harmful questions, one per line."""
    return _harmful(Path(path), "text", "malicious_instruct", None)


def _infer_label_kind(path: Path, label: int | None, kind: str | None) -> tuple[int, str]:
    """Guess harmless vs harmful from a file path when the caller did not say."""
    # Only the file and its folder are looked at, so where the data folder lives cannot matter.
    near = f"{path.parent.name}/{path.name}".lower()
    harmless = any(word in near for word in ("harmless", "alpaca"))
    default = (HARMLESS, "harmless") if harmless else (HARMFUL, "harmful")
    return (default[0] if label is None else label, default[1] if kind is None else kind)


def load_refusal_direction(
    path: str | Path, *, label: int | None = None, kind: str | None = None
) -> PromptSet:
    """Load a refusal-direction JSON file: a split or a processed per-source file.

    These are lists of ``{"instruction", "category"}`` objects (Arditi et al., 2024), or,
    for the raw TDC 2023 files, lists of strings.

    Args:
        path: The JSON file.
        label: Label of every prompt; by default 0 if the path names "harmless" or "alpaca",
            else 1.
        kind: Kind of every prompt; by default "harmless" or "harmful" likewise.

    Returns:
        The prompts; the category is "" where the file has none.
    """
    path = Path(path)
    label, kind = _infer_label_kind(path, label, kind)
    records = read_records(path)
    has_category = any(isinstance(r, dict) and "category" in r for r in records)
    source = f"refusal_direction/{path.parent.name}/{path.stem}"
    return build_promptset(
        str(path),
        records,
        column=None if all(isinstance(r, str) for r in records) else "instruction",
        label=label,
        kind=kind,
        category_column="category" if has_category else None,
        source=source,
        name=path.stem,
    )


def load_xstest(path: str | Path) -> PromptSet:
    """Load XSTest's ``xstest_prompts.csv``, keeping its safe / unsafe labels.

    Unsafe (contrast) prompts get label 1, kind "harmful"; safe prompts that merely look
    unsafe get label 0, kind "borderline". The category is the XSTest type (e.g. "homonyms").

    Raises:
        DatasetFormatError: If a label is neither "safe" nor "unsafe".
    """
    path = Path(path)
    records = read_records(path)
    require_columns(str(path), records, "prompt", "label", "type")
    for i, record in enumerate(records):
        if record["label"] not in ("safe", "unsafe"):
            raise DatasetFormatError(
                f"{path}, record {i}: label {record['label']!r} is neither 'safe' nor 'unsafe'; "
                "fix the row."
            )
    return build_promptset(
        str(path),
        records,
        column="prompt",
        label=lambda r: HARMFUL if r["label"] == "unsafe" else HARMLESS,
        kind=lambda r: "harmful" if r["label"] == "unsafe" else "borderline",
        category_column="type",
        source="xstest",
        name="xstest",
    )


def load_sorry_bench(path: str | Path) -> PromptSet:
    """Load a SORRY-Bench JSONL file (``turns``) as shipped by SafeSwitch.

    Every prompt is an unsafe instruction (label 1, kind "harmful"), possibly rewritten in a
    prompt style. The category is SORRY-Bench's category number ("" where the file has none);
    the source is "sorry_bench/<prompt_style>" where the file gives the style.
    """
    path = Path(path)
    records = read_records(path)
    prompts = build_promptset(
        str(path),
        records,
        column="turns",
        label=HARMFUL,
        kind="harmful",
        category_column="category" if any("category" in r for r in records) else None,
        source="sorry_bench",
        name=path.stem,
    )
    styles = [r.get("prompt_style") for r in records]
    return replace(
        prompts, sources=tuple(f"sorry_bench/{s}" if s else "sorry_bench" for s in styles)
    )


def load_trustllm(
    path: str | Path, *, label: int | None = None, kind: str | None = None
) -> PromptSet:
    """Load a TrustLLM JSONL file (``turns``) as shipped by SafeSwitch.

    By default the kind follows the file name: "jailbreak" files give label 1, kind
    "jailbreak"; "misuse" files label 1, kind "harmful"; "exaggerated_safety" files label 0,
    kind "borderline".

    Args:
        path: The JSONL file.
        label: Label of every prompt, overriding the file name.
        kind: Kind of every prompt, overriding the file name.

    Raises:
        DatasetFormatError: If the kind cannot be told from the file name and is not given.
    """
    path = Path(path)
    stem = path.stem.lower()
    by_name = {"jailbreak": (HARMFUL, "jailbreak"), "misuse": (HARMFUL, "harmful")}
    by_name["exaggerated"] = (HARMLESS, "borderline")
    guess = next((v for k, v in by_name.items() if k in stem), None)
    if label is None or kind is None:
        if guess is None:
            raise DatasetFormatError(
                f"{path}: cannot tell the kind of a TrustLLM file from its name; "
                "pass label= and kind=."
            )
        label = guess[0] if label is None else label
        kind = guess[1] if kind is None else kind
    return build_promptset(
        str(path),
        read_records(path),
        column="turns",
        label=label,
        kind=kind,
        source=f"trustllm/{kind}",
        name=path.stem,
    )


def load_dro(path: str | Path, *, label: int | None = None, kind: str | None = None) -> PromptSet:
    """Load a DRO (LLM-Safeguard) TXT query set, one query per line.

    Files under ``data_harmless/`` are harmless (label 0), the others harmful (label 1),
    unless `label` and `kind` say otherwise.
    """
    path = Path(path)
    label, kind = _infer_label_kind(path, label, kind)
    return build_promptset(
        str(path),
        read_records(path),
        column="text",
        label=label,
        kind=kind,
        source=f"dro/{path.parent.name}/{path.stem}",
        name=f"dro_{path.stem}",
    )
