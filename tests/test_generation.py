import pytest
import torch
from transformers import AutoModelForCausalLM

import interp
from interp.chat import encode
from interp.errors import EmptyPromptSetError
from interp.generation import eos_token_ids, greedy_decode
from interp.sites import Site

PROMPTS = ["How do I bake bread?", "Hi", "Write a short poem about the sea, please."]


@pytest.fixture(scope="module")
def loaded(tiny_model_dir):
    return interp.load_model(tiny_model_dir)


def test_batched_equals_single_and_hf_generate(loaded, tiny_model_dir):
    model, _ = loaded
    out = interp.generate(model, PROMPTS, max_new_tokens=6, batch_size=3)
    hf = AutoModelForCausalLM.from_pretrained(tiny_model_dir, attn_implementation="eager").eval()
    for i, prompt in enumerate(PROMPTS):
        alone = interp.generate(model, [prompt], max_new_tokens=6)
        assert alone.tokens[0] == out.tokens[i]
        single = encode(model, [prompt])
        with torch.no_grad():
            ref = hf.generate(
                single.tokens,
                attention_mask=single.attention_mask,
                max_new_tokens=6,
                do_sample=False,
                eos_token_id=sorted(eos_token_ids(model)),
                pad_token_id=model.tokenizer.pad_token_id,
            )[0, single.tokens.shape[1] :].tolist()
        eos = eos_token_ids(model)
        ref = ref[: next((k for k, t in enumerate(ref) if t in eos), len(ref))]
        assert list(out.tokens[i]) == ref


def test_hooks_fire_on_every_step_and_are_removed(loaded):
    model, _ = loaded
    shapes = []

    def record(x, hook):
        shapes.append(x.shape[1])

    batch = encode(model, PROMPTS)
    new = greedy_decode(
        model,
        batch,
        max_new_tokens=4,
        fwd_hooks=[(Site("resid_pre", 0).hook_name, record)],
        stop_at_eos=False,
    )
    assert new.shape == (3, 4)
    assert shapes == [batch.tokens.shape[1], 1, 1, 1]
    assert not any(hp.fwd_hooks for hp in model.hook_dict.values())


def test_logits_fn_steers_decoding(loaded):
    model, _ = loaded
    target = 42

    def force(logits, step):
        logits[:, target] = 1e9
        return logits

    out = interp.generate(model, PROMPTS, max_new_tokens=3, logits_fn=force)
    assert all(t == (target,) * 3 for t in out.tokens)


def test_empty_prompt_set_is_refused(loaded):
    model, _ = loaded
    with pytest.raises(EmptyPromptSetError, match="no prompts"):
        interp.generate(model, [])
