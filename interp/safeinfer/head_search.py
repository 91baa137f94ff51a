"""Which heads carry the refusal task: the function-vector paper's causal indirect-effect search.

For every head (l, h), its mean output over the in-context refusal prompts
(`mean_head_activations`) is patched into corrupted prompts at their last token, and the
probability of the answer's first token is read. The head's indirect effect is the mean rise
of that probability over the unpatched corrupted run. Todd et al. corrupt prompts by
shuffling the demonstrations' labels; here every demonstration has the same answer, so a
shuffle changes nothing, and the corrupted prompts are zero-shot (the query alone).

The search is vectorised: one forward pass per layer (and per group of heads that fits the
batch) runs the corrupted batch once per head, each copy with one head patched, so a
30-layer, 9-head model costs 30 passes of `9 x n_prompts` rows. `layers` restricts it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformer_lens.model_bridge import TransformerBridge

from interp._types import Float
from interp.native import forward_session
from interp.safeinfer.config import Head, check_layer
from interp.safeinfer.function_vector import encode_raw, head_shape
from interp.sites import attn_heads_hook_name

__all__ = ["HeadSearch", "search_heads"]


@dataclass(frozen=True, eq=False)
class HeadSearch:
    """The indirect effect of every searched head on the answer's first token.

    Attributes:
        effects: Mean rise in P(target) when the head's mean output is patched in
            [n_layers, n_heads]; NaN for layers not searched.
        corrupted_prob: Mean P(target) of the unpatched corrupted prompts.
        target_token: The answer's first token id.
        layers: The searched layers.
        n_prompts: Number of corrupted prompts.
    """

    effects: Float[torch.Tensor, "layer n_heads"]
    corrupted_prob: float
    target_token: int
    layers: tuple[int, ...]
    n_prompts: int

    def top(self, k: int = 10) -> tuple[Head, ...]:
        """The `k` heads of largest indirect effect, largest first (ties in (layer, head) order)."""
        flat = torch.nan_to_num(self.effects.flatten(), nan=-torch.inf)
        order = sorted(range(flat.numel()), key=lambda i: (-float(flat[i]), i))
        n_heads = int(self.effects.shape[1])
        searched = [i for i in order if not torch.isinf(flat[i])]
        return tuple((i // n_heads, i % n_heads) for i in searched[:k])

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (the effects tensor is saved beside it)."""
        return {
            "corrupted_prob": self.corrupted_prob,
            "target_token": self.target_token,
            "layers": list(self.layers),
            "n_prompts": self.n_prompts,
        }


def _patch_fn(
    means: torch.Tensor, heads: Sequence[int], n_rows: int, n_heads: int, d_head: int
) -> Callable[..., Any]:
    """Copy j of the batch (rows j*n_rows ...) gets head `heads[j]`'s mean at the last token."""

    def hook(x: torch.Tensor, hook: Any) -> torch.Tensor:  # noqa: ARG001 - TL signature
        z = x.reshape(x.shape[0], x.shape[1], n_heads, d_head).clone()
        for j, head in enumerate(heads):
            z[j * n_rows : (j + 1) * n_rows, -1, head] = means[head].to(x.device, x.dtype)
        return z.reshape(x.shape)

    return hook


def _target_prob(logits: torch.Tensor, target: int, n_rows: int) -> torch.Tensor:
    """Mean P(target) at the last position of each copy of `n_rows` rows."""
    probs = logits[:, -1].float().softmax(-1)[:, target]
    return probs.reshape(-1, n_rows).mean(1).cpu()


@torch.no_grad()
def search_heads(
    model: TransformerBridge,
    means: torch.Tensor,
    corrupted: Sequence[str],
    target_token: int,
    *,
    layers: Sequence[int] | None = None,
    max_rows: int = 256,
) -> HeadSearch:
    """Indirect effect of patching each head's mean output into corrupted prompts.

    Args:
        model: The bridge.
        means: `mean_head_activations` of the clean (in-context) prompts.
        corrupted: Corrupted prompts (`zero_shot_prompts`), plain text.
        target_token: The token whose probability is measured (`answer_token`).
        layers: Layers to search (default: all).
        max_rows: Most rows per forward pass; heads of one layer are grouped to fit.

    Returns:
        The search table.
    """
    n_layers, n_heads, d_head = head_shape(model)
    chosen = (
        list(range(n_layers))
        if layers is None
        else [check_layer(x, n_layers, "searched layer") for x in layers]
    )
    ids, mask = encode_raw(model, corrupted)
    n = ids.shape[0]
    effects = torch.full((n_layers, n_heads), float("nan"))
    with forward_session(model) as forward:
        logits, _ = forward(ids, mask, logits_to_keep=1, use_cache=False)
    base = float(_target_prob(logits, target_token, n)[0])
    per_pass = max(1, max_rows // n)
    for layer in chosen:
        for start in range(0, n_heads, per_pass):
            group = list(range(start, min(start + per_pass, n_heads)))
            hook = _patch_fn(means[layer], group, n, n_heads, d_head)
            rep = len(group)
            with forward_session(model, [(attn_heads_hook_name(layer), hook)]) as forward:
                logits, _ = forward(
                    ids.repeat(rep, 1), mask.repeat(rep, 1), logits_to_keep=1, use_cache=False
                )
            effects[layer, group] = _target_prob(logits, target_token, n) - base
    return HeadSearch(
        effects=effects,
        corrupted_prob=base,
        target_token=int(target_token),
        layers=tuple(chosen),
        n_prompts=n,
    )
