"""Collect activations at chosen sites and token positions, keeping only those slices.

Each forward pass runs with hooks that copy the requested positions out of the requested
sites and ends the pass as soon as the last of them is kept, so a full-sequence cache is never
built and later blocks never run. `collect_activations` returns them in memory; `interp.store`
streams the same numbers to disk.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, get_args

import torch
from tqdm.auto import tqdm
from transformer_lens.model_bridge import TransformerBridge

from interp._checks import check_int
from interp._types import Float
from interp.chat import ChatBatch, encode, eoi_tokens
from interp.data.promptset import texts_of
from interp.errors import EmptyPromptSetError, EmptyUserSpanError, SiteError
from interp.native import PassDone, forward_session
from interp.sites import LAYERLESS, Site, sites

__all__ = [
    "Activations",
    "Position",
    "ShardedActivations",
    "collect_activations",
    "columns_for",
    "resolve_sites",
]

Position = Literal["last", "eoi", "mean_user"]
POSITIONS: tuple[str, ...] = get_args(Position)


class ShardedActivations(Protocol):
    """Activations read one block of rows at a time: what the streaming fits take.

    `interp.ActivationStore` is the implementation; diff-in-means, the probe sweep and PCA
    read it through this protocol (they sit beside or above the store), so that a store
    larger than memory is never loaded whole.
    """

    meta: dict[str, Any]

    @property
    def sites(self) -> list[Site]:
        """The cached sites."""
        ...

    @property
    def columns(self) -> tuple[str, ...]:
        """The cached position columns."""
        ...

    def __len__(self) -> int:
        """Number of prompts (rows)."""
        ...

    def get(self, site: str | Site, position: str = "last") -> torch.Tensor:
        """One site at one column for every prompt: float32 [n_prompts, d_model]."""
        ...

    def iter_shards(
        self, sites: Sequence[str | Site], positions: Sequence[str]
    ) -> Iterator[dict[str, torch.Tensor]]:
        """Per block of rows, in prompt order: label -> float32 [rows, n_positions, d_model]."""
        ...


def resolve_sites(model: TransformerBridge, spec: Sequence[str | Site] | str) -> list[Site]:
    """Turn `["resid_post", "ln_final", "resid_pre.3"]` into checked sites.

    A bare per-block stream name means every layer.
    """
    n_layers = int(model.cfg.n_layers)
    items = [spec] if isinstance(spec, str | Site) else list(spec)
    if not items:
        raise SiteError("no sites given; ask for e.g. ['resid_post'] or ['resid_pre.3']")
    out: list[Site] = []
    for item in items:
        if isinstance(item, str) and "." not in item and ":" not in item:
            out.extend([Site(item)] if item in LAYERLESS else sites(item, None, n_layers))
        else:
            out.append(Site.parse(item).check(n_layers))
    return list(dict.fromkeys(out))


def columns_for(model: TransformerBridge, positions: Sequence[str]) -> tuple[str, ...]:
    """Column labels of the stored positions (`eoi` expands to `eoi-n` ... `eoi-1`)."""
    cols: list[str] = []
    for pos in positions:
        if pos not in POSITIONS:
            raise ValueError(f"unknown position {pos!r}; use one of {', '.join(POSITIONS)}")
        if pos == "eoi":
            n_eoi = len(eoi_tokens(model))
            cols.extend(f"eoi-{k}" for k in range(n_eoi, 0, -1))
        else:
            cols.append(pos)
    return tuple(cols)


def _slice(
    x: Float[torch.Tensor, "batch pos d_model"], batch: ChatBatch, positions: Sequence[str]
) -> Float[torch.Tensor, "batch n_positions d_model"]:
    rows = torch.arange(x.shape[0], device=x.device)
    parts: list[torch.Tensor] = []
    for pos in positions:
        if pos == "last":
            parts.append(x[rows, batch.last_index][:, None])
        elif pos == "eoi":
            parts.append(x[rows[:, None], batch.eoi_positions])
        else:
            counts = batch.user_mask.sum(1)
            if bool((counts == 0).any()):
                row = int(torch.nonzero(counts == 0)[0])
                raise EmptyUserSpanError(
                    f"prompt {row} of the batch has no user-content tokens to average "
                    f"({batch.texts[row][:60]!r}...): it is empty, or the template changed it "
                    "beyond recognition; drop empty prompts or use positions 'last' / 'eoi'"
                )
            weights = batch.user_mask.to(x.dtype)[..., None]
            total = (x * weights).sum(1) / weights.sum(1).clamp_min(1.0)
            parts.append(total[:, None])
    return torch.cat(parts, dim=1)


@torch.no_grad()
def collect_batch(
    model: TransformerBridge,
    batch: ChatBatch,
    needed: Sequence[Site],
    positions: Sequence[str],
) -> dict[str, Float[torch.Tensor, "batch n_positions d_model"]]:
    """Activations of one encoded batch: site label -> float32 [batch, n_columns, d_model].

    Runs the model's own HF modules when every site sits on a module boundary (see
    `interp.native`; the same numbers, without the bridge's wrapper overhead), the bridge
    otherwise. Either way the pass ends as soon as the deepest needed site is kept.
    """
    batch = batch.to(model.cfg.device)
    kept: dict[str, torch.Tensor] = {}

    def grab(site: Site) -> Any:
        def hook(x: torch.Tensor, hook: Any) -> None:  # noqa: ARG001 - TransformerLens signature
            kept[site.label] = _slice(x, batch, positions).detach().to("cpu", torch.float32)
            if len(kept) == len(needed):
                raise PassDone

        return hook

    hooks: list[tuple[str | Callable[..., Any], Callable[..., Any]]] = [
        (site.hook_name, grab(site)) for site in needed
    ]
    try:
        with forward_session(model, hooks) as step:
            step(batch.tokens, batch.attention_mask, logits_to_keep=1, use_cache=False)
    except PassDone:
        pass
    missing = [s.label for s in needed if s.label not in kept]
    if missing:
        raise SiteError(f"sites {missing} did not fire; this model's bridge lacks those hooks")
    return kept


def batches(
    model: TransformerBridge, texts: Sequence[str], system: str | None, batch_size: int
) -> Iterator[tuple[int, ChatBatch]]:
    """Encode `texts` in consecutive chunks of `batch_size`, yielding (start, batch)."""
    for start in range(0, len(texts), batch_size):
        yield start, encode(model, texts[start : start + batch_size], system)


@dataclass(frozen=True)
class Activations:
    """Activations held in memory.

    Attributes:
        data: Site label -> float32 tensor [n_prompts, n_columns, d_model].
        sites: The sites, in the order asked for.
        columns: Column labels (`last`, `eoi-3` ... `eoi-1`, `mean_user`).
        prompts: The prompts (a `PromptSet` or a tuple of strings).
        system: The system prompt (or safety-prompt name) used when rendering.
        meta: Descriptive metadata (model, template hash, ...).
    """

    data: dict[str, Float[torch.Tensor, "prompts n_positions d_model"]]
    sites: tuple[Site, ...]
    columns: tuple[str, ...]
    prompts: Any
    system: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(next(iter(self.data.values())))

    def get(
        self, site: str | Site, position: str = "last"
    ) -> Float[torch.Tensor, "prompts d_model"]:
        """Activations of one site at one column: [n_prompts, d_model]."""
        label = Site.parse(site).label
        if label not in self.data:
            raise SiteError(f"site {label!r} was not collected; collected: {sorted(self.data)}")
        if position not in self.columns:
            raise ValueError(f"position {position!r} not collected; have {self.columns}")
        return self.data[label][:, self.columns.index(position)]

    def stack(
        self, stream: str = "resid_post", position: str = "last"
    ) -> Float[torch.Tensor, "layer prompts d_model"]:
        """Every collected layer of one stream: [n_layers, n_prompts, d_model] in layer order."""
        chosen = sorted((s for s in self.sites if s.stream == stream), key=lambda s: s.layer or 0)
        if not chosen:
            raise SiteError(f"no {stream!r} sites were collected")
        return torch.stack([self.get(s, position) for s in chosen])

    def layers(self, stream: str = "resid_post") -> list[int]:
        """The layers collected for `stream`, ascending."""
        return sorted(s.layer for s in self.sites if s.stream == stream and s.layer is not None)


def collect_activations(
    model: TransformerBridge,
    prompts: Sequence[str] | Any,
    sites: Sequence[str | Site] | str = ("resid_post",),
    positions: Sequence[str] = ("last",),
    *,
    system: str | None = None,
    batch_size: int = 32,
    progress: bool = True,
) -> Activations:
    """Collect activations for many prompts in memory.

    Args:
        model: A bridge from `interp.load_model`.
        prompts: User messages (a `PromptSet` or strings); rendered with the chat template.
        sites: Site names (`"resid_post"` means every layer; `"resid_pre.3"`, `"ln_final"`).
        positions: Any of `"last"`, `"eoi"`, `"mean_user"`.
        system: System prompt or safety-prompt name.
        batch_size: Prompts per forward pass.
        progress: Show a progress bar.

    Returns:
        The activations, one float32 tensor per site.

    Raises:
        ParameterError: `batch_size` is not an integer >= 1.
    """
    check_int(batch_size, "batch_size")
    texts = texts_of(prompts)
    if not texts:
        raise EmptyPromptSetError("the prompt set is empty; pass at least one prompt to collect")
    needed = resolve_sites(model, sites)
    columns = columns_for(model, positions)
    parts: dict[str, list[torch.Tensor]] = {s.label: [] for s in needed}
    total = (len(texts) + batch_size - 1) // batch_size
    for _, batch in tqdm(
        batches(model, texts, system, batch_size),
        total=total,
        desc="activations",
        disable=not progress,
    ):
        for label, value in collect_batch(model, batch, needed, positions).items():
            parts[label].append(value)
    data = {label: torch.cat(chunks) for label, chunks in parts.items()}
    return Activations(
        data=data, sites=tuple(needed), columns=columns, prompts=prompts, system=system
    )
