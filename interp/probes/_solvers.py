"""Batched L2-regularised logistic regression in torch: one independent problem per layer.

Minimises, for every layer separately, scikit-learn's objective on standardised features::

    mean_i log(1 + exp(-s_i (v . z_i + b))) + ||v||^2 / (2 C n),   z = (x - mean) / std

so the answer is scikit-learn's `LogisticRegression(C)` up to the tolerance. Two exact solvers
share the objective, the line search and the stopping rule (largest gradient entry below
`tol`), and `fit_logistic_batched` picks one by shape:

* Newton's method with the (d+1) x (d+1) Hessian per layer (batched Cholesky). It converges
  quadratically, in about ten iterations, and each iteration is a few large matrix products;
  it wins while n d^2 per layer is cheap (`NEWTON_MAX_FEATURES`).
* L-BFGS (per-layer history, per-layer backtracking) for wide activations: each iteration reads
  the activations twice and never forms a d x d matrix.

Parameters, logits and the objective are float64 (the line search compares objective values that
differ by 1e-10 near the optimum); the activations stay in their own dtype, float32 usually,
because reading them is what bounds the speed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch

__all__ = ["NEWTON_MAX_FEATURES", "Solver", "fit_logistic_batched", "pick_solver"]

Solver = Literal["auto", "newton", "lbfgs"]

#: `"auto"` uses Newton up to this many features (d_model). Past it the d^2 Hessian costs more
#: than the extra L-BFGS iterations (measured on one CPU core with n in the thousands).
NEWTON_MAX_FEATURES = 256
_HISTORY = 10
_HALVINGS = 30
_ARMIJO = 1e-4


def pick_solver(n_features: int) -> Literal["newton", "lbfgs"]:
    """The solver `"auto"` uses for activations with `n_features` (d_model) columns.

    >>> pick_solver(128), pick_solver(2048)
    ('newton', 'lbfgs')
    """
    return "newton" if n_features <= NEWTON_MAX_FEATURES else "lbfgs"


def _standardise(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Standardised copies [L, n, d] of the activations; returns (design, mean, inv_std).

    Centring once up front keeps every later product free of the cancellation that large-mean
    outlier dimensions would cause in float32; the variance is two-pass for the same reason.
    Constant columns keep scale 1 (they are zero after centring).
    """
    mean = x.mean(1)
    design = x - mean[:, None]
    var = design.square().mean(1)
    inv_std = torch.where(var > 0, var.clamp_min(1e-30).rsqrt(), torch.ones_like(var))
    design.mul_(inv_std[:, None])
    return design, mean, inv_std


