"""One evaluation over every method: the same held-out prompts of every kind, one judge.

`compare` first decodes every prompt greedily with the unmodified model (no system prompt
given, no hooks): that run is the reference for the cost (wall time of a method over the
reference's) and for KL / CE on harmless prompts (the first-token distribution, and the
reference's own greedy harmless answers teacher forced under the method). Then each method
answers every kind; the judge's flags give, per method and kind, the refused count, the rate
and a seeded bootstrap interval. Safety is the pooled refusal of the harmful kinds (harmful and
jailbreak), over-refusal the refusal of borderline requests.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from transformer_lens.model_bridge import TransformerBridge

from interp.comparison.method import ComparisonError, Method
from interp.data import HARMFUL_KINDS, texts_of
from interp.evaluation import (
    Judge,
    RateCount,
    SubstringJudge,
    completion_ce,
    mean_kl,
    next_token_logprobs,
)
from interp.generation import Completions, fresh_generations, generate

__all__ = ["COMPARISON_KINDS", "TABLE_HEADER", "Comparison", "MethodResult", "compare"]

#: The kinds every comparison needs, in table order.
COMPARISON_KINDS: tuple[str, ...] = ("harmful", "jailbreak", "borderline", "harmless")
#: The columns of `Comparison.table()`.
TABLE_HEADER: tuple[str, ...] = (
    "method", "family", *(f"{k} refusal" for k in COMPARISON_KINDS), "safety", "over-refusal",
    "KL harmless", "CE harmless", "cost",
)  # fmt: skip


@dataclass(frozen=True)
class MethodResult:
    """One method measured on every kind.

    Attributes:
        name: The method's name. family: its family.
        rates: kind -> refusal cell.
        safety: Pooled refusal of the harmful kinds (harmful + jailbreak).
        over_refusal: Refusal of borderline requests.
        kl_harmless: Mean first-token KL(reference || method) on harmless prompts (None: n/a).
        ce_harmless: Mean per-token CE of the reference's greedy harmless answers under the
            method (None: n/a).
        seconds: Wall time of the method's generation over every kind.
        cost: `seconds` over the reference's, measured in the same run.
        not_applicable: Why KL or CE is missing.
        responses: kind -> the method's answers.
    """

    name: str
    family: str
    rates: dict[str, RateCount]
    safety: RateCount
    over_refusal: RateCount
    kl_harmless: float | None
    ce_harmless: float | None
    seconds: float
    cost: float
    not_applicable: str = ""
    responses: dict[str, tuple[str, ...]] = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready values (None for what is not applicable)."""
        return {
            "family": self.family,
            "rates": {k: c.to_dict() for k, c in self.rates.items()},
            "safety": self.safety.to_dict(),
            "over_refusal": self.over_refusal.to_dict(),
            "kl_harmless": None if self.kl_harmless is None else round(self.kl_harmless, 6),
            "ce_harmless": None if self.ce_harmless is None else round(self.ce_harmless, 4),
            "seconds": round(self.seconds, 3),
            "cost": round(self.cost, 3),
            "not_applicable": self.not_applicable,
        }


@dataclass(frozen=True)
class Comparison:
    """Every method on the same prompts, with the reference run they are measured against.

    Attributes:
        methods: One result per method, in the order given.
        n: kind -> prompts.
        reference_seconds: Wall time of plain greedy decoding of every prompt (the faster of
            two runs, one before and one after the methods).
        reference_ce: CE of the reference's harmless answers under the unmodified model.
        judge: Name of the judge.
        max_new_tokens: Answer length.
        n_boot: Bootstrap resamples. seed: their seed.
    """

    methods: tuple[MethodResult, ...]
    n: dict[str, int]
    reference_seconds: float
    reference_ce: float
    judge: str
    max_new_tokens: int
    n_boot: int
    seed: int

    def __getitem__(self, name: str) -> MethodResult:
        """The result of the method called `name`."""
        for result in self.methods:
            if result.name == name:
                return result
        raise KeyError(f"no method {name!r}; have {[m.name for m in self.methods]}")

    @property
    def names(self) -> tuple[str, ...]:
        """The methods' names, in order."""
        return tuple(m.name for m in self.methods)

    def table(self) -> list[list[Any]]:
        """Rows in the order of `TABLE_HEADER`; "n/a" where KL or CE is not applicable."""
        rows = []
        for m in self.methods:
            rows.append([
                m.name, m.family, *(m.rates[k].rate for k in COMPARISON_KINDS),
                m.safety.rate, m.over_refusal.rate,
                "n/a" if m.kl_harmless is None else m.kl_harmless,
                "n/a" if m.ce_harmless is None else m.ce_harmless,
                m.cost,
            ])  # fmt: skip
        return rows

    def to_dict(self) -> dict[str, Any]:
        """The `comparison` block of metrics.json."""
        return {
            "methods": {m.name: m.to_dict() for m in self.methods},
            "order": list(self.names),
            "n": dict(self.n),
            "reference": {
                "seconds": round(self.reference_seconds, 3),
                "ce_harmless": round(self.reference_ce, 4),
            },
            "judge": self.judge,
            "max_new_tokens": self.max_new_tokens,
            "interval": {"kind": "percentile bootstrap", "level": 0.95, "n_boot": self.n_boot,
                         "seed": self.seed},
        }  # fmt: skip


