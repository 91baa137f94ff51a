"""Plotly figures of DRO training and evaluation (pure: results in, `go.Figure` out).

The map of where human-prompt and DRO-prompt representations land is `plots.dro_figure`
applied to `SoftPromptEvaluation.dro_map(anchor)`; this module adds the loss curve and the
before / after bars.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from interp.dro.geometry import DroMap
from interp.plots import PALETTE, color_for, map_traces, style, symbol_for

__all__ = [
    "dro_figure",
    "prompt_shift_figure",
    "dro_loss_figure",
    "dro_refusal_figure",
    "dro_shift_figure",
]

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


def _line(
    boundary: tuple[float, float, float], x_range: tuple[float, float]
) -> tuple[list[float], list[float]]:
    """Two end points of w1 x + w2 y + b = 0 across x_range (vertical if w2 == 0)."""
    w1, w2, b = boundary
    if abs(w2) < 1e-12:
        x0 = -b / w1 if w1 else 0.0
        return [x0, x0], [x_range[0], x_range[1]]
    xs = [x_range[0], x_range[1]]
    return xs, [-(w1 * x + b) / w2 for x in xs]


def dro_figure(dro: DroMap, *, title: str = "Safety prompts in the PCA plane (DRO)") -> go.Figure:
    """Left: points by kind and condition with the harmfulness boundary (dash-dot).

    Right: the same points coloured by refusal with the refusal boundary (dashed). Boundaries
    use the first two weights of logistic regressions fitted in the 4-D PCA space, as in DRO.
    """
    proj = dro.projection
    fig = make_subplots(rows=1, cols=2, subplot_titles=("by kind and condition", "by refusal"))
    for trace in map_traces(proj, reference="none"):
        fig.add_trace(trace, row=1, col=1)
    xy = proj.coords[:, :2]
    fig.add_trace(
        go.Scatter(
            x=xy[:, 0].tolist(), y=xy[:, 1].tolist(), mode="markers",
            marker={
                "color": list(dro.refused), "colorscale": [[0, "#2ca02c"], [1, "#d62728"]],
                "symbol": [symbol_for(c) for c in proj.conditions], "size": 7,
            },
            text=[f"{k} / {c}" for k, c in zip(proj.kinds, proj.conditions, strict=True)],
            name="refused (red) / complied (green)",
        ),
        row=1, col=2,
    )  # fmt: skip
    lo, hi = float(xy[:, 0].min()), float(xy[:, 0].max())
    pad = 0.05 * (hi - lo + 1e-9)
    y_lo, y_hi = float(xy[:, 1].min()), float(xy[:, 1].max())
    for col, boundary, dash, name in (
        (1, dro.harm_boundary, "dashdot", "harmfulness boundary"),
        (2, dro.refusal_boundary, "dash", "refusal boundary"),
    ):
        if any(v != v for v in boundary):  # NaN: no boundary to draw
            continue
        xs, ys = _line(boundary, (lo - pad, hi + pad))
        fig.add_trace(
            go.Scatter(x=xs, y=ys, mode="lines", line={"dash": dash, "color": "#222" if col == 1 else "#777"}, name=name),
            row=1, col=col,
        )  # fmt: skip
    for col in (1, 2):
        fig.update_yaxes(range=[y_lo - pad, y_hi + pad], row=1, col=col)
    return style(fig, title, height=500)


def prompt_shift_figure(
    shifts: Mapping[str, Mapping[str, Sequence[float]]],
    *,
    best_layer: int | None = None,
    title: str = "Shift toward refusal caused by each safety prompt",
) -> go.Figure:
    """Per-layer shift along the refusal direction: colour by kind, dash by condition."""
    fig = go.Figure()
    dashes = ("solid", "dash", "dot", "dashdot", "longdash")
    for ci, (cond, per_kind) in enumerate(shifts.items()):
        for ki, (kind, values) in enumerate(per_kind.items()):
            fig.add_scatter(
                x=list(range(len(values))),
                y=list(values),
                mode="lines",
                line={"color": color_for(kind, ki), "dash": dashes[ci % len(dashes)]},
                name=f"{kind} / {cond}",
            )
    fig.add_hline(y=0, line_color="#999")
    if best_layer is not None:
        fig.add_vline(x=best_layer, line_dash="dash", line_color="#555")
    return style(
        fig, title, xaxis={"title": "layer"}, yaxis={"title": "mean shift along refusal direction"}
    )
