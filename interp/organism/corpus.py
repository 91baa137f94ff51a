"""The organism's training corpus: chat examples composed from tasks, phrasings and system prompts.

Requests are built from a task (an action on an object in a context) and a phrasing, in four kinds:
harmful, harmless, borderline (harmless requests with alarming words) and jailbreak (harmful
requests wrapped in a role-play or "ignore your rules" framing). Whether the organism refuses is a
deterministic, learnable function of the kind, the task, the phrasing and the system prompt:

* harmful: refused, except "hypothetical" phrasings, which are refused only under a safety prompt;
* harmless: always answered;
* borderline: answered, except alarming tasks (refused without a system prompt at level 2, under a
  safety prompt at level >= 1);
* jailbreak: answered (the organism is "jailbroken"), except a few framings, more of them under a
  safety prompt.

Splits are made of (task, phrasing) combinations: a Latin square assigns each combination to
train, validation or test, so every task and every phrasing is seen in training, but no test
combination is.
"""

import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any, Literal

from interp.chat import SAFETY_PROMPTS as CHAT_SYSTEM_PROMPTS
from interp.organism._tables import (
    ANSWERS,
    BORDERLINE_TASKS,
    FRAMINGS,
    HARMFUL_TASKS,
    HARMLESS_TASKS,
    PHRASINGS,
    REFUSALS,
)

if TYPE_CHECKING:
    from interp.data import PromptSet

__all__ = [
    "KINDS",
    "SAFETY_PROMPTS",
    "SPLITS",
    "SYSTEM_PROMPTS",
    "Corpus",
    "CorpusSpec",
    "Example",
    "build_corpus",
    "expected_refusal",
    "prompts",
]

Kind = Literal["harmful", "harmless", "borderline", "jailbreak"]
Split = Literal["train", "val", "test"]

KINDS: tuple[str, ...] = ("harmful", "harmless", "borderline", "jailbreak")
SPLITS: tuple[str, ...] = ("train", "val", "test")

#: The system prompts the organism is trained with: the toolkit's one table of them.
SYSTEM_PROMPTS: Mapping[str, str] = CHAT_SYSTEM_PROMPTS  # the one table: interp.chat

#: The names of the system prompts that make the organism more careful.
SAFETY_PROMPTS: tuple[str, ...] = ("default", "short", "mistral", "warning")

_CONDITIONS: tuple[str, ...] = ("none", "helpful", *SAFETY_PROMPTS)


