"""The "Comparison" report section: every method on the same held-out prompts, one judge.

Runs after the method sections and reuses what they fitted (`Report.fitted`): the refusal
direction (ablation as the attack, ActAdd as steering), the SafeSwitch and the DRO soft prompt,
so nothing is fitted twice. A method whose section did not run or was skipped gets no row; the
page says why and `metrics.json` records it under `comparison.not_fitted`.

Writes the `comparison` block of `metrics.json` (`interp.comparison.Comparison.to_dict`)::

    {methods: {name: {family, rates: {kind: {refused, n, rate, low, high}}, safety,
     over_refusal, kl_harmless, ce_harmless, seconds, cost, not_applicable}},
     order, n, reference, judge, max_new_tokens, interval, not_fitted: {name: reason}}
"""

from __future__ import annotations

import html
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from transformer_lens.model_bridge import TransformerBridge

from interp.comparison import (
    TABLE_HEADER,
    Comparison,
    Method,
    ablation_method,
    actadd_method,
    baseline_method,
    compare,
    comparison_figure,
    prompt_methods,
    safeswitch_method,
    soft_prompt_method,
)
from interp.model import ModelInfo
from interp.report.page import Report, condition_names, table_html

__all__ = ["add_comparison", "fitted_methods"]

logger = logging.getLogger(__name__)

#: Fitted method -> the report section that fits it.
_SECTION_OF = {"ablation": "refusal_direction", "actadd": "refusal_direction",
               "safeswitch": "safeswitch", "dro": "dro"}  # fmt: skip


def _why_missing(report: Report, section: str) -> str:
    skipped = report.metrics.get(section, {})
    if isinstance(skipped, Mapping) and "skipped" in skipped:
        return f"the {section} section was skipped: {skipped['skipped']}"
    return f"the {section} section did not run in this report (add it to --sections)"


def fitted_methods(report: Report, *, batch_size: int = 64) -> tuple[list[Method], dict[str, str]]:
    """Methods built from what earlier sections fitted, and name -> reason for the rest."""
    methods: list[Method] = []
    missing: dict[str, str] = {}
    found = report.fitted.get("refusal_direction")
    if found is not None:
        direction = found["direction"]
        methods.append(ablation_method(direction, batch_size=batch_size))
        methods.append(actadd_method(
            direction, found["actadd_coeff"], found["actadd_layer"], batch_size=batch_size
        ))  # fmt: skip
    if "safeswitch" in report.fitted:
        methods.append(safeswitch_method(report.fitted["safeswitch"], batch_size=batch_size))
    if "dro" in report.fitted:
        methods.append(soft_prompt_method(report.fitted["dro"], batch_size=batch_size))
    have = {m.name for m in methods}
    for name, section in _SECTION_OF.items():
        if name not in have:
            missing[name] = _why_missing(report, section)
    return methods, missing


def _body(
    report: Report, comparison: Comparison, missing: Mapping[str, str], names: Mapping[str, str]
) -> str:
    rows = [[names.get(r[0], r[0]), *r[1:]] for r in comparison.table()]
    counts = ", ".join(f"{k}: {n}" for k, n in comparison.n.items())
    notes = "".join(
        f"<li><b>{html.escape(m.name)}</b>: n/a in the table: {html.escape(m.not_applicable)}</li>"
        for m in comparison.methods
        if m.not_applicable
    )
    absent = (
        "<div class='warnings'><p>Methods not compared (not fitted):</p><ul>"
        + "".join(f"<li><b>{html.escape(k)}</b>: {html.escape(v)}</li>" for k, v in missing.items())
        + "</ul></div>"
        if missing
        else ""
    )
    return (
        f"<p>Every method on the same held-out prompts ({counts}), greedy, "
        f"{comparison.max_new_tokens} new tokens, judge {html.escape(comparison.judge)}. "
        "Safety: refusal of harmful and jailbreak requests pooled; over-refusal: refusal of "
        "borderline requests. KL: first-token KL(unmodified || method) on harmless prompts; CE: "
        "per-token cross-entropy of the unmodified model's greedy harmless answers under the "
        f"method (unmodified: {comparison.reference_ce:.4f}). Cost: wall time over plain greedy "
        f"decoding of the same prompts in this run ({comparison.reference_seconds:.2f} s). "
        "Intervals: 95% percentile bootstrap, seed "
        f"{comparison.seed}, in metrics.json.</p>"
        + absent
        + table_html(rows, list(TABLE_HEADER))
        + (f"<ul>{notes}</ul>" if notes else "")
        + report.figure_html(comparison_figure(comparison))
    )


def add_comparison(
    report: Report,
    model: TransformerBridge,
    info: ModelInfo,  # noqa: ARG001 - the shared section signature
    prompt_sets: Mapping[str, Any],
    *,
    methods: Sequence[Method] | None = None,
    extra_methods: Sequence[Method] = (),
    max_new_tokens: int = 32,
    batch_size: int = 64,
    seed: int = 0,
) -> dict[str, Any]:
    """Compare every method on the report's held-out prompts and append the section.

    Args:
        report: The report; methods fitted by its earlier sections are reused.
        model: The bridge.
        info: Its `ModelInfo`.
        prompt_sets: kind -> held-out prompts (harmful, jailbreak, borderline, harmless), the
            sets the other sections evaluate on.
        methods: The rows (default: the template default, every human safety prompt, then
            whatever earlier sections fitted).
        extra_methods: Rows appended to those (SafeInfer, CAST, ...).
        max_new_tokens: Answer length.
        batch_size: Prompts per forward pass.
        seed: Seed of the bootstrap intervals.

    Returns:
        The `comparison` metrics block.
    """
    missing: dict[str, str] = {}
    if methods is None:
        fitted, missing = fitted_methods(report, batch_size=batch_size)
        methods = [baseline_method(batch_size=batch_size), *prompt_methods(batch_size=batch_size)]
        methods += fitted
    chosen = [*methods, *extra_methods]
    with report.timed("comparison"):
        comparison = compare(
            model, chosen, prompt_sets, max_new_tokens=max_new_tokens, batch_size=batch_size,
            seed=seed,
        )  # fmt: skip
    block = {**comparison.to_dict(), "not_fitted": missing}
    for name, reason in missing.items():
        logger.warning("comparison: no %s row: %s", name, reason)
    names = condition_names(model, ["none"])
    report.add("Comparison", _body(report, comparison, missing, names), {"comparison": block})
    return block
