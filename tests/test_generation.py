import contextlib

import pytest
import torch
from transformers import AutoModelForCausalLM

import interp
from interp.chat import encode
from interp.errors import EmptyPromptSetError
from interp.generation import decode_with_states, eos_token_ids, greedy_decode
from interp.native import native_supported
from interp.sites import Site

PROMPTS = ["How do I bake bread?", "Hi", "Write a short poem about the sea, please."]


@pytest.fixture(scope="module")
def loaded(tiny_model_dir):
    model = interp.load_model(tiny_model_dir)
    return model, interp.model_info(model)


@pytest.mark.parametrize("path", ["native", "bridge"])
def test_batched_equals_single_and_hf_generate(loaded, tiny_model_dir, path):
    """Greedy decoding equals HF `generate` token for token, on both forward paths.

    The bridge path is forced the public way (a hook attached to the bridge itself); under
    transformers versions where the bridge's KV cache is broken it replays the sequence.
    """
    model, _ = loaded
    forced = (
        model.hooks(fwd_hooks=[(Site("embed").hook_name, lambda *_, **__: None)])
        if path == "bridge"
        else contextlib.nullcontext()
    )
    with forced:
        assert native_supported(model) == (path == "native")
        out = interp.generate(model, PROMPTS, max_new_tokens=6, batch_size=3)
        alone = [interp.generate(model, [prompt], max_new_tokens=6) for prompt in PROMPTS]
    hf = AutoModelForCausalLM.from_pretrained(tiny_model_dir, attn_implementation="eager").eval()
    for i, prompt in enumerate(PROMPTS):
        assert alone[i].tokens[0] == out.tokens[i]
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
    assert max(len(t) for t in out.tokens) > 1  # at least one cached step was compared


def test_hooks_fire_on_every_step_and_are_removed(loaded):
    model, _ = loaded
    shapes = []

    def record(x, hook):
        shapes.append(x.shape[1])

    batch = encode(model, PROMPTS)
    torch_hooks = sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.original_model.modules()
    )
    assert native_supported(model, [(Site("resid_pre", 0).hook_name, record)])
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
    after = sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.original_model.modules()
    )
    assert after == torch_hooks  # the native path's torch hooks are gone too


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


