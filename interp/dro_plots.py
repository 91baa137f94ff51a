"""Plotly figures of DRO training and evaluation (pure: results in, `go.Figure` out).

The map of where human-prompt and DRO-prompt representations land is `plots.dro_figure`
applied to `SoftPromptEvaluation.dro_map(anchor)`; this module adds the loss curve and the
before / after bars.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from interp.plots import PALETTE, style

__all__ = ["dro_loss_figure", "dro_refusal_figure", "dro_shift_figure"]

_TERMS: tuple[tuple[str, str], ...] = (
    ("total", "L (total)"),
    ("refusal", "L_r"),
    ("harm", "L_h"),
)
_CONDITION_COLORS = {"none": "#7f7f7f", "human": "#1f77b4", "dro": "#d62728"}


def dro_loss_figure(
    history: Sequence[Mapping[str, float]], *, title: str = "DRO training loss"
) -> go.Figure:
    """Loss terms per optimisation step; L_U (off-subspace movement) on the right axis."""
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    steps = list(range(len(history)))
    for i, (key, name) in enumerate(_TERMS):
        fig.add_trace(
            go.Scatter(
                x=steps, y=[h[key] for h in history], mode="lines", name=name,
                line={"color": PALETTE[i]},
            ),
            secondary_y=False,
        )  # fmt: skip
    fig.add_trace(
        go.Scatter(
            x=steps, y=[h["off_subspace"] for h in history], mode="lines", name="L_U",
            line={"color": PALETTE[3], "dash": "dot"},
        ),
        secondary_y=True,
    )  # fmt: skip
    fig.update_yaxes(title_text="BCE (log 2 = 0.693 at step 0)", secondary_y=False)
    fig.update_yaxes(title_text="L_U", secondary_y=True)
    return style(fig, title, xaxis={"title": "step"})


def dro_refusal_figure(
    refusal: Mapping[str, Mapping[str, float]],
    *,
    title: str = "Refusal rate on held-out prompts: no prompt, human prompt, DRO prompt",
) -> go.Figure:
    """Grouped bars: kind on x, one bar per condition (none / human / dro)."""
    kinds = list(refusal)
    conditions = list(dict.fromkeys(c for row in refusal.values() for c in row))
    fig = go.Figure()
    for i, cond in enumerate(conditions):
        fig.add_bar(
            x=kinds,
            y=[refusal[k].get(cond, float("nan")) for k in kinds],
            name=cond,
            marker_color=_CONDITION_COLORS.get(cond, PALETTE[i % len(PALETTE)]),
        )
    return style(fig, title, barmode="group", yaxis={"title": "refusal rate", "range": [0, 1.05]})


def dro_shift_figure(
    shift: Mapping[str, Mapping[str, float]],
    *,
    title: str = "Movement along the refusal direction relative to no prompt",
) -> go.Figure:
    """Grouped bars of each kind's mean shift toward refusal under the human and DRO prompts."""
    kinds = list(shift)
    fig = go.Figure()
    for i, cond in enumerate(("human", "dro")):
        fig.add_bar(
            x=kinds,
            y=[shift[k].get(cond, float("nan")) for k in kinds],
            name=cond,
            marker_color=_CONDITION_COLORS.get(cond, PALETTE[i]),
        )
    fig.add_hline(y=0, line_color="#999")
    return style(fig, title, barmode="group", yaxis={"title": "shift toward refusal (PCA units)"})
