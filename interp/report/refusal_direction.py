"""The "Refusal direction" report section: extract, score, select, intervene, evaluate.

Writes the `refusal_direction` block of `metrics.json`::

    {layer, position, site, bypass_score, induce_score, kl_ablation,
     refusal_rate: {base, ablation, actadd, orthogonalized} -> kind -> rate,
     orthogonalized_max_logit_diff_vs_hooks, selection_filters,
     refusal_tokens (ids), refusal_tokens_info {ids, strings, shares, coverage, ...},
     stability {selected_share, pass_share, intervals, stable, ...},
     candidates [every candidate: scores, intervals, pass / selected share],
     generation_check {rows: score and generation ranks of the top-k, ...}, ...}
"""

from __future__ import annotations

import html
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from transformer_lens.model_bridge import TransformerBridge

from interp.data import split_by_kind, texts_of
from interp.directions import DirectionError
from interp.errors import TooFewExamplesError
from interp.evaluation import SubstringJudge
from interp.min_samples import MIN_PER_CLASS
from interp.model import ModelInfo
from interp.refusal_direction import (
    CONDITIONS,
    DirectionEvaluation,
    GenerationCheck,
    RefusalTokens,
    ScoreTable,
    Selection,
    SelectionConfig,
    evaluate_direction,
    pareto_figure,
    rates_figure,
    refusal_tokens,
    score_candidates,
    score_heatmaps,
    select_direction,
    sweep_candidates,
    verify_by_generation,
)
from interp.refusal_direction.tokens import as_refusal_tokens
from interp.report.judged import judged_table_html
from interp.report.page import Report, table_html

__all__ = ["add_refusal_direction", "direction_metrics"]

logger = logging.getLogger(__name__)

Prompts = Sequence[str] | Any


def _stages(
    prompt_sets: Mapping[str, Prompts], options: Mapping[str, Any]
) -> tuple[Mapping[str, Prompts], Mapping[str, Prompts], dict[str, Prompts]]:
    train, val = options.get("train"), options.get("val")
    test = dict(prompt_sets)
    if train is None or val is None:
        pairs = {k: prompt_sets[k] for k in ("harmful", "harmless")}
        split_train, split_val, split_test = split_by_kind(pairs, seed=options.get("seed", 0))
        train = train or split_train
        val = val or split_val
        test.update(split_test)
    return train, val, test


def _r(value: Any, digits: int = 4) -> float:
    return round(float(value), digits)


def _json(value: Any) -> Any:
    """Floats rounded to 6 digits, NaN and inf as None (strict JSON); anything else as is."""
    if not isinstance(value, float):
        return value
    return _r(value, 6) if math.isfinite(value) else None


def _stability_metrics(selection: Selection) -> dict[str, Any] | None:
    st = selection.stability
    if st is None:
        return None
    i, j = selection.cell
    return {
        "n_resamples": st.n_resamples,
        "seed": st.seed,
        "level": st.level,
        "selected_share": _r(st.selected_share[i, j]),
        "pass_share": _r(st.pass_share[i, j]),
        "min_selected_share": selection.config.min_selected_share,
        "stable": selection.stable,
        "none_passes_share": _r(st.none_share),
        "bypass_interval": [_r(st.bypass_lo[i, j]), _r(st.bypass_hi[i, j])],
        "induce_interval": [_r(st.induce_lo[i, j]), _r(st.induce_hi[i, j])],
        "kl_interval": [_r(st.kl_lo[i, j], 6), _r(st.kl_hi[i, j], 6)],
    }


def _candidate_rows(selection: Selection) -> list[dict[str, Any]]:
    """Every candidate with finite scores, JSON-ready (rounded)."""
    out = []
    for row in selection.rows():
        if not math.isfinite(row["bypass"]):
            continue
        out.append({k: _json(v) for k, v in row.items()})
    return out


