"""Tests of the generic file and Hugging Face loaders and of their bad-input errors."""

import json
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from interp.data import load_dataset, load_file, load_hf_dataset, read_records
from interp.errors import DatasetFormatError, EmptyPromptSetError


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_csv_with_explicit_and_detected_columns(tmp_path: Path) -> None:
    path = _write(tmp_path / "p.csv", 'id,prompt,topic\n1,"Hi, there",greet\n2,Bye,leave\n')
    ps = load_file(path, label=0, kind="harmless", category_column="topic")
    assert ps.texts == ("Hi, there", "Bye")
    assert ps.categories == ("greet", "leave")
    assert ps.labels == (0, 0) and ps.name == "p" and ps.sources == ("p", "p")
    assert load_file(path, column="topic").texts == ("greet", "leave")


def test_missing_column_names_column_present_columns_and_fix(tmp_path: Path) -> None:
    path = _write(tmp_path / "p.csv", "id,question\n1,Why?\n")
    with pytest.raises(DatasetFormatError) as info:
        load_file(path, column="prompt")
    message = str(info.value)
    assert "'prompt'" in message and "['id', 'question']" in message and "column=" in message
    assert isinstance(info.value, ValueError)
    with pytest.raises(DatasetFormatError, match="category column|'topic' not found"):
        load_file(path, category_column="topic")


def test_undetectable_column_asks_for_one(tmp_path: Path) -> None:
    path = _write(tmp_path / "p.jsonl", '{"id": 1, "body": "x"}\n')
    with pytest.raises(DatasetFormatError, match=r"columns present: \['id', 'body'\].*column="):
        load_file(path)
    assert load_file(path, column="body").texts == ("x",)


def test_json_jsonl_tsv_and_txt(tmp_path: Path) -> None:
    records = [{"instruction": "a", "category": None}, {"instruction": "b", "category": "c"}]
    ps = load_file(_write(tmp_path / "r.json", json.dumps(records)), category_column="category")
    assert ps.texts == ("a", "b") and ps.categories == ("", "c")
    strings = load_file(_write(tmp_path / "s.json", '["x", "y"]'), label=1, kind="harmful")
    assert strings.texts == ("x", "y") and strings.kind_counts() == {"harmful": 2}
    turns = _write(tmp_path / "t.jsonl", '{"turns": ["hello"]}\n\n{"turns": ["bye"]}\n')
    assert load_file(turns).texts == ("hello", "bye")
    assert load_file(_write(tmp_path / "t.tsv", "prompt\tx\nhi, you\t1\n")).texts == ("hi, you",)
    txt = load_file(_write(tmp_path / "q.txt", "first \n\n  \nsecond\r\n"))
    assert txt.texts == ("first ", "second")
    with pytest.raises(DatasetFormatError, match="pass column=None"):
        load_file(tmp_path / "q.txt", column="text")
    with pytest.raises(DatasetFormatError, match="pass column=None"):
        load_file(tmp_path / "s.json", column="text")


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_file(tmp_path / "missing.csv")
    with pytest.raises(DatasetFormatError, match="unknown file type"):
        load_file(_write(tmp_path / "p.parquet", "x"))
    with pytest.raises(DatasetFormatError, match="line 2"):
        load_file(_write(tmp_path / "p.jsonl", '{"prompt": "a"}\n{broken\n'))
    with pytest.raises(DatasetFormatError, match="JSON list"):
        load_file(_write(tmp_path / "d.json", '{"prompt": "a"}'))
    with pytest.raises(DatasetFormatError, match="non-empty string"):
        load_file(_write(tmp_path / "e.csv", 'prompt\n""\nok\n'))
    with pytest.raises(DatasetFormatError, match="2 turns"):
        load_file(_write(tmp_path / "m.jsonl", '{"turns": ["a", "b"]}\n'))
    with pytest.raises(DatasetFormatError, match="number of fields"):
        load_file(_write(tmp_path / "r.csv", "prompt,b\nx,1,2\n"))


def test_empty_file_raises_empty_promptset_error(tmp_path: Path) -> None:
    for name, text in [("e.txt", "\n\n"), ("e.json", "[]"), ("e.csv", "prompt\n"), ("e.jsonl", "")]:
        with pytest.raises(EmptyPromptSetError, match="holds no prompts"):
            load_file(_write(tmp_path / name, text))
    assert read_records(tmp_path / "e.csv") == []


def test_load_dataset_needs_data_dir_and_a_known_name(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="needs data_dir"):
        load_dataset("advbench")
    with pytest.raises(ValueError, match="Did you mean 'advbench'"):
        load_dataset("advbnch", data_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match="pass the data_dir"):
        load_dataset("xstest", data_dir=tmp_path)
    with pytest.raises(TypeError, match="takes no options"):
        load_dataset("xstest", data_dir=tmp_path, column="prompt")
    path = _write(tmp_path / "mine.txt", "one\ntwo\n")
    assert len(load_dataset(path, label=1, kind="harmful")) == 2
    assert len(load_dataset("mine.txt", data_dir=tmp_path)) == 2


def test_hf_loader_explains_a_missing_datasets_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(ImportError, match="pip install datasets"):
        load_hf_dataset("org/name", "train", "prompt")


def test_hf_loader_builds_a_promptset(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[Any, ...]] = []

    def fake_load_dataset(dataset_id: str, config: str | None, **kwargs: Any) -> list[dict]:
        calls.append((dataset_id, config, kwargs))
        return [{"Goal": "g1", "Category": "c"}, {"Goal": "g2", "Category": "d"}]

    fake = types.ModuleType("datasets")
    fake.load_dataset = fake_load_dataset  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "datasets", fake)
    ps = load_hf_dataset(
        "JailbreakBench/JBB-Behaviors",
        "harmful",
        "Goal",
        config="behaviors",
        label=1,
        kind="harmful",
        category_column="Category",
    )
    assert ps.texts == ("g1", "g2") and ps.categories == ("c", "d")
    assert ps.name == "JailbreakBench/JBB-Behaviors/harmful"
    assert calls == [
        ("JailbreakBench/JBB-Behaviors", "behaviors", {"split": "harmful", "revision": None})
    ]
    with pytest.raises(DatasetFormatError, match="'prompt' not found"):
        load_hf_dataset("JailbreakBench/JBB-Behaviors", "harmful", "prompt")
