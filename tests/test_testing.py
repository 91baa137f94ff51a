"""Tests of the tiny offline chat models in ``interp.testing``."""

import json
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer
from transformers import AutoModelForCausalLM, AutoTokenizer

from interp.testing import FAMILIES, build_tiny_chat_model, build_wide_model

CONVERSATION = [
    {"role": "user", "content": "How do I bake bread?"},
    {"role": "assistant", "content": "Mix flour, water and yeast."},
    {"role": "user", "content": "Thanks!"},
]

EXPECTED_RENDERING = {
    "llama": (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
        "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nHow do I bake bread?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nMix flour, water and yeast.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nThanks!<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    ),
    "qwen2": (
        "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful "
        "assistant.<|im_end|>\n<|im_start|>user\nHow do I bake bread?<|im_end|>\n"
        "<|im_start|>assistant\nMix flour, water and yeast.<|im_end|>\n"
        "<|im_start|>user\nThanks!<|im_end|>\n<|im_start|>assistant\n"
    ),
    "gemma2": (
        "<bos><start_of_turn>user\nHow do I bake bread?<end_of_turn>\n"
        "<start_of_turn>model\nMix flour, water and yeast.<end_of_turn>\n"
        "<start_of_turn>user\nThanks!<end_of_turn>\n<start_of_turn>model\n"
    ),
}

SPECIAL_ROLES = {
    "llama": ("<|begin_of_text|>", "<|eot_id|>", "<|finetune_right_pad_id|>"),
    "qwen2": (None, "<|im_end|>", "<|endoftext|>"),
    "gemma2": ("<bos>", "<eos>", "<pad>"),
}


def render(model_dir: Path, messages: list[dict[str, str]]) -> str:
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def test_same_seed_gives_identical_files(tmp_path: Path) -> None:
    first = build_tiny_chat_model("gemma2", tmp_path / "a", n_layers=1, seed=3)
    second = build_tiny_chat_model("gemma2", tmp_path / "b", n_layers=1, seed=3)
    other = build_tiny_chat_model("gemma2", tmp_path / "c", n_layers=1, seed=4)
    names = sorted(p.name for p in first.iterdir())
    assert {"model.safetensors", "tokenizer.json", "config.json"} <= set(names)
    assert names == sorted(p.name for p in second.iterdir())
    for name in names:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    weights = "model.safetensors"
    assert (first / weights).read_bytes() != (other / weights).read_bytes()
    assert (first / "tokenizer.json").read_bytes() == (other / "tokenizer.json").read_bytes()


def test_build_leaves_global_rng_alone(tmp_path: Path) -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    build_tiny_chat_model("llama", tmp_path, n_layers=1)
    assert torch.equal(torch.rand(3), expected)


def test_renders_real_chat_markers(tiny_family: str, tiny_model_dir: Path) -> None:
    assert render(tiny_model_dir, CONVERSATION) == EXPECTED_RENDERING[tiny_family]


def test_special_token_roles(tiny_family: str, tiny_model_dir: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    bos, eos, pad = SPECIAL_ROLES[tiny_family]
    assert (tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token) == (bos, eos, pad)
    assert tokenizer.pad_token_id != tokenizer.eos_token_id
    assert len(tokenizer) == 512


def test_bos_appears_once_at_start(tiny_family: str, tiny_model_dir: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    ids = tokenizer(render(tiny_model_dir, CONVERSATION), add_special_tokens=False)["input_ids"]
    if tiny_family == "qwen2":
        assert tokenizer.bos_token_id is None
        assert (
            tokenizer("hello")["input_ids"]
            == tokenizer("hello", add_special_tokens=False)["input_ids"]
        )
    else:
        assert ids[0] == tokenizer.bos_token_id
        assert ids.count(tokenizer.bos_token_id) == 1
        # Plain text (no template) gets BOS from the tokenizer itself, like the real ones.
        assert tokenizer("hello")["input_ids"][0] == tokenizer.bos_token_id


def test_loaded_tokenizer_matches_saved_file(tiny_model_dir: Path) -> None:
    # transformers may rebuild a family's tokenizer on load (Qwen2Tokenizer does); the ids
    # must still be those of tokenizer.json.
    text = "Numbers 12345 and   spaces\n\n  don't café!"
    loaded = AutoTokenizer.from_pretrained(tiny_model_dir)
    raw = Tokenizer.from_file(str(tiny_model_dir / "tokenizer.json"))
    assert loaded(text)["input_ids"] == raw.encode(text).ids
    assert loaded.decode(loaded(text, add_special_tokens=False)["input_ids"]) == text


def test_qwen_inserts_default_system_prompt_unless_given(tiny_model_dirs: dict) -> None:
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    rendered = render(tiny_model_dirs["qwen2"], messages)
    assert rendered.startswith("<|im_start|>system\nBe brief.<|im_end|>\n")
    assert "Alibaba" not in rendered


def test_gemma_rejects_system_role(tiny_model_dirs: dict) -> None:
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    with pytest.raises(Exception, match="System role not supported"):
        render(tiny_model_dirs["gemma2"], messages)


def test_base_model_has_no_chat_template(base_model_dir: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(base_model_dir)
    assert tokenizer.chat_template is None
    assert tokenizer.eos_token == "<|end_of_text|>"
    with pytest.raises(ValueError):
        tokenizer.apply_chat_template(CONVERSATION[:1], tokenize=False)


def test_bridge_matches_hf_logits(tiny_bridge: object, tiny_model_dir: Path) -> None:
    hf = AutoModelForCausalLM.from_pretrained(tiny_model_dir, attn_implementation="eager").eval()
    tokens = torch.randint(0, 512, (2, 80), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits = tiny_bridge(tokens)
        expected = hf(tokens).logits
    assert tiny_bridge.cfg.n_layers == 2 and tiny_bridge.cfg.d_model == 64
    assert logits.shape == (2, 80, 512)
    torch.testing.assert_close(logits, expected, rtol=0, atol=1e-5)


def test_wide_model_shares_the_tokenizer(tmp_path: Path, tiny_model_dirs: dict) -> None:
    wide = build_wide_model(tmp_path, n_layers=1, d_model=128, n_heads=4, n_kv_heads=2, d_mlp=256)
    tiny = tiny_model_dirs["llama"]
    assert (wide / "tokenizer.json").read_bytes() == (tiny / "tokenizer.json").read_bytes()
    config = AutoModelForCausalLM.from_pretrained(wide).config
    assert (config.num_hidden_layers, config.hidden_size) == (1, 128)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"family": "gpt2"}, "unknown family"),
        ({"family": "llama", "vocab_size": 200}, "too small"),
        ({"family": "llama", "n_heads": 3}, "n_heads"),
        ({"family": "llama", "n_kv_heads": 3}, "n_kv_heads"),
    ],
)
def test_invalid_arguments_raise(tmp_path: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_tiny_chat_model(out_dir=tmp_path, **kwargs)


def test_every_family_is_built_as_its_architecture(tiny_model_dirs: dict) -> None:
    """Each family in FAMILIES has a checked rendering and builds its own HF architecture."""
    assert set(FAMILIES) == set(EXPECTED_RENDERING) == set(tiny_model_dirs)
    for family, path in tiny_model_dirs.items():
        config = json.loads((path / "config.json").read_text())
        assert config["model_type"] == family
        assert config["architectures"][0].lower().startswith(family.rstrip("0123456789"))
