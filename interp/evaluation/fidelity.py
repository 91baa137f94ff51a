"""How far an intervention moves the model on prompts it should answer: first-token KL and CE.

Both are measured against the unmodified model, teacher forced, with whatever hooks are active
around the call (`interp.apply`) and the system prompt given:

- `next_token_logprobs`: the log-distribution of the first answer token (the last prompt
  position) of each prompt; `mean_kl` of the unmodified model's against a method's is the
  first-token KL;
- `completion_ce`: the mean per-token cross-entropy of given answers (the unmodified model's
  own greedy answers) under the model as it is now.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformer_lens.model_bridge import TransformerBridge

from interp._types import Float
from interp.activations import batches
from interp.chat import encode
from interp.native import last_logits

__all__ = ["completion_ce", "mean_kl", "next_token_logprobs"]


@torch.no_grad()
def next_token_logprobs(
    model: TransformerBridge, texts: Sequence[str], system: str | None, batch_size: int = 32
) -> Float[torch.Tensor, "prompts d_vocab"]:
    """Float64 log-probabilities [n, d_vocab] of the first answer token of each prompt."""
    parts = []
    for _, batch in batches(model, list(texts), system, batch_size):
        logits = last_logits(model, batch.tokens, batch.attention_mask)
        parts.append(torch.log_softmax(logits.double(), -1).cpu())
    return torch.cat(parts)


def mean_kl(
    reference: Float[torch.Tensor, "prompts d_vocab"], other: Float[torch.Tensor, "prompts d_vocab"]
) -> float:
    """Mean over rows of KL(reference || other), both log-probabilities [n, d_vocab].

    Example:
        >>> logp = torch.log_softmax(torch.randn(3, 5, dtype=torch.float64), -1)
        >>> mean_kl(logp, logp)
        0.0
    """
    return float((reference.exp() * (reference - other)).sum(-1).mean())


@torch.no_grad()
def completion_ce(
    model: TransformerBridge,
    texts: Sequence[str],
    completions: Sequence[Sequence[int]],
    system: str | None,
    batch_size: int = 32,
) -> float:
    """Mean per-token cross-entropy of `completions` given their prompts (teacher forced)."""
    nll, count = 0.0, 0
    pad = int(model.tokenizer.pad_token_id or 0)
    for start in range(0, len(texts), batch_size):
        batch = encode(model, texts[start : start + batch_size], system)
        comp = completions[start : start + batch_size]
        rows = [
            batch.tokens[i][batch.attention_mask[i].bool()].tolist() + list(c)
            for i, c in enumerate(comp)
        ]
        width = max(len(r) for r in rows)
        tokens = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros_like(tokens)
        target = torch.zeros_like(tokens, dtype=torch.bool)
        for i, (row, c) in enumerate(zip(rows, comp, strict=True)):
            tokens[i, width - len(row) :] = torch.tensor(row)
            mask[i, width - len(row) :] = 1
            if c:
                target[i, width - len(c) :] = True
        device = model.cfg.device
        logits = model(tokens.to(device), attention_mask=mask.to(device)).double().cpu()
        logp = torch.log_softmax(logits[:, :-1], -1).gather(-1, tokens[:, 1:, None])[..., 0]
        nll -= float(logp[target[:, 1:]].sum())
        count += int(target[:, 1:].sum())
    return nll / max(count, 1)
