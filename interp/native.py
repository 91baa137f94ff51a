"""Run a bridged model through its own HF modules, with the bridge's hooks as plain torch hooks.

A `TransformerBridge` wraps every HF module in a component that adds hook points around it.
Those wrappers cost Python time on every call: 10-30% of a forward pass of a small model, and
more per KV-cached decoding step at batch 1. Every hook the toolkit's methods use sits on a
component boundary (`Site.hook_name` and the logits hook): the component's input hook sees the
HF module's input, its output hook the module's output (`interp.sites.boundary`). For those,
the same numbers come out of the HF modules alone. `forward_session` puts the original modules back into the HF tree for the
duration of a call, registers the hooks as torch hooks on them (same order, same
`fn(activation, hook)` signature, a returned tensor replaces the activation), and restores the
bridge on exit, also after an exception.

Anything else runs through the bridge itself, unchanged: a hook the native path cannot place
(inside attention, a name filter), or hooks that other code attached to the bridge directly.

The HF forward names its KV cache `past_key_values` up to transformers 5.23 and `cache` from
5.24 on; `cache_argument` reads the name from the forward's signature once per model, and the
native path passes and reads the cache under that name. TransformerLens 4.3's attention
wrappers read only `past_key_values`, so under the new name the bridge's KV cache stays empty
and every cached step through the bridge is wrong (docs/UPSTREAM.md). `bridge_kv_cache_ok`
says whether the installed versions have that bug; where they do, the bridge path replays the
whole sequence at every step instead of using a cache (correct, slower, logged once).
Interventions installed with `interp.apply` are registered here as well, so generation and
caching inside an `apply` block still take the native path. The tests check that both paths
give the same activations, logits and generations on every supported family.
"""

from __future__ import annotations

import inspect
import logging
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
from transformer_lens.hook_points import HookPoint
from transformer_lens.model_bridge import TransformerBridge
from transformer_lens.model_bridge.generalized_components.base import GeneralizedComponent

from interp.sites import boundary

__all__ = [
    "PassDone",
    "Step",
    "bridge_kv_cache_ok",
    "cache_argument",
    "forward_session",
    "intervened",
    "last_logits",
    "native_supported",
    "per_token",
    "prefill",
    "shared_prefix",
    "registered",
]


class PassDone(Exception):  # noqa: N818 - a signal, not an error
    """Raised by a hook that has kept everything a pass was run for; the rest is skipped.

    A caller of `forward_session`'s step (or of the bridge) catches it around the call: a pass
    run for the final norm's output then never reaches the unembedding (a fifth of a
    SmolLM2-135M forward pass, and [batch, pos, d_vocab] floats of memory).
    """


logger = logging.getLogger(__name__)

Hook = tuple[Any, Callable[..., Any]]
Step = Callable[..., tuple[torch.Tensor, Any]]
#: (HF module, "in"/"out", hook name, fn): one hook as a torch hook.
Placement = tuple[torch.nn.Module, str, str, Callable[..., Any]]

_HOOK_POINTS: weakref.WeakKeyDictionary[TransformerBridge, list[HookPoint]] = (
    weakref.WeakKeyDictionary()
)
_APPLIED: weakref.WeakKeyDictionary[TransformerBridge, list[Hook]] = weakref.WeakKeyDictionary()
_ACCEPTS: weakref.WeakKeyDictionary[TransformerBridge, frozenset[str]] = weakref.WeakKeyDictionary()
_WARNED: weakref.WeakSet[TransformerBridge] = weakref.WeakSet()
#: The names the HF forward has used for its KV cache, newest first.
CACHE_ARGUMENTS: tuple[str, ...] = ("cache", "past_key_values")


@dataclass(frozen=True)
class NativeHook:
    """What a hook function receives as `hook` on the native path (it has the bridge's name)."""

    name: str


