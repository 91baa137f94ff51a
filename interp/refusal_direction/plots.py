"""Pure plotly builders for the refusal direction: results in, `go.Figure` out."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import plotly.graph_objects as go
import torch

from interp.refusal_direction.selection import ScoreTable, Selection

__all__ = ["projection_figure", "rates_figure", "score_heatmaps", "pareto_figure"]

_LAYOUT = {"template": "plotly_white", "height": 380}


def score_heatmaps(table: ScoreTable, selection: Selection | None = None) -> go.Figure:
    """Three heatmaps over layer x position: bypass, induce and KL scores."""
    from plotly.subplots import make_subplots

    names = (
        "bypass score (harmful, ablated)",
        "induce score (harmless, +r)",
        "KL (harmless, ablated)",
    )
    fig = make_subplots(rows=1, cols=3, subplot_titles=names, horizontal_spacing=0.08)
    for k, (values, scale) in enumerate(
        ((table.bypass, "RdBu_r"), (table.induce, "RdBu_r"), (table.kl, "Viridis")), start=1
    ):
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
                x=[selection.direction.position],
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


def pareto_figure(table: ScoreTable, selection: Selection | None = None) -> go.Figure:
    """Bypass score against KL for every candidate, the Pareto front highlighted."""
    rows = table.rows()
    front = table.pareto()
    fig = go.Figure()
    fig.add_scatter(
        x=[r["kl"] for r in rows],
        y=[r["bypass"] for r in rows],
        mode="markers",
        name="candidates",
        text=[f"layer {r['layer']}, {r['position']}" for r in rows],
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
    fig.add_hline(y=table.base_harmful, line_dash="dot", annotation_text="harmful, no ablation")
    fig.update_layout(
        title="Refusal left after ablation vs. damage on harmless prompts",
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
