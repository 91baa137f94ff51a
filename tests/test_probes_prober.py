"""The SafeSwitch prober: features from a tiny model, training, flags, save/load."""

import json
import math

import pytest
import torch

import interp
from interp._artifact import content_checksum
from interp.errors import (
    ArtifactMismatchError,
    ArtifactVersionError,
    CorruptArtifactError,
    ModelFingerprintError,
    NotFittedError,
    ThresholdError,
)
from interp.safeswitch import SafeSwitchProber, prober_features


@pytest.fixture(scope="module")
def llama(tiny_model_dirs):
    return interp.load_model(tiny_model_dirs["llama"])


def _features(n=80, d=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    harmful = torch.arange(n) % 2
    complied = (torch.arange(n) // 2) % 2
    x1 = torch.randn(n, d, generator=g) + 3 * harmful[:, None] * torch.eye(d)[0]
    x2 = torch.randn(n, d, generator=g) + 3 * complied[:, None] * torch.eye(d)[1]
    return x1, harmful, x2, complied


@pytest.mark.parametrize("kind", ["linear", "mlp"])
def test_prober_learns_both_stages_and_round_trips(kind, llama, tmp_path):
    x1, h, x2, c = _features()
    prober = SafeSwitchProber(kind, epochs=150, seed=0).fit(x1, h, x2, c, model=llama)
    p1, p2 = prober.predict_proba(x1, x2)
    assert float(((p1 >= 0.5).long() == h).double().mean()) > 0.9
    flag = prober.flag(x1, x2)
    assert flag.dtype == torch.bool and flag.shape == (80,)
    assert prober.save(tmp_path) == tmp_path
    loaded = SafeSwitchProber.load(tmp_path, llama)
    assert loaded.model_ == prober.model_ == interp._artifact.ModelIdentity.of(llama)
    assert torch.allclose(loaded.predict_proba(x1, x2)[1], p2)
    assert not list(tmp_path.glob("*.pkl")) and (tmp_path / "prober.json").exists()


def test_prober_for_another_d_model(llama, tmp_path):
    x1, h, x2, c = _features(d=8)
    with pytest.raises(ArtifactMismatchError, match="width 8 .* d_model 64"):
        SafeSwitchProber("linear", epochs=5).fit(x1, h, x2, c, model=llama)
    # Fitted on bare tensors, only the width is known: it is still checked on load.
    SafeSwitchProber("linear", epochs=5).fit(x1, h, x2, c).save(tmp_path)
    with pytest.raises(ArtifactMismatchError, match="d_model 8, but .* has d_model 64"):
        SafeSwitchProber.load(tmp_path, llama)


def test_prober_not_fitted():
    with pytest.raises(NotFittedError):
        SafeSwitchProber().flag(torch.zeros(1, 4), torch.zeros(1, 4))


def test_prober_features_from_tiny_model(tmp_path):
    import interp
    from interp.testing import build_tiny_chat_model

    model = interp.load_model(build_tiny_chat_model("llama", tmp_path / "llama"))
    info = interp.model_info(model)
    data = prober_features(
        model, ["Tell me a story.", "How do I bake bread?", "Hi"], n_decode=2, max_new_tokens=4
    )
    assert data.stage1.shape == (3, info.d_model) and data.stage2.shape == (3, info.d_model)
    assert not torch.allclose(data.stage1, data.stage2)
    assert len(data.complied) == 3 and set(data.complied) <= {0, 1}


def test_prober_features_rows_come_back_in_input_order(llama):
    # Long and short prompts interleaved: length grouping reorders them into batches; each
    # row must be the prompt's own features, as decoded alone.
    prompts = ["Hi", "Tell me a long story about " + "a dragon and a knight, " * 12, "Why?",
               "Explain, step by step and at length, " + "how tides work, " * 10, "Ok"]  # fmt: skip
    data = prober_features(llama, prompts, n_decode=2, max_new_tokens=4, batch_size=2)
    for i, text in enumerate(prompts):
        alone = prober_features(llama, [text], n_decode=2, max_new_tokens=4, batch_size=1)
        assert torch.allclose(data.stage1[i], alone.stage1[0], atol=1e-4)
        assert torch.allclose(data.stage2[i], alone.stage2[0], atol=1e-4)
        assert data.responses[i] == alone.responses[0]


@pytest.mark.parametrize("kind", ["seed1", "lora"])
def test_prober_is_refused_by_a_lookalike_model_unless_allowed(
    tiny_model_dirs, lookalike_dirs, kind, tmp_path, caplog
):
    own = interp.load_model(tiny_model_dirs["llama"])
    other = interp.load_model(lookalike_dirs[kind])
    x1, h, x2, c = _features()
    SafeSwitchProber("linear", epochs=5).fit(x1, h, x2, c, model=own).save(tmp_path / "p")
    mine, theirs = interp.model_fingerprint(own), interp.model_fingerprint(other)
    match = f"{mine[:12]}.*{theirs[:12]}.*allow_other_model=True"
    with pytest.raises(ModelFingerprintError, match=match):
        SafeSwitchProber.load(tmp_path / "p", other)
    with caplog.at_level("WARNING"):
        moved = SafeSwitchProber.load(tmp_path / "p", other, allow_other_model=True)
    assert "allow_other_model=True" in caplog.text
    name = str(own.cfg.model_name)
    assert moved.transferred_from_ == {"model": name, "model_fingerprint": mine}
    assert SafeSwitchProber.load(tmp_path / "p", own).transferred_from_ is None


def test_prober_save_keeps_other_files_and_refuses_edits(llama, tmp_path):
    x1, h, x2, c = _features()
    (tmp_path / "notes.txt").write_text("mine")
    SafeSwitchProber("linear", epochs=5).fit(x1, h, x2, c, model=llama).save(tmp_path)
    SafeSwitchProber("linear", epochs=6).fit(x1, h, x2, c, model=llama).save(tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "mine"
    assert SafeSwitchProber.load(tmp_path, llama).epochs == 6
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "notes.txt",
        "prober.json",
        "prober.safetensors",
    ]
    text = (tmp_path / "prober.json").read_text().replace('"threshold": 0.5', '"threshold": 0.1')
    (tmp_path / "prober.json").write_text(text)
    with pytest.raises(CorruptArtifactError, match="prober.json fails its checksum"):
        SafeSwitchProber.load(tmp_path, llama)


@pytest.mark.parametrize("bad", [7.0, -0.1, math.nan])
def test_prober_threshold_outside_0_1_is_refused(bad, llama, tmp_path):
    with pytest.raises(
        ThresholdError, match=rf"threshold must be a probability in \[0, 1\], got {bad}"
    ):
        SafeSwitchProber(threshold=bad)
    x1, h, x2, c = _features()
    SafeSwitchProber("linear", epochs=5).fit(x1, h, x2, c, model=llama).save(tmp_path)
    # A JSON edited to another threshold, with its checksum recomputed (a forged file).
    meta = json.loads((tmp_path / "prober.json").read_text())
    meta["params"]["threshold"] = bad
    meta["checksum"] = content_checksum(meta)
    (tmp_path / "prober.json").write_text(json.dumps(meta))
    with pytest.raises(ThresholdError, match=rf"got {bad}"):
        SafeSwitchProber.load(tmp_path, llama)


def test_prober_saved_in_format_1_is_refused_with_the_fix(llama, tmp_path):
    x1, h, x2, c = _features()
    SafeSwitchProber("linear", epochs=5).fit(x1, h, x2, c, model=llama).save(tmp_path)
    meta = json.loads((tmp_path / "prober.json").read_text())
    del meta["format"]
    meta["format_version"], meta["model"] = 1, meta.pop("model_name")
    meta["checksum"] = content_checksum(meta)
    (tmp_path / "prober.json").write_text(json.dumps(meta))
    with pytest.raises(
        ArtifactVersionError, match="format_version 1.*fit the SafeSwitch prober again"
    ):
        SafeSwitchProber.load(tmp_path, llama)
