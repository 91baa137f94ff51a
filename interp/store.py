"""An on-disk activation store: safetensors shards plus JSON metadata, resumable.

Layout of a store directory::

    meta.json                  what was cached and for which model / template / prompts
    index.json                 finished shards with their row range, size and sha256
    shard-00000.safetensors    site label -> [rows, n_columns, d_model]

Every file is written to a temporary name and renamed into place, so an interrupted run
never leaves a half-written shard behind; running the same command again skips the shards
listed in the index and computes the rest. Shards hold whole batches, so a resumed store
is byte-identical to an uninterrupted one. Reading is memory mapped.

`meta.json` and `index.json` carry a checksum of their own content, and the index the sha256
of every shard; `ActivationStore.open` refuses an edited JSON, and by default each shard's
sha256 is verified on its first read. The model's `interp.model_fingerprint` is recorded, so
a store is refused by a model with other weights (`allow_other_model=True` opts in).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from tqdm.auto import tqdm
from transformer_lens.model_bridge import TransformerBridge

from interp._artifact import (
    CHECKSUM,
    check_identity,
    content_checksum,
    read_meta,
    seal,
    sha256_file,
)
from interp._atomic import atomic_write
from interp._checks import check_int
from interp._version import __version__
from interp.activations import Activations, batches, collect_batch, columns_for, resolve_sites
from interp.chat import resolve_system
from interp.data.promptset import texts_of
from interp.errors import CorruptStoreError, EmptyPromptSetError, StoreMismatchError
from interp.model import model_fingerprint, model_info
from interp.sites import Site

__all__ = ["ActivationStore", "cache_activations"]

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
# What must agree for a run to resume a store; the prompts are compared by `prompts_match`.
_IDENTITY = ("model", "sites", "columns", "system", "dtype", "shard_size")


def _write_json(path: Path, obj: dict[str, Any]) -> None:
    """Write `obj` with its own checksum, atomically."""
    atomic_write(path, json.dumps(seal(obj, path.parent), indent=1, sort_keys=True) + "\n")


def _read_index(root: Path) -> dict[str, Any]:
    path = root / "index.json"
    if not path.exists():
        return {"shards": []}
    index = json.loads(path.read_text())
    if CHECKSUM in index and content_checksum(index) != index[CHECKSUM]:
        raise CorruptStoreError(
            f"{path} fails its checksum: it was edited or damaged; delete it and run the same "
            "cache command again (finished shards are recomputed)"
        )
    return dict(index)


def _prompt_hashes(texts: Sequence[str]) -> list[str]:
    return [hashlib.sha256(t.encode()).hexdigest()[:16] for t in texts]


#: How `prompt_set_hash` hashes a prompt list (recorded in meta.json). Stores without it
#: (version 1) hashed the NUL-joined texts, so that ``["a", "b"]`` and ``["a\x00b"]`` collided.
PROMPT_SET_HASH_VERSION = 2


def prompt_set_hash(texts: Sequence[str]) -> str:
    r"""sha256 of a prompt list that no other list shares: the count, then each text length-prefixed.

    Each text's UTF-8 byte length (8 bytes, big-endian) precedes its bytes, so no text can
    spell a boundary: ``["a", "b"]``, ``["a\x00b"]`` and ``["ab", ""]`` hash differently.
    """
    digest = hashlib.sha256(b"interp.prompt_set_hash/2")
    digest.update(len(texts).to_bytes(8, "big"))
    for text in texts:
        data = text.encode("utf-8")
        digest.update(len(data).to_bytes(8, "big"))
        digest.update(data)
    return digest.hexdigest()


def prompts_match(meta: dict[str, Any], texts: Sequence[str]) -> bool:
    """Whether the store described by `meta` was cached for exactly `texts`, in order.

    A store written before `PROMPT_SET_HASH_VERSION` 2 records the ambiguous NUL-joined hash;
    it still opens, and the prompt count and the per-prompt hashes it also records settle
    what that hash alone cannot.
    """
    if int(meta.get("prompt_set_hash_version", 1)) >= PROMPT_SET_HASH_VERSION:
        return bool(meta.get("prompt_set_hash") == prompt_set_hash(texts))
    legacy = hashlib.sha256("\x00".join(texts).encode()).hexdigest()
    own = _prompt_hashes(texts)
    return (
        meta.get("prompt_set_hash") == legacy
        and meta.get("n_prompts") == len(texts)
        and meta.get("prompt_hashes", own) == own
    )


def _model_meta(model: TransformerBridge) -> dict[str, Any]:
    info = model_info(model)
    return {
        "name": info.name,
        "family": info.family,
        "n_layers": info.n_layers,
        "d_model": info.d_model,
        "template_hash": info.template_hash,
        "fingerprint": model_fingerprint(model),
    }


class ActivationStore:
    """A finished (or partly finished) activation store on disk, read memory mapped.

    Use `ActivationStore.open(path, model=..., prompts=...)` to check that the store belongs
    to the model and prompts at hand.

    Attributes:
        path: The store directory.
        meta: The parsed `meta.json`.
        shards: The finished shards listed in `index.json`.
        verify: Whether each shard's sha256 is checked on its first read.
        transferred_from_: After `open(..., allow_other_model=True)` with a model of other
            weights, the name and fingerprint of the model the store was written for; else
            None.
    """

    def __init__(
        self,
        path: Path,
        meta: dict[str, Any],
        shards: list[dict[str, Any]],
        *,
        verify: bool = True,
    ) -> None:
        self.path = path
        self.meta = meta
        self.shards = shards
        self.verify = verify
        self.transferred_from_: dict[str, str] | None = None
        self._verified: set[str] = set()

    @classmethod
    def open(
        cls,
        path: str | Path,
        *,
        model: TransformerBridge | None = None,
        prompts: Sequence[str] | Any | None = None,
        verify: bool = True,
        allow_other_model: bool = False,
    ) -> ActivationStore:
        """Open a store, checking it against a model and prompts when given.

        `meta.json` and `index.json` are checked against their own checksums and every
        shard's size against the index at once. With `verify` (the default), each shard's
        sha256 is also checked on its first read (`get`, `load`). Measured on a store of the
        organism (its 1512 train prompts, `resid_post` of all 6 blocks and `ln_final` at
        `last` and the 5 eoi positions, float32: 6 shards, 32.5 MB, in the page cache, one
        thread), `load()` takes 9 ms without and 27 ms with verification: hashing runs at
        about 1.8 GB/s, so it roughly triples the time of a warm load and is small next to a
        cold read from disk. Pass `verify=False` for a trusted local store.

        Args:
            path: The store directory.
            model: If given, the store must have been written for this model: same depth,
                width, chat template and weights (`interp.model_fingerprint`).
            prompts: If given, the store must have been written for exactly these prompts.
            verify: Check each shard's sha256 on its first read (sizes are always checked).
            allow_other_model: Accept a store written for a model with other weights (same
                shapes and template) on purpose; a warning is logged and `transferred_from_`
                (also in `meta["transferred_from"]`) names that model.

        Raises:
            StoreMismatchError: The store was written for another model or other prompts.
            CorruptStoreError: `meta.json` or `index.json` fails its checksum, a shard is
                missing, truncated or (on read) corrupted, or the store is incomplete.
        """
        root = Path(path)
        if not (root / "meta.json").is_file():
            raise CorruptStoreError(f"{root} is not an activation store (no meta.json)")
        meta = read_meta(root / "meta.json", error=CorruptStoreError)
        shards = list(_read_index(root).get("shards", []))
        store = cls(root, meta, shards, verify=verify)
        if model is not None:
            store.check_model(model, allow_other_model=allow_other_model)
        if prompts is not None:
            store.check_prompts(prompts)
        covered = sum(s["stop"] - s["start"] for s in shards)
        if covered != meta["n_prompts"]:
            raise CorruptStoreError(
                f"{root} holds {covered} of {meta['n_prompts']} prompts: the caching run was "
                "interrupted; run the same cache command again to resume it"
            )
        for shard in shards:
            store._check_shard(shard, verify=False)
        return store

    def _check_shard(self, shard: dict[str, Any], *, verify: bool) -> None:
        file = self.path / shard["file"]
        fix = "delete it and run the same cache command again to recompute it"
        if not file.is_file():
            raise CorruptStoreError(f"shard {file.name} is missing; {fix}")
        if file.stat().st_size != shard["bytes"]:
            raise CorruptStoreError(
                f"shard {file.name} is truncated or altered ({file.stat().st_size} bytes, "
                f"expected {shard['bytes']}); {fix}"
            )
        if verify and sha256_file(file) != shard["sha256"]:
            raise CorruptStoreError(
                f"shard {file.name} of {self.path} fails its sha256 check; {fix}"
            )

    def _read(self, shard: dict[str, Any]) -> str:
        """The shard's path, after its sha256 check on the first read (when `verify`)."""
        if self.verify and shard["file"] not in self._verified:
            self._check_shard(shard, verify=True)
            self._verified.add(shard["file"])
        return str(self.path / shard["file"])

    def check_model(self, model: TransformerBridge, *, allow_other_model: bool = False) -> None:
        """Raise `StoreMismatchError` unless the store was written for this model.

        Args:
            model: The model.
            allow_other_model: Accept other weights of the same shapes and template (see
                `open`).
        """
        have, want = self.meta["model"], _model_meta(model)
        diffs = [k for k in ("n_layers", "d_model", "template_hash") if have[k] != want[k]]
        if diffs:
            raise StoreMismatchError(
                f"store {self.path} was written for model {have['name']!r} but the given model "
                f"{want['name']!r} differs in {', '.join(diffs)}; cache again into a new directory"
            )
        transfer = check_identity(
            {"model_fingerprint": have.get("fingerprint", "")},
            what="activation store",
            where=self.path,
            saved_name=str(have["name"]),
            own_fingerprint=want["fingerprint"],
            own_name=str(want["name"]),
            allow_other_model=allow_other_model,
            error=StoreMismatchError,
        )
        if transfer is not None:
            self.transferred_from_ = transfer
            self.meta = {**self.meta, "transferred_from": transfer}

    def check_prompts(self, prompts: Sequence[str] | Any) -> None:
        """Raise `StoreMismatchError` unless the store holds exactly these prompts."""
        texts = texts_of(prompts)
        if not prompts_match(self.meta, texts):
            raise StoreMismatchError(
                f"store {self.path} was written for other prompts ({self.meta['n_prompts']} "
                f"prompts, hash {self.meta['prompt_set_hash'][:12]}); open it with the same "
                "PromptSet or cache these prompts into a new directory"
            )

    @property
    def sites(self) -> list[Site]:
        """The cached sites."""
        return [Site.parse(label) for label in self.meta["sites"]]

    @property
    def columns(self) -> tuple[str, ...]:
        """The cached position columns."""
        return tuple(self.meta["columns"])

    def __len__(self) -> int:
        return int(self.meta["n_prompts"])

    def get(self, site: str | Site, position: str = "last") -> torch.Tensor:
        """One site at one column for every prompt: [n_prompts, d_model] (float32).

        Memory is that result only: each shard contributes its rows of the one column.

        Raises:
            CorruptStoreError: A shard fails its sha256 check (when `verify`; see `open`).
        """
        label = Site.parse(site).label
        parts = [block[label][:, 0] for block in self.iter_shards([site], [position])]
        return torch.cat(parts)

    def iter_shards(
        self, sites: Sequence[str | Site], positions: Sequence[str]
    ) -> Iterator[dict[str, torch.Tensor]]:
        """Read the store one shard at a time, in prompt order.

        Each shard is memory mapped only while it is read (the map counts as private memory,
        one shard's size) and only the asked sites and columns are copied out, so peak memory
        is about one shard plus the caller's block, whatever the size of the store: the streaming fits (`interp.directions.diff_in_means_store`,
        `interp.probes.fit_probes_store`, `interp.projection.fit_pca_store`) read this way.

        Args:
            sites: Sites to read (labels or `Site`s).
            positions: Columns to read, in this order.

        Yields:
            Site label -> float32 [shard rows, len(positions), d_model].

        Raises:
            KeyError: A site or position is not in the store.
            CorruptStoreError: A shard fails its sha256 check (when `verify`; see `open`).
        """
        labels = [Site.parse(site).label for site in sites]
        for label in labels:
            if label not in self.meta["sites"]:
                raise KeyError(f"site {label!r} is not in the store; it has {self.meta['sites']}")
        for position in positions:
            if position not in self.columns:
                raise KeyError(f"position {position!r} is not in the store; it has {self.columns}")
        cols = [self.columns.index(p) for p in positions]
        for shard in sorted(self.shards, key=lambda s: s["start"]):
            with safe_open(self._read(shard), framework="pt") as handle:
                block = {}
                for label in labels:
                    view = handle.get_slice(label)
                    block[label] = torch.stack(
                        [view[:, col].to(torch.float32) for col in cols], dim=1
                    )
                # The slice keeps the shard's memory map alive: drop it before the caller
                # works on the block, so that at most one shard is mapped at a time.
                del view
            yield block

    def load(self) -> Activations:
        """Read the whole store into memory as `Activations`.

        Raises:
            CorruptStoreError: A shard fails its sha256 check (when `verify`; see `open`).
        """
        data: dict[str, list[torch.Tensor]] = {label: [] for label in self.meta["sites"]}
        for shard in sorted(self.shards, key=lambda s: s["start"]):
            with safe_open(self._read(shard), framework="pt") as handle:
                for label in data:
                    data[label].append(handle.get_tensor(label).to(torch.float32))
        return Activations(
            data={k: torch.cat(v) for k, v in data.items()},
            sites=tuple(self.sites),
            columns=self.columns,
            prompts=tuple(self.meta.get("prompt_hashes", ())),
            system=self.meta.get("system"),
            meta=self.meta,
        )


