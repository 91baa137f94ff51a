"""The "Probes and maps" report section: probes per layer, the SafeSwitch prober, DRO geometry.

Metrics keys: `probes` (accuracy/AUROC per layer, best layer, transfer, and `controls`: the
same probe on the mean input embedding of the user's tokens, `bag_of_embeddings`, and at the
best layer on labels shuffled with a fixed seed, `shuffled_labels`; and `refusal_counts`:
condition -> kind -> `interp.report.counts.RateCount` of the greedy refusals that label the
refusal axis), `safeswitch_prober` (the report's one SafeSwitch prober, `shared_prober`,
scored on the measured prompts: stage accuracies, flag F1, training and evaluation counts) and `safety_prompt_shift` (condition -> kind -> shift along the
refusal direction at the best layer). The last two are learned from the model's own answers
and are `{"skipped": reason}` below `interp.MIN_PER_CLASS` examples per class.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
from transformer_lens.model_bridge import TransformerBridge

from interp import plots
from interp.activations import collect_activations
from interp.data import HARMFUL_KINDS, split_by_kind
from interp.dro import (
    ConditionData,
    collect_conditions,
    dro_figure,
    dro_map,
    prompt_shift_figure,
    shift_by_layer,
)
from interp.errors import TooFewExamplesError
from interp.min_samples import MIN_PER_CLASS, require_per_class
from interp.model import ModelInfo
from interp.probes import ProbeSweep, fit_probes_per_layer
from interp.projection import project
from interp.report.counts import RateCount, count_table, counts_dict
from interp.report.page import table_html
from interp.report.prober import shared_prober
from interp.report.prompts import PromptSets, texts_by_kind
from interp.safeswitch import prober_features
from interp.sites import Site

__all__ = ["BAG_OF_EMBEDDINGS", "SHUFFLED_LABELS", "add_probes", "probe_controls"]

logger = logging.getLogger(__name__)

DEFAULT_CONDITIONS = ("default", "short", "mistral")
#: Which refusal direction each figure uses (its caption).
_REFUSAL_BOUNDARY = (
    "Refusal direction used: the refusal boundary, a logistic regression of the model's own "
    "greedy refusals (judge <code>dro</code>) on the 4-D PCA of resid_post at the last prompt "
    "token, layer {layer} (the harmful-vs-harmless probe's best layer), pooled over conditions."
)
_SHIFT_AXIS = (
    "Refusal direction used: per layer, the unit difference of means of resid_post at the last "
    "prompt token between queries the model refused and those it answered (its own greedy "
    "answers, pooled over every condition and kind), with the harmful-vs-harmless component "
    "projected out; the marked layer {layer} is the harmful-vs-harmless probe's best layer. "
    "It is not the Refusal direction section's selected direction."
)
#: Names of the two control probes (figure legend and `metrics["probes"]["controls"]` keys).
BAG_OF_EMBEDDINGS = "bag-of-embeddings control"
SHUFFLED_LABELS = "label-shuffled control"


def probe_controls(
    model: TransformerBridge,
    texts: Sequence[str],
    labels: Sequence[int],
    acts: Any,
    sweep: ProbeSweep,
    *,
    seed: int = 0,
    batch_size: int = 32,
) -> dict[str, dict[str, Any]]:
    """The two controls a layer-wise probe must beat, fitted exactly as the probes are.

    * bag of embeddings: the probe on the mean input embedding (`embed`, `W_E` rows) of the
      user's tokens (`mean_user`): what the words alone give, with no processing by a layer;
    * shuffled labels: the probe at the sweep's best layer on labels permuted with `seed`:
      what a probe of this size reaches by fitting noise on this many prompts.

    Args:
        model: The bridge.
        texts: The probed user messages, in the rows' order.
        labels: Their 0/1 labels.
        acts: The probed activations [n_layers, n, d_model] (rows as `texts`).
        sweep: The probe sweep on `acts` (its best layer, and the split's seed is `seed`).
        seed: Seed of the split (as the sweep's) and of the permutation.
        batch_size: Prompts per forward pass.

    Returns:
        `{"bag_of_embeddings": {...}, "shuffled_labels": {...}}`, each with `accuracy` and
        `auroc` on the held-out rows.
    """
    site = Site("embed")
    emb = collect_activations(
        model, texts, [site], positions=("mean_user",), batch_size=batch_size, progress=False
    ).get(site, "mean_user")
    bag = fit_probes_per_layer(emb[None], labels, seed=seed, n_boot=0)
    best = sweep.layers.index(sweep.best_layer)
    permuted = np.random.default_rng(seed).permutation(np.asarray(labels))
    shuffled = fit_probes_per_layer(
        acts[best : best + 1], permuted, layers=[sweep.best_layer], seed=seed, n_boot=0
    )
    return {
        "bag_of_embeddings": {
            "accuracy": round(bag.accuracy[0], 4),
            "auroc": round(bag.auroc[0], 4),
            "site": site.label,
            "position": "mean_user",
        },
        "shuffled_labels": {
            "accuracy": round(shuffled.accuracy[0], 4),
            "auroc": round(shuffled.auroc[0], 4),
            "layer": sweep.best_layer,
            "permutation_seed": seed,
        },
    }


def _transfer(data: ConditionData, sweep: Any) -> dict[str, float]:
    """Accuracy at the best layer of the no-prompt probes on other conditions and kinds."""
    base_rows = data.rows(("harmful", "harmless"))
    labels = [data.labels[i] for i in base_rows]
    best = sweep.layers.index(sweep.best_layer)
    out = {}
    for cond, acts in data.acts.items():
        if cond != "none":
            got = sweep.transfer(acts[:, base_rows], labels, n_boot=0)
            out[f"none->{cond}"] = round(got.accuracy[best], 4)
    hard = data.rows(("jailbreak", "borderline"))
    if len(hard) and len({data.labels[i] for i in hard}) == 2:
        got = sweep.transfer(data.acts["none"][:, hard], [data.labels[i] for i in hard], n_boot=0)
        out["harmful_harmless->jailbreak_borderline"] = round(got.accuracy[best], 4)
    return out


def _prober_metrics(
    report: Any,
    model: TransformerBridge,
    train: PromptSets,
    test: PromptSets,
    seed: int,
    minimum: int,
) -> dict[str, Any]:
    """Score the report's SafeSwitch prober (`shared_prober`, fitted on `train`) on `test`.

    The prober is the one the SafeSwitch section switches with: fitted once per report.

    Raises:
        TooFewExamplesError: Its training answers hold fewer than `minimum` compliant answers
            or refusals (the stage-2 labels).
    """
    shared = shared_prober(report, model, train, seed=seed, min_per_class=minimum)
    texts = texts_by_kind(test)
    flat = [t for v in texts.values() for t in v]
    harmful = [int(kind in HARMFUL_KINDS) for kind, v in texts.items() for _ in v]
    feats = prober_features(model, flat, system=shared.system, max_new_tokens=16)
    hit1, hit2 = shared.prober.hits(feats, harmful)
    return {
        **shared.prober.evaluate(feats, harmful),
        "accuracy_counts": {
            f"stage{i}": RateCount.from_flags(hit.tolist(), seed=seed).to_dict()
            for i, hit in ((1, hit1), (2, hit2))
        },
        "n_train": shared.counts,
        "n_eval": {kind: len(v) for kind, v in texts.items()},
        "min_per_class": minimum,
    }


def _refusal_table(
    data: ConditionData, kinds: Sequence[str], seed: int
) -> dict[str, dict[str, RateCount]]:
    """Refusal counts (condition -> kind) of the greedy answers that label the refusal axis."""
    return count_table(
        {
            cond: {k: [flags[i] for i in data.rows([k]).tolist()] for k in kinds}
            for cond, flags in data.refused.items()
        },
        seed=seed,
    )


def _cell(block: dict[str, Any]) -> str:
    """A `RateCount.to_dict` block as its table cell."""
    low, high = block["interval"] or (float("nan"), float("nan"))
    return RateCount(block["k"], block["n"], low, high).cell()


def _refusal_counts(data: ConditionData) -> dict[str, int]:
    """Refusals and compliant answers pooled over every condition (the refusal axis's labels)."""
    refused = [r for cond in data.acts for r in data.refused[cond]]
    return {"refusals": sum(refused), "compliant answers": len(refused) - sum(refused)}


def _claim(sweep: ProbeSweep, controls: dict[str, dict[str, Any]], n: int, name: str) -> str:
    """The best-layer sentence, stated against both controls."""
    acc = sweep.best_accuracy
    bag = controls["bag_of_embeddings"]["accuracy"]
    shuffled = controls["shuffled_labels"]["accuracy"]
    return (
        f"<p>Linear probes (harmful vs harmless, last prompt token, resid_post) on {n} queries "
        f"of {html.escape(name)}, 25% held out. Layer {sweep.best_layer} reaches accuracy "
        f"{acc:.3f}; the bag-of-embeddings control (the same probe on the mean input "
        f"embedding of the user's tokens) reaches {bag:.3f}, so the layer adds "
        f"{acc - bag:+.3f} over the words alone; the label-shuffled control (labels permuted, "
        f"layer {sweep.best_layer}) reaches {shuffled:.3f}. Each line is the same probe "
        "trained and tested under one system prompt; the horizontal lines are the controls.</p>"
    )


def add_probes(
    report: Any,
    model: TransformerBridge,
    info: ModelInfo,
    prompt_sets: PromptSets,
    *,
    train: PromptSets | None = None,
    conditions: Sequence[str] = DEFAULT_CONDITIONS,
    max_new_tokens: int = 16,
    n_boot: int = 200,
    seed: int = 0,
    batch_size: int = 32,
    min_per_class: int = MIN_PER_CLASS,
) -> dict[str, Any]:
    """Measure probes (with their controls), the prober and the safety-prompt shift.

    Args:
        report: The `interp.report.Report` under construction.
        model: The bridge.
        info: Its `ModelInfo`.
        prompt_sets: kind -> the measured prompts (`PromptSet` or strings; needs "harmful"
            and "harmless").
        train: kind -> training prompts of the SafeSwitch prober (the report's, shared with
            the SafeSwitch section); without it the measured sets are split 50 / 25 / 25
            (`interp.data.split_by_kind`, as the SafeSwitch section does) and the prober is
            fitted on the first part and scored on the last.
        conditions: Safety-prompt names compared with no system prompt.
        max_new_tokens: Length of the greedy answers that give the refusal labels.
        n_boot: Bootstrap resamples for the accuracy intervals.
        seed: Seed of the splits and of the shuffled-label control.
        batch_size: Prompts per forward pass.
        min_per_class: Refusals and compliant answers needed by the parts learned from the
            model's answers (the SafeSwitch prober, the refusal axis of the shift); below it
            that part is skipped with its reason at the top of the section.

    Returns:
        The metrics added to the report.
    """
    boxes = ""
    texts = texts_by_kind(prompt_sets)
    prober_test: PromptSets = prompt_sets
    if train is None:
        train, _, prober_test = split_by_kind(prompt_sets, seed=seed)
    with report.timed("probes"):
        data = collect_conditions(
            model, texts, conditions, max_new_tokens=max_new_tokens, batch_size=batch_size
        )
        refusal_counts = _refusal_table(data, list(texts), seed)
        base_rows = data.rows(("harmful", "harmless"))
        labels = [data.labels[i] for i in base_rows]
        sweeps = {
            cond: fit_probes_per_layer(acts[:, base_rows], labels, seed=seed, n_boot=n_boot)
            for cond, acts in data.acts.items()
        }
        sweep = sweeps["none"]
        controls = probe_controls(
            model, [data.texts[i] for i in base_rows], labels, data.acts["none"][:, base_rows],
            sweep, seed=seed, batch_size=batch_size,
        )  # fmt: skip
        shifts: dict[str, dict[str, list[float]]] = {}
        layer = sweep.best_layer
        best = sweep.layers.index(layer)
        at_best: dict[str, Any]
        try:
            require_per_class(
                "the refusal axis of the safety-prompt shift (the model's own greedy answers)",
                _refusal_counts(data), minimum=min_per_class,
                fix="Pass more prompts of the kinds the model refuses and answers.",
            )  # fmt: skip
            shifts = shift_by_layer(data, list(texts))
            at_best = {c: {k: v[best] for k, v in per.items()} for c, per in shifts.items()}
        except TooFewExamplesError as err:
            boxes += report.skip_part("safety_prompt_shift", "the safety-prompt shift", str(err))
            at_best = {"skipped": str(err)}
        prober: dict[str, Any]
        try:
            prober = _prober_metrics(report, model, train, prober_test, seed, min_per_class)
        except TooFewExamplesError as err:
            boxes += report.skip_part("safeswitch_prober", "the SafeSwitch prober", str(err))
            prober = {"skipped": str(err)}
        fig_acc = plots.probe_accuracy_figure(
            sweeps,
            controls={
                BAG_OF_EMBEDDINGS: controls["bag_of_embeddings"]["accuracy"],
                SHUFFLED_LABELS: controls["shuffled_labels"]["accuracy"],
            },
        )
        maps = [
            project({c: a[i, base_rows] for c, a in data.acts.items()}, labels,
                    [data.kinds[j] for j in base_rows], layer=lyr)
            for i, lyr in enumerate(sweep.layers)
        ]  # fmt: skip
        dro = dro_map(
            {c: a[best, base_rows] for c, a in data.acts.items()},
            labels,
            [data.kinds[j] for j in base_rows],
            {c: [r[j] for j in base_rows] for c, r in data.refused.items()},
            layer=layer,
        )
    metrics = {
        "probes": {
            **sweep.to_dict(),
            "transfer": _transfer(data, sweep),
            "controls": controls,
            "refusal_counts": counts_dict(refusal_counts),
        },
        "safeswitch_prober": prober,
        "safety_prompt_shift": at_best,
    }
    names = {"none": "no system prompt", **{c: c for c in conditions}}
    body = (
        boxes
        + _claim(sweep, controls, len(base_rows), info.name)
        + report.figure_html(fig_acc)
        + "<p>PCA of the queries with and without each safety prompt (slider: layer).</p>"
        + report.figure_html(plots.map_figure(maps))
        + "<h3>Refusals of the greedy answers that label the refusal axis</h3>"
        + f"<p>{max_new_tokens} new tokens, judge <code>dro</code>; each cell: rate "
        "(refused/prompts) [95% percentile bootstrap interval].</p>"
        + table_html(
            [[names.get(c, c), *(per[k] for k in texts)] for c, per in refusal_counts.items()],
            ["condition", *texts],
        )
        + f"<p>DRO-style view at layer {layer}: boundaries fitted in the 4-D PCA space. "
        f"{_REFUSAL_BOUNDARY.format(layer=layer)}</p>" + report.figure_html(dro_figure(dro))
    )
    if "skipped" not in prober:
        body += (
            "<p>The SafeSwitch prober (fitted once in this report and shared with the "
            f"SafeSwitch section; trained on {html.escape(str(prober['n_train']))}), scored "
            f"on {html.escape(str(prober['n_eval']))}: stage 1 (harmful?) accuracy "
            f"{_cell(prober['accuracy_counts']['stage1'])}, stage 2 (will comply?) accuracy "
            f"{_cell(prober['accuracy_counts']['stage2'])}, flag F1 {prober['flag_f1']:.3f}.</p>"
        )
    if shifts:
        body += f"<p>{_SHIFT_AXIS.format(layer=layer)}</p>" + report.figure_html(
            prompt_shift_figure(shifts, best_layer=layer)
        )
    report.add("Probes and maps", body, metrics)
    return metrics
