"""The "SafeSwitch" report section: prober-gated refusal head against its baselines.

Writes the `safeswitch` block of `metrics.json`::

    {compliance: {base, warning_prompt, head_always, safeswitch} -> kind -> rate,
     flag_rate: kind -> rate, head_params_fraction, head_params, model_params, thresholds,
     n_refusal_pairs, head_loss, reduction, judge, system,
     compliance_counts: method -> kind -> {rate, k, n, interval}, flag_counts: kind -> {...},
     interval}

The prober is the report's one (`interp.report.prober.shared_prober`), shared with the probes
section; only the refusal head is fitted here.
"""

from __future__ import annotations

import html
import logging
from typing import Any

from transformer_lens.model_bridge import TransformerBridge

from interp.data import HARMFUL_KINDS, split_by_kind
from interp.errors import EmptyTrainingSetError, TooFewExamplesError
from interp.evaluation import SubstringJudge
from interp.min_samples import MIN_PER_CLASS
from interp.model import ModelInfo
from interp.probes import SingleClassError
from interp.report.counts import INTERVAL, RateCount, count_table, counts_dict
from interp.report.judged import judged_table_html
from interp.report.page import Report, table_html, with_error_bars
from interp.report.prober import shared_prober
from interp.report.prompts import PromptSets, texts_by_kind
from interp.safeswitch import (
    SAFESWITCH_METHODS,
    SafeSwitch,
    SafeSwitchEvaluation,
    compliance_figure,
    evaluate_safeswitch,
    fit_safeswitch,
    gate_figure,
)

__all__ = ["add_safeswitch", "safeswitch_metrics"]

logger = logging.getLogger(__name__)


def safeswitch_counts(
    evaluation: SafeSwitchEvaluation, *, seed: int = 0
) -> tuple[dict[str, dict[str, RateCount]], dict[str, RateCount]]:
    """(method -> kind -> compliance count, kind -> flag count) with their intervals.

    Compliance counts the answers the section's judge (`dro`) does not call refusals, the
    same verdicts as `SafeSwitchEvaluation.compliance`.
    """
    judge = SubstringJudge("dro")
    complied = {
        method: {
            kind: [not r for r in judge.is_refusal(list(answers), list(evaluation.prompts[kind]))]
            for kind, answers in per_kind.items()
        }
        for method, per_kind in evaluation.responses.items()
    }
    flags = count_table({"flag": dict(evaluation.flagged)}, seed=seed)["flag"]
    return count_table(complied, seed=seed), flags


def safeswitch_metrics(
    evaluation: SafeSwitchEvaluation, switch: SafeSwitch, model: TransformerBridge
) -> dict[str, Any]:
    """The `safeswitch` block of metrics.json."""
    head = switch.head
    out = evaluation.to_dict()
    compliance, flags = safeswitch_counts(evaluation)
    out["compliance_counts"] = counts_dict(compliance)
    out["flag_counts"] = {k: c.to_dict() for k, c in flags.items()}
    out["interval"] = {**INTERVAL, "seed": 0}
    reduction = {
        k: round(evaluation.relative_reduction(k), 4)
        for k in HARMFUL_KINDS
        if k in evaluation.compliance["base"]
    }
    drop = {
        k: round(evaluation.compliance["base"][k] - evaluation.compliance["safeswitch"][k], 4)
        for k in evaluation.compliance["base"]
        if k not in HARMFUL_KINDS
    }
    out.update(
        head_params_fraction=round(head.params_fraction(model), 6),
        head_params=head.n_params_,
        model_params=int(sum(p.numel() for p in model.parameters())),
        n_refusal_pairs=head.n_pairs_,
        head_loss={"initial": round(head.initial_loss_, 4), "final": round(head.losses_[-1], 4)},
        compliance_reduction=reduction,
        compliance_drop=drop,
        system=switch.system,
    )
    return out


def _examples(evaluation: SafeSwitchEvaluation, n: int) -> str:
    parts: list[str] = []
    for kind, flagged in evaluation.flagged.items():
        rows = [i for i, f in enumerate(flagged) if f == (kind in HARMFUL_KINDS)][:n]
        for i in rows:
            base = evaluation.responses["base"][kind][i]
            new = evaluation.responses["safeswitch"][kind][i]
            state = "flagged" if flagged[i] else "not flagged"
            parts.append(
                f"<p><b>{html.escape(kind)}</b> ({state}): "
                f"{html.escape(evaluation.prompts[kind][i])}</p>"
                "<table><tr><th class='l'>base</th><th class='l'>SafeSwitch</th></tr>"
                f"<tr><td class='l'><pre>{html.escape(base)}</pre></td>"
                f"<td class='l'><pre>{html.escape(new)}</pre></td></tr></table>"
            )
    return "".join(parts)


