"""The SafeSwitch prober: features from a tiny model, training, flags, save/load."""

import pytest
import torch

from interp.errors import ArtifactMismatchError, NotFittedError
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
