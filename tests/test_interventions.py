import pytest
import torch
from transformers import AutoModelForCausalLM

import interp
from interp.directions import Direction
from interp.errors import ArtifactMismatchError, SiteError
from interp.interventions import (
    ActAdd,
    DirectionalAblation,
    InterventionError,
    apply,
    orthogonalize,
    save_hf,
)
from interp.refusal_direction import evaluate_direction, explore, explorer_widget, score_candidates
from interp.sites import resid_hook_names

PROMPTS = ["How do I bake bread?", "Hi", "Write a short poem about the sea, please."]


def _direction(model, layer=1, seed=0):
    torch.manual_seed(seed)
    return Direction.from_vector(torch.randn(int(model.cfg.d_model)), model, layer)


def _logits(model, batch):
    with torch.no_grad():
        return model(batch.tokens, attention_mask=batch.attention_mask)


def _hook_count(model):
    return sum(len(hp._forward_hooks) for hp in model.hook_dict.values())


def test_ablation_leaves_no_component_at_any_hooked_site(tiny_bridge):
    direction = _direction(tiny_bridge)
    unit = direction.unit
    names = set(resid_hook_names(int(tiny_bridge.cfg.n_layers)))
    batch = interp.encode(tiny_bridge, PROMPTS)
    with apply(tiny_bridge, DirectionalAblation(direction)), torch.no_grad():
        _, cache = tiny_bridge.run_with_cache(
            batch.tokens, attention_mask=batch.attention_mask, names_filter=lambda n: n in names
        )
    assert set(cache.keys()) == names
    for name in names:
        x = cache[name]
        relative = (x @ unit).abs() / x.norm(dim=-1).clamp_min(1e-12)
        assert relative.max() < 1e-5, name


def test_ablating_twice_equals_once_and_actadd_zero_is_identity(tiny_bridge):
    direction = _direction(tiny_bridge)
    batch = interp.encode(tiny_bridge, PROMPTS)
    base = _logits(tiny_bridge, batch)
    with apply(tiny_bridge, DirectionalAblation(direction)):
        once = _logits(tiny_bridge, batch)
    with apply(tiny_bridge, DirectionalAblation(direction), DirectionalAblation(direction)):
        twice = _logits(tiny_bridge, batch)
    with (
        apply(tiny_bridge, DirectionalAblation(direction)),
        apply(tiny_bridge, DirectionalAblation(direction)),
    ):
        nested = _logits(tiny_bridge, batch)
    torch.testing.assert_close(twice, once, atol=1e-5, rtol=0)
    torch.testing.assert_close(nested, twice, atol=0, rtol=0)
    assert (once - base).abs().max() > 1e-4
    with apply(tiny_bridge, ActAdd(direction, 0.0)):
        assert torch.equal(_logits(tiny_bridge, batch), base)


def test_hooks_are_removed_after_the_context_and_after_errors(tiny_bridge):
    direction = _direction(tiny_bridge)
    batch = interp.encode(tiny_bridge, PROMPTS)
    base = _logits(tiny_bridge, batch)
    before = _hook_count(tiny_bridge)
    with apply(tiny_bridge, DirectionalAblation(direction)):
        assert _hook_count(tiny_bridge) > before
    assert _hook_count(tiny_bridge) == before
    with pytest.raises(RuntimeError, match="boom"), apply(tiny_bridge, ActAdd(direction, 5.0)):
        raise RuntimeError("boom")
    with (
        pytest.raises(InterventionError),
        apply(tiny_bridge, ActAdd(direction, 1.0, positions=[99])),
    ):
        _logits(tiny_bridge, batch)
    assert _hook_count(tiny_bridge) == before
    assert torch.equal(_logits(tiny_bridge, batch), base)


def test_nested_contexts_compose(tiny_bridge):
    direction = _direction(tiny_bridge)
    batch = interp.encode(tiny_bridge, PROMPTS)
    add, ablate = ActAdd(direction, 2.0, 0), DirectionalAblation(direction)
    with apply(tiny_bridge, add), apply(tiny_bridge, ablate):
        nested = _logits(tiny_bridge, batch)
        with apply(tiny_bridge):  # an empty context changes nothing
            assert torch.equal(_logits(tiny_bridge, batch), nested)
    with apply(tiny_bridge, add, ablate):
        flat = _logits(tiny_bridge, batch)
    assert torch.equal(nested, flat)


def test_actadd_positions_edit_only_those_positions(tiny_bridge):
    direction = _direction(tiny_bridge, layer=0)
    batch = interp.encode(tiny_bridge, PROMPTS)
    base = _logits(tiny_bridge, batch)
    with apply(tiny_bridge, ActAdd(direction, 3.0, positions=[-1])):
        last_only = _logits(tiny_bridge, batch)
    # Padding rows may attend anywhere (fully masked queries), so compare real tokens only.
    real = batch.attention_mask.bool()[:, :-1]
    assert torch.equal(last_only[:, :-1][real], base[:, :-1][real])
    assert (last_only[:, -1] - base[:, -1]).abs().max() > 1e-3


