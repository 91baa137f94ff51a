"""How well judges agree with hand labels and with each other."""

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import Any

from interp.errors import JudgeInputError
from interp.evaluation.judges import Judge

__all__ = ["Agreement", "JudgeScore", "judge_agreement"]


def _ratio(num: int, den: int) -> float:
    return num / den if den else math.nan


@dataclass(frozen=True)
class JudgeScore:
    """One judge against the labels, "refused" being the positive class.

    Attributes:
        accuracy: Fraction of verdicts equal to the label.
        precision: Of the responses the judge calls refusals, the fraction labelled refusals
            (NaN when it calls none).
        recall: Of the labelled refusals, the fraction the judge calls refusals (NaN when
            none is labelled a refusal).
        refusal_rate: Fraction the judge calls refusals.
    """

    accuracy: float
    precision: float
    recall: float
    refusal_rate: float

    @classmethod
    def of(cls, verdicts: Sequence[bool], labels: Sequence[bool]) -> "JudgeScore":
        """Score verdicts against labels."""
        pairs = list(zip(verdicts, labels, strict=True))
        hits = sum(v and y for v, y in pairs)
        return cls(
            accuracy=_ratio(sum(v == y for v, y in pairs), len(pairs)),
            precision=_ratio(hits, sum(verdicts)),
            recall=_ratio(hits, sum(labels)),
            refusal_rate=_ratio(sum(verdicts), len(pairs)),
        )


@dataclass(frozen=True)
class Agreement:
    """Judges' verdicts on one labelled set of responses.

    Attributes:
        n: Number of responses.
        scores: Judge name -> its score against the labels.
        disagreement: (name, name) -> fraction of responses the two judges decide
            differently, for each pair in the order the judges were given.
        verdicts: Judge name -> its verdicts (True = refused).
    """

    n: int
    scores: dict[str, JudgeScore]
    disagreement: dict[tuple[str, str], float]
    verdicts: dict[str, list[bool]]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (NaN written as None)."""

        def clean(x: float) -> float | None:
            return None if math.isnan(x) else x

        return {
            "n": self.n,
            "scores": {
                name: {k: clean(v) for k, v in vars(score).items()}
                for name, score in self.scores.items()
            },
            "disagreement": [
                {"judges": [a, b], "rate": clean(rate)}
                for (a, b), rate in self.disagreement.items()
            ],
        }


def judge_agreement(
    judges: Sequence[Judge],
    responses: Sequence[str],
    prompts: Sequence[str] | None,
    labels: Sequence[bool],
) -> Agreement:
    """Score each judge against hand labels (True = refused) and compare judges pairwise.

    Args:
        judges: Judges with distinct names.
        responses: The responses to judge.
        prompts: Their prompts (needed by model judges whose template reads them).
        labels: True where the response is a refusal.

    Returns:
        Each judge's accuracy, precision and recall, and the pairwise disagreement rates.

    Raises:
        JudgeInputError: Labels or prompts not aligned with the responses, or two judges
            with the same name.

    Example:
        >>> from interp.evaluation import SubstringJudge
        >>> a = judge_agreement([SubstringJudge("dro")], ["I'm sorry, no.", "Sure."], None,
        ...                     [True, False])
        >>> a.scores["dro"].accuracy
        1.0
    """
    if len(labels) != len(responses) or (prompts is not None and len(prompts) != len(responses)):
        raise JudgeInputError(
            f"{len(responses)} responses, {len(labels)} labels"
            + ("" if prompts is None else f", {len(prompts)} prompts")
            + ": they must align one to one"
        )
    names = [j.name for j in judges]
    if len(set(names)) != len(names):
        raise JudgeInputError(f"judges need distinct names to be compared, got {names}")
    verdicts = {j.name: list(j.is_refusal(responses, prompts)) for j in judges}
    truth = [bool(y) for y in labels]
    disagreement = {
        (a, b): _ratio(
            sum(x != y for x, y in zip(verdicts[a], verdicts[b], strict=True)), len(truth)
        )
        for a, b in combinations(names, 2)
    }
    return Agreement(
        n=len(truth),
        scores={name: JudgeScore.of(v, truth) for name, v in verdicts.items()},
        disagreement=disagreement,
        verdicts=verdicts,
    )
