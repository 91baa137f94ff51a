"""One batched, KV-cached greedy decoding loop that every method in the toolkit reuses.

Prompts are rendered with the chat template, left padded with an attention mask, and fed
through the bridge once; each later step feeds only the new token with the HF KV cache.
Hooks given to `generate` (or installed around it with `interp.apply`) fire on every step,
so interventions apply to generated tokens too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from tqdm.auto import tqdm
from transformer_lens.model_bridge import TransformerBridge

from interp.chat import ChatBatch, encode
from interp.errors import EmptyPromptSetError
from interp.native import forward_session

__all__ = ["Completions", "eos_token_ids", "generate", "greedy_decode"]

Hook = tuple[str | Callable[[str], bool], Callable[..., Any]]
LogitsFn = Callable[[torch.Tensor, int], torch.Tensor]


@dataclass(frozen=True)
class Completions:
    """Greedy completions of a batch of prompts.

    Attributes:
        prompts: The user messages, in input order.
        texts: The decoded responses (special tokens removed), in input order.
        tokens: The generated token ids per prompt, cut after the first EOS.
        system: The system prompt (or safety-prompt name) that was used.
    """

    prompts: tuple[str, ...]
    texts: tuple[str, ...]
    tokens: tuple[tuple[int, ...], ...]
    system: str | None = None

    def __len__(self) -> int:
        return len(self.texts)


def eos_token_ids(model: TransformerBridge) -> set[int]:
    """Every token id that ends a turn: the tokenizer's EOS and the generation config's."""
    ids: set[int] = set()
    tok_eos = model.tokenizer.eos_token_id
    if tok_eos is not None:
        ids.add(int(tok_eos))
    gen_cfg = getattr(model.original_model, "generation_config", None)
    cfg_eos = getattr(gen_cfg, "eos_token_id", None)
    if isinstance(cfg_eos, int):
        ids.add(cfg_eos)
    elif cfg_eos is not None:
        ids.update(int(i) for i in cfg_eos)
    return ids


@torch.no_grad()
def greedy_decode(
    model: TransformerBridge,
    batch: ChatBatch,
    *,
    max_new_tokens: int,
    fwd_hooks: Sequence[Hook] = (),
    logits_fn: LogitsFn | None = None,
    stop_at_eos: bool = True,
) -> torch.Tensor:
    """Greedily extend one left-padded batch; returns the new tokens [batch, <= max_new_tokens].

    Args:
        model: The bridge.
        batch: A left-padded `ChatBatch`.
        max_new_tokens: How many tokens to generate at most.
        fwd_hooks: `(hook_name, fn)` pairs active on every decoding step.
        logits_fn: Optional `fn(last_logits, step) -> logits` applied before the argmax
            (the place for guided decoding); it sees float logits [batch, d_vocab].
        stop_at_eos: Stop once every row has produced an EOS token (later tokens of a finished
            row are set to the pad id).
    """
    batch = batch.to(model.cfg.device)
    ids, mask = batch.tokens, batch.attention_mask
    eos = torch.tensor(sorted(eos_token_ids(model)), device=ids.device)
    pad = model.tokenizer.pad_token_id
    pad = int(pad if pad is not None else eos[0])
    done = torch.zeros(ids.shape[0], dtype=torch.bool, device=ids.device)
    out: list[torch.Tensor] = []
    with forward_session(model, fwd_hooks) as forward:
        logits, kv = forward(ids, mask, logits_to_keep=1)
        for step in range(max_new_tokens):
            last = logits[:, -1].float()
            if logits_fn is not None:
                last = logits_fn(last, step)
            nxt = last.argmax(-1)
            nxt = torch.where(done, torch.full_like(nxt, pad), nxt)
            out.append(nxt)
            done = done | torch.isin(nxt, eos)
            if (stop_at_eos and bool(done.all())) or step == max_new_tokens - 1:
                break
            mask = torch.cat([mask, torch.ones_like(nxt[:, None])], dim=1)
            logits, kv = forward(nxt[:, None], mask, kv, logits_to_keep=1)
    if not out:
        return torch.zeros((ids.shape[0], 0), dtype=torch.long)
    return torch.stack(out, dim=1).cpu()


def _cut(row: list[int], eos: set[int]) -> list[int]:
    for i, tok in enumerate(row):
        if tok in eos:
            return row[:i]
    return row


def generate(
    model: TransformerBridge,
    prompts: Sequence[str] | Any,
    *,
    system: str | None = None,
    max_new_tokens: int = 48,
    batch_size: int = 32,
    fwd_hooks: Sequence[Hook] = (),
    logits_fn: LogitsFn | None = None,
    progress: bool = False,
) -> Completions:
    """Greedy chat completions for many prompts, batched and KV cached.

    Prompts are grouped by rendered length to limit padding; the result is in input order
    and does not depend on the grouping (left padding is masked exactly).

    Args:
        model: The bridge.
        prompts: User messages (strings or a `PromptSet`).
        system: System prompt or safety-prompt name used for every prompt.
        max_new_tokens: Longest response.
        batch_size: Prompts per forward pass.
        fwd_hooks: Hooks active on every decoding step.
        logits_fn: Optional logits transform applied at every step before the argmax.
        progress: Show a progress bar.

    Returns:
        The completions, in input order.

    Raises:
        EmptyPromptSetError: `prompts` is empty.
    """
    texts = [str(t) for t in getattr(prompts, "texts", prompts)]
    if not texts:
        raise EmptyPromptSetError("no prompts to generate from; pass at least one prompt")
    lengths = [len(encode(model, [t], system).tokens[0]) for t in texts]
    order = sorted(range(len(texts)), key=lambda i: (lengths[i], i))
    eos = eos_token_ids(model)
    results: dict[int, list[int]] = {}
    starts = range(0, len(order), batch_size)
    for start in tqdm(starts, desc="generate", disable=not progress):
        chunk = order[start : start + batch_size]
        batch = encode(model, [texts[i] for i in chunk], system)
        new = greedy_decode(
            model, batch, max_new_tokens=max_new_tokens, fwd_hooks=fwd_hooks, logits_fn=logits_fn
        )
        for row, idx in zip(new.tolist(), chunk, strict=True):
            results[idx] = _cut(row, eos)
    tokens = tuple(tuple(results[i]) for i in range(len(texts)))
    decoded = tuple(model.tokenizer.decode(list(t), skip_special_tokens=True) for t in tokens)
    return Completions(prompts=tuple(texts), texts=decoded, tokens=tokens, system=system)
