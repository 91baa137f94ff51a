"""Per-layer probes on synthetic activations with a planted direction."""

import numpy as np
import pytest
import torch

from interp.activations import Activations
from interp.errors import NotFittedError
from interp.probes import (
    LengthMismatchError,
    LinearProbe,
    NonFiniteActivationsError,
    SingleClassError,
    fit_probes_per_layer,
    transfer_probes,
)
from interp.sites import Site


def planted(n_layers=4, n=400, d=32, layer=2, strength=4.0, seed=0):
    """Gaussian noise with a separating direction planted at one layer only."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    x = torch.randn(n_layers, n, d, generator=g)
    u = torch.randn(d, generator=g)
    x[layer] += (2 * y[:, None] - 1) * strength * u / u.norm()
    return x, y


def test_planted_layer_is_found_and_others_are_at_chance():
    x, y = planted()
    sweep = fit_probes_per_layer(x, y, seed=0)
    assert sweep.best_layer == 2
    assert sweep.accuracy[2] >= 0.99
    for layer in (0, 1, 3):
        assert 0.35 <= sweep.accuracy[layer] <= 0.65
    assert all(
        lo <= a <= hi
        for lo, a, hi in zip(sweep.accuracy_low, sweep.accuracy, sweep.accuracy_high, strict=True)
    )
    assert sweep.n_train + sweep.n_test == 400
    assert sweep.to_dict()["best_layer"] == 2


def test_torch_backend_matches_sklearn():
    x, y = planted(n_layers=3, n=600, d=48, strength=1.5)
    a = fit_probes_per_layer(x, y, backend="torch", n_boot=0)
    b = fit_probes_per_layer(x, y, backend="sklearn", n_boot=0)
    assert np.allclose(a.accuracy, b.accuracy, atol=0.01)
    cos = torch.nn.functional.cosine_similarity(a.coef, b.coef, dim=1)
    assert bool((cos > 0.99).all())


def test_linear_probe_api_and_float64():
    x, y = planted(n_layers=1, n=200, d=16, layer=0)
    probe = LinearProbe(C=0.5).fit(x[0].double().numpy(), y.numpy())
    proba = probe.predict_proba(x[0])
    assert proba.shape == (200, 2)
    assert torch.allclose(proba.sum(1), torch.ones(200, dtype=proba.dtype))
    assert probe.score(x[0], y) >= 0.99
    assert probe.C == 0.5 and probe.n_features_in_ == 16


def test_activations_input_and_transfer():
    x, y = planted(n_layers=2, n=200, d=16, layer=1)
    sites = (Site("resid_post", 0), Site("resid_post", 1))
    acts = Activations(
        data={s.label: x[i][:, None] for i, s in enumerate(sites)},
        sites=sites,
        columns=("last",),
        prompts=(),
    )
    sweep = fit_probes_per_layer(acts, y, n_boot=10)
    assert sweep.layers == (0, 1) and sweep.best_layer == 1
    shifted = sweep.transfer(x + 0.01, y)
    assert shifted.accuracy[1] >= 0.97
    out = transfer_probes(x, y, x.flip(1), y.flip(0))
    assert out.best_layer == 1 and out.n_train == 200


def test_one_class_labels():
    x, _ = planted(n_layers=1, n=20, d=4, layer=0)
    with pytest.raises(SingleClassError, match="both classes"):
        fit_probes_per_layer(x, [1] * 20)
    with pytest.raises(SingleClassError):
        LinearProbe().fit(x[0], [0] * 20)


def test_length_mismatch():
    x, y = planted(n_layers=1, n=20, d=4, layer=0)
    with pytest.raises(LengthMismatchError, match="19 labels for 20"):
        fit_probes_per_layer(x, y[:19])


def test_non_finite_activations():
    x, y = planted(n_layers=2, n=20, d=4, layer=0)
    for bad in (float("nan"), float("inf")):
        x2 = x.clone()
        x2[1, 3, 2] = bad
        with pytest.raises(NonFiniteActivationsError, match="NaN or infinite"):
            fit_probes_per_layer(x2, y)


def test_not_fitted():
    with pytest.raises(NotFittedError, match="fit"):
        LinearProbe().predict(torch.zeros(2, 3))
