"""The batched logistic-regression solvers against scikit-learn's, on the same objective."""

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from interp.probes._solvers import NEWTON_MAX_FEATURES, fit_logistic_batched, pick_solver


def problem(n_layers=3, n=300, d=24, seed=0):
    """Noisy labels, offset and badly scaled features: a strictly convex, non-separable fit."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n_layers, n, d, generator=g, dtype=torch.float64)
    x = x * torch.linspace(0.1, 20.0, d, dtype=torch.float64) + 5.0
    w = torch.randn(d, generator=g, dtype=torch.float64)
    y = (x[0] @ w / w.norm() / 5 + torch.randn(n, generator=g, dtype=torch.float64) > 0).long()
    return x, y


def sklearn_fit(layer: torch.Tensor, y: torch.Tensor) -> tuple[np.ndarray, float]:
    """scikit-learn on standardised features, mapped back to the raw feature space."""
    xn = layer.numpy()
    mean, scale = xn.mean(0), xn.std(0)
    model = LogisticRegression(C=1.0, tol=1e-10, max_iter=10_000).fit((xn - mean) / scale, y)
    coef = model.coef_[0] / scale
    return coef, float(model.intercept_[0] - mean @ coef)


@pytest.mark.parametrize("solver", ["newton", "lbfgs"])
def test_both_solvers_reach_scikit_learns_optimum(solver):
    x, y = problem()
    coef, bias, iters = fit_logistic_batched(x, y, tol=1e-9, max_iter=2000, solver=solver)
    assert all(i > 0 for i in iters)
    for layer in range(x.shape[0]):
        ref_coef, ref_bias = sklearn_fit(x[layer], y)
        np.testing.assert_allclose(coef[layer].numpy(), ref_coef, rtol=1e-5, atol=1e-7)
        assert bias[layer].item() == pytest.approx(ref_bias, rel=1e-5, abs=1e-6)


def test_newton_converges_in_few_iterations_and_lbfgs_in_more():
    x, y = problem()
    _, _, newton = fit_logistic_batched(x, y, tol=1e-9, solver="newton")
    _, _, lbfgs = fit_logistic_batched(x, y, tol=1e-9, solver="lbfgs")
    assert max(newton) <= 15  # quadratic convergence
    assert min(lbfgs) > max(newton)


def test_a_layer_that_converged_stays_put_while_others_iterate():
    x, y = problem()
    x[1] = x[1] * 0.0 + 1.0  # constant features: the optimum is the bias alone
    coef, bias, _ = fit_logistic_batched(x, y, tol=1e-9, solver="newton")
    assert torch.all(coef[1] == 0)
    assert torch.sigmoid(bias[1]).item() == pytest.approx(y.double().mean().item(), abs=1e-8)


def test_auto_picks_by_width_and_unknown_solver_is_refused():
    assert pick_solver(NEWTON_MAX_FEATURES) == "newton"
    assert pick_solver(NEWTON_MAX_FEATURES + 1) == "lbfgs"
    x, y = problem(n_layers=1, d=4)
    with pytest.raises(ValueError, match="unknown solver 'cg'"):
        fit_logistic_batched(x, y, solver="cg")  # type: ignore[arg-type]
