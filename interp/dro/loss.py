"""DRO's objective on final states: L = L_r + 0.01 L_h + 0.001 L_U (docs/methods/dro.md#the-dro-objective-and-training).

For a batch of queries with the soft prompt (new states a) and with the human prompt it
started from (base states b), and y = 1 for harmless, 0 for harmful queries:

* L_r = BCE(sigmoid(w_r . (z_a - z_b)), y), w_r the compliance-logit weights in PCA coordinates;
* L_h = BCE(sigmoid(w_h . (z_a - z_b)), y), w_h the harmlessness-logit weights;
* L_U = mean over the batch of ||P_perp (a - b)||^2 / (d - k), P_perp = I - V^T V the
  projector onto the complement of the k PCA axes.

The probes' biases cancel in the differences. When a == b (step 0) the logit changes are 0,
so L_r = L_h = log 2 and L_U = 0 exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from interp.dro.anchor import AnchorSpace

__all__ = ["DEFAULT_LOSS_WEIGHTS", "DroLoss", "dro_loss"]

#: Weights of (L_r, L_h, L_U) in DRO's objective.
DEFAULT_LOSS_WEIGHTS: tuple[float, float, float] = (1.0, 0.01, 0.001)


@dataclass(frozen=True)
class DroLoss:
    """The objective and its terms for one batch (tensors, differentiable).

    Attributes:
        total: w_r L_r + w_h L_h + w_U L_U.
        refusal: L_r.
        harm: L_h.
        off_subspace: L_U.
        refusal_logit_change: w_r . (z_a - z_b) per query [batch].
        harm_logit_change: w_h . (z_a - z_b) per query [batch].
    """

    total: torch.Tensor
    refusal: torch.Tensor
    harm: torch.Tensor
    off_subspace: torch.Tensor
    refusal_logit_change: torch.Tensor
    harm_logit_change: torch.Tensor

    def floats(self) -> dict[str, float]:
        """The four scalar terms as floats (for logs and loss curves)."""
        return {
            "total": float(self.total.detach()),
            "refusal": float(self.refusal.detach()),
            "harm": float(self.harm.detach()),
            "off_subspace": float(self.off_subspace.detach()),
        }

    def is_finite(self) -> bool:
        """Whether every term is finite."""
        terms = torch.stack([self.total, self.refusal, self.harm, self.off_subspace])
        return bool(torch.isfinite(terms).all())


def dro_loss(
    new: torch.Tensor,
    base: torch.Tensor,
    harmless: torch.Tensor,
    anchor: AnchorSpace,
    weights: tuple[float, float, float] = DEFAULT_LOSS_WEIGHTS,
) -> DroLoss:
    """DRO's loss for new states `new` and base states `base` (both [batch, d_model]).

    Args:
        new: f(x, theta), differentiable w.r.t. the soft prompt.
        base: f(x, s0) of the human prompt (constant).
        harmless: 1.0 for harmless, 0.0 for harmful queries [batch].
        anchor: The fitted anchor space (PCA axes and the two probes).
        weights: (w_r, w_h, w_U).

    Returns:
        The objective and its terms.
    """
    dtype, device = new.dtype, new.device
    axes = anchor.components_.to(device, dtype)
    delta = new - base.to(device, dtype)
    dz = delta @ axes.T
    r = dz @ anchor.refusal_coef_.to(device, dtype)
    h = dz @ anchor.harm_coef_.to(device, dtype)
    y = harmless.to(device, dtype)
    l_r = torch.nn.functional.binary_cross_entropy_with_logits(r, y)
    l_h = torch.nn.functional.binary_cross_entropy_with_logits(h, y)
    off = delta - dz @ axes
    n_off = max(int(axes.shape[1]) - int(axes.shape[0]), 1)
    l_u = (off**2).sum(-1).mean() / n_off
    w_r, w_h, w_u = weights
    total = w_r * l_r + w_h * l_h + w_u * l_u
    return DroLoss(total, l_r, l_h, l_u, r, h)
