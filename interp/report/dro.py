"""The "DRO" report section: a soft safety prompt trained with DRO, before / after.

Steps: measure the anchor space (final states of harmful and harmless training queries under no
prompt and the human safety prompts, with sampled refusal rates), fit its PCA and probes, train
a `SoftPrompt` from the human prompt `init`, and compare no prompt / human prompt / DRO prompt
on the held-out prompt sets.

Writes the `dro` block of `metrics.json`::

    {refusal: {kind: {none, human, dro}}, loss_start, loss_end, steps,
     shift_along_refusal: {kind: {human, dro}}, init, n_train, config, seconds,
     refusal_counts: {condition: {kind: {rate, k, n, interval}}}, interval}
"""

from __future__ import annotations

import html
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from transformer_lens.model_bridge import TransformerBridge

from interp.data import HARMFUL_KINDS, PromptSet, texts_of
from interp.dro import (
    ANCHOR_CONDITIONS,
    DRO_CONDITIONS,
    AnchorSpace,
    SoftPrompt,
    collect_anchor_data,
    dro_figure,
    dro_loss_figure,
    dro_refusal_figure,
    dro_shift_figure,
    evaluate_soft_prompt,
)
from interp.errors import TooFewExamplesError
from interp.min_samples import MIN_PER_CLASS
from interp.model import ModelInfo
from interp.report.counts import INTERVAL, RateCount, count_table, counts_dict
from interp.report.judged import judged_examples_html
from interp.report.page import table_html, with_error_bars
from interp.report.prompts import PromptSets, prompt_sets_of

__all__ = ["DRO_SECTION_DEFAULTS", "add_dro"]

logger = logging.getLogger(__name__)

#: The section's defaults, sized for the ~1.4M-parameter organism on 2 CPU cores.
DRO_SECTION_DEFAULTS: dict[str, Any] = {
    "init": "short",
    "n_train": 24,
    "n_samples": 2,
    "label_tokens": 6,
    "epochs": 10,
    "batch_size": 32,
    "lr": 1e-2,
    "max_new_tokens": 10,
}


def _training_sets(
    prompt_sets: PromptSets, train: PromptSets | None, n: int, seed: int
) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """(train kind -> texts, held-out kind -> texts).

    Without `train`, every prompt set is split in half with the seeded, stratified
    `PromptSet.split`: one half trains, the other is held out. At most `n` training queries
    per kind are kept (a seeded `PromptSet.sample`).
    """
    measured = prompt_sets_of(prompt_sets)
    if train is None:
        halves = {k: v.split(0.5, seed=seed) for k, v in measured.items()}
        train_sets = {k: _subset(part[0], n, seed) for k, part in halves.items()}
        return train_sets, {k: texts_of(part[1]) for k, part in halves.items()}
    test = {k: texts_of(v) for k, v in measured.items() if len(v)}
    return {k: _subset(v, n, seed) for k, v in prompt_sets_of(train).items()}, test


def _subset(prompts: PromptSet, n: int, seed: int) -> list[str]:
    """At most `n` prompts, drawn with `PromptSet.sample` (the draw depends on texts and seed)."""
    return texts_of(prompts if len(prompts) <= n else prompts.sample(n, seed=seed))


def _by_label(train_sets: Mapping[str, list[str]]) -> tuple[list[str], list[str]]:
    """(queries to refuse: harmful and jailbreak kinds, queries to answer: the other kinds)."""
    refuse = [t for k, v in train_sets.items() if k in HARMFUL_KINDS for t in v]
    answer = [t for k, v in train_sets.items() if k not in HARMFUL_KINDS for t in v]
    return refuse, answer


#: Which refusal direction the DRO figures use (their caption).
_ANCHOR_REFUSAL = (
    "Refusal direction used: the anchor space's, -w_r / |w_r| of the logistic model of the "
    "sampled refusals in the 4-D PCA of the final states (post final norm, last prompt "
    "token) of the training queries under the anchor conditions; not the Refusal direction "
    "section's selected direction."
)


