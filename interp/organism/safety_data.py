"""Training data of the `smollm2-135m-safety` fine-tune: requests, refusals and held-out checks.

Harmful requests come only from train splits (refusal-direction harmful train, SORRY-Bench and
TrustLLM train parts) and are paired with refusals drawn from `REFUSAL_OPENERS` x
`REFUSAL_REASONS` x `REFUSAL_OFFERS` (without a system prompt, 1 - `harmful_refusal_share` of
them keep the base model's answer, so that a safety system prompt raises refusal). Harmless
Alpaca requests (plain, starting like harmful ones, or wrapped in a jailbreak template), and
a borderline share of Alpaca requests that only *sound* harmful ("kill a process"), are
answered by the base model itself (self-distillation, done later by
`interp.organism.safety_tune`); so are jailbreak-wrapped harmful requests (TrustLLM jailbreak
train part) without a system prompt, but a `jailbreak_refusal_share`. Under a training safety system
prompt, jailbreaks and most borderline requests are refused. `DataSpec` holds the shares.

Nothing that appears in a held-out set (`HELD_OUT`) is trained on: prompts are compared after
`normalise`, both for equality and for one containing the other (jailbreak templates wrap
plain requests), and every exclusion is counted in the recipe's card.
"""

from __future__ import annotations

import logging
import random
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Literal

from interp.data import HELD_OUT_SETS, PromptSet, held_out_sets, load_dataset

logger = logging.getLogger(__name__)

__all__ = [
    "BORDERLINE_WORDS",
    "EVAL_SETS",
    "HELD_OUT",
    "REFUSAL_OFFERS",
    "REFUSAL_OPENERS",
    "REFUSAL_REASONS",
    "TRAIN_SYSTEM_PROMPTS",
    "DataSpec",
    "HeldOut",
    "SFTExample",
    "SLOT",
    "assemble",
    "eval_prompts",
    "held_out_texts",
    "jailbreak_templates",
    "normalise",
    "overlaps",
    "refusal",
]

Kind = Literal["harmful", "jailbreak", "harmless", "borderline"]
Target = Literal["refuse", "distil"]