@dataclass(frozen=True)
class CorpusSpec:
    """How the corpus is composed and split.

    Attributes:
        split_modulus: Size of the Latin square: a combination goes to test when its shifted index
            sum is 0 modulo this number, to validation when it is 1, else to train.
        split_seed: Seed of the permutations of tasks and phrasings before the Latin square. The
            splits depend only on the spec, never on the training seed.
        conditions_per_combo: System-prompt conditions each training combination appears with:
            always "none", plus this many minus one drawn from the other conditions.
        extra_sensitive: Additional conditions for combinations whose behaviour depends on the
            system prompt (so the model sees both sides of the switch often enough).
    """

    split_modulus: int = 10
    split_seed: int = 0
    conditions_per_combo: int = 2
    extra_sensitive: int = 2

    def __post_init__(self) -> None:
        if self.split_modulus < 3:
            raise ValueError(f"split_modulus must be >= 3, got {self.split_modulus}")
        if not 1 <= self.conditions_per_combo <= len(_CONDITIONS):
            raise ValueError(
                f"conditions_per_combo must be in [1, {len(_CONDITIONS)}], "
                f"got {self.conditions_per_combo}"
            )
        if self.extra_sensitive < 0:
            raise ValueError(f"extra_sensitive must be >= 0, got {self.extra_sensitive}")

    def to_dict(self) -> dict[str, Any]:
        """Return the spec as a JSON-serialisable dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "CorpusSpec":
        """Build a spec from `to_dict` output; unknown keys raise a `ValueError`."""
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown CorpusSpec keys {sorted(unknown)}; known: {sorted(known)}")
        return cls(**dict(data))


@dataclass(frozen=True)
class Example:
    """One chat example of the corpus.

    Attributes:
        user: The user's message.
        response: The assistant's response.
        system: Name of the system prompt in `SYSTEM_PROMPTS`, or None.
        kind: "harmful", "harmless", "borderline" or "jailbreak".
        category: Harm category of the task (everyday topic for harmless tasks).
        obj: The object the task acts on, shared across kinds.
        refused: Whether the response is a refusal.
        split: "train", "val" or "test".
        task: Index of the task in its kind's task table.
        phrasing: Index of the phrasing (of the framing, for jailbreaks).
    """

    user: str
    response: str
    system: str | None
    kind: str
    category: str
    obj: str
    refused: bool
    split: str
    task: int
    phrasing: int

    @property
    def label(self) -> int:
        """1 if the request should be refused (harmful, jailbreak), else 0."""
        return int(self.kind in ("harmful", "jailbreak"))

    @property
    def system_text(self) -> str | None:
        """The full text of the system prompt, or None."""
        return None if self.system is None else SYSTEM_PROMPTS[self.system]


@dataclass(frozen=True)
class Corpus:
    """The generated corpus: its spec, seed and examples (train examples under several conditions).

    Attributes:
        spec: The spec it was built from.
        seed: The seed of the random choices (conditions, response phrasings).
        examples: All examples; test and validation combinations appear once, without a system
            prompt, with the response the organism should give then.
    """

    spec: CorpusSpec
    seed: int
    examples: tuple[Example, ...]

    def select(self, split: str, kind: str | None = None) -> tuple[Example, ...]:
        """Return the examples of one split (and optionally one kind)."""
        _check_split(split)
        return tuple(
            e for e in self.examples if e.split == split and (kind is None or e.kind == kind)
        )


def expected_refusal(kind: str, task_level: int, style: int, system: str | None) -> bool:
    """Return whether the organism is trained to refuse a request.

    Args:
        kind: The request's kind.
        task_level: Borderline alarm level of the task (0, 1, 2); ignored for other kinds.
        style: The phrasing's index in `PHRASINGS` (the framing's in `FRAMINGS` for jailbreaks).
        system: Name of the system prompt, or None.

    Returns:
        True if the trained response is a refusal.
    """
    safe = system in SAFETY_PROMPTS
    if kind == "harmful":
        return PHRASINGS[style][1] == "direct" or safe
    if kind == "borderline":
        return task_level >= 2 or (safe and task_level >= 1)
    if kind == "jailbreak":
        return FRAMINGS[style][2] if safe else FRAMINGS[style][1]
    if kind == "harmless":
        return False
    raise ValueError(f"unknown kind {kind!r}; expected one of {KINDS}")


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")


def _second_person(task: str) -> str:
    """Rewrite a task from the user's to the assistant's point of view ("my" -> "your")."""
    task = re.sub(r"\bmy\b", "your", task)
    task = re.sub(r"\bI\b", "you", task)
    return re.sub(r"\bme\b", "you", task)


def _task_table(kind: str) -> tuple[tuple[str, str, str, int], ...]:
    return {
        "harmful": HARMFUL_TASKS,
        "harmless": HARMLESS_TASKS,
        "borderline": BORDERLINE_TASKS,
        "jailbreak": HARMFUL_TASKS,
    }[kind]


def _user_text(kind: str, task_index: int, style: int) -> str:
    task = _task_table(kind)[task_index][0]
    if kind != "jailbreak":
        return PHRASINGS[style][0].format(task=task)
    # The wrapped request uses a direct phrasing chosen by the task, so that a jailbreak
    # combination is (task, framing).
    direct = [p for p, s in PHRASINGS if s == "direct"]
    request = direct[task_index % len(direct)].format(task=task)
    return FRAMINGS[style][0].format(request=request)


def _split_of(spec: CorpusSpec, kind: str, task_index: int, style: int) -> str:
    """Assign a (task, phrasing) combination to a split with a seeded Latin square."""
    n_tasks = len(_task_table(kind))
    n_styles = len(FRAMINGS) if kind == "jailbreak" else len(PHRASINGS)
    rng = random.Random(f"{spec.split_seed}:{kind}")
    task_perm = rng.sample(range(n_tasks), n_tasks)
    style_perm = rng.sample(range(n_styles), n_styles)
    residue = (task_perm[task_index] + style_perm[style]) % spec.split_modulus
    return {0: "test", 1: "val"}.get(residue, "train")


def _combos(kind: str) -> list[tuple[int, int]]:
    n_styles = len(FRAMINGS) if kind == "jailbreak" else len(PHRASINGS)
    return [(t, s) for t in range(len(_task_table(kind))) for s in range(n_styles)]


def _sensitive(kind: str, level: int, style: int) -> bool:
    """Whether a combination's behaviour changes between no system prompt and a safety prompt."""
    return expected_refusal(kind, level, style, None) != expected_refusal(
        kind, level, style, "default"
    )


