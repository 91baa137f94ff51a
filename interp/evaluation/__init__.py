"""Refusal judges, the one evaluation loop, rate intervals and KL / CE against the base model."""

from interp.evaluation.agreement import Agreement, JudgeScore, judge_agreement
from interp.evaluation.fidelity import completion_ce, mean_kl, next_token_logprobs
from interp.evaluation.intervals import RateCount, bootstrap_interval
from interp.evaluation.judge_prompts import (
    HARMBENCH_TEMPLATE,
    JUDGE_FORMATS,
    LLAMA_GUARD_TEMPLATE,
    STRONGREJECT_TEMPLATE,
    JudgeFormat,
)
from interp.evaluation.judges import ARDITI_PHRASES, DRO_RULES, Judge, SubstringJudge, refusal_rate
from interp.evaluation.model_judges import ChatJudge, ClassifierJudge
from interp.evaluation.rates import BASELINE_CONDITIONS, judge_warnings, refusal_rates

__all__ = [
    "ARDITI_PHRASES",
    "BASELINE_CONDITIONS",
    "DRO_RULES",
    "HARMBENCH_TEMPLATE",
    "JUDGE_FORMATS",
    "LLAMA_GUARD_TEMPLATE",
    "STRONGREJECT_TEMPLATE",
    "Agreement",
    "ChatJudge",
    "ClassifierJudge",
    "Judge",
    "JudgeFormat",
    "JudgeScore",
    "SubstringJudge",
    "RateCount",
    "bootstrap_interval",
    "completion_ce",
    "judge_agreement",
    "judge_warnings",
    "mean_kl",
    "next_token_logprobs",
    "refusal_rate",
    "refusal_rates",
]
