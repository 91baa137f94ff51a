"""The evidence behind the refusal-direction selection, as report HTML and metrics.

The tokens the refusal score uses (decoded, each one's share of the model's greedy
refusals, the total coverage), the bootstrap of the validation prompts (each candidate's
intervals, pass share and selected share, and whether the selection is stable), and the
check by generation of the top candidates; plus the page warnings they raise. Used by
`interp.report.refusal_direction`.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping
from typing import Any

from interp.refusal_direction import GenerationCheck, RefusalTokens, Selection
from interp.report.page import Report, table_html

__all__ = [
    "candidate_rows",
    "check_html",
    "stability_html",
    "stability_metrics",
    "tokens_html",
    "warn_selection",
]


def _r(value: Any, digits: int = 4) -> float:
    return round(float(value), digits)


def _json(value: Any) -> Any:
    """Floats rounded to 6 digits, NaN and inf as None (strict JSON); anything else as is."""
    if not isinstance(value, float):
        return value
    return _r(value, 6) if math.isfinite(value) else None


def stability_metrics(selection: Selection) -> dict[str, Any] | None:
    """The `stability` block of metrics.json for the selected candidate (None: no bootstrap)."""
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


def candidate_rows(selection: Selection) -> list[dict[str, Any]]:
    """Every candidate with finite scores, JSON-ready (rounded)."""
    out = []
    for row in selection.rows():
        if not math.isfinite(row["bypass"]):
            continue
        out.append({k: _json(v) for k, v in row.items()})
    return out


def tokens_html(tokens: RefusalTokens) -> str:
    """The refusal tokens, decoded, with each one's share and the coverage they reach."""
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


def stability_html(selection: Selection, n_rows: int = 12) -> str:
    """The bootstrap statement and the `n_rows` most often selected / passing candidates."""
    st = selection.stability
    if st is None:
        return "<p>No bootstrap (n_resamples = 0): the selection's stability is not measured.</p>"
    share = selection.selected_share
    verdict = (
        f"stable (at least {selection.config.min_selected_share:.0%})"
        if selection.stable
        else f"<b>unstable</b> (below {selection.config.min_selected_share:.0%})"
    )
    none = (
        f" In {st.none_share:.0%} of the resamples no candidate passes at all."
        if st.none_share > 0
        else ""
    )
    lead = (
        f"<p>Stability: the validation prompts were resampled {st.n_resamples} times (seed "
        f"{st.seed}); in each, the same filters and ranking were applied to the resampled "
        f"per-prompt scores. The selected candidate passes the filters in "
        f"{selection.pass_share:.0%} "
        f"of the resamples and is selected in <b>{share:.0%}</b>: {verdict}. "
        f"{none} Intervals are {st.level:.0%} bootstrap quantiles.</p>"
    )
    rows = [r for r in selection.rows() if math.isfinite(r["bypass"])]
    rows.sort(key=lambda r: (-r.get("selected_share", 0.0), -r.get("pass_share", 0.0), r["bypass"]))
    body = [
        [
            f"layer {r['layer']}, {r['position']}",
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


def check_html(check: GenerationCheck | None) -> str:
    """The check by generation: score rank and generation rank of each checked candidate."""
    if check is None:
        return ""
    rows = [
        [
            f"layer {c.layer}, {c.column}",
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


def warn_selection(report: Report, selection: Selection, check: GenerationCheck | None) -> None:
    """Page warnings: low token coverage, an unstable selection, a better one by generation."""
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