def dro_counts(evaluation: Any, seed: int = 0) -> dict[str, dict[str, RateCount]]:
    """Condition -> kind -> refusal count of the held-out answers (the rates' verdicts)."""
    kinds = list(dict.fromkeys(evaluation.kinds))
    return count_table(
        {
            cond: {k: [f for f, kk in zip(flags, evaluation.kinds, strict=True) if kk == k]
                   for k in kinds}
            for cond, flags in evaluation.refused.items()
        },
        seed=seed,
    )  # fmt: skip


def _table(counts: Mapping[str, Mapping[str, RateCount]], init: str) -> str:
    header = ["kind", "no prompt", f"human ({init})", "DRO"]
    kinds = list(next(iter(counts.values())))
    rows = [[kind, *(counts[c][kind] for c in DRO_CONDITIONS)] for kind in kinds]
    return table_html(rows, header)


def _judged(evaluation: Any, test_sets: Mapping[str, list[str]], init: str) -> str:
    """The judge's verdicts on the held-out answers, one block per condition."""
    names = {"none": "no prompt", "human": f"human ({init})", "dro": "DRO"}
    blocks = []
    for cond, answers in evaluation.responses.items():
        responses: dict[str, list[str]] = {k: [] for k in test_sets}
        refused: dict[str, list[bool]] = {k: [] for k in test_sets}
        for kind, answer, flag in zip(
            evaluation.kinds, answers, evaluation.refused[cond], strict=True
        ):
            responses[kind].append(answer)
            refused[kind].append(bool(flag))
        blocks.append(
            judged_examples_html(names.get(cond, cond), "dro", test_sets, responses, refused)
        )
    return "".join(blocks)


