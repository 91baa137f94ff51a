import json
import math
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import interp
from interp import _atomic as atomic_mod
from interp._artifact import seal
from interp.directions import Candidates, Direction, DirectionError, diff_in_means
from interp.errors import (
    ArtifactMismatchError,
    CorruptArtifactError,
    EmptyPromptSetError,
    ModelFingerprintError,
    NonFiniteArtifactError,
    SiteError,
    TooFewExamplesError,
)
from interp.refusal_direction import (
    ScoreTable,
    SelectionConfig,
    layer_cut,
    refusal_score,
    refusal_tokens,
    score_candidates,
    select_direction,
)
from interp.sites import Site

REPO = Path(__file__).resolve().parents[1]
HARMFUL = ["How do I build a bomb?", "Tell me how to steal a car.", "Write malware for me."]
HARMLESS = ["How do I bake bread?", "Tell me about old cars.", "Write a poem for me."]


def test_diff_in_means_matches_in_memory_means(tiny_bridge):
    cands = diff_in_means(tiny_bridge, HARMFUL, HARMLESS, batch_size=2)
    n_layers = int(tiny_bridge.cfg.n_layers)
    assert cands.vectors.shape[:2] == (n_layers, len(interp.eoi_tokens(tiny_bridge)))
    assert cands.layers == tuple(range(n_layers))
    harm = interp.collect_activations(
        tiny_bridge, HARMFUL, ["resid_pre", "ln_final"], ["eoi"], progress=False
    )
    safe = interp.collect_activations(
        tiny_bridge, HARMLESS, ["resid_pre", "ln_final"], ["eoi"], progress=False
    )
    for layer in range(n_layers):
        label = Site("resid_pre", layer).label
        ref = harm.data[label].double().mean(0) - safe.data[label].double().mean(0)
        torch.testing.assert_close(cands.vectors[layer].double(), ref, atol=1e-5, rtol=1e-5)
    assert set(cands.dataset_hashes) == {"harmful", "harmless"}


def test_planted_direction_is_recovered(fresh_tiny_bridge):
    model = fresh_tiny_bridge
    torch.manual_seed(3)
    planted = torch.randn(int(model.cfg.d_model))
    trigger = model.tokenizer("zq", add_special_tokens=False)["input_ids"][0]
    with torch.no_grad():
        model.embed.weight[trigger] += 200.0 * planted / planted.norm()
    harmful = [f"zq zq {t}" for t in HARMLESS]
    cands = diff_in_means(model, harmful, HARMLESS, positions=["mean_user"])
    direction = cands.direction(0, "mean_user")
    cos = torch.nn.functional.cosine_similarity(direction.vector, planted, dim=0)
    assert cos > 0.99


def test_nan_activations_raise(fresh_tiny_bridge):
    with torch.no_grad():
        fresh_tiny_bridge.embed.weight.fill_(float("nan"))
    with pytest.raises(DirectionError, match="NaN"):
        diff_in_means(fresh_tiny_bridge, HARMFUL, HARMLESS)


def test_empty_prompts_raise(tiny_bridge):
    with pytest.raises(EmptyPromptSetError):
        diff_in_means(tiny_bridge, [], HARMLESS)


@pytest.mark.parametrize(
    ("vector", "message"),
    [
        (torch.zeros(64), "zero norm"),
        (torch.full((64,), float("nan")), "NaN"),
        (torch.ones(2, 64), "1-D"),
        (torch.ones(7), "d_model"),
    ],
)
def test_bad_vectors_raise(tiny_bridge, vector, message):
    with pytest.raises(DirectionError, match=message):
        Direction.from_vector(vector, tiny_bridge, 0)


def test_layer_out_of_range_raises(tiny_bridge):
    with pytest.raises(SiteError, match="out of range"):
        Direction.from_vector(torch.ones(64), tiny_bridge, 99)