def cache_activations(
    model: TransformerBridge,
    prompts: Sequence[str] | Any,
    out_dir: str | Path,
    sites: Sequence[str | Site] | str = ("resid_post",),
    positions: Sequence[str] = ("last",),
    *,
    system: str | None = None,
    batch_size: int = 32,
    shard_size: int = 256,
    dtype: torch.dtype = torch.float32,
    progress: bool = True,
) -> ActivationStore:
    """Stream activations to disk as safetensors shards, resuming an interrupted run.

    Args:
        model: A bridge from `interp.load_model`.
        prompts: User messages (a `PromptSet` or strings).
        out_dir: The store directory (created; an existing store of the same job is resumed).
        sites: Site names, as for `collect_activations`.
        positions: Any of `"last"`, `"eoi"`, `"mean_user"`.
        system: System prompt or safety-prompt name.
        batch_size: Prompts per forward pass.
        shard_size: Prompts per shard; rounded up to a multiple of `batch_size`.
        dtype: Storage dtype (float32 or a half type to halve the disk use).
        progress: Show a progress bar.

    Returns:
        The opened, verified store.

    Raises:
        StoreMismatchError: `out_dir` holds a store of another job (model, sites, prompts...);
            nothing in it is touched.
        ParameterError: `batch_size` or `shard_size` is not an integer >= 1.
    """
    check_int(batch_size, "batch_size")
    check_int(shard_size, "shard_size")
    texts = texts_of(prompts)
    if not texts:
        raise EmptyPromptSetError("the prompt set is empty; pass at least one prompt to cache")
    needed = resolve_sites(model, sites)
    shard_size = -(-shard_size // batch_size) * batch_size
    meta = {
        "format_version": FORMAT_VERSION,
        "library_version": __version__,
        "model": _model_meta(model),
        "sites": [s.label for s in needed],
        "layer_numbering": "0-based block index; resid_pre.l == HF hidden_states[l], "
        "ln_final == HF hidden_states[n_layers]",
        "columns": list(columns_for(model, positions)),
        "positions": list(positions),
        "system": system,
        "system_text": resolve_system(system),
        "dtype": str(dtype).removeprefix("torch."),
        "n_prompts": len(texts),
        "prompt_set_hash": prompt_set_hash(texts),
        "prompt_set_hash_version": PROMPT_SET_HASH_VERSION,
        "prompt_hashes": _prompt_hashes(texts),
        "shard_size": shard_size,
    }
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    index = _resume_index(root, meta, texts)
    done = {s["start"] for s in index["shards"]}
    starts = [s for s in range(0, len(texts), shard_size) if s not in done]
    for start in tqdm(starts, desc="cache shards", disable=not progress):
        chunk = texts[start : start + shard_size]
        parts: dict[str, list[torch.Tensor]] = {s.label: [] for s in needed}
        for _, batch in batches(model, chunk, system, batch_size):
            for label, value in collect_batch(model, batch, needed, positions).items():
                parts[label].append(value)
        tensors = {k: torch.cat(v).to(dtype).contiguous() for k, v in parts.items()}
        name = f"shard-{start // shard_size:05d}.safetensors"
        tmp = root / f".{name}.tmp"
        # One metadata key only: safetensors stores metadata in a hash map whose order varies
        # between runs, which would break byte-identical resumes. Row ranges live in index.json.
        save_file(tensors, str(tmp), metadata={"rows": f"{start}:{start + len(chunk)}"})
        os.replace(tmp, root / name)
        entry = {"file": name, "start": start, "stop": start + len(chunk)}
        entry |= {"bytes": (root / name).stat().st_size, "sha256": sha256_file(root / name)}
        index["shards"] = sorted([*index["shards"], entry], key=lambda s: s["start"])
        _write_json(root / "index.json", index)
    return ActivationStore.open(root, model=model, prompts=texts)


def _resume_index(root: Path, meta: dict[str, Any], texts: Sequence[str]) -> dict[str, Any]:
    meta_path = root / "meta.json"
    if meta_path.exists():
        old = read_meta(meta_path, error=CorruptStoreError)
        new = dict(meta)
        if "fingerprint" not in old.get("model", {}):
            # A store cached before fingerprints were recorded: compare what it has.
            new["model"] = {k: v for k, v in meta["model"].items() if k != "fingerprint"}
        diffs = [k for k in _IDENTITY if old.get(k) != new.get(k)]
        if not prompts_match(old, texts):
            diffs.append("prompts")
        if diffs:
            raise StoreMismatchError(
                f"{root} already holds a store of another job (differs in {', '.join(diffs)}); "
                "pass a new output directory, or delete this one to start over"
            )
    else:
        _write_json(meta_path, meta)
    try:
        index = _read_index(root)
    except CorruptStoreError:
        logger.warning("%s/index.json fails its checksum; recomputing every shard", root)
        index = {"shards": []}
    index.pop(CHECKSUM, None)
    good = []
    for shard in index["shards"]:
        file = root / shard["file"]
        if (
            file.is_file()
            and file.stat().st_size == shard["bytes"]
            and sha256_file(file) == shard["sha256"]
        ):
            good.append(shard)
    index["shards"] = good
    return index