@contextmanager
def registered(model: TransformerBridge, hooks: Sequence[Hook]) -> Iterator[None]:
    """Record hooks that `interp.apply` attached to the bridge, so the native path runs them."""
    stack = _APPLIED.setdefault(model, [])
    start = len(stack)
    stack.extend(hooks)
    try:
        yield
    finally:
        del stack[start : start + len(hooks)]


def _attached(model: TransformerBridge) -> int:
    """How many forward hooks sit on the bridge's hook points right now."""
    points = _HOOK_POINTS.get(model)
    if points is None:
        points = [m for m in model.modules() if isinstance(m, HookPoint)]
        _HOOK_POINTS[model] = points
    return sum(len(p._forward_hooks) + len(p._forward_pre_hooks) for p in points)


F = TypeVar("F", bound=Callable[..., Any])

#: Fewest shared leading tokens for `prefill` to compute them once (below this the saving is
#: smaller than the cost of an extra call).
MIN_SHARED_PREFIX = 8


def per_token(fn: F) -> F:
    """Mark a hook function as acting on each position alone, whatever else is in the pass.

    A marked hook gives the same result whether a prompt's tokens arrive in one pass or as a
    shared prefix and then the rest (`prefill`): a projection or an addition at every position
    qualifies; a hook that reads the pass's width or edits chosen positions does not.
    """
    fn.per_token = True  # type: ignore[attr-defined]
    return fn


def _per_token(model: TransformerBridge, hooks: Sequence[Hook]) -> bool:
    """Whether `hooks` and the applied interventions' hooks are all `per_token`."""
    every = [*_APPLIED.get(model, []), *hooks]
    return all(getattr(fn, "per_token", False) for _, fn in every)


def intervened(model: TransformerBridge) -> bool:
    """Whether anything changes the model's forward now: a bridge hook or an applied intervention.

    Hooks attached to the bridge directly count, and so do interventions installed with
    `interp.apply`.
    """
    return _attached(model) > 0 or bool(_APPLIED.get(model))


def _component(model: TransformerBridge, path: str) -> GeneralizedComponent | None:
    obj: Any = model
    for part in path.split("."):
        obj = obj[int(part)] if part.isdigit() else getattr(obj, part, None)
        if obj is None:
            return None
    return obj if isinstance(obj, GeneralizedComponent) else None


def _placements(model: TransformerBridge, hooks: Sequence[Hook]) -> list[Placement] | None:
    """The placement of each hook, or None if one cannot be placed."""
    out: list[Placement] = []
    for name, fn in hooks:
        place = boundary(name) if isinstance(name, str) else None
        if place is None:
            return None
        component = _component(model, place[0])
        module = None if component is None else component.original_component
        if module is None:
            return None
        out.append((module, place[1], name, fn))
    return out


def _accepted(model: TransformerBridge) -> frozenset[str]:
    names = _ACCEPTS.get(model)
    if names is None:
        names = frozenset(inspect.signature(model.original_model.forward).parameters)
        _ACCEPTS[model] = names
    return names


def cache_argument(model: TransformerBridge) -> str | None:
    """The name under which the HF forward takes and returns its KV cache.

    `"cache"` on transformers 5.24 and later, `"past_key_values"` before; None if the forward
    names neither (such a model runs through the bridge).
    """
    accepted = _accepted(model)
    return next((name for name in CACHE_ARGUMENTS if name in accepted), None)


def bridge_kv_cache_ok(model: TransformerBridge) -> bool:
    """Whether KV-cached steps through the bridge itself are correct with these versions.

    TransformerLens 4.3's attention wrappers update the cache only when it arrives as
    `past_key_values` (or `layer_past`); the HF decoder layers of transformers 5.24+ pass it
    as `cache`, so the bridge's cache stays empty and each cached step attends to its own
    token alone. The bridge path then decodes without a cache (see `forward_session`).
    `tests/test_native.py` checks this answer against the behaviour of the installed versions.
    """
    return cache_argument(model) == "past_key_values"


