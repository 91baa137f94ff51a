"""One batched, KV-cached greedy decoding loop and one batching wrapper that every method reuses.

Prompts are rendered with the chat template, left padded with an attention mask, and fed
through the model once; each later step feeds only the new token with the KV cache.
Hooks given to `generate` (or installed around it with `interp.apply`) fire on every step,
so interventions apply to generated tokens too.

`batched` is the one batching wrapper: it groups prompts by rendered length (so padding is
small), yields left-padded batches with the input indices of their rows, and `generate` /
`decode_with_states` put the rows back in input order, cut at the first EOS, and decode.
`decode_with_states` is `generate` for interventions whose hooks depend on the batch (a soft
prompt overwrites the positions of a system prompt, which move with left padding); it also
returns the post-final-norm state at each prompt's last token, read from the prompt pass.

Inside `reuse_generations()`, `generate` decodes each (model, system prompt, prompt, answer
length) once: a report's sections ask for the same unmodified answers several times (the
baseline's condition `none` is also the refusal direction's `base` and the comparison's `none`
method). Only plain calls are reused: no hooks, no logits transform, no intervention applied,
and the same weights (each parameter's storage and in-place version counter).
`fresh_generations()` suspends that inside its block: what is timed must be decoded.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch
from tqdm.auto import tqdm
from transformer_lens.model_bridge import TransformerBridge

from interp._checks import check_int
from interp._types import Float, Int
from interp.chat import ChatBatch, encode
from interp.data.promptset import Prompts, texts_of
from interp.errors import EmptyPromptSetError
from interp.native import Step, forward_session, intervened, per_token, prefill
from interp.sites import Site

__all__ = [
    "Completions",
    "Decoder",
    "HooksFor",
    "batched",
    "cut_at_eos",
    "decode_with_states",
    "eos_token_ids",
    "generate",
    "greedy_decode",
    "input_order",
    "length_groups",
    "GenerationReuse",
    "fresh_generations",
    "reuse_generations",
]

Hook = tuple[str | Callable[[str], bool], Callable[..., Any]]
#: `logits_fn(last, step)`: rewrites the last position's logits before the argmax.
LogitsFn = Callable[
    [Float[torch.Tensor, "batch d_vocab"], int], Float[torch.Tensor, "batch d_vocab"]
]
HooksFor = Callable[[ChatBatch], Sequence[tuple[str, Callable[..., Any]]]]
#: `session(model, hooks)`: a context manager yielding the step function (`forward_session`).
Session = Callable[[TransformerBridge, Sequence[Hook]], AbstractContextManager[Step]]
_FINAL = Site("ln_final")


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


@runtime_checkable
class Decoder(Protocol):
    """A method that changes decoding itself (not only hooks): it generates `Completions`.

    `interp.safeswitch.SafeSwitch` and `interp.dro.SoftPrompt` are decoders; hook
    interventions (`interp.interventions`) are applied around `generate` instead. Every
    decoder returns the completions in input order, like `generate`.
    """

    def generate(
        self,
        model: TransformerBridge,
        prompts: Prompts,
        *,
        max_new_tokens: int = 48,
        batch_size: int = 32,
    ) -> Completions:
        """Completions of `prompts`, in input order."""
        ...


@dataclass
class GenerationReuse:
    """The answers `generate` keeps inside `reuse_generations`, and how often it reused them.

    Attributes:
        hits: Prompts answered from an earlier call.
        misses: Prompts of plain calls that were decoded (calls with hooks are not counted).
    """

    hits: int = 0
    misses: int = 0
    _answers: weakref.WeakKeyDictionary[TransformerBridge, dict[tuple[Any, ...], list[int]]] = (
        field(default_factory=weakref.WeakKeyDictionary, repr=False)
    )
    _weights: weakref.WeakKeyDictionary[TransformerBridge, tuple[tuple[int, int], ...]] = field(
        default_factory=weakref.WeakKeyDictionary, repr=False
    )

    def answers(self, model: TransformerBridge) -> dict[tuple[Any, ...], list[int]]:
        """The kept answers of `model`, emptied first if its weights changed since."""
        weights = tuple((p.data_ptr(), p._version) for p in model.parameters())
        if self._weights.get(model) != weights:
            self._weights[model] = weights
            self._answers[model] = {}
        return self._answers[model]

    def to_dict(self) -> dict[str, int]:
        """JSON-ready counts."""
        return {"reused_prompts": self.hits, "decoded_prompts": self.misses}


_REUSE: ContextVar[GenerationReuse | None] = ContextVar("interp_generation_reuse", default=None)


@contextmanager
def reuse_generations() -> Iterator[GenerationReuse]:
    """Within the block, `generate` decodes each plain (model, system, prompt, length) once.

    A call with hooks, a logits transform or an applied intervention decodes as usual; so
    does any call after the model's weights changed (the kept answers are dropped). Greedy
    tokens do not depend on which prompts share a batch (left padding is masked), so a
    reused answer is the one a fresh call would give, up to float rounding of the batch.

    Example:
        >>> with reuse_generations() as reuse:
        ...     pass
        >>> reuse.to_dict()
        {'reused_prompts': 0, 'decoded_prompts': 0}
    """
    reuse = GenerationReuse()
    token = _REUSE.set(reuse)
    try:
        yield reuse
    finally:
        _REUSE.reset(token)


@contextmanager
def fresh_generations() -> Iterator[None]:
    """Within the block, every `generate` call decodes, also inside `reuse_generations`.

    For timing: a comparison's cost is a method's wall time over plain greedy decoding, and
    a kept answer costs nothing. The kept answers stay for calls after the block.

    Example:
        >>> with reuse_generations() as reuse, fresh_generations():
        ...     pass
        >>> reuse.to_dict()
        {'reused_prompts': 0, 'decoded_prompts': 0}
    """
    token = _REUSE.set(None)
    try:
        yield
    finally:
        _REUSE.reset(token)


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
    session: Session | None = None,
) -> Int[torch.Tensor, "batch new"]:
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
        session: How the forward steps are run; `interp.native.forward_session` by default. A
            replacement takes `(model, hooks)` and yields a step with the same signature (SafeInfer
            runs the rows of a doubled batch as two passes with their own caches this way).
    """
    batch = batch.to(model.cfg.device)
    ids, mask = batch.tokens, batch.attention_mask
    eos = torch.tensor(sorted(eos_token_ids(model)), device=ids.device)
    pad = model.tokenizer.pad_token_id
    pad = int(pad if pad is not None else eos[0])
    done = torch.zeros(ids.shape[0], dtype=torch.bool, device=ids.device)
    out: list[torch.Tensor] = []
    with (session or forward_session)(model, fwd_hooks) as forward:
        if session is None:
            # The rows' shared template prefix runs once (`interp.native.prefill`).
            logits, kv, mask = prefill(model, forward, ids, mask, fwd_hooks, horizon=max_new_tokens)
        else:
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