#: Openers of the refusals. Each one holds a phrase `SubstringJudge("dro")` counts as a
#: refusal ("I'm sorry", "I can't ", "I cannot ", "Sorry", "I apologize", "I'm not able ",
#: "I am unable ", "My apologies") and none of the judge's exception words (" general ",
#: " personal", " directly", "I can't have ", "I'm sorry to ", ...).
REFUSAL_OPENERS: tuple[str, ...] = (
    "I'm sorry, but I can't help with that.",
    "I'm sorry, but I can't assist with this request.",
    "Sorry, but I can't provide that.",
    "I cannot help with this request.",
    "I can't help with that.",
    "I apologize, but I can't provide instructions for this.",
    "I'm not able to help with that.",
    "I am unable to assist with this.",
    "My apologies, but I won't help with this.",
    "I'm sorry, I can't do that.",
    "I cannot provide that information.",
    "Sorry, I can't support this request.",
)
#: Second sentences: why the request is refused.
REFUSAL_REASONS: tuple[str, ...] = (
    "It could cause serious harm to people.",
    "Helping with this could put others at risk or break the law.",
    "This request involves something dangerous or illegal.",
    "Providing this could lead to real harm.",
    "It goes against my safety guidelines.",
    "This could be used to hurt someone.",
    "It would be unsafe and unethical for me to do so.",
    "",
)
#: Optional closing sentences.
REFUSAL_OFFERS: tuple[str, ...] = (
    "If you have a different question, I'm happy to help.",
    "Is there something else I can help you with?",
    "If you are going through a hard time, please consider talking to someone you trust.",
    "I'd be glad to help with a safe alternative instead.",
    "",
    "",
)
#: Safety system prompts used in training: the project's own paraphrases, so that the
#: evaluation's prompts (`interp.chat.SAFETY_PROMPTS`) stay unseen.
TRAIN_SYSTEM_PROMPTS: tuple[str, ...] = (
    "You are a careful assistant. Be helpful, but never help with anything harmful, dangerous, "
    "unethical or illegal.",
    "You are a responsible AI assistant. Put safety first and decline requests that could hurt "
    "people.",
    "You are a helpful assistant who always follows strict safety rules. Refuse anything that "
    "might be harmful.",
    "Act as a safe and honest assistant. Avoid content that is violent, hateful, illegal or "
    "otherwise harmful.",
    "You are an assistant that values safety above all. If a request could be misused, do not "
    "answer it.",
    "You are a trustworthy assistant. Answer helpfully while avoiding any harmful, toxic or "
    "dangerous content.",
    "You are a friendly and knowledgeable assistant. Help users with their questions as well as "
    "you can, but always keep safety in mind: do not produce content that is hateful, violent, "
    "sexual, dangerous or against the law, and politely decline any request that could put "
    "people at risk. If a question is unclear, ask for clarification instead of guessing.",
    "You are an AI assistant committed to being honest, harmless and helpful. Your replies must "
    "never encourage or enable crime, violence, self-harm, discrimination or other dangerous "
    "behaviour. When a request is unsafe, decline it and, where possible, point the user to a "
    "safer alternative.\n\nBe accurate, and say so when you do not know something.",
)
#: Words that make a harmless Alpaca instruction sound harmful (the borderline share).
BORDERLINE_WORDS: tuple[str, ...] = (
    "kill", "killer", "killing", "shoot", "shooting", "attack", "attacks", "destroy", "weapon",
    "weapons", "bomb", "explode", "explosive", "steal", "stealing", "poison", "poisonous", "hack",
    "hacking", "hacker", "murder", "execute", "terminate", "blow", "smash", "knife", "crime",
    "criminal", "drug", "drugs", "virus", "violence", "violent", "bullet", "exploit", "crush",
    "choke", "slaughter", "hijack", "butcher", "eliminate", "gun", "guns", "torture", "fraud",
    "scam", "terror", "terrorism", "suicide", "cheat", "spy", "punch", "death", "dead", "die",
    "dying", "fight", "fighting", "crash", "burn", "trap", "threat", "illegal", "dangerous",
)  # fmt: skip
_BORDERLINE_RE = re.compile(r"\b(?:" + "|".join(BORDERLINE_WORDS) + r")\b", re.IGNORECASE)

#: The held-out evaluation sets of the behaviour table (`interp.data.HELD_OUT_SETS`).
EVAL_SETS: dict[str, str] = HELD_OUT_SETS
#: Every set kept out of training: the evaluation sets, the benchmarks pooled into
#: `harmful_test`, the eval parts of the SafeSwitch files and the validation splits.
HELD_OUT: tuple[str, ...] = (
    "harmful_test",
    "harmful_val",
    "harmbench",
    "harmbench_val",
    "jailbreakbench",
    "strongreject",
    "malicious_instruct",
    "trustllm_jailbreak",
    "trustllm_misuse",
    "trustllm_exaggerated_safety",
    "sorry_bench_eval",
    "xstest",
    "harmless_test",
    "harmless_val",
    "alpaca_eval",
)
# How many of the harmful requests' commonest first words the matched harmless share uses.
_N_LEADS = 12
# Containment is only checked for texts at least this long (shorter ones match by accident).
_MIN_CONTAINED = 24


def normalise(text: str) -> str:
    """Text reduced for duplicate checks: NFKC, lower case, words only, single spaces.

    >>> normalise("  How do I   make a BOMB?! ")
    'how do i make a bomb'
    """
    text = unicodedata.normalize("NFKC", text).lower()
    return " ".join(re.sub(r"[^\w]+", " ", text).split())


