"""The one evaluation loop: generate under each condition, judge, rate per condition x kind.

`refusal_rates` renders every prompt set under no system prompt and under each named safety
prompt, decodes greedily, judges each answer and returns condition -> kind -> refusal rate
(and the answers). Every method's evaluation nests its results the same way (condition ->
kind). `judge_warnings` flags a table that measures nothing: uniform judgements or empty
generations.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from transformer_lens.model_bridge import TransformerBridge

from interp.evaluation.judges import Judge, SubstringJudge
from interp.generation import generate

__all__ = ["BASELINE_CONDITIONS", "judge_warnings", "refusal_rates"]

#: The conditions of the baseline: no system prompt, then each human safety prompt by name.
BASELINE_CONDITIONS: tuple[str, ...] = ("none", "default", "short", "mistral", "helpful", "warning")


def refusal_rates(
    model: TransformerBridge,
    prompt_sets: Mapping[str, Sequence[str]],
    *,
    conditions: Sequence[str] = BASELINE_CONDITIONS,
    judge: Judge | None = None,
    max_new_tokens: int = 32,
    batch_size: int = 64,
) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, list[str]]]]:
    """Refusal rate per condition and kind, with greedy decoding.

    Args:
        model: The bridge.
        prompt_sets: kind -> user messages.
        conditions: `"none"` or safety-prompt names.
        judge: Refusal judge (the DRO substring judge by default).
        max_new_tokens: Response length.
        batch_size: Prompts per forward pass.

    Returns:
        (condition -> kind -> refusal rate, condition -> kind -> responses).
    """
    chosen: Judge = judge if judge is not None else SubstringJudge("dro")
    rates: dict[str, dict[str, float]] = {}
    responses: dict[str, dict[str, list[str]]] = {}
    for condition in conditions:
        system = None if condition == "none" else condition
        rates[condition], responses[condition] = {}, {}
        for kind, texts in prompt_sets.items():
            out = generate(
                model, texts, system=system, max_new_tokens=max_new_tokens, batch_size=batch_size
            )
            flags = chosen.is_refusal(out.texts, out.prompts)
            rates[condition][kind] = round(sum(flags) / len(flags), 4)
            responses[condition][kind] = list(out.texts)
    return rates, responses


def judge_warnings(
    rates: Mapping[str, Mapping[str, float]], responses: Mapping[str, Mapping[str, Sequence[str]]]
) -> list[str]:
    """Signs that a refusal table measures nothing: uniform judgements, empty generations.

    Args:
        rates: condition -> kind -> refusal rate.
        responses: condition -> kind -> generated texts.

    Returns:
        One message per condition in which every prompt of every kind was judged the same
        way (all refused or none), and one per condition with empty generations.
    """
    out: list[str] = []
    for condition, per_kind in rates.items():
        values = set(per_kind.values())
        if len(per_kind) > 1 and values in ({0.0}, {1.0}):
            verdict = "a refusal" if values == {1.0} else "compliant"
            out.append(
                f"condition {condition!r}: every prompt of every kind was judged {verdict}; "
                "the model or the judge is not telling the kinds apart"
            )
    for condition, texts_per_kind in responses.items():
        texts = [t for kind_texts in texts_per_kind.values() for t in kind_texts]
        empty = sum(not t.strip() for t in texts)
        if empty:
            out.append(
                f"condition {condition!r}: {empty} of {len(texts)} generations are empty "
                "(the model ends its turn at once, or decoding is broken)"
            )
    return out
