r"""SafeInfer's function vector: mean attention-head outputs of refusal demonstrations.

In-context prompts hold `n_shots` demonstrations `Q: <harmful question>\nA: <refusal>\n\n`
and one query `Q: <question>\nA:`, in plain text (no chat template; the tokenizer adds its
BOS as usual). Every head's output before the output projection (the input of `o_proj`,
whose hook name `interp.sites.attn_heads_hook_name` spells) is read at the query's last token
(the `:` of the last `A:`; prompts are left padded, so that is the last column) and averaged
over the prompts. The function vector of a head set H is
`FV = sum_{(l, h) in H} W_O^l[:, h] @ mean[l, h]`: each head's mean placed in its slice of
zeros and sent through block l's `o_proj`. The `o_proj` bias, where a family has one, is
excluded: it does not depend on the head and would be counted once per head.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from transformer_lens.model_bridge import TransformerBridge

from interp._types import Float
from interp.native import forward_session
from interp.safeinfer.config import Head, check_heads
from interp.sites import attn_heads_hook_name

__all__ = [
    "REFUSAL_ANSWER",
    "answer_token",
    "encode_raw",
    "function_vector",
    "head_shape",
    "icl_prompts",
    "mean_head_activations",
    "zero_shot_prompts",
]

#: The answer of every demonstration in the paper's data set.
REFUSAL_ANSWER = "I do not answer this question because it is harmful"


def _demo(question: str, answer: str) -> str:
    return f"Q: {question.strip()}\nA: {answer}\n\n"


def _query(question: str) -> str:
    return f"Q: {question.strip()}\nA:"


def icl_prompts(
    demonstrations: Sequence[str],
    queries: Sequence[str] | None = None,
    *,
    n_prompts: int = 100,
    n_shots: int = 10,
    seed: int = 0,
    answer: str = REFUSAL_ANSWER,
) -> list[str]:
    """In-context refusal prompts: `n_shots` demonstrations and one query each.

    Demonstrations are drawn with replacement from `demonstrations`, the query from
    `queries` (default: the demonstrations, never one of the same prompt's shots when the
    pool allows), all with a seeded generator.

    >>> p = icl_prompts(["a?", "b?", "c?"], n_prompts=2, n_shots=1, answer="No.")
    >>> [x.count("Q:") for x in p], p[0].endswith("A:")
    ([2, 2], True)
    """
    pool = [str(q) for q in demonstrations]
    asked = pool if queries is None else [str(q) for q in queries]
    if not pool or not asked:
        raise ValueError("icl_prompts needs at least one demonstration and one query")
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n_prompts):
        q = asked[int(torch.randint(len(asked), (1,), generator=gen))]
        others = [d for d in pool if d != q] or pool
        shots = torch.randint(len(others), (n_shots,), generator=gen).tolist()
        out.append("".join(_demo(others[i], answer) for i in shots) + _query(q))
    return out


def zero_shot_prompts(queries: Sequence[str]) -> list[str]:
    r"""The corrupted prompts of the head search: the query alone, `Q: <question>\nA:`."""
    return [_query(str(q)) for q in queries]


def encode_raw(model: TransformerBridge, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain-text prompts tokenised as the tokenizer does by default, left padded: (ids, mask)."""
    tok = model.tokenizer
    rows = [list(tok(t)["input_ids"]) for t in texts]
    width = max(len(r) for r in rows)
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    ids = torch.full((len(rows), width), int(pad), dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, width - len(row) :] = torch.tensor(row)
        mask[i, width - len(row) :] = 1
    device = model.cfg.device
    return ids.to(device), mask.to(device)


def answer_token(model: TransformerBridge, answer: str = REFUSAL_ANSWER) -> int:
    """The first token of `answer` as it follows `A:` in a prompt (the head search's target)."""
    tok = model.tokenizer
    prompt = list(tok(_query("x"))["input_ids"])
    full = list(tok(_query("x") + " " + answer)["input_ids"])
    if full[: len(prompt)] == prompt and len(full) > len(prompt):
        return int(full[len(prompt)])
    return int(tok(" " + answer, add_special_tokens=False)["input_ids"][0])


def head_shape(model: TransformerBridge) -> tuple[int, int, int]:
    """(n_layers, n_heads, d_head) of the model's attention (query heads under GQA)."""
    cfg = model.cfg
    return int(cfg.n_layers), int(cfg.n_heads), int(cfg.d_head)


def _grab_last(
    store: dict[int, torch.Tensor], layer: int, n_heads: int, d_head: int
) -> Callable[..., Any]:
    def hook(x: torch.Tensor, hook: Any) -> None:  # noqa: ARG001 - TransformerLens signature
        z = x.reshape(x.shape[0], x.shape[1], n_heads, d_head)
        store[layer] = z[:, -1].detach().to("cpu", torch.float32)

    return hook


@torch.no_grad()
def mean_head_activations(
    model: TransformerBridge, texts: Sequence[str], *, batch_size: int = 16
) -> Float[torch.Tensor, "layer n_heads d_head"]:
    """Every head's output before `o_proj` at each prompt's last token, averaged over prompts.

    Args:
        model: The bridge.
        texts: Plain-text prompts (`icl_prompts`), tokenised without a chat template.
        batch_size: Prompts per forward pass.

    Returns:
        Float32 means [n_layers, n_heads, d_head].
    """
    n_layers, n_heads, d_head = head_shape(model)
    store: dict[int, torch.Tensor] = {}
    hooks = [
        (attn_heads_hook_name(layer), _grab_last(store, layer, n_heads, d_head))
        for layer in range(n_layers)
    ]
    total = torch.zeros(n_layers, n_heads, d_head)
    with forward_session(model, hooks) as forward:
        for start in range(0, len(texts), batch_size):
            ids, mask = encode_raw(model, texts[start : start + batch_size])
            forward(ids, mask, logits_to_keep=1, use_cache=False)
            for layer in range(n_layers):
                total[layer] += store[layer].sum(0)
    return total / max(len(texts), 1)


@torch.no_grad()
def function_vector(
    model: TransformerBridge,
    means: Float[torch.Tensor, "layer n_heads d_head"],
    heads: Sequence[Head],
) -> Float[torch.Tensor, " d_model"]:
    """FV = sum over heads of `o_proj` of the head's mean in its slice of zeros (bias excluded).

    Args:
        model: The bridge whose `o_proj` weights map head outputs to the residual stream.
        means: `mean_head_activations` [n_layers, n_heads, d_head].
        heads: The (layer, head) pairs; each counts once.

    Returns:
        The float32 function vector [d_model].
    """
    n_layers, n_heads, d_head = head_shape(model)
    fv = torch.zeros(int(model.cfg.d_model))
    for layer, head in check_heads(heads, n_layers, n_heads):
        weight = model.blocks[layer].attn.o.weight  # [d_model, n_heads * d_head]
        block = weight[:, head * d_head : (head + 1) * d_head].detach().to("cpu", torch.float32)
        fv += block @ means[layer, head].to(torch.float32)
    return fv
