"""Pure plotly builders for the refusal direction: results in, `go.Figure` out."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import plotly.graph_objects as go
import torch

from interp.refusal_direction.selection import ScoreTable, Selection

__all__ = ["projection_figure", "rates_figure", "score_heatmaps", "pareto_figure"]

_LAYOUT = {"template": "plotly_white", "height": 380}


def _column(selection: Selection) -> str:
    return selection.column or selection.direction.position


def score_heatmaps(table: ScoreTable, selection: Selection | None = None) -> go.Figure:
    """Heatmaps over layer x position: bypass, induce and KL, and the bootstrap pass share.

    The fourth panel (share of bootstrap resamples in which a candidate passes every filter)
    appears when `selection` carries a bootstrap.
    """
    from plotly.subplots import make_subplots

    panels = [
        ("bypass score (harmful, ablated)", table.bypass, "RdBu_r"),
        ("induce score (harmless, +r)", table.induce, "RdBu_r"),
        ("KL (harmless, ablated)", table.kl, "Viridis"),
    ]
    if selection is not None and selection.stability is not None:
        panels.append(("pass share (bootstrap)", selection.stability.pass_share, "Greens"))
    fig = make_subplots(
        rows=1, cols=len(panels), subplot_titles=[p[0] for p in panels], horizontal_spacing=0.06
    )
    for k, (_, values, scale) in enumerate(panels, start=1):
        fig.add_heatmap(
            z=values.tolist(),
            x=list(table.columns),
            y=[str(layer) for layer in table.layers],
            colorscale=scale,
            showscale=False,
            hovertemplate="layer %{y}, %{x}: %{z:.3f}<extra></extra>",
            row=1,
            col=k,
        )
        if selection is not None:
            fig.add_scatter(
                x=[_column(selection)],
                y=[str(selection.direction.layer)],
                mode="markers",
                marker={"symbol": "x", "size": 12, "color": "black"},
                showlegend=False,
                row=1,
                col=k,
            )
    fig.update_yaxes(title_text="layer", row=1, col=1)
    fig.update_layout(title="Candidate scores over layer x position", **_LAYOUT)
    return fig


def _error_bars(rows: list[dict], name: str) -> dict[str, Any] | None:
    """Asymmetric plotly error bars from the rows' `<name>_lo` / `<name>_hi` (None if absent)."""
    if not rows or f"{name}_lo" not in rows[0]:
        return None
    return {
        "type": "data",
        "symmetric": False,
        "array": [r[f"{name}_hi"] - r[name] for r in rows],
        "arrayminus": [r[name] - r[f"{name}_lo"] for r in rows],
        "thickness": 1,
        "width": 2,
    }


def pareto_figure(table: ScoreTable, selection: Selection | None = None) -> go.Figure:
    """Bypass score against KL for every candidate, the Pareto front highlighted.

    With a bootstrapped `selection`, every candidate carries its interval of both scores as
    error bars.
    """
    rows = selection.rows() if selection is not None else table.rows()
    front = table.pareto()
    fig = go.Figure()
    fig.add_scatter(
        x=[r["kl"] for r in rows],
        y=[r["bypass"] for r in rows],
        error_x=_error_bars(rows, "kl"),
        error_y=_error_bars(rows, "bypass"),
        mode="markers",
        name="candidates",
        text=[
            f"layer {r['layer']}, {r['position']}"
            + (f", pass share {r['pass_share']:.2f}" if "pass_share" in r else "")
            for r in rows
        ],
        marker={"color": [r["layer"] for r in rows], "colorscale": "Viridis", "size": 7},
    )
    fig.add_scatter(
        x=[r["kl"] for r in front],
        y=[r["bypass"] for r in front],
        mode="lines+markers",
        name="Pareto front",
        line={"color": "crimson"},
    )
    if selection is not None:
        fig.add_scatter(
            x=[selection.kl],
            y=[selection.bypass],
            mode="markers",
            name="selected",
            marker={"symbol": "star", "size": 16, "color": "black"},
        )
        fig.add_vline(x=selection.config.max_kl, line_dash="dash", annotation_text="max KL")
    fig.add_hline(y=table.base_harmful, line_dash="dot", annotation_text="harmful, no ablation")
    level = selection.stability.level if selection and selection.stability else None
    fig.update_layout(
        title="Refusal left after ablation vs. damage on harmless prompts"
        + (f" ({level:.0%} bootstrap intervals)" if level else ""),
        xaxis={"title": "KL(base || ablated) on harmless", "type": "log"},
        yaxis={"title": "bypass score (refusal log-odds on harmful)"},
        **_LAYOUT,
    )
    return fig


def rates_figure(rates: Mapping[str, Mapping[str, float]]) -> go.Figure:
    """Grouped bars: refusal rate per kind for each condition (base, ablation, ...)."""
    fig = go.Figure()
    for condition, per_kind in rates.items():
        fig.add_bar(name=condition, x=list(per_kind), y=list(per_kind.values()))
    fig.update_layout(
        barmode="group",
        title="Refusal rate by intervention (greedy, DRO substring judge)",
        yaxis={"title": "refusal rate", "range": [0, 1]},
        **_LAYOUT,
    )
    return fig


def projection_figure(
    projections: Mapping[str, torch.Tensor | Sequence[float]], title: str = ""
) -> go.Figure:
    """Bars of the last-token projection on the direction per layer, one series per run."""
    fig = go.Figure()
    for name, values in projections.items():
        vals = values.tolist() if isinstance(values, torch.Tensor) else list(values)
        fig.add_bar(name=name, x=list(range(len(vals))), y=vals)
    fig.update_layout(
        barmode="group",
        title=title or "Projection of the last-token resid_pre on the direction",
        xaxis={"title": "layer"},
        yaxis={"title": "projection on r-hat"},
        **_LAYOUT,
    )
    return fig
