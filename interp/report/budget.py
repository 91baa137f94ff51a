"""How long a report takes: a calibration on the model and a cost model per section.

The report's time is spent decoding. `calibrate` times one greedy batch of the report's own
prompts on the model (seconds per decoded prompt-token); the cost model counts the
prompt-tokens each section decodes, `section_units`, from the number of measured prompts `N`
(summed over kinds), the answer length `T`, the model's layers `L` and its scored
refusal-direction candidates `C` (`ModelShape`):

=================  =====================================  ===================================
section            units                                  what it decodes
=================  =====================================  ===================================
baseline           6 N T                                  6 conditions x every prompt
probes             4 N min(16, T) + 16 N L                4 conditions, 16-token labels, plus
                                                          activations, probes and the prober
refusal_direction  2 N T + 16640 + 2 N C                 4 modes x every prompt (many stop
                                                          early), plus the candidate scoring
                                                          on its own sets
safeswitch         2 N T + 6144                           base + warning + head (+ flagged),
                                                          plus the fit on 64 prompts per kind
dro                30 N + 20480                           3 conditions x 10 tokens, plus the
                                                          anchor and training on fixed sets
comparison         9 N T + 8192                           ~14 methods (many stop early), plus
                                                          SafeInfer and CAST fits
=================  =====================================  ===================================

The constants were read off two organism reports (every section, one thread; all 188 test
prompts at T = 32, and 24 per kind at T = 16): each section's wall time divided by that run's
baseline seconds per unit. They are rough (answers that stop at EOS cost less than T tokens;
a busy machine slows some stages more than others), so the report re-estimates the time left
after every section from how the sections so far went (`remaining_seconds`).
`estimate_seconds` is the calibrated seconds per unit times the units; `choose_sizes` picks
the largest prompts per kind (then, if needed, shorter answers) whose estimate fits a budget.
The report records the estimate beside the measured wall time (`metrics["run"]`), so the model's
error is visible on every run.
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from transformer_lens.model_bridge import TransformerBridge

from interp.chat import eoi_tokens
from interp.errors import BudgetError
from interp.generation import generate
from interp.refusal_direction.filters import layer_cut

__all__ = [
    "ANSWER_LENGTHS",
    "MIN_N_PER_KIND",
    "ORGANISM_SHAPE",
    "QUICK",
    "Calibration",
    "ModelShape",
    "Sizes",
    "calibrate",
    "sample_for_calibration",
    "choose_sizes",
    "estimate_seconds",
    "remaining_seconds",
    "section_units",
]

#: Answer lengths `choose_sizes` falls back to, longest first, before it cuts prompts further.
ANSWER_LENGTHS: tuple[int, ...] = (32, 16, 8)
#: Fewest prompts per kind `choose_sizes` goes to before shortening the answers: enough for
#: `interp.MIN_PER_CLASS` (20) examples of a class in the sections that learn from answers.
MIN_N_PER_KIND = 24
#: The `--quick` preset: a first look in a few minutes (small sets, short answers).
QUICK: dict[str, int] = {"n_per_kind": 24, "max_new_tokens": 16}


@dataclass(frozen=True)
class ModelShape:
    """What the fitting sections' work grows with, besides the prompts.

    Attributes:
        n_layers: Blocks (probes are fitted per layer).
        n_positions: Candidate positions of the refusal direction (the template's eoi
            tokens).
        max_layer_fraction: The refusal direction's layer cut (`SelectionConfig`): layers
            at or above `int(fraction * n_layers)` are not scored.
    """

    n_layers: int
    n_positions: int
    max_layer_fraction: float = 0.8

    @property
    def n_candidates(self) -> int:
        """Refusal-direction candidates scored: the layers below the cut x the positions."""
        return layer_cut(self.n_layers, self.max_layer_fraction) * self.n_positions

    @classmethod
    def of(cls, model: TransformerBridge) -> ModelShape:
        """The shape of a loaded model."""
        return cls(int(model.cfg.n_layers), len(eoi_tokens(model)))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready values."""
        return {**asdict(self), "n_candidates": self.n_candidates}


#: The organism's shape (6 layers, 5 eoi tokens): the default where no model is given.
ORGANISM_SHAPE = ModelShape(6, 5)

# The constants, in units of one decoded prompt-token. RD_PER_PROMPT_CANDIDATE: smollm2-135m-
# safety's candidate scoring (144 candidates, N = 96) took 448 s at 0.016 s per unit, about 2
# units per prompt and candidate; RD_FIXED keeps the organism's total where it was.
PROBES_PER_PROMPT_LAYER = 16
RD_FIXED = 16640
RD_PER_PROMPT_CANDIDATE = 2
SAFESWITCH_FIXED = 6144
DRO_FIXED = 20480
COMPARISON_FIXED = 8192