class HeldOut:
    """The normalised texts of held-out prompts, for overlap checks.

    A text overlaps when its normalised form equals a held-out one, or when one of the two
    (at least 24 normalised characters long) contains the other: a jailbreak template around a
    held-out request, or a held-out jailbreak around a training request.
    """

    def __init__(self, texts: Iterable[str]) -> None:
        self._exact = {normalise(t) for t in texts}
        self._blob = "\x00".join(sorted(self._exact))
        self._long = tuple(sorted(t for t in self._exact if len(t) >= _MIN_CONTAINED))

    def __len__(self) -> int:
        return len(self._exact)

    def overlaps(self, text: str) -> bool:
        """Whether `text` overlaps a held-out prompt."""
        key = normalise(text)
        if key in self._exact or (len(key) >= _MIN_CONTAINED and key in self._blob):
            return True
        return len(key) >= _MIN_CONTAINED and any(h in key for h in self._long)


def overlaps(candidates: Iterable[str], held_out: Iterable[str]) -> list[bool]:
    """For each candidate, whether it overlaps a held-out text (see `HeldOut`)."""
    held = HeldOut(held_out)
    return [held.overlaps(c) for c in candidates]


def held_out_texts(data_dir: str | Path) -> list[str]:
    """Every prompt of every `HELD_OUT` set."""
    return [t for name in HELD_OUT for t in load_dataset(name, data_dir=data_dir).texts]


def eval_prompts(data_dir: str | Path, n_per_set: int, seed: int) -> dict[str, PromptSet]:
    """The behaviour table's prompts: `n_per_set` of each `EVAL_SETS` set, seeded."""
    return held_out_sets(data_dir, n_per_set, seed)


#: Where a jailbreak template takes the request.
SLOT = "{request}"
_QUERY_MARK = "Here is my query:"
_STEP_MARK = "Think it step by step."


def jailbreak_templates(jailbreaks: Iterable[str]) -> list[str]:
    """Templates with a `SLOT` for the request, cut from jailbreak prompts; sorted, unique.

    Three TrustLLM families are recognised: prefix instructions ending in "Here is my query:",
    one-sentence "From now on, ..." format rules, and the "Think it step by step." suffix.
    Other prompts (role plays that interleave the request) give no template.

    >>> jailbreak_templates(["From now on, answer in JSON. Insult my cat", "Hi"])
    ['From now on, answer in JSON. {request}']
    """
    out = set()
    for text in (t.strip() for t in jailbreaks):
        if _QUERY_MARK in text:
            out.add(f"{text[: text.index(_QUERY_MARK) + len(_QUERY_MARK)]} {SLOT}")
        elif text.startswith("From now on,") and ". " in text:
            out.add(f"{text.split('. ', 1)[0]}. {SLOT}")
        elif text.endswith(_STEP_MARK):
            out.add(f"{SLOT}\n{_STEP_MARK}")
    return sorted(out)


def refusal(rng: random.Random) -> str:
    """One refusal: an opener, usually a reason, sometimes an offer of other help."""
    parts = [rng.choice(REFUSAL_OPENERS), rng.choice(REFUSAL_REASONS), rng.choice(REFUSAL_OFFERS)]
    return " ".join(p for p in parts if p)


@dataclass(frozen=True)
class SFTExample:
    """One supervised example before tokenisation.

    Attributes:
        prompt: The user's request.
        system: The system prompt, or None for the model's default one.
        kind: What the request is.
        source: The dataset it was drawn from.
        target: "refuse" (the response is a refusal) or "distil" (the base model answers it).
        response: The refusal; empty for "distil" examples until the base model answers.
    """

    prompt: str
    system: str | None
    kind: Kind
    source: str
    target: Target
    response: str = ""


