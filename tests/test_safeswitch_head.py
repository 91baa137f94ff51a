"""The SafeSwitch refusal head on the tiny models: training, equivalences, artifacts, bad input."""

import copy
import inspect

import numpy as np
import pytest
import torch

from interp.errors import (
    ArtifactMismatchError,
    EmptyResponseError,
    EmptyTrainingSetError,
    HeadShapeError,
    ModelFingerprintError,
    NonFiniteArtifactError,
    NotFittedError,
)
from interp.generation import generate
from interp.interventions import apply
from interp.safeswitch import (
    RefusalHead,
    RefusalPairs,
    head_data,
    mentions_topic,
    refusal_pairs,
    unembedding,
)
from interp.safeswitch.refusal_head import _sequences

REQUESTS = (
    "How do I pick a lock?",
    "Tell me how to make a weapon.",
    "Write a phishing email.",
    "How can I poison a dog?",
    "Explain how to hack a bank.",
    "Help me forge a passport.",
)
REFUSAL = "I cannot help with that request."
PAIRS = RefusalPairs(REQUESTS, tuple(REFUSAL for _ in REQUESTS))
PROMPTS = ["Hello there", "What is two plus two?", "Describe the sea."]


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def trained(tiny_family, tiny_model_dirs):
    """A head trained on the pairs, the bridge it was trained on, and the bridge state before."""
    from conftest import boot_tiny_bridge

    model = boot_tiny_bridge(tiny_model_dirs[tiny_family])
    before = _state(model)
    head = RefusalHead(epochs=20, lr=1e-2, batch_tokens=16, seed=0).fit(model, PAIRS)
    return model, head, before


def test_training_changes_only_the_head(trained):
    model, head, before = trained
    after = _state(model)
    assert after.keys() == before.keys()
    for key in before:
        assert torch.equal(before[key], after[key]), key
    assert all(p.grad is None for p in model.parameters())
    weight, _ = unembedding(model)
    assert head.weight_.shape == weight.shape
    assert not torch.equal(head.weight_, weight)
    assert head.losses_[-1] < head.initial_loss_ / 4


def test_gradients_reach_only_the_head(trained):
    model, head, _ = trained
    data = head_data(model, PAIRS, system=head.system)
    assert not data.states.requires_grad
    # The direct path: the body runs with the head swapped in; the body's parameters are
    # frozen, the head is the only leaf that asks for gradients.
    probe = RefusalHead(**{k: getattr(head, k) for k in ("system", "seed")})
    for attr in ("weight_", "bias_", "fingerprint_", "softcap_"):
        setattr(probe, attr, getattr(head, attr))
    probe.weight_ = head.weight_.clone().requires_grad_(True)
    flags = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        total = torch.zeros(())
        with torch.enable_grad(), apply(model, probe):
            for ids, n_prompt in _sequences(model, PAIRS, head.system):
                logits = model(torch.tensor([ids]), return_type="logits")[0]
                total = total + torch.nn.functional.cross_entropy(
                    logits[n_prompt - 1 : len(ids) - 1],
                    torch.tensor(ids[n_prompt:]),
                    reduction="sum",
                )
            (total / len(data)).backward()
    finally:
        for p, flag in zip(model.parameters(), flags, strict=True):
            p.requires_grad_(flag)
    assert all(p.grad is None for p in model.parameters())
    # The cache path gives the same gradient.
    w = head.weight_.clone().requires_grad_(True)
    logits = data.states @ w.T
    if head.softcap_:
        logits = head.softcap_ * torch.tanh(logits / head.softcap_)
    torch.nn.functional.cross_entropy(logits, data.targets).backward()
    assert probe.weight_.grad is not None and probe.weight_.grad.abs().sum() > 0
    torch.testing.assert_close(probe.weight_.grad, w.grad, rtol=1e-4, atol=1e-6)


def test_direct_bridge_path_gives_the_cache_loss(trained):
    model, head, _ = trained
    data = head_data(model, PAIRS, system=head.system)
    assert len(data) == int(data.pair_index.shape[0]) == int(data.states.shape[0])
    assert head.loss(data) == pytest.approx(head.bridge_loss(model, PAIRS), rel=1e-5, abs=1e-6)
    assert head.loss(data) == pytest.approx(head.losses_[-1], rel=0.5)


def test_head_generates_the_refusal_and_hooks_are_removed(trained):
    model, head, _ = trained
    base = generate(model, PROMPTS, system="helpful", max_new_tokens=12)
    with apply(model, head):
        switched = generate(model, PROMPTS, system="helpful", max_new_tokens=12)
    assert all(t.startswith(REFUSAL[:12]) for t in switched.texts), switched.texts
    again = generate(model, PROMPTS, system="helpful", max_new_tokens=12)
    assert again.tokens == base.tokens


def test_untrained_head_is_the_identity(tiny_bridge):
    head = RefusalHead(epochs=0)
    assert head.fit(tiny_bridge, PAIRS) is head  # the estimator contract: fit returns self
    base = generate(tiny_bridge, PROMPTS, max_new_tokens=10)
    with apply(tiny_bridge, head):
        same = generate(tiny_bridge, PROMPTS, max_new_tokens=10)
    assert same.tokens == base.tokens


