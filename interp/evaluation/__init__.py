"""Refusal judges and the one evaluation loop (generate -> judge -> rate per condition x kind)."""

from interp.evaluation.judges import ARDITI_PHRASES, DRO_RULES, Judge, SubstringJudge, refusal_rate
from interp.evaluation.rates import BASELINE_CONDITIONS, judge_warnings, refusal_rates

__all__ = [
    "ARDITI_PHRASES",
    "BASELINE_CONDITIONS",
    "DRO_RULES",
    "Judge",
    "SubstringJudge",
    "judge_warnings",
    "refusal_rate",
    "refusal_rates",
]
