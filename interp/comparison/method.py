"""A method to compare: a name, a family and one way to answer prompts, plus builders.

`Method.generate(model, prompts, max_new_tokens) -> Completions` is all `compare` needs to
measure refusal and cost. KL and CE against the unmodified model need the method's
distribution over the first answer token (`first_token_logprobs`) and its cross-entropy of
given answers (`answer_ce`); a method that cannot say (a decoder that rewrites logits step by
step from what it generated) leaves them None and gives the reason in `not_applicable`, and
the comparison reports "n/a", never a made-up number.

Adapter contract for any other decoder (SafeInfer, CAST, ...): an object with
``generate(model, prompts, *, max_new_tokens=..., **kwargs) -> interp.Completions`` that
returns one completion per prompt, in input order (an `interp.generation.Decoder`) plugs in
with one line::

    methods.append(decoder_method("safeinfer", "defence", safeinfer))

Pass `first_token_logprobs` / `answer_ce` to `decoder_method` when the method can compute
them; otherwise say why in `not_applicable`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

import torch
from transformer_lens.model_bridge import TransformerBridge

from interp.chat import SAFETY_PROMPTS
from interp.directions import Direction
from interp.dro import SoftPrompt
from interp.errors import InterpError
from interp.evaluation import completion_ce, next_token_logprobs
from interp.generation import Completions, generate
from interp.interventions import ActAdd, DirectionalAblation, Intervention, apply
from interp.refusal_direction.sweep import add_at_site
from interp.safeswitch import SafeSwitch, fires

__all__ = [
    "FAMILIES",
    "ComparisonError",
    "Family",
    "Method",
    "ablation_method",
    "actadd_method",
    "baseline_method",
    "decoder_method",
    "intervention_method",
    "prompt_method",
    "prompt_methods",
    "safeswitch_method",
    "soft_prompt_method",
]

Family = Literal["baseline", "prompt", "defence", "attack", "steering"]
#: The families a method belongs to, in the order tables list them.
FAMILIES: tuple[str, ...] = get_args(Family)
GenerateFn = Callable[[TransformerBridge, Sequence[str], int], Completions]
LogprobsFn = Callable[[TransformerBridge, Sequence[str]], torch.Tensor]
AnswerCeFn = Callable[[TransformerBridge, Sequence[str], Sequence[Sequence[int]]], float]


class ComparisonError(InterpError, ValueError):
    """A comparison was asked with bad input (no methods, duplicate names, a missing kind)."""


@dataclass(frozen=True)
class Method:
    """One row of the comparison.

    Attributes:
        name: Unique name of the row.
        family: `baseline`, `prompt`, `defence`, `attack` or `steering`.
        generate: `(model, prompts, max_new_tokens) -> Completions`, in input order.
        first_token_logprobs: `(model, prompts) -> log-probabilities [n, d_vocab]` of the first
            answer token under the method (None: KL not applicable).
        answer_ce: `(model, prompts, answers) -> mean per-token cross-entropy` of the given
            answer tokens under the method (None: CE not applicable).
        not_applicable: Why KL or CE is missing ("" when both are given).
    """

    name: str
    family: Family
    generate: GenerateFn
    first_token_logprobs: LogprobsFn | None = None
    answer_ce: AnswerCeFn | None = None
    not_applicable: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ComparisonError(f"a method needs a non-empty name, got {self.name!r}")
        if self.family not in FAMILIES:
            raise ComparisonError(
                f"method {self.name!r}: unknown family {self.family!r}; use one of {FAMILIES}"
            )
        if not callable(self.generate):
            raise ComparisonError(f"method {self.name!r}: generate must be callable")


def intervention_method(
    name: str,
    family: Family,
    interventions: Sequence[Intervention] = (),
    *,
    system: str | None = None,
    batch_size: int = 32,
) -> Method:
    """Greedy decoding under a system prompt and a set of hook interventions.

    KL and CE are teacher forced with the same prompt and hooks (`interp.apply`).
    """
    items = tuple(interventions)

    def run(model: TransformerBridge, prompts: Sequence[str], max_new_tokens: int) -> Completions:
        with apply(model, *items):
            return generate(
                model, prompts, system=system, max_new_tokens=max_new_tokens, batch_size=batch_size
            )

    def logprobs(model: TransformerBridge, prompts: Sequence[str]) -> torch.Tensor:
        with apply(model, *items):
            return next_token_logprobs(model, prompts, system, batch_size)

    def ce(
        model: TransformerBridge, prompts: Sequence[str], answers: Sequence[Sequence[int]]
    ) -> float:
        with apply(model, *items):
            return completion_ce(model, prompts, answers, system, batch_size)

    return Method(name, family, run, logprobs, ce)


def baseline_method(*, batch_size: int = 32) -> Method:
    """`none`: plain greedy decoding, no system prompt given (the template's default applies)."""
    return intervention_method("none", "baseline", batch_size=batch_size)


def prompt_method(prompt: str, *, name: str | None = None, batch_size: int = 32) -> Method:
    """A human safety prompt (a name of `interp.SAFETY_PROMPTS`, or any text) as system prompt."""
    label = name if name is not None else prompt
    return intervention_method(label, "prompt", system=prompt, batch_size=batch_size)


def prompt_methods(*, batch_size: int = 32) -> list[Method]:
    """One method per human safety prompt of `interp.SAFETY_PROMPTS`, named by it."""
    return [prompt_method(p, batch_size=batch_size) for p in SAFETY_PROMPTS]


def ablation_method(
    direction: Direction, *, name: str = "ablation", batch_size: int = 32
) -> Method:
    """The attack: the refusal direction projected out at every layer and position."""
    return intervention_method(
        name, "attack", [DirectionalAblation(direction)], batch_size=batch_size
    )


def actadd_method(
    direction: Direction,
    coeff: float = 1.0,
    layer: int | None = None,
    *,
    name: str = "actadd",
    batch_size: int = 32,
) -> Method:
    """Steering: `coeff` times the refusal direction added at `layer`'s block input.

    With `layer=None` it is added where the direction was taken (`add_at_site`: the block
    input for a `resid_pre` direction, its own stream for a `resid_mid` / `resid_post` one),
    as the refusal-direction section's ActAdd condition does.
    """
    act = add_at_site(direction, coeff) if layer is None else ActAdd(direction, coeff, layer)
    return intervention_method(name, "steering", [act], batch_size=batch_size)


def decoder_method(
    name: str,
    family: Family,
    decoder: Any,
    *,
    batch_size: int | None = None,
    first_token_logprobs: LogprobsFn | None = None,
    answer_ce: AnswerCeFn | None = None,
    not_applicable: str = "",
    **generate_kwargs: Any,
) -> Method:
    """The adapter: any object with `generate(model, prompts, *, max_new_tokens, ...)`.

    Args:
        name: Row name.
        family: Its family.
        decoder: The object; its `generate` must return `Completions` in input order.
        batch_size: Passed on as `batch_size=` when given.
        first_token_logprobs: Its first-token log-distribution, when it can give one.
        answer_ce: Its cross-entropy of given answers, when it can give one.
        not_applicable: Why KL / CE are missing (a default reason is filled in).
        **generate_kwargs: Further keywords for `decoder.generate`.
    """
    if not callable(getattr(decoder, "generate", None)):
        raise ComparisonError(
            f"method {name!r}: {type(decoder).__name__} has no generate(model, prompts, ...)"
        )
    extra = dict(generate_kwargs)
    if batch_size is not None:
        extra["batch_size"] = batch_size

    def run(model: TransformerBridge, prompts: Sequence[str], max_new_tokens: int) -> Completions:
        out = decoder.generate(model, list(prompts), max_new_tokens=max_new_tokens, **extra)
        if not isinstance(out, Completions):
            raise ComparisonError(
                f"method {name!r}: generate returned {type(out).__name__}, not Completions"
            )
        return out

    missing = first_token_logprobs is None or answer_ce is None
    reason = not_applicable or (
        f"{type(decoder).__name__} changes decoding itself and gives no teacher-forced distribution"
        if missing
        else ""
    )
    return Method(name, family, run, first_token_logprobs, answer_ce, reason)


def soft_prompt_method(soft: SoftPrompt, *, name: str = "dro", batch_size: int = 32) -> Method:
    """The DRO soft prompt in place of its human prompt; KL from its first-token logits.

    CE is not computed: the soft prompt's hook is placed per rendered prompt batch, and
    teacher forcing appended answers moves those positions.
    """

    def logprobs(model: TransformerBridge, prompts: Sequence[str]) -> torch.Tensor:
        texts = list(prompts)
        parts = []
        with torch.no_grad():
            for start in range(0, len(texts), batch_size):
                last = soft.logits(model, texts[start : start + batch_size])[:, -1]
                parts.append(torch.log_softmax(last.double(), -1).cpu())
        return torch.cat(parts)

    return decoder_method(
        name, "prompt", soft, batch_size=batch_size, first_token_logprobs=logprobs,
        not_applicable="CE not computed: the soft prompt is placed per rendered prompt batch, "
        "and teacher forcing appended answers moves its positions",
    )  # fmt: skip


def _gated(
    switch: SafeSwitch, model: TransformerBridge, prompts: Sequence[str], batch_size: int
) -> list[bool]:
    """Which prompts SafeSwitch answers with its refusal head (the gate's decision)."""
    p1, p2 = switch.probabilities(model, list(prompts), batch_size=batch_size)
    flags = fires(p1, switch.stage1_threshold) & fires(p2, switch.stage2_threshold)
    return [bool(f) for f in flags]


def safeswitch_method(
    switch: SafeSwitch, *, name: str = "safeswitch", batch_size: int = 32
) -> Method:
    """SafeSwitch: the refusal head where the prober fires (its own system prompt).

    KL and CE are those of the head the gate picks for each prompt (the refusal head where it
    fires, the model's own elsewhere), teacher forced under SafeSwitch's system prompt.
    """
    system = switch.system

    def logprobs(model: TransformerBridge, prompts: Sequence[str]) -> torch.Tensor:
        texts = list(prompts)
        flags = _gated(switch, model, texts, batch_size)
        out = next_token_logprobs(model, texts, system, batch_size)
        flagged = [i for i, f in enumerate(flags) if f]
        if flagged:
            with apply(model, switch.head):
                out[flagged] = next_token_logprobs(
                    model, [texts[i] for i in flagged], system, batch_size
                )
        return out

    def ce(
        model: TransformerBridge, prompts: Sequence[str], answers: Sequence[Sequence[int]]
    ) -> float:
        texts = list(prompts)
        flags = _gated(switch, model, texts, batch_size)
        total, count = 0.0, 0
        for head in (False, True):
            rows = [i for i, f in enumerate(flags) if f == head]
            n_tokens = sum(len(answers[i]) for i in rows)
            if not rows or not n_tokens:
                continue
            sub, sub_answers = [texts[i] for i in rows], [answers[i] for i in rows]
            with apply(model, *([switch.head] if head else [])):
                total += n_tokens * completion_ce(model, sub, sub_answers, system, batch_size)
            count += n_tokens
        return total / max(count, 1)

    return decoder_method(
        name, "defence", switch, batch_size=batch_size, first_token_logprobs=logprobs,
        answer_ce=ce,
    )  # fmt: skip
