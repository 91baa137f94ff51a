"""Refusal judges, the one evaluation loop, rate intervals and KL / CE against the base model."""

from interp.evaluation.fidelity import completion_ce, mean_kl, next_token_logprobs
from interp.evaluation.intervals import bootstrap_interval
from interp.evaluation.judges import ARDITI_PHRASES, DRO_RULES, Judge, SubstringJudge, refusal_rate
from interp.evaluation.rates import BASELINE_CONDITIONS, judge_warnings, refusal_rates

__all__ = [
    "ARDITI_PHRASES",
    "BASELINE_CONDITIONS",
    "DRO_RULES",
    "Judge",
    "SubstringJudge",
    "bootstrap_interval",
    "completion_ce",
    "judge_warnings",
    "mean_kl",
    "next_token_logprobs",
    "refusal_rate",
    "refusal_rates",
]
