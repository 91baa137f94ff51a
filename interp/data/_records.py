"""Reading local CSV / TSV / JSON / JSONL / TXT files into records, and records into PromptSets."""

import csv
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from interp.data.promptset import UNKNOWN, PromptSet
from interp.errors import DatasetFormatError, EmptyPromptSetError

#: File suffixes `read_records` understands.
SUPPORTED_SUFFIXES = (".csv", ".tsv", ".json", ".jsonl", ".txt")

# Columns tried, in order and case-insensitively, when no text column is given. "goal" comes
# before "behavior" because JailbreakBench's "Behavior" is a short label, not the request.
_TEXT_COLUMNS = (
    "instruction",
    "prompt",
    "goal",
    "forbidden_prompt",
    "turns",
    "behavior",
    "text",
    "question",
    "query",
)
TEXT_KEY = "text"

Record = dict[str, Any]


def _check_exists(path: Path) -> None:
    if not path.is_file():
        raise FileNotFoundError(
            f"dataset file {str(path)!r} does not exist; check the path or the data_dir."
        )


def _read_json(path: Path) -> list[Any]:
    raw = path.read_text(encoding="utf-8")
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as error:
        if error.msg != "Extra data":
            raise DatasetFormatError(
                f"{path}: not valid JSON ({error}); fix the file or give it its real suffix."
            ) from error
        # A ".json" file holding one JSON value per line: read it as JSON Lines.
        return _read_jsonl(path)
    if not isinstance(data, list):
        raise DatasetFormatError(
            f"{path}: expected a JSON list of records or strings, got {type(data).__name__}; "
            "convert it to a list (or JSON Lines) first."
        )
    return data


