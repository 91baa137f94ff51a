"""Seeded bootstrap intervals for rates (a share of yes/no judgements), and `RateCount`.

One helper, so that every table that reports a refusal rate reports the same interval: the
percentile bootstrap of the mean of the 0/1 judgements, resampled with a seeded generator.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["RateCount", "bootstrap_interval"]


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


@dataclass(frozen=True)
class RateCount:
    """A rate as `k` of `n` judgements, with its seeded 95% bootstrap interval.

    Attributes:
        k: Judgements that are true (refused, complied, flagged: whatever the rate counts).
        n: Judgements.
        low: Lower end of the interval (NaN when `n` is 0).
        high: Upper end.
    """

    k: int
    n: int
    low: float
    high: float

    @classmethod
    def from_flags(
        cls, flags: Sequence[bool] | Sequence[int], *, seed: int = 0, n_boot: int = 2000
    ) -> RateCount:
        """The count of a list of judgements (True / 1: the rate's event happened).

        Example:
            >>> RateCount.from_flags([1, 1, 0, 1]).k
            3
        """
        values = [bool(f) for f in flags]
        low, high = bootstrap_interval(values, n_boot=n_boot, seed=seed)
        return cls(sum(values), len(values), low, high)

    @property
    def rate(self) -> float:
        """The rate, k / n (NaN when `n` is 0)."""
        return self.k / self.n if self.n else math.nan

    def complement(self, *, seed: int = 0, n_boot: int = 2000) -> RateCount:
        """The count of the opposite judgement (compliance from refusals): n - k of n.

        The interval is recomputed on the flipped flags, so it is that of the complement.
        """
        return RateCount.from_flags(
            [True] * (self.n - self.k) + [False] * self.k, seed=seed, n_boot=n_boot
        )

    def cell(self) -> str:
        """The table cell: ``rate (k/n) [low, high]``, rates with 3 decimals.

        Example:
            >>> RateCount(22, 30, 0.5667, 0.8667).cell()
            '0.733 (22/30) [0.567, 0.867]'
        """
        if not self.n:
            return "n/a (0/0)"
        return f"{self.rate:.3f} ({self.k}/{self.n}) [{self.low:.3f}, {self.high:.3f}]"

    def to_dict(self) -> dict[str, Any]:
        """The `metrics.json` block: rate, k, n and the interval, rounded to 4 places."""
        return {
            "rate": round(self.rate, 4) if self.n else None,
            "k": self.k,
            "n": self.n,
            "interval": [round(self.low, 4), round(self.high, 4)] if self.n else None,
        }
