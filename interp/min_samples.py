"""The minimum number of examples per class for anything learned from the model's behaviour.

A refusal rate, a probe or a direction fitted on a handful of the model's own refusals is a
number that looks like a measurement and is noise. Every fit whose labels come from the
model's answers (refusal tokens, the refusal head's targets, the SafeSwitch prober's stage-2
labels, DRO's refusal labels, refusal-direction scoring) calls `require_per_class`, which
raises `TooFewExamplesError` below `MIN_PER_CLASS`; each such function takes a
`min_per_class` keyword to change the bar on purpose.
"""

from __future__ import annotations

from collections.abc import Mapping

from interp.errors import TooFewExamplesError

__all__ = ["MIN_PER_CLASS", "require_per_class"]

#: Examples of each class required before a behaviour-derived fit or selection is made.
MIN_PER_CLASS = 20


def require_per_class(
    what: str, counts: Mapping[str, int], *, minimum: int = MIN_PER_CLASS, fix: str
) -> None:
    """Raise `TooFewExamplesError` when any class of `counts` has fewer than `minimum` examples.

    Args:
        what: What is being fitted or selected (named in the message).
        counts: class name -> examples of that class.
        minimum: Examples required per class.
        fix: What the caller can do about it (named in the message).

    >>> require_per_class("a probe", {"refused": 25, "complied": 30}, minimum=20, fix="")
    >>> require_per_class("a probe", {"refused": 2}, minimum=20, fix="Add prompts.")
    Traceback (most recent call last):
    ...
    interp.errors.TooFewExamplesError: too few examples for a probe: 2 refused; at least 20 \
of each class are needed (interp.MIN_PER_CLASS). Add prompts.
    """
    if any(n < minimum for n in counts.values()):
        raise TooFewExamplesError(what, dict(counts), minimum, fix)