def direction_metrics(
    selection: Selection,
    evaluation: DirectionEvaluation,
    check: GenerationCheck | None = None,
) -> dict[str, Any]:
    """The `refusal_direction` block of metrics.json."""
    direction = selection.direction
    tokens = selection.table.tokens or RefusalTokens(selection.table.refusal_tokens)
    metrics: dict[str, Any] = {
        "layer": direction.layer,
        "position": direction.position,
        "site": direction.site.label,
        "bypass_score": round(selection.bypass, 4),
        "induce_score": round(selection.induce, 4),
        "kl_ablation": round(selection.kl, 6),
        "refusal_rate": evaluation.refusal_rate,
        "orthogonalized_max_logit_diff_vs_hooks": evaluation.orthogonalized_max_logit_diff_vs_hooks,
        "kl_harmless": {k: round(v, 6) for k, v in evaluation.kl_harmless.items()},
        "ce_harmless": {k: round(v, 4) for k, v in evaluation.ce_harmless.items()},
        "actadd_coeff": evaluation.actadd_coeff,
        "selection_filters": selection.config.to_dict(),
        "refusal_tokens": list(selection.table.refusal_tokens),
        "refusal_tokens_info": tokens.to_dict(),
        "base_refusal_score": {
            "harmful": round(selection.table.base_harmful, 4),
            "harmless": round(selection.table.base_harmless, 4),
        },
        "direction_operation": direction.operation,
        "stability": _stability_metrics(selection),
        "candidates": _candidate_rows(selection),
    }
    if check is not None:
        best = check.best
        metrics["generation_check"] = {
            "rows": check.rows(),
            "base_refusal_harmful": check.base_harmful_refusal,
            "base_refusal_harmless": check.base_harmless_refusal,
            "judge": check.judge,
            "max_new_tokens": check.max_new_tokens,
            "best_by_generation": {"layer": best.layer, "position": best.column},
            "agrees_with_selection": (best.layer, best.column)
            == (direction.layer, selection.column or direction.position),
        }
    return metrics


def _examples(evaluation: DirectionEvaluation, test: Mapping[str, Prompts], n: int) -> str:
    pairs = (("harmful", "ablation"), ("jailbreak", "ablation"), ("harmless", "actadd"))
    parts: list[str] = []
    for kind, condition in pairs:
        if kind not in test:
            continue
        texts = texts_of(test[kind])
        for i in range(min(n, len(texts))):
            base = evaluation.responses["base"][kind][i]
            new = evaluation.responses[condition][kind][i]
            parts.append(
                f"<p><b>{html.escape(kind)}</b>: {html.escape(texts[i])}</p>"
                f"<table><tr><th class='l'>base</th><th class='l'>{condition}</th></tr>"
                f"<tr><td class='l'><pre>{html.escape(base)}</pre></td>"
                f"<td class='l'><pre>{html.escape(new)}</pre></td></tr></table>"
            )
    return "".join(parts)


def _select(table: ScoreTable, config: SelectionConfig) -> Selection:
    """`select_direction`, relaxing the KL filter (x2, up to three times) when nothing passes.

    A report should still show the score table and the best available trade-off; the body
    states the filters that were actually used, so a relaxation is visible.
    """
    for attempt in range(4):
        try:
            return select_direction(table, config)
        except DirectionError:
            if attempt == 3:
                raise
            relaxed = replace(config, max_kl=2 * config.max_kl)
            logger.warning(
                "no refusal-direction candidate passes max_kl=%g; relaxing to %g",
                config.max_kl,
                relaxed.max_kl,
            )
            config = relaxed
    raise AssertionError("unreachable")


def _tokens_html(tokens: RefusalTokens) -> str:
    names = tokens.strings or tuple(str(t) for t in tokens.ids)
    if tokens.n_refusals:
        rows = [
            [repr(s), t, f"{share:.1%}"]
            for s, t, share in zip(names, tokens.ids, tokens.shares, strict=True)
        ]
        lead = (
            f"<p>Refusal tokens: the first tokens of the model's own greedy refusals, most "
            f"frequent first, until they open at least {tokens.target:.0%} of them. Together "
            f"they open <b>{tokens.coverage:.1%}</b> of {tokens.n_refusals} refusals.</p>"
        )
        return lead + table_html(rows, ["token", "id", "share of refusals"])
    listed = ", ".join(f"{s!r} ({t})" for s, t in zip(names, tokens.ids, strict=True))
    return f"<p>Refusal tokens given by hand: {html.escape(listed)} (coverage not measured).</p>"


