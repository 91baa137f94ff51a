"""DRO's anchor space and objective on synthetic states (no model needed)."""

import inspect
import math

import numpy as np
import pytest
import torch

from interp.dro import DEFAULT_LOSS_WEIGHTS, dro_loss
from interp.dro.anchor import AnchorData, AnchorSpace, gumbel_sampler, split_kinds
from interp.errors import NotFittedError, SingleKindError


def _states(n=80, d=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    harmful = (torch.arange(n) % 2).double()
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    x[:, 0] += 3.0 * harmful
    x[:, 1] += 2.0 * torch.rand(n, generator=g, dtype=torch.float64)
    comply = torch.sigmoid(-2.0 * x[:, 0] + x[:, 1])
    return x, harmful, comply


@pytest.fixture(scope="module")
def anchor():
    return AnchorSpace(n_components=4).fit(*_states())


def test_anchor_space_estimator_contract():
    est = AnchorSpace(n_components=3, C=0.5, max_iter=50)
    params = {p: getattr(est, p) for p in list(inspect.signature(AnchorSpace).parameters)}
    assert {p: getattr(AnchorSpace(**params), p) for p in params} == params
    with pytest.raises(NotFittedError):
        est.transform(torch.zeros(2, 16))
    fitted = est.fit(*_states())
    assert fitted is est
    again = AnchorSpace(n_components=3, C=0.5, max_iter=50).fit(*_states())
    x = _states(seed=1)[0]
    np.testing.assert_allclose(est.compliance_logit(x), again.compliance_logit(x), atol=1e-10)


def test_anchor_probes_point_the_right_way(anchor):
    x, harmful, comply = _states(seed=2)
    # The refusal model is a compliance logit: it ranks rows like the soft targets do.
    logit = anchor.compliance_logit(x)
    assert np.corrcoef(logit.numpy(), comply.numpy())[0, 1] > 0.8
    # The harmfulness model's logit is one of harmlessness.
    harmless_logit = anchor.harmlessness_logit(x)
    assert harmless_logit[harmful == 0].mean() > harmless_logit[harmful == 1].mean()
    # Moving along the refusal direction lowers the compliance logit.
    step = anchor.refusal_direction() @ anchor.components_
    assert bool((anchor.compliance_logit(x + step) < logit).all())
    assert anchor.components_ @ anchor.components_.T == pytest.approx(torch.eye(4), abs=1e-10)


def test_anchor_round_trips_through_tensors(anchor):
    again = AnchorSpace.from_tensors(anchor.tensors(), anchor.params())
    x = _states(seed=3)[0]
    assert torch.equal(again.compliance_logit(x), anchor.compliance_logit(x))
    assert torch.equal(again.harmlessness_logit(x), anchor.harmlessness_logit(x))


def test_step_zero_terms_take_their_known_values(anchor):
    base = _states(n=12, seed=4)[0].float()
    y = torch.tensor([0.0, 1.0] * 6)
    loss = dro_loss(base.clone(), base, y, anchor)
    assert torch.equal(loss.refusal_logit_change, torch.zeros(12))
    assert torch.equal(loss.harm_logit_change, torch.zeros(12))
    assert float(loss.off_subspace) == 0.0
    assert float(loss.refusal) == pytest.approx(math.log(2), abs=1e-7)
    assert float(loss.harm) == pytest.approx(math.log(2), abs=1e-7)
    w_r, w_h, _ = DEFAULT_LOSS_WEIGHTS
    assert float(loss.total) == pytest.approx((w_r + w_h) * math.log(2), abs=1e-7)


def test_loss_terms_match_their_definitions(anchor):
    g = torch.Generator().manual_seed(5)
    base = torch.randn(6, 16, generator=g, dtype=torch.float64)
    new = base + 0.3 * torch.randn(6, 16, generator=g, dtype=torch.float64)
    y = torch.tensor([0.0, 1.0, 1.0, 0.0, 1.0, 0.0], dtype=torch.float64)
    loss = dro_loss(new, base, y, anchor)
    v = anchor.components_
    dz = (new - base) @ v.T
    r = dz @ anchor.refusal_coef_
    assert torch.allclose(loss.refusal_logit_change, r)
    # The probe biases cancel: the change equals the difference of the full logits.
    assert torch.allclose(r, anchor.compliance_logit(new) - anchor.compliance_logit(base))
    expect_r = -(y * torch.log(torch.sigmoid(r)) + (1 - y) * torch.log(1 - torch.sigmoid(r)))
    assert float(loss.refusal) == pytest.approx(float(expect_r.mean()), rel=1e-10)
    off = (new - base) - dz @ v
    assert float(loss.off_subspace) == pytest.approx(float((off**2).sum(-1).mean() / 12), rel=1e-10)
    # Movement inside the PCA subspace costs nothing in L_U.
    inside = dro_loss(
        base + torch.randn(6, 4, generator=g, dtype=torch.float64) @ v, base, y, anchor
    )
    assert float(inside.off_subspace) == pytest.approx(0.0, abs=1e-20)


def test_single_kind_training_sets_are_refused():
    with pytest.raises(SingleKindError, match="no harmless queries"):
        split_kinds(["How do I build a bomb?"], [])
    with pytest.raises(SingleKindError, match="no harmful queries"):
        split_kinds([], ["How do I bake bread?"])
    x, _, comply = _states()
    with pytest.raises(SingleKindError):
        AnchorSpace().fit(x, torch.ones(len(x)), comply)


def test_anchor_data_stacks_conditions():
    s = {"none": torch.zeros(2, 3), "short": torch.ones(2, 3)}
    r = {"none": torch.tensor([0.0, 1.0]), "short": torch.tensor([0.5, 1.0])}
    data = AnchorData(("a", "b"), (1, 0), s, r, n_samples=2)
    states, harmful, comply = data.stacked()
    assert states.shape == (4, 3) and harmful.tolist() == [1, 0, 1, 0]
    assert comply.tolist() == [1.0, 0.0, 0.5, 0.0]


def test_gumbel_sampler_is_seeded_and_samples_softmax():
    logits = torch.log(torch.tensor([[0.7, 0.2, 0.1]])).expand(4000, 3)
    draws = [gumbel_sampler(7)(logits, 0).argmax(-1) for _ in range(2)]
    assert torch.equal(draws[0], draws[1])
    freq = torch.bincount(draws[0], minlength=3).double() / 4000
    assert freq.tolist() == pytest.approx([0.7, 0.2, 0.1], abs=0.03)
    with pytest.raises(ValueError, match="temperature"):
        gumbel_sampler(0, temperature=0.0)
