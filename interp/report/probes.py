"""The "Probes and maps" report section: probes per layer, the SafeSwitch prober, DRO geometry.

Metrics keys: `probes` (accuracy/AUROC per layer, best layer, transfer), `safeswitch_prober`
(stage accuracies and flag F1) and `safety_prompt_shift` (condition -> kind -> shift along the
refusal direction at the best layer).
"""

from __future__ import annotations

import html
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from transformer_lens.model_bridge import TransformerBridge

from interp import plots
from interp.dro import (
    ConditionData,
    collect_conditions,
    dro_figure,
    dro_map,
    prompt_shift_figure,
    shift_by_layer,
)
from interp.model import ModelInfo
from interp.probes import fit_probes_per_layer
from interp.projection import project
from interp.safeswitch import SafeSwitchProber, prober_features

__all__ = ["add_probes"]

logger = logging.getLogger(__name__)

DEFAULT_CONDITIONS = ("default", "short", "mistral")


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
    model: TransformerBridge, data: ConditionData, seed: int, max_new_tokens: int
) -> dict[str, float]:
    """Fit the SafeSwitch prober on half the queries and score it on the other half."""
    feats = prober_features(model, data.texts, max_new_tokens=max_new_tokens)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(data.texts))
    train, test = order[: len(order) // 2], order[len(order) // 2 :]
    harmful = np.asarray(data.labels)
    complied = np.asarray(feats.complied)
    if len(set(harmful[train])) < 2 or len(set(complied[train])) < 2:
        logger.warning("the prober needs both classes of each label; skipping it")
        return {}
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
    return prober.evaluate(sub, harmful[test])


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
) -> dict[str, Any]:
    """Measure probes, the prober and the safety-prompt shift; append the section.

    Args:
        report: The `interp.report.Report` under construction.
        model: The bridge.
        info: Its `ModelInfo`.
        prompt_sets: kind -> user messages (needs "harmful" and "harmless").
        conditions: Safety-prompt names compared with no system prompt.
        max_new_tokens: Length of the greedy answers that give the refusal labels.
        n_boot: Bootstrap resamples for the accuracy intervals.
        seed: Seed of the splits.
        batch_size: Prompts per forward pass.

    Returns:
        The metrics added to the report.
    """
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
        shifts = shift_by_layer(data, list(prompt_sets))
        prober = _prober_metrics(model, data, seed, max_new_tokens)
        layer = sweep.best_layer
        best = sweep.layers.index(layer)
        at_best = {c: {k: v[best] for k, v in per.items()} for c, per in shifts.items()}
        fig_acc = plots.probe_accuracy_figure(sweeps)
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
        "probes": {**sweep.to_dict(), "transfer": _transfer(data, sweep)},
        "safeswitch_prober": prober,
        "safety_prompt_shift": at_best,
    }
    body = (
        f"<p>Linear probes (harmful vs harmless, last prompt token, resid_post) on "
        f"{len(base_rows)} queries of {html.escape(info.name)}, 25% held out; best layer "
        f"{layer} with accuracy {sweep.best_accuracy:.3f}. Each line is the same probe trained "
        "and tested under one system prompt.</p>"
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
