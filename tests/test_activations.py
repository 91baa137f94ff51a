import pytest
import torch
from transformers import AutoModelForCausalLM

import interp
from interp.chat import encode
from interp.errors import EmptyPromptSetError, SiteError
from interp.sites import Site

PROMPTS = [
    "How do I bake bread?",
    "Hi",
    "Write a short poem about the sea.",
    "What is the capital of France and why is it famous?",
]


@pytest.fixture(scope="module")
def loaded(tiny_model_dir):
    model = interp.load_model(tiny_model_dir)
    return model, interp.model_info(model)


@pytest.fixture(scope="module")
def hf_model(tiny_model_dir):
    return AutoModelForCausalLM.from_pretrained(tiny_model_dir, attn_implementation="eager").eval()


@pytest.mark.parametrize("system", [None, "default"])
def test_equals_hf_hidden_states_every_layer(loaded, hf_model, system):
    model, info = loaded
    acts = interp.collect_activations(
        model, PROMPTS, ["resid_pre", "ln_final"], ["last", "eoi"], system=system, progress=False
    )
    batch = encode(model, PROMPTS, system)
    with torch.no_grad():
        hidden = hf_model(
            batch.tokens, attention_mask=batch.attention_mask, output_hidden_states=True
        ).hidden_states
    assert len(hidden) == info.n_layers + 1
    n_eoi = batch.eoi_positions.shape[1]
    for layer in range(info.n_layers):
        ours = acts.data[Site("resid_pre", layer).label]
        ref = hidden[layer][:, -n_eoi:]
        torch.testing.assert_close(ours[:, 0], ref[:, -1], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(ours[:, 1:], ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(acts.get("ln_final"), hidden[-1][:, -1], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_stream_identities(tiny_model_dirs, family):
    # Gemma 2 normalises each sublayer's output before adding it (post-norms), so there the
    # attention / MLP outputs do not sum to the residual; the identity is a Llama/Qwen fact.
    model = interp.load_model(tiny_model_dirs[family])
    info = interp.model_info(model)
    acts = interp.collect_activations(
        model,
        PROMPTS,
        ["resid_pre", "attn_out", "resid_mid", "mlp_out", "resid_post"],
        ["last", "mean_user"],
        progress=False,
    )
    for layer in range(info.n_layers):
        for pos in ("last", "mean_user"):
            pre = acts.get(Site("resid_pre", layer), pos)
            mid = acts.get(Site("resid_mid", layer), pos)
            post = acts.get(Site("resid_post", layer), pos)
            torch.testing.assert_close(pre + acts.get(Site("attn_out", layer), pos), mid)
            torch.testing.assert_close(mid + acts.get(Site("mlp_out", layer), pos), post)
    assert acts.stack("resid_post").shape == (info.n_layers, len(PROMPTS), info.d_model)


def test_left_padded_batch_equals_single(loaded):
    model, info = loaded
    batched = interp.collect_activations(
        model, PROMPTS, ["resid_post", "ln_final"], ["last", "eoi"], progress=False
    )
    batch = encode(model, PROMPTS)
    with torch.no_grad():
        logits = model(batch.tokens, attention_mask=batch.attention_mask)[:, -1]
    for i, prompt in enumerate(PROMPTS):
        alone = interp.collect_activations(
            model, [prompt], ["resid_post", "ln_final"], ["last", "eoi"], progress=False
        )
        for label, value in alone.data.items():
            torch.testing.assert_close(batched.data[label][i], value[0], atol=1e-5, rtol=1e-4)
        single = encode(model, [prompt])
        with torch.no_grad():
            ref = model(single.tokens, attention_mask=single.attention_mask)[0, -1]
        torch.testing.assert_close(logits[i], ref, atol=1e-4, rtol=1e-4)


def _torch_hooks(model) -> int:
    return sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.original_model.modules()
    )


def test_stops_early_and_leaves_no_hooks(loaded):
    model, _ = loaded
    interp.collect_activations(model, PROMPTS[:1], ["resid_post.0"], progress=False)
    # transformers installs its own output-capturing hooks on a first direct call; count ours.
    before = _torch_hooks(model)
    ran: list[int] = []
    later = model.blocks[1].original_component.register_forward_hook(lambda *_: ran.append(1))
    try:
        acts = interp.collect_activations(model, PROMPTS, ["resid_post.0"], progress=False)
    finally:
        later.remove()
    assert ran == []  # block 1 never ran
    assert acts.get("resid_post.0").shape[0] == len(PROMPTS)
    assert not any(hp.fwd_hooks for hp in model.hook_dict.values())
    assert _torch_hooks(model) == before
    assert type(model.original_model.model.layers[0]) is type(model.blocks[0])


def test_bridge_path_stops_early_too(loaded):
    model, _ = loaded
    ran: list[int] = []
    later = model.blocks[1].original_component.register_forward_hook(lambda *_: ran.append(1))
    foreign = [(Site("embed").hook_name, lambda *_, **__: None)]  # forces the bridge path
    try:
        with model.hooks(fwd_hooks=foreign):
            acts = interp.collect_activations(model, PROMPTS, ["resid_pre.1"], progress=False)
    finally:
        later.remove()
    assert ran == []  # resid_pre.1 is block 1's input: block 1 itself never ran
    assert acts.get("resid_pre.1").shape[0] == len(PROMPTS)
    full = interp.collect_activations(model, PROMPTS, ["ln_final"], progress=False)
    assert full.get("ln_final").shape[0] == len(PROMPTS)  # the final norm needs every block


def test_no_hooks_left_after_exception(loaded):
    model, _ = loaded

    class Boom(RuntimeError):
        pass

    def explode(*_args, **_kwargs):
        raise Boom

    from interp import activations

    original = activations._slice
    activations._slice = explode
    try:
        with pytest.raises(Boom):
            interp.collect_activations(model, PROMPTS, ["resid_post"], progress=False)
    finally:
        activations._slice = original
    assert not any(hp.fwd_hooks for hp in model.hook_dict.values())


def test_bad_sites_and_empty(loaded):
    model, info = loaded
    with pytest.raises(SiteError, match="unknown site"):
        interp.collect_activations(model, PROMPTS, ["resid_middle"], progress=False)
    with pytest.raises(SiteError, match="out of range"):
        interp.collect_activations(model, PROMPTS, [f"resid_post.{info.n_layers}"], progress=False)
    with pytest.raises(EmptyPromptSetError):
        interp.collect_activations(model, [], ["resid_post"], progress=False)
