"""Counts behind every rate: numerator, denominator and a seeded bootstrap interval.

Every rate the report shows (a refusal rate, a compliance rate, a flag rate) is a share of
yes/no judgements. `interp.evaluation.RateCount` (the one rate-with-counts class, shared
with the Comparison) keeps the judgements' count `k` of `n` with the 95% percentile
bootstrap interval of `interp.evaluation.bootstrap_interval` (the same helper, seed and number
of resamples as the Comparison section), shows itself as one table cell,
``0.733 (22/30) [0.567, 0.867]``, and writes itself to `metrics.json` as
``{"rate": 0.7333, "k": 22, "n": 30, "interval": [0.5667, 0.8667]}``. The sections keep their
plain rate keys (condition -> kind -> rate) and store these blocks beside them under
``*_counts`` keys; `INTERVAL` describes the interval once, in `metrics["intervals"]`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from interp.evaluation import RateCount

__all__ = ["INTERVAL", "N_BOOT", "RateCount", "count_table", "counts_dict"]

#: Bootstrap resamples of every rate interval in the report.
N_BOOT = 2000
#: How every interval in the report is computed (recorded in `metrics["intervals"]`).
INTERVAL: dict[str, Any] = {"kind": "percentile bootstrap", "level": 0.95, "n_boot": N_BOOT}


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