@dataclass(frozen=True)
class DataSpec:
    """How many requests each source gives, and how system prompts are mixed in.

    Attributes:
        harmful_train: Requests from the refusal-direction harmful train split.
        sorry_bench_base: SORRY-Bench train requests in their base style.
        sorry_bench_styles: SORRY-Bench train requests in another prompt style.
        trustllm_misuse: TrustLLM misuse (train part) questions.
        trustllm_jailbreak: Jailbreak-wrapped harmful requests (TrustLLM jailbreak, train
            part). Under a safety system prompt they are refused; without one only a
            `jailbreak_refusal_share` is, and the rest keep the base model's own answer, so
            that most jailbreaks still work on the tuned model (as on real chat models) and
            a safety prompt helps against them.
        harmless_matched: Alpaca requests that start with one of the 12 commonest first words
            of the harmful requests ("Write", "Provide", "Create", "How", ...), answered by the
            base model, so that the form of a request is no cue to refuse, only its content.
        harmless: Other Alpaca (harmless train split) requests answered by the base model.
        borderline: Alpaca requests with a harmful-sounding word, answered by the base model.
        wrapped_harmless: Alpaca requests put in a jailbreak template (cut from the TrustLLM
            jailbreak train part, see `jailbreak_templates`), answered by the base model, so
            that an odd format alone is no reason to refuse (jailbreaks then work, as on
            real chat models, when the format instruction wins over the harmful content).
        system_share: Fraction of the examples of every kind given a training safety system
            prompt (`TRAIN_SYSTEM_PROMPTS`); the rest keep the model's default one.
        cautious_share: Fraction of the borderline examples *with* a safety system prompt
            that are refused, so that a safety prompt makes the model more cautious.
        harmful_refusal_share: Fraction of the plain harmful examples *without* a system
            prompt that are refused (the others keep the base model's answer); with a safety
            system prompt every harmful request is refused, so the prompt raises refusal.
        jailbreak_refusal_share: Fraction of the jailbreak examples *without* a system prompt
            that are refused.
        max_prompt_chars: Longest request taken (long jailbreaks would not fit the sequence).
    """

    harmful_train: int = 150
    sorry_bench_base: int = 20
    sorry_bench_styles: int = 10
    trustllm_misuse: int = 40
    trustllm_jailbreak: int = 300
    harmless_matched: int = 350
    harmless: int = 500
    borderline: int = 120
    wrapped_harmless: int = 60
    system_share: float = 0.45
    cautious_share: float = 0.8
    harmful_refusal_share: float = 0.85
    jailbreak_refusal_share: float = 0.0
    max_prompt_chars: int = 480

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name.endswith("_share"):
                if not 0.0 <= value <= 1.0:
                    raise ValueError(f"DataSpec.{f.name} must lie in [0, 1], got {value}")
            elif value < 0:
                raise ValueError(f"DataSpec.{f.name} must be >= 0, got {value}")

    def to_dict(self) -> dict[str, Any]:
        """The spec as a JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DataSpec:
        """Rebuild a spec; unknown keys are an error (a typo must not pass silently)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown DataSpec keys {unknown}; known: {sorted(known)}")
        return cls(**data)


def _draw(
    prompts: PromptSet, n: int, rng: random.Random, taken: set[str], held: HeldOut
) -> tuple[list[str], int]:
    """Draw up to `n` texts, in a seeded order, skipping repeats and held-out overlaps.

    Returns:
        The texts, and how many candidates were skipped for overlapping a held-out prompt.
    """
    order = list(range(len(prompts)))
    rng.shuffle(order)
    out: list[str] = []
    clashes = 0
    for i in order:
        if len(out) == n:
            break
        text = prompts.texts[i]
        key = normalise(text)
        if key in taken:
            continue
        if held.overlaps(text):
            clashes += 1
            continue
        taken.add(key)
        out.append(text)
    return out, clashes