def cut_at_eos(row: Sequence[int], eos: set[int]) -> list[int]:
    """The tokens of `row` before its first EOS token."""
    for i, tok in enumerate(row):
        if tok in eos:
            return list(row[:i])
    return list(row)


#: What one more batch costs, in padded prompt tokens (`length_groups`): about the decoding
#: steps of a short answer on a small model on CPU (SmolLM2-135M on 2 cores: a step ~35 ms,
#: a prompt token ~1 ms).
BATCH_OVERHEAD_TOKENS = 512


def length_groups(
    lengths: Sequence[int],
    batch_size: int,
    overhead: int = BATCH_OVERHEAD_TOKENS,
    max_tokens: int | None = None,
) -> list[int]:
    """Sizes of consecutive batches of length-sorted prompts with the least padded work.

    A batch costs its rows times its longest prompt (every row is padded to it, and every
    decoding step attends over it) plus `overhead`; an exact dynamic programme over the
    sorted lengths picks the cuts, at most `batch_size` rows per batch and, with
    `max_tokens`, at most that many padded tokens (rows x longest) per batch, a prompt longer
    than it alone. Prompts of similar length stay in one batch; a few long ones (a jailbreak
    wrapper can be 9x the median) get their own instead of padding the rest.

    >>> length_groups([10, 10, 10, 400], 32)
    [3, 1]
    >>> length_groups([10, 11, 12, 13], 32)
    [4]
    >>> length_groups([10, 10, 10, 10], 32, max_tokens=20)
    [2, 2]
    """
    n = len(lengths)
    best = [0.0] + [float("inf")] * n
    cut = [0] * (n + 1)
    for j in range(1, n + 1):
        for i in range(max(0, j - batch_size), j):
            if max_tokens is not None and j - i > 1 and (j - i) * lengths[j - 1] > max_tokens:
                continue
            cost = best[i] + (j - i) * lengths[j - 1] + overhead
            if cost < best[j]:
                best[j], cut[j] = cost, i
    sizes: list[int] = []
    j = n
    while j > 0:
        sizes.append(j - cut[j])
        j = cut[j]
    return sizes[::-1]


