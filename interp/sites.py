"""Named activation sites and their TransformerLens hook names.

This is the only module that spells hook-name strings; everything else asks for a
`Site` and calls `Site.hook_name`. The mapping to HF `output_hidden_states` is:
``hidden_states[l] == Site("resid_pre", l)`` for ``l < n_layers`` and
``hidden_states[n_layers] == Site("ln_final")`` (the post-final-norm state).

`attn_out` and `mlp_out` are the sublayer outputs as the bridge exposes them; in families
with sublayer post-norms (Gemma 2) they are taken before that norm, so there
``resid_mid != resid_pre + attn_out``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, get_args

from interp.errors import SiteError

Stream = Literal["resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out", "ln_final", "embed"]
STREAMS: tuple[str, ...] = get_args(Stream)
LAYERLESS: frozenset[str] = frozenset({"ln_final", "embed"})

_TEMPLATES: dict[str, str] = {
    "resid_pre": "blocks.{layer}.hook_in",
    "resid_mid": "blocks.{layer}.ln2.hook_in",
    "resid_post": "blocks.{layer}.hook_out",
    "attn_out": "blocks.{layer}.attn.hook_out",
    "mlp_out": "blocks.{layer}.mlp.hook_out",
    "ln_final": "ln_final.hook_out",
    "embed": "embed.hook_out",
}
_NAME = re.compile(r"^(?P<stream>[a-z_]+?)(?:[.:@](?P<layer>-?\d+))?$")


@dataclass(frozen=True, order=True)
class Site:
    """One place in the residual computation: a stream and (for per-block streams) a layer.

    Attributes:
        stream: Which activation (`resid_pre` is the input of block `layer`, `resid_post`
            its output, `ln_final` the post-final-norm state, `embed` the token embedding).
        layer: 0-based block index; `None` for `ln_final` and `embed`.
    """

    stream: str
    layer: int | None = None

    def __post_init__(self) -> None:
        if self.stream not in STREAMS:
            raise SiteError(
                f"unknown site {self.stream!r}; use one of {', '.join(STREAMS)} "
                "(e.g. Site('resid_post', 3) or the string 'resid_post.3')"
            )
        if self.stream in LAYERLESS and self.layer is not None:
            raise SiteError(f"site {self.stream!r} has no layer; pass Site({self.stream!r})")
        if self.stream not in LAYERLESS and self.layer is None:
            raise SiteError(f"site {self.stream!r} needs a layer, e.g. Site({self.stream!r}, 0)")

    @property
    def hook_name(self) -> str:
        """The canonical TransformerBridge hook name of this site."""
        return _TEMPLATES[self.stream].format(layer=self.layer)

    @property
    def label(self) -> str:
        """A short, stable string form (`resid_post.3`, `ln_final`) used in files."""
        return self.stream if self.layer is None else f"{self.stream}.{self.layer}"

    def check(self, n_layers: int) -> Site:
        """Return self after checking the layer against a model with `n_layers` blocks."""
        if self.layer is not None and not 0 <= self.layer < n_layers:
            raise SiteError(
                f"layer {self.layer} is out of range for {self.stream!r}: the model has "
                f"{n_layers} blocks, so use a layer in 0..{n_layers - 1}"
            )
        return self

    @classmethod
    def parse(cls, spec: str | Site) -> Site:
        """Parse `"resid_post.3"`, `"resid_post:3"` or `"ln_final"` into a Site."""
        if isinstance(spec, Site):
            return spec
        match = _NAME.match(spec.strip())
        if match is None:
            raise SiteError(f"cannot parse site {spec!r}; write it as 'resid_post.3' or 'ln_final'")
        layer = match["layer"]
        return cls(match["stream"], None if layer is None else int(layer))


def sites(streams: str | Iterable[str], layers: Iterable[int] | None, n_layers: int) -> list[Site]:
    """Expand streams × layers into a checked list of sites.

    Args:
        streams: One stream name or several.
        layers: Layers to take for per-block streams; `None` means every layer. Negative
            layers count from the end.
        n_layers: Number of blocks of the model.

    Returns:
        The sites, per-block streams first in layer order, then layerless ones.
    """
    names = [streams] if isinstance(streams, str) else list(streams)
    chosen = list(range(n_layers)) if layers is None else [int(x) for x in layers]
    chosen = [x + n_layers if x < 0 else x for x in chosen]
    out: list[Site] = []
    for name in names:
        if name in LAYERLESS:
            out.append(Site(name))
        else:
            out.extend(Site(name, layer).check(n_layers) for layer in chosen)
    return out


def resid_hook_names(n_layers: int) -> list[str]:
    """Hook names of every block's input, attention output and MLP output (ablation sites)."""
    return [
        Site(stream, layer).hook_name
        for layer in range(n_layers)
        for stream in ("resid_pre", "attn_out", "mlp_out")
    ]


def layer_of(hook_name: str) -> int | None:
    """The block index in a canonical hook name, or None for non-block hooks."""
    match = re.match(r"^blocks\.(\d+)\.", hook_name)
    return int(match[1]) if match else None


def logits_hook_name() -> str:
    """Hook name of the unembedding output (the logits, before any final soft-capping)."""
    return "unembed.hook_out"


_HEADS_TEMPLATE = "blocks.{layer}.attn.o.hook_in"


def attn_heads_hook_name(layer: int) -> str:
    """Hook name of the per-head attention outputs of block `layer`: the input of `o_proj`.

    This is TransformerLens' `hook_z` (the heads' mixed values before the output projection).
    Through the bridge the hook sees `[batch, pos, n_heads, d_head]`; on the native path
    (`interp.native`) it is the HF `o_proj` input, the same numbers as `[batch, pos,
    n_heads * d_head]`. Reshape with the model's `n_heads` and `d_head` to read one head.

    >>> attn_heads_hook_name(3)
    'blocks.3.attn.o.hook_in'
    """
    return _HEADS_TEMPLATE.format(layer=int(layer))


# Every hook name above sits on a bridge component's boundary: `<component>.hook_in` is the
# wrapped HF module's input, `<component>.hook_out` its output. `interp.native` relies on that.
_BOUNDARY = re.compile(
    "|".join(
        re.escape(name).replace(re.escape("{layer}"), r"\d+")
        for name in [*_TEMPLATES.values(), _HEADS_TEMPLATE, logits_hook_name()]
    )
)


def boundary(hook_name: str) -> tuple[str, str] | None:
    """The bridge component path and side ("in"/"out") of a site's or the logits' hook name.

    None for any other hook name (those only exist inside the bridge's wrappers).

    >>> boundary(Site("resid_post", 2).hook_name)
    ('blocks.2', 'out')
    >>> boundary("blocks.0.attn.hook_pattern") is None
    True
    """
    if _BOUNDARY.fullmatch(hook_name) is None:
        return None
    path, side = hook_name.rsplit(".hook_", 1)
    return path, side