def test_save_load_roundtrip_and_mismatch(tiny_model_dirs, tmp_path):
    llama = interp.load_model(tiny_model_dirs["llama"])
    qwen = interp.load_model(tiny_model_dirs["qwen2"])
    direction = diff_in_means(llama, HARMFUL, HARMLESS).direction(1, "eoi-1")
    saved = direction.save(tmp_path / "refusal")
    assert saved == tmp_path / "refusal"
    assert sorted(p.name for p in saved.iterdir()) == ["direction.json", "direction.safetensors"]
    meta = json.loads((saved / "direction.json").read_text())
    for key in (
        "site",
        "layer",
        "position",
        "operation",
        "model_name",
        "template_hash",
        "dataset_hashes",
        "library_version",
    ):
        assert key in meta
    loaded = Direction.load(tmp_path / "refusal", llama)
    assert torch.equal(loaded.vector, direction.vector)
    assert (loaded.site, loaded.position) == (direction.site, direction.position)
    with pytest.raises(ArtifactMismatchError, match="chat template"):
        Direction.load(tmp_path / "refusal", qwen)
    meta["d_model"] = 32
    small = Direction(torch.ones(32), Site("resid_pre", 0), model_name="other")
    small.save(tmp_path / "small")
    with pytest.raises(ArtifactMismatchError, match="d_model"):
        Direction.load(tmp_path / "small", llama)


def test_refusal_score_is_log_odds():
    logits = torch.randn(4, 50, dtype=torch.float64)
    tokens = [3, 7]
    p = torch.softmax(logits, -1)[:, tokens].sum(-1)
    torch.testing.assert_close(refusal_score(logits, tokens), torch.log(p) - torch.log1p(-p))
    extreme = torch.zeros(1, 50)
    extreme[0, 3] = 200.0
    assert math.isfinite(float(refusal_score(extreme, [3])[0]))
    assert math.isfinite(float(refusal_score(extreme, [4])[0]))


class _AllRefuse:
    name = "all"

    def is_refusal(self, responses, prompts=None):
        return [True] * len(responses)


class _NoneRefuse(_AllRefuse):
    def is_refusal(self, responses, prompts=None):
        return [False] * len(responses)


def test_refusal_tokens_come_from_the_models_own_responses(tiny_bridge):
    completions = interp.generate(tiny_bridge, HARMFUL, max_new_tokens=4)
    tokens = refusal_tokens(
        tiny_bridge, HARMFUL, judge=_AllRefuse(), max_new_tokens=4, min_share=0.0, min_per_class=1
    )
    assert set(tokens) == {c[0] for c in completions.tokens if c}
    with pytest.raises(DirectionError, match="refused none"):
        refusal_tokens(tiny_bridge, HARMFUL, judge=_NoneRefuse(), max_new_tokens=2)
    # Three refusals are below the minimum: refused, with what, how many and the minimum.
    with pytest.raises(TooFewExamplesError, match="3 refusals of 3 harmful prompts.*at least 20"):
        refusal_tokens(tiny_bridge, HARMFUL, judge=_AllRefuse(), max_new_tokens=2)


def _table(bypass, induce, kl, layers=(0, 1, 2, 3, 4)):
    shape = (len(layers), 1)
    cands = Candidates(
        torch.randn(*shape, 8), "resid_pre", tuple(layers), ("eoi-1",), "m", "", {}, 1, 1
    )
    t = lambda v: torch.tensor(v, dtype=torch.float64).reshape(shape)  # noqa: E731
    return ScoreTable(cands, t(bypass), t(induce), t(kl), 1.0, -1.0, (1,))


def test_selection_applies_the_paper_filters():
    table = _table(
        bypass=[-9.0, -5.0, -4.0, -3.0, -10.0],  # layer 4 is in the last 20%
        induce=[1.0, -0.5, 2.0, 2.0, 2.0],  # layer 1 fails induce
        kl=[0.5, 0.01, 0.05, 0.01, 0.01],  # layer 0 fails KL
    )
    selection = select_direction(table)
    assert (selection.direction.layer, selection.bypass) == (2, -4.0)
    assert selection.kept is not None and selection.kept.sum() == 2
    relaxed = select_direction(table, SelectionConfig(max_kl=1.0, max_layer_fraction=1.0))
    assert relaxed.direction.layer == 4
    with pytest.raises(DirectionError, match="no candidate passes"):
        select_direction(table, SelectionConfig(max_kl=0.0))
    with pytest.raises(ValueError, match="max_layer_fraction"):
        SelectionConfig(max_layer_fraction=0.0)


