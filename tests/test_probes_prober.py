"""The SafeSwitch prober: features from a tiny model, training, flags, save/load."""

import pytest
import torch

from interp.errors import (
    ArtifactMismatchError,
    CorruptArtifactError,
    ModelFingerprintError,
    NotFittedError,
)
from interp.model import ModelInfo
from interp.safeswitch import SafeSwitchProber, prober_features


def _info(d_model=8):
    return ModelInfo("m", "llama", 2, d_model, 10, 64, 1, True, True, None, False, "abc")


def _features(n=80, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    harmful = torch.arange(n) % 2
    complied = (torch.arange(n) // 2) % 2
    x1 = torch.randn(n, d, generator=g) + 3 * harmful[:, None] * torch.eye(d)[0]
    x2 = torch.randn(n, d, generator=g) + 3 * complied[:, None] * torch.eye(d)[1]
    return x1, harmful, x2, complied


@pytest.mark.parametrize("kind", ["linear", "mlp"])
def test_prober_learns_both_stages_and_round_trips(kind, tmp_path):
    x1, h, x2, c = _features()
    prober = SafeSwitchProber(kind, epochs=150, seed=0).fit(x1, h, x2, c)
    p1, p2 = prober.predict_proba(x1, x2)
    assert float(((p1 >= 0.5).long() == h).double().mean()) > 0.9
    flag = prober.flag(x1, x2)
    assert flag.dtype == torch.bool and flag.shape == (80,)
    prober.save(tmp_path, _info())
    loaded = SafeSwitchProber.load(tmp_path, _info())
    assert torch.allclose(loaded.predict_proba(x1, x2)[1], p2)
    assert not list(tmp_path.glob("*.pkl")) and (tmp_path / "prober.json").exists()


def test_prober_for_another_d_model(tmp_path):
    x1, h, x2, c = _features()
    SafeSwitchProber("linear", epochs=5).fit(x1, h, x2, c).save(tmp_path, _info())
    with pytest.raises(ArtifactMismatchError, match="d_model"):
        SafeSwitchProber.load(tmp_path, _info(d_model=16))


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


@pytest.mark.parametrize("kind", ["seed1", "lora"])
def test_prober_is_refused_by_a_lookalike_model_unless_allowed(
    tiny_model_dirs, lookalike_dirs, kind, tmp_path, caplog
):
    import interp

    own = interp.model_info(interp.load_model(tiny_model_dirs["llama"]))
    other = interp.model_info(interp.load_model(lookalike_dirs[kind]))
    x1, h, x2, c = _features(d=own.d_model)
    SafeSwitchProber("linear", epochs=5).fit(x1, h, x2, c).save(tmp_path / "p", own)
    match = f"{own.fingerprint[:12]}.*{other.fingerprint[:12]}.*allow_other_model=True"
    with pytest.raises(ModelFingerprintError, match=match):
        SafeSwitchProber.load(tmp_path / "p", other)
    with caplog.at_level("WARNING"):
        moved = SafeSwitchProber.load(tmp_path / "p", other, allow_other_model=True)
    assert "allow_other_model=True" in caplog.text
    assert moved.transferred_from_ == {"model": own.name, "model_fingerprint": own.fingerprint}
    assert SafeSwitchProber.load(tmp_path / "p", own).transferred_from_ is None


def test_prober_save_keeps_other_files_and_refuses_edits(tmp_path):
    x1, h, x2, c = _features()
    (tmp_path / "notes.txt").write_text("mine")
    SafeSwitchProber("linear", epochs=5).fit(x1, h, x2, c).save(tmp_path, _info())
    SafeSwitchProber("linear", epochs=6).fit(x1, h, x2, c).save(tmp_path, _info())
    assert (tmp_path / "notes.txt").read_text() == "mine"
    assert SafeSwitchProber.load(tmp_path, _info()).epochs == 6
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "notes.txt",
        "prober.json",
        "prober.safetensors",
    ]
    text = (tmp_path / "prober.json").read_text().replace('"threshold": 0.5', '"threshold": 0.1')
    (tmp_path / "prober.json").write_text(text)
    with pytest.raises(CorruptArtifactError, match="prober.json fails its checksum"):
        SafeSwitchProber.load(tmp_path, _info())
