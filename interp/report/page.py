"""The `interp report` job: measure a model and write a self-contained HTML report + metrics.

A report is a list of sections, each contributing HTML and keys of `metrics.json`. The
baseline section renders every prompt set with no system prompt and with each human
safety prompt, generates greedily and measures the refusal rate per condition and kind.
Later capabilities add their own sections through `Report.add`.
"""

from __future__ import annotations

import html
import json
import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
from transformer_lens.model_bridge import TransformerBridge

from interp._atomic import save_atomically
from interp.chat import default_system_prompt, render
from interp.data import HARMFUL_KINDS
from interp.evaluation import (
    BASELINE_CONDITIONS,
    Judge,
    SubstringJudge,
    judge_warnings,
    refusal_rates,
)
from interp.min_samples import MIN_PER_CLASS
from interp.model import ModelInfo
from interp.report.counts import INTERVAL, N_BOOT, RateCount, count_table, counts_dict
from interp.report.judged import judged_table_html
from interp.report.prompts import PromptSets, texts_by_kind

logger = logging.getLogger(__name__)

__all__ = [
    "BASELINE_CONDITIONS",
    "Report",
    "add_baseline",
    "baseline_figure",
    "error_bars",
    "model_metrics",
    "rendered_prompts_html",
    "table_html",
    "with_error_bars",
]


@dataclass
class Report:
    """An HTML report under construction and the metrics that go with it.

    Attributes:
        title: Page title.
        metrics: The content of `metrics.json`.
        sections: (heading, html) pairs in page order.
        fitted: section -> what it fitted (a direction, a SafeSwitch, a soft prompt), so that
            a later section (the comparison) reuses it instead of fitting it again; never
            written to disk.
    """

    title: str
    metrics: dict[str, Any] = field(default_factory=dict)
    sections: list[tuple[str, str]] = field(default_factory=list)
    fitted: dict[str, Any] = field(default_factory=dict, repr=False)
    _has_plotly: bool = False

    def warn(self, message: str) -> None:
        """Flag a problem at the top of the page and in `metrics["warnings"]`."""
        logger.warning("%s", message)
        self.metrics.setdefault("warnings", []).append(message)

    @contextmanager
    def timed(self, stage: str) -> Iterator[None]:
        """Record the wall time of a stage under `metrics["timings"][stage]`."""
        start = time.perf_counter()
        try:
            yield
        finally:
            timings = self.metrics.setdefault("timings", {})
            timings[stage] = round(time.perf_counter() - start, 3)
            logger.info("stage %s: %.1f s", stage, timings[stage])

    def figure_html(self, fig: go.Figure) -> str:
        """Inline a figure; the first one carries plotly.js so the page works offline."""
        out = fig.to_html(full_html=False, include_plotlyjs=not self._has_plotly)
        self._has_plotly = True
        return str(out)

    def skip_part(self, key: str, what: str, reason: str) -> str:
        """Record that `what` (a part of a section) was not measured; returns its warning box.

        The reason joins the page's warnings list and `metrics["skipped"][key]`; the caller
        puts the returned box at the top of its section.
        """
        self.warn(f"{what} skipped: {reason}")
        self.metrics.setdefault("skipped", {})[key] = reason
        return (
            "<div class='warnings skipped' role='alert'>"
            f"<h3>Skipped: {html.escape(what)} (no result is shown)</h3>"
            f"<p>{html.escape(reason)}</p></div>"
        )

    def skip(self, key: str, heading: str, reason: str, body_html: str = "") -> dict[str, str]:
        """Append a section that could not be measured, with its reason shown prominently.

        The reason heads the section in a warning box, joins the page's warnings list, and is
        recorded twice in the metrics: `metrics[key] = {"skipped": reason}` and
        `metrics["skipped"][key] = reason`. No number of the section is shown.

        Args:
            key: The metrics key of the section (e.g. `"safeswitch"`).
            heading: The section heading.
            reason: Why it was skipped, and what to do about it.
            body_html: Optional content shown under the box (e.g. the judged answers).

        Returns:
            The section's metrics block, `{"skipped": reason}`.
        """
        box = self.skip_part(key, heading, reason)
        block = {"skipped": reason}
        self.add(heading, box + body_html, {key: block})
        return block

    def add(self, heading: str, body_html: str, metrics: Mapping[str, Any] | None = None) -> None:
        """Append a section and merge its metrics keys."""
        self.sections.append((heading, body_html))
        if metrics:
            self.metrics.update(metrics)

    def html(self) -> str:
        """The whole page; warnings, if any, come first."""
        body = "\n".join(
            f"<section><h2>{html.escape(h)}</h2>\n{content}</section>"
            for h, content in self.sections
        )
        warnings = self.metrics.get("warnings", [])
        banner = (
            "<div class='warnings' role='alert'><h2>Warnings: these numbers may be wrong</h2>"
            "<ul>" + "".join(f"<li>{html.escape(w)}</li>" for w in warnings) + "</ul></div>"
            if warnings
            else ""
        )
        return (
            "<!doctype html><html><head><meta charset='utf-8'>"
            f"<title>{html.escape(self.title)}</title><style>{_CSS}</style></head>"
            f"<body><h1>{html.escape(self.title)}</h1>{banner}{body}</body></html>"
        )

    def write(self, out_dir: str | Path) -> Path:
        """Write `report.html` and `metrics.json` into `out_dir`, both or neither.

        They are staged in a temporary folder beside them and renamed into place
        (`interp._atomic.save_atomically`), so a failed write leaves an older report intact.
        """
        root = Path(out_dir)
        files = {
            "metrics.json": json.dumps(self.metrics, indent=2, sort_keys=True) + "\n",
            "report.html": self.html(),
        }

        def write(folder: Path) -> None:
            for name, text in files.items():
                (folder / name).write_text(text, encoding="utf-8")

        save_atomically(root, write, files=list(files))
        return root / "report.html"