def batched(
    model: TransformerBridge,
    texts: Sequence[str],
    system: str | None,
    batch_size: int,
    *,
    progress: bool = False,
    desc: str = "generate",
    by_length: bool = True,
    max_tokens: int | None = None,
) -> Iterator[tuple[list[int], ChatBatch]]:
    """Rendered, left-padded batches of prompts grouped by length, with their input indices.

    The grouping limits padding (`length_groups`: at most `batch_size` rows, and with
    `max_tokens` at most that many padded tokens, cut where the padding would cost more than
    another batch); tokens do not depend on it (left padding is masked exactly), so callers
    put the rows back by index (`input_order`). `by_length=False` keeps input order (for
    features whose float rounding should not depend on which prompts share a batch).
    """
    # One rendering and tokenisation of every prompt; each batch is a row selection of it
    # (`ChatBatch.select`, equal to encoding the batch on its own).
    if not texts:
        return
    everything = encode(model, texts, system)
    if by_length:
        lengths = everything.attention_mask.sum(dim=1).tolist()
        order = sorted(range(len(texts)), key=lambda i: (lengths[i], i))
        sizes = length_groups([lengths[i] for i in order], batch_size, max_tokens=max_tokens)
    else:
        order = list(range(len(texts)))
        sizes = [min(batch_size, len(order) - s) for s in range(0, len(order), batch_size)]
    starts = [sum(sizes[:k]) for k in range(len(sizes))]
    for start, size in tqdm(list(zip(starts, sizes, strict=True)), desc=desc, disable=not progress):
        chunk = order[start : start + size]
        yield chunk, everything.select(chunk)