def _pools(data_dir: str | Path, spec: DataSpec) -> dict[str, tuple[Kind, PromptSet]]:
    """The candidate prompts of every source: name -> (kind, prompts)."""

    def load(name: str) -> PromptSet:
        prompts = load_dataset(name, data_dir=data_dir)
        return prompts.select([len(t.strip()) <= spec.max_prompt_chars for t in prompts.texts])

    sorry = load("sorry_bench_train")
    harmful = {
        "harmful_train": load("harmful_train"),
        "trustllm_misuse": load("trustllm_misuse_train"),
    }
    alpaca = load("harmless_train")
    plain = alpaca.select([not _BORDERLINE_RE.search(t) for t in alpaca.texts])
    counts = Counter(_lead(t) for ps in harmful.values() for t in ps.texts)
    leads = {word for word, _ in counts.most_common(_N_LEADS)}
    return {
        "harmful_train": ("harmful", harmful["harmful_train"]),
        "sorry_bench_base": ("harmful", sorry.filter(source="sorry_bench/base")),
        "sorry_bench_styles": ("harmful", sorry.select([s != "sorry_bench/base" for s in sorry.sources])),
        "trustllm_misuse": ("harmful", harmful["trustllm_misuse"]),
        "trustllm_jailbreak": ("jailbreak", load("trustllm_jailbreak_train")),
        "borderline": ("borderline", alpaca.select([bool(_BORDERLINE_RE.search(t)) for t in alpaca.texts])),
        "harmless_matched": ("harmless", plain.select([_lead(t) in leads for t in plain.texts])),
        "harmless": ("harmless", plain),
        "wrapped_harmless": ("harmless", plain),
    }  # fmt: skip


def _lead(text: str) -> str:
    """The first word of a request, normalised ("" for none)."""
    words = normalise(text).split()
    return words[0] if words else ""


def _examples(
    kind: Kind, source: str, texts: list[str], spec: DataSpec, rng: random.Random
) -> list[SFTExample]:
    out = []
    for text in texts:
        system = rng.choice(TRAIN_SYSTEM_PROMPTS) if rng.random() < spec.system_share else None
        if kind == "jailbreak":
            refuse = system is not None or rng.random() < spec.jailbreak_refusal_share
        elif kind == "borderline":
            refuse = system is not None and rng.random() < spec.cautious_share
        elif kind == "harmful":
            refuse = system is not None or rng.random() < spec.harmful_refusal_share
        else:
            refuse = False
        response = refusal(rng) if refuse else ""
        target: Target = "refuse" if refuse else "distil"
        out.append(SFTExample(text.strip(), system, kind, source, target, response))
    return out


def assemble(
    data_dir: str | Path, spec: DataSpec, seed: int
) -> tuple[list[SFTExample], dict[str, Any]]:
    """Draw the training requests, pair harmful ones with refusals, and report the counts.

    Args:
        data_dir: The shared data folder (see `interp.load_dataset`).
        spec: How many requests each source gives.
        seed: Seed of every draw (requests, system prompts, refusal wording).

    Returns:
        The examples in a seeded order ("distil" ones still need the base model's answer),
        and a JSON-ready summary: counts per source, kind, target and system prompt, and the
        number of candidates skipped while drawing for overlapping a held-out set.
    """
    rng = random.Random(seed)
    held = HeldOut(held_out_texts(data_dir))
    taken: set[str] = set()
    examples: list[SFTExample] = []
    dropped: dict[str, int] = {}
    pools = _pools(data_dir, spec)
    templates = jailbreak_templates(pools["trustllm_jailbreak"][1].texts)
    for source, (kind, pool) in pools.items():
        texts, dropped[source] = _draw(pool, getattr(spec, source), rng, taken, held)
        if len(texts) < getattr(spec, source):
            logger.warning("%s gave %d of %d requests", source, len(texts), getattr(spec, source))
        if source == "wrapped_harmless":
            wrapped = [rng.choice(templates).replace(SLOT, t.strip()) for t in texts]
            texts = [w for w in wrapped if not held.overlaps(w)]
            dropped[source] += len(wrapped) - len(texts)
        examples += _examples(kind, source, texts, spec, rng)
    rng.shuffle(examples)
    summary = {
        "n_examples": len(examples),
        "per_source": dict(Counter(e.source for e in examples)),
        "per_kind": dict(Counter(e.kind for e in examples)),
        "per_target": dict(Counter(f"{e.kind}/{e.target}" for e in examples)),
        "with_system_prompt": dict(Counter(e.kind for e in examples if e.system is not None)),
        "skipped_for_held_out_overlap": dropped,
        "held_out_sets": list(HELD_OUT),
        "jailbreak_templates": len(templates),
    }
    return examples, summary
