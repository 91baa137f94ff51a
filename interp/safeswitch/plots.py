"""Pure plotly builders for SafeSwitch: results in, `go.Figure` out."""

from __future__ import annotations

import plotly.graph_objects as go

from interp.plots import color_for, style
from interp.safeswitch.evaluate import SafeSwitchEvaluation

__all__ = ["compliance_figure", "gate_figure"]


def compliance_figure(evaluation: SafeSwitchEvaluation) -> go.Figure:
    """Grouped bars: compliance per kind (x) for each method (one bar colour per method)."""
    fig = go.Figure()
    for i, (method, per_kind) in enumerate(evaluation.compliance.items()):
        kinds = list(per_kind)
        fig.add_bar(
            name=method,
            x=kinds,
            y=[per_kind[k] for k in kinds],
            marker_color=color_for(method, i),
            hovertemplate=method + ", %{x}: %{y:.3f}<extra></extra>",
        )
    fig.update_yaxes(range=[0, 1.05], title="compliance (not refused)")
    return style(fig, "Compliance by method and kind (lower is safer on harmful kinds)")


def gate_figure(evaluation: SafeSwitchEvaluation) -> go.Figure:
    """The prober's two probabilities per request, coloured by kind, with the thresholds."""
    fig = go.Figure()
    thresholds = evaluation.thresholds
    for kind, xs in evaluation.p_harmful.items():
        fig.add_scatter(
            x=list(xs),
            y=list(evaluation.p_complies[kind]),
            mode="markers",
            name=kind,
            marker={"color": color_for(kind), "opacity": 0.7},
        )
    fig.add_vline(x=thresholds[0], line_dash="dash", line_color="grey")
    fig.add_hline(y=thresholds[1], line_dash="dash", line_color="grey")
    fig.update_xaxes(range=[-0.02, 1.02], title="stage 1: P(harmful)")
    fig.update_yaxes(range=[-0.02, 1.02], title="stage 2: P(complies)")
    return style(fig, "SafeSwitch gate: flagged = upper right of both thresholds")
