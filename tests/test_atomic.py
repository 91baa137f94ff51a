"""Atomic multi-file saves (interp._atomic): all new files or all old ones, never a mix."""

import os

import pytest

from interp import _atomic


def _tree(path):
    return {p.name: p.read_text() for p in sorted(path.iterdir())}


def _writer(text, fail=False):
    def write(folder):
        (folder / "a.safetensors").write_text(text)
        if fail:
            raise KeyboardInterrupt
        (folder / "a.json").write_text(text)

    return write


def test_a_failed_directory_save_leaves_the_old_directory(tmp_path):
    target = tmp_path / "art"
    _atomic.save_atomically(target, _writer("old"))
    (target / "mine.txt").write_text("user file")
    with pytest.raises(KeyboardInterrupt):
        _atomic.save_atomically(target, _writer("new", fail=True))
    assert _tree(target) == {"a.json": "old", "a.safetensors": "old", "mine.txt": "user file"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["art"]  # no staging folder left


def test_a_failed_rename_into_place_restores_everything(tmp_path, monkeypatch):
    target = tmp_path / "art"
    _atomic.save_atomically(target, _writer("old"))
    (target / "mine.txt").write_text("user file")
    real = os.replace

    def fail_into_place(src, dst):
        if str(dst) == str(target) and str(src).endswith("new"):
            raise OSError("rename failed")
        return real(src, dst)

    monkeypatch.setattr(_atomic.os, "replace", fail_into_place)
    with pytest.raises(OSError, match="rename failed"):
        _atomic.save_atomically(target, _writer("new"))
    monkeypatch.setattr(_atomic.os, "replace", real)
    assert _tree(target) == {"a.json": "old", "a.safetensors": "old", "mine.txt": "user file"}
    _atomic.save_atomically(target, _writer("new"))
    assert _tree(target) == {"a.json": "new", "a.safetensors": "new", "mine.txt": "user file"}
