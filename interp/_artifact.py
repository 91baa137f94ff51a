"""How every learned artifact is saved and loaded: one directory, one tensor file, one JSON.

`save_artifact(dir, kind, identity, meta, tensors)` writes ``<dir>/<kind>.safetensors`` and
``<dir>/<kind>.json`` into a staging folder and swaps the directory into place
(`interp._atomic`). The JSON starts with the same header for every artifact: ``format``
(``interp.<kind>/<version>``), ``library_version`` and the `ModelIdentity` of the model it was
made on (``model_name``, ``d_model``, ``template_hash``, ``model_fingerprint``); it carries
``checksum`` (sha256 of its own content without that field, in canonical JSON) and
``file_sha256`` (sha256 of the tensor file), written by `seal`.

`load_artifact(dir, kind, model, ...)` reads it back in one order for every artifact: the JSON
and its checksum, the format, the tensor file's sha256 (unless ``verify=False``) and
finiteness, the width and chat template against the model, the artifact's own checks (its
``build`` callback), and last the model fingerprint (`check_identity`), which
``allow_other_model=True`` relaxes into a logged transfer. Files saved before fingerprints and
checksums existed still load, with a logged warning that they cannot be checked.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Self, TypeVar

import torch
from safetensors.torch import load_file, save_file
from transformer_lens.model_bridge import TransformerBridge

from interp._atomic import save_atomically
from interp._version import __version__
from interp.errors import (
    ArtifactMismatchError,
    ArtifactVersionError,
    CorruptArtifactError,
    InterpError,
    ModelFingerprintError,
    NonFiniteArtifactError,
)
from interp.model import model_fingerprint, template_hash

__all__ = [
    "Artifact",
    "ModelIdentity",
    "Saved",
    "check_identity",
    "content_checksum",
    "load_artifact",
    "load_tensors",
    "read_meta",
    "save_artifact",
    "seal",
    "sha256_file",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")

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
    verify: bool = True,
) -> dict[str, torch.Tensor]:
    """Load a safetensors file after checking the sha256 `meta` records for it.

    Args:
        path: The tensor file.
        meta: The artifact's (verified) JSON.
        error: The class raised on a checksum mismatch.
        allow_nonfinite: Tensor names that may hold NaN or inf (undefined metrics).
        verify: Check the file's sha256 (False skips it for a trusted local file; the
            finiteness check always runs).

    Raises:
        error: The file's sha256 differs from the recorded one.
        NonFiniteArtifactError: A floating tensor holds NaN or inf.
    """
    recorded = meta.get(FILES, {}).get(path.name)
    if verify and recorded is not None and sha256_file(path) != recorded:
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


@dataclass(frozen=True)
class ModelIdentity:
    """The model an artifact was made on, recorded at fit time and written into its JSON.

    Attributes:
        name: The model's name (`model.cfg.model_name`); "" when unknown.
        d_model: Width of its residual stream; 0 when unknown.
        template_hash: sha256 of its chat template (`interp.model.template_hash`); "" when
            unknown or the model has no template.
        fingerprint: `interp.model_fingerprint` of its weights; "" when unknown (an artifact
            built by hand from tensors, or saved before fingerprints were recorded).
    """

    name: str = ""
    d_model: int = 0
    template_hash: str = ""
    fingerprint: str = ""

    @classmethod
    def of(cls, model: TransformerBridge) -> ModelIdentity:
        """The identity of a loaded bridge (the fingerprint is cached per bridge)."""
        return cls(
            name=str(model.cfg.model_name),
            d_model=int(model.cfg.d_model),
            template_hash=template_hash(model.tokenizer),
            fingerprint=model_fingerprint(model),
        )

    def to_meta(self) -> dict[str, Any]:
        """The JSON header fields (``model_name``, ``d_model``, ``template_hash``, ...)."""
        return {
            "model_name": self.name,
            "d_model": self.d_model,
            "template_hash": self.template_hash,
            FINGERPRINT: self.fingerprint,
        }

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any]) -> ModelIdentity:
        """Read the header fields back (missing ones, in older files, stay unknown)."""
        return cls(
            name=str(meta.get("model_name") or ""),
            d_model=int(meta.get("d_model") or 0),
            template_hash=str(meta.get("template_hash") or ""),
            fingerprint=str(meta.get(FINGERPRINT) or ""),
        )


@dataclass(frozen=True)
class Saved:
    """What an artifact is rebuilt from on load: its verified files and the `load` call.

    Attributes:
        meta: The artifact's JSON (checksum verified).
        tensors: Its tensors (sha256 verified unless `verify` is False; all finite).
        model: The model it is loaded onto.
        path: The artifact directory (or the base of an older sibling-file pair).
        allow_other_model: Whether a model with other weights is accepted on purpose.
        verify: Whether tensor files are checked against their sha256 (nested artifacts too).
        check_weights: Whether the artifact's own weight checks (unembedding, embeddings,
            `o_proj`) should run: only when no transfer was asked for and the fingerprint
            cannot decide (a file saved before fingerprints were recorded). Otherwise the
            fingerprint check that follows `_from_saved` decides, with its precise error.
    """

    meta: dict[str, Any]
    tensors: dict[str, torch.Tensor]
    model: TransformerBridge
    path: Path
    allow_other_model: bool
    verify: bool
    check_weights: bool


def save_artifact(
    path: str | Path,
    kind: str,
    version: int,
    identity: ModelIdentity,
    meta: Mapping[str, Any],
    tensors: Mapping[str, torch.Tensor],
    *,
    extra: Callable[[Path], object] | None = None,
) -> Path:
    """Write directory `path`: ``<kind>.safetensors`` and ``<kind>.json``; returns `path`.

    The JSON holds the common header (format ``interp.<kind>/<version>``, the current
    library version, the identity's fields), then `meta` (which may override
    ``library_version``), sealed with its checksum and the tensor file's sha256. The
    directory is staged beside `path` and swapped into place as a whole (`interp._atomic`);
    files of the user's in an existing `path` are kept.

    Args:
        path: The artifact directory.
        kind: The artifact's file stem and format name (``direction``, ``cast``, ...).
        version: Its on-disk format version.
        identity: The model it was made on.
        meta: Its own JSON fields.
        tensors: Its tensors (made contiguous here).
        extra: Writes more files into the staging folder first (a nested artifact).
    """
    root = Path(path)
    header: dict[str, Any] = {
        "format": f"interp.{kind}/{version}",
        "library_version": __version__,
        **identity.to_meta(),
        **meta,
    }
    tensor_file = f"{kind}.safetensors"

    def write(folder: Path) -> None:
        if extra is not None:
            extra(folder)
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(folder / tensor_file))
        sealed = seal(header, folder, [tensor_file])
        text = json.dumps(sealed, indent=1, sort_keys=True) + "\n"
        (folder / f"{kind}.json").write_text(text)

    save_atomically(root, write)
    return root


def _files(path: Path, kind: str, legacy_pair: bool) -> tuple[Path, Path] | None:
    """The JSON and tensor file of the artifact at `path`, or None when there is none."""
    if (path / f"{kind}.json").is_file():
        return path / f"{kind}.json", path / f"{kind}.safetensors"
    if legacy_pair:
        # Before one directory per artifact, `save(p)` wrote the sibling pair p.json, p.safetensors.
        base = path.with_suffix("") if path.suffix in (".json", ".safetensors") else path
        if base.with_suffix(".json").is_file():
            return base.with_suffix(".json"), base.with_suffix(".safetensors")
    return None


def _check_format(meta: Mapping[str, Any], where: Path, kind: str, version: int, what: str) -> None:
    expected = f"interp.{kind}/{version}"
    found = meta.get("format")
    if found == expected:
        return
    if "format_version" in meta or str(found).startswith(f"interp.{kind}/"):
        old = found if found is not None else f"format_version {meta['format_version']}"
        raise ArtifactVersionError(
            f"{where} holds a {what} in the on-disk format {old}, which this interp "
            f"({__version__}) no longer reads (it reads {expected}); fit the {what} again and "
            "save it"
        )
    raise ArtifactMismatchError(f"{where} is not an interp {what} file (format {found!r})")


def _check_fit(
    saved: ModelIdentity,
    own: ModelIdentity,
    *,
    what: str,
    where: Path,
    error: type[InterpError],
) -> None:
    """Width and chat template, checked before identity (they are what a transfer keeps)."""
    head = f"{what} {where} does not fit this model: it was made on {saved.name!r}"
    if saved.d_model and saved.d_model != own.d_model:
        raise error(
            f"{head} with d_model {saved.d_model}, but {own.name!r} has d_model "
            f"{own.d_model}. Make the {what} again on this model"
        )
    if saved.template_hash and own.template_hash and saved.template_hash != own.template_hash:
        raise error(
            f"{head} with another chat template ({saved.template_hash[:12]}) than this model's "
            f"({own.template_hash[:12]}): prompt positions would not line up. Make the {what} "
            "again on this model"
        )


def load_artifact(
    path: str | Path,
    kind: str,
    version: int,
    model: TransformerBridge,
    build: Callable[[Saved], T],
    *,
    what: str,
    allow_other_model: bool = False,
    verify: bool = True,
    mismatch: type[InterpError] = ArtifactMismatchError,
    legacy_pair: bool = False,
    allow_nonfinite: Sequence[str] = (),
) -> tuple[T, dict[str, str] | None]:
    """Read and check the artifact `save_artifact` wrote at `path`, and build it.

    Args:
        path: The artifact directory (with `legacy_pair`, also an older ``<p>.json`` /
            ``<p>.safetensors`` pair, named as ``p``, ``p.json`` or ``p.safetensors``).
        kind: Its file stem and format name.
        version: The format version this code reads.
        model: The model it will be used on.
        build: Makes the object from the verified files (`Saved`) and runs the artifact's
            own checks against `model`, raising on a mismatch.
        what: The artifact's name in messages.
        allow_other_model: Accept an artifact made on a model with other weights (same width
            and template) on purpose: a warning is logged and its model is returned.
        verify: Check the tensor file's sha256 (the JSON checksum, finiteness and the model
            checks always run).
        mismatch: The class raised when width or chat template differ.
        legacy_pair: Also read the older sibling-file layout.
        allow_nonfinite: Tensor names that may hold NaN or inf.

    Returns:
        The object, and None, or with `allow_other_model` onto a model with other weights,
        ``{"model", "model_fingerprint"}`` of the model it was made on.

    Raises:
        ArtifactMismatchError: `path` holds no such artifact.
        ArtifactVersionError: It was saved in an older on-disk format.
        CorruptArtifactError: The JSON or the tensor file fails its checksum.
        NonFiniteArtifactError: A tensor holds NaN or inf.
        mismatch: Width or chat template differ from the model's.
        ModelFingerprintError: It was made on a model with other weights.
    """
    root = Path(path)
    files = _files(root, kind, legacy_pair)
    if files is None:
        raise mismatch(f"{root} holds no {kind}.json: it is not a saved {what}")
    meta_path, tensor_path = files
    meta = read_meta(meta_path)
    _check_format(meta, meta_path, kind, version, what)
    tensors = load_tensors(tensor_path, meta, verify=verify, allow_nonfinite=allow_nonfinite)
    saved, own = ModelIdentity.from_meta(meta), ModelIdentity.of(model)
    _check_fit(saved, own, what=what, where=meta_path, error=mismatch)
    weights = not allow_other_model and not (saved.fingerprint and own.fingerprint)
    obj = build(Saved(meta, tensors, model, root, allow_other_model, verify, weights))
    transfer = check_identity(
        meta,
        what=what,
        where=meta_path,
        saved_name=saved.name,
        own_fingerprint=own.fingerprint,
        own_name=own.name,
        allow_other_model=allow_other_model,
    )
    return obj, transfer


class Artifact:
    """The one save/load shape of every learned artifact: `save(dir)` and `load(dir, model)`.

    A subclass names its files and format (`_KIND`, `_VERSION`), how it is called in messages
    (`_WHAT`) and implements `_payload` (its JSON fields and tensors), `_from_saved` (the
    object from them, with its own checks against the model) and, when it records the model
    in another attribute than `model_`, `_identity`. Everything else (the directory, the
    header, checksums, finiteness, width, template and fingerprint checks) is here and in
    `save_artifact` / `load_artifact`, once.
    """

    _KIND: ClassVar[str]
    _VERSION: ClassVar[int]
    _WHAT: ClassVar[str]
    #: The error raised when the width or chat template differ from the model's.
    _MISMATCH: ClassVar[type[InterpError]] = ArtifactMismatchError
    #: Whether the older sibling-file layout (`<p>.json`, `<p>.safetensors`) still loads.
    _LEGACY_PAIR: ClassVar[bool] = False
    #: The attribute `load` records a deliberate transfer in (None: not recorded).
    _TRANSFER: ClassVar[str | None] = "transferred_from_"

    model_: ModelIdentity

    def _identity(self) -> ModelIdentity:
        return self.model_

    def _payload(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        raise NotImplementedError

    def _extra(self, folder: Path) -> None:
        """Write nested artifacts into the staging folder (none by default)."""

    @classmethod
    def _from_saved(cls, saved: Saved) -> Self:
        raise NotImplementedError

    def save(self, path: str | Path) -> Path:
        """Write directory `path` (``<kind>.safetensors`` and ``<kind>.json``); returns `path`.

        The JSON records the model the artifact was made on (name, width, chat-template hash,
        `interp.model_fingerprint`), the library version, a checksum of itself and the sha256
        of the tensor file. The directory is staged beside `path` and swapped into place as a
        whole (`interp._atomic`): an interrupted save leaves an older artifact there intact,
        and files of the user's in `path` are kept.

        Raises:
            NotFittedError: The artifact is not fitted.
        """
        meta, tensors = self._payload()
        identity = self._identity()
        return save_artifact(
            path, self._KIND, self._VERSION, identity, meta, tensors, extra=self._extra
        )

    @classmethod
    def load(
        cls,
        path: str | Path,
        model: TransformerBridge,
        *,
        allow_other_model: bool = False,
        verify: bool = True,
    ) -> Self:
        """Load a saved artifact for `model`; refuses a model it was not made on.

        Args:
            path: The directory `save` wrote.
            model: The model it will be used on.
            allow_other_model: Accept an artifact made on a model with other weights (same
                width and chat template) on purpose, for a transfer experiment: a warning is
                logged, `transferred_from_` names the model it was made on and the
                artifact's own weight checks are skipped.
            verify: Check the tensor file's sha256 (False: trust it; the JSON checksum,
                finiteness and the model checks always run).

        Raises:
            ArtifactMismatchError: `path` holds no such artifact, or it does not fit `model`
                (width, chat template, or the artifact's own checks: depth, head shape,
                embeddings; some artifacts raise a subclass).
            ArtifactVersionError: It was saved in an older on-disk format.
            ModelFingerprintError: It was made on a model with other weights.
            CorruptArtifactError: The JSON or the tensor file fails its checksum.
            NonFiniteArtifactError: A saved tensor holds NaN or inf.
        """
        root = Path(path)

        obj, transfer = load_artifact(
            root,
            cls._KIND,
            cls._VERSION,
            model,
            cls._from_saved,
            what=cls._WHAT,
            allow_other_model=allow_other_model,
            verify=verify,
            mismatch=cls._MISMATCH,
            legacy_pair=cls._LEGACY_PAIR,
        )
        if cls._TRANSFER is not None:
            # object.__setattr__: frozen dataclasses (`Direction`) record it too.
            object.__setattr__(obj, cls._TRANSFER, transfer)
        return obj