def _plan(model: TransformerBridge, hooks: Sequence[Hook]) -> list[Placement] | None:
    """Where `hooks` and the applied interventions' hooks go on the HF modules.

    None when the call must run through the bridge.
    """
    applied = _APPLIED.get(model, [])
    if _attached(model) != len(applied):
        return None  # hooks attached to the bridge by someone else: only the bridge runs them
    if cache_argument(model) is None or not {"position_ids", "attention_mask"} <= _accepted(model):
        return None
    return _placements(model, [*applied, *hooks])


def native_supported(model: TransformerBridge, hooks: Sequence[Hook] = ()) -> bool:
    """Whether a call with `hooks` (plus any applied interventions) can skip the bridge."""
    return _plan(model, hooks) is not None


def _swap_out(root: torch.nn.Module) -> list[tuple[torch.nn.Module, str, torch.nn.Module]]:
    """Put every bridge component's original module back in its place; returns the undo list."""
    swaps: list[tuple[torch.nn.Module, str, torch.nn.Module]] = []
    stack = [root]
    while stack:
        module = stack.pop()
        for name, child in list(module._modules.items()):
            if isinstance(child, GeneralizedComponent) and child.original_component is not None:
                module._modules[name] = child.original_component
                swaps.append((module, name, child))
                child = child.original_component
            if child is not None:
                stack.append(child)
    return swaps


def _call(fn: Callable[..., Any], x: torch.Tensor, name: str) -> torch.Tensor:
    result = fn(x, hook=NativeHook(name))
    return x if result is None else result