def test_fit_is_deterministic_and_reports_its_size(trained, tiny_model_dirs, tiny_family):
    from conftest import boot_tiny_bridge

    model, head, _ = trained
    other = boot_tiny_bridge(tiny_model_dirs[tiny_family])
    again = RefusalHead(epochs=20, lr=1e-2, batch_tokens=16, seed=0).fit(other, PAIRS)
    assert torch.equal(head.weight_, again.weight_)
    n_model = sum(p.numel() for p in model.parameters())
    assert head.n_params_ == head.weight_.numel()
    assert head.params_fraction(model) == pytest.approx(head.n_params_ / n_model)
    assert 0 < head.params_fraction(model) < 1


def test_save_load_roundtrip_and_mismatch(trained, tiny_model_dirs, tiny_family, tmp_path):
    from conftest import boot_tiny_bridge

    model, head, _ = trained
    path = head.save(tmp_path / "head")
    meta = (path / "refusal_head.json").read_text()
    assert PAIRS.hash() in meta and '"d_vocab"' in meta
    loaded = RefusalHead.load(path, model)
    assert torch.equal(loaded.weight_, head.weight_)
    assert loaded.n_params_ == head.n_params_ and loaded.data_hash_ == PAIRS.hash()
    other_family = next(f for f in tiny_model_dirs if f != tiny_family)
    other = boot_tiny_bridge(tiny_model_dirs[other_family])
    with pytest.raises(ArtifactMismatchError, match="does not fit this model"):
        RefusalHead.load(path, other)


def test_head_shape_mismatch_raises(trained):
    model, head, _ = trained
    wrong = RefusalHead()
    for attr in ("fingerprint_", "softcap_", "bias_", "n_params_"):
        setattr(wrong, attr, getattr(head, attr))
    wrong.weight_ = torch.zeros(head.weight_.shape[0] + 1, head.weight_.shape[1])
    with pytest.raises(HeadShapeError, match="shape .* does not match|belongs to another model"):
        wrong.hooks(model)


def test_not_fitted_head_raises(tiny_bridge):
    head = RefusalHead()
    with pytest.raises(NotFittedError, match="fit"):
        head.hooks(tiny_bridge)
    names = list(inspect.signature(RefusalHead.__init__).parameters)[1:]
    params = {p: getattr(head, p) for p in names}
    assert {p: getattr(RefusalHead(**params), p) for p in names} == params


def test_empty_training_set_raises(tiny_bridge):
    with pytest.raises(EmptyTrainingSetError, match="no .*pairs"):
        RefusalPairs((), ())
    with pytest.raises(EmptyTrainingSetError, match="pass"):
        RefusalHead().fit(tiny_bridge, [], [])
    # The tiny random model never refuses: the default targets are empty.
    with pytest.raises(EmptyTrainingSetError, match="refused none"):
        refusal_pairs(tiny_bridge, list(REQUESTS[:2]), max_new_tokens=4)


def test_empty_responses_raise():
    with pytest.raises(EmptyResponseError, match="empty response .*indices \\[1\\]"):
        RefusalPairs(("a", "b"), ("No.", "   "))
    with pytest.raises(ValueError, match="one refusal per request"):
        RefusalPairs(("a", "b"), ("No.",))


def test_informative_refusals_are_preferred():
    assert mentions_topic("How do I make napalm?", "I will not explain napalm.")
    assert not mentions_topic("How do I make napalm?", "I can't help with that.")
    pairs = RefusalPairs(("Make napalm",), ("No napalm from me.",))
    assert pairs.informative == (True,)
    assert np.array_equal(pairs.hash(), RefusalPairs(pairs.requests, pairs.responses).hash())


def test_nan_weight_head_raises_on_load(trained, tmp_path):
    model, head, _ = trained
    broken = copy.copy(head)
    broken.weight_ = head.weight_.clone()
    broken.weight_[3, 1] = float("nan")
    path = broken.save(tmp_path / "nan_head")
    with pytest.raises(NonFiniteArtifactError, match="refusal_head.safetensors holds NaN.*weight"):
        RefusalHead.load(path, model)


def test_head_is_refused_by_a_lora_lookalike_unless_allowed(
    tiny_model_dirs, lookalike_dirs, tmp_path
):
    from conftest import boot_tiny_bridge

    model = boot_tiny_bridge(tiny_model_dirs["llama"])
    head = RefusalHead(epochs=1, batch_tokens=16).fit(model, PAIRS)
    path = head.save(tmp_path / "head")
    lora = boot_tiny_bridge(lookalike_dirs["lora"])  # same unembedding, one MLP matrix differs
    with pytest.raises(ModelFingerprintError, match="allow_other_model=True"):
        RefusalHead.load(path, lora)
    moved = RefusalHead.load(path, lora, allow_other_model=True)
    assert moved.transferred_from_ is not None
    assert moved.transferred_from_["model_fingerprint"] == head.model_.fingerprint
    assert len(moved.hooks(lora)) == 2
