"""PCA / UMAP estimators, projections, DRO geometry and the safety-prompt shift."""

import numpy as np
import pytest
import torch
from sklearn.decomposition import PCA as SkPCA

from interp.dro import dro_map, prompt_shift, refusal_axis
from interp.projection import PCA, TooManyComponentsError, project


def data(n=80, d=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g) * torch.linspace(3, 0.5, d) + 5.0


def test_pca_matches_sklearn_and_partial_fit_matches_fit():
    x = data()
    ours = PCA(3).fit(x)
    ref = SkPCA(3).fit(x.numpy())
    np.testing.assert_allclose(
        ours.explained_variance_ratio_.numpy(), ref.explained_variance_ratio_, rtol=1e-6
    )
    inc = PCA(3)
    for chunk in x.split(25):
        inc.partial_fit(chunk)
    assert inc.n_samples_seen_ == 80
    np.testing.assert_allclose(inc.transform(x).numpy(), ours.transform(x).numpy(), atol=1e-6)


def test_too_many_components():
    with pytest.raises(TooManyComponentsError, match="at most 5"):
        PCA(6).fit(data(n=5))


def test_project_links_queries_across_conditions():
    x = data(n=20)
    proj = project(
        {"none": x, "default": x + 1.0}, [0, 1] * 10, ["harmless", "harmful"] * 10, layer=3
    )
    assert proj.coords.shape == (40, 2)
    assert proj.conditions[:20] == ("none",) * 20 and proj.query[20:] == tuple(range(20))
    assert proj.layer == 3 and proj.method == "pca"


def test_dro_map_boundaries_separate_the_classes():
    g = torch.Generator().manual_seed(1)
    y = torch.arange(60) % 2
    base = torch.randn(60, 10, generator=g) + 4.0 * y[:, None] * torch.eye(10)[0]
    acts = {"none": base, "default": base + 2.0 * torch.eye(10)[1]}
    dro = dro_map(
        acts, y.tolist(), ["harmless", "harmful"] * 30, {"none": y.tolist(), "default": [1] * 60}
    )
    w1, w2, b = dro.harm_boundary
    z = dro.projection.coords[:, :2]
    side = (w1 * z[:, 0] + w2 * z[:, 1] + b > 0).long()
    assert float((side == torch.tensor(dro.projection.labels)).double().mean()) > 0.9
    assert len(dro.refused) == 120


def test_prompt_shift_sign_along_refusal_direction():
    g = torch.Generator().manual_seed(2)
    refuse_axis = torch.zeros(8)
    refuse_axis[0] = 1.0
    base = torch.randn(2, 30, 8, generator=g)
    refused = [1] * 15 + [0] * 15
    pooled = base.clone()
    pooled[:, :15] += 3 * refuse_axis
    direction = refusal_axis(pooled, refused)
    assert direction.shape == (2, 8) and float(direction[0, 0]) > 0.9
    shift = prompt_shift(base, base + refuse_axis, direction)
    assert bool((shift > 0).all())
    control = refusal_axis(pooled, refused, control=[1] * 10 + [0] * 20)
    assert torch.allclose(control.norm(dim=-1), torch.ones(2, dtype=control.dtype))


def test_umap_is_seeded():
    from interp.projection import UMAP

    x = data(n=30)
    a = UMAP(2, n_neighbors=5, seed=0).fit(x).embedding_
    b = UMAP(2, n_neighbors=5, seed=0).fit(x).embedding_
    assert torch.equal(a, b)
