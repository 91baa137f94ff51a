"""The judge shows its work: a sample of the answers it called refusals and compliant.

A refusal rate is only as good as the judge behind it. Under each table of rates the page
lists, in a collapsible block, a few answers of each verdict with their prompts, so that a
reader can check the judge without opening `metrics.json`. Every string is HTML-escaped.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from itertools import chain, zip_longest

from interp.evaluation import Judge

__all__ = ["N_JUDGED_EXAMPLES", "judged_examples_html", "judged_table_html"]

#: Answers shown per verdict (refusal / compliant) and condition.
N_JUDGED_EXAMPLES = 3

#: (kind, prompt, answer) of one judged answer.
Judged = tuple[str, str, str]


def _spread(items_by_kind: Mapping[str, list[Judged]], n: int) -> list[Judged]:
    """Up to `n` items, taken in turn from each kind so that every kind is represented."""
    turns = zip_longest(*items_by_kind.values())
    return [item for item in chain.from_iterable(turns) if item is not None][:n]


def _items_html(items: Sequence[Judged]) -> str:
    if not items:
        return "<p><i>none</i></p>"
    return "".join(
        f"<p><b>{html.escape(kind)}</b>: {html.escape(prompt)}</p><pre>{html.escape(answer)}</pre>"
        for kind, prompt, answer in items
    )


def judged_examples_html(
    title: str,
    judge_name: str,
    prompts: Mapping[str, Sequence[str]],
    responses: Mapping[str, Sequence[str]],
    refused: Mapping[str, Sequence[bool]],
    *,
    n: int = N_JUDGED_EXAMPLES,
) -> str:
    """A `<details>` block with up to `n` answers judged refusals and `n` judged compliant.

    Args:
        title: What the answers are (e.g. the condition's name); shown in the summary line.
        judge_name: The judge's name.
        prompts: kind -> the user messages.
        responses: kind -> the answers, in the order of `prompts`.
        refused: kind -> the judge's verdict per answer (True: a refusal).
        n: Answers shown per verdict.

    Returns:
        HTML; every prompt and answer is escaped.
    """
    by_verdict: dict[bool, dict[str, list[Judged]]] = {True: {}, False: {}}
    for kind, answers in responses.items():
        for prompt, answer, flag in zip(prompts[kind], answers, refused[kind], strict=True):
            by_verdict[bool(flag)].setdefault(kind, []).append((kind, prompt, answer))
    n_refused = sum(len(v) for v in by_verdict[True].values())
    total = n_refused + sum(len(v) for v in by_verdict[False].values())
    return (
        f"<details class='judged'><summary>{html.escape(title)}: answers as judged by "
        f"<code>{html.escape(judge_name)}</code> ({n_refused} of {total} judged refusals)"
        "</summary>"
        f"<h4>Judged refusals (up to {n})</h4>"
        + _items_html(_spread(by_verdict[True], n))
        + f"<h4>Judged compliant (up to {n})</h4>"
        + _items_html(_spread(by_verdict[False], n))
        + "</details>"
    )


def judged_table_html(
    judge: Judge,
    prompts: Mapping[str, Sequence[str]],
    responses: Mapping[str, Mapping[str, Sequence[str]]],
    names: Mapping[str, str] | None = None,
    *,
    n: int = N_JUDGED_EXAMPLES,
) -> str:
    """One `judged_examples_html` block per condition of a condition -> kind -> answers table.

    The answers are judged again with `judge` (cheap for the substring judges), in the same
    (prompt, answer) pairs as the table's rates.
    """
    names = names or {}
    blocks = []
    for condition, per_kind in responses.items():
        refused = {
            kind: judge.is_refusal(list(answers), list(prompts[kind]))
            for kind, answers in per_kind.items()
        }
        title = names.get(condition, condition)
        blocks.append(judged_examples_html(title, judge.name, prompts, per_kind, refused, n=n))
    return "".join(blocks)