N_BOOT_TEXT = f"{N_BOOT} resamples"

_CSS = (
    "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}"
    "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;"
    "text-align:right}th{background:#f3f3f3}td.l,th.l{text-align:left}"
    "pre{white-space:pre-wrap;background:#f8f8f8;padding:6px}"
    ".warnings{border:2px solid #b00;background:#fff0f0;padding:0 1em;margin:1em 0}"
    ".warnings h2,.warnings h3{color:#b00}"
    "details{margin:.5em 0}details pre{margin:2px 0}"
)


def table_html(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> str:
    """A plain HTML table; floats shown with 3 decimals, a `RateCount` as its cell."""

    def cell(value: Any, first: bool) -> str:
        if isinstance(value, RateCount):
            text = html.escape(value.cell())
        elif isinstance(value, float):
            text = f"{value:.3f}"
        else:
            text = html.escape(str(value))
        return f"<td class='l'>{text}</td>" if first else f"<td>{text}</td>"

    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(cell(v, i == 0) for i, v in enumerate(row)) + "</tr>" for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def error_bars(counts: Sequence[RateCount]) -> dict[str, Any]:
    """Plotly `error_y` of bars drawn at each count's rate: its bootstrap interval."""
    return {
        "type": "data",
        "symmetric": False,
        "array": [c.high - c.rate for c in counts],
        "arrayminus": [c.rate - c.low for c in counts],
    }


def with_error_bars(fig: go.Figure, counts: Mapping[str, Mapping[str, RateCount]]) -> go.Figure:
    """`fig` with each bar's bootstrap interval drawn as an error bar.

    Args:
        fig: Grouped bars, one trace per series (e.g. method), the x values its categories.
        counts: trace name -> x value -> `RateCount`; a bar trace whose name or x values
            are not all in it is left as it is.

    Returns:
        The same figure, changed in place.
    """
    for trace in fig.data:
        per_x = counts.get(trace.name) if trace.type == "bar" else None
        if per_x and trace.x is not None and all(x in per_x for x in trace.x):
            trace.error_y = error_bars([per_x[x] for x in trace.x])
    return fig


def baseline_figure(
    rates: Mapping[str, Mapping[str, float]],
    counts: Mapping[str, Mapping[str, RateCount]] | None = None,
) -> go.Figure:
    """Grouped bars: refusal rate per kind, one bar group per condition.

    With `counts` (condition -> kind -> `RateCount`), each bar carries its 95% bootstrap
    interval as an error bar and its k/n in the hover text.
    """
    fig = go.Figure()
    for condition, per_kind in rates.items():
        cells = [counts[condition][k] for k in per_kind] if counts else []
        fig.add_bar(
            name=condition,
            x=list(per_kind),
            y=list(per_kind.values()),
            error_y=error_bars(cells) if cells else None,
            customdata=[c.cell() for c in cells] if cells else None,
            hovertemplate="%{x}: %{customdata}<extra>%{fullData.name}</extra>" if cells else None,
        )
    fig.update_layout(
        barmode="group",
        yaxis={"title": "refusal rate", "range": [0, 1]},
        xaxis={"title": "kind of request"},
        title="Refusal rate by kind and system prompt (greedy)",
        template="plotly_white",
        height=380,
    )
    return fig


def model_metrics(info: ModelInfo) -> dict[str, Any]:
    """The `model` block of metrics.json."""
    return {
        "name": info.name,
        "family": info.family,
        "n_layers": info.n_layers,
        "d_model": info.d_model,
        "d_vocab": info.d_vocab,
        "n_params": info.n_params,
    }


def condition_names(model: TransformerBridge, conditions: Sequence[str]) -> dict[str, str]:
    """How each condition is named on the page: as the model saw it.

    Condition `none` (no system prompt given) is "template default system prompt" when the
    chat template inserts one of its own, "no system prompt" otherwise.
    """
    default = default_system_prompt(model)
    none = "template default system prompt" if default else "no system prompt"
    return {c: none if c == "none" else c for c in conditions}


def rendered_prompts_html(
    model: TransformerBridge,
    prompt: str,
    conditions: Sequence[str],
    names: Mapping[str, str],
) -> str:
    """One collapsible block per condition: the exact chat text the model saw for `prompt`.

    The text is `interp.chat.render` of the prompt under the condition's system prompt
    (none for condition ``none``), generation prompt included, HTML-escaped.
    """
    blocks = []
    for condition in conditions:
        text = render(model, prompt, None if condition == "none" else condition)
        blocks.append(
            f"<details class='rendered'><summary>{html.escape(names.get(condition, condition))}"
            f" (condition <code>{html.escape(condition)}</code>): the rendered prompt</summary>"
            f"<pre>{html.escape(text)}</pre></details>"
        )
    return "".join(blocks)


def _judgements(
    judge: Judge,
    prompts: Mapping[str, Sequence[str]],
    responses: Mapping[str, Mapping[str, Sequence[str]]],
) -> dict[str, dict[str, list[bool]]]:
    """The judge's verdict per answer, condition -> kind (the verdicts behind the rates)."""
    return {
        condition: {
            kind: list(judge.is_refusal(list(answers), list(prompts[kind])))
            for kind, answers in per_kind.items()
        }
        for condition, per_kind in responses.items()
    }


#: Below this share of plain harmful requests (jailbreaks, where there are none) refused with
#: no system prompt, the baseline says at the top of the page that the model hardly refuses.
LOW_REFUSAL = 0.1


def low_refusal_warning(
    verdicts: Mapping[str, Mapping[str, Sequence[bool]]], condition_name: str = "none"
) -> str:
    """The warning for a model that hardly refuses harmful requests, or "" if it does.

    Args:
        verdicts: condition -> kind -> the judge's verdicts (`True` = refusal).
        condition_name: How condition `none` is named on the page.

    Returns:
        A message when, under condition `none`, fewer than `LOW_REFUSAL` of the plain harmful
        requests (kind `harmful`; the jailbreaks only when there is no such kind) were judged
        refusals: there is then little refusal behaviour to study, and what the judge calls
        refusals may be apologetic openers followed by help. Jailbreaks are left out when
        plain requests exist because their wrappers make such openers common: the raw
        SmolLM2-135M-Instruct "refuses" 8 of 24 TrustLLM jailbreaks with "I'm sorry for any
        confusion, but ..." and 0 of 24 plain harmful requests.
    """
    per_kind = verdicts.get("none", {})
    kinds = ["harmful"] if "harmful" in per_kind else [k for k in per_kind if k in HARMFUL_KINDS]
    flags = [bool(f) for kind in kinds for f in per_kind[kind]]
    if not flags or sum(flags) >= LOW_REFUSAL * len(flags):
        return ""
    return (
        f"this model hardly refuses: {sum(flags)} of {len(flags)} {' and '.join(kinds)} "
        f"requests were judged refusals with no safety prompt ({condition_name}; below "
        f"{LOW_REFUSAL:.0%}). There is little refusal behaviour to study; read the judged "
        "refusals in the Baseline section (they may be apologies followed by help), and expect "
        f"the sections that learn from refusals to be skipped (fewer than {MIN_PER_CLASS} of a "
        "class). A safety-tuned model refuses (e.g. smollm2-135m-safety)"
    )


def add_baseline(
    report: Report,
    model: TransformerBridge,
    prompt_sets: PromptSets,
    *,
    conditions: Sequence[str] = BASELINE_CONDITIONS,
    max_new_tokens: int = 32,
    judge: Judge | None = None,
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """Measure the baseline and append its section; returns condition -> kind -> rate.

    Every cell of the table shows the rate with its count and 95% bootstrap interval
    (`interp.report.counts`), stored in `metrics["baseline_counts"]`; the figure draws the
    intervals as error bars. For each condition the page shows the rendered chat text of one
    example prompt, and under the table a sample of the answers the judge called refusals
    and of those it called compliant (`interp.report.judged`).

    Args:
        report: The report to extend.
        model: The bridge.
        prompt_sets: kind -> prompts (`PromptSet` or strings).
        conditions: `"none"` and safety-prompt names.
        max_new_tokens: Answer length.
        judge: Refusal judge (the DRO substring judge by default).
        seed: Seed of the bootstrap intervals.
    """
    chosen: Judge = judge if judge is not None else SubstringJudge("dro")
    texts = texts_by_kind(prompt_sets)
    with report.timed("baseline"):
        rates, responses = refusal_rates(
            model, texts, conditions=conditions, max_new_tokens=max_new_tokens, judge=chosen
        )
    verdicts = _judgements(chosen, texts, responses)
    counts = count_table(verdicts, seed=seed)
    kinds = list(texts)
    names = condition_names(model, conditions)
    rows = [[names[c], *(counts[c][k] for k in kinds)] for c in conditions]
    default = default_system_prompt(model)
    examples = []
    for kind in kinds:
        prompt = texts[kind][0]
        answer = responses["none"][kind][0] if "none" in responses else ""
        examples.append(
            f"<p><b>{html.escape(kind)}</b>: {html.escape(prompt)}</p><pre>{html.escape(answer)}</pre>"
        )
    sizes = ", ".join(f"{k}: {len(v)}" for k, v in texts.items())
    body = (
        f"<p>Refusal rate (judge <code>{html.escape(chosen.name)}</code>) with greedy decoding, {max_new_tokens} new "
        f"tokens; prompts per kind: {sizes}. Conditions: {html.escape(names.get('none', 'none'))} "
        "(condition <code>none</code>) and each human safety prompt by name. Each cell: rate "
        f"(refused/prompts) [95% percentile bootstrap interval, {N_BOOT_TEXT}, seed {seed}].</p>"
        + (
            "<p>With no system prompt given, this model's chat template inserts its own: "
            f"<q>{html.escape(default)}</q>. That is what condition <code>none</code> shows "
            "the model.</p>"
            if default
            else ""
        )
        + table_html(rows, ["condition", *kinds])
        + report.figure_html(baseline_figure(rates, counts))
        + f"<h3>What the model saw: one example prompt ({html.escape(kinds[0])}) rendered "
        "under each condition</h3>"
        + rendered_prompts_html(model, texts[kinds[0]][0], conditions, names)
        + f"<h3>Example responses ({html.escape(names.get('none', 'none'))})</h3>"
        + "".join(examples)
        + "<h3>The judge's verdicts, by condition</h3>"
        + judged_table_html(chosen, texts, responses, names)
    )
    report.add(
        "Baseline: refusal by condition and kind",
        body,
        {
            "baseline": rates,
            "baseline_counts": counts_dict(counts),
            "baseline_conditions": names,
            "intervals": {**INTERVAL, "seed": seed},
            "template_default_system_prompt": default,
        },
    )
    for message in judge_warnings(rates, responses):
        report.warn(message)
    low = low_refusal_warning(verdicts, names.get("none", "none"))
    if low:
        report.warn(low)
    return rates
