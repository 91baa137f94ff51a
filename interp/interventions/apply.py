"""Apply interventions to a model for the duration of a `with` block.

Every intervention is a small frozen value with a `hooks(model)` method returning
`(hook_name, fn)` pairs. `apply` installs the hooks of all of them through the bridge's own
`hooks()` context manager, which removes exactly those hooks on exit, also when the body
raises, so contexts nest. It also registers them with `interp.native`, so that caching and
generation inside the block can still run the model's own modules, with the same hooks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol, runtime_checkable

from transformer_lens.model_bridge import TransformerBridge

from interp.native import registered

__all__ = ["Hook", "Intervention", "apply", "fwd_hooks"]

Hook = tuple[str, Callable[..., Any]]


@runtime_checkable
class Intervention(Protocol):
    """Anything that can say which forward hooks implement it on a given model."""

    def hooks(self, model: TransformerBridge) -> list[Hook]:
        """`(hook_name, fn)` pairs implementing the intervention on `model`."""
        ...


def fwd_hooks(model: TransformerBridge, interventions: Sequence[Intervention]) -> list[Hook]:
    """The hooks of several interventions, in order (earlier ones run first at a shared site)."""
    out: list[Hook] = []
    for item in interventions:
        if not isinstance(item, Intervention):
            raise TypeError(
                f"{type(item).__name__} is not a hook intervention; pass values such as "
                "DirectionalAblation(d) or ActAdd(d, coeff, layer). Methods that change decoding "
                "(a SoftPrompt, a SafeSwitch) decode with their own generate(model, prompts)"
            )
        out.extend(item.hooks(model))
    return out


@contextmanager
def apply(model: TransformerBridge, *interventions: Intervention) -> Iterator[TransformerBridge]:
    """Run the body with `interventions` active on `model` (forward, generation, caching).

    The hooks fire on every forward pass inside the block, including every step of
    `interp.generate`. They are removed on exit, also after an exception; nested blocks
    compose (inner hooks run after outer ones at a shared site).

    Example:
        >>> with apply(model, DirectionalAblation(direction)):  # doctest: +SKIP
        ...     completions = interp.generate(model, prompts)
    """
    hooks = fwd_hooks(model, interventions)
    with model.hooks(fwd_hooks=hooks), registered(model, hooks):
        yield model
