"""Pure plotly builders: result objects in, `go.Figure` out (never shown, never written).

Every builder finishes with `style`, the one shared look (template, fonts, palette, size).
Sections: shared style; probes; maps and geometry. Add new builders under a section heading.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import plotly.graph_objects as go

from interp.probes import ProbeSweep
from interp.projection import Projection

__all__ = [
    "map_traces",
    "CONDITION_SYMBOLS",
    "KIND_COLORS",
    "map_figure",
    "probe_accuracy_figure",
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
    sweeps: ProbeSweep | Mapping[str, ProbeSweep],
    *,
    title: str = "Linear probe accuracy by layer",
    controls: Mapping[str, float] | None = None,
) -> go.Figure:
    """Held-out accuracy per layer with bootstrap bands, one line per condition.

    The best layer of the first sweep is marked with a dashed vertical line. Each entry of
    `controls` (name -> held-out accuracy of a control probe, e.g. a bag-of-embeddings or a
    label-shuffled probe) is drawn as a horizontal dotted line across every layer, so that a
    layer's accuracy can be read against what the control reaches.
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
    span = [min(first.layers), max(first.layers)]
    for i, (name, value) in enumerate((controls or {}).items()):
        fig.add_scatter(
            x=span,
            y=[value, value],
            mode="lines",
            line={"color": ("#444", "#999")[i % 2], "dash": ("dot", "dashdot")[i % 2]},
            name=f"{name} ({value:.3f})",
            meta="control",
        )
    low = min([0.4, *[v - 0.05 for v in (controls or {}).values()]])
    return style(
        fig,
        title,
        xaxis={"title": "layer"},
        yaxis={"title": "held-out accuracy", "range": [max(0.0, low), 1.02]},
    )


# ------------------------------------------------------------------------ maps and geometry


def map_traces(proj: Projection, reference: str) -> list[go.Scatter]:
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
    fig = go.Figure(data=map_traces(projs[0], reference))
    if len(projs) > 1:
        # Each frame carries its own axis titles: the explained variance is the layer's own.
        fig.frames = [
            go.Frame(
                data=map_traces(p, reference),
                name=n,
                layout={"xaxis": {"title": {"text": x}}, "yaxis": {"title": {"text": y}}},
            )
            for p, n, (x, y) in zip(projs, names, map(_axis_titles, projs), strict=True)
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
    x, y = _axis_titles(projs[0])
    return style(fig, title, height=560, xaxis={"title": x}, yaxis={"title": y})


def _axis_titles(proj: Projection) -> tuple[str, str]:
    """Axis titles of one map: the method and its explained variance, e.g. PCA 1 (23%)."""
    ratio = proj.explained_variance_ratio
    first, second = (
        f"{proj.method.upper()} {i + 1}"
        + (f" ({ratio[i]:.0%})" if ratio and ratio[i] == ratio[i] else "")
        for i in (0, 1)
    )
    return first, second
