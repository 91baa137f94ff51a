"""Low-dimensional maps of activations: PCA (exact or incremental) and UMAP.

`PCA` and `UMAP` follow the estimator contract. `project` fits one of them on chosen
conditions (e.g. no system prompt and each safety prompt) and returns a `Projection` holding
coordinates with their labels, kinds and conditions. The DRO geometry built on these maps
lives in `interp.dro.geometry`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from interp.activations import ShardedActivations
from interp.errors import NotFittedError
from interp.probes import ProbeInputError, as_tensor, check_inputs
from interp.sites import Site

__all__ = [
    "PCA",
    "UMAP",
    "Projection",
    "TooManyComponentsError",
    "fit_pca_store",
    "project",
]


class TooManyComponentsError(ProbeInputError):
    """A projection was asked for more components than samples (or features)."""


def _check_components(k: int, n: int, d: int) -> None:
    if k > min(n, d):
        raise TooManyComponentsError(
            f"asked for {k} components from {n} samples of width {d}; at most {min(n, d)} "
            "exist: pass more samples or fewer components"
        )


class PCA:
    """Principal components by exact SVD (`fit`) or accumulated moments (`partial_fit`).

    Args:
        n_components: Components to keep.

    Attributes:
        mean_: Feature means [d].
        components_: Unit principal axes [n_components, d] (sign: largest entry positive).
        explained_variance_: Variance along each axis.
        explained_variance_ratio_: Its share of the total variance.
        n_samples_seen_: Rows seen.
    """

    _sum: torch.Tensor
    _outer: torch.Tensor
    _shift: torch.Tensor

    def __init__(self, n_components: int = 2) -> None:
        self.n_components = n_components

    def _set(self, mean: torch.Tensor, axes: torch.Tensor, var: torch.Tensor, total: float) -> None:
        k = self.n_components
        axes = axes[:k]
        signs = torch.sign(axes.gather(1, axes.abs().argmax(1, keepdim=True)))
        self.mean_ = mean
        self.components_ = axes * signs
        self.explained_variance_ = var[:k]
        self.explained_variance_ratio_ = var[:k] / total if total > 0 else var[:k] * 0

    def fit(self, x: Any) -> PCA:
        """Fit on activations [n, d]."""
        xt = as_tensor(x).double()
        check_inputs(xt, None)
        n, d = xt.shape
        _check_components(self.n_components, n, d)
        mean = xt.mean(0)
        _, s, vh = torch.linalg.svd(xt - mean, full_matrices=False)
        var = s**2 / max(n - 1, 1)
        self._set(mean, vh, var, float(var.sum()))
        self.n_samples_seen_ = n
        self.__dict__.pop("_sum", None)  # a later partial_fit starts afresh
        return self

    def partial_fit(self, x: Any) -> PCA:
        """Add a chunk of rows [n, d]; the result equals `fit` on all rows (up to signs/rounding).

        Memory is O(d^2) whatever the number of rows, so stores larger than memory can be
        fitted shard by shard.
        """
        self._accumulate(x)
        return self._decompose()

    def _accumulate(self, x: Any) -> None:
        """Add a chunk's float64 moments (shifted by the first row seen) without decomposing."""
        xt = as_tensor(x).double()
        check_inputs(xt, None)
        if not hasattr(self, "_sum") or self._sum.numel() != xt.shape[1]:
            self._sum = torch.zeros(xt.shape[1], dtype=torch.float64)
            self._outer = torch.zeros(xt.shape[1], xt.shape[1], dtype=torch.float64)
            self._shift = xt[0].clone()  # shifting by one row keeps the moments well conditioned
            self.n_samples_seen_ = 0
        xs = xt - self._shift
        self._sum += xs.sum(0)
        self._outer.addmm_(xs.T, xs)  # in place: no d x d temporary per chunk
        self.n_samples_seen_ += xt.shape[0]

    def _decompose(self) -> PCA:
        """Set the components from the accumulated moments (one eigendecomposition)."""
        n, d = self.n_samples_seen_, self._sum.numel()
        _check_components(self.n_components, n, d)
        mean_s = self._sum / n
        cov = (self._outer - n * torch.outer(mean_s, mean_s)) / max(n - 1, 1)
        evals, evecs = torch.linalg.eigh(cov)
        order = torch.argsort(evals, descending=True)
        var = evals[order].clamp_min(0)
        self._set(mean_s + self._shift, evecs[:, order].T, var, float(var.sum()))
        return self

    def transform(self, x: Any) -> torch.Tensor:
        """Coordinates [n, n_components]."""
        if not hasattr(self, "components_"):
            raise NotFittedError("this PCA is not fitted yet; call fit or partial_fit first")
        return (as_tensor(x).double() - self.mean_) @ self.components_.T