def _matvec(a: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Logits [L, n] of designs [L, n, d] and float64 parameters [L, d+1] (the last the bias).

    The bias stays out of the design: a row stride of d+1 floats slows the products by half. A
    per-layer `mv` is the fastest CPU kernel for this shape (a batched `bmm` is several times
    slower there); elsewhere one `bmm`.
    """
    w = v[:, :-1].to(a.dtype)
    if a.device.type != "cpu":
        z = torch.bmm(a, w[:, :, None])[..., 0]
    else:
        z = torch.stack([torch.mv(a[i], w[i]) for i in range(a.shape[0])])
    return z.double() + v[:, -1:]


def _rmatvec(a: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """Products [L, d+1] of float64 row weights [L, n] with designs [L, n, d] and a ones column."""
    xr = torch.bmm(r.to(a.dtype)[:, None, :], a)[:, 0].double()
    return torch.cat([xr, r.sum(1, keepdim=True)], dim=1)


class _Objective:
    """Scikit-learn's penalised mean log-loss of every layer, its gradient and its Hessian."""

    def __init__(self, design: torch.Tensor, y: torch.Tensor, lam: float) -> None:
        self.a = design
        self.n = design.shape[1]
        self.y = y.to(device=design.device, dtype=torch.float64)
        self.sign = 1.0 - 2.0 * self.y  # softplus(sign * z) is the log-loss of logit z
        self.p = design.shape[2] + 1
        self.reg = torch.full((self.p,), lam, dtype=torch.float64, device=design.device)
        self.reg[-1] = 0.0  # the bias is not penalised

    def value(self, theta: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Objective [L] at parameters theta [L, p] whose logits are z [L, n]."""
        loss = torch.nn.functional.softplus(self.sign * z).mean(1)
        return loss + 0.5 * (self.reg * theta.square()).sum(1)

    def gradient(self, theta: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Gradient [L, p] (one pass over the activations)."""
        r = (torch.sigmoid(z) - self.y) / self.n
        return _rmatvec(self.a, r) + self.reg * theta

    def hessian(self, z: torch.Tensor) -> torch.Tensor:
        """Hessian [L, d+1, d+1] in float64: [A 1]^T diag(w) [A 1] / n + diag(reg)."""
        prob = torch.sigmoid(z)
        w = prob * (1.0 - prob) / self.n
        scaled = self.a * w.sqrt().to(self.a.dtype)[:, :, None]
        if self.a.device.type == "cpu":
            gram = torch.stack([scaled[i].T @ scaled[i] for i in range(scaled.shape[0])])
        else:
            gram = torch.bmm(scaled.transpose(1, 2), scaled)
        edge = _rmatvec(self.a, w)  # [A^T w, sum w]: the bias row and column
        top = torch.cat([gram.double(), edge[:, :-1, None]], dim=2)
        return torch.cat([top, edge[:, None, :]], dim=1) + torch.diag(self.reg)


def _line_search(
    obj: _Objective,
    theta: torch.Tensor,
    z: torch.Tensor,
    f: torch.Tensor,
    direction: torch.Tensor,
    slope: torch.Tensor,
    step: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Backtracking (Armijo) per layer from `step`; returns the new (theta, z, f).

    Logits are linear in the parameters, so one pass gives dz and every trial is cheap. A layer
    whose `step` is 0 (converged) stays where it is.
    """
    dz = _matvec(obj.a, direction)
    for _ in range(_HALVINGS):
        new_theta = theta + step[:, None] * direction
        new_z = z + step[:, None] * dz
        new_f = obj.value(new_theta, new_z)
        ok = new_f <= f + _ARMIJO * step * slope
        if bool(ok.all()):
            break
        step = torch.where(ok, step, 0.5 * step)
    return new_theta, new_z, new_f


def _newton_direction(obj: _Objective, z: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """-H^-1 grad per layer; steepest descent where round-off left H not positive definite."""
    chol, info = torch.linalg.cholesky_ex(obj.hessian(z))
    newton = -torch.cholesky_solve(grad[:, :, None], chol)[..., 0]
    return torch.where((info == 0)[:, None], newton, -grad)


def _start(
    obj: _Objective,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Both solvers start at zero: (theta, logits, objective, gradient, iteration counts)."""
    n_layers, dev = obj.a.shape[0], obj.a.device
    theta = torch.zeros(n_layers, obj.p, dtype=torch.float64, device=dev)
    z = torch.zeros(n_layers, obj.n, dtype=torch.float64, device=dev)
    iters = torch.zeros(n_layers, dtype=torch.long, device=dev)
    return theta, z, obj.value(theta, z), obj.gradient(theta, z), iters


def _newton(obj: _Objective, max_iter: int, tol: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Newton's method with a unit first trial step; returns (theta, iterations per layer)."""
    theta, z, f, grad, iters = _start(obj)
    for _ in range(max_iter):
        active = grad.abs().amax(1) > tol
        if not bool(active.any()):
            break
        direction = _newton_direction(obj, z, grad)
        slope = (grad * direction).sum(1)
        step = active.double()
        theta, z, f = _line_search(obj, theta, z, f, direction, slope, step)
        grad = obj.gradient(theta, z)
        iters += active.long()
    return theta, iters


def _two_loop(
    grad: torch.Tensor, s_hist: list[torch.Tensor], y_hist: list[torch.Tensor]
) -> torch.Tensor:
    """L-BFGS direction -H grad for each layer (histories are [L, p] tensors)."""
    q = grad.clone()
    alphas = []
    rhos = [1.0 / (s * yv).sum(1).clamp_min(1e-300) for s, yv in zip(s_hist, y_hist, strict=True)]
    for s, yv, rho in zip(reversed(s_hist), reversed(y_hist), reversed(rhos), strict=True):
        a = rho * (s * q).sum(1)
        q -= a[:, None] * yv
        alphas.append(a)
    if s_hist:
        s, yv = s_hist[-1], y_hist[-1]
        q *= ((s * yv).sum(1) / (yv * yv).sum(1).clamp_min(1e-300))[:, None]
    for s, yv, rho, a in zip(s_hist, y_hist, rhos, reversed(alphas), strict=True):
        beta = rho * (yv * q).sum(1)
        q += (a - beta)[:, None] * s
    return -q


def _lbfgs(obj: _Objective, max_iter: int, tol: float) -> tuple[torch.Tensor, torch.Tensor]:
    """L-BFGS with a per-layer history; returns (theta, iterations per layer)."""
    theta, z, f, grad, iters = _start(obj)
    s_hist: list[torch.Tensor] = []
    y_hist: list[torch.Tensor] = []
    for _ in range(max_iter):
        active = grad.abs().amax(1) > tol
        if not bool(active.any()):
            break
        direction = _two_loop(grad, s_hist, y_hist)
        slope = (grad * direction).sum(1)
        # A non-descent direction (round-off) restarts from steepest descent.
        bad = slope >= 0
        direction = torch.where(bad[:, None], -grad, direction)
        slope = torch.where(bad, -(grad * grad).sum(1), slope)
        # Without curvature pairs yet, a unit step could overshoot wildly: scale it by |g|_1.
        step = torch.ones_like(f) if s_hist else (1.0 / grad.abs().sum(1)).clamp(max=1.0)
        new_theta, z, f = _line_search(obj, theta, z, f, direction, slope, step * active)
        new_grad = obj.gradient(new_theta, z)
        # Frozen layers contribute harmless pairs (s = 0, y = 1); their direction is never used.
        s_hist.append(torch.where(active[:, None], new_theta - theta, 0.0))
        y_hist.append(torch.where(active[:, None], new_grad - grad, 1.0))
        if len(s_hist) > _HISTORY:
            s_hist.pop(0)
            y_hist.pop(0)
        theta, grad = new_theta, new_grad
        iters += active.long()
    return theta, iters


_SOLVERS: dict[str, Callable[[_Objective, int, float], tuple[torch.Tensor, torch.Tensor]]] = {
    "newton": _newton,
    "lbfgs": _lbfgs,
}


def fit_logistic_batched(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    C: float = 1.0,  # noqa: N803 - scikit-learn's name
    max_iter: int = 200,
    tol: float = 1e-4,
    solver: Solver = "auto",
) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """Fit one logistic regression per layer on standardised features.

    Args:
        x: Activations [n_layers, n, d_model] (float32 is used as is, float64 too), on the
            device to fit on.
        y: 0/1 labels [n], shared by every layer.
        C: Inverse regularisation strength (scikit-learn convention).
        max_iter: Solver iterations at most.
        tol: Stop a layer once the largest entry of its gradient is below `tol`.
        solver: `"newton"`, `"lbfgs"`, or `"auto"`: Newton up to `NEWTON_MAX_FEATURES`
            features, L-BFGS beyond (see `pick_solver`). Both reach the same optimum.

    Returns:
        (coef [n_layers, d_model], intercept [n_layers], iterations per layer), float64 on the
        CPU, in the raw (unstandardised) feature space: logits are `x @ coef + intercept`.
    """
    if solver not in ("auto", "newton", "lbfgs"):
        raise ValueError(f"unknown solver {solver!r}; use 'auto', 'newton' or 'lbfgs'")
    dtype = x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32
    design, mean, inv_std = _standardise(x.to(dtype))
    d = x.shape[2]
    obj = _Objective(design, y, 1.0 / (C * x.shape[1]))
    name = pick_solver(d) if solver == "auto" else solver
    theta, iters = _SOLVERS[name](obj, max_iter, tol)
    w = theta[:, :d] * inv_std.double()
    bias = theta[:, d] - (mean.double() * w).sum(1)
    return w.cpu(), bias.cpu(), iters.tolist()
