"""Seeded bootstrap intervals for rates (a share of yes/no judgements).

One helper, so that every table that reports a refusal rate reports the same interval: the
percentile bootstrap of the mean of the 0/1 judgements, resampled with a seeded generator.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["bootstrap_interval"]


def bootstrap_interval(
    flags: Sequence[bool] | Sequence[int],
    *,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of the share of true `flags`.

    The same flags and seed always give the same interval; a rate of 0 or 1 gives the
    degenerate interval at that rate (resampling cannot move it).

    Args:
        flags: One judgement per prompt (True / 1: refused).
        n_boot: Resamples.
        level: Coverage of the interval (0.95: the 2.5% and 97.5% quantiles).
        seed: Seed of the resampling.

    Returns:
        (low, high); (nan, nan) for no flags.

    Raises:
        ValueError: `level` is not in (0, 1) or `n_boot` is below 1.

    Example:
        >>> bootstrap_interval([1, 1, 1, 1])
        (1.0, 1.0)
        >>> low, high = bootstrap_interval([1, 0] * 50, seed=0)
        >>> low < 0.5 < high
        True
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1, got {n_boot}")
    values = np.asarray(flags, dtype=np.float64)
    if values.size == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, values.size, size=(n_boot, values.size))].mean(axis=1)
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return float(low), float(high)