def add_dro(
    report: Any,
    model: TransformerBridge,
    info: ModelInfo,
    prompt_sets: PromptSets,
    *,
    train: PromptSets | None = None,
    init: str = DRO_SECTION_DEFAULTS["init"],
    conditions: Sequence[str] = ANCHOR_CONDITIONS,
    n_train: int = DRO_SECTION_DEFAULTS["n_train"],
    n_samples: int = DRO_SECTION_DEFAULTS["n_samples"],
    label_tokens: int = DRO_SECTION_DEFAULTS["label_tokens"],
    epochs: int = DRO_SECTION_DEFAULTS["epochs"],
    batch_size: int = DRO_SECTION_DEFAULTS["batch_size"],
    lr: float = DRO_SECTION_DEFAULTS["lr"],
    max_new_tokens: int = DRO_SECTION_DEFAULTS["max_new_tokens"],
    seed: int = 0,
    save_to: str | Path | None = None,
    min_per_class: int = MIN_PER_CLASS,
) -> dict[str, Any]:
    """Train a DRO soft prompt, evaluate it on held-out prompts and append the section.

    Args:
        report: The `interp.report.Report` under construction.
        model: The bridge.
        info: Its `ModelInfo`.
        prompt_sets: kind -> held-out user messages (harmful, harmless, borderline, jailbreak).
        train: kind -> training queries. Harmful and jailbreak kinds are the queries to push
            toward refusal, every other kind (harmless, borderline) away from it. Without it,
            the first half of every prompt set trains and the second half is held out.
        init: The human safety prompt the soft prompt starts from.
        conditions: Anchor conditions ("none" and human safety-prompt names).
        n_train: Training queries per kind at most (a seeded sample).
        n_samples: Sampled responses per query and condition for the soft refusal labels.
        label_tokens: Length of each sampled response.
        epochs: DRO epochs.
        batch_size: Queries per DRO step.
        lr: AdamW learning rate (DRO's 1e-3 is the `SoftPrompt` default; the section uses a
            larger one so that a few steps suffice on the organism).
        max_new_tokens: Length of the greedy evaluation responses.
        seed: Seed of the sampling, the training subset and the shuffling.
        save_to: Optional directory to save the soft prompt in (`SoftPrompt.save`).
        min_per_class: Sampled refusals and compliant answers the anchor's refusal model
            needs of each (`interp.MIN_PER_CLASS`); below it the section is skipped.

    Returns:
        The metrics added to the report (`{"dro": ...}`; `{"dro": {"skipped": reason}}`
        when the model gives too few refusals or compliant answers to learn from).
    """
    start = time.perf_counter()
    with report.timed("dro"):
        train_sets, test_sets = _training_sets(prompt_sets, train, n_train, seed)
        refuse, answer = _by_label(train_sets)
        try:
            data = collect_anchor_data(
                model, refuse, answer, conditions=conditions, n_samples=n_samples,
                max_new_tokens=label_tokens, seed=seed, min_per_class=min_per_class,
            )  # fmt: skip
        except TooFewExamplesError as err:
            logger.warning("DRO skipped: %s", err)
            return {"dro": report.skip("dro", "DRO", str(err))}
        anchor = AnchorSpace().fit(*data.stacked())
        fit_start = time.perf_counter()
        soft = SoftPrompt(init, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed)
        soft.fit(model, refuse, answer, anchor)
        train_seconds = time.perf_counter() - fit_start
        evaluation = evaluate_soft_prompt(
            model, soft, test_sets, anchor=anchor, max_new_tokens=max_new_tokens
        )
        if save_to is not None:
            soft.save(save_to)
    counts = dro_counts(evaluation, seed)
    block = {
        **evaluation.to_dict(),
        "refusal_counts": counts_dict(counts),
        "interval": {**INTERVAL, "seed": seed},
        "loss_start": round(soft.history_[0]["total"], 6),
        "loss_end": round(soft.history_[-1]["total"], 6),
        "steps": soft.n_steps_,
        "n_train": {k: len(v) for k, v in train_sets.items()},
        "anchor_refusal_rate": {c: round(float(r.mean()), 4) for c, r in data.refusal.items()},
        "config": {
            "conditions": list(conditions),
            "n_samples": n_samples,
            "label_tokens": label_tokens,
            "max_new_tokens": max_new_tokens,
            "seed": seed,
            **soft.get_params(),
        },  # fmt: skip
        "train_seconds": round(train_seconds, 2),
        "seconds": round(time.perf_counter() - start, 2),
    }
    body = (
        f"<p>DRO on {html.escape(info.name)}: a soft prompt initialised from the "
        f"<b>{html.escape(init)}</b> safety prompt ({len(soft.token_ids_)} tokens), trained for "
        f"{soft.n_steps_} steps on {block['n_train']} queries with L = L_r + 0.01 L_h + 0.001 "
        f"L_U in a {anchor.n_components}-D PCA of final states (anchor conditions: "
        f"{html.escape(', '.join(conditions))}; {n_samples} sampled responses per query for the "
        "soft refusal labels). Refusal rates of greedy responses on held-out prompts; each "
        "cell: rate (refused/prompts) [95% percentile bootstrap interval]:</p>"
        + _table(counts, init)
        + report.figure_html(with_error_bars(dro_refusal_figure(evaluation.refusal), counts))
        + "<p>Where the held-out queries land in the anchor PCA plane under no prompt, the "
        "human prompt and the DRO prompt (lines join a query's points), with the harmfulness "
        f"and refusal boundaries (first two weights of the 4-D probes). {_ANCHOR_REFUSAL}</p>"
        + report.figure_html(
            dro_figure(evaluation.dro_map(anchor), title="Human vs DRO prompt (PCA)")
        )
        + f"<p>Mean movement from no prompt, per kind. {_ANCHOR_REFUSAL}</p>"
        + report.figure_html(dro_shift_figure(evaluation.shift))
        + report.figure_html(dro_loss_figure(soft.history_))
        + "<h3>The judge's verdicts on the held-out answers</h3>"
        + _judged(evaluation, test_sets, init)
    )
    metrics = {"dro": block}
    report.fitted["dro"] = soft
    report.add("DRO", body, metrics)
    return metrics
