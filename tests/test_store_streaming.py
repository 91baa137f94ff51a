"""Streaming fits on an activation store: diff-in-means, the probe sweep and PCA, shard by shard.

Each equals its in-memory counterpart; `tests/test_memory.py` checks that they also run
under a memory cap smaller than the store.
"""

import pytest
import torch

import interp
from interp.directions import DirectionError, diff_in_means_store
from interp.errors import SiteError
from interp.probes import LengthMismatchError, fit_probes_store
from interp.projection import fit_pca_store

HARMFUL = [f"How do I build weapon number {i}?" for i in range(8)]
HARMLESS = [f"How do I bake bread number {i}?" for i in range(8)]
LABELS = [1] * 8 + [0] * 8


@pytest.fixture(scope="module")
def stored(tiny_model_dirs, tmp_path_factory):
    model = interp.load_model(tiny_model_dirs["llama"])
    store = interp.cache_activations(
        model,
        HARMFUL + HARMLESS,
        tmp_path_factory.mktemp("stream") / "store",
        ["resid_pre", "resid_post"],
        ["last", "eoi"],
        batch_size=4,
        shard_size=4,
        progress=False,
    )
    assert len(store.shards) == 4  # the fits below really read several shards
    return model, store


def test_iter_shards_yields_the_store_in_order(stored):
    _, store = stored
    mem = store.load()
    blocks = list(store.iter_shards(["resid_post.1", "resid_pre.0"], ["eoi-1", "last"]))
    assert [len(b["resid_post.1"]) for b in blocks] == [4, 4, 4, 4]
    got = torch.cat([b["resid_post.1"] for b in blocks])
    assert torch.equal(got[:, 0], mem.get("resid_post.1", "eoi-1"))
    assert torch.equal(got[:, 1], mem.get("resid_post.1", "last"))
    with pytest.raises(KeyError, match="position"):
        next(store.iter_shards(["resid_post.1"], ["first"]))
    with pytest.raises(KeyError, match="site"):
        next(store.iter_shards(["attn_out.0"], ["last"]))


def test_diff_in_means_store_equals_in_memory(stored):
    model, store = stored
    got = diff_in_means_store(store, LABELS)
    want = interp.diff_in_means(model, HARMFUL, HARMLESS, positions=("last", "eoi"), batch_size=4)
    assert got.columns == want.columns and got.layers == want.layers
    assert got.vectors.dtype == torch.float32
    torch.testing.assert_close(got.vectors, want.vectors, rtol=0, atol=1e-5)
    assert got.n_harmful == 8 and got.model_fingerprint == interp.model_fingerprint(model)
    assert got.direction(1, "last").check(model).layer == 1
    only_last = diff_in_means_store(store, LABELS, stream="resid_post", positions=["last"])
    assert only_last.vectors.shape == (2, 1, int(model.cfg.d_model))


def test_diff_in_means_store_bad_input(stored):
    _, store = stored
    with pytest.raises(DirectionError, match="16 prompts"):
        diff_in_means_store(store, LABELS[:-1])
    with pytest.raises(DirectionError, match="one class"):
        diff_in_means_store(store, [1] * 16)
    with pytest.raises(DirectionError, match="0 .harmless. or 1"):
        diff_in_means_store(store, [2] + LABELS[1:])
    with pytest.raises(SiteError, match="attn_out"):
        diff_in_means_store(store, LABELS, stream="attn_out")


def test_fit_probes_store_equals_in_memory(stored):
    _, store = stored
    got = fit_probes_store(store, LABELS, position="eoi-1", n_boot=50, test_size=0.25)
    want = interp.fit_probes_per_layer(
        store.load(), LABELS, position="eoi-1", n_boot=50, test_size=0.25
    )
    assert got.layers == want.layers == (0, 1)
    assert got.accuracy == want.accuracy and got.accuracy_low == want.accuracy_low
    torch.testing.assert_close(got.coef, want.coef, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(got.intercept, want.intercept, rtol=1e-9, atol=1e-9)
    one = fit_probes_store(store, LABELS, layers=[1], n_boot=0)
    assert one.layers == (1,)
    with pytest.raises(LengthMismatchError):
        fit_probes_store(store, LABELS[:-2])


def test_fit_pca_store_equals_in_memory(stored):
    _, store = stored
    got = fit_pca_store(store, "resid_post.1", "last", n_components=3)
    want = interp.PCA(3).fit(store.get("resid_post.1", "last"))
    assert got.n_samples_seen_ == 16
    torch.testing.assert_close(got.explained_variance_, want.explained_variance_)
    torch.testing.assert_close(got.mean_, want.mean_)
    cos = (got.components_ * want.components_).sum(1).abs()
    assert float(cos.min()) > 1 - 1e-6
