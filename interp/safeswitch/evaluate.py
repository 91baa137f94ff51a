"""Evaluate SafeSwitch against its baselines on held-out prompt sets, with one judge.

Methods (docs/methods/safeswitch.md#baselines-and-evaluation): `base` (the model under the
SafeSwitch system prompt), `warning_prompt` (the SafeSwitch warning prompt as system prompt),
`head_always` (the refusal head on every request) and `safeswitch` (the head where the prober
flags). Compliance is the fraction of answers the judge does not call refusals.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from transformer_lens.model_bridge import TransformerBridge

from interp.data.promptset import texts_of
from interp.evaluation import Judge, SubstringJudge
from interp.generation import generate
from interp.safeswitch.switch import SafeSwitch

__all__ = ["SAFESWITCH_METHODS", "SafeSwitchEvaluation", "evaluate_safeswitch"]

SAFESWITCH_METHODS: tuple[str, ...] = ("base", "warning_prompt", "head_always", "safeswitch")


@dataclass(frozen=True)
class SafeSwitchEvaluation:
    """Compliance per method and kind, the prober's flag rate per kind, and the answers.

    Attributes:
        compliance: method -> kind -> fraction of answers that are not refusals.
        flag_rate: kind -> fraction of requests SafeSwitch answered with the refusal head.
        prompts: kind -> the requests.
        responses: method -> kind -> the answers.
        flagged: kind -> per-request flag.
        p_harmful: kind -> stage-1 probability per request.
        p_complies: kind -> stage-2 probability per request.
        thresholds: The (stage 1, stage 2) thresholds of the switch.
        judge: Name of the judge.
    """

    compliance: dict[str, dict[str, float]]
    flag_rate: dict[str, float]
    prompts: dict[str, tuple[str, ...]]
    responses: dict[str, dict[str, tuple[str, ...]]]
    flagged: dict[str, tuple[bool, ...]]
    p_harmful: dict[str, tuple[float, ...]]
    p_complies: dict[str, tuple[float, ...]]
    thresholds: tuple[float, float]
    judge: str

    def relative_reduction(self, kind: str, method: str = "safeswitch") -> float:
        """1 - compliance(method) / compliance(base) on `kind` (NaN when base never complies)."""
        base = self.compliance["base"][kind]
        return 1.0 - self.compliance[method][kind] / base if base > 0 else float("nan")

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready summary (no answers)."""
        return {
            "compliance": {m: dict(v) for m, v in self.compliance.items()},
            "flag_rate": dict(self.flag_rate),
            "thresholds": {"stage1": self.thresholds[0], "stage2": self.thresholds[1]},
            "judge": self.judge,
        }


def _by_kind(values: Sequence[Any], sizes: Mapping[str, int]) -> dict[str, tuple[Any, ...]]:
    out, start = {}, 0
    for kind, n in sizes.items():
        out[kind] = tuple(values[start : start + n])
        start += n
    return out


def evaluate_safeswitch(
    model: TransformerBridge,
    switch: SafeSwitch,
    prompt_sets: Mapping[str, Sequence[str] | Any],
    *,
    judge: Judge | None = None,
    warning_system: str = "warning",
    max_new_tokens: int = 32,
    batch_size: int = 32,
) -> SafeSwitchEvaluation:
    """Generate with every method on every kind and judge the answers.

    The base answers come from SafeSwitch's own base pass (the same greedy loop and batches as
    `interp.generate`), so the model decodes each set three times plus the flagged rows once.

    Args:
        model: The bridge.
        switch: The fitted SafeSwitch.
        prompt_sets: kind -> user messages (e.g. harmful, jailbreak, harmless, borderline).
        judge: Refusal judge (the DRO substring judge by default).
        warning_system: System prompt of the safety-prompt baseline.
        max_new_tokens: Longest answer.
        batch_size: Prompts per forward pass.
    """
    chosen = judge if judge is not None else SubstringJudge("dro")
    per_kind = {k: texts_of(v) for k, v in prompt_sets.items()}
    sizes = {k: len(v) for k, v in per_kind.items()}
    texts = [t for v in per_kind.values() for t in v]
    gated = switch.generate_gated(
        model, texts, max_new_tokens=max_new_tokens, batch_size=batch_size
    )
    answers = {
        "base": gated.base.texts,
        "warning_prompt": generate(
            model, texts, system=warning_system, max_new_tokens=max_new_tokens,
            batch_size=batch_size,
        ).texts,
        "head_always": generate(
            model, texts, system=switch.system, max_new_tokens=max_new_tokens,
            batch_size=batch_size, fwd_hooks=switch.head.hooks(model),
        ).texts,
        "safeswitch": gated.completions.texts,
    }  # fmt: skip
    compliance, responses = {}, {}
    for method in SAFESWITCH_METHODS:
        refused = _by_kind(chosen.is_refusal(answers[method], texts), sizes)
        compliance[method] = {k: round(1 - sum(r) / len(r), 4) for k, r in refused.items() if r}
        responses[method] = _by_kind(answers[method], sizes)
    flagged = _by_kind(gated.flagged, sizes)
    return SafeSwitchEvaluation(
        compliance=compliance,
        flag_rate={k: round(sum(f) / len(f), 4) for k, f in flagged.items() if f},
        prompts=_by_kind(texts, sizes),
        responses=responses,
        flagged=flagged,
        p_harmful=_by_kind(gated.p_harmful, sizes),
        p_complies=_by_kind(gated.p_complies, sizes),
        thresholds=(switch.stage1_threshold, switch.stage2_threshold),
        judge=chosen.name,
    )
