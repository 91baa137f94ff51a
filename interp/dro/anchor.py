"""The DRO anchor space: a PCA of final states and two logistic probes inside it.

DRO (Zheng et al. 2024, docs/methods/dro.md#the-anchor-space) reads the post-final-norm state at the last
prompt token, f(x, s), of harmful and harmless queries under no system prompt and under each
human safety prompt. A PCA with a few components (4) is fitted on all of them, and two
logistic regressions live in that space:

* the *refusal* model, fitted on soft targets: the empirical compliance rate of the model's own
  sampled responses (1 - the refusal rate), so its logit is a logit of compliance and its
  negative weight vector points toward refusal;
* the *harmfulness* model, with targets harmless = 1, harmful = 0 (a logit of harmlessness).

`collect_anchor_data` measures the states and the sampled refusal rates, `AnchorSpace` fits the
PCA and the probes (estimator contract).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformer_lens.model_bridge import TransformerBridge

from interp._checks import check_int, check_real
from interp.activations import collect_activations
from interp.chat import SAFETY_PROMPTS, unknown_prompt_message
from interp.data.promptset import texts_of
from interp.errors import NotFittedError, SingleKindError, UnknownSafetyPromptError
from interp.evaluation import Judge, SubstringJudge
from interp.generation import decode_with_states
from interp.min_samples import MIN_PER_CLASS, require_per_class
from interp.probes import ProbeInputError, as_tensor, check_inputs
from interp.projection import PCA
from interp.sites import Site

__all__ = [
    "ANCHOR_CONDITIONS",
    "FINAL_SITE",
    "AnchorData",
    "AnchorSpace",
    "check_prompt_name",
    "collect_anchor_data",
    "empirical_refusal_rates",
    "final_states",
    "gumbel_sampler",
    "sample_responses",
    "split_kinds",
    "texts_hash",
]

logger = logging.getLogger(__name__)

#: The feature DRO reads: HF `hidden_states[-1]`, the output of the final norm.
FINAL_SITE = Site("ln_final")
#: No system prompt and DRO's three human safety prompts (docs/methods/judges_and_prompts.md#the-dro-human-safety-prompts).
ANCHOR_CONDITIONS: tuple[str, ...] = ("none", "default", "short", "mistral")


def check_prompt_name(name: str) -> str:
    """Return the text of a named safety prompt, or raise `UnknownSafetyPromptError`."""
    if name not in SAFETY_PROMPTS:
        raise UnknownSafetyPromptError(unknown_prompt_message(name))
    return SAFETY_PROMPTS[name]


def texts_hash(texts: Sequence[str], labels: Sequence[int]) -> str:
    """SHA-256 of a training set's texts and 0/1 labels, in order."""
    payload = json.dumps([list(texts), [int(v) for v in labels]], ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def final_states(
    model: TransformerBridge,
    prompts: Sequence[str] | Any,
    system: str | None = None,
    *,
    batch_size: int = 64,
) -> torch.Tensor:
    """Post-final-norm states at the last prompt token, f(x, s): float32 [n, d_model]."""
    acts = collect_activations(
        model, prompts, [FINAL_SITE], system=system, batch_size=batch_size, progress=False
    )
    return acts.get(FINAL_SITE)


def gumbel_sampler(
    seed: int, temperature: float = 1.0
) -> Callable[[torch.Tensor, int], torch.Tensor]:
    """A `logits_fn` that turns the shared greedy loop into seeded sampling at `temperature`.

    Adding Gumbel noise to logits / T makes the argmax a draw from softmax(logits / T) (the
    Gumbel-max trick), so `interp.generate(..., logits_fn=gumbel_sampler(seed))` samples.
    The noise comes from a private CPU generator: the same calls give the same samples.
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    gen = torch.Generator().manual_seed(int(seed))

    def sample(logits: torch.Tensor, step: int) -> torch.Tensor:  # noqa: ARG001 - LogitsFn
        u = torch.rand(logits.shape, generator=gen, dtype=torch.float64)
        gumbel = -torch.log(-torch.log(u.clamp(1e-12, 1.0 - 1e-12)))
        return logits / temperature + gumbel.to(logits.device, logits.dtype)

    return sample


def sample_responses(
    model: TransformerBridge,
    prompts: Sequence[str] | Any,
    system: str | None = None,
    *,
    n_samples: int = 4,
    max_new_tokens: int = 8,
    temperature: float = 1.0,
    judge: Judge | None = None,
    batch_size: int = 64,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Empirical refusal rate over sampled responses, and f(x, s), per query.

    Each query is repeated `n_samples` times and decoded through the shared loop with
    `gumbel_sampler` (temperature `temperature`, no top-p / top-k truncation, unlike DRO's
    original T=1, top-p 0.9, top-k 50). The final state comes from the same prompt pass.

    Returns:
        (share of samples the judge calls refusals [n] (float64), f(x, s) [n, d_model]).
    """
    texts = texts_of(prompts)
    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1, got {n_samples}")
    chosen: Judge = judge if judge is not None else SubstringJudge("dro")
    repeated = [t for t in texts for _ in range(n_samples)]
    out, states = decode_with_states(
        model, repeated, system, max_new_tokens=max_new_tokens, batch_size=batch_size,
        logits_fn=gumbel_sampler(seed, temperature),
    )  # fmt: skip
    flags = torch.tensor(chosen.is_refusal(list(out.texts), repeated), dtype=torch.float64)
    rates = flags.reshape(len(texts), n_samples).mean(1)
    return rates, states.reshape(len(texts), n_samples, -1)[:, 0].clone()


def empirical_refusal_rates(
    model: TransformerBridge,
    prompts: Sequence[str] | Any,
    system: str | None = None,
    **options: Any,
) -> torch.Tensor:
    """Share of sampled responses per query that the judge calls refusals: [n].

    Takes the options of `sample_responses` (n_samples, max_new_tokens, temperature, judge,
    batch_size, seed).
    """
    return sample_responses(model, prompts, system, **options)[0]


@dataclass(frozen=True)
class AnchorData:
    """Final states and sampled refusal rates of the same queries under several conditions.

    Attributes:
        texts: The queries (harmful first, then harmless).
        harmful: 1 for harmful queries, per query.
        states: condition -> f(x, s) [n, d_model] ("none" means no system prompt).
        refusal: condition -> empirical refusal rate [n] over the sampled responses.
        n_samples: Responses sampled per query and condition.
    """

    texts: tuple[str, ...]
    harmful: tuple[int, ...]
    states: dict[str, torch.Tensor]
    refusal: dict[str, torch.Tensor]
    n_samples: int

    @property
    def conditions(self) -> tuple[str, ...]:
        """The conditions, in collection order."""
        return tuple(self.states)

    def stacked(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(states [n * c, d], harmful [n * c], compliance rate [n * c]) over all conditions."""
        conds = self.conditions
        states = torch.cat([self.states[c] for c in conds])
        harmful = torch.tensor(list(self.harmful) * len(conds), dtype=torch.float64)
        comply = 1.0 - torch.cat([self.refusal[c] for c in conds])
        return states, harmful, comply


def split_kinds(
    harmful: Sequence[str] | Any, harmless: Sequence[str] | Any
) -> tuple[list[str], list[int]]:
    """Concatenate harmful and harmless queries with 0/1 labels; both kinds are required."""
    bad, good = texts_of(harmful), texts_of(harmless)
    if not bad or not good:
        missing = "harmful" if not bad else "harmless"
        raise SingleKindError(
            f"the DRO training set has no {missing} queries; pass both harmful and harmless "
            "queries (DRO pushes the two kinds in opposite directions)"
        )
    return [str(t) for t in bad + good], [1] * len(bad) + [0] * len(good)


def collect_anchor_data(
    model: TransformerBridge,
    harmful: Sequence[str] | Any,
    harmless: Sequence[str] | Any,
    *,
    conditions: Sequence[str] = ANCHOR_CONDITIONS,
    n_samples: int = 4,
    max_new_tokens: int = 8,
    temperature: float = 1.0,
    judge: Judge | None = None,
    batch_size: int = 64,
    seed: int = 0,
    min_per_class: int = MIN_PER_CLASS,
) -> AnchorData:
    """Measure f(x, s) and the sampled refusal rate of each query under each condition.

    Args:
        model: The bridge.
        harmful: Harmful training queries.
        harmless: Harmless training queries.
        conditions: "none" and/or safety-prompt names.
        n_samples: Sampled responses per query and condition (DRO used 20 of 25).
        max_new_tokens: Length of each sampled response.
        temperature: Sampling temperature.
        judge: Refusal judge (DRO's substring rules by default).
        batch_size: Sequences per forward pass.
        seed: Seed of the sampling (condition i uses seed + i).
        min_per_class: Sampled responses required of each label, refusals and compliant
            answers over all conditions (`interp.MIN_PER_CLASS` by default).

    Returns:
        The states and refusal rates.

    Raises:
        TooFewExamplesError: Fewer than `min_per_class` sampled refusals or compliant answers:
            the refusal model of the anchor space would be fitted on noise.
    """
    texts, labels = split_kinds(harmful, harmless)
    for cond in conditions:
        if cond != "none":
            check_prompt_name(cond)
    states: dict[str, torch.Tensor] = {}
    refusal: dict[str, torch.Tensor] = {}
    for i, cond in enumerate(conditions):
        system = None if cond == "none" else cond
        refusal[cond], states[cond] = sample_responses(
            model, texts, system, n_samples=n_samples, max_new_tokens=max_new_tokens,
            temperature=temperature, judge=judge, batch_size=batch_size, seed=seed + i,
        )  # fmt: skip
    n_refused = round(float(sum(r.sum() for r in refusal.values())) * n_samples)
    n_total = len(texts) * len(conditions) * n_samples
    require_per_class(
        "DRO's refusal labels (sampled responses of the anchor queries)",
        {"refusals": n_refused, "compliant answers": n_total - n_refused},
        minimum=min_per_class,
        fix="Pass more anchor queries (or more samples per query) of the kinds the model "
        "refuses and answers.",
    )
    return AnchorData(tuple(texts), tuple(labels), states, refusal, n_samples)


def _fit_soft_logistic(
    z: torch.Tensor,
    y: torch.Tensor,
    C: float,
    max_iter: int,  # noqa: N803
) -> tuple[torch.Tensor, float]:
    """L2-regularised logistic regression on soft targets y in [0, 1] (L-BFGS, float64).

    Minimises mean BCE(sigmoid(z w + b), y) + ||w||^2 / (2 C n), scikit-learn's scaling; the
    penalty keeps the weights finite when the classes separate.
    """
    n, k = z.shape
    theta = torch.zeros(k + 1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS(
        [theta], lr=1.0, max_iter=max_iter, tolerance_grad=1e-10, tolerance_change=1e-12,
        line_search_fn="strong_wolfe",
    )  # fmt: skip

    def closure() -> torch.Tensor:
        opt.zero_grad()
        logits = z @ theta[:k] + theta[k]
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y)
        loss = loss + (theta[:k] ** 2).sum() / (2.0 * C * n)
        loss.backward()
        return loss

    opt.step(closure)
    out = theta.detach()
    return out[:k].clone(), float(out[k])


class AnchorSpace:
    """PCA of final states plus DRO's refusal and harmfulness logistic models in it.

    Args:
        n_components: PCA dimensions (4 in DRO).
        C: Inverse L2 strength of the two logistic regressions (scikit-learn convention).
        max_iter: L-BFGS iterations per regression.

    Attributes:
        mean_: PCA mean [d_model] (float64).
        components_: Orthonormal PCA axes [n_components, d_model] (float64).
        explained_variance_ratio_: Share of the variance per axis.
        refusal_coef_: Weights of the compliance logit in PCA coordinates [n_components];
            `-refusal_coef_` points toward refusal.
        refusal_intercept_: Its bias.
        harm_coef_: Weights of the harmlessness logit [n_components] (harmless = 1).
        harm_intercept_: Its bias.

    Raises:
        ParameterError: `n_components` or `max_iter` below 1, or `C` not > 0.
    """

    def __init__(self, n_components: int = 4, C: float = 1.0, max_iter: int = 200) -> None:  # noqa: N803
        check_int(n_components, "AnchorSpace n_components")
        check_real(C, "AnchorSpace C", low=0, low_open=True)
        check_int(max_iter, "AnchorSpace max_iter")
        self.n_components = n_components
        self.C = C
        self.max_iter = max_iter

    def fit(
        self, states: Any, harmful: Sequence[float] | Any, comply: Sequence[float] | Any
    ) -> AnchorSpace:
        """Fit the PCA and both probes.

        Args:
            states: f(x, s) [n, d_model] of every query under every condition.
            harmful: 1 for harmful rows, 0 for harmless ones (both must occur; hard labels).
            comply: Soft compliance targets in [0, 1] (1 - the empirical refusal rate).
        """
        x = as_tensor(states).double()
        # Hard labels: a 0.5 is refused (NonBinaryLabelsError), never rounded to a class.
        labels = check_inputs(x, harmful, need_two_classes=False)
        if len(set(labels.tolist())) < 2:
            raise SingleKindError(
                "the anchor space needs harmful and harmless rows; all rows have harmful="
                f"{int(labels[0])}. Add queries of the other kind"
            )
        soft = as_tensor(comply).double()
        if soft.shape != (x.shape[0],) or bool(((soft < 0) | (soft > 1) | soft.isnan()).any()):
            raise ProbeInputError(
                f"comply must hold {x.shape[0]} rates in [0, 1] (one per row), got shape "
                f"{tuple(soft.shape)}, min {float(soft.min()) if soft.numel() else 'n/a'}, max "
                f"{float(soft.max()) if soft.numel() else 'n/a'}"
            )
        pca = PCA(self.n_components).fit(x)
        self.mean_ = pca.mean_
        self.components_ = pca.components_
        self.explained_variance_ratio_ = pca.explained_variance_ratio_
        z = pca.transform(x)
        self.refusal_coef_, self.refusal_intercept_ = _fit_soft_logistic(
            z, soft, self.C, self.max_iter
        )
        self.harm_coef_, self.harm_intercept_ = _fit_soft_logistic(
            z, 1.0 - labels.double(), self.C, self.max_iter
        )
        if float(soft.min()) == float(soft.max()):
            logger.warning(
                "every anchor query has the same refusal rate (%.2f): the refusal model is flat "
                "and L_r gives no signal", float(soft[0]),
            )  # fmt: skip
        return self

    def _check(self) -> None:
        if not hasattr(self, "components_"):
            raise NotFittedError("this AnchorSpace is not fitted yet; call fit first")

    def transform(self, states: Any) -> torch.Tensor:
        """PCA coordinates z = V (f - mean): [n, n_components] (float64)."""
        self._check()
        return (as_tensor(states).double() - self.mean_) @ self.components_.T

    def compliance_logit(self, states: Any) -> torch.Tensor:
        """The refusal model's logit of compliance per row: [n]."""
        return self.transform(states) @ self.refusal_coef_ + self.refusal_intercept_

    def harmlessness_logit(self, states: Any) -> torch.Tensor:
        """The harmfulness model's logit of harmlessness per row: [n]."""
        return self.transform(states) @ self.harm_coef_ + self.harm_intercept_

    def refusal_direction(self) -> torch.Tensor:
        """Unit vector in PCA coordinates along which refusal rises: -w_r / |w_r|."""
        self._check()
        w = -self.refusal_coef_
        return w / w.norm().clamp_min(1e-12)

    def tensors(self) -> dict[str, torch.Tensor]:
        """The fitted parameters as named float64 tensors (for safetensors)."""
        self._check()
        return {
            "anchor.mean": self.mean_,
            "anchor.components": self.components_,
            "anchor.explained_variance_ratio": self.explained_variance_ratio_,
            "anchor.refusal_coef": self.refusal_coef_,
            "anchor.refusal_intercept": torch.tensor(
                [self.refusal_intercept_], dtype=torch.float64
            ),
            "anchor.harm_coef": self.harm_coef_,
            "anchor.harm_intercept": torch.tensor([self.harm_intercept_], dtype=torch.float64),
        }

    @classmethod
    def from_tensors(
        cls, tensors: Mapping[str, torch.Tensor], params: Mapping[str, Any]
    ) -> AnchorSpace:
        """Rebuild a fitted anchor space from `tensors()` output and its hyperparameters."""
        space = cls(**dict(params))
        space.mean_ = tensors["anchor.mean"].double()
        space.components_ = tensors["anchor.components"].double()
        space.explained_variance_ratio_ = tensors["anchor.explained_variance_ratio"].double()
        space.refusal_coef_ = tensors["anchor.refusal_coef"].double()
        space.refusal_intercept_ = float(tensors["anchor.refusal_intercept"][0])
        space.harm_coef_ = tensors["anchor.harm_coef"].double()
        space.harm_intercept_ = float(tensors["anchor.harm_intercept"][0])
        return space

    def params(self) -> dict[str, Any]:
        """The hyperparameters (JSON-ready)."""
        return {"n_components": self.n_components, "C": self.C, "max_iter": self.max_iter}