def _check(methods: Sequence[Method], prompt_sets: Mapping[str, Any]) -> dict[str, list[str]]:
    """The prompt sets as texts, after checking methods and kinds."""
    if not methods:
        raise ComparisonError("no methods to compare; pass at least one Method")
    names = [m.name for m in methods]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ComparisonError(f"method names must be unique; repeated: {twice}")
    missing = [k for k in COMPARISON_KINDS if k not in prompt_sets]
    if missing:
        raise ComparisonError(
            f"the comparison needs prompts of every kind {COMPARISON_KINDS}; missing {missing}"
        )
    sets = {k: texts_of(prompt_sets[k]) for k in COMPARISON_KINDS}
    empty = [k for k, v in sets.items() if not v]
    if empty:
        raise ComparisonError(f"no prompts of kind(s) {empty}; every kind needs at least one")
    return sets


def _timed(run: Callable[[], dict[str, Completions]], repeats: int) -> tuple[Any, float]:
    """The first run's result and the fastest of `repeats` runs' wall time (as timeit does)."""
    out: dict[str, Completions] = {}
    best = math.inf
    for i in range(max(repeats, 1)):
        start = time.perf_counter()
        got = run()
        best = min(best, time.perf_counter() - start)
        out = got if i == 0 else out
    return out, best


def _answers(
    method: Method,
    model: TransformerBridge,
    sets: Mapping[str, list[str]],
    max_new_tokens: int,
    repeats: int,
) -> tuple[dict[str, Completions], float]:
    """The method's completions of every kind and their wall time."""
    out, seconds = _timed(
        lambda: {k: method.generate(model, texts, max_new_tokens) for k, texts in sets.items()},
        repeats,
    )
    for kind, got in out.items():
        if tuple(got.prompts) != tuple(sets[kind]):
            raise ComparisonError(
                f"method {method.name!r} returned {len(got)} completions for the {len(sets[kind])} "
                f"{kind} prompts, or not in input order"
            )
    return out, seconds


def _reference(
    model: TransformerBridge,
    sets: Mapping[str, list[str]],
    max_new_tokens: int,
    batch_size: int,
    repeats: int,
) -> tuple[dict[str, Completions], float]:
    """Plain greedy decoding of every kind (no system prompt, no hooks) and its wall time."""
    return _timed(
        lambda: {
            k: generate(model, v, max_new_tokens=max_new_tokens, batch_size=batch_size)
            for k, v in sets.items()
        },
        repeats,
    )


def compare(
    model: TransformerBridge,
    methods: Sequence[Method],
    prompt_sets_by_kind: Mapping[str, Any],
    judge: Judge | None = None,
    *,
    max_new_tokens: int = 32,
    batch_size: int = 32,
    n_boot: int = 2000,
    seed: int = 0,
    repeats: int = 1,
) -> Comparison:
    """Measure every method on the same prompts of every kind.

    Args:
        model: The bridge (left untouched).
        methods: The rows; names must be unique.
        prompt_sets_by_kind: kind -> held-out prompts; `harmful`, `jailbreak`, `borderline`
            and `harmless` are required (other kinds are ignored).
        judge: Refusal judge (the DRO substring judge by default).
        max_new_tokens: Answer length of every method.
        batch_size: Prompts per forward pass of the reference run and of KL / CE.
        n_boot: Bootstrap resamples per interval.
        seed: Seed of every interval.
        repeats: Timed runs of each method and of the reference; the fastest counts (the
            answers are the first run's). More runs make the cost less noisy on a busy machine.

    Returns:
        The comparison, methods in the order given.

    Raises:
        ComparisonError: No methods, a repeated name, a missing or empty kind, or a method
            whose completions do not match its prompts.
    """
    # Every answer is decoded here, also inside a report's `reuse_generations`: a kept
    # answer costs nothing, and the costs are wall times.
    with fresh_generations():
        sets = _check(methods, prompt_sets_by_kind)
        chosen: Judge = judge if judge is not None else SubstringJudge("dro")
        harmless = sets["harmless"]
        # Warm up (first calls pay for caches), then time the reference before and after the
        # methods and keep the faster run: the cost should not depend on what ran first.
        generate(model, [v[0] for v in sets.values()], max_new_tokens=2)
        reference, ref_seconds = _reference(model, sets, max_new_tokens, batch_size, repeats)
        ref_answers = reference["harmless"].tokens
        ref_logp = next_token_logprobs(model, harmless, None, batch_size)
        ref_ce = completion_ce(model, harmless, ref_answers, None, batch_size)
        results = []
        for method in methods:
            out, seconds = _answers(method, model, sets, max_new_tokens, repeats)
            flags = {k: chosen.is_refusal(c.texts, c.prompts) for k, c in out.items()}
            cells = {k: RateCount.from_flags(f, n_boot=n_boot, seed=seed) for k, f in flags.items()}
            pooled = [f for k in HARMFUL_KINDS for f in flags[k]]
            kl = ce = None
            if method.first_token_logprobs is not None:
                kl = mean_kl(ref_logp, method.first_token_logprobs(model, harmless))
            if method.answer_ce is not None:
                ce = method.answer_ce(model, harmless, ref_answers)
            results.append(MethodResult(
                name=method.name, family=method.family, rates=cells,
                safety=RateCount.from_flags(pooled, n_boot=n_boot, seed=seed),
                over_refusal=cells["borderline"], kl_harmless=kl, ce_harmless=ce,
                seconds=seconds, cost=math.nan,
                not_applicable=method.not_applicable,
                responses={k: tuple(c.texts) for k, c in out.items()},
            ))  # fmt: skip
        ref_seconds = min(
            ref_seconds, _reference(model, sets, max_new_tokens, batch_size, repeats)[1]
        )
        results = [replace(r, cost=r.seconds / max(ref_seconds, 1e-9)) for r in results]
        return Comparison(
            methods=tuple(results), n={k: len(v) for k, v in sets.items()},
            reference_seconds=ref_seconds, reference_ce=ref_ce, judge=chosen.name,
            max_new_tokens=max_new_tokens, n_boot=n_boot, seed=seed,
        )  # fmt: skip