def _interval(row: Mapping[str, Any], name: str, fmt: str) -> str:
    if f"{name}_lo" not in row:
        return format(row[name], fmt)
    return f"{row[name]:{fmt}} [{row[f'{name}_lo']:{fmt}}, {row[f'{name}_hi']:{fmt}}]"


def _stability_html(selection: Selection, n_rows: int = 12) -> str:
    st = selection.stability
    if st is None:
        return "<p>No bootstrap (n_resamples = 0): the selection's stability is not measured.</p>"
    share = selection.selected_share
    verdict = (
        "stable"
        if selection.stable
        else f"<b>unstable</b> (below {selection.config.min_selected_share:.0%})"
    )
    lead = (
        f"<p>Stability: the validation prompts were resampled {st.n_resamples} times (seed "
        f"{st.seed}); in each, the same filters and ranking were applied to the resampled "
        f"per-prompt scores. The selected candidate passes the filters in "
        f"{selection.pass_share:.0%} "
        f"of the resamples and is selected in <b>{share:.0%}</b>: {verdict}. "
        f"Intervals are {st.level:.0%} bootstrap quantiles.</p>"
    )
    rows = [r for r in selection.rows() if math.isfinite(r["bypass"])]
    rows.sort(key=lambda r: (-r.get("selected_share", 0.0), -r.get("pass_share", 0.0), r["bypass"]))
    body = [
        [
            f"{r['layer']} {r['position']}",
            _interval(r, "bypass", ".2f"),
            _interval(r, "induce", ".2f"),
            _interval(r, "kl", ".3f"),
            "yes" if r["kept"] else "no",
            f"{r.get('pass_share', math.nan):.2f}",
            f"{r.get('selected_share', math.nan):.2f}",
        ]
        for r in rows[:n_rows]
    ]
    header = ["candidate", "bypass", "induce", "KL", "passes", "pass share", "selected share"]
    return (
        lead
        + table_html(body, header)
        + (
            f"<p>{len(rows) - n_rows} more candidates in metrics.json.</p>"
            if len(rows) > n_rows
            else ""
        )
    )


def _check_html(check: GenerationCheck | None) -> str:
    if check is None:
        return ""
    rows = [
        [
            f"{c.layer} {c.column}",
            c.score_rank,
            c.generation_rank,
            "yes" if c.passes else "no",
            c.ablation_refusal,
            c.actadd_refusal,
        ]
        for c in check.checks
    ]
    header = ["candidate", "score rank", "generation rank", "passes filters",
              "harmful refusal, ablated", "harmless refusal, +r"]  # fmt: skip
    return (
        f"<h3>Check by generation (top {len(rows)} by score, validation prompts)</h3>"
        f"<p>Greedy, {check.max_new_tokens} new tokens, judge {html.escape(check.judge)}. "
        f"Without intervention: harmful refusal {check.base_harmful_refusal:.2f}, harmless "
        f"refusal {check.base_harmless_refusal:.2f}. Generation rank: lowest harmful refusal "
        "under ablation first, then highest harmless refusal with the vector added.</p>"
        + table_html(rows, header)
    )


