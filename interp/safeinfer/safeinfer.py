"""`SafeInfer`: fit the function vector from harmful prompts, then decode with SA and/or sGDS.

`fit` builds the in-context refusal prompts, averages every head's output, finds the heads
(given, or by `search_heads`) and sums their `o_proj` images into the function vector.
`generate` adds `coef * FV` after block `layer` (`SafetyAmplification`) and, in modes
`sgds` / `both`, decodes against the unsafe model: the same weights with the refusal
direction ablated (`DirectionalAblation`), a stand-in for the paper's harmful fine-tune.
`save` / `load` write and check safetensors + JSON, refusing another model.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from transformer_lens.model_bridge import TransformerBridge

from interp._artifact import Artifact, ModelIdentity, Saved
from interp._checks import check_int
from interp.data.promptset import Prompts, texts_of
from interp.directions import Direction
from interp.errors import InterpError, NotFittedError
from interp.generation import Completions, generate
from interp.interventions import DirectionalAblation
from interp.model import template_hash, unembedding_fingerprint, weight_fingerprint
from interp.safeinfer.amplification import SafetyAmplification
from interp.safeinfer.config import (
    FunctionVectorMismatchError,
    Head,
    Mode,
    SafeInferConfig,
    Strategy,
    check_heads,
    check_layer,
    default_layer,
)
from interp.safeinfer.function_vector import (
    REFUSAL_ANSWER,
    answer_token,
    function_vector,
    head_shape,
    icl_prompts,
    mean_head_activations,
    zero_shot_prompts,
)
from interp.safeinfer.guided import GuidedDecoding, gumbel_noise
from interp.safeinfer.head_search import HeadSearch, search_heads

__all__ = ["SafeInfer"]

_PARAMS = (
    "layer", "coef", "alpha", "heads", "mode", "n_heads", "n_shots", "n_prompts",
    "search_layers", "n_search_prompts", "answer", "strategy", "sample", "seed",
)  # fmt: skip


def _o_proj_fingerprint(model: TransformerBridge, heads: Sequence[Head]) -> str:
    """Identity of the `o_proj` weights the function vector was summed through."""
    layers = sorted({layer for layer, _ in heads})
    weights = [
        model.blocks[layer].attn.o.weight.detach().to("cpu", torch.float32) for layer in layers
    ]
    return weight_fingerprint(torch.cat(weights, dim=1)) if weights else ""


class SafeInfer(Artifact):
    """SafeInfer (Banerjee et al., AAAI 2025) on one model: SA, sGDS or both (estimator contract).

    `save(dir)` / `SafeInfer.load(dir, model)` (`interp._artifact.Artifact`), with the unsafe
    model's refusal direction in `unsafe_direction/`; loading raises
    `FunctionVectorMismatchError` for another width, template, depth or (unless
    `allow_other_model`) other unembedding or `o_proj` weights.

    Args:
        layer: Block after which `coef * FV` is added; None: a quarter of the depth.
        coef: FV multiplier (1.5).
        alpha: sGDS weight in [0, 1) (0.99).
        heads: (layer, head) pairs making the FV; None: the top `n_heads` of `search_heads`.
        mode: `"sa"`, `"sgds"` or `"both"`.
        n_heads: How many searched heads make the FV (10, as the paper's lists).
        n_shots: Demonstrations per in-context prompt (10).
        n_prompts: In-context prompts averaged (100).
        search_layers: Layers the head search covers (None: all).
        n_search_prompts: Zero-shot prompts of the head search.
        answer: The demonstrations' answer.
        strategy: How sGDS runs the unsafe model (`"doubled"` batch, faster here, or
            `"two_pass"`).
        sample: Sample at T = 1 (the paper) with a seeded Gumbel-max instead of greedy.
        seed: Seed of the prompt draws and the sampling.

    Raises:
        ParameterError: `n_heads`, `n_shots`, `n_prompts` or `n_search_prompts` below 1.
        AlphaError: `alpha` outside [0, 1). `coef`, `layer`, `heads` and `mode` are checked
            by `SafeInferConfig`.

    Attributes:
        fv_: The function vector [d_model]; `means_` the head means [L, H, d_head].
        heads_: The heads used; `search_`: the `HeadSearch` (None when heads were given).
        layer_: The SA layer; `direction_`: the refusal direction the unsafe model ablates.
        model_: The `ModelIdentity` of the model (name, width, template, fingerprint);
            `fingerprint_` and `o_proj_fingerprint_` its unembedding and the heads' `o_proj`.
        transferred_from_: After `load(..., allow_other_model=True)` onto a model with other
            weights, the name and fingerprint of the model it was made on; else None. The
            weight checks of `check_model` are then skipped.
    """

    _KIND, _VERSION, _WHAT = "safeinfer", 1, "SafeInfer"
    _MISMATCH = FunctionVectorMismatchError

    def __init__(
        self,
        layer: int | None = None,
        coef: float = 1.5,
        alpha: float = 0.99,
        heads: Sequence[Sequence[int]] | None = None,
        mode: Mode = "both",
        n_heads: int = 10,
        n_shots: int = 10,
        n_prompts: int = 100,
        search_layers: Sequence[int] | None = None,
        n_search_prompts: int = 32,
        answer: str = REFUSAL_ANSWER,
        strategy: Strategy = "doubled",
        sample: bool = False,
        seed: int = 0,
    ) -> None:
        for value, what in ((n_heads, "n_heads"), (n_shots, "n_shots"), (n_prompts, "n_prompts")):
            check_int(value, f"SafeInfer {what}")
        check_int(n_search_prompts, "SafeInfer n_search_prompts")
        self.layer = layer
        self.coef = coef
        self.alpha = alpha
        self.heads = heads
        self.mode = mode
        self.n_heads = n_heads
        self.n_shots = n_shots
        self.n_prompts = n_prompts
        self.search_layers = search_layers
        self.n_search_prompts = n_search_prompts
        self.answer = answer
        self.strategy = strategy
        self.sample = sample
        self.seed = seed
        GuidedDecoding(alpha=alpha, strategy=strategy)  # validates alpha and strategy now
        _ = self.config

    @property
    def config(self) -> SafeInferConfig:
        """The hyperparameters as a validated `SafeInferConfig` (fitted layer/heads once fitted)."""
        heads = getattr(self, "heads_", None)
        if heads is None and self.heads is not None:
            heads = tuple((int(a), int(b)) for a, b in self.heads)
        return SafeInferConfig(
            layer=getattr(self, "layer_", self.layer),
            coef=self.coef,
            alpha=self.alpha,
            heads=heads,
            mode=self.mode,
        )

    def get_params(self) -> dict[str, Any]:
        """The hyperparameters, as given to `__init__` (JSON-ready)."""
        out = {k: getattr(self, k) for k in _PARAMS}
        out["heads"] = None if self.heads is None else [list(map(int, h)) for h in self.heads]
        if self.search_layers is not None:
            out["search_layers"] = [int(x) for x in self.search_layers]
        return out

    def fit(
        self,
        model: TransformerBridge,
        harmful: Prompts,
        queries: Prompts | None = None,
        *,
        direction: Direction | None = None,
    ) -> SafeInfer:
        """Extract the function vector from harmful prompts (and keep the unsafe model's direction).

        Args:
            model: The bridge (left unchanged).
            harmful: Harmful requests the demonstrations are drawn from.
            queries: Requests the in-context queries (and the head search's zero-shot
                prompts) are drawn from; default `harmful`.
            direction: The refusal direction whose ablation makes the unsafe model; needed
                in modes `sgds` and `both`.
        """
        config = self.config
        n_layers, n_heads, _ = head_shape(model)
        if config.uses_sgds and direction is None:
            raise InterpError(
                f"SafeInfer mode {self.mode!r} decodes against an unsafe model: pass the "
                "refusal direction to ablate, fit(model, harmful, direction=...)"
            )
        layer = default_layer(n_layers) if self.layer is None else int(self.layer)
        check_layer(layer, n_layers, "SA layer")
        given = None if self.heads is None else check_heads(self.heads, n_layers, n_heads)
        demos = texts_of(harmful)
        asked = demos if queries is None else texts_of(queries)
        prompts = icl_prompts(
            demos, asked, n_prompts=self.n_prompts, n_shots=self.n_shots, seed=self.seed,
            answer=self.answer,
        )  # fmt: skip
        self.means_ = mean_head_activations(model, prompts)
        self.search_: HeadSearch | None = None
        if given is None:
            gen = torch.Generator().manual_seed(self.seed + 1)
            pick = torch.randperm(len(asked), generator=gen)[: self.n_search_prompts].tolist()
            self.search_ = search_heads(
                model,
                self.means_,
                zero_shot_prompts([asked[i] for i in pick]),
                answer_token(model, self.answer),
                layers=self.search_layers,
            )
            given = self.search_.top(self.n_heads)
        self.heads_ = given
        self.layer_ = layer
        self.fv_ = function_vector(model, self.means_, given)
        self.direction_ = None if direction is None else direction.check(model)
        self._identify(model)
        return self

    def _identify(self, model: TransformerBridge) -> None:
        self.model_ = ModelIdentity.of(model)
        self.fingerprint_ = unembedding_fingerprint(model)
        self.o_proj_fingerprint_ = _o_proj_fingerprint(model, self.heads_)
        self.transferred_from_: dict[str, str] | None = None

    def _check(self) -> None:
        if not hasattr(self, "fv_"):
            raise NotFittedError("this SafeInfer is not fitted; call fit(...) or load(...)")

    def check_model(self, model: TransformerBridge, weights: bool | None = None) -> None:
        """Raise `FunctionVectorMismatchError` unless `model` is the one the FV was made on.

        Args:
            model: The bridge.
            weights: Also compare the unembedding and the heads' `o_proj` weights (by default
                unless loaded onto another model on purpose, `transferred_from_`).
        """
        self._check()
        n_layers, n_heads, _ = head_shape(model)
        problems = []
        if int(model.cfg.d_model) != self.model_.d_model:
            problems.append(f"d_model {model.cfg.d_model} != {self.model_.d_model}")
        elif any(a >= n_layers or b >= n_heads for a, b in self.heads_) or self.layer_ >= n_layers:
            problems.append("its heads or SA layer do not exist in this model")
        else:
            if template_hash(model.tokenizer) != self.model_.template_hash:
                problems.append("the chat template differs")
            # Loaded onto another model on purpose (allow_other_model=True): weights may differ.
            if weights is None:
                weights = getattr(self, "transferred_from_", None) is None
            if weights:
                if unembedding_fingerprint(model) != self.fingerprint_:
                    problems.append("the unembedding differs")
                if _o_proj_fingerprint(model, self.heads_) != self.o_proj_fingerprint_:
                    problems.append("the heads' o_proj weights differ")
        if problems:
            raise FunctionVectorMismatchError(
                f"the SafeInfer function vector was made on {self.model_.name!r}, not on "
                f"{model.cfg.model_name!r} ({'; '.join(problems)}); fit SafeInfer on this model"
            )

    def amplification(self) -> SafetyAmplification:
        """The SA intervention value (`coef * FV` after `layer_`)."""
        self._check()
        return SafetyAmplification(self.fv_, self.layer_, float(self.coef))

    def decoder(self) -> GuidedDecoding:
        """The sGDS decoder of this SafeInfer (SA on the guided rows in mode `both`)."""
        self._check()
        if self.direction_ is None:
            raise InterpError("this SafeInfer has no refusal direction, so no unsafe model")
        steer = (self.amplification(),) if self.config.uses_sa else ()
        return GuidedDecoding(
            alpha=float(self.alpha),
            steer=steer,
            unsafe=(DirectionalAblation(self.direction_),),
            sample=bool(self.sample),
            seed=int(self.seed),
            strategy=self.strategy,
        )

    def generate(
        self,
        model: TransformerBridge,
        prompts: Prompts,
        *,
        max_new_tokens: int = 48,
        batch_size: int = 32,
        system: str | None = None,
    ) -> Completions:
        """SafeInfer completions of `prompts` in input order (the `Decoder` protocol)."""
        self.check_model(model)
        config = self.config
        if not config.uses_sgds:
            sa = self.amplification()
            return generate(
                model,
                prompts,
                system=system,
                max_new_tokens=max_new_tokens,
                batch_size=batch_size,
                fwd_hooks=sa.hooks(model),
                logits_fn=gumbel_noise(int(self.seed)) if self.sample else None,
            )
        decoder = self.decoder()
        if system is not None:
            decoder = dataclasses.replace(decoder, system=system)
        return decoder.generate(
            model, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size
        )

    # ------------------------------------------------------------------ artifacts

    def _payload(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        self._check()
        tensors = {"fv": self.fv_, "means": self.means_}
        if self.search_ is not None:
            tensors["search_effects"] = self.search_.effects
        meta = {
            "unembedding_fingerprint": self.fingerprint_,
            "o_proj_fingerprint": self.o_proj_fingerprint_,
            "config": self.config.to_dict(),
            "params": self.get_params(),
            "search": None if self.search_ is None else self.search_.to_dict(),
            "has_direction": self.direction_ is not None,
            "fv_bias": "o_proj bias excluded",
        }
        return meta, tensors

    def _extra(self, folder: Path) -> None:
        if self.direction_ is not None:
            self.direction_.save(folder / "unsafe_direction")

    @classmethod
    def _from_saved(cls, saved: Saved) -> SafeInfer:
        params = dict(saved.meta["params"])
        if params["heads"] is not None:
            params["heads"] = [tuple(h) for h in params["heads"]]
        est = cls(**params)
        config = SafeInferConfig.from_dict(saved.meta["config"])
        est.fv_, est.means_ = saved.tensors["fv"], saved.tensors["means"]
        est.heads_ = tuple(config.heads or ())
        est.layer_ = int(config.layer if config.layer is not None else 0)
        est.search_ = (
            None if saved.meta["search"] is None else _search(saved.meta["search"], saved.tensors)
        )
        est.model_ = ModelIdentity.from_meta(saved.meta)
        est.fingerprint_ = saved.meta["unembedding_fingerprint"]
        est.o_proj_fingerprint_ = saved.meta["o_proj_fingerprint"]
        est.check_model(saved.model, weights=saved.check_weights)
        est.direction_ = (
            Direction.load(
                saved.path / "unsafe_direction",
                saved.model,
                allow_other_model=saved.allow_other_model,
                verify=saved.verify,
            )
            if saved.meta["has_direction"]
            else None
        )
        return est


def _search(saved: dict[str, Any], tensors: dict[str, torch.Tensor]) -> HeadSearch:
    """The saved `HeadSearch` (its effects come from the tensor file)."""
    return HeadSearch(
        effects=tensors["search_effects"],
        corrupted_prob=float(saved["corrupted_prob"]),
        target_token=int(saved["target_token"]),
        layers=tuple(saved["layers"]),
        n_prompts=int(saved["n_prompts"]),
    )
