"""Explore a direction interactively: base vs. intervened generations, refusal score, projections.

`explore` is the plain function (scripts, tests); `explorer_widget` wraps it in ipywidgets for a
notebook: a prompt box, a direction picker fed by the score table, a mode (none / ablate / add),
a coefficient slider and a layer slider for activation addition.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import plotly.graph_objects as go
import torch
from transformer_lens.model_bridge import TransformerBridge

from interp.activations import collect_batch, resolve_sites
from interp.chat import encode
from interp.directions import Direction
from interp.generation import generate
from interp.interventions import ActAdd, DirectionalAblation, Intervention, apply
from interp.native import last_logits
from interp.refusal_direction.plots import projection_figure
from interp.refusal_direction.selection import ScoreTable, Selection, refusal_score
from interp.sites import Site

__all__ = ["MODES", "ExplorerResult", "explore", "explorer_widget"]

Mode = Literal["none", "ablate", "add"]
MODES: tuple[str, ...] = ("none", "ablate", "add")


@dataclass(frozen=True, eq=False)
class ExplorerResult:
    """What `explore` shows for one prompt.

    Attributes:
        prompt: The user message.
        mode: `none`, `ablate` or `add`.
        coeff: ActAdd coefficient (used by `add`).
        layer: ActAdd layer (used by `add`).
        base_text: Greedy response without intervention.
        intervened_text: Greedy response with the intervention.
        base_score: Refusal log-odds at the first response position (NaN without tokens).
        intervened_score: The same under the intervention.
        base_projection: Last-token resid_pre projection on r-hat per layer, [n_layers].
        intervened_projection: The same under the intervention.
    """

    prompt: str
    mode: str
    coeff: float
    layer: int
    base_text: str
    intervened_text: str
    base_score: float
    intervened_score: float
    base_projection: torch.Tensor
    intervened_projection: torch.Tensor

    def figure(self) -> go.Figure:
        """Projection bars per layer, base and intervened."""
        return projection_figure(
            {"base": self.base_projection, f"{self.mode}": self.intervened_projection}
        )

    def html(self) -> str:
        """Side-by-side responses and scores as an HTML snippet."""

        def column(title: str, text: str, score: float) -> str:
            return (
                f"<div style='flex:1;padding:4px'><b>{html.escape(title)}</b> "
                f"(refusal score {score:.2f})<pre style='white-space:pre-wrap'>"
                f"{html.escape(text)}</pre></div>"
            )

        label = {
            "none": "no intervention",
            "ablate": "ablated",
            "add": f"+{self.coeff:g}·r at layer {self.layer}",
        }
        return (
            "<div style='display:flex'>"
            + column("base", self.base_text, self.base_score)
            + column(label[self.mode], self.intervened_text, self.intervened_score)
            + "</div>"
        )


def _interventions(direction: Direction, mode: str, coeff: float, layer: int) -> list[Intervention]:
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; use one of {', '.join(MODES)}")
    if mode == "ablate":
        return [DirectionalAblation(direction)]
    if mode == "add":
        return [ActAdd(direction, coeff, layer)]
    return []


@torch.no_grad()
def _measure(
    model: TransformerBridge,
    prompt: str,
    direction: Direction,
    tokens: Sequence[int] | None,
    system: str | None,
) -> tuple[float, torch.Tensor]:
    batch = encode(model, [prompt], system)
    sites = resolve_sites(model, ["resid_pre"])
    acts = collect_batch(model, batch, [*sites, Site("ln_final")], ["last"])
    unit = direction.unit
    projection = torch.stack([acts[s.label][0, 0] @ unit for s in sites])
    if not tokens:
        return math.nan, projection
    logits = last_logits(model, batch.tokens, batch.attention_mask)
    return float(refusal_score(logits.cpu(), tokens)[0]), projection


def explore(
    model: TransformerBridge,
    prompt: str,
    direction: Direction,
    mode: Mode | str = "ablate",
    coeff: float = 1.0,
    layer: int | None = None,
    *,
    refusal_tokens: Sequence[int] | None = None,
    system: str | None = None,
    max_new_tokens: int = 32,
) -> ExplorerResult:
    """Generate with and without an intervention and measure the refusal signal.

    Args:
        model: The bridge.
        prompt: A user message.
        direction: The direction to ablate or add.
        mode: `none`, `ablate` (directional ablation everywhere) or `add` (ActAdd).
        coeff: ActAdd coefficient on the raw vector.
        layer: ActAdd layer (the direction's layer by default).
        refusal_tokens: Token ids for the refusal score (NaN scores without them).
        system: System prompt.
        max_new_tokens: Greedy response length.

    Returns:
        Both responses, refusal scores and per-layer projections.
    """
    direction.check(model)
    chosen_layer = direction.layer if layer is None else int(layer)
    items = _interventions(direction, mode, coeff, chosen_layer)
    base = generate(model, [prompt], system=system, max_new_tokens=max_new_tokens)
    base_score, base_proj = _measure(model, prompt, direction, refusal_tokens, system)
    with apply(model, *items):
        new = generate(model, [prompt], system=system, max_new_tokens=max_new_tokens)
        new_score, new_proj = _measure(model, prompt, direction, refusal_tokens, system)
    return ExplorerResult(
        prompt=prompt,
        mode=str(mode),
        coeff=float(coeff),
        layer=chosen_layer,
        base_text=base.texts[0],
        intervened_text=new.texts[0],
        base_score=base_score,
        intervened_score=new_score,
        base_projection=base_proj,
        intervened_projection=new_proj,
    )


def _options(
    source: ScoreTable | Selection,
) -> tuple[ScoreTable, list[tuple[str, tuple[int, str]]], Any]:
    table = source.table if isinstance(source, Selection) else source
    rows = sorted(table.rows(), key=lambda r: (math.isnan(r["bypass"]), r["bypass"]))
    options = [
        (
            f"layer {r['layer']}, {r['position']} (bypass {r['bypass']:.2f}, KL {r['kl']:.3f})",
            (r["layer"], r["position"]),
        )
        for r in rows
    ]
    default = (
        (source.direction.layer, source.direction.position)
        if isinstance(source, Selection)
        else options[0][1]
    )
    return table, options, default


def explorer_widget(
    model: TransformerBridge,
    source: ScoreTable | Selection,
    *,
    prompt: str = "",
    refusal_tokens: Sequence[int] | None = None,
    system: str | None = None,
    max_new_tokens: int = 32,
) -> Any:
    """An ipywidgets explorer; returns the `VBox` (display it in a notebook).

    Args:
        model: The bridge.
        source: A `ScoreTable` (or a `Selection`, whose direction is pre-selected) feeding
            the direction picker.
        prompt: Initial prompt text.
        refusal_tokens: Token ids for the refusal score (the table's by default).
        system: System prompt.
        max_new_tokens: Greedy response length.
    """
    import ipywidgets as widgets
    from IPython.display import HTML, display

    table, options, default = _options(source)
    tokens = refusal_tokens if refusal_tokens is not None else table.refusal_tokens
    n_layers = int(model.cfg.n_layers)
    box = widgets.Textarea(value=prompt, description="prompt", layout={"width": "95%"})
    picker = widgets.Dropdown(options=options, value=default, description="direction")
    mode = widgets.ToggleButtons(options=list(MODES), value="ablate", description="mode")
    coeff = widgets.FloatSlider(value=1.0, min=-4.0, max=4.0, step=0.1, description="coeff")
    layer = widgets.IntSlider(value=default[0], min=0, max=n_layers - 1, description="layer")
    run = widgets.Button(description="Run", button_style="primary")
    out = widgets.Output()

    def on_run(_: Any) -> None:
        direction = table.candidates.direction(*picker.value)
        result = explore(
            model,
            box.value,
            direction,
            mode.value,
            coeff.value,
            layer.value,
            refusal_tokens=tokens,
            system=system,
            max_new_tokens=max_new_tokens,
        )
        out.clear_output()
        with out:
            display(HTML(result.html()))
            display(result.figure())

    run.on_click(on_run)
    return widgets.VBox([box, picker, mode, widgets.HBox([coeff, layer]), run, out])
