"""Counts behind every rate: numerator, denominator and a seeded bootstrap interval.

Every rate the report shows (a refusal rate, a compliance rate, a flag rate) is a share of
yes/no judgements. `RateCount` keeps the judgements' count `k` of `n` with the 95% percentile
bootstrap interval of `interp.evaluation.bootstrap_interval` (the same helper, seed and number
of resamples as the Comparison section), shows itself as one table cell,
``0.733 (22/30) [0.567, 0.867]``, and writes itself to `metrics.json` as
``{"rate": 0.7333, "k": 22, "n": 30, "interval": [0.5667, 0.8667]}``. The sections keep their
plain rate keys (condition -> kind -> rate) and store these blocks beside them under
``*_counts`` keys; `INTERVAL` describes the interval once, in `metrics["intervals"]`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from interp.evaluation import bootstrap_interval

__all__ = ["INTERVAL", "N_BOOT", "RateCount", "count_table", "counts_dict"]

#: Bootstrap resamples of every rate interval in the report.
N_BOOT = 2000
#: How every interval in the report is computed (recorded in `metrics["intervals"]`).
INTERVAL: dict[str, Any] = {"kind": "percentile bootstrap", "level": 0.95, "n_boot": N_BOOT}


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
        cls, flags: Sequence[bool] | Sequence[int], *, seed: int = 0, n_boot: int = N_BOOT
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

    def complement(self, *, seed: int = 0, n_boot: int = N_BOOT) -> RateCount:
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


def count_table(
    flags: Mapping[str, Mapping[str, Sequence[bool] | Sequence[int]]], *, seed: int = 0
) -> dict[str, dict[str, RateCount]]:
    """The `RateCount` of every cell of a nested table of judgements (condition -> kind)."""
    return {
        outer: {inner: RateCount.from_flags(f, seed=seed) for inner, f in per.items()}
        for outer, per in flags.items()
    }


def counts_dict(table: Mapping[str, Mapping[str, RateCount]]) -> dict[str, dict[str, Any]]:
    """The JSON form of a `count_table` (each cell's `RateCount.to_dict`)."""
    return {outer: {inner: c.to_dict() for inner, c in per.items()} for outer, per in table.items()}