def _body(
    report: Report,
    selection: Selection,
    evaluation: DirectionEvaluation,
    test: Mapping[str, Prompts],
    n: int,
    check: GenerationCheck | None = None,
) -> str:
    d = selection.direction
    kinds = list(evaluation.refusal_rate["base"])
    rows = [
        [
            c,
            *(evaluation.refusal_rate[c][k] for k in kinds),
            evaluation.kl_harmless.get(c, float("nan")),
            evaluation.ce_harmless.get(c, float("nan")),
        ]
        for c in CONDITIONS
    ]
    streams = sorted({d.site.stream, selection.table.candidates.stream})
    tokens = selection.table.tokens or RefusalTokens(selection.table.refusal_tokens)
    return (
        f"<p>Difference-in-means candidates at {', '.join(streams)} of every layer and the "
        f"positions {', '.join(html.escape(c) for c in selection.table.columns[:8])}"
        f"{' ...' if len(selection.table.columns) > 8 else ''}, "
        f"scored on validation prompts with single forward passes. Selected: layer {d.layer}, "
        f"{d.site.stream}, position {html.escape(d.position)} (bypass {selection.bypass:.3f}, "
        f"induce {selection.induce:.3f}, KL {selection.kl:.4f}); filters: KL &le; "
        f"{selection.config.max_kl}, induce &gt; {selection.config.min_induce}, layer &lt; "
        f"int({selection.config.max_layer_fraction:g} &middot; L). Baseline refusal score: "
        f"harmful {selection.table.base_harmful:.3f}, harmless "
        f"{selection.table.base_harmless:.3f}.</p>"
        + _tokens_html(tokens)
        + _stability_html(selection)
        + report.figure_html(score_heatmaps(selection.table, selection))
        + report.figure_html(pareto_figure(selection.table, selection))
        + _check_html(check)
        + "<h3>Before / after (greedy, DRO substring judge; KL and CE on harmless)</h3>"
        + table_html(rows, ["condition", *kinds, "KL", "CE"])
        + f"<p>Max |logit| difference, orthogonalised weights vs. hook ablation: "
        f"{evaluation.orthogonalized_max_logit_diff_vs_hooks:.2e}. ActAdd: "
        f"{evaluation.actadd_coeff:g}&middot;r at layer {evaluation.actadd_layer}.</p>"
        + report.figure_html(rates_figure(evaluation.refusal_rate))
        + "<h3>Example generations</h3>"
        + _examples(evaluation, test, n)
        + "<h3>The judge's verdicts, by condition</h3>"
        + judged_table_html(
            SubstringJudge("dro"),
            {k: texts_of(v) for k, v in test.items()},
            evaluation.responses,
        )
    )


def add_refusal_direction(
    report: Report,
    model: TransformerBridge,
    info: ModelInfo,  # noqa: ARG001 - the shared section signature
    prompt_sets: Mapping[str, Prompts],
    **options: Any,
) -> dict[str, Any]:
    """Find the refusal direction, evaluate its interventions and append the section.

    Args:
        report: The report to extend.
        model: The bridge.
        info: Its `ModelInfo`.
        prompt_sets: kind -> held-out test prompts (`harmful` and `harmless` required;
            `jailbreak`, `borderline` optional).
        **options: `train` / `val` (kind -> prompts for candidates / scoring; by default the
            harmful and harmless sets are split 50/25/25 by `interp.data.split_by_kind`),
            `system`, `stream` (`resid_pre`) or `sites` (streams to sweep, e.g.
            `("resid_pre", "resid_mid", "resid_post")`), `positions` (`("eoi",)`; also
            `last`, `mean_eoi`, `mean_user`), `selection` (`SelectionConfig`: filters and
            bootstrap), `actadd_coeff` (1.0), `refusal_tokens` (ids; derived from the model's
            refusals by default), `token_coverage` (0.99) and `max_refusal_tokens` (8) for
            that derivation, `generation_check_k` (5 top candidates checked by generation; 0
            turns the check off), `max_new_tokens` (32), `batch_size` (32), `n_examples`
            (2), `min_per_class` (`interp.MIN_PER_CLASS`: refusals needed for the refusal
            tokens, and validation prompts of each kind for the selection).

    Returns:
        The `refusal_direction` metrics block, or `{"skipped": reason}` when there are too
        few refusals or validation prompts (the section then shows the reason, no number).
    """
    try:
        return _measure(report, model, prompt_sets, options)
    except TooFewExamplesError as err:
        logger.warning("refusal direction skipped: %s", err)
        return report.skip("refusal_direction", "Refusal direction", str(err))


def _tokens(
    model: TransformerBridge, harmful: Prompts, options: Mapping[str, Any], minimum: int
) -> RefusalTokens:
    given = options.get("refusal_tokens")
    if given:
        return as_refusal_tokens(given).decoded(model.tokenizer)
    return refusal_tokens(
        model,
        harmful,
        system=options.get("system"),
        batch_size=int(options.get("batch_size", 32)),
        min_per_class=minimum,
        coverage=float(options.get("token_coverage", 0.99)),
        max_tokens=int(options.get("max_refusal_tokens", 8)),
    )


