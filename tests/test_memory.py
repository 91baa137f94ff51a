"""Memory follows what is kept: orthogonalisation without a second model, stores beyond RAM.

Orthogonalisation: peak memory is the peak resident set size of a fresh subprocess (Linux
`VmHWM`, reset through `/proc/self/clear_refs` just before the measured call), above the
process' size after a warm-up load of a tiny model, as a multiple of the model's parameter
bytes. tracemalloc cannot see torch's allocations, hence RSS.

Stores: a subprocess caps its own data segment with `resource.setrlimit(RLIMIT_DATA)` at a
quarter of the store's size above what it uses after a warm-up, then runs diff-in-means, the
probe sweep and PCA on the whole store; loading the store under the same cap must fail (so
the cap bites). RLIMIT_DATA (Linux >= 4.7) counts heap and private anonymous maps, not
torch's read-only code maps, which makes RLIMIT_AS impractical; a shard's memory map counts.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import interp
from interp.interventions import DirectionalAblation, apply, orthogonalize
from interp.testing import build_wide_model

_ORTHO_PEAK = r"""
import gc, json, sys
import torch
torch.set_num_threads(1)
import interp
from interp.interventions import orthogonalize

def rss(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) * 1024
    raise RuntimeError(field)

warm = interp.load_model(sys.argv[2], device="cpu")  # imports and first-call costs
orthogonalize(warm, torch.randn(int(warm.cfg.d_model)))
del warm
gc.collect()
base = rss("VmRSS")
model = interp.load_model(sys.argv[1], device="cpu")
gc.collect()
params = sum(p.numel() * p.element_size() for p in model.original_model.parameters())
hf = model.original_model
edited = hf.get_input_embeddings().weight.numel() * 4 + sum(
    b.attn.o.weight.numel() * 4 + b.mlp.out.weight.numel() * 4 for b in model.blocks
)
loaded = rss("VmRSS")
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset VmHWM to the current RSS
kept = orthogonalize(model, torch.randn(int(model.cfg.d_model)), inplace=sys.argv[3] == "inplace")
peak = rss("VmHWM")
print(json.dumps({"params": params, "edited": edited, "base": base, "loaded": loaded, "peak": peak}))
"""


@pytest.fixture(scope="module")
def wide_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 78 MB Llama-family checkpoint: large enough that RSS noise is a few percent."""
    return build_wide_model(tmp_path_factory.mktemp("wide") / "wide")


def _peak(model_dir: Path, warm_dir: Path, mode: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", _ORTHO_PEAK, str(model_dir), str(warm_dir), mode],
        check=True,
        capture_output=True,
        text=True,
    )
    numbers = json.loads(out.stdout.strip().splitlines()[-1])
    params = numbers["params"]
    return {
        "loaded": (numbers["loaded"] - numbers["base"]) / params,
        "peak": (numbers["peak"] - numbers["base"]) / params,
        "edited": numbers["edited"] / params,
    }


@pytest.mark.slow
def test_orthogonalize_peak_memory_follows_what_is_kept(wide_dir, tiny_model_dirs):
    inplace = _peak(wide_dir, tiny_model_dirs["llama"], "inplace")
    copied = _peak(wide_dir, tiny_model_dirs["llama"], "copy")
    # Measured: loaded 1.01x; in place 1.09-1.12x; copy 1.43-1.51x with 0.34x edited matrices
    # (the rest is the row-block update's temporaries and allocator slack).
    assert inplace["loaded"] < 1.1
    assert inplace["peak"] <= 1.2, inplace
    # The copy holds the model plus new edited matrices, never a second model (a deep copy
    # peaks above 2x).
    assert copied["peak"] <= 1.0 + copied["edited"] + 0.25, copied
    assert copied["peak"] < 1.7, copied


_STORE_CAP = r"""
import gc, json, resource, sys
import torch
torch.set_num_threads(1)
import interp
from interp.directions import diff_in_means_store
from interp.probes import fit_probes_store
from interp.projection import fit_pca_store

def status(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) * 1024
    raise RuntimeError(field)

def fits(path):
    store = interp.ActivationStore.open(path)
    labels = [i % 2 for i in range(len(store))]
    cands = diff_in_means_store(store, labels)
    sweep = fit_probes_store(store, labels, position="eoi-1", n_boot=20)
    pca = fit_pca_store(store, "mlp_out.1", "mean_user", n_components=4)
    return store, cands.vectors.shape, sweep.layers, pca.n_samples_seen_

fits(sys.argv[2])  # imports and first-call costs, on a small store of the same shapes
gc.collect()
store_bytes = sum(s["bytes"] for s in interp.ActivationStore.open(sys.argv[1]).shards)
data, rss = status("VmData"), status("VmRSS")
soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
resource.setrlimit(resource.RLIMIT_DATA, (data + store_bytes // 4, hard))
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
store, shape, layers, seen = fits(sys.argv[1])
peak = status("VmHWM") - rss
try:
    store.load()
    refused = ""
except (MemoryError, RuntimeError) as err:  # safetensors reports a refused map as RuntimeError
    refused = type(err).__name__ + ": " + str(err)[:60]
print(json.dumps({"store_bytes": store_bytes, "cap": store_bytes // 4, "peak_rss": peak,
                  "shape": list(shape), "layers": list(layers), "seen": seen,
                  "refused": refused}))
"""

