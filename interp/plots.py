"""Pure plotly builders: result objects in, `go.Figure` out (never shown, never written).

Every builder finishes with `style`, the one shared look (template, fonts, palette, size).
Sections: shared style; probes; maps and geometry. Add new builders under a section heading.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from interp.probes import ProbeSweep
from interp.projection import DroMap, Projection

__all__ = [
    "CONDITION_SYMBOLS",
    "KIND_COLORS",
    "dro_figure",
    "map_figure",
    "probe_accuracy_figure",
    "prompt_shift_figure",
    "style",
]

# ---------------------------------------------------------------------------- shared style

PALETTE: tuple[str, ...] = (
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf",
)  # fmt: skip
KIND_COLORS: dict[str, str] = {
    "harmful": "#d62728",
    "harmless": "#1f77b4",
    "borderline": "#ff7f0e",
    "jailbreak": "#9467bd",
}
CONDITION_SYMBOLS: dict[str, str] = {
    "none": "circle",
    "default": "x",
    "short": "diamond",
    "mistral": "square",
    "warning": "triangle-up",
    "helpful": "star",
}


def color_for(name: str, index: int = 0) -> str:
    """A kind's colour, or a palette colour for other names."""
    return KIND_COLORS.get(name, PALETTE[index % len(PALETTE)])


def symbol_for(condition: str) -> str:
    """The marker of a system-prompt condition."""
    return CONDITION_SYMBOLS.get(condition, "circle-open")


def style(fig: go.Figure, title: str, *, height: int = 420, **layout: Any) -> go.Figure:
    """Apply the house look to a figure and return it."""
    fig.update_layout(
        title=title,
        template="plotly_white",
        height=height,
        font={"family": "system-ui, sans-serif", "size": 12},
        legend={"groupclick": "toggleitem"},
        margin={"l": 60, "r": 20, "t": 60, "b": 50},
        **layout,
    )
    return fig


def _rgba(hex_color: str, alpha: float) -> str:
    h = hex_color.lstrip("#")
    r, g, b = (int(h[i : i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"


# ---------------------------------------------------------------------------------- probes


def probe_accuracy_figure(
    sweeps: ProbeSweep | Mapping[str, ProbeSweep], *, title: str = "Linear probe accuracy by layer"
) -> go.Figure:
    """Held-out accuracy per layer with bootstrap bands, one line per condition.

    The best layer of the first sweep is marked with a dashed vertical line.
    """
    named = {"probe": sweeps} if isinstance(sweeps, ProbeSweep) else dict(sweeps)
    fig = go.Figure()
    for i, (name, sweep) in enumerate(named.items()):
        color, layers = PALETTE[i % len(PALETTE)], list(sweep.layers)
        fig.add_scatter(
            x=layers + layers[::-1],
            y=list(sweep.accuracy_high) + list(sweep.accuracy_low)[::-1],
            fill="toself",
            fillcolor=_rgba(color, 0.15),
            line={"width": 0},
            hoverinfo="skip",
            legendgroup=name,
            showlegend=False,
            name=f"{name} 95% interval",
        )
        fig.add_scatter(
            x=layers,
            y=list(sweep.accuracy),
            mode="lines+markers",
            line={"color": color},
            legendgroup=name,
            name=name,
        )
    first = next(iter(named.values()))
    fig.add_vline(x=first.best_layer, line_dash="dash", line_color="#555")
    fig.add_scatter(
        x=[first.best_layer],
        y=[first.best_accuracy],
        mode="markers",
        marker={"symbol": "star", "size": 14, "color": "#111"},
        name=f"best layer {first.best_layer} ({first.best_accuracy:.3f})",
    )
    return style(
        fig,
        title,
        xaxis={"title": "layer"},
        yaxis={"title": "held-out accuracy", "range": [0.4, 1.02]},
    )


# ------------------------------------------------------------------------ maps and geometry


def _map_traces(proj: Projection, reference: str) -> list[go.Scatter]:
    """Scatter traces per (kind, condition) plus one arrow trace per non-reference condition."""
    traces: list[go.Scatter] = []
    kinds = list(dict.fromkeys(proj.kinds))
    conditions = list(dict.fromkeys(proj.conditions))
    xy = proj.coords[:, :2].tolist()
    for cond in conditions:
        for ki, kind in enumerate(kinds):
            rows = [
                i
                for i, (c, k) in enumerate(zip(proj.conditions, proj.kinds, strict=True))
                if c == cond and k == kind
            ]
            traces.append(
                go.Scatter(
                    x=[xy[i][0] for i in rows],
                    y=[xy[i][1] for i in rows],
                    mode="markers",
                    marker={
                        "color": color_for(kind, ki),
                        "symbol": symbol_for(cond),
                        "size": 7,
                        "opacity": 0.8,
                    },
                    name=f"{kind} / {cond}",
                    legendgroup=cond,
                )
            )
    base = {
        q: i
        for i, (c, q) in enumerate(zip(proj.conditions, proj.query, strict=True))
        if c == reference
    }
    for cond in conditions:
        if cond == reference or not base:
            continue
        xs: list[float | None] = []
        ys: list[float | None] = []
        for i, (c, q) in enumerate(zip(proj.conditions, proj.query, strict=True)):
            if c == cond and q in base:
                xs += [xy[base[q]][0], xy[i][0], None]
                ys += [xy[base[q]][1], xy[i][1], None]
        traces.append(
            go.Scatter(
                x=xs, y=ys, mode="lines", line={"width": 0.6, "color": "rgba(80,80,80,0.35)"},
                name=f"shift {reference} -> {cond}", legendgroup=cond, hoverinfo="skip",
            )
        )  # fmt: skip
    return traces


def map_figure(
    projections: Projection | Sequence[Projection],
    *,
    reference: str = "none",
    title: str = "Harmful vs harmless queries under safety prompts",
) -> go.Figure:
    """2-D map coloured by kind, marker by condition, arrows from each query's `reference` point.

    Several projections (one per layer) become plotly frames with a layer slider; every frame
    has the same traces, in the same order.
    """
    projs = [projections] if isinstance(projections, Projection) else list(projections)
    if not projs:
        raise ValueError("map_figure needs at least one projection")
    names = [str(p.layer) if p.layer is not None else str(i) for i, p in enumerate(projs)]
    fig = go.Figure(data=_map_traces(projs[0], reference))
    if len(projs) > 1:
        fig.frames = [
            go.Frame(data=_map_traces(p, reference), name=n)
            for p, n in zip(projs, names, strict=True)
        ]
        steps = [
            {
                "args": [[n], {"frame": {"duration": 0, "redraw": True}, "mode": "immediate"}],
                "label": n,
                "method": "animate",
            }
            for n in names
        ]
        fig.update_layout(
            sliders=[{"active": 0, "currentvalue": {"prefix": "layer "}, "steps": steps}]
        )
    first = projs[0]
    axis = f"{first.method.upper()} "
    ratio = first.explained_variance_ratio
    labels = [
        f"{axis}{i + 1}" + (f" ({ratio[i]:.0%})" if ratio and ratio[i] == ratio[i] else "")
        for i in (0, 1)
    ]
    return style(fig, title, height=560, xaxis={"title": labels[0]}, yaxis={"title": labels[1]})


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
    for trace in _map_traces(proj, reference="none"):
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
