"""What loading an artifact checks: its JSON's checksum, its tensor files, finiteness, the model.

Every artifact JSON carries ``checksum`` (sha256 of its own content without that field, in
canonical JSON) and ``file_sha256`` (sha256 of each tensor file it describes), written by
`seal`. `read_meta` and `load_tensors` verify them, and `check_identity` compares the
``model_fingerprint`` the artifact records with the model it is loaded onto. Files saved before
these fields existed still load, with a logged warning that they cannot be checked.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from interp.errors import (
    CorruptArtifactError,
    InterpError,
    ModelFingerprintError,
    NonFiniteArtifactError,
)

__all__ = ["check_identity", "content_checksum", "load_tensors", "read_meta", "seal", "sha256_file"]

logger = logging.getLogger(__name__)

CHECKSUM = "checksum"
FILES = "file_sha256"
FINGERPRINT = "model_fingerprint"


def sha256_file(path: str | Path) -> str:
    """sha256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def content_checksum(meta: Mapping[str, Any]) -> str:
    """sha256 of `meta` without its ``checksum`` field, as canonical (sorted, compact) JSON."""
    body = {k: v for k, v in meta.items() if k != CHECKSUM}
    return hashlib.sha256(
        json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()


def seal(meta: Mapping[str, Any], folder: Path, files: Sequence[str] = ()) -> dict[str, Any]:
    """`meta` plus the sha256 of each of `files` (in `folder`) and its own checksum."""
    out = dict(meta)
    if files:
        out[FILES] = {name: sha256_file(folder / name) for name in files}
    out[CHECKSUM] = content_checksum(out)
    return out


def read_meta(path: Path, error: type[InterpError] = CorruptArtifactError) -> dict[str, Any]:
    """Read an artifact JSON and verify its checksum (a warning when it has none).

    Raises:
        error: The JSON does not parse or fails its checksum (it was edited after saving).
    """
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise error(
            f"{path} is not valid JSON ({err}); restore it or save the artifact again"
        ) from None
    if not isinstance(meta, dict):
        raise error(f"{path} does not hold a JSON object; restore it or save the artifact again")
    if CHECKSUM not in meta:
        logger.warning("%s has no checksum (saved before interp recorded one); not verified", path)
    elif content_checksum(meta) != meta[CHECKSUM]:
        raise error(
            f"{path} fails its checksum: it was edited or damaged after saving. Restore the file "
            "or save the artifact again; do not edit artifact JSON by hand"
        )
    return meta


def load_tensors(
    path: Path,
    meta: Mapping[str, Any],
    *,
    error: type[InterpError] = CorruptArtifactError,
    allow_nonfinite: Sequence[str] = (),
) -> dict[str, torch.Tensor]:
    """Load a safetensors file after checking the sha256 `meta` records for it.

    Args:
        path: The tensor file.
        meta: The artifact's (verified) JSON.
        error: The class raised on a checksum mismatch.
        allow_nonfinite: Tensor names that may hold NaN or inf (undefined metrics).

    Raises:
        error: The file's sha256 differs from the recorded one.
        NonFiniteArtifactError: A floating tensor holds NaN or inf.
    """
    recorded = meta.get(FILES, {}).get(path.name)
    if recorded is not None and sha256_file(path) != recorded:
        raise error(
            f"{path} fails its sha256 check against the JSON beside it: the file was altered, "
            "or a save was killed halfway. Save the artifact again"
        )
    tensors = load_file(str(path))
    bad = sorted(
        name
        for name, t in tensors.items()
        if name not in allow_nonfinite
        and t.is_floating_point()
        and not bool(torch.isfinite(t).all())
    )
    if bad:
        raise NonFiniteArtifactError(
            f"{path} holds NaN or inf in {', '.join(bad)}: training diverged or the file is "
            "damaged. Train and save the artifact again"
        )
    return tensors


def check_identity(
    meta: Mapping[str, Any],
    *,
    what: str,
    where: Path,
    saved_name: str,
    own_fingerprint: str,
    own_name: str,
    allow_other_model: bool,
    error: type[InterpError] = ModelFingerprintError,
) -> dict[str, str] | None:
    """Compare the artifact's recorded model fingerprint with the model's own.

    Returns:
        None when they match (or cannot be compared: a warning is logged); with
        `allow_other_model` and a different model, ``{"model", "model_fingerprint"}`` of the
        model the artifact was made on (a warning is logged).

    Raises:
        error: The fingerprints differ and `allow_other_model` is False.
    """
    saved = str(meta.get(FINGERPRINT) or "")
    if not saved or not own_fingerprint:
        logger.warning(
            "%s %s: %s, so its model identity cannot be checked",
            what,
            where,
            "saved without a model fingerprint (before interp recorded one)"
            if not saved
            else "the given model has no fingerprint",
        )
        return None
    if saved == own_fingerprint:
        return None
    text = (
        f"{what} {where} was made on model {saved_name!r} (fingerprint {saved[:12]}) but the "
        f"given model {own_name!r} has fingerprint {own_fingerprint[:12]}: same shapes, "
        "different weights (another seed or fine-tune)"
    )
    if not allow_other_model:
        raise error(
            f"{text}. Make the {what} again on this model, or pass allow_other_model=True to "
            "use it on another model on purpose (a transfer experiment)"
        )
    logger.warning("%s; loading it anyway (allow_other_model=True)", text)
    return {"model": saved_name, FINGERPRINT: saved}
