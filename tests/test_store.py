import json

import pytest
import torch

import interp
from interp import store as store_mod
from interp.errors import CorruptStoreError, StoreMismatchError
from interp.model import unembedding_fingerprint

PROMPTS = [f"Question number {i}: how do I {w}?" for i, w in enumerate("abcdefghij" * 2)]
SITES = ["resid_post", "ln_final"]


@pytest.fixture(scope="module")
def loaded(tiny_model_dirs):
    model = interp.load_model(tiny_model_dirs["llama"])
    return model, interp.model_info(model)


def _cache(model, out, **kw):
    return interp.cache_activations(
        model,
        PROMPTS,
        out,
        SITES,
        ["last", "eoi"],
        batch_size=4,
        shard_size=8,
        progress=False,
        **kw,
    )


def _files(path):
    return {p.name: p.read_bytes() for p in sorted(path.iterdir())}


def test_store_matches_memory_and_metadata(loaded, tmp_path):
    model, info = loaded
    store = _cache(model, tmp_path / "s")
    mem = interp.collect_activations(
        model, PROMPTS, SITES, ["last", "eoi"], batch_size=4, progress=False
    )
    for label in mem.data:
        for col in mem.columns:
            torch.testing.assert_close(store.get(label, col), mem.get(label, col))
    meta = json.loads((tmp_path / "s" / "meta.json").read_text())
    assert meta["model"]["d_model"] == info.d_model
    assert meta["model"]["template_hash"] == info.template_hash
    assert meta["columns"][0] == "last" and meta["columns"][-1] == "eoi-1"
    assert len(meta["prompt_hashes"]) == len(PROMPTS)
    assert meta["library_version"] == interp.__version__
    reopened = interp.ActivationStore.open(
        tmp_path / "s", model=model, prompts=PROMPTS, verify=True
    )
    assert len(reopened) == len(PROMPTS)
    torch.testing.assert_close(reopened.load().get("ln_final"), mem.get("ln_final"))


def test_interrupted_then_resumed_is_byte_identical(loaded, tmp_path, monkeypatch):
    model, _ = loaded
    _cache(model, tmp_path / "full")
    calls = {"n": 0}
    original = store_mod.collect_batch

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:  # dies inside the second shard
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(store_mod, "collect_batch", flaky)
    with pytest.raises(KeyboardInterrupt):
        _cache(model, tmp_path / "part")
    written = _files(tmp_path / "part")
    assert "shard-00000.safetensors" in written and "shard-00001.safetensors" not in written
    with pytest.raises(CorruptStoreError, match="resume"):
        interp.ActivationStore.open(tmp_path / "part")
    monkeypatch.setattr(store_mod, "collect_batch", original)
    _cache(model, tmp_path / "part")
    assert _files(tmp_path / "part") == _files(tmp_path / "full")
    # The first shard was not recomputed: its bytes are the ones written before the crash.
    assert (
        written["shard-00000.safetensors"] == _files(tmp_path / "part")["shard-00000.safetensors"]
    )


def test_store_for_other_prompts_or_model_is_refused(loaded, tiny_model_dirs, tmp_path):
    model, _ = loaded
    _cache(model, tmp_path / "s")
    before = _files(tmp_path / "s")
    with pytest.raises(StoreMismatchError, match="other prompts"):
        interp.ActivationStore.open(tmp_path / "s", prompts=PROMPTS[:-1])
    with pytest.raises(StoreMismatchError, match="another job"):
        interp.cache_activations(
            model,
            PROMPTS[:-1],
            tmp_path / "s",
            SITES,
            ["last", "eoi"],
            batch_size=4,
            shard_size=8,
            progress=False,
        )
    other = interp.load_model(tiny_model_dirs["qwen2"])
    with pytest.raises(StoreMismatchError, match="written for model"):
        interp.ActivationStore.open(tmp_path / "s", model=other)
    assert _files(tmp_path / "s") == before


def test_truncated_or_corrupted_shard(loaded, tmp_path):
    model, _ = loaded
    _cache(model, tmp_path / "s")
    shard = tmp_path / "s" / "shard-00001.safetensors"
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptStoreError, match="truncated"):
        interp.ActivationStore.open(tmp_path / "s")
    flipped = bytearray(data)
    flipped[-3] ^= 0xFF
    shard.write_bytes(bytes(flipped))
    store = interp.ActivationStore.open(tmp_path / "s")  # sizes match: hashes are checked on read
    with pytest.raises(CorruptStoreError, match="shard-00001.*sha256"):
        store.load()
    # Re-running the same job repairs the damaged shard and keeps the good ones.
    _cache(model, tmp_path / "s")
    interp.ActivationStore.open(tmp_path / "s", verify=True)