def fit_pca_store(
    store: ShardedActivations, site: str | Site, position: str = "last", n_components: int = 2
) -> PCA:
    """Fit a PCA on one site of an `ActivationStore`, reading one shard at a time.

    The moments are accumulated in float64 (as `PCA.partial_fit` does) and decomposed once at
    the end: memory is O(d_model^2) plus one shard, whatever the size of the store.
    """
    label = Site.parse(site).label
    pca = PCA(n_components)
    for block in store.iter_shards([label], [position]):
        pca._accumulate(block.pop(label)[:, 0])
    if not hasattr(pca, "_sum"):
        raise TooManyComponentsError(
            f"the store holds no rows; cannot fit {n_components} components"
        )
    return pca._decompose()


class UMAP:
    """UMAP (umap-learn) with a fixed seed, estimator-style.

    Args:
        n_components: Output dimensions.
        n_neighbors: Neighbourhood size.
        min_dist: Minimum distance between embedded points.
        seed: Random state (makes umap-learn deterministic and single-threaded).

    Attributes:
        embedding_: Coordinates of the fitted rows [n, n_components].
    """

    def __init__(
        self, n_components: int = 2, n_neighbors: int = 15, min_dist: float = 0.1, seed: int = 0
    ) -> None:
        self.n_components = n_components
        self.n_neighbors = n_neighbors
        self.min_dist = min_dist
        self.seed = seed

    def fit(self, x: Any) -> UMAP:
        """Fit on activations [n, d]."""
        import umap

        xt = as_tensor(x).double()
        check_inputs(xt, None)
        _check_components(self.n_components, xt.shape[0] - 1, xt.shape[1])
        self.model_ = umap.UMAP(
            n_components=self.n_components,
            n_neighbors=min(self.n_neighbors, xt.shape[0] - 1),
            min_dist=self.min_dist,
            random_state=self.seed,
            n_jobs=1,
        ).fit(xt.numpy())
        self.embedding_ = torch.from_numpy(np.asarray(self.model_.embedding_, dtype=np.float64))
        self.explained_variance_ratio_ = torch.full((self.n_components,), float("nan"))
        return self

    def transform(self, x: Any) -> torch.Tensor:
        """Coordinates of new rows [n, n_components]."""
        if not hasattr(self, "model_"):
            raise NotFittedError("this UMAP is not fitted yet; call fit first")
        return torch.from_numpy(np.asarray(self.model_.transform(as_tensor(x).double().numpy())))


@dataclass(frozen=True)
class Projection:
    """Points of several conditions in one fitted low-dimensional map.

    Attributes:
        coords: [n_points, n_components].
        labels: 1 = harmful, per point.
        kinds: Kind of request per point.
        conditions: System-prompt condition per point ("none", "default", ...).
        query: Index of the query within its condition (links a query's points across conditions).
        explained_variance_ratio: Per component (NaN for UMAP).
        method: "pca" or "umap".
        layer: The layer the activations came from (None if not given).
    """

    coords: torch.Tensor
    labels: tuple[int, ...]
    kinds: tuple[str, ...]
    conditions: tuple[str, ...]
    query: tuple[int, ...]
    explained_variance_ratio: tuple[float, ...]
    method: str
    layer: int | None = None


def project(
    acts: Mapping[str, Any],
    labels: Sequence[int],
    kinds: Sequence[str],
    *,
    method: str = "pca",
    fit_on: Sequence[str] | None = None,
    n_components: int = 2,
    seed: int = 0,
    layer: int | None = None,
) -> Projection:
    """Fit a map on some conditions and place every condition's points in it.

    Args:
        acts: condition -> activations [n, d] of the same n queries (same order).
        labels: 0/1 per query.
        kinds: Kind per query.
        method: "pca" or "umap".
        fit_on: Conditions to fit on (default: all).
        n_components: Output dimensions.
        seed: Seed of UMAP.
        layer: Recorded in the result.
    """
    names = list(acts)
    xs = {c: as_tensor(acts[c]).double() for c in names}
    for x in xs.values():
        check_inputs(x, labels, need_two_classes=False)
    chosen = list(fit_on) if fit_on is not None else names
    train = torch.cat([xs[c] for c in chosen])
    if method == "pca":
        est: PCA | UMAP = PCA(n_components).fit(train)
    elif method == "umap":
        est = UMAP(n_components, seed=seed).fit(train)
    else:
        raise ValueError(f"unknown projection method {method!r}; use 'pca' or 'umap'")
    if method == "umap" and chosen == names:
        coords = est.embedding_  # type: ignore[union-attr]
    else:
        coords = torch.cat([est.transform(xs[c]) for c in names])
    n = len(labels)
    return Projection(
        coords=coords,
        labels=tuple(int(v) for v in labels) * len(names),
        kinds=tuple(kinds) * len(names),
        conditions=tuple(c for c in names for _ in range(n)),
        query=tuple(range(n)) * len(names),
        explained_variance_ratio=tuple(float(v) for v in est.explained_variance_ratio_),
        method=method,
        layer=layer,
    )