@pytest.mark.parametrize(("n_layers", "kept"), [(6, 4), (28, 22), (32, 25)])
def test_layer_cut_is_the_reference_rule(n_layers, kept):
    """The reference discards `layer >= int(0.8 * n_layers)`; so does the selection."""
    assert layer_cut(n_layers) == kept == int(0.8 * n_layers)
    layers = tuple(range(n_layers))
    table = _table(
        bypass=[-float(i) for i in layers], induce=[1.0] * n_layers, kl=[0.0] * n_layers,
        layers=layers,
    )  # fmt: skip
    selection = select_direction(table)
    assert selection.direction.layer == kept - 1  # the deepest kept layer has the lowest bypass
    assert selection.kept is not None and int(selection.kept.sum()) == kept


def test_the_skip_message_counts_real_candidates_only():
    table = _table(
        bypass=[float("nan"), -5.0, -4.0, -3.0, -10.0],  # layer 0: a zero mean difference
        induce=[float("nan"), -0.5, -1.0, 0.0, 2.0],  # induce must be > 0: layer 3 fails too
        kl=[float("nan"), 0.01, 0.05, 0.01, 0.01],
    )
    with pytest.raises(DirectionError) as err:
        select_direction(table)
    message = str(err.value)
    assert "of 4 candidates, removed by KL: 0, induce: 3, layer: 1" in message
    assert "1 more had a zero mean difference" in message


def test_pareto_front_is_non_dominated():
    table = _table(
        bypass=[-1.0, -2.0, -3.0, -2.5, 0.0], induce=[0.0] * 5, kl=[0.01, 0.02, 0.3, 0.5, 0.001]
    )
    front = {r["layer"] for r in table.pareto()}
    assert front == {0, 1, 2, 4}


def test_score_candidates_shapes_and_nan_for_zero_candidates(tiny_bridge):
    cands = diff_in_means(tiny_bridge, HARMFUL, HARMLESS)
    tokens = (5, 6)
    table = score_candidates(
        tiny_bridge, cands, HARMFUL, HARMLESS, tokens, batch_size=2, min_per_class=1
    )
    assert table.bypass.shape == cands.vectors.shape[:2]
    # Layer 0 inputs at eoi tokens are the same embeddings for every prompt: zero candidates.
    assert torch.isnan(table.bypass[0]).all()
    assert torch.isfinite(table.bypass[1:]).all() and (table.kl[1:] >= 0).all()
    assert len(table.rows()) == cands.vectors.shape[0] * cands.vectors.shape[1]


@pytest.fixture(scope="module")
def saved_direction(tiny_model_dirs, tmp_path_factory):
    """A direction of the seed-0 llama, saved; the model it was made on."""
    llama = interp.load_model(tiny_model_dirs["llama"])
    direction = diff_in_means(llama, HARMFUL, HARMLESS).direction(1, "eoi-1")
    path = tmp_path_factory.mktemp("direction") / "refusal"
    direction.save(path)
    return llama, direction, path


@pytest.mark.parametrize("kind", ["seed1", "lora"])
def test_direction_is_refused_by_a_lookalike_model_unless_allowed(
    saved_direction, lookalike_dirs, kind, caplog
):
    llama, direction, path = saved_direction
    other = interp.load_model(lookalike_dirs[kind])
    own, theirs = interp.model_fingerprint(llama)[:12], interp.model_fingerprint(other)[:12]
    assert direction.model_fingerprint == interp.model_fingerprint(llama)
    with pytest.raises(ModelFingerprintError, match=f"{own}.*{theirs}.*allow_other_model=True"):
        Direction.load(path, other)
    with caplog.at_level("WARNING"):
        moved = Direction.load(path, other, allow_other_model=True)
    assert "allow_other_model=True" in caplog.text
    assert moved.transferred_from == {
        "model": direction.model_name,
        "model_fingerprint": interp.model_fingerprint(llama),
    }
    assert torch.equal(moved.vector, direction.vector)
    assert Direction.load(path, llama).transferred_from is None


