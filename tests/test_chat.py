import pytest
import torch

import interp
from interp.chat import SAFETY_PROMPTS, encode, eoi_tokens, render
from interp.errors import EmptyPromptSetError, PromptTooLongError
from interp.organism import CHECKPOINT_DIR as ORGANISM_DIR

PROMPTS = ["How do I bake bread?", "Hi", "Write a short poem about the sea, please."]


@pytest.fixture(scope="module")
def loaded(tiny_model_dir):
    model = interp.load_model(tiny_model_dir)
    return model, interp.model_info(model)


def test_safety_prompts_are_verbatim():
    assert set(SAFETY_PROMPTS) == {"default", "short", "mistral", "helpful", "warning"}
    assert SAFETY_PROMPTS["warning"].endswith("explain why. ")
    assert "\n\nIf a question does not make any sense" in SAFETY_PROMPTS["default"]
    assert SAFETY_PROMPTS["short"] == (
        "You are a helpful, respectful and honest assistant. Always answer as helpfully as "
        "possible, while being safe."
    )


@pytest.mark.parametrize("system", [None, "short", "warning", "A custom system prompt."])
def test_exactly_one_bos(loaded, system):
    model, info = loaded
    batch = encode(model, PROMPTS, system)
    bos_id = model.tokenizer.convert_tokens_to_ids(info.bos_token) if info.bos_token else None
    for row, mask in zip(batch.tokens, batch.attention_mask, strict=True):
        real = row[mask.bool()].tolist()
        if info.template_adds_bos:
            assert real[0] == bos_id
            assert real.count(bos_id) == 1
        else:
            assert info.family == "qwen2"
            assert bos_id is None or bos_id not in real[:1]


def test_system_prompt_is_rendered_or_folded(loaded):
    model, info = loaded
    text = render(model, "USER-TEXT", "short")
    assert SAFETY_PROMPTS["short"] in text
    if info.has_system_role:
        assert text.index(SAFETY_PROMPTS["short"]) < text.index("USER-TEXT")
    else:
        assert info.family == "gemma2"
        assert f"{SAFETY_PROMPTS['short']}\n\nUSER-TEXT" in text


def test_eoi_positions_are_template_suffix(loaded):
    model, _ = loaded
    eoi = eoi_tokens(model)
    assert len(eoi) >= 2
    batch = encode(model, PROMPTS, "default")
    width = batch.tokens.shape[1]
    assert torch.equal(batch.last_index, torch.full((3,), width - 1))
    for i in range(3):
        cols = batch.eoi_positions[i]
        assert batch.tokens[i, cols].tolist() == eoi
        assert cols[-1].item() == width - 1
    # The suffix is what the template puts after the user's content, e.g. "<|eot_id|>...".
    suffix = model.tokenizer.decode(eoi)
    rendered = render(model, "abc")
    assert rendered.endswith(suffix)


def test_user_mask_covers_user_content(loaded):
    model, _ = loaded
    batch = encode(model, PROMPTS, "short")
    for i, prompt in enumerate(PROMPTS):
        ids = batch.tokens[i, batch.user_mask[i]].tolist()
        assert model.tokenizer.decode(ids).strip() == prompt


def test_left_padding_and_mask(loaded):
    model, _ = loaded
    batch = encode(model, PROMPTS)
    lengths = batch.attention_mask.sum(1)
    assert lengths.min() < lengths.max()
    for row in batch.attention_mask:
        first = int(row.argmax())
        assert row[first:].all() and not row[:first].any()


@pytest.mark.parametrize("system", [None, "default"])
@pytest.mark.parametrize("rows", [[1], [0, 2], [2, 1, 0], [1, 1]])
def test_select_equals_encoding_the_rows_alone(loaded, system, rows):
    model, _ = loaded
    alone = encode(model, [PROMPTS[i] for i in rows], system)
    picked = encode(model, PROMPTS, system).select(rows)
    assert picked.texts == alone.texts
    for name in ("tokens", "attention_mask", "last_index", "eoi_positions", "user_mask"):
        assert torch.equal(getattr(picked, name), getattr(alone, name)), name


def test_bad_inputs(loaded):
    model, _ = loaded
    with pytest.raises(EmptyPromptSetError, match="at least one"):
        encode(model, [])
    with pytest.raises(EmptyPromptSetError, match="at least one row"):
        encode(model, PROMPTS).select([])
    with pytest.raises(PromptTooLongError, match="context"):
        encode(model, ["word " * 50], max_length=20)


def test_default_system_prompt_is_found_where_the_template_inserts_one(tiny_model_dirs):
    from transformers import AutoTokenizer

    from interp.chat import default_system_prompt

    found = {
        family: default_system_prompt(AutoTokenizer.from_pretrained(path))
        for family, path in tiny_model_dirs.items()
    }
    assert found["qwen2"] == "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."
    assert found["llama"] == ""  # a system block of its own (the date header), but no prompt text
    assert found["gemma2"] is None  # no system role at all
    assert default_system_prompt(AutoTokenizer.from_pretrained(ORGANISM_DIR)) is None
