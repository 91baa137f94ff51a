"""The DRO geometry: how safety prompts move queries in representation space.

`dro_map` builds the data of DRO's figure: a 4-D PCA of every condition (no system prompt and
each safety prompt) with the harmfulness and refusal logistic boundaries fitted in it.
`refusal_axis` is the direction DRO reads refusal along, the difference of means between the
model's own refusals and compliances (with the harmfulness component projected out), and
`prompt_shift` measures how far a safety prompt moves queries along it, layer by layer.
`collect_conditions` gathers the activations and refusals of the same queries under several
system prompts, and `shift_by_layer` turns them into DRO's finding per condition and kind.
See docs/methods/dro.md.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformer_lens.model_bridge import TransformerBridge

from interp.activations import collect_activations
from interp.data import HARMFUL_KINDS
from interp.evaluation import SubstringJudge
from interp.generation import generate
from interp.probes import LinearProbe, ProbeInputError, as_tensor, check_inputs
from interp.projection import Projection, project

__all__ = [
    "ConditionData",
    "DroMap",
    "collect_conditions",
    "dro_map",
    "prompt_shift",
    "refusal_axis",
    "shift_by_layer",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DroMap:
    """The DRO figure's data: a PCA of all conditions and two logistic boundaries in it.

    Attributes:
        projection: The points (first `n_components` PCA coordinates).
        refused: 1 where the model refused, per point.
        harm_boundary: (w1, w2, b): the harmfulness boundary w1 z1 + w2 z2 + b = 0.
        refusal_boundary: (w1, w2, b): the refusal boundary, same convention (NaN when the
            model refused all or none of the points).
    """

    projection: Projection
    refused: tuple[int, ...]
    harm_boundary: tuple[float, float, float]
    refusal_boundary: tuple[float, float, float]


def _boundary(z: torch.Tensor, y: Sequence[int], C: float) -> tuple[float, float, float]:  # noqa: N803
    probe = LinearProbe(backend="sklearn", C=C).fit(z, list(y))
    # The probe standardises internally; its raw-space weights give the line directly. As in
    # DRO, only the first two weights are drawn (the other PCA coordinates are ignored).
    w = probe.coef_
    return float(w[0]), float(w[1]), float(probe.intercept_)


def dro_map(
    acts: Mapping[str, Any],
    labels: Sequence[int],
    kinds: Sequence[str],
    refused: Mapping[str, Sequence[int]],
    *,
    n_components: int = 4,
    C: float = 1.0,  # noqa: N803
    layer: int | None = None,
) -> DroMap:
    """PCA on every condition together, then harmfulness and refusal boundaries in it.

    Args:
        acts: condition -> activations [n, d] of the same queries.
        labels: 0/1 harmful per query.
        kinds: Kind per query.
        refused: condition -> 0/1 per query: did the model's own greedy answer refuse?
        n_components: PCA dimensions the boundaries are fitted in (4 in DRO).
        C: Inverse L2 strength of the two logistic regressions.
        layer: Recorded in the result.
    """
    proj = project(acts, labels, kinds, n_components=n_components, layer=layer)
    flat_refused = [int(r) for c in acts for r in refused[c]]
    return DroMap(
        projection=proj,
        refused=tuple(flat_refused),
        harm_boundary=_boundary(proj.coords, proj.labels, C),
        # A model that refused all or none of the points has no refusal boundary (NaNs).
        refusal_boundary=(
            _boundary(proj.coords, flat_refused, C)
            if len(set(flat_refused)) == 2
            else (float("nan"),) * 3
        ),
    )


def refusal_axis(
    acts: Any, refused: Sequence[int], control: Sequence[int] | None = None
) -> torch.Tensor:
    """Unit difference of means, refused minus complied, per layer: [n_layers, d].

    Args:
        acts: Activations [n_layers, n, d] (or [n, d]).
        refused: 0/1 per row from the model's own answers.
        control: Optional 0/1 per row (e.g. harmful); the difference of means of this label is
            projected out first. Refusals are mostly of harmful requests, so the raw contrast
            mixes "refuse" with "harmful"; removing the harmfulness component leaves the part
            of the contrast that is about refusing.
    """
    x = as_tensor(acts).double()
    if x.ndim == 2:
        x = x[None]
    y = check_inputs(x, refused).bool()
    diff = x[:, y].mean(1) - x[:, ~y].mean(1)
    if control is not None:
        c = check_inputs(x, control).bool()
        harm = x[:, c].mean(1) - x[:, ~c].mean(1)
        harm = harm / harm.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        diff = diff - (diff * harm).sum(-1, keepdim=True) * harm
    return diff / diff.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def prompt_shift(base: Any, prompted: Any, direction: Any) -> torch.Tensor:
    """Mean shift from `base` to `prompted` [n_layers, n, d] along `direction` [n_layers, d].

    Positive values mean the (safety) prompt moves the queries toward refusal. Returns [n_layers].
    """
    a, b = as_tensor(base).double(), as_tensor(prompted).double()
    if a.shape != b.shape:
        raise ProbeInputError(
            f"base {tuple(a.shape)} and prompted {tuple(b.shape)} activations must hold the same "
            "queries in the same order"
        )
    return torch.einsum(
        "ld,ld->l",
        (b - a).mean(-2).reshape(-1, a.shape[-1]),
        as_tensor(direction).double().reshape(-1, a.shape[-1]),
    )


@dataclass(frozen=True)
class ConditionData:
    """Activations and refusals of the same queries under several system prompts.

    Attributes:
        texts: The queries. kinds / labels: per query (label 1 = harmful kind).
        acts: condition -> resid_post stack [n_layers, n, d_model] at the last prompt token.
        refused: condition -> 0/1 per query from the model's own greedy answer.
    """

    texts: tuple[str, ...]
    kinds: tuple[str, ...]
    labels: tuple[int, ...]
    acts: dict[str, torch.Tensor]
    refused: dict[str, tuple[int, ...]]

    def rows(self, kinds: Sequence[str]) -> torch.Tensor:
        """Row indices of the given kinds."""
        return torch.tensor([i for i, k in enumerate(self.kinds) if k in kinds], dtype=torch.long)


def collect_conditions(
    model: TransformerBridge,
    prompt_sets: Mapping[str, Sequence[str]],
    conditions: Sequence[str],
    *,
    max_new_tokens: int = 24,
    batch_size: int = 32,
) -> ConditionData:
    """Collect last-token resid_post of every layer and greedy refusals for each condition."""
    texts = [t for kind in prompt_sets for t in prompt_sets[kind]]
    kinds = [kind for kind in prompt_sets for _ in prompt_sets[kind]]
    judge = SubstringJudge("dro")
    acts, refused = {}, {}
    for cond in ("none", *conditions):
        system = None if cond == "none" else cond
        got = collect_activations(
            model, texts, ["resid_post"], system=system, batch_size=batch_size, progress=False
        )
        acts[cond] = got.stack("resid_post")
        out = generate(
            model, texts, system=system, max_new_tokens=max_new_tokens, batch_size=batch_size
        )
        refused[cond] = tuple(int(r) for r in judge.is_refusal(out.texts, out.prompts))
    return ConditionData(
        texts=tuple(texts),
        kinds=tuple(kinds),
        labels=tuple(int(k in HARMFUL_KINDS) for k in kinds),
        acts=acts,
        refused=refused,
    )


def shift_by_layer(data: ConditionData, kinds: Sequence[str]) -> dict[str, dict[str, list[float]]]:
    """Condition -> kind -> per-layer mean shift (vs no prompt) along the refusal direction.

    The refusal direction is the unit difference of means of refused and complied answers,
    pooled over every condition and kind, per layer, with its harmful-vs-harmless component
    projected out (see `refusal_direction`).
    """
    pooled = torch.cat(list(data.acts.values()), dim=1)
    refused = [r for cond in data.acts for r in data.refused[cond]]
    if len(set(refused)) < 2:
        logger.warning("the model refused all or none of the queries: no refusal direction")
        return {}
    direction = refusal_axis(pooled, refused, control=list(data.labels) * len(data.acts))
    out: dict[str, dict[str, list[float]]] = {}
    for cond, acts in data.acts.items():
        if cond == "none":
            continue
        out[cond] = {}
        for kind in kinds:
            rows = data.rows([kind])
            if len(rows):
                shift = prompt_shift(data.acts["none"][:, rows], acts[:, rows], direction)
                out[cond][kind] = [round(float(v), 4) for v in shift]
    return out
