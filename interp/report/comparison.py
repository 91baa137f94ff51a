"""The "Comparison" report section: every method on the same held-out prompts, one judge.

Runs after the method sections and reuses what they fitted (`Report.fitted`): the refusal
direction (ablation as the attack, ActAdd as steering), the SafeSwitch and the DRO soft prompt,
so nothing is fitted twice. The two methods no other section fits are fitted here on the
training prompts, both on top of the report's refusal direction: SafeInfer (`interp.safeinfer`:
safety amplification alone, guided decoding alone, and both) and conditional activation
steering (`interp.cast`). A method that cannot be built gets no row; the page says why and
`metrics.json` records it under `comparison.not_fitted`.

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

from interp.cast import CAST
from interp.comparison import (
    COMPARISON_KINDS,
    TABLE_HEADER,
    Comparison,
    Method,
    ablation_method,
    actadd_method,
    baseline_method,
    compare,
    comparison_figure,
    decoder_method,
    intervention_method,
    prompt_methods,
    safeswitch_method,
    soft_prompt_method,
)
from interp.data import texts_of
from interp.directions import Direction
from interp.interventions import DirectionalAblation
from interp.model import ModelInfo
from interp.report.page import Report, condition_names, table_html
from interp.report.prompts import PromptSets, texts_by_kind
from interp.safeinfer import GuidedDecoding, SafeInfer

__all__ = [
    "SAFEINFER_N_PROMPTS",
    "SAFEINFER_N_SEARCH_PROMPTS",
    "add_comparison",
    "fitted_methods",
    "trained_methods",
]

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
        # Added where the direction was taken, as in the Refusal direction section.
        methods.append(actadd_method(direction, found["actadd_coeff"], batch_size=batch_size))
    if "safeswitch" in report.fitted:
        methods.append(safeswitch_method(report.fitted["safeswitch"], batch_size=batch_size))
    if "dro" in report.fitted:
        methods.append(soft_prompt_method(report.fitted["dro"], batch_size=batch_size))
    have = {m.name for m in methods}
    for name, section in _SECTION_OF.items():
        if name not in have:
            missing[name] = _why_missing(report, section)
    return methods, missing


#: SafeInfer's settings in the report: the paper's coefficient and alpha, fewer ICL prompts
#: and a head search over the first half of the layers, so that it fits the report's time.
SAFEINFER_N_PROMPTS = 32
SAFEINFER_N_SEARCH_PROMPTS = 16


def trained_methods(
    report: Report,
    model: TransformerBridge,
    train: PromptSets,
    *,
    batch_size: int = 64,
) -> tuple[list[Method], dict[str, str]]:
    """SafeInfer (SA, sGDS, both) and CAST, fitted on `train` over the report's direction."""
    found = report.fitted.get("refusal_direction")
    names = ("safeinfer_sa", "safeinfer_sgds", "safeinfer", "cast")
    if found is None:
        why = "they build on the refusal direction, and " + _why_missing(
            report, "refusal_direction"
        )
        return [], dict.fromkeys(names, why)
    harmful = texts_of(train.get("harmful", []))
    harmless = texts_of(train.get("harmless", []))
    if not harmful or not harmless:
        return [], dict.fromkeys(names, "no harmful and harmless training prompts were given")
    direction = found["direction"]
    n_layers = int(model.cfg.n_layers)
    with report.timed("comparison_fit_safeinfer"):
        safeinfer = SafeInfer(
            n_prompts=SAFEINFER_N_PROMPTS,
            n_search_prompts=SAFEINFER_N_SEARCH_PROMPTS,
            search_layers=range(max(1, n_layers // 2)),
        ).fit(model, harmful, direction=direction)
    report.fitted["safeinfer"] = safeinfer
    guided = GuidedDecoding(alpha=float(safeinfer.alpha), unsafe=(DirectionalAblation(direction),))
    methods = [
        intervention_method(
            "safeinfer_sa", "defence", [safeinfer.amplification()], batch_size=batch_size
        ),
        decoder_method("safeinfer_sgds", "defence", guided, batch_size=batch_size,
                       not_applicable="guided decoding has no single-model next-token "
                       "distribution to compare"),
        decoder_method("safeinfer", "defence", safeinfer, batch_size=batch_size,
                       not_applicable="guided decoding has no single-model next-token "
                       "distribution to compare"),
    ]  # fmt: skip
    with report.timed("comparison_fit_cast"):
        cast = CAST(direction, coeff=found["actadd_coeff"], steer_layer=found["actadd_layer"]).fit(
            model, harmful, harmless
        )
    report.fitted["cast"] = cast
    methods.append(
        decoder_method("cast", "defence", cast, batch_size=batch_size,
                       not_applicable="the gate decides per prompt from a first pass; its "
                       "first-token distribution is not computed")
    )  # fmt: skip
    return methods, {}


def _cells(comparison: Comparison) -> list[list[Any]]:
    """`Comparison.table()` rows with every rate as its `RateCount` (count and interval)."""
    rows = []
    for result, row in zip(comparison.methods, comparison.table(), strict=True):
        counted = [*(result.rates[k] for k in COMPARISON_KINDS), result.safety, result.over_refusal]
        rows.append([*row[:2], *counted, *row[2 + len(counted) :]])
    return rows


def _actadd_site(direction: Direction) -> str:
    """Where ActAdd adds the direction: its own site (`add_at_site`)."""
    site = direction.site
    return f"resid_pre.{site.layer}" if site.stream == "resid_pre" else site.label


def direction_caption(report: Report) -> str:
    """Which refusal direction the methods built on it use: site, position, how selected."""
    found = report.fitted.get("refusal_direction")
    if found is None:
        return ""
    direction: Direction = found["direction"]
    return (
        "<p>Refusal direction used by ablation, ActAdd, SafeInfer and CAST: the Refusal "
        f"direction section's, {html.escape(direction.site.label)} (layer {direction.layer}) "
        f"at position <code>{html.escape(direction.position)}</code>, "
        f"{html.escape(direction.operation)}; ActAdd adds it at "
        f"{html.escape(_actadd_site(direction))} and CAST at resid_pre.{found['actadd_layer']}, "
        f"with coefficient {found['actadd_coeff']:.3g}.</p>"
    )


def _body(
    report: Report, comparison: Comparison, missing: Mapping[str, str], names: Mapping[str, str]
) -> str:
    rows = [[names.get(r[0], r[0]), *r[1:]] for r in _cells(comparison)]
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
        "Each rate: rate (refused/prompts) [95% percentile bootstrap interval, seed "
        f"{comparison.seed}].</p>"
        + direction_caption(report)
        + absent
        + table_html(rows, list(TABLE_HEADER))
        + (f"<ul>{notes}</ul>" if notes else "")
        + report.figure_html(comparison_figure(comparison))
    )


def add_comparison(
    report: Report,
    model: TransformerBridge,
    info: ModelInfo,  # noqa: ARG001 - the shared section signature
    prompt_sets: PromptSets,
    *,
    train: PromptSets | None = None,
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
        train: kind -> training prompts for the methods fitted here (SafeInfer, CAST); they
            are left out without it (the page says so).
        methods: The rows (default: the template default, every human safety prompt, then
            whatever earlier sections fitted, then SafeInfer and CAST).
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
        if train is None:
            missing.update(dict.fromkeys(
                ("safeinfer_sa", "safeinfer_sgds", "safeinfer", "cast"),
                "no training prompts were given to fit them on",
            ))  # fmt: skip
        else:
            extra, why = trained_methods(report, model, train, batch_size=batch_size)
            methods += extra
            missing.update(why)
    chosen = [*methods, *extra_methods]
    with report.timed("comparison"):
        comparison = compare(
            model, chosen, texts_by_kind(prompt_sets), max_new_tokens=max_new_tokens, batch_size=batch_size,
            seed=seed,
        )  # fmt: skip
    block = {**comparison.to_dict(), "not_fitted": missing}
    for name, reason in missing.items():
        logger.warning("comparison: no %s row: %s", name, reason)
    names = condition_names(model, ["none"])
    report.add("Comparison", _body(report, comparison, missing, names), {"comparison": block})
    return block