_STORE_PROMPTS = [f"Question {i}: how do I {'bake' if i % 2 else 'break'} thing {i % 13}?"
                  for i in range(320)]  # fmt: skip


@pytest.fixture(scope="module")
def store_dirs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A 58 MB store (320 prompts, 8 sites x 11 columns x d_model 512) and a 12 MB one."""
    from interp.testing import build_tiny_chat_model

    root = tmp_path_factory.mktemp("big_store")
    model_dir = build_tiny_chat_model(
        "llama", root / "m", n_layers=2, d_model=512, n_heads=8, n_kv_heads=4, d_mlp=512
    )
    model = interp.load_model(model_dir)
    out = []
    for name, prompts in (("big", _STORE_PROMPTS), ("small", _STORE_PROMPTS[:64])):
        interp.cache_activations(
            model,
            prompts,
            root / name,
            ["resid_pre", "resid_post", "attn_out", "mlp_out"],
            ["last", "eoi", "mean_user"],
            batch_size=32,
            shard_size=32,
            progress=False,
        )
        out.append(root / name)
    return out[0], out[1]


@pytest.mark.slow
def test_streaming_fits_run_on_a_store_four_times_the_memory_cap(store_dirs):
    big, small = store_dirs
    out = subprocess.run(
        [sys.executable, "-c", _STORE_CAP, str(big), str(small)], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["store_bytes"] > 50e6 and got["cap"] * 4 <= got["store_bytes"]
    assert got["shape"] == [2, 11, 512] and got["layers"] == [0, 1] and got["seen"] == 320
    # Loading the whole store under the same cap fails: the cap is real.
    assert got["refused"], got
    # Measured: 12 MB of peak RSS (0.11x the store) for the three fits.
    assert got["peak_rss"] < got["cap"], got


def _logits(model, batch):
    with torch.no_grad():
        return model(batch.tokens, attention_mask=batch.attention_mask)


def test_copy_shares_what_it_does_not_edit(tiny_model_dirs):
    model = interp.load_model(tiny_model_dirs["gemma2"])  # tied embeddings
    torch.manual_seed(0)
    edited = orthogonalize(model, torch.randn(int(model.cfg.d_model)))
    old, new = model.original_model, edited.original_model
    old_params = dict(old.named_parameters())
    new_params = dict(new.named_parameters())
    writers = ("embed_tokens", "o_proj", "down_proj")
    for name, param in new_params.items():
        if any(w in name for w in writers):
            assert param is not old_params[name], name
        elif name in old_params:
            assert param is old_params[name], name
    # The head keeps the caller's tensor, which is the caller's (unedited) embedding.
    assert new.get_output_embeddings().weight is old.get_input_embeddings().weight
    assert old.config.tie_word_embeddings and not new.config.tie_word_embeddings


@pytest.mark.parametrize("family", ["llama", "gemma2"])
def test_inplace_equals_the_copy_and_refreshes_the_fingerprint(tiny_model_dirs, family):
    model = interp.load_model(tiny_model_dirs[family])
    torch.manual_seed(0)
    vector = torch.randn(int(model.cfg.d_model))
    batch = interp.encode(model, ["How do I bake bread?", "Hi"])
    real = batch.attention_mask.bool()
    copied = orthogonalize(model, vector)
    before = interp.model_fingerprint(model)
    if family == "llama":
        with apply(model, DirectionalAblation(vector)):
            hooked = _logits(model, batch)
    result = orthogonalize(model, vector, inplace=True)
    assert result is model
    assert (_logits(model, batch) - _logits(copied, batch)).abs()[real].max() < 1e-5
    if family == "llama":
        assert (_logits(model, batch) - hooked).abs()[real].max() < 1e-4
    assert interp.model_fingerprint(model) != before
    assert interp.model_fingerprint(model) == interp.model_fingerprint(copied)
    assert interp.model_info(model).fingerprint == interp.model_fingerprint(model)
    hf = model.original_model
    assert hf.get_output_embeddings().weight is not hf.get_input_embeddings().weight
