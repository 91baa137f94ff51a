"""Refusal judges and evaluation metrics."""

from interp.evaluation.judges import ARDITI_PHRASES, DRO_RULES, Judge, SubstringJudge, refusal_rate

__all__ = ["ARDITI_PHRASES", "DRO_RULES", "Judge", "SubstringJudge", "refusal_rate"]
