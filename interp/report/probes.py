"""The "Probes and maps" report section: probes per layer, the SafeSwitch prober, DRO geometry.

Metrics keys: `probes` (accuracy/AUROC per layer, best layer, transfer, and `controls`: the
same probe on the mean input embedding of the user's tokens, `bag_of_embeddings`, and at the
best layer on labels shuffled with a fixed seed, `shuffled_labels`), `safeswitch_prober`
(stage accuracies and flag F1) and `safety_prompt_shift` (condition -> kind -> shift along the
refusal direction at the best layer). The last two are learned from the model's own answers
and are `{"skipped": reason}` below `interp.MIN_PER_CLASS` examples per class.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from transformer_lens.model_bridge import TransformerBridge

from interp import plots
from interp.activations import collect_activations
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
from interp.safeswitch import SafeSwitchProber, prober_features
from interp.sites import Site

__all__ = ["BAG_OF_EMBEDDINGS", "SHUFFLED_LABELS", "add_probes", "probe_controls"]

logger = logging.getLogger(__name__)

DEFAULT_CONDITIONS = ("default", "short", "mistral")
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
    model: TransformerBridge, data: ConditionData, seed: int, max_new_tokens: int, minimum: int
) -> dict[str, Any]:
    """Fit the SafeSwitch prober on half the queries and score it on the other half.

    Raises:
        TooFewExamplesError: The training half has fewer than `minimum` compliant answers or
            refusals (the stage-2 labels), or harmful or harmless queries.
    """
    feats = prober_features(model, data.texts, max_new_tokens=max_new_tokens)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(data.texts))
    train, test = order[: len(order) // 2], order[len(order) // 2 :]
    harmful = np.asarray(data.labels)
    complied = np.asarray(feats.complied)
    counts = {
        "compliant answers": int(complied[train].sum()),
        "refusals": int(len(train) - complied[train].sum()),
        "harmful queries": int(harmful[train].sum()),
        "harmless queries": int(len(train) - harmful[train].sum()),
    }
    require_per_class(
        "the SafeSwitch prober (training half: the model's own greedy answers)",
        counts,
        minimum=minimum,
        fix="Pass more prompts of the kinds the model refuses and answers.",
    )
    prober = SafeSwitchProber(seed=seed).fit(
        feats.stage1[train], harmful[train], feats.stage2[train], complied[train]
    )
    sub = type(feats)(
        stage1=feats.stage1[test],
        stage2=feats.stage2[test],
        complied=tuple(int(c) for c in complied[test]),
        responses=tuple(feats.responses[i] for i in test),
        n_decode=feats.n_decode,
    )
    return {**prober.evaluate(sub, harmful[test]), "n_train": counts, "min_per_class": minimum}


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
    prompt_sets: Mapping[str, Sequence[str]],
    *,
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
        prompt_sets: kind -> user messages (needs "harmful" and "harmless").
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
    with report.timed("probes"):
        data = collect_conditions(
            model, prompt_sets, conditions, max_new_tokens=max_new_tokens, batch_size=batch_size
        )
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
            shifts = shift_by_layer(data, list(prompt_sets))
            at_best = {c: {k: v[best] for k, v in per.items()} for c, per in shifts.items()}
        except TooFewExamplesError as err:
            boxes += report.skip_part("safety_prompt_shift", "the safety-prompt shift", str(err))
            at_best = {"skipped": str(err)}
        prober: dict[str, Any]
        try:
            prober = _prober_metrics(model, data, seed, max_new_tokens, min_per_class)
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
        "probes": {**sweep.to_dict(), "transfer": _transfer(data, sweep), "controls": controls},
        "safeswitch_prober": prober,
        "safety_prompt_shift": at_best,
    }
    body = (
        boxes
        + _claim(sweep, controls, len(base_rows), info.name)
        + report.figure_html(fig_acc)
        + "<p>PCA of the queries with and without each safety prompt (slider: layer).</p>"
        + report.figure_html(plots.map_figure(maps))
        + f"<p>DRO-style view at layer {layer}: boundaries fitted in the 4-D PCA space.</p>"
        + report.figure_html(dro_figure(dro))
    )
    if shifts:
        body += report.figure_html(prompt_shift_figure(shifts, best_layer=layer))
    report.add("Probes and maps", body, metrics)
    return metrics