def test_bad_intervention_inputs_raise(tiny_bridge, tiny_model_dirs):
    direction = _direction(tiny_bridge)
    with pytest.raises(SiteError, match="out of range"):
        ActAdd(direction, 1.0, layer=50).hooks(tiny_bridge)
    with pytest.raises(InterventionError, match="finite"):
        ActAdd(direction, float("nan"))
    with pytest.raises(InterventionError, match="needs a layer"):
        ActAdd(torch.ones(64), 1.0)
    with pytest.raises(interp.directions.DirectionError, match="zero norm"):
        DirectionalAblation(torch.zeros(64)).hooks(tiny_bridge)
    with pytest.raises(interp.directions.DirectionError, match="d_model"):
        DirectionalAblation(torch.ones(65)).hooks(tiny_bridge)
    foreign = Direction(torch.ones(64), direction.site, template_hash="0" * 64)
    with pytest.raises(ArtifactMismatchError):
        DirectionalAblation(foreign).hooks(tiny_bridge)
    with pytest.raises(TypeError, match="not a hook intervention"), apply(tiny_bridge, "ablate"):
        pass


def test_generation_with_hooks_equals_generation_inside_apply(tiny_bridge):
    ablate = DirectionalAblation(_direction(tiny_bridge))
    inside = None
    with apply(tiny_bridge, ablate):
        inside = interp.generate(tiny_bridge, PROMPTS, max_new_tokens=6)
    passed = interp.generate(
        tiny_bridge, PROMPTS, max_new_tokens=6, fwd_hooks=ablate.hooks(tiny_bridge)
    )
    assert inside.tokens == passed.tokens


@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_orthogonalized_weights_equal_hook_ablation_and_export(tiny_model_dirs, family, tmp_path):
    model = interp.load_model(tiny_model_dirs[family])
    direction = _direction(model)
    batch = interp.encode(model, PROMPTS)
    real = batch.attention_mask.bool()
    base = _logits(model, batch)
    edited = orthogonalize(model, direction)
    with apply(model, DirectionalAblation(direction)):
        hooked = _logits(model, batch)
    ortho = _logits(edited, batch)
    assert (ortho - hooked).abs()[real].max() < 1e-4
    assert torch.equal(_logits(model, batch), base)  # the caller's model is untouched
    out = save_hf(edited, tmp_path / "ortho")
    plain = AutoModelForCausalLM.from_pretrained(out).eval()
    with torch.no_grad():
        reloaded = plain(batch.tokens, attention_mask=batch.attention_mask).logits
    assert (reloaded - ortho).abs()[real].max() < 1e-4


def test_gemma2_post_norms_break_the_equivalence(tiny_model_dirs):
    model = interp.load_model(tiny_model_dirs["gemma2"])
    torch.manual_seed(0)
    with torch.no_grad():
        for name, param in model.original_model.named_parameters():
            if "post_attention_layernorm" in name or "post_feedforward_layernorm" in name:
                param.add_(torch.randn_like(param))
    direction = _direction(model)
    batch = interp.encode(model, PROMPTS)
    real = batch.attention_mask.bool()
    with apply(model, DirectionalAblation(direction)):
        hooked = _logits(model, batch)
    edited = orthogonalize(model, direction)
    assert (_logits(edited, batch) - hooked).abs()[real].max() > 1e-3
    emb = edited.original_model.get_input_embeddings().weight
    assert (emb @ direction.unit).abs().max() < 1e-4
    assert edited.original_model.get_output_embeddings().weight is not emb


def test_evaluate_direction_and_explorer(tiny_bridge):
    direction = _direction(tiny_bridge)
    sets = {"harmful": PROMPTS[:2], "harmless": PROMPTS[1:]}
    result = evaluate_direction(tiny_bridge, direction, sets, max_new_tokens=4)
    assert set(result.refusal_rate) == {"base", "ablation", "actadd", "orthogonalized"}
    assert all(0.0 <= v <= 1.0 for rates in result.refusal_rate.values() for v in rates.values())
    assert result.kl_harmless["base"] == pytest.approx(0.0, abs=1e-9)
    if tiny_bridge.original_model.config.model_type != "gemma2":
        assert result.orthogonalized_max_logit_diff_vs_hooks < 1e-4
        assert result.kl_harmless["orthogonalized"] == pytest.approx(
            result.kl_harmless["ablation"], abs=1e-5
        )
    same = explore(tiny_bridge, PROMPTS[0], direction, "none", refusal_tokens=[5], max_new_tokens=4)
    assert same.base_text == same.intervened_text and same.base_score == same.intervened_score
    ablated = explore(tiny_bridge, PROMPTS[0], direction, "ablate", max_new_tokens=4)
    assert ablated.intervened_projection.abs().max() < 1e-4
    assert ablated.base_projection.shape == (int(tiny_bridge.cfg.n_layers),)
    added = explore(tiny_bridge, PROMPTS[0], direction, "add", 2.0, layer=0, max_new_tokens=4)
    assert added.intervened_projection[1] > added.base_projection[1]
    assert len(added.figure().data) == 2 and "base" in added.html()
    with pytest.raises(ValueError, match="unknown mode"):
        explore(tiny_bridge, PROMPTS[0], direction, "flip")


def test_explorer_widget_builds(tiny_model_dirs):
    ipywidgets = pytest.importorskip("ipywidgets")
    model = interp.load_model(tiny_model_dirs["llama"])
    cands = interp.directions.diff_in_means(model, PROMPTS, ["Hello", "Bye", "Tea?"])
    table = score_candidates(model, cands, PROMPTS, ["Hello", "Bye", "Tea?"], [5], min_per_class=1)
    box = explorer_widget(model, table, prompt="Hi")
    assert isinstance(box, ipywidgets.VBox)