def test_reuse_generations_decodes_each_plain_prompt_once(tiny_bridge):
    prompts = ["How do I bake bread?", "Hi", "Write a short poem about the sea."]
    fresh = interp.generate(tiny_bridge, prompts, max_new_tokens=6)
    calls = []
    real = interp.generation.greedy_decode

    def counting(model, batch, **kwargs):
        calls.append(batch.tokens.shape[0])
        return real(model, batch, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(interp.generation, "greedy_decode", counting)
        with interp.reuse_generations() as reuse:
            first = interp.generate(tiny_bridge, prompts[:2], max_new_tokens=6)
            again = interp.generate(tiny_bridge, prompts, max_new_tokens=6, batch_size=1)
            longer = interp.generate(tiny_bridge, prompts[:1], max_new_tokens=7)
            d_model = int(tiny_bridge.cfg.d_model)
            direction = interp.Direction(
                torch.ones(d_model) / d_model**0.5, interp.Site("resid_pre", 1), "eoi-1", "t"
            )
            with interp.apply(tiny_bridge, interp.ActAdd(direction, 4.0, layer=1)):
                steered = interp.generate(tiny_bridge, prompts[:1], max_new_tokens=6)
            with torch.no_grad():
                p = next(tiny_bridge.parameters())
                p.mul_(1.0)  # an in-place edit: the kept answers are dropped
            after_edit = interp.generate(tiny_bridge, prompts[:1], max_new_tokens=6)
    # Two prompts, then only the third, then the longer answer, the steered call and the
    # call after the edit each decode anew.
    assert calls == [2, 1, 1, 1, 1]
    # Counted are plain calls only (the steered one is neither kept nor looked up).
    assert reuse.to_dict() == {"reused_prompts": 2, "decoded_prompts": 5}
    assert again.tokens == fresh.tokens and first.tokens == fresh.tokens[:2]
    assert again.texts == fresh.texts and after_edit.tokens == fresh.tokens[:1]
    assert len(longer.tokens[0]) >= len(fresh.tokens[0])
    assert steered.tokens != fresh.tokens[:1]  # the intervention was not served from memory


SYSTEM = "You are a careful assistant. Answer briefly and politely, in plain words."


def test_a_shared_prefix_runs_once_and_changes_no_token(loaded, tiny_model_dir, monkeypatch):
    """The rows' common template prefix runs once (`interp.native.prefill`): same greedy
    tokens as HF `generate` on each prompt alone, and as the full pass; same last logits."""
    from interp import native

    model, _ = loaded
    batch = encode(model, PROMPTS, SYSTEM)
    p = native.shared_prefix(batch.tokens, batch.attention_mask)
    assert p >= native.MIN_SHARED_PREFIX  # the system prompt is shared
    # A sliding window (tiny Gemma 2: 64) shorter than the batch plus the answer keeps the
    # full pass: it counts cache slots, and the shared layout moves the padding.
    window = getattr(model.original_model.config, "sliding_window", None)
    width = batch.tokens.shape[1]
    with native.forward_session(model) as step:
        _, _, mask = native.prefill(model, step, batch.tokens, batch.attention_mask, horizon=6)
    if window is not None and window <= width + 6:
        assert mask is batch.attention_mask
    else:
        assert mask is not batch.attention_mask and mask[:, :p].all()

    shared = interp.generate(model, PROMPTS, system=SYSTEM, max_new_tokens=6)
    with_states, shared_states = decode_with_states(model, PROMPTS, SYSTEM, max_new_tokens=6)
    shared_logits = native.last_logits(model, batch.tokens, batch.attention_mask)
    direction = interp.Direction(
        torch.ones(int(model.cfg.d_model)), Site("resid_pre", 1), "eoi-1", "test"
    )
    with interp.apply(model, interp.DirectionalAblation(direction)):
        ablated = native.last_logits(model, batch.tokens, batch.attention_mask)
    # ActAdd at chosen positions depends on the pass's width: never split.
    with interp.apply(model, interp.ActAdd(direction, 1.0, layer=1, positions=(-1,))):
        with native.forward_session(model) as step:
            _, _, kept = native.prefill(model, step, batch.tokens, batch.attention_mask)
        assert kept is batch.attention_mask

    monkeypatch.setattr(native, "MIN_SHARED_PREFIX", 10**9)
    full = interp.generate(model, PROMPTS, system=SYSTEM, max_new_tokens=6)
    _, full_states = decode_with_states(model, PROMPTS, SYSTEM, max_new_tokens=6)
    full_logits = native.last_logits(model, batch.tokens, batch.attention_mask)
    with interp.apply(model, interp.DirectionalAblation(direction)):
        full_ablated = native.last_logits(model, batch.tokens, batch.attention_mask)
    assert shared.tokens == full.tokens and with_states.tokens == full.tokens
    # The prompt's final state is read from the rest of each prompt after a shared prefix.
    torch.testing.assert_close(shared_states, full_states, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(shared_logits, full_logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ablated, full_ablated, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(ablated, shared_logits)

    hf = AutoModelForCausalLM.from_pretrained(tiny_model_dir, attn_implementation="eager").eval()
    eos = eos_token_ids(model)
    for i, prompt in enumerate(PROMPTS):
        single = encode(model, [prompt], SYSTEM)
        with torch.no_grad():
            ref = hf.generate(
                single.tokens,
                attention_mask=single.attention_mask,
                max_new_tokens=6,
                do_sample=False,
                eos_token_id=sorted(eos),
                pad_token_id=model.tokenizer.pad_token_id,
            )[0, single.tokens.shape[1] :].tolist()
        ref = ref[: next((k for k, t in enumerate(ref) if t in eos), len(ref))]
        assert list(shared.tokens[i]) == ref


def test_length_groups_is_the_cheapest_split_and_respects_the_batch_size():
    import itertools
    import random

    from interp.generation import length_groups

    def cost(sizes, lengths, overhead):
        total, start = 0, 0
        for size in sizes:
            total += size * lengths[start + size - 1] + overhead
            start += size
        return total

    rng = random.Random(0)
    for _ in range(200):
        lengths = sorted(rng.choice([rng.randint(5, 40), rng.randint(100, 500)]) for _ in range(7))
        batch_size, overhead = rng.randint(1, 7), rng.choice([0, 64, 512])
        got = length_groups(lengths, batch_size, overhead)
        assert sum(got) == len(lengths) and max(got) <= batch_size
        best = min(
            cost(sizes, lengths, overhead)
            for k in range(1, len(lengths) + 1)
            for sizes in itertools.product(range(1, batch_size + 1), repeat=k)
            if sum(sizes) == len(lengths)
        )
        assert cost(got, lengths, overhead) == best
    # The jailbreak case: a few long wrappers get batches of their own.
    assert length_groups([53] * 20 + [470] * 4, 64) == [20, 4]
    assert length_groups([40] * 24, 64) == [24]


def test_length_groups_under_a_token_budget_is_the_cheapest_split_within_it():
    import itertools
    import random

    from interp.generation import length_groups

    def fits(sizes, lengths, budget):
        ends = list(itertools.accumulate(sizes))
        return all(s == 1 or s * lengths[e - 1] <= budget for s, e in zip(sizes, ends, strict=True))

    def cost(sizes, lengths):
        ends = list(itertools.accumulate(sizes))
        return sum(s * lengths[e - 1] + 64 for s, e in zip(sizes, ends, strict=True))

    rng = random.Random(1)
    for _ in range(200):
        lengths = sorted(rng.choice([rng.randint(5, 40), rng.randint(100, 500)]) for _ in range(7))
        budget = rng.choice([30, 120, 400, 1000])
        got = length_groups(lengths, 7, 64, max_tokens=budget)
        assert sum(got) == len(lengths) and fits(got, lengths, budget), (lengths, budget, got)
        best = min(
            cost(sizes, lengths)
            for k in range(1, len(lengths) + 1)
            for sizes in itertools.product(range(1, 8), repeat=k)
            if sum(sizes) == len(lengths) and fits(sizes, lengths, budget)
        )
        assert cost(got, lengths) == best
    # A prompt longer than the budget runs alone; without a budget nothing changes.
    assert length_groups([10, 10, 900], 8, max_tokens=100) == [2, 1]
    assert length_groups([40] * 24, 64, max_tokens=None) == [24]
    assert sorted(length_groups([40] * 24, 64, max_tokens=400)) == [4, 10, 10]
