"""Refusal-direction candidates: difference in means, and the `Direction` artifact.

For every layer and every post-instruction (eoi) position, the candidate is the mean of the
harmful prompts' activations minus the mean of the harmless prompts' activations at the block
input (`resid_pre`) by default (Arditi et al. 2024). Sums are accumulated in float64 batch by
batch, so only one batch of activation slices is ever held in memory.

A `Direction` is a value: the raw (unnormalised) vector plus where it was taken and what it
was made from. It saves as a directory of safetensors + JSON (`interp._artifact`) and refuses
to load onto another model.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from tqdm.auto import tqdm
from transformer_lens.model_bridge import TransformerBridge

from interp._artifact import Artifact, ModelIdentity, Saved
from interp._types import Float
from interp._version import __version__
from interp.activations import (
    ShardedActivations,
    batches,
    collect_batch,
    columns_for,
    resolve_sites,
)
from interp.data.promptset import texts_of
from interp.errors import ArtifactMismatchError, EmptyPromptSetError, InterpError, SiteError
from interp.model import model_fingerprint, template_hash
from interp.sites import LAYERLESS, Site

__all__ = [
    "Candidates",
    "Direction",
    "DirectionError",
    "dataset_hash",
    "diff_in_means",
    "diff_in_means_store",
]


class DirectionError(InterpError, ValueError):
    """A direction vector is unusable (wrong shape or size, zero norm, NaN) or NaN inputs."""


def dataset_hash(prompts: Sequence[str] | Any) -> str:
    """sha256 of a prompt set (`PromptSet.hash()` when available, else of the texts)."""
    if hasattr(prompts, "hash"):
        return str(prompts.hash())
    texts = [str(t) for t in prompts]
    return hashlib.sha256(json.dumps(texts, ensure_ascii=False).encode()).hexdigest()


def check_vector(vector: torch.Tensor, d_model: int | None = None) -> torch.Tensor:
    """Validate a direction vector and return it as a detached float32 CPU tensor.

    Raises:
        DirectionError: Not 1-D, wrong size, not finite, or zero norm.
    """
    vec = torch.as_tensor(vector).detach()
    if vec.ndim != 1:
        raise DirectionError(
            f"a direction must be a 1-D vector [d_model], got shape {tuple(vec.shape)}"
        )
    if d_model is not None and vec.shape[0] != d_model:
        raise DirectionError(
            f"the direction has {vec.shape[0]} entries but the model's d_model is {d_model}; "
            "use a direction extracted from this model"
        )
    if not bool(torch.isfinite(vec).all()):
        raise DirectionError(
            "the direction contains NaN or inf; re-extract it from finite activations"
        )
    vec = vec.to("cpu", torch.float32)
    if float(vec.norm()) <= 1e-12:
        raise DirectionError("the direction has zero norm, so it names no direction")
    return vec


@dataclass(frozen=True, eq=False)
class Direction(Artifact):
    """One direction in a model's residual stream, with where and how it was made.

    `save(dir)` / `Direction.load(dir, model)` (`interp._artifact.Artifact`); loading also
    checks the layer against the model's depth, and reads the `<p>.json` / `<p>.safetensors`
    pair that interp wrote before directions were directories.

    Attributes:
        vector: The raw vector (e.g. a difference in means); float32 [d_model]. ActAdd adds
            it unnormalised; ablation uses `unit`.
        site: Where it lives (`Site("resid_pre", layer)` by default).
        position: The token position it was measured at (`eoi-1`, `last`, `custom`, ...).
        operation: How it was made and validated (e.g. `diff_in_means; selected by bypass`).
        model_name: The model it belongs to.
        template_hash: sha256 of that model's chat template.
        dataset_hashes: Names of the prompt sets it was made from -> their hashes.
        library_version: `interp` version that made it.
        model_fingerprint: `interp.model_fingerprint` of the model it was made on ("" when
            unknown: saved before fingerprints were recorded, or built by hand).
        transferred_from: Set by `load(..., allow_other_model=True)` when the direction was
            made on another model: that model's name and fingerprint. None otherwise.
    """

    _KIND, _VERSION, _WHAT = "direction", 1, "direction"
    _LEGACY_PAIR = True
    _TRANSFER = "transferred_from"

    vector: Float[torch.Tensor, " d_model"]
    site: Site
    position: str = "custom"
    operation: str = "custom"
    model_name: str = ""
    template_hash: str = ""
    dataset_hashes: Mapping[str, str] = field(default_factory=dict)
    library_version: str = __version__
    model_fingerprint: str = ""
    transferred_from: Mapping[str, str] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "vector", check_vector(self.vector))
        if self.site.stream in LAYERLESS:
            raise SiteError(f"a direction needs a per-block site, got {self.site.label!r}")
        object.__setattr__(self, "dataset_hashes", dict(self.dataset_hashes))

    @property
    def layer(self) -> int:
        """0-based block index of the site."""
        assert self.site.layer is not None
        return self.site.layer

    @property
    def d_model(self) -> int:
        """Size of the vector."""
        return int(self.vector.shape[0])

    @property
    def norm(self) -> float:
        """Euclidean norm of the raw vector."""
        return float(self.vector.norm())

    @property
    def unit(self) -> Float[torch.Tensor, " d_model"]:
        """The unit vector r-hat (float32)."""
        return self.vector / self.vector.norm()

    @classmethod
    def from_vector(
        cls,
        vector: torch.Tensor,
        model: TransformerBridge,
        layer: int,
        *,
        stream: str = "resid_pre",
        position: str = "custom",
        operation: str = "custom",
    ) -> Direction:
        """Wrap a raw vector as a direction of `model` at `stream` of block `layer`."""
        site = Site(stream, layer).check(int(model.cfg.n_layers))
        vec = check_vector(vector, int(model.cfg.d_model))
        return cls(
            vec,
            site,
            position=position,
            operation=operation,
            model_name=str(model.cfg.model_name),
            template_hash=template_hash(model.tokenizer),
            model_fingerprint=model_fingerprint(model),
        )

    def check(self, model: TransformerBridge) -> Direction:
        """Return self after checking size, layer and chat template against `model`."""
        d_model, n_layers = int(model.cfg.d_model), int(model.cfg.n_layers)
        if self.d_model != d_model:
            raise ArtifactMismatchError(
                f"direction has d_model {self.d_model} but the model {model.cfg.model_name!r} has "
                f"{d_model}: it was made for {self.model_name!r}; re-extract it for this model"
            )
        if self.layer >= n_layers:
            raise ArtifactMismatchError(
                f"direction sits at layer {self.layer} but the model has only {n_layers} blocks"
            )
        own = template_hash(model.tokenizer)
        if self.template_hash and own and self.template_hash != own:
            raise ArtifactMismatchError(
                f"direction was made with another chat template (model {self.model_name!r}, "
                f"template {self.template_hash[:12]}) than this model's ({own[:12]}); activations "
                "would not line up. Re-extract the direction for this model"
            )
        return self

    @property
    def identity(self) -> ModelIdentity:
        """The model it was made on (its name, width, chat template and fingerprint)."""
        return ModelIdentity(
            self.model_name, self.d_model, self.template_hash, self.model_fingerprint
        )

    def metadata(self) -> dict[str, Any]:
        """JSON-ready description (everything but the vector)."""
        return {
            "format": f"interp.{self._KIND}/{self._VERSION}",
            "site": self.site.label,
            "stream": self.site.stream,
            "layer": self.layer,
            "layer_numbering": "0-based block index; resid_pre.l is the input of block l",
            "position": self.position,
            "operation": self.operation,
            **self.identity.to_meta(),
            "norm": self.norm,
            "dataset_hashes": dict(self.dataset_hashes),
            "library_version": self.library_version,
        }

    @classmethod
    def from_metadata(cls, meta: Mapping[str, Any], vector: torch.Tensor) -> Direction:
        """The direction `metadata()` described, with its vector."""
        return cls(
            vector,
            Site(meta["stream"], int(meta["layer"])),
            position=meta["position"],
            operation=meta["operation"],
            model_name=meta["model_name"],
            template_hash=meta["template_hash"],
            dataset_hashes=meta["dataset_hashes"],
            library_version=meta["library_version"],
            model_fingerprint=str(meta.get("model_fingerprint", "")),
        )

    def _identity(self) -> ModelIdentity:
        return self.identity

    def _payload(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        return self.metadata(), {"vector": self.vector}

    @classmethod
    def _from_saved(cls, saved: Saved) -> Direction:
        return cls.from_metadata(saved.meta, saved.tensors["vector"]).check(saved.model)


@dataclass(frozen=True, eq=False)
class Candidates:
    """Difference-in-means candidates at every layer and position.

    Attributes:
        vectors: mean(harmful) - mean(harmless); float32 [n_layers, n_positions, d_model].
        stream: The stream they were taken at (`resid_pre` by default).
        layers: The layer of each first-axis row.
        columns: The position label of each second-axis column (`eoi-5` ... `eoi-1`).
        model_name: The model.
        template_hash: sha256 of the model's chat template.
        dataset_hashes: `harmful` / `harmless` -> prompt-set hashes.
        n_harmful: Number of harmful prompts averaged.
        n_harmless: Number of harmless prompts averaged.
        model_fingerprint: `interp.model_fingerprint` of the model ("" when unknown).
    """

    vectors: Float[torch.Tensor, "layer n_positions d_model"]
    stream: str
    layers: tuple[int, ...]
    columns: tuple[str, ...]
    model_name: str
    template_hash: str
    dataset_hashes: Mapping[str, str]
    n_harmful: int
    n_harmless: int
    model_fingerprint: str = ""

    def direction(self, layer: int, position: str, operation: str = "diff_in_means") -> Direction:
        """The candidate at (`layer`, `position`) as a `Direction`."""
        if layer not in self.layers:
            raise SiteError(f"no candidate at layer {layer}; candidate layers are {self.layers}")
        if position not in self.columns:
            raise ValueError(f"no candidate at position {position!r}; positions are {self.columns}")
        return Direction(
            self.vectors[self.layers.index(layer), self.columns.index(position)],
            Site(self.stream, layer),
            position=position,
            operation=operation,
            model_name=self.model_name,
            template_hash=self.template_hash,
            dataset_hashes=self.dataset_hashes,
            model_fingerprint=self.model_fingerprint,
        )

    def norms(self) -> Float[torch.Tensor, "layer n_positions"]:
        """Norm of every candidate: [n_layers, n_positions]."""
        return self.vectors.norm(dim=-1)


def _texts(prompts: Sequence[str] | Any, what: str) -> list[str]:
    texts = texts_of(prompts)
    if not texts:
        raise EmptyPromptSetError(f"the {what} prompt set is empty; diff_in_means needs prompts")
    return texts


def _mean_activations(
    model: TransformerBridge,
    texts: Sequence[str],
    needed: Sequence[Site],
    positions: Sequence[str],
    options: Mapping[str, Any],
) -> Float[torch.Tensor, "layer n_positions d_model"]:
    """Float64 mean over prompts: [n_sites, n_columns, d_model]."""
    total: torch.Tensor | None = None
    n_batches = math.ceil(len(texts) / options["batch_size"])
    stream = batches(model, texts, options["system"], options["batch_size"])
    for _, batch in tqdm(
        stream, total=n_batches, desc="diff-in-means", disable=not options["progress"]
    ):
        acts = collect_batch(model, batch, needed, positions)
        stacked = torch.stack([acts[s.label] for s in needed]).to(torch.float64)
        if not bool(torch.isfinite(stacked).all()):
            raise DirectionError(
                "NaN or inf in the model's activations; the model or its dtype is broken "
                "(try float32) so no mean can be taken"
            )
        part = stacked.sum(dim=1)
        total = part if total is None else total + part
    assert total is not None
    return total / len(texts)


def diff_in_means(
    model: TransformerBridge,
    harmful: Sequence[str] | Any,
    harmless: Sequence[str] | Any,
    *,
    stream: str = "resid_pre",
    positions: Sequence[str] = ("eoi",),
    system: str | None = None,
    batch_size: int = 32,
    progress: bool = False,
) -> Candidates:
    """Difference-in-means candidates at every layer of `stream` and every position.

    Args:
        model: The bridge.
        harmful: Prompts the model should refuse (strings or a `PromptSet`).
        harmless: Prompts it should answer.
        stream: The per-block stream (`resid_pre` = block input, the paper's choice).
        positions: Any of `"eoi"` (every post-instruction token), `"last"`, `"mean_user"`.
        system: System prompt or safety-prompt name used when rendering.
        batch_size: Prompts per forward pass.
        progress: Show progress bars.

    Returns:
        The candidates, float64-accumulated and stored as float32.
    """
    if stream in LAYERLESS:
        raise SiteError(f"candidates need a per-block stream, not {stream!r}")
    needed = resolve_sites(model, [stream])
    columns = columns_for(model, positions)
    options = {"batch_size": batch_size, "system": system, "progress": progress}
    harm_texts, safe_texts = _texts(harmful, "harmful"), _texts(harmless, "harmless")
    mean_harm = _mean_activations(model, harm_texts, needed, positions, options)
    mean_safe = _mean_activations(model, safe_texts, needed, positions, options)
    return Candidates(
        vectors=(mean_harm - mean_safe).to(torch.float32),
        stream=stream,
        layers=tuple(int(s.layer) for s in needed if s.layer is not None),
        columns=columns,
        model_name=str(model.cfg.model_name),
        template_hash=template_hash(model.tokenizer),
        dataset_hashes={"harmful": dataset_hash(harmful), "harmless": dataset_hash(harmless)},
        n_harmful=len(harm_texts),
        n_harmless=len(safe_texts),
        model_fingerprint=model_fingerprint(model),
    )


def _store_labels(store: ShardedActivations, labels: Sequence[int] | Any) -> torch.Tensor:
    """0/1 labels [n_prompts] (1 = harmful), checked against the store."""
    flags = torch.as_tensor(labels).reshape(-1).long()
    if len(flags) != len(store):
        raise DirectionError(
            f"got {len(flags)} labels for a store of {len(store)} prompts; pass one 0/1 label "
            "per cached prompt, in the store's order (1 = harmful)"
        )
    if bool(((flags != 0) & (flags != 1)).any()):
        raise DirectionError("labels must be 0 (harmless) or 1 (harmful); drop other labels")
    if int(flags.sum()) in (0, len(flags)):
        raise DirectionError(
            "the labels hold one class only: diff-in-means needs harmful (1) and harmless (0) "
            "prompts in the store"
        )
    return flags


def _rows_hash(hashes: Sequence[str], rows: torch.Tensor) -> str:
    chosen = [hashes[i] for i in rows.tolist()] if hashes else [str(i) for i in rows.tolist()]
    return hashlib.sha256(json.dumps(chosen).encode()).hexdigest()


def diff_in_means_store(
    store: ShardedActivations,
    labels: Sequence[int] | Any,
    *,
    stream: str = "resid_pre",
    positions: Sequence[str] | None = None,
) -> Candidates:
    """`diff_in_means` from an activation store, read one shard at a time.

    The per-class sums are accumulated in float64 shard by shard, so memory is one shard's
    rows of `stream` whatever the size of the store; the result equals `diff_in_means` on
    the same prompts (up to float64 summation order).

    Args:
        store: An `interp.ActivationStore` holding `stream` at every wanted layer.
        labels: 0/1 per cached prompt, in the store's order (1 = harmful).
        stream: The per-block stream to take candidates at.
        positions: Columns of the store to use (default: all of them, e.g. `eoi-5` ...).

    Returns:
        The candidates (float32), with the store's model identity and, as dataset hashes,
        hashes of each class's per-prompt hashes.

    Raises:
        SiteError: The store holds no layer of `stream`.
        DirectionError: The labels do not match the store or hold one class only.
    """
    flags = _store_labels(store, labels)
    sites = sorted((s for s in store.sites if s.stream == stream), key=lambda s: s.layer or 0)
    if stream in LAYERLESS or not sites:
        raise SiteError(
            f"the store holds no per-block {stream!r} sites (it has "
            f"{[s.label for s in store.sites]}); cache that stream or pick another"
        )
    columns = tuple(positions) if positions is not None else tuple(store.columns)
    sums = torch.zeros(2, len(sites), len(columns), int(store.meta["model"]["d_model"]),
                       dtype=torch.float64)  # fmt: skip
    start = 0
    for block in store.iter_shards(sites, columns):
        n_rows = len(block[sites[0].label])
        rows = flags[start : start + n_rows]
        for i, site in enumerate(sites):  # one site at a time: a small float64 temporary
            x = block.pop(site.label).to(torch.float64)
            if not bool(torch.isfinite(x).all()):
                raise DirectionError("NaN or inf in the stored activations; no mean can be taken")
            for cls in (0, 1):
                sums[cls, i] += x[rows == cls].sum(0)
        start += n_rows
    n_harm, n_safe = int(flags.sum()), len(flags) - int(flags.sum())
    model = store.meta["model"]
    hashes = list(store.meta.get("prompt_hashes", ()))
    return Candidates(
        vectors=(sums[1] / n_harm - sums[0] / n_safe).to(torch.float32),
        stream=stream,
        layers=tuple(int(s.layer) for s in sites if s.layer is not None),
        columns=columns,
        model_name=str(model["name"]),
        template_hash=str(model["template_hash"]),
        dataset_hashes={
            "harmful": _rows_hash(hashes, torch.nonzero(flags == 1)[:, 0]),
            "harmless": _rows_hash(hashes, torch.nonzero(flags == 0)[:, 0]),
        },
        n_harmful=n_harm,
        n_harmless=n_safe,
        model_fingerprint=str(model.get("fingerprint", "")),
    )