def _register(module: torch.nn.Module, side: str, name: str, fn: Callable[..., Any]) -> Any:
    if side == "in":

        def pre(mod: Any, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:  # noqa: ARG001
            if args:
                return (_call(fn, args[0], name), *args[1:]), kwargs
            kwargs["hidden_states"] = _call(fn, kwargs["hidden_states"], name)
            return args, kwargs

        return module.register_forward_pre_hook(pre, with_kwargs=True)

    def post(mod: Any, args: tuple, output: Any) -> Any:  # noqa: ARG001
        if isinstance(output, tuple):
            return (_call(fn, output[0], name), *output[1:])
        return _call(fn, output, name)

    return module.register_forward_hook(post)


def positions_of(mask: torch.Tensor, width: int) -> torch.Tensor:
    """Position ids of the last `width` tokens of a left-padded mask (as the bridge derives)."""
    pos = mask.long().cumsum(-1) - 1
    pos.masked_fill_(mask == 0, 1)
    return pos[:, mask.shape[1] - width :]


@contextmanager
def forward_session(
    model: TransformerBridge, hooks: Sequence[Hook] = (), *, native: bool | None = None
) -> Iterator[Step]:
    """A forward function with `hooks` active: `step(ids, mask, past=None) -> (logits, cache)`.

    Args:
        model: The bridge.
        hooks: `(hook_name, fn)` pairs active on every call of the step.
        native: Force the native path (True; raises if it cannot place the hooks) or the
            bridge (False); None picks native whenever it can.

    The step takes left-padded token ids [batch, new], the attention mask over the cache and
    the new tokens, and the cache of earlier calls. On the native path `logits_to_keep=1`
    computes the last position's logits only (not while a hook reads the logits) and
    `use_cache=False` skips building a cache; the bridge path ignores both.

    Where the bridge's own KV cache is wrong (`bridge_kv_cache_ok` is False), the bridge path
    returns a `Replay` as its cache: the tokens so far, which the next step prepends to its
    new tokens and runs in full. Decoding then gives the tokens a correct cache would, at
    the cost of a full pass per step; a hook sees the whole sequence on every step, so a
    hook that edits only the last position edits each earlier token only while it was last.
    """
    placements = None if native is False else _plan(model, hooks)
    if native and placements is None:
        raise ValueError("these hooks cannot run on the native path; leave native=None")
    hf = model.original_model
    cache_name = cache_argument(model) or "past_key_values"
    keep_ok = placements is not None and "logits_to_keep" in _accepted(model)
    keep_ok &= not any(boundary(name) == ("unembed", "out") for _, _, name, _ in placements or [])
    with ExitStack() as stack:
        if placements is None:
            stack.enter_context(model.hooks(fwd_hooks=list(hooks)))
        else:
            stack.callback(_restore, _swap_out(hf))
            for module, side, name, fn in placements:
                stack.callback(_register(module, side, name, fn).remove)

        def step(
            ids: torch.Tensor,
            mask: torch.Tensor,
            past: Any = None,
            logits_to_keep: int = 0,
            use_cache: bool = True,
        ) -> tuple[torch.Tensor, Any]:
            if placements is None:
                return _bridge_step(model, ids, mask, past, use_cache)
            extra = {"logits_to_keep": logits_to_keep} if keep_ok else {}
            out = hf(
                input_ids=ids,
                attention_mask=mask,
                position_ids=positions_of(mask, ids.shape[1]),
                use_cache=use_cache,
                **{cache_name: past},
                **extra,
            )
            return out.logits, getattr(out, cache_name)

        yield step


def shared_prefix(tokens: torch.Tensor, attention_mask: torch.Tensor) -> int:
    """How many leading real tokens every row of a left-padded batch shares.

    Capped one below the shortest row, so that every row keeps a token of its own (its last
    position's logits come from that token's pass). 0 for a single row or a mask that is not
    left padding.

    >>> t = torch.tensor([[0, 5, 6, 7], [5, 6, 8, 9]]); m = torch.tensor([[0, 1, 1, 1], [1] * 4])
    >>> shared_prefix(t, m)
    2
    """
    lengths = attention_mask.long().sum(1)
    n_rows, width = tokens.shape
    if n_rows < 2 or int(lengths.min()) < 2:
        return 0
    start = width - lengths
    columns = torch.arange(width, device=tokens.device)[None]
    if not bool(((columns >= start[:, None]) == attention_mask.bool()).all()):
        return 0  # not left padding
    n = int(lengths.min()) - 1
    lead = tokens.gather(1, start[:, None] + torch.arange(n, device=tokens.device)[None])
    differs = (lead != lead[:1]).any(0).nonzero()
    return int(differs[0]) if len(differs) else n


def prefill(
    model: TransformerBridge,
    step: Step,
    tokens: torch.Tensor,
    attention_mask: torch.Tensor,
    hooks: Sequence[Hook] = (),
    *,
    logits_to_keep: int = 1,
    use_cache: bool = True,
    horizon: int = 0,
) -> tuple[torch.Tensor, Any, torch.Tensor]:
    """The prompt pass of a left-padded batch, sharing the rows' common prefix where it can.

    Every prompt of a batch usually starts with the same chat-template text (a system
    prompt, the role markers): on SmolLM2-135M the template's own system prompt alone is
    about 20 of the 45 tokens of a typical request. When `shared_prefix` finds at least
    `MIN_SHARED_PREFIX` such tokens, the hooks are all `per_token`, the step runs on the
    native path and `logits_to_keep` is 1, the prefix is run once for one row, its KV cache is
    repeated for every row, and the rest of each row runs after it. The cache then holds
    [prefix | padding | rest]; the returned mask (over prefix, padding and rest) masks the
    padding, and position ids count real tokens only, so each row sees what a full pass
    would show it. Results equal the full pass up to float rounding (tested). A model with a
    sliding window shorter than the batch plus `horizon` (the tokens still to be decoded)
    takes the full pass.

    Returns:
        (logits of the last `logits_to_keep` positions, the KV cache, the attention mask to
        extend at the next decoding step).
    """
    p = shared_prefix(tokens, attention_mask)
    window = getattr(model.original_model.config, "sliding_window", None)
    share = (
        p >= MIN_SHARED_PREFIX
        and logits_to_keep == 1
        # A sliding window counts cache slots, padding included: with the padding moved
        # between prefix and rest, it would drop prefix tokens a full pass keeps.
        and (window is None or int(window) > tokens.shape[1] + horizon)
        and _per_token(model, hooks)
        and native_supported(model, hooks)
    )
    if not share:
        logits, kv = step(
            tokens, attention_mask, logits_to_keep=logits_to_keep, use_cache=use_cache
        )
        return logits, kv, attention_mask
    n_rows, width = tokens.shape
    start = width - attention_mask.long().sum(1)
    first = int(start[0])
    head = tokens[:1, first : first + p]
    _, kv = step(head, torch.ones_like(head), logits_to_keep=1, use_cache=True)
    kv.batch_repeat_interleave(n_rows)
    rest = width - int(start.min()) - p
    columns = torch.arange(width - rest, width, device=tokens.device)[None]
    rest_mask = (columns >= (start[:, None] + p)).to(attention_mask.dtype)
    mask = torch.cat([torch.ones_like(attention_mask[:, :p]), rest_mask], dim=1)
    logits, kv = step(tokens[:, width - rest :], mask, kv, logits_to_keep=1, use_cache=use_cache)
    return logits, kv, mask


@torch.no_grad()
def last_logits(
    model: TransformerBridge, tokens: torch.Tensor, attention_mask: torch.Tensor
) -> torch.Tensor:
    """Logits [batch, d_vocab] at the last position of a left-padded batch [batch, pos].

    One forward pass with the applied interventions active (`interp.apply`), on the native
    path when it can take them: no KV cache is built, and only the last position goes
    through the unembedding (`logits_to_keep=1`). On SmolLM2-135M the unembedding of every
    position is about a fifth of a forward pass (a 49,152-token vocabulary against 30 blocks
    of width 576), and the bridge's wrappers cost 10-30 % more; the scores that read one
    next-token distribution per prompt (refusal scores, first-token KL) need neither. The
    bridge path (hooks it cannot place) computes every position and returns the last. The
    rows' shared prefix is run once (`prefill`).
    """
    device = model.cfg.device
    with forward_session(model) as step:
        logits, _, _ = prefill(
            model, step, tokens.to(device), attention_mask.to(device), use_cache=False
        )
    return logits[:, -1]


@dataclass(frozen=True)
class Replay:
    """The "cache" of the bridge path where its KV cache is broken: every token so far."""

    ids: torch.Tensor


def _bridge_step(
    model: TransformerBridge, ids: torch.Tensor, mask: torch.Tensor, past: Any, use_cache: bool
) -> tuple[torch.Tensor, Any]:
    """One step through the bridge: every position computed, with its cache or a replay."""
    if bridge_kv_cache_ok(model):
        logits, cache = model(
            ids, attention_mask=mask, past_key_values=past, return_type="logits_and_cache"
        )
        return logits, cache
    if isinstance(past, Replay):
        ids = torch.cat([past.ids, ids], dim=1)
    elif past is not None:
        raise ValueError("the bridge path cannot continue from a KV cache on these versions")
    if use_cache and model not in _WARNED:
        _WARNED.add(model)
        logger.warning(
            "TransformerLens' bridge ignores the KV cache under transformers' `cache` argument "
            "(docs/UPSTREAM.md); decoding through the bridge recomputes the whole sequence at "
            "each step (correct, slower). Hooks on module boundaries avoid the bridge."
        )
    logits = model(ids, attention_mask=mask, return_type="logits")
    return logits, Replay(ids) if use_cache else None


def _restore(swaps: list[tuple[torch.nn.Module, str, torch.nn.Module]]) -> None:
    for module, name, child in reversed(swaps):
        module._modules[name] = child