def section_units(
    section: str, n_prompts: int, max_new_tokens: int, shape: ModelShape = ORGANISM_SHAPE
) -> int:
    """Decoded prompt-tokens of one section (the table in the module docstring).

    Args:
        section: A report section name.
        n_prompts: Measured prompts, summed over kinds (`N`).
        max_new_tokens: Answer length (`T`).
        shape: The model's layers and candidate positions (`ModelShape.of(model)`).

    Returns:
        The section's cost in units of one decoded prompt-token.

    Raises:
        BudgetError: An unknown section.

    Example:
        >>> section_units("baseline", 10, 32)
        1920
    """
    n, t = n_prompts, max_new_tokens
    units = {
        "baseline": 6 * n * t,
        "probes": 4 * n * min(16, t) + PROBES_PER_PROMPT_LAYER * n * shape.n_layers,
        "refusal_direction": 2 * n * t
        + RD_FIXED
        + RD_PER_PROMPT_CANDIDATE * n * shape.n_candidates,
        "safeswitch": 2 * n * t + SAFESWITCH_FIXED,
        "dro": 30 * n + DRO_FIXED,
        "comparison": 9 * n * t + COMPARISON_FIXED,
    }
    if section not in units:
        raise BudgetError(f"no cost model for section {section!r}; known: {sorted(units)}")
    return units[section]


def _n_prompts(available: Mapping[str, int], n_per_kind: int) -> int:
    return sum(min(n_per_kind, size) for size in available.values())


def estimate_seconds(
    sections: Sequence[str],
    available: Mapping[str, int],
    n_per_kind: int,
    max_new_tokens: int,
    seconds_per_unit: float,
    shape: ModelShape = ORGANISM_SHAPE,
) -> float:
    """The estimated wall time of the sections' work (model loading not included).

    Args:
        sections: The sections that run.
        available: kind -> prompts available (each kind contributes at most `n_per_kind`).
        n_per_kind: Prompts per kind asked for.
        max_new_tokens: Answer length.
        seconds_per_unit: Calibrated seconds per decoded prompt-token (`calibrate`).
        shape: The model's shape (`ModelShape.of(model)`).

    Example:
        >>> estimate_seconds(["baseline"], {"a": 5, "b": 20}, 10, 32, 0.001)
        2.88
    """
    n = _n_prompts(available, n_per_kind)
    return sum(section_units(s, n, max_new_tokens, shape) for s in sections) * seconds_per_unit


def remaining_seconds(
    done: Mapping[str, float],
    todo: Sequence[str],
    n_prompts: int,
    max_new_tokens: int,
    seconds_per_unit: float,
    shape: ModelShape = ORGANISM_SHAPE,
) -> float:
    """The time the sections in `todo` should take, rescaled by how the done ones went.

    The cost model's estimate of `todo` is multiplied by measured / estimated time of the
    sections already run (`done`: section -> seconds), so that a machine slower (or busier)
    than at the calibration shows in the estimate after the first section.

    Example:
        >>> # The baseline took 1.2 s where 0.6 s were estimated: twice as slow.
        >>> round(remaining_seconds({"baseline": 1.2}, ["dro"], 10, 10, 0.001), 3)
        41.56
    """
    predicted = seconds_per_unit * sum(
        section_units(s, n_prompts, max_new_tokens, shape) for s in done
    )
    scale = sum(done.values()) / predicted if predicted > 0 and done else 1.0
    rest = seconds_per_unit * sum(section_units(s, n_prompts, max_new_tokens, shape) for s in todo)
    return rest * scale


