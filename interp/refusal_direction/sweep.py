"""Candidates at more sites and positions than the paper's `resid_pre` x eoi grid.

`sweep_candidates` takes difference-in-means candidates at every layer of each stream in
`sites` (`resid_pre`, `resid_mid`, `resid_post`) and at each requested position: every eoi
position (`eoi`, the default), the last prompt token (`last`), or the mean over the eoi
positions (`mean_eoi`; the mean of the eoi candidates, since means are linear). They come
back as one `SweepCandidates` grid [n_layers, n_sites x n_positions], columns labelled
`site/position` (`resid_mid/eoi-2`), so the same score table, filters and plots cover the
whole sweep. With the defaults the result is exactly `diff_in_means`'s.

Adding a candidate (the induce score, ActAdd in the evaluation) edits the stream it was taken
at: `add_at_site` is `ActAdd` at `resid_pre`, and the same addition at the candidate's own
site otherwise. Ablation is site-free (every block, every sublayer output).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from transformer_lens.model_bridge import TransformerBridge

from interp.directions import Candidates, Direction, diff_in_means
from interp.errors import SiteError
from interp.interventions import ActAdd, Intervention
from interp.interventions.apply import Hook
from interp.native import per_token
from interp.sites import Site

__all__ = [
    "SWEEP_POSITIONS",
    "SWEEP_SITES",
    "SiteAdd",
    "SweepCandidates",
    "add_at_site",
    "sweep_candidates",
]

SweepSite = Literal["resid_pre", "resid_mid", "resid_post"]
SWEEP_SITES: tuple[str, ...] = ("resid_pre", "resid_mid", "resid_post")
SWEEP_POSITIONS: tuple[str, ...] = ("eoi", "last", "mean_eoi", "mean_user")


@dataclass(frozen=True, eq=False)
class SweepCandidates(Candidates):
    """Candidates from several streams side by side: column `j` is at stream `streams[j]`.

    Attributes:
        streams: The stream of each column; labels are `stream/position`.
    """

    streams: tuple[str, ...] = ()

    def direction(self, layer: int, position: str, operation: str = "diff_in_means") -> Direction:
        """The candidate at (`layer`, column label `position`) as a `Direction`."""
        if position not in self.columns:
            raise ValueError(f"no candidate at column {position!r}; columns are {self.columns}")
        if layer not in self.layers:
            raise SiteError(f"no candidate at layer {layer}; candidate layers are {self.layers}")
        j = self.columns.index(position)
        stream = self.streams[j] if self.streams else self.stream
        return Direction(
            self.vectors[self.layers.index(layer), j],
            Site(stream, layer),
            position=position.rpartition("/")[2],
            operation=operation,
            model_name=self.model_name,
            template_hash=self.template_hash,
            dataset_hashes=self.dataset_hashes,
            model_fingerprint=self.model_fingerprint,
        )


def _with_mean_eoi(cands: Candidates, positions: Sequence[str]) -> tuple[torch.Tensor, list[str]]:
    """The requested columns of `cands` (collected with eoi), `mean_eoi` appended if asked."""
    eoi = [j for j, c in enumerate(cands.columns) if c.startswith("eoi-")]
    vectors: list[torch.Tensor] = []
    labels: list[str] = []
    for pos in positions:
        if pos == "eoi":
            vectors.append(cands.vectors[:, eoi])
            labels.extend(cands.columns[j] for j in eoi)
        elif pos == "mean_eoi":
            vectors.append(cands.vectors[:, eoi].double().mean(1, keepdim=True).float())
            labels.append("mean_eoi")
        else:
            j = cands.columns.index(pos)
            vectors.append(cands.vectors[:, j : j + 1])
            labels.append(pos)
    return torch.cat(vectors, dim=1), labels


def sweep_candidates(
    model: TransformerBridge,
    harmful: Sequence[str] | Any,
    harmless: Sequence[str] | Any,
    *,
    sites: Sequence[str] = ("resid_pre",),
    positions: Sequence[str] = ("eoi",),
    system: str | None = None,
    batch_size: int = 32,
    progress: bool = False,
) -> Candidates:
    """Difference-in-means candidates at every layer of each site and each position.

    Args:
        model: The bridge.
        harmful: Prompts the model should refuse.
        harmless: Prompts it should answer.
        sites: Streams to sweep (`resid_pre`, `resid_mid`, `resid_post`).
        positions: `eoi` (each post-instruction token), `last`, `mean_eoi`, `mean_user`.
        system: System prompt used when rendering.
        batch_size: Prompts per forward pass.
        progress: Show progress bars.

    Returns:
        `diff_in_means(...)` itself for one site without `mean_eoi`;
        otherwise a `SweepCandidates` whose columns are `site/position` (one site: plain
        positions).

    Raises:
        SiteError: A site outside `SWEEP_SITES`.
        ValueError: A position outside `SWEEP_POSITIONS`, or none given.
    """
    bad_sites = [s for s in sites if s not in SWEEP_SITES]
    if bad_sites or not sites:
        raise SiteError(f"sweep sites {bad_sites or '[]'} unknown; use any of {SWEEP_SITES}")
    bad = [p for p in positions if p not in SWEEP_POSITIONS]
    if bad or not positions:
        raise ValueError(f"sweep positions {bad or '[]'} unknown; use any of {SWEEP_POSITIONS}")
    plain = "mean_eoi" not in positions
    collect = [p for p in positions if p != "mean_eoi"]
    if not plain and "eoi" not in collect:
        collect.append("eoi")
    per_site = [
        diff_in_means(
            model,
            harmful,
            harmless,
            stream=s,
            positions=collect,
            system=system,
            batch_size=batch_size,
            progress=progress,
        )
        for s in sites
    ]
    if len(sites) == 1 and plain:
        return per_site[0]
    parts: list[torch.Tensor] = []
    labels: list[str] = []
    streams: list[str] = []
    for site, cands in zip(sites, per_site, strict=True):
        vectors, cols = _with_mean_eoi(cands, positions)
        parts.append(vectors)
        labels.extend(f"{site}/{c}" if len(sites) > 1 else c for c in cols)
        streams.extend([site] * len(cols))
    first = per_site[0]
    return SweepCandidates(
        vectors=torch.cat(parts, dim=1),
        stream=first.stream,
        layers=first.layers,
        columns=tuple(labels),
        model_name=first.model_name,
        template_hash=first.template_hash,
        dataset_hashes=first.dataset_hashes,
        n_harmful=first.n_harmful,
        n_harmless=first.n_harmless,
        model_fingerprint=first.model_fingerprint,
        streams=tuple(streams),
    )


def _add_fn(vector: torch.Tensor) -> Callable[..., Any]:
    converted: dict[tuple[torch.device, torch.dtype], torch.Tensor] = {}

    def hook(x: torch.Tensor, hook: Any) -> torch.Tensor:  # noqa: ARG001 - TL hook signature
        key = (x.device, x.dtype)
        v = converted.get(key)
        if v is None:
            v = converted[key] = vector.to(x.device, x.dtype)
        return x + v

    return per_token(hook)


@dataclass(frozen=True, eq=False)
class SiteAdd:
    """Add `coeff * r` at the direction's own site (any per-block stream), every position.

    Attributes:
        direction: The direction; its raw vector is added.
        coeff: The multiplier.
    """

    direction: Direction
    coeff: float = 1.0

    def hooks(self, model: TransformerBridge) -> list[Hook]:
        """The single addition hook at the direction's site."""
        site = self.direction.site.check(int(model.cfg.n_layers))
        vector = self.direction.check(model).vector
        return [(site.hook_name, _add_fn(float(self.coeff) * vector))]


def add_at_site(direction: Direction, coeff: float = 1.0) -> Intervention:
    """ActAdd of `direction` where it was taken: `ActAdd` at `resid_pre`, `SiteAdd` elsewhere."""
    if direction.site.stream == "resid_pre":
        return ActAdd(direction, coeff)
    return SiteAdd(direction, coeff)
