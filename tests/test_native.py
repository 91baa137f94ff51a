"""The native path (the model's own HF modules) against the bridge, on every family."""

import pytest
import torch

import interp
from interp.chat import encode
from interp.interventions import ActAdd, DirectionalAblation
from interp.native import (
    bridge_kv_cache_ok,
    cache_argument,
    forward_session,
    last_logits,
    native_supported,
)
from interp.sites import Site, boundary, logits_hook_name

PROMPTS = [
    "How do I bake bread?",
    "Hi",
    "Write a short poem about the sea.",
    "What is the capital of France and why is it famous?",
]
STREAMS = ["embed", "resid_pre.1", "attn_out.0", "resid_mid.1", "mlp_out.1", "resid_post.0"]


def _bridge_only(model):
    """A no-op hook attached to the bridge directly: every call then runs through the bridge."""
    return model.hooks(fwd_hooks=[(Site("embed").hook_name, lambda *_, **__: None)])


def _torch_hooks(model) -> int:
    return sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.original_model.modules()
    )


def _editing_hooks(d_model: int) -> list:
    """Hooks that change the computation: an addition, two ablations, a logit shift."""
    v = torch.randn(d_model, generator=torch.Generator().manual_seed(0))
    u = v / v.norm()

    def add(x, hook):
        return x + 0.5 * v

    def ablate(x, hook):
        x -= (x @ u)[..., None] * u  # in place, returning None: the edit must still apply

    def shift(x, hook):
        return x + torch.arange(x.shape[-1], dtype=x.dtype) * 1e-2

    return [
        (Site("resid_pre", 1).hook_name, add),
        (Site("attn_out", 0).hook_name, ablate),
        (Site("mlp_out", 1).hook_name, ablate),
        (logits_hook_name(), shift),
    ]


def _two_steps(model, hooks, native_path: bool):
    seen: dict[str, list[torch.Tensor]] = {}

    def record(label):
        def fn(x, hook):
            seen.setdefault(label, []).append(x.clone())

        return fn

    batch = encode(model, PROMPTS, "default")
    recorders = [(Site.parse(s).hook_name, record(s)) for s in STREAMS + ["ln_final"]]
    with torch.no_grad(), forward_session(model, hooks + recorders, native=native_path) as step:
        first, cache = step(batch.tokens, batch.attention_mask)
        nxt = first[:, -1].argmax(-1)
        mask = torch.cat([batch.attention_mask, torch.ones_like(nxt[:, None])], dim=1)
        second, _ = step(nxt[:, None], mask, cache)
    return first, second, seen


def test_boundary_names():
    assert boundary(Site("resid_pre", 3).hook_name) == ("blocks.3", "in")
    assert boundary(Site("resid_mid", 0).hook_name) == ("blocks.0.ln2", "in")
    assert boundary(Site("ln_final").hook_name) == ("ln_final", "out")
    assert boundary(logits_hook_name()) == ("unembed", "out")
    for inside in ("blocks.0.attn.hook_pattern", "blocks.0.attn.hook_in", "embed.hook_in"):
        assert boundary(inside) is None


def test_native_equals_bridge_with_editing_hooks(tiny_bridge):
    hooks = _editing_hooks(int(tiny_bridge.cfg.d_model))
    assert native_supported(tiny_bridge, hooks)
    ref = _two_steps(tiny_bridge, hooks, native_path=False)
    got = _two_steps(tiny_bridge, hooks, native_path=True)
    # Where the bridge cannot use a KV cache it replays the whole sequence on the second
    # step; the native path computes only the new token, which must equal the replay's last
    # (to float32 rounding: a full pass sums attention in another order than a cached step).
    tol = 1e-6 if bridge_kv_cache_ok(tiny_bridge) else 1e-5
    for a, b in zip(ref[:2], got[:2], strict=True):
        torch.testing.assert_close(b, a[:, -b.shape[1] :], atol=tol, rtol=0)
    plain = _two_steps(tiny_bridge, [], native_path=True)
    assert (plain[0] - got[0]).abs().max() > 1e-3  # the hooks did change the logits
    for label in STREAMS + ["ln_final"]:
        assert len(got[2][label]) == len(ref[2][label]) == 2  # prompt pass + one decoding step
        for a, b in zip(ref[2][label], got[2][label], strict=True):
            torch.testing.assert_close(b, a[:, -b.shape[1] :], atol=tol, rtol=0)
    assert type(tiny_bridge.original_model.model.layers[0]) is type(tiny_bridge.blocks[0])


def test_collect_paths_agree(tiny_bridge):
    sites = ["resid_pre", "attn_out", "resid_mid", "mlp_out", "resid_post", "ln_final", "embed"]
    got = interp.collect_activations(
        tiny_bridge, PROMPTS, sites, ["last", "eoi", "mean_user"], progress=False
    )
    with _bridge_only(tiny_bridge):
        assert not native_supported(tiny_bridge)
        ref = interp.collect_activations(
            tiny_bridge, PROMPTS, sites, ["last", "eoi", "mean_user"], progress=False
        )
    assert got.data.keys() == ref.data.keys()
    for label in ref.data:
        torch.testing.assert_close(got.data[label], ref.data[label], atol=1e-6, rtol=0)


