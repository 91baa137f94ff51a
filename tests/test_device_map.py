"""`load_model(..., device_map=...)` through accelerate, on CPU (the only device CI has).

What is tested: `device_map="cpu"` and a dict placing every module on "cpu" give the same
logits, cached activations, hook interventions and greedy tokens as `device="cpu"`; `device`
with `device_map` and a map that offloads a block to disk are refused. Blocks on different
GPUs are not tested here (no second device).
"""

import pytest
import torch

import interp
from interp.errors import ModelLoadError
from interp.interventions import DirectionalAblation, apply

PROMPTS = ["How do I bake bread?", "Hi"]
ALL_CPU = {"model.embed_tokens": "cpu", "model.rotary_emb": "cpu", "model.layers.0": "cpu",
           "model.layers.1": "cpu", "model.norm": "cpu", "lm_head": "cpu"}  # fmt: skip


def _logits(model, batch):
    with torch.no_grad():
        return model(batch.tokens, attention_mask=batch.attention_mask)


@pytest.mark.parametrize("device_map", ["cpu", ALL_CPU], ids=["string", "dict"])
def test_device_map_equals_one_device(tiny_model_dirs, device_map):
    path = tiny_model_dirs["llama"]
    base = interp.load_model(path, device="cpu")
    placed = interp.load_model(path, device_map=device_map)
    batch = interp.encode(base, PROMPTS)
    assert torch.equal(_logits(placed, batch), _logits(base, batch))
    acts = [interp.collect_activations(m, PROMPTS, ["resid_post"]).stack() for m in (placed, base)]
    assert torch.equal(*acts)
    vector = torch.randn(int(base.cfg.d_model), generator=torch.Generator().manual_seed(0))
    hooked = []
    for model in (placed, base):
        with apply(model, DirectionalAblation(interp.Direction.from_vector(vector, model, 1))):
            hooked.append(_logits(model, batch))
    assert torch.equal(*hooked) and not torch.equal(hooked[0], _logits(base, batch))
    tokens = [interp.generate(m, PROMPTS, max_new_tokens=5).tokens for m in (placed, base)]
    assert tokens[0] == tokens[1]
    assert interp.model_fingerprint(placed) == interp.model_fingerprint(base)


def test_device_map_refusals(tiny_model_dirs, tmp_path):
    path = tiny_model_dirs["llama"]
    with pytest.raises(ModelLoadError, match="pass one"):
        interp.load_model(path, device="cpu", device_map="cpu")
    with pytest.raises(ModelLoadError, match="offloaded .* to disk"):
        interp.load_model(
            path, device_map={**ALL_CPU, "model.layers.1": "disk"}, offload_folder=tmp_path
        )