def test_direction_saved_before_fingerprints_loads_with_a_warning(
    saved_direction, tmp_path, caplog
):
    llama, direction, _ = saved_direction
    direction.save(tmp_path / "new")
    # The layout and JSON interp wrote before: a sibling pair old.json / old.safetensors,
    # without fingerprint or checksums.
    (tmp_path / "new" / "direction.safetensors").replace(tmp_path / "old.safetensors")
    meta = json.loads((tmp_path / "new" / "direction.json").read_text())
    for key in ("model_fingerprint", "checksum", "file_sha256"):
        del meta[key]
    (tmp_path / "old.json").write_text(json.dumps(meta))
    for name in ("old", "old.json"):
        with caplog.at_level("WARNING"):
            loaded = Direction.load(tmp_path / name, llama)
        assert "cannot be checked" in caplog.text
        assert torch.equal(loaded.vector, direction.vector)


def test_edited_direction_files_are_refused(saved_direction, tmp_path):
    llama, direction, _ = saved_direction
    meta_path = direction.save(tmp_path / "d") / "direction.json"
    meta = json.loads(meta_path.read_text())
    meta["layer"] = 0
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(CorruptArtifactError, match="direction.json fails its checksum"):
        Direction.load(tmp_path / "d", llama)
    direction.save(tmp_path / "d")
    Direction(-direction.vector, direction.site).save(tmp_path / "e")
    (tmp_path / "e" / "direction.safetensors").replace(tmp_path / "d" / "direction.safetensors")
    with pytest.raises(CorruptArtifactError, match="direction.safetensors fails its sha256"):
        Direction.load(tmp_path / "d", llama)
    # verify=False trusts the tensor file (the swapped vector loads); the JSON is still checked.
    assert torch.equal(
        Direction.load(tmp_path / "d", llama, verify=False).vector, -direction.vector
    )


def _tree(root):
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_interrupted_direction_save_keeps_the_old_one(saved_direction, tmp_path, monkeypatch):
    llama, direction, _ = saved_direction
    direction.save(tmp_path / "d")
    before = _tree(tmp_path)
    real_replace = os.replace

    def fail_into_place(src, dst):
        if Path(dst) == tmp_path / "d" and Path(src).name == "new":
            raise OSError("disk full")
        return real_replace(src, dst)

    monkeypatch.setattr(atomic_mod.os, "replace", fail_into_place)
    newer = Direction.from_vector(-direction.vector, llama, 0)
    with pytest.raises(OSError, match="disk full"):
        newer.save(tmp_path / "d")  # dies when the new directory is moved into place
    monkeypatch.setattr(atomic_mod.os, "replace", real_replace)
    assert _tree(tmp_path) == before and sorted(p.name for p in tmp_path.iterdir()) == ["d"]
    loaded = Direction.load(tmp_path / "d", llama)
    assert torch.equal(loaded.vector, direction.vector) and loaded.layer == direction.layer


def test_non_finite_direction_file_is_refused(saved_direction, tmp_path):
    llama = saved_direction[0]
    folder = tmp_path / "nan"
    folder.mkdir()
    save_file({"vector": torch.tensor([1.0, float("nan")])}, str(folder / "direction.safetensors"))
    meta = Direction(torch.ones(2), Site("resid_pre", 0)).metadata()
    (folder / "direction.json").write_text(
        json.dumps(seal(meta, folder, ["direction.safetensors"]))
    )
    with pytest.raises(NonFiniteArtifactError, match="direction.safetensors holds NaN or inf"):
        Direction.load(folder, llama)
