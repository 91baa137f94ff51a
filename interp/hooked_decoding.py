"""Batched greedy decoding where each batch gets its own hooks, reading prompt states too.

`interp.generate` installs the same hooks for every batch. Some interventions depend on the
batch itself: a soft prompt overwrites the token positions of a system prompt, which move with
left padding. `decode_with_states` renders and batches prompts like `interp.generate`, asks
`hooks_for(batch)` for that batch's hooks, runs the shared KV-cached loop (`greedy_decode`) and
also returns the post-final-norm state at each prompt's last token, read from the prompt pass.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from transformer_lens.model_bridge import TransformerBridge

from interp.chat import ChatBatch, encode
from interp.generation import eos_token_ids, greedy_decode
from interp.sites import Site

__all__ = ["HooksFor", "decode_with_states"]

Hook = tuple[str, Callable[..., Any]]
HooksFor = Callable[[ChatBatch], list[Hook]]
_FINAL = Site("ln_final")


def _prompt_state_hook(store: dict[str, torch.Tensor], width: int) -> Callable[..., Any]:
    """A hook keeping the last position of the prompt pass (width `width`) in `store["f"]`."""

    def grab(x: torch.Tensor, hook: Any) -> None:  # noqa: ARG001 - TransformerLens signature
        if x.shape[1] == width:
            store["f"] = x[:, -1].detach().to("cpu", torch.float32)

    return grab


def decode_with_states(
    model: TransformerBridge,
    texts: Sequence[str],
    system: str | None,
    *,
    hooks_for: HooksFor | None = None,
    max_new_tokens: int = 32,
    batch_size: int = 32,
    logits_fn: Callable[[torch.Tensor, int], torch.Tensor] | None = None,
) -> tuple[list[str], torch.Tensor]:
    """Greedy responses and f(x, s) of many prompts through the shared decoding loop.

    Like `interp.generate`, but each batch may get its own hooks (`hooks_for(batch)`, e.g. a
    soft prompt's), and the final state at the last prompt token is read from the prompt pass.

    Returns:
        (responses in input order, float32 states [n, d_model] in input order).
    """
    lengths = [len(encode(model, [t], system).tokens[0]) for t in texts]
    order = sorted(range(len(texts)), key=lambda i: (lengths[i], i))
    eos = eos_token_ids(model)
    answers: dict[int, str] = {}
    states = torch.zeros(len(texts), int(model.cfg.d_model))
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        batch = encode(model, [texts[i] for i in chunk], system).to(model.cfg.device)
        got: dict[str, torch.Tensor] = {}
        grab = _prompt_state_hook(got, batch.tokens.shape[1])
        hooks = [*(hooks_for(batch) if hooks_for else []), (_FINAL.hook_name, grab)]
        new = greedy_decode(
            model, batch, max_new_tokens=max_new_tokens, fwd_hooks=hooks, logits_fn=logits_fn
        )
        for j, (row, idx) in enumerate(zip(new.tolist(), chunk, strict=True)):
            cut = next((k for k, tok in enumerate(row) if tok in eos), len(row))
            answers[idx] = model.tokenizer.decode(row[:cut], skip_special_tokens=True)
            states[idx] = got["f"][j]
    return [answers[i] for i in range(len(texts))], states
