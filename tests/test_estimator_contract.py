"""One contract test for every learned estimator (append new ones to ESTIMATORS)."""

import inspect

import numpy as np
import pytest
import torch

from interp.errors import NotFittedError
from interp.probes import LinearProbe
from interp.projection import PCA, UMAP
from interp.safeswitch import SafeSwitchProber


def _xy(n=60, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    x = torch.randn(n, d, generator=g) + 2.0 * y[:, None]
    return x, y


def _fit_supervised(est):
    x, y = _xy()
    return est.fit(x, y), lambda e: e.predict_proba(x)


def _fit_prober(est):
    x, y = _xy()
    return est.fit(x, y, x.flip(0), y.flip(0)), lambda e: torch.stack(e.predict_proba(x, x))


def _fit_unsupervised(est):
    x, _ = _xy()
    return est.fit(x), lambda e: e.transform(x)


# (name, factory, fit-and-return-(estimator, output_fn), a learned attribute)
ESTIMATORS = [
    ("LinearProbe[torch]", lambda: LinearProbe(backend="torch", seed=1), _fit_supervised, "coef_"),
    (
        "LinearProbe[sklearn]",
        lambda: LinearProbe(backend="sklearn", seed=1),
        _fit_supervised,
        "coef_",
    ),
    (
        "SafeSwitchProber[mlp]",
        lambda: SafeSwitchProber("mlp", epochs=30, seed=3),
        _fit_prober,
        "stage1_",
    ),
    (
        "SafeSwitchProber[linear]",
        lambda: SafeSwitchProber("linear", epochs=30, seed=3),
        _fit_prober,
        "stage2_",
    ),
    ("PCA", lambda: PCA(2), _fit_unsupervised, "components_"),
    ("UMAP", lambda: UMAP(2, n_neighbors=5, seed=0), _fit_unsupervised, "embedding_"),
]


@pytest.mark.parametrize(
    ("name", "factory", "fit", "attr"), ESTIMATORS, ids=[e[0] for e in ESTIMATORS]
)
def test_estimator_contract(name, factory, fit, attr):
    est = factory()
    # Hyper-parameters are stored unchanged under their own names, so the estimator can be cloned.
    names = list(inspect.signature(type(est).__init__).parameters)[1:]
    params = {p: getattr(est, p) for p in names}
    assert {p: getattr(type(est)(**params), p) for p in names} == params
    assert not hasattr(est, attr)
    _, output = fit(factory())
    with pytest.raises(NotFittedError):
        output(est)
    fitted, output = fit(est)
    assert fitted is est
    assert hasattr(est, attr)
    again, _ = fit(factory())
    np.testing.assert_allclose(
        np.asarray(output(est)), np.asarray(output(again)), rtol=1e-6, atol=1e-8
    )