def _body(report: Report, evaluation: SafeSwitchEvaluation, metrics: dict[str, Any], n: int) -> str:
    kinds = list(evaluation.compliance["base"])
    compliance, flags = safeswitch_counts(evaluation)
    rows = [[m, *(compliance[m][k] for k in kinds)] for m in SAFESWITCH_METHODS]
    t1, t2 = evaluation.thresholds
    return (
        "<p>SafeSwitch (docs/methods/safeswitch.md): a two-stage prober on the post-final-norm state "
        f"(stage 1 at the last prompt token, threshold {t1:.3g}; stage 2 after the first greedy "
        f"tokens, threshold {t2:.3g}) switches flagged requests to a refusal head, a fine-tuned "
        f"copy of the unembedding ({metrics['head_params']:,} parameters, "
        f"{metrics['head_params_fraction']:.1%} of the model's {metrics['model_params']:,}; "
        f"trained on {metrics['n_refusal_pairs']} of the model's own refusals under the warning "
        f"prompt, loss {metrics['head_loss']['initial']:.3f} &rarr; "
        f"{metrics['head_loss']['final']:.3f}). System prompt: "
        f"{html.escape(str(metrics['system']))}; judge: {html.escape(evaluation.judge)}.</p>"
        "<h3>Compliance (fraction of answers that are not refusals)</h3>"
        "<p>Each cell: rate (complied/prompts) [95% percentile bootstrap interval, seed 0]."
        "</p>"
        + table_html(rows, ["method", *kinds])
        + "<h3>Prober flag rate</h3>"
        + table_html([["flag rate", *(flags[k] for k in kinds)]], ["", *kinds])
        + report.figure_html(with_error_bars(compliance_figure(evaluation), compliance))
        + report.figure_html(gate_figure(evaluation))
        + "<h3>Example answers: base vs SafeSwitch</h3>"
        + _examples(evaluation, n)
        + "<h3>The judge's verdicts, by method</h3>"
        + judged_table_html(SubstringJudge("dro"), evaluation.prompts, evaluation.responses)
    )


def _skip(report: Report, err: Exception) -> dict[str, Any]:
    """Record why SafeSwitch could not be fitted (a model that never refuses, or never complies)."""
    logger.warning("SafeSwitch skipped: %s", err)
    reason = f"SafeSwitch could not be fitted on this model: {err}"
    return report.skip("safeswitch", "SafeSwitch", reason)


def _calibrate(
    model: TransformerBridge,
    switch: SafeSwitch,
    val: PromptSets,
    target_fpr: float,
    batch_size: int,
) -> SafeSwitch:
    by_kind = texts_by_kind(val)
    texts = [t for v in by_kind.values() for t in v]
    labels = [int(kind in HARMFUL_KINDS) for kind, v in by_kind.items() for _ in v]
    return switch.calibrate(model, texts, labels, target_fpr=target_fpr, batch_size=batch_size)


def add_safeswitch(
    report: Report,
    model: TransformerBridge,
    info: ModelInfo,  # noqa: ARG001 - the shared section signature
    prompt_sets: PromptSets,
    *,
    train: PromptSets | None = None,
    val: PromptSets | None = None,
    switch: SafeSwitch | None = None,
    target_fpr: float | None = None,
    system: str | None = "helpful",
    n_train_per_kind: int | None = 64,
    max_new_tokens: int = 32,
    batch_size: int = 64,
    seed: int = 0,
    n_examples: int = 1,
    min_per_class: int = MIN_PER_CLASS,
) -> dict[str, Any]:
    """Fit SafeSwitch, evaluate it against its baselines on the test sets, append the section.

    Args:
        report: The report to extend.
        model: The bridge.
        info: Its `ModelInfo`.
        prompt_sets: kind -> held-out test prompts (harmful, jailbreak, harmless, borderline).
        train: kind -> prompts for the prober and the refusal head; when None every kind of
            `prompt_sets` is split 50 / 25 / 25 into train, val and test (`split_by_kind`).
        val: kind -> validation prompts for threshold calibration (used with `target_fpr`).
        switch: An already fitted SafeSwitch to evaluate (then `train` is not used).
        target_fpr: Calibrate the stage-1 threshold to this false-positive rate on `val`;
            None keeps the default thresholds (0.5, 0.5).
        system: The deployment system prompt (SafeSwitch uses the helpful prompt).
        n_train_per_kind: Training prompts sampled per kind (None: all).
        max_new_tokens: Longest evaluated answer.
        batch_size: Prompts per forward pass.
        seed: Seed of the sampling, the prober and the head.
        n_examples: Example answers shown per kind.
        min_per_class: Refusals and compliant answers the fit needs of each
            (`interp.MIN_PER_CLASS`; see `fit_safeswitch`).

    Returns:
        The `safeswitch` metrics block (`{"skipped": reason}` when the model gives fewer than
        `min_per_class` refusals or compliant answers to learn from).
    """
    test: PromptSets = prompt_sets
    if train is None and switch is None:
        train, split_val, test = split_by_kind(prompt_sets, seed=seed)
        val = val if val is not None else split_val
    with report.timed("safeswitch_fit"):
        if switch is None:
            assert train is not None
            try:
                shared = shared_prober(
                    report, model, train, system=system, n_per_kind=n_train_per_kind,
                    batch_size=batch_size, seed=seed, min_per_class=min_per_class,
                )  # fmt: skip
                switch = fit_safeswitch(
                    model, texts_by_kind(train), system=system, n_per_kind=n_train_per_kind,
                    batch_size=batch_size, seed=seed, min_per_class=min_per_class,
                    prober=shared.prober,
                )  # fmt: skip
            except (EmptyTrainingSetError, SingleClassError, TooFewExamplesError) as err:
                return _skip(report, err)
        if target_fpr is not None and val:
            switch = _calibrate(model, switch, val, target_fpr, batch_size)
    with report.timed("safeswitch_evaluate"):
        evaluation = evaluate_safeswitch(
            model, switch, texts_by_kind(test), max_new_tokens=max_new_tokens, batch_size=batch_size,
            judge=SubstringJudge("dro"),
        )  # fmt: skip
    metrics = safeswitch_metrics(evaluation, switch, model)
    report.fitted["safeswitch"] = switch
    report.add(
        "SafeSwitch", _body(report, evaluation, metrics, n_examples), {"safeswitch": metrics}
    )
    return metrics
