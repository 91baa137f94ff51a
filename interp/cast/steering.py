"""CAST: activation addition of the refusal direction, gated per row by a condition vector.

Lee et al. 2025, "Programming Refusal with Conditional Activation Steering" (ICLR 2025). The
condition vector is the unit difference in means of harmful and harmless prompt states at one
layer (`resid_pre`, the prompt's last token). At generation each row's prompt state is read in
a first pass; the cosine of that state with the condition vector decides, row by row, whether
`ActAdd(direction, coeff, steer_layer)` is applied to that row for the whole generation
(`interp.interventions.RowGated`). The layer and threshold maximise the condition's F1 on a
validation split (`condition_grid`). See docs/methods/cast.md.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformer_lens.model_bridge import TransformerBridge

from interp._artifact import Artifact, ModelIdentity, Saved
from interp._checks import check_int, check_real
from interp._types import Float
from interp.activations import collect_batch
from interp.cast.grid import CastError, ConditionGrid, condition_grid, cosine_to, fires
from interp.data.promptset import texts_of
from interp.directions import Direction, dataset_hash
from interp.errors import ArtifactMismatchError, EmptyPromptSetError, NotFittedError, SiteError
from interp.generation import Completions, batched, cut_at_eos, eos_token_ids, greedy_decode
from interp.interventions import ActAdd, RowGated, fwd_hooks
from interp.sites import Site

__all__ = ["CAST", "CastResult"]

logger = logging.getLogger(__name__)

_POSITION = "last"


@dataclass(frozen=True)
class CastResult:
    """CAST answers and what the condition saw.

    Attributes:
        completions: The answers (steered rows with the activation addition).
        similarity: Cosine of each row's prompt state with the condition vector.
        steered: Whether each row was steered.
        threshold: The threshold used.
    """

    completions: Completions
    similarity: tuple[float, ...]
    steered: tuple[bool, ...]
    threshold: float

    @property
    def steer_rate(self) -> float:
        """Fraction of rows steered (NaN for none)."""
        return sum(self.steered) / len(self.steered) if self.steered else float("nan")


def _fingerprint(model: TransformerBridge) -> str:
    """sha256 of up to 4096 evenly spaced embedding rows rounded to bf16 (dtype-independent)."""
    hf: Any = model.original_model
    weight = hf.get_input_embeddings().weight
    step = max(1, weight.shape[0] // 4096)
    rows = weight.detach()[::step].to("cpu", torch.bfloat16).to(torch.float32).contiguous()
    return hashlib.sha256(rows.numpy().tobytes()).hexdigest()


def _texts(prompts: Sequence[str] | Any, what: str) -> list[str]:
    texts = texts_of(prompts)
    if not texts:
        raise EmptyPromptSetError(f"the {what} prompt set is empty; CAST needs prompts")
    return texts


@torch.no_grad()
def _last_states(
    model: TransformerBridge,
    texts: Sequence[str],
    layers: Sequence[int],
    system: str | None,
    bs: int,
) -> Float[torch.Tensor, "layer prompts d_model"]:
    """`resid_pre` at the last prompt token of every layer in `layers`: [n_layers, n, d_model]."""
    sites = [Site("resid_pre", layer) for layer in layers]
    out = torch.zeros(len(layers), len(texts), int(model.cfg.d_model))
    for chunk, batch in batched(model, texts, system, bs, by_length=False):
        acts = collect_batch(model, batch, sites, [_POSITION])
        for i, site in enumerate(sites):
            out[i, chunk] = acts[site.label][:, 0]
    return out


class CAST(Artifact):
    """Conditional activation steering of the refusal direction (estimator contract).

    `save(dir)` / `CAST.load(dir, model)` (`interp._artifact.Artifact`); loading also checks
    the depth and, unless `allow_other_model`, the embedding weights it was fitted on.

    Args:
        direction: The refusal direction (the behaviour vector), added unnormalised as
            `ActAdd(direction, coeff, steer_layer)` to the rows the condition flags.
        coeff: The activation-addition coefficient.
        steer_layer: Block whose input is edited; the direction's own layer when None.
        layers: Candidate condition layers (all blocks when None).
        thresholds: Thresholds tried at every layer; by default `n_thresholds` evenly
            spaced over each layer's validation cosines.
        n_thresholds: Size of the default threshold grid.
        val_fraction: Share of each class held out for the grid search when `fit` gets no
            explicit validation prompts.
        system: System prompt used for the condition states and for generation.
        batch_size: Prompts per forward pass.
        seed: Seed of the train/validation split.

    Raises:
        ParameterError: A non-finite `coeff`, `batch_size` or `n_thresholds` below 1, or a
            negative `steer_layer` (at construction).
        CastError: `val_fraction` outside (0, 1) (at construction).
    """

    _KIND, _VERSION, _WHAT = "cast", 1, "CAST"

    def __init__(
        self,
        direction: Direction,
        *,
        coeff: float = 1.0,
        steer_layer: int | None = None,
        layers: Sequence[int] | None = None,
        thresholds: Sequence[float] | None = None,
        n_thresholds: int = 101,
        val_fraction: float = 0.5,
        system: str | None = None,
        batch_size: int = 32,
        seed: int = 0,
    ) -> None:
        check_real(coeff, "CAST coeff")
        check_int(batch_size, "CAST batch_size")
        check_int(n_thresholds, "CAST n_thresholds")
        if not 0.0 < float(val_fraction) < 1.0:  # NaN fails too
            raise CastError(f"val_fraction must be in (0, 1), got {val_fraction}")
        if steer_layer is not None:
            check_int(steer_layer, "CAST steer_layer", minimum=0)
        self.direction = direction
        self.coeff = coeff
        self.steer_layer = steer_layer
        self.layers = layers
        self.thresholds = thresholds
        self.n_thresholds = n_thresholds
        self.val_fraction = val_fraction
        self.system = system
        self.batch_size = batch_size
        self.seed = seed

    # ------------------------------------------------------------------ fitting

    def _candidate_layers(self, model: TransformerBridge) -> list[int]:
        n_layers = int(model.cfg.n_layers)
        layers = list(range(n_layers)) if self.layers is None else [int(x) for x in self.layers]
        if not layers:
            raise CastError("CAST layers is empty; pass None for every layer")
        for layer in layers:
            Site("resid_pre", layer).check(n_layers)
        return layers

    def _split(self, texts: list[str], offset: int) -> tuple[list[str], list[str]]:
        if not 0.0 < self.val_fraction < 1.0:
            raise CastError(f"val_fraction must be in (0, 1), got {self.val_fraction}")
        if len(texts) < 2:
            raise CastError(
                "CAST needs at least 2 prompts per class to split off validation prompts; "
                "pass more prompts or explicit val_harmful / val_harmless"
            )
        g = torch.Generator().manual_seed(self.seed + offset)
        order = torch.randperm(len(texts), generator=g).tolist()
        n_val = min(len(texts) - 1, max(1, round(self.val_fraction * len(texts))))
        val = sorted(order[:n_val])
        train = sorted(order[n_val:])
        return [texts[i] for i in train], [texts[i] for i in val]

    def fit(
        self,
        model: TransformerBridge,
        harmful: Sequence[str] | Any,
        harmless: Sequence[str] | Any,
        *,
        val_harmful: Sequence[str] | Any | None = None,
        val_harmless: Sequence[str] | Any | None = None,
    ) -> CAST:
        """Learn the condition vectors and grid-search the condition layer and threshold.

        Args:
            model: The bridge.
            harmful: Prompts the condition should flag (positive class).
            harmless: Prompts it should leave alone.
            val_harmful: Validation harmful prompts (split off `harmful` when None).
            val_harmless: Validation harmless prompts (split off `harmless` when None).

        Returns:
            self, with `condition_vectors_`, `grid_`, `layer_`, `threshold_`, `condition_`.

        Raises:
            EmptyPromptSetError: A prompt set is empty.
            SiteError: A candidate or steering layer is out of range.
            CastError: Too few prompts to split, or a bad grid.
        """
        harm, safe = _texts(harmful, "harmful"), _texts(harmless, "harmless")
        layers = self._candidate_layers(model)
        self._steering().hooks(model)  # checks the direction and the steering layer
        if (val_harmful is None) != (val_harmless is None):
            raise CastError("pass both val_harmful and val_harmless, or neither")
        if val_harmful is None:
            harm, val_harm = self._split(harm, 0)
            safe, val_safe = self._split(safe, 1)
        else:
            val_harm = _texts(val_harmful, "validation harmful")
            val_safe = _texts(val_harmless, "validation harmless")
        bs = int(self.batch_size)
        mean_harm = _last_states(model, harm, layers, self.system, bs).double().mean(dim=1)
        mean_safe = _last_states(model, safe, layers, self.system, bs).double().mean(dim=1)
        diff = mean_harm - mean_safe
        norms = diff.norm(dim=-1, keepdim=True)
        # A layer whose class means coincide (block 0's input at a template token is the same
        # embedding for every prompt) names no condition; it is dropped from the search.
        keep = [i for i in range(len(layers)) if float(norms[i]) > 1e-6 * float(norms.max())]
        if not keep:
            raise CastError("harmful and harmless states have equal means at every layer")
        dropped = [layers[i] for i in range(len(layers)) if i not in keep]
        if dropped:
            logger.info("CAST: layers %s have equal class means and are not searched", dropped)
        layers = [layers[i] for i in keep]
        vectors = (diff[keep] / norms[keep]).to(torch.float32)
        val_states = _last_states(model, [*val_harm, *val_safe], layers, self.system, bs)
        similarity = torch.stack([cosine_to(val_states[i], vectors[i]) for i in range(len(layers))])
        labels = [1] * len(val_harm) + [0] * len(val_safe)
        self.grid_: ConditionGrid = condition_grid(
            similarity, labels, layers, self.thresholds, n_thresholds=int(self.n_thresholds)
        )
        self.condition_vectors_ = vectors
        self.layers_ = tuple(layers)
        self.layer_ = self.grid_.best_layer
        self.threshold_ = self.grid_.best_threshold
        self.model_ = ModelIdentity.of(model)
        self.fingerprint_ = _fingerprint(model)
        self.transferred_from_: dict[str, str] | None = None
        self.dataset_hashes_ = {
            "harmful": dataset_hash(harmful),
            "harmless": dataset_hash(harmless),
        }
        return self

    # ------------------------------------------------------------------ using it

    def _check(self) -> None:
        if not hasattr(self, "grid_"):
            raise NotFittedError(
                "this CAST is not fitted; call fit(model, harmful, harmless) or load"
            )

    def _check_model(self, model: TransformerBridge, weights: bool | None = None) -> None:
        """Shapes and template, then (`weights`; by default unless transferred) the embeddings."""
        self.condition_.check(model)
        # A CAST loaded with allow_other_model=True is used on another model on purpose.
        if weights is None:
            weights = getattr(self, "transferred_from_", None) is None
        if weights and _fingerprint(model) != self.fingerprint_:
            raise ArtifactMismatchError(
                f"this CAST was fitted on {self.model_.name!r}, whose embedding weights differ "
                "from this model's; fit CAST on this model"
            )

    @property
    def condition_(self) -> Direction:
        """The chosen condition vector (unit norm) as a `Direction` at `resid_pre.layer_`."""
        self._check()
        return Direction(
            self.condition_vectors_[self.layers_.index(self.layer_)],
            Site("resid_pre", self.layer_),
            position=_POSITION,
            operation="cast condition: unit diff_in_means, layer and threshold by validation F1",
            model_name=self.model_.name,
            template_hash=self.model_.template_hash,
            dataset_hashes=self.dataset_hashes_,
            model_fingerprint=self.model_.fingerprint,
        )

    def _steering(self) -> ActAdd:
        return ActAdd(self.direction, float(self.coeff), self.steer_layer)

    def with_threshold(self, threshold: float) -> CAST:
        """A copy of this fitted CAST with another threshold (this one is unchanged)."""
        self._check()
        if math.isnan(float(threshold)):
            raise CastError("the CAST threshold must not be NaN")
        new = copy.copy(self)
        new.threshold_ = float(threshold)
        return new

    def similarity(
        self, model: TransformerBridge, prompts: Sequence[str] | Any
    ) -> Float[torch.Tensor, " prompts"]:
        """Cosine of each prompt's state with the condition vector, in input order (float64)."""
        self._check()
        self._check_model(model)
        texts = _texts(prompts, "given")
        states = _last_states(model, texts, [self.layer_], self.system, int(self.batch_size))[0]
        return cosine_to(states, self.condition_.vector)

    def _gate(self, model: TransformerBridge, batch: Any) -> tuple[torch.Tensor, RowGated]:
        state = collect_batch(model, batch, [Site("resid_pre", self.layer_)], [_POSITION])
        sim = cosine_to(next(iter(state.values()))[:, 0], self.condition_.vector)
        return sim, RowGated(self._steering(), fires(sim, self.threshold_))

    def gate(self, model: TransformerBridge, batch: Any) -> RowGated:
        """The steering intervention of one encoded batch, masked to the rows the condition flags.

        The prompt states are read in one forward pass over `batch` (under any interventions
        already applied); the result composes with `interp.apply` like any intervention.
        """
        self._check()
        self._check_model(model)
        return self._gate(model, batch)[1]

    def generate_gated(
        self,
        model: TransformerBridge,
        prompts: Sequence[str] | Any,
        *,
        max_new_tokens: int = 48,
        batch_size: int | None = None,
        progress: bool = False,
    ) -> CastResult:
        """Greedy answers, each row steered iff its condition fires; batched and KV cached.

        Per batch: one forward pass reads the prompt states and sets the row mask, then one
        batched greedy generation runs with the masked activation addition.

        Raises:
            EmptyPromptSetError: `prompts` is empty.
        """
        self._check()
        self._check_model(model)
        texts = _texts(prompts, "given")
        eos = eos_token_ids(model)
        rows: dict[int, list[int]] = {}
        sims: dict[int, float] = {}
        flags: dict[int, bool] = {}
        bs = int(batch_size if batch_size is not None else self.batch_size)
        for chunk, batch in batched(model, texts, self.system, bs, progress=progress, desc="cast"):
            batch = batch.to(model.cfg.device)
            sim, gated = self._gate(model, batch)
            new = greedy_decode(
                model, batch, max_new_tokens=max_new_tokens, fwd_hooks=fwd_hooks(model, [gated])
            )
            for j, (row, idx) in enumerate(zip(new.tolist(), chunk, strict=True)):
                rows[idx] = cut_at_eos(row, eos)
                sims[idx], flags[idx] = float(sim[j]), bool(gated.rows[j])
        tokens = tuple(tuple(rows[i]) for i in range(len(texts)))
        decoded = tuple(model.tokenizer.decode(list(t), skip_special_tokens=True) for t in tokens)
        completions = Completions(
            prompts=tuple(texts), texts=decoded, tokens=tokens, system=self.system
        )
        return CastResult(
            completions=completions,
            similarity=tuple(sims[i] for i in range(len(texts))),
            steered=tuple(flags[i] for i in range(len(texts))),
            threshold=float(self.threshold_),
        )

    def generate(
        self,
        model: TransformerBridge,
        prompts: Sequence[str] | Any,
        *,
        max_new_tokens: int = 48,
        batch_size: int = 32,
        progress: bool = False,
    ) -> Completions:
        """The conditionally steered answers: an `interp.generation.Decoder`, in input order."""
        return self.generate_gated(
            model, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size, progress=progress
        ).completions

    # ------------------------------------------------------------------ artifacts

    def get_params(self) -> dict[str, Any]:
        """The hyperparameters other than the direction, JSON-ready."""
        return {
            "coeff": float(self.coeff),
            "steer_layer": self.steer_layer,
            "layers": None if self.layers is None else [int(x) for x in self.layers],
            "thresholds": None if self.thresholds is None else [float(x) for x in self.thresholds],
            "n_thresholds": int(self.n_thresholds),
            "val_fraction": float(self.val_fraction),
            "system": self.system,
            "batch_size": int(self.batch_size),
            "seed": int(self.seed),
        }

    def _payload(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        self._check()
        tensors = {
            "condition_vectors": self.condition_vectors_,
            "direction": self.direction.vector,
            **self.grid_.tensors(),
        }
        meta = {
            "embedding_fingerprint": self.fingerprint_,
            "dataset_hashes": self.dataset_hashes_,
            "condition_layers": list(self.layers_),
            "layer": self.layer_,
            "threshold": self.threshold_,
            "position": _POSITION,
            "stream": "resid_pre",
            "similarity": "cosine(resid_pre at the last prompt token, unit condition vector)",
            "grid": self.grid_.metadata(),
            "direction": self.direction.metadata(),
            "params": self.get_params(),
        }
        return meta, tensors

    @classmethod
    def _from_saved(cls, saved: Saved) -> CAST:
        direction = Direction.from_metadata(saved.meta["direction"], saved.tensors["direction"])
        cast = cls(direction, **saved.meta["params"])
        cast.grid_ = ConditionGrid.from_saved(saved.tensors, saved.meta["grid"])
        cast.condition_vectors_ = saved.tensors["condition_vectors"]
        cast.layers_ = tuple(int(x) for x in saved.meta["condition_layers"])
        cast.layer_, cast.threshold_ = int(saved.meta["layer"]), float(saved.meta["threshold"])
        cast.model_ = ModelIdentity.from_meta(saved.meta)
        cast.fingerprint_ = str(saved.meta["embedding_fingerprint"])
        cast.dataset_hashes_ = dict(saved.meta["dataset_hashes"])
        try:
            cast._check_model(saved.model, weights=saved.check_weights)
            direction.check(saved.model)
        except (ArtifactMismatchError, SiteError) as err:
            raise ArtifactMismatchError(
                f"CAST {saved.path} (fitted on {cast.model_.name!r}) does not fit this model: {err}"
            ) from None
        return cast
