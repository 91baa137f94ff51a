"""The probe sweep on an activation store larger than memory: one layer in memory at a time.

A logistic probe needs every row of its layer at once (L-BFGS / Newton iterate over them),
so the honest streaming unit is the layer: `fit_probes_store` reads one layer's column from
every shard (`ActivationStore.get`), fits and scores its probe, and drops it before the next
layer. Peak memory is one layer's [n_prompts, d_model] design plus the solver's state, a
1 / (n_layers x n_columns) share of a store holding all layers at several positions; the
result equals `fit_probes_per_layer` on the loaded store.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import torch

from interp.activations import ShardedActivations
from interp.probes.linear import (
    Backend,
    ProbeSweep,
    _evaluate,
    _split,
    check_inputs,
    fit_layers,
    layer_scores,
)
from interp.sites import Site

__all__ = ["fit_probes_store"]


def fit_probes_store(
    store: ShardedActivations,
    labels: Any,
    *,
    stream: str = "resid_post",
    position: str = "last",
    layers: Sequence[int] | None = None,
    test_size: float = 0.25,
    seed: int = 0,
    backend: Backend = "torch",
    C: float = 1.0,  # noqa: N803 - scikit-learn's name
    max_iter: int = 200,
    tol: float = 1e-4,
    n_boot: int = 200,
    device: str | None = None,
) -> ProbeSweep:
    """`fit_probes_per_layer` on a store, holding one layer's activations at a time.

    Args:
        store: An `interp.ActivationStore` with `stream` at the wanted layers.
        labels: 0/1 per cached prompt, in the store's order (1 = harmful).
        stream: The stream whose layers are probed.
        position: The store column to probe.
        layers: Layers to probe (default: every cached layer of `stream`).
        test_size: Held-out fraction, per class (the same seeded split as in memory).
        seed: Seed of the split and of the bootstrap.
        backend: `"torch"` or `"sklearn"`.
        C: Inverse L2 strength (scikit-learn convention).
        max_iter: Solver iterations at most.
        tol: Gradient tolerance.
        n_boot: Bootstrap resamples for the 95% interval (0: none).
        device: Where the torch backend runs.

    Returns:
        The sweep with the fitted weights, equal to `fit_probes_per_layer` on the same data.

    Raises:
        KeyError: A layer of `stream` or the position is not in the store.
        LengthMismatchError: The labels do not match the store's prompts.
    """
    cached = sorted(s.layer for s in store.sites if s.stream == stream and s.layer is not None)
    chosen = list(cached if layers is None else layers)
    if not chosen:
        raise KeyError(f"the store holds no {stream!r} layers; it has {store.meta['sites']}")
    y = check_inputs(torch.empty(len(store), 0), labels)
    train, test = _split(y, test_size, seed)
    coefs, intercepts, scores = [], [], []
    for layer in chosen:
        x = store.get(Site(stream, layer), position)[None]  # [1, n_prompts, d_model]
        check_inputs(x, None)
        coef, intercept, _ = fit_layers(
            x[:, train], y[train], backend=backend, C=C, max_iter=max_iter, tol=tol, device=device
        )
        scores.append(layer_scores(x[:, test], coef, intercept))
        coefs.append(coef)
        intercepts.append(intercept)
        del x
    out = _evaluate(torch.cat(scores), y[test], chosen, n_boot=n_boot, seed=seed)
    return replace(
        out,
        n_train=len(train),
        backend=backend,
        coef=torch.cat(coefs),
        intercept=torch.cat(intercepts),
    )