def _read_jsonl(path: Path) -> list[Any]:
    records = []
    with path.open(encoding="utf-8") as file:
        for line_number, line in enumerate(file, start=1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise DatasetFormatError(
                    f"{path}, line {line_number}: not valid JSON ({error}); fix or remove the line."
                ) from error
    return records


def _read_csv(path: Path, delimiter: str) -> list[Record]:
    with path.open(encoding="utf-8-sig", newline="") as file:
        reader = csv.DictReader(file, delimiter=delimiter)
        rows = [dict(row) for row in reader]
        if reader.fieldnames is None:
            return []
        columns = list(reader.fieldnames)
    for i, row in enumerate(rows):
        if None in row or any(row[c] is None for c in columns):
            raise DatasetFormatError(
                f"{path}, data row {i + 1}: has a different number of fields than the header "
                f"{columns}; quote fields that contain the delimiter."
            )
    return rows


def _read_txt(path: Path) -> list[Record]:
    # One prompt per non-empty line; only the line terminator is removed.
    lines = path.read_text(encoding="utf-8").splitlines()
    return [{TEXT_KEY: line} for line in lines if line.strip()]


def read_records(path: str | Path) -> list[Any]:
    """Read a local dataset file into a list of records (dicts) or strings.

    CSV/TSV give one dict per data row, JSON a list (of dicts or strings), JSONL one value per
    non-empty line, TXT one ``{"text": line}`` per non-empty line.

    Args:
        path: The file; its suffix picks the format.

    Returns:
        The records, in file order.

    Raises:
        FileNotFoundError: If the file does not exist.
        DatasetFormatError: If the suffix is unknown or the file cannot be parsed.
    """
    path = Path(path)
    _check_exists(path)
    suffix = path.suffix.lower()
    readers: dict[str, Callable[[], list[Any]]] = {
        ".csv": lambda: _read_csv(path, ","),
        ".tsv": lambda: _read_csv(path, "\t"),
        ".json": lambda: _read_json(path),
        ".jsonl": lambda: _read_jsonl(path),
        ".txt": lambda: _read_txt(path),
    }
    if suffix not in readers:
        raise DatasetFormatError(
            f"{path}: unknown file type {suffix!r}; use one of {', '.join(SUPPORTED_SUFFIXES)}."
        )
    return readers[suffix]()


def columns_of(records: Sequence[Any]) -> list[str]:
    """Return the union of the keys of dict records, in order of first appearance."""
    seen: dict[str, None] = {}
    for record in records:
        if isinstance(record, Mapping):
            seen.update(dict.fromkeys(record))
    return list(seen)


def _missing_column(where: str, column: str, columns: list[str]) -> DatasetFormatError:
    return DatasetFormatError(
        f"{where}: column {column!r} not found; columns present: {columns}. "
        f"Fix: pass column=<one of {columns}> naming the column that holds the prompt text."
    )


def require_columns(where: str, records: Sequence[Any], *columns: str) -> None:
    """Raise unless every one of `columns` is a key of the records.

    Raises:
        DatasetFormatError: Naming the missing column, the columns present and the fix.
    """
    present = columns_of(records)
    for column in columns:
        if column not in present:
            raise _missing_column(where, column, present)


def resolve_text_column(where: str, records: Sequence[Any], column: str | None) -> str:
    """Return the column holding the prompt text: `column` itself, or a well-known one.

    Args:
        where: The file or dataset, for messages.
        records: The records (dicts).
        column: The column asked for, or None to detect a well-known one.

    Returns:
        The name of the text column.

    Raises:
        DatasetFormatError: If `column` is missing, or none is given and none is known.
    """
    columns = columns_of(records)
    if column is not None:
        if column not in columns:
            raise _missing_column(where, column, columns)
        return column
    by_lower = {c.lower(): c for c in columns}
    for candidate in _TEXT_COLUMNS:
        if candidate in by_lower:
            return by_lower[candidate]
    raise DatasetFormatError(
        f"{where}: no text column given and none of the usual ones {list(_TEXT_COLUMNS)} is "
        f"present; columns present: {columns}. Fix: pass column=<one of {columns}>."
    )


def text_of(where: str, row: int, value: object) -> str:
    """Return the prompt text of one cell; a single-turn ``turns`` list gives its only turn.

    Raises:
        DatasetFormatError: If the value is empty, multi-turn or not text.
    """
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if isinstance(value, list):
        raise DatasetFormatError(
            f"{where}, record {row}: {len(value)} turns; only single-turn prompts are supported, "
            "keep the first user turn of each conversation."
        )
    if not isinstance(value, str) or not value.strip():
        raise DatasetFormatError(
            f"{where}, record {row}: the prompt is {value!r}, not a non-empty string; "
            "remove the record or pick another column."
        )
    return value


def _cell(record: Any, key: str | None) -> str:
    if key is None or not isinstance(record, Mapping):
        return ""
    value = record.get(key)
    return "" if value is None else str(value)


def build_promptset(
    where: str,
    records: Sequence[Any],
    *,
    column: str | None,
    label: int | Callable[[Any], int] = UNKNOWN,
    kind: str | Callable[[Any], str] = "unknown",
    category_column: str | None = None,
    source: str = "",
    name: str = "",
    text: Callable[[Any], str] | None = None,
) -> PromptSet:
    """Turn records (dicts, or plain strings) into a PromptSet.

    Args:
        where: The file or dataset, for messages.
        records: The records.
        column: Text column of dict records (None: detect a well-known one).
        label: One label for all prompts, or a function of the record.
        kind: One kind for all prompts, or a function of the record.
        category_column: Column holding the category ("" where it is absent or null).
        source: The source of every prompt.
        name: The name of the set.
        text: A function of the record giving its text, overriding `column`.

    Returns:
        The PromptSet.

    Raises:
        EmptyPromptSetError: If there are no records.
        DatasetFormatError: If a column is missing or a prompt is not a non-empty string.
    """
    if not records:
        raise EmptyPromptSetError(
            f"{where} holds no prompts; check that it is the right file and not empty."
        )
    if all(isinstance(r, str) for r in records):
        if column is not None:
            raise DatasetFormatError(
                f"{where} is a list of strings, so it has no column {column!r}; pass column=None."
            )
        records = [{TEXT_KEY: r} for r in records]
        column = TEXT_KEY
    elif not all(isinstance(r, Mapping) for r in records):
        raise DatasetFormatError(
            f"{where}: records must all be objects or all be strings; fix the file."
        )
    key = None if text is not None else resolve_text_column(where, records, column)
    if category_column is not None:
        require_columns(where, records, category_column)
    texts = []
    for i, record in enumerate(records):
        if key is not None and key not in record:
            raise _missing_column(f"{where}, record {i}", key, list(record))
        texts.append(text_of(where, i, text(record) if text else record[key]))
    return PromptSet(
        texts=texts,
        labels=_per_record(label, records),
        kinds=_per_record(kind, records),
        categories=[_cell(r, category_column) for r in records],
        sources=[source] * len(records),
        name=name,
    )


def _per_record(value: Any, records: Iterable[Any]) -> list[Any]:
    return [value(r) if callable(value) else value for r in records]
