"""Checks of numeric arguments, with one message shape: the name, the allowed range, the value.

Constructors and entry points call these on the integers, coefficients and rates a user is
likely to get wrong (a zero batch size, ``max_new_tokens=0``, a NaN coefficient), so that the
mistake raises `ParameterError` where it is made, not as a bare ``range()`` error or a silent
empty generation later.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

from interp.errors import ParameterError

__all__ = ["check_int", "check_real", "check_reals"]


def check_int(value: Any, name: str, *, minimum: int = 1, maximum: int | None = None) -> int:
    """`value` as an int after checking it is an integer in [minimum, maximum].

    Booleans and floats are refused (``batch_size=2.5`` or ``True`` is a mistake).

    >>> check_int(3, "batch_size")
    3
    """
    allowed = f">= {minimum}" if maximum is None else f"in {minimum}..{maximum}"
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ParameterError(f"{name} must be an integer {allowed}, got {value!r}")
    number = int(value)
    if number < minimum or (maximum is not None and number > maximum):
        raise ParameterError(f"{name} must be an integer {allowed}, got {value!r}")
    return number


def check_real(
    value: Any,
    name: str,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """`value` as a float after checking it is finite and within the given bounds.

    ``low_open=True`` excludes `low` itself (``lr`` in (0, inf)); the same for `high`.

    >>> check_real(0.5, "val_fraction", low=0, high=1, low_open=True, high_open=True)
    0.5
    """
    try:
        x = float(value)
    except (TypeError, ValueError):
        x = math.nan
    bad = isinstance(value, bool) or not math.isfinite(x)
    if low is not None:
        bad = bad or x < low or (low_open and x == low)
    if high is not None:
        bad = bad or x > high or (high_open and x == high)
    if bad:
        where = ""
        if low is not None or high is not None:
            left = ("(" if low_open else "[") + ("-inf" if low is None else f"{low:g}")
            right = "inf)" if high is None else f"{high:g}" + (")" if high_open else "]")
            where = f" in {left}, {right}" if high is not None or low_open else f" >= {low:g}"
        raise ParameterError(f"{name} must be a finite number{where}, got {value!r}")
    return x


def check_reals(values: Any, name: str, n: int, *, low: float | None = None) -> tuple[float, ...]:
    """`values` as `n` floats, each finite and (when given) >= `low`."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or len(values) != n:
        raise ParameterError(f"{name} must be {n} numbers, got {values!r}")
    return tuple(check_real(v, f"{name}[{i}]", low=low) for i, v in enumerate(values))