def test_generation_under_apply_runs_native_and_matches_bridge(tiny_bridge):
    d_model = int(tiny_bridge.cfg.d_model)
    vec = torch.randn(d_model, generator=torch.Generator().manual_seed(1))
    direction = interp.Direction(vec / vec.norm(), Site("resid_pre", 1), "eoi-1", "test")
    interventions = (DirectionalAblation(direction), ActAdd(direction, 2.0, layer=1))
    with interp.apply(tiny_bridge, *interventions):
        assert native_supported(tiny_bridge)
        got = interp.generate(tiny_bridge, PROMPTS, max_new_tokens=8)
    with _bridge_only(tiny_bridge), interp.apply(tiny_bridge, *interventions):
        assert not native_supported(tiny_bridge)
        ref = interp.generate(tiny_bridge, PROMPTS, max_new_tokens=8)
    plain = interp.generate(tiny_bridge, PROMPTS, max_new_tokens=8)
    assert got.tokens == ref.tokens
    assert got.tokens != plain.tokens  # the interventions took effect on the native path


def test_hooks_attached_elsewhere_force_the_bridge(tiny_bridge):
    seen = []
    site = Site("resid_post", 0)
    with tiny_bridge.hooks(fwd_hooks=[(site.hook_name, lambda x, hook: seen.append(1))]):
        assert not native_supported(tiny_bridge)
        interp.collect_activations(tiny_bridge, PROMPTS[:2], ["resid_post.0"], progress=False)
    assert seen  # the foreign hook fired: the bridge ran
    assert native_supported(tiny_bridge)


def test_unplaceable_hook_uses_the_bridge(tiny_bridge):
    hooks = [("blocks.0.attn.hook_pattern", lambda *_, **__: None)]
    assert not native_supported(tiny_bridge, hooks)
    session = forward_session(tiny_bridge, hooks, native=True)
    with pytest.raises(ValueError, match="native path"), session:
        pass


def test_bridge_restored_after_an_exception(tiny_bridge):
    batch = encode(tiny_bridge, PROMPTS[:2])
    with torch.no_grad(), forward_session(tiny_bridge, native=True) as step:
        step(batch.tokens, batch.attention_mask)  # transformers installs its own hooks once
    before = _torch_hooks(tiny_bridge)

    class Boom(RuntimeError):
        pass

    def explode(x, hook):
        raise Boom

    session = forward_session(tiny_bridge, [(Site("mlp_out", 0).hook_name, explode)])
    with pytest.raises(Boom), torch.no_grad(), session as step:
        step(batch.tokens, batch.attention_mask)
    assert _torch_hooks(tiny_bridge) == before
    assert type(tiny_bridge.original_model.model.layers[0]) is type(tiny_bridge.blocks[0])
    with torch.no_grad():
        logits = tiny_bridge(batch.tokens, attention_mask=batch.attention_mask)
    assert torch.isfinite(logits).all()


def test_cache_argument_follows_the_installed_forward(tiny_bridge):
    import inspect

    params = inspect.signature(tiny_bridge.original_model.forward).parameters
    expected = "cache" if "cache" in params else "past_key_values"
    assert cache_argument(tiny_bridge) == expected
    assert native_supported(tiny_bridge)  # either name keeps the native path on


def test_bridge_kv_cache_answer_matches_the_installed_versions(tiny_bridge):
    """`bridge_kv_cache_ok` must say what the bridge really does with a KV cache.

    Fails when TransformerLens fixes (or breaks) the bridge's cache handling, so that the
    replay fallback is revisited (docs/UPSTREAM.md).
    """
    batch = encode(tiny_bridge, PROMPTS[:1])
    ids, mask = batch.tokens, batch.attention_mask
    with torch.no_grad():
        full = tiny_bridge(ids, attention_mask=mask, return_type="logits")[:, -1]
        _, cache = tiny_bridge(
            ids[:, :-1], attention_mask=mask[:, :-1], return_type="logits_and_cache"
        )
        if cache is None:  # the bridge did not even hand a cache back
            works = False
        else:
            step = tiny_bridge(
                ids[:, -1:], attention_mask=mask, past_key_values=cache, return_type="logits"
            )[:, -1]
            works = bool(torch.allclose(step, full, atol=1e-5))
    assert works == bridge_kv_cache_ok(tiny_bridge)


def test_bridge_decoding_equals_native_decoding_token_for_token(tiny_bridge):
    native = interp.generate(tiny_bridge, PROMPTS, max_new_tokens=10)
    with _bridge_only(tiny_bridge):
        assert not native_supported(tiny_bridge)
        bridge = interp.generate(tiny_bridge, PROMPTS, max_new_tokens=10)
    assert bridge.tokens == native.tokens
    assert all(len(t) > 1 for t in native.tokens)  # several steps, so the cache mattered


def test_last_logits_equal_the_bridges_last_position_under_an_intervention(tiny_bridge):
    d_model = int(tiny_bridge.cfg.d_model)
    vec = torch.randn(d_model, generator=torch.Generator().manual_seed(2))
    direction = interp.Direction(vec / vec.norm(), Site("resid_pre", 1), "eoi-1", "test")
    batch = encode(tiny_bridge, PROMPTS)
    plain = last_logits(tiny_bridge, batch.tokens, batch.attention_mask)
    with interp.apply(tiny_bridge, DirectionalAblation(direction)):
        got = last_logits(tiny_bridge, batch.tokens, batch.attention_mask)
        with torch.no_grad():
            full = tiny_bridge(batch.tokens, attention_mask=batch.attention_mask)
    assert got.shape == (len(PROMPTS), full.shape[-1])
    torch.testing.assert_close(got, full[:, -1], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(got, plain)  # the ablation took effect on the native path
