"""Batched L2-regularised logistic regression in torch: one independent problem per layer.

Minimises, for every layer separately, scikit-learn's objective on standardised features::

    mean_i log(1 + exp(-s_i (w . z_i + b))) + ||w||^2 / (2 C n),   z = (x - mean) / std

with L-BFGS (a per-layer history and a per-layer backtracking line search), so the answer is
scikit-learn's `LogisticRegression(C)` up to the tolerance. The standardisation is folded into
the weights instead of materialising standardised copies: every pass reads the raw
activations once, which is what bounds the speed on a CPU.
"""

from __future__ import annotations

import torch

__all__ = ["fit_logistic_batched"]

_HISTORY = 10


def _matvec(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Batched product of activations [L, n, d] and weights [L, d]: logits [L, n].

    A per-layer `mv` is the fastest CPU kernel for this shape; elsewhere one `bmm`.
    """
    if x.device.type != "cpu":
        return torch.bmm(x, w[:, :, None])[..., 0]
    return torch.stack([torch.mv(x[i], w[i]) for i in range(x.shape[0])])


def _rmatvec(x: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """Batched product of row weights [L, n] and activations [L, n, d]: [L, d]."""
    return torch.bmm(r[:, None, :], x)[:, 0]


def _loss(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean logistic loss per layer of logits z [L, n] (float64 accumulation)."""
    return torch.nn.functional.softplus(torch.where(y[None] > 0, -z, z)).double().mean(1)


def _two_loop(
    grad: torch.Tensor, s_hist: list[torch.Tensor], y_hist: list[torch.Tensor]
) -> torch.Tensor:
    """L-BFGS direction -H grad for each layer (histories are [L, p] tensors)."""
    q = grad.clone()
    alphas = []
    rhos = [1.0 / (s * yv).sum(1).clamp_min(1e-30) for s, yv in zip(s_hist, y_hist, strict=True)]
    for s, yv, rho in zip(reversed(s_hist), reversed(y_hist), reversed(rhos), strict=True):
        a = rho * (s * q).sum(1)
        q -= a[:, None] * yv
        alphas.append(a)
    if s_hist:
        s, yv = s_hist[-1], y_hist[-1]
        q *= ((s * yv).sum(1) / (yv * yv).sum(1).clamp_min(1e-30))[:, None]
    for s, yv, rho, a in zip(s_hist, y_hist, rhos, reversed(alphas), strict=True):
        beta = rho * (yv * q).sum(1)
        q += (a - beta)[:, None] * s
    return -q


def fit_logistic_batched(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    C: float = 1.0,  # noqa: N803 - scikit-learn's name
    max_iter: int = 200,
    tol: float = 1e-4,
) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """Fit one logistic regression per layer on standardised features.

    Args:
        x: Activations [n_layers, n, d_model] (float32 is used as is, float64 too).
        y: 0/1 labels [n], shared by every layer.
        C: Inverse regularisation strength (scikit-learn convention).
        max_iter: L-BFGS iterations at most.
        tol: Stop a layer once the largest entry of its gradient is below `tol`.

    Returns:
        (coef [n_layers, d_model], intercept [n_layers], iterations per layer), float64, in
        the raw (unstandardised) feature space: logits are `x @ coef + intercept`.
    """
    dtype = x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32
    x = x.to(dtype)
    n_layers, n, d = x.shape
    yf = y.to(dtype)
    dev = x.device
    ones = torch.full((n_layers, n), 1.0 / n, dtype=dtype, device=dev)
    mean = _rmatvec(x, ones)
    # Two-pass variance (exact in float32 even for large-mean outlier dimensions).
    var = _rmatvec((x - mean[:, None]).square_(), ones)
    inv_std = torch.where(var > 0, var.clamp_min(1e-30).rsqrt(), torch.ones_like(var))
    lam = 1.0 / (C * n)

    # Parameters live in the standardised space, theta = [v (d), b]; the logits of the raw
    # activations are x @ (v * inv_std) + b - mean . (v * inv_std). Logits are linear in
    # theta, so the line search reuses z + t * dz and each iteration costs two passes.
    def logits(th: torch.Tensor) -> torch.Tensor:
        w = th[:, :d] * inv_std
        return _matvec(x, w) + (th[:, d] - (mean * w).sum(1))[:, None]

    def objective(th: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return _loss(z, yf) + 0.5 * lam * (th[:, :d].double() ** 2).sum(1)

    def gradient(th: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        r = (torch.sigmoid(z) - yf[None]) / n
        rsum = r.sum(1)
        gv = (_rmatvec(x, r) - mean * rsum[:, None]) * inv_std + lam * th[:, :d]
        return torch.cat([gv, rsum[:, None]], dim=1)

    theta = torch.zeros(n_layers, d + 1, dtype=dtype, device=dev)
    z = torch.zeros(n_layers, n, dtype=dtype, device=dev)
    f, grad = objective(theta, z), gradient(theta, z)
    active = torch.ones(n_layers, dtype=torch.bool, device=dev)
    iters = torch.zeros(n_layers, dtype=torch.long, device=dev)
    s_hist: list[torch.Tensor] = []
    y_hist: list[torch.Tensor] = []
    for _ in range(max_iter):
        active &= grad.abs().amax(1) > tol
        if not bool(active.any()):
            break
        direction = _two_loop(grad, s_hist, y_hist)
        slope = (grad * direction).sum(1)
        # A non-descent direction (float round-off) restarts from steepest descent.
        bad = slope >= 0
        direction = torch.where(bad[:, None], -grad, direction)
        slope = torch.where(bad, -(grad * grad).sum(1), slope)
        step = torch.ones(n_layers, dtype=dtype, device=dev)
        if not s_hist:
            step = torch.clamp(1.0 / grad.abs().sum(1), max=1.0).to(dtype)
        step = torch.where(active, step, torch.zeros_like(step))
        dz = logits(direction)
        for _ in range(30):
            z_new = z + step[:, None] * dz
            f_new = objective(theta + step[:, None] * direction, z_new)
            ok = (f_new <= f + 1e-4 * step.double() * slope.double()) | ~active
            if bool(ok.all()):
                break
            step = torch.where(ok, step, step * 0.5)
        new_theta = theta + step[:, None] * direction
        new_grad = gradient(new_theta, z_new)
        s_k, y_k = new_theta - theta, new_grad - grad
        theta = torch.where(active[:, None], new_theta, theta)
        grad = torch.where(active[:, None], new_grad, grad)
        z = torch.where(active[:, None], z_new, z)
        f = torch.where(active, f_new, f)
        iters += active.long()
        # Frozen layers contribute harmless pairs; their direction is never used.
        s_hist.append(torch.where(active[:, None], s_k, torch.zeros_like(s_k)))
        y_hist.append(torch.where(active[:, None], y_k, torch.ones_like(y_k)))
        if len(s_hist) > _HISTORY:
            s_hist.pop(0)
            y_hist.pop(0)
    w = (theta[:, :d] * inv_std).double()
    bias = theta[:, d].double() - (mean.double() * w).sum(1)
    return w.cpu(), bias.cpu(), iters.tolist()