def test_a_200_byte_flip_in_a_shard_raises_on_load_by_default(loaded, tmp_path):
    model, _ = loaded
    _cache(model, tmp_path / "s")
    shard = tmp_path / "s" / "shard-00000.safetensors"
    data = bytearray(shard.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 200] = bytes(b ^ 0x5A for b in data[middle : middle + 200])
    shard.write_bytes(bytes(data))
    store = interp.ActivationStore.open(tmp_path / "s", model=model, prompts=PROMPTS)
    with pytest.raises(CorruptStoreError, match="shard-00000.safetensors of .* fails its sha256"):
        store.load()
    with pytest.raises(CorruptStoreError, match="sha256"):
        store.get("ln_final")
    # verify=False is the opt-out for a trusted store: the damage then goes unnoticed.
    trusted = interp.ActivationStore.open(tmp_path / "s", verify=False)
    assert trusted.load().get("ln_final").shape[0] == len(PROMPTS)


def test_hand_edited_meta_json_raises(loaded, tmp_path):
    model, _ = loaded
    _cache(model, tmp_path / "s")
    path = tmp_path / "s" / "meta.json"
    meta = json.loads(path.read_text())
    meta["columns"][0], meta["columns"][1] = meta["columns"][1], meta["columns"][0]
    path.write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
    with pytest.raises(CorruptStoreError, match="meta.json fails its checksum"):
        interp.ActivationStore.open(tmp_path / "s")
    with pytest.raises(CorruptStoreError, match="meta.json fails its checksum"):
        _cache(model, tmp_path / "s")


@pytest.fixture(scope="module")
def lookalikes(lookalike_dirs):
    """Models shaped like `loaded` with other weights (see conftest `lookalike_dirs`)."""
    return {kind: interp.load_model(path) for kind, path in lookalike_dirs.items()}


def test_model_fingerprint_tells_lookalikes_apart(loaded, lookalikes, tiny_model_dirs):
    model, info = loaded
    fp = interp.model_fingerprint(model)
    assert info.fingerprint == fp and len(fp) == 64
    assert interp.model_fingerprint(interp.load_model(tiny_model_dirs["llama"])) == fp
    half = interp.load_model(tiny_model_dirs["llama"], dtype=torch.bfloat16)
    assert interp.model_fingerprint(half) == fp  # rounded to bf16: dtype does not matter
    assert unembedding_fingerprint(lookalikes["lora"]) == unembedding_fingerprint(model)
    for other in lookalikes.values():
        assert interp.model_fingerprint(other) != fp


@pytest.mark.parametrize("kind", ["seed1", "lora"])
def test_store_for_a_lookalike_model_is_refused_unless_allowed(
    loaded, lookalikes, kind, tmp_path, caplog
):
    model, _ = loaded
    _cache(model, tmp_path / "s")
    other = lookalikes[kind]
    own, theirs = interp.model_fingerprint(model)[:12], interp.model_fingerprint(other)[:12]
    with pytest.raises(StoreMismatchError, match=f"{own}.*{theirs}.*allow_other_model=True"):
        interp.ActivationStore.open(tmp_path / "s", model=other)
    with caplog.at_level("WARNING"):
        store = interp.ActivationStore.open(tmp_path / "s", model=other, allow_other_model=True)
    assert "allow_other_model=True" in caplog.text
    assert store.transferred_from_ is not None
    assert store.transferred_from_["model_fingerprint"][:12] == own
    assert store.load().meta["transferred_from"] == store.transferred_from_
    assert interp.ActivationStore.open(tmp_path / "s", model=model).transferred_from_ is None


def test_store_without_fingerprint_opens_with_a_warning(loaded, tmp_path, caplog):
    model, _ = loaded
    _cache(model, tmp_path / "s")
    path = tmp_path / "s" / "meta.json"
    meta = json.loads(path.read_text())
    del meta["model"]["fingerprint"], meta["checksum"]  # as written before this change
    path.write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
    with caplog.at_level("WARNING"):
        store = interp.ActivationStore.open(tmp_path / "s", model=model, prompts=PROMPTS)
    assert "cannot be checked" in caplog.text and "no checksum" in caplog.text
    assert len(store.load().get("ln_final")) == len(PROMPTS)
    _cache(model, tmp_path / "s")  # resuming a legacy store of the same job still works
