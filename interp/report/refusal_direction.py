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
    layer_cut,
    pareto_figure,
    rates_figure,
    refusal_tokens,
    score_candidates,
    score_heatmaps,
    select_direction,
    selectable_layers,
    sweep_candidates,
    verify_by_generation,
)
from interp.refusal_direction.tokens import as_refusal_tokens
from interp.report.counts import count_table, counts_dict
from interp.report.judged import judged_table_html
from interp.report.page import Report, table_html, with_error_bars
from interp.report.refusal_direction_evidence import (
    candidate_rows,
    check_html,
    stability_html,
    stability_metrics,
    tokens_html,
    warn_selection,
)

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
        "refusal_counts": counts_dict(count_table(evaluation.refused)),
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
        "stability": stability_metrics(selection),
        "candidates": candidate_rows(selection),
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


def _unscored(selection: Selection) -> str:
    """A note on the layers left unscored because the layer filter removes them anyway."""
    table = selection.table
    cut = layer_cut(max(table.layers) + 1, selection.config.max_layer_fraction)
    skipped = [
        layer
        for i, layer in enumerate(table.layers)
        if layer >= cut and bool(table.bypass[i].isnan().all())
    ]
    if not skipped:
        return ""
    return (
        f" (layers {min(skipped)}&ndash;{max(skipped)} are not scored: the layer filter "
        "removes them, so their scores could not change the selection)"
    )


def _select(table: ScoreTable, config: SelectionConfig) -> tuple[Selection, list[str]]:
    """`select_direction`, relaxing the filters step by step when nothing passes.

    First the KL limit doubles, up to three times; if still nothing passes, the induce filter
    is dropped and the KL ladder starts again (a small model's diff-in-means vector, added
    at coefficient 1, may not make harmless prompts refuse at the first token, while
    ablating it still removes refusals). A report should still show the score table and the
    best available trade-off: the body states the filters actually used, and each relaxation
    is returned as a note for the page's warnings.

    Raises:
        DirectionError: Nothing passes even the loosest filters (KL 8x, no induce filter).
    """
    notes: list[str] = []
    first: DirectionError | None = None
    ladder = [replace(config, max_kl=config.max_kl * 2**k) for k in range(4)]
    ladder += [replace(c, min_induce=float("-inf")) for c in ladder]
    for step, tried in enumerate(ladder):
        try:
            selection = select_direction(table, tried)
        except DirectionError as err:
            if step == len(ladder) - 1:
                raise
            first = first if step else err
            continue
        if step:
            notes.append(
                f"no candidate passed the filters (KL <= {config.max_kl:g}, induce > "
                f"{config.min_induce:g}): {first}. Selected with KL <= {tried.max_kl:g}"
                + (
                    " and without the induce filter (no candidate that passes the KL limit "
                    "makes harmless prompts refuse at the first token when added at "
                    "coefficient 1)"
                    if tried.min_induce == float("-inf")
                    else ""
                )
            )
            logger.warning("refusal direction: %s", notes[-1])
        return selection, notes
    raise AssertionError("unreachable")


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
    counts = count_table(evaluation.refused)
    rows = [
        [
            c,
            *(counts[c][k] for k in kinds),
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
        f"scored on validation prompts with single forward passes"
        f"{_unscored(selection)}. Selected: layer {d.layer}, "
        f"{d.site.stream}, position {html.escape(d.position)} (bypass {selection.bypass:.3f}, "
        f"induce {selection.induce:.3f}, KL {selection.kl:.4f}); filters: KL &le; "
        f"{selection.config.max_kl}, induce &gt; {selection.config.min_induce}, layer &lt; "
        f"int({selection.config.max_layer_fraction:g} &middot; L). Baseline refusal score: "
        f"harmful {selection.table.base_harmful:.3f}, harmless "
        f"{selection.table.base_harmless:.3f}.</p>"
        + tokens_html(tokens)
        + stability_html(selection)
        + report.figure_html(score_heatmaps(selection.table, selection))
        + report.figure_html(pareto_figure(selection.table, selection))
        + check_html(check)
        + "<h3>Before / after (greedy, DRO substring judge; KL and CE on harmless)</h3>"
        + table_html(rows, ["condition", *kinds, "KL", "CE"])
        + f"<p>Max |logit| difference, orthogonalised weights vs. hook ablation: "
        f"{evaluation.orthogonalized_max_logit_diff_vs_hooks:.2e}. ActAdd: "
        f"{evaluation.actadd_coeff:g}&middot;r at layer {evaluation.actadd_layer}.</p>"
        + report.figure_html(with_error_bars(rates_figure(evaluation.refusal_rate), counts))
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
            bootstrap), `score_all_layers` (False: layers the layer filter removes are
            not scored), `actadd_coeff` (1.0), `refusal_tokens` (ids; derived from the model's
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
        config = options.get("selection") or SelectionConfig()
        table = score_candidates(
            model,
            candidates,
            val["harmful"],
            val["harmless"],
            tokens,
            system=system,
            batch_size=batch_size,
            min_per_class=minimum,
            layers=None
            if options.get("score_all_layers")
            else selectable_layers(model.cfg.n_layers, config),
        )
        selection, notes = _select(table, config)
        for note in notes:
            report.warn(f"refusal direction: {note}")
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
    warn_selection(report, selection, check)
    metrics = direction_metrics(selection, evaluation, check)
    report.fitted["refusal_direction"] = {
        "direction": selection.direction,
        "actadd_coeff": evaluation.actadd_coeff,
        "actadd_layer": evaluation.actadd_layer,
    }
    body = _body(report, selection, evaluation, test, int(options.get("n_examples", 2)), check)
    report.add("Refusal direction", body, {"refusal_direction": metrics})
    return metrics