def _warn(report: Report, selection: Selection, check: GenerationCheck | None) -> None:
    tokens = selection.table.tokens
    if tokens is not None and tokens.n_refusals and tokens.coverage < tokens.target:
        report.warn(
            f"refusal direction: the refusal tokens open only {tokens.coverage:.1%} of the "
            f"model's greedy refusals (asked {tokens.target:.0%}); the refusal score misses "
            "the rest. Raise max_refusal_tokens or pass refusal_tokens"
        )
    if selection.stable is False:
        report.warn(
            f"refusal direction: the selected candidate (layer {selection.direction.layer}, "
            f"{selection.column}) is chosen in only {selection.selected_share:.0%} of "
            f"{selection.config.n_resamples} bootstrap resamples of the validation prompts "
            f"(below {selection.config.min_selected_share:.0%}): another validation set could "
            "well pick another direction"
        )
    chosen = [c for c in check.checks if c.score_rank == 1] if check is not None else []
    better = [
        c
        for c in (check.checks if check is not None else ())
        if c.passes and chosen and c.ablation_refusal < chosen[0].ablation_refusal
    ]
    if chosen and chosen[0].passes and better:
        best = min(better, key=lambda c: c.generation_rank)
        report.warn(
            f"refusal direction: ablating layer {best.layer}, {best.column} (score rank "
            f"{best.score_rank}, also passing the filters) leaves less harmful refusal "
            f"({best.ablation_refusal:.2f}) than the selected candidate "
            f"({chosen[0].ablation_refusal:.2f}) on the validation prompts"
        )


def _measure(
    report: Report,
    model: TransformerBridge,
    prompt_sets: Mapping[str, Prompts],
    options: Mapping[str, Any],
) -> dict[str, Any]:
    train, val, test = _stages(prompt_sets, options)
    system = options.get("system")
    batch_size = int(options.get("batch_size", 32))
    max_new_tokens = int(options.get("max_new_tokens", 32))
    minimum = int(options.get("min_per_class", MIN_PER_CLASS))
    with report.timed("refusal_direction_select"):
        tokens = _tokens(model, train["harmful"], options, minimum)
        candidates = sweep_candidates(
            model,
            train["harmful"],
            train["harmless"],
            sites=tuple(options.get("sites") or (options.get("stream", "resid_pre"),)),
            positions=options.get("positions", ("eoi",)),
            system=system,
            batch_size=batch_size,
        )
        table = score_candidates(
            model,
            candidates,
            val["harmful"],
            val["harmless"],
            tokens,
            system=system,
            batch_size=batch_size,
            min_per_class=minimum,
        )
        selection = _select(table, options.get("selection") or SelectionConfig())
    k = int(options.get("generation_check_k", 5))
    check = None
    if k > 0:
        with report.timed("refusal_direction_generation_check"):
            check = verify_by_generation(
                model,
                selection,
                val["harmful"],
                val["harmless"],
                k=k,
                system=system,
                max_new_tokens=max_new_tokens,
                batch_size=batch_size,
                judge=SubstringJudge("dro"),
            )
    with report.timed("refusal_direction_evaluate"):
        evaluation = evaluate_direction(
            model,
            selection.direction,
            test,
            actadd_coeff=float(options.get("actadd_coeff", 1.0)),
            system=system,
            max_new_tokens=max_new_tokens,
            batch_size=batch_size,
            judge=SubstringJudge("dro"),
        )
    _warn(report, selection, check)
    metrics = direction_metrics(selection, evaluation, check)
    report.fitted["refusal_direction"] = {
        "direction": selection.direction,
        "actadd_coeff": evaluation.actadd_coeff,
        "actadd_layer": evaluation.actadd_layer,
    }
    body = _body(report, selection, evaluation, test, int(options.get("n_examples", 2)), check)
    report.add("Refusal direction", body, {"refusal_direction": metrics})
    return metrics