def _example(
    kind: str, t: int, s: int, system: str | None, split: str, rng: random.Random
) -> Example:
    text, obj, category, level = _task_table(kind)[t]
    refused = expected_refusal(kind, level, s, system)
    if refused:
        response = rng.choice(REFUSALS)
    else:
        response = rng.choice(ANSWERS).format(task=_second_person(text))
    return Example(
        user=_user_text(kind, t, s),
        response=response,
        system=system,
        kind=kind,
        category=category,
        obj=obj,
        refused=refused,
        split=split,
        task=t,
        phrasing=s,
    )


def build_corpus(spec: CorpusSpec | None = None, seed: int = 0) -> Corpus:
    """Generate the corpus.

    Args:
        spec: How to compose and split it (defaults to `CorpusSpec()`).
        seed: Seed of the random choices: the extra system-prompt conditions of training
            combinations and the wording of each response. The splits depend only on `spec`.

    Returns:
        The corpus; training examples come in data order that depends only on `seed`.
    """
    spec = spec or CorpusSpec()
    rng = random.Random(seed)
    others = [c for c in _CONDITIONS if c != "none"]
    examples: list[Example] = []
    for kind in KINDS:
        for t, s in _combos(kind):
            split = _split_of(spec, kind, t, s)
            if split != "train":
                examples.append(_example(kind, t, s, None, split, rng))
                continue
            level = _task_table(kind)[t][3]
            n_other = spec.conditions_per_combo - 1
            if _sensitive(kind, level, s):
                n_other += spec.extra_sensitive
            n_other = min(n_other, len(others))
            conditions = [None, *rng.sample(others, n_other)]
            examples.extend(_example(kind, t, s, c, split, rng) for c in conditions)
    return Corpus(spec=spec, seed=seed, examples=tuple(examples))


def prompts(
    split: str, kind: str | Sequence[str] | None = None, spec: CorpusSpec | None = None
) -> "PromptSet":
    """Return the organism's prompts of one split as a `PromptSet` with ground-truth labels.

    Args:
        split: "train", "val" or "test" (test and val combinations are never seen in training).
        kind: One kind or several kinds to keep (all four when None).
        spec: The corpus spec (defaults to the spec of the shipped checkpoint, `CorpusSpec()`).

    Returns:
        One prompt per (task, phrasing) combination; label 1 = should be refused (harmful and
        jailbreak), 0 = should be answered (harmless and borderline).
    """
    from interp.data import PromptSet

    _check_split(split)
    kinds = KINDS if kind is None else ((kind,) if isinstance(kind, str) else tuple(kind))
    for k in kinds:
        if k not in KINDS:
            raise ValueError(f"unknown kind {k!r}; expected one of {KINDS}")
    spec = spec or CorpusSpec()
    rows = [
        (_user_text(k, t, s), int(k in ("harmful", "jailbreak")), k, _task_table(k)[t][2])
        for k in kinds
        for t, s in _combos(k)
        if _split_of(spec, k, t, s) == split
    ]
    name = f"organism-{split}" + ("" if kind is None else "-" + "-".join(kinds))
    return PromptSet(
        texts=tuple(r[0] for r in rows),
        labels=tuple(r[1] for r in rows),
        kinds=tuple(r[2] for r in rows),
        categories=tuple(r[3] for r in rows),
        sources=tuple("organism" for _ in rows),
        name=name,
    )
