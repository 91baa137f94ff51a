"""Atomic writes: one file through a temporary name, a multi-file artifact through a staging folder.

Every multi-file `save` in interp goes through `save_atomically`: the files are written into a
fresh temporary folder beside the target, and only a complete set is moved into place. An
exception during writing (a full disk, Ctrl-C) leaves the target exactly as it was.

Two layouts exist. A directory artifact (every learned artifact, through
`interp._artifact.save_artifact`) swaps the whole folder: the old one is renamed aside, the
staged one renamed into place, then the old one removed; entries of the old folder that the
artifact does not write are carried over first. A set of sibling files (the report page and
its files) cannot be swapped in one rename, so the files are renamed one by one with the one
that commits the set last and the old files restored if a rename fails; only a hard kill
between two renames can leave a mixed set.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

__all__ = ["atomic_write", "save_atomically"]


def atomic_write(path: str | Path, data: bytes | str) -> None:
    """Write a file through a temporary file in the same folder and `os.replace`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data.encode() if isinstance(data, str) else data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes files private; these are shared artifacts
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_atomically(
    target: str | Path,
    write: Callable[[Path], None],
    *,
    files: Sequence[str] | None = None,
) -> None:
    """Run `write(staging_dir)`, then move what it wrote into place all at once.

    Args:
        target: The artifact directory (`files` None), or the folder that holds the sibling
            `files`.
        write: Writes the artifact's files into the folder it is given.
        files: For a sibling-file artifact, the names to move into `target`, in order (put the
            JSON that commits the artifact last). None swaps the whole directory `target`.
    """
    target = Path(target)
    parent = target if files is not None else target.parent
    parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=parent))
    try:
        new = staging / "new"
        new.mkdir()
        write(new)
        if files is None:
            _swap_dir(new, target, staging)
        else:
            _swap_files(new, target, files, staging)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _swap_dir(new: Path, final: Path, staging: Path) -> None:
    carried: list[str] = []
    try:
        if final.exists():
            # Entries the artifact does not write (the user's own files) move with it.
            for entry in final.iterdir():
                if not (new / entry.name).exists():
                    os.replace(entry, new / entry.name)
                    carried.append(entry.name)
            os.replace(final, staging / "old")
        os.replace(new, final)
    except BaseException:
        if (staging / "old").exists():
            os.replace(staging / "old", final)
        for name in carried:
            if (new / name).exists():
                os.replace(new / name, final / name)
        raise


def _swap_files(new: Path, folder: Path, names: Sequence[str], staging: Path) -> None:
    old = staging / "old"
    old.mkdir()
    moved: list[str] = []
    try:
        for name in names:
            if (folder / name).exists():
                os.replace(folder / name, old / name)
            moved.append(name)
            os.replace(new / name, folder / name)
    except BaseException:
        for name in reversed(moved):
            if (old / name).exists():
                os.replace(old / name, folder / name)
            else:
                (folder / name).unlink(missing_ok=True)
        raise