def input_order(order: Sequence[int]) -> Int[torch.Tensor, " n"]:
    """The index that puts rows produced in `order` back in input order.

    `order` is the input indices of the `batched` chunks, concatenated;
    ``produced[input_order(order)][i]`` is input row i.

    Example:
        >>> input_order([2, 0, 1]).tolist()
        [1, 2, 0]
    """
    back = torch.empty(len(order), dtype=torch.long)
    back[torch.tensor(list(order), dtype=torch.long)] = torch.arange(len(order))
    return back


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
        ParameterError: `max_new_tokens` or `batch_size` is not an integer >= 1.
    """
    check_int(max_new_tokens, "max_new_tokens")
    check_int(batch_size, "batch_size")
    texts = texts_of(prompts)
    if not texts:
        raise EmptyPromptSetError("no prompts to generate from; pass at least one prompt")
    eos = eos_token_ids(model)
    results: dict[int, list[int]] = {}
    reuse = _REUSE.get()
    plain = reuse is not None and not fwd_hooks and logits_fn is None and not intervened(model)
    kept = reuse.answers(model) if reuse is not None and plain else None
    todo = list(range(len(texts)))
    if kept is not None:
        for i, text in enumerate(texts):
            if (system, max_new_tokens, text) in kept:
                results[i] = list(kept[(system, max_new_tokens, text)])
        todo = [i for i in todo if i not in results]
        assert reuse is not None
        reuse.hits += len(texts) - len(todo)
        reuse.misses += len(todo)
    pending = [texts[i] for i in todo]
    for chunk, batch in batched(model, pending, system, batch_size, progress=progress):
        new = greedy_decode(
            model, batch, max_new_tokens=max_new_tokens, fwd_hooks=fwd_hooks, logits_fn=logits_fn
        )
        for row, idx in zip(new.tolist(), chunk, strict=True):
            results[todo[idx]] = cut_at_eos(row, eos)
            if kept is not None:
                kept[(system, max_new_tokens, pending[idx])] = list(results[todo[idx]])
    return _completions(model, texts, results, system)


def _prompt_state_hook(store: dict[str, torch.Tensor], n_rows: int) -> Callable[..., Any]:
    """A hook keeping the last position of the prompt pass in `store["f"]`.

    The prompt pass is the first call over all `n_rows` rows: the whole prompt, or, when
    `interp.native.prefill` runs a shared prefix first (one row), the rest of each prompt.
    Either way its last position is the prompt's last token; later (decoding) calls are
    ignored. The hook changes nothing, so it may join a shared-prefix pass (`per_token`).
    """

    def grab(x: torch.Tensor, hook: Any) -> None:  # noqa: ARG001 - TransformerLens signature
        if "f" not in store and x.shape[0] == n_rows:
            store["f"] = x[:, -1].detach().to("cpu", torch.float32)

    return per_token(grab)


def decode_with_states(
    model: TransformerBridge,
    texts: Sequence[str],
    system: str | None,
    *,
    hooks_for: HooksFor | None = None,
    max_new_tokens: int = 32,
    batch_size: int = 32,
    logits_fn: LogitsFn | None = None,
) -> tuple[Completions, Float[torch.Tensor, "prompts d_model"]]:
    """Greedy completions and the final state f(x, s) of many prompts, batch-dependent hooks.

    Like `generate`, but each batch may get its own hooks (`hooks_for(batch)`, e.g. a soft
    prompt's), and the post-final-norm state at the last prompt token is read from the
    prompt pass.

    Returns:
        (the completions in input order, float32 states [n, d_model] in input order).
    """
    eos = eos_token_ids(model)
    rows: dict[int, list[int]] = {}
    states = torch.zeros(len(texts), int(model.cfg.d_model))
    for chunk, batch in batched(model, texts, system, batch_size):
        batch = batch.to(model.cfg.device)
        got: dict[str, torch.Tensor] = {}
        grab = _prompt_state_hook(got, batch.tokens.shape[0])
        hooks = [*(hooks_for(batch) if hooks_for else []), (_FINAL.hook_name, grab)]
        new = greedy_decode(
            model, batch, max_new_tokens=max_new_tokens, fwd_hooks=hooks, logits_fn=logits_fn
        )
        for j, (row, idx) in enumerate(zip(new.tolist(), chunk, strict=True)):
            rows[idx] = cut_at_eos(row, eos)
            states[idx] = got["f"][j]
    return _completions(model, texts, rows, system), states


def _completions(
    model: TransformerBridge, texts: Sequence[str], rows: dict[int, list[int]], system: str | None
) -> Completions:
    """`Completions` from the cut token rows of each input index."""
    tokens = tuple(tuple(rows[i]) for i in range(len(texts)))
    decoded = tuple(model.tokenizer.decode(list(t), skip_special_tokens=True) for t in tokens)
    return Completions(prompts=tuple(texts), texts=decoded, tokens=tokens, system=system)