@dataclass(frozen=True)
class Sizes:
    """The sizes a report runs with and the time they are expected to take.

    Attributes:
        n_per_kind: Prompts per kind (at most).
        max_new_tokens: Answer length.
        estimate_s: Estimated seconds of the sections' work.
        fits: Whether the estimate is within the budget (False: even the smallest sizes
            do not fit, and these are the smallest).
    """

    n_per_kind: int
    max_new_tokens: int
    estimate_s: float
    fits: bool

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready values."""
        return {**asdict(self), "estimate_s": round(self.estimate_s, 1)}


def choose_sizes(
    budget_s: float,
    sections: Sequence[str],
    available: Mapping[str, int],
    seconds_per_unit: float,
    *,
    max_n_per_kind: int,
    max_new_tokens: int,
    min_n_per_kind: int = MIN_N_PER_KIND,
    shape: ModelShape = ORGANISM_SHAPE,
) -> Sizes:
    """The largest sizes whose estimated time fits `budget_s`.

    Prompts per kind go down first (from `max_n_per_kind` to `min_n_per_kind`) at the asked
    answer length; then the answers get shorter (`ANSWER_LENGTHS` below `max_new_tokens`);
    then prompts per kind go below `min_n_per_kind`, down to 2. When not even that fits,
    the sizes are `min_n_per_kind` with the shortest answers, and `fits` is False.

    Args:
        budget_s: Seconds available for the sections' work.
        sections: The sections that run.
        available: kind -> prompts available.
        seconds_per_unit: Calibrated seconds per decoded prompt-token.
        max_n_per_kind: Most prompts per kind (`--n-per-kind`).
        max_new_tokens: Longest answer (`--max-new-tokens`).
        min_n_per_kind: Prompts per kind kept before answers are shortened.
        shape: The model's shape (`ModelShape.of(model)`).

    Raises:
        BudgetError: `budget_s` or `seconds_per_unit` is not positive.

    Example:
        >>> s = choose_sizes(60, ["baseline"], {"a": 100}, 0.001, max_n_per_kind=200,
        ...                  max_new_tokens=32)
        >>> (s.n_per_kind, s.max_new_tokens, s.fits)
        (100, 32, True)
    """
    if not budget_s > 0 or not seconds_per_unit > 0:
        raise BudgetError(
            f"a budget of {budget_s} s at {seconds_per_unit} s per unit: both must be positive "
            "(pass --max-minutes above 0)"
        )
    top = min(max_n_per_kind, max(available.values(), default=1))
    lengths = [max_new_tokens, *(t for t in ANSWER_LENGTHS if t < max_new_tokens)]
    floor = min(min_n_per_kind, top)
    tries = [(n, lengths[0]) for n in range(top, floor - 1, -1)]
    tries += [(floor, t) for t in lengths[1:]]
    tries += [(n, lengths[-1]) for n in range(floor - 1, 1, -1)]
    for n, t in tries:
        estimate = estimate_seconds(sections, available, n, t, seconds_per_unit, shape)
        if estimate <= budget_s:
            return Sizes(n, t, estimate, True)
    # Nothing fits: the floor with the shortest answers, flagged. Fewer prompts would not
    # bring the report within budget and would leave every fitted section below the
    # minimum number of examples (`interp.MIN_PER_CLASS`), so they buy nothing.
    n, t = floor, lengths[-1]
    return Sizes(n, t, estimate_seconds(sections, available, n, t, seconds_per_unit, shape), False)


@dataclass(frozen=True)
class Calibration:
    """One timed greedy batch on the model.

    Attributes:
        n_prompts: Prompts in the batch. max_new_tokens: their answer length.
        seconds: Wall time of the batch.
    """

    n_prompts: int
    max_new_tokens: int
    seconds: float

    @property
    def seconds_per_unit(self) -> float:
        """Seconds per decoded prompt-token."""
        return self.seconds / (self.n_prompts * self.max_new_tokens)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready values."""
        return {
            **asdict(self),
            "seconds": round(self.seconds, 3),
            "seconds_per_unit": self.seconds_per_unit,
        }


def calibrate(
    model: TransformerBridge,
    prompts: Sequence[str] | Mapping[str, Sequence[str]],
    *,
    max_new_tokens: int = 16,
    batch_size: int = 64,
) -> Calibration:
    """Time greedy decoding of a few of the report's own prompts (no system prompt).

    Given kind -> prompts, each kind is decoded on its own, as the sections decode them: a
    batch is padded to its longest prompt, so timing short and long kinds (a jailbreak
    wrapper can be 10x a plain request) in one batch would charge every prompt for the
    longest. The caller draws the prompts at random from each kind (`sample_for_calibration`):
    the first few of a set are not a fair sample of its lengths. On smollm2-135m-safety the
    first 8 per kind in one batch gave 0.0115 s per unit, 8 random ones per kind decoded per
    kind 0.035-0.040, and the baseline then ran at 0.047 (its safety prompts lengthen every
    prompt).

    A first untimed call on two prompts warms the model up, so that one-off costs
    (allocation, kernel selection) do not enter the rate.
    """
    groups = (
        [list(v) for v in prompts.values()] if isinstance(prompts, Mapping) else [list(prompts)]
    )
    groups = [g for g in groups if g]
    if not groups:
        raise BudgetError("calibration needs at least one prompt")
    generate(model, groups[0][:2], max_new_tokens=2, batch_size=batch_size)
    start = time.perf_counter()
    for group in groups:
        generate(model, group, max_new_tokens=max_new_tokens, batch_size=batch_size)
    n = sum(len(g) for g in groups)
    return Calibration(n, max_new_tokens, time.perf_counter() - start)


def sample_for_calibration(
    texts: Mapping[str, Sequence[str]], per_kind: int, seed: int = 0
) -> dict[str, list[str]]:
    """`per_kind` prompts drawn at random (seeded) from each kind, for `calibrate`.

    Example:
        >>> sample_for_calibration({"a": ["x", "y", "z"]}, 2)["a"]
        ['y', 'z']
    """
    return {
        kind: random.Random(seed).sample(list(v), min(per_kind, len(v)))
        for kind, v in texts.items()
    }
