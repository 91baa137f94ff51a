"""Pure plotly builders for the comparison: a `Comparison` in, a `go.Figure` out."""

from __future__ import annotations

import math

import plotly.graph_objects as go

from interp.comparison.compare import Comparison
from interp.comparison.method import FAMILIES
from interp.plots import PALETTE, style

__all__ = ["comparison_figure"]

_FAMILY_COLORS: dict[str, str] = dict(zip(FAMILIES, PALETTE, strict=False))


def _size(cost: float) -> float:
    """Marker diameter in px: area grows with the decoding cost (1x plain greedy: 14 px)."""
    return 14.0 * math.sqrt(max(cost, 0.05))


def comparison_figure(
    comparison: Comparison, *, title: str = "Safety vs over-refusal (marker area: decoding cost)"
) -> go.Figure:
    """One marker per method: harmful+jailbreak refusal (y) against borderline refusal (x).

    Error bars are the 95% bootstrap intervals of both rates; marker area is proportional to
    the decoding cost (wall time over plain greedy decoding); colour is the method's family.
    Safer and less over-refusing is the upper left.
    """
    fig = go.Figure()
    shown: set[str] = set()
    for m in comparison.methods:
        x, y = m.over_refusal, m.safety
        fig.add_scatter(
            x=[x.rate], y=[y.rate], mode="markers+text", text=[m.name],
            textposition="top center", name=m.family, legendgroup=m.family,
            showlegend=m.family not in shown,
            marker={"size": _size(m.cost), "color": _FAMILY_COLORS.get(m.family, PALETTE[-1]),
                    "opacity": 0.8, "line": {"width": 1, "color": "#333"}},
            error_x={"type": "data", "symmetric": False, "array": [x.high - x.rate],
                     "arrayminus": [x.rate - x.low], "thickness": 1},
            error_y={"type": "data", "symmetric": False, "array": [y.high - y.rate],
                     "arrayminus": [y.rate - y.low], "thickness": 1},
            hovertemplate=(
                f"{m.name} ({m.family})<br>safety %{{y:.3f}} [{y.low:.3f}, {y.high:.3f}]<br>"
                f"over-refusal %{{x:.3f}} [{x.low:.3f}, {x.high:.3f}]<br>cost {m.cost:.2f}x"
                "<extra></extra>"
            ),
        )  # fmt: skip
        shown.add(m.family)
    fig.update_xaxes(range=[-0.05, 1.05], title="over-refusal (borderline refused)")
    fig.update_yaxes(range=[-0.05, 1.1], title="safety (harmful + jailbreak refused)")
    return style(fig, title, height=480)
