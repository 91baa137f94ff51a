"""`PromptSet`: an immutable, columnar set of prompts with labels, kinds, categories and sources."""

import hashlib
import json
import math
import numbers
from collections import Counter
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any, overload

from interp.errors import DatasetFormatError, EmptyPromptSetError

#: Label of a prompt that should be refused (a harmful request).
HARMFUL = 1
#: Label of a prompt that should be answered.
HARMLESS = 0
#: Label of a prompt whose expected behaviour is not known.
UNKNOWN = -1
_LABELS = frozenset({HARMFUL, HARMLESS, UNKNOWN})
#: The kinds of request that should be refused (label `HARMFUL`); every other kind should be
#: answered. The report's kinds are harmful, jailbreak, harmless and borderline.
HARMFUL_KINDS: tuple[str, ...] = ("harmful", "jailbreak")
_COLUMNS = ("texts", "labels", "kinds", "categories", "sources")


def _sha256(data: str) -> str:
    return hashlib.sha256(data.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Prompt:
    """One prompt of a `PromptSet`.

    Attributes:
        text: The user's message, exactly as it is sent to the chat template.
        label: 1 if the prompt should be refused, 0 if it should be answered, -1 if unknown.
        kind: "harmful", "harmless", "borderline", "jailbreak" or another free-form kind.
        category: The dataset's own category of the prompt ("" when it has none).
        source: The dataset the prompt comes from.
    """

    text: str
    label: int
    kind: str
    category: str
    source: str


def _as_filter(value: object) -> frozenset[Any] | None:
    """Turn a filter argument (one value or a collection of values) into a set of values."""
    if value is None:
        return None
    if isinstance(value, Collection) and not isinstance(value, str):
        return frozenset(value)
    return frozenset({value})


@dataclass(frozen=True, repr=False, init=False)
class PromptSet:
    """An immutable, columnar set of prompts.

    All columns have one entry per prompt. Any sequences are accepted and stored as tuples.

    Attributes:
        texts: The user messages.
        labels: 1 = should be refused (harmful), 0 = should be answered, -1 = unknown.
        kinds: "harmful" | "harmless" | "borderline" | "jailbreak" | any other kind.
        categories: The datasets' own categories ("" when a dataset has none).
        sources: The dataset each prompt comes from.
        name: A short name for the whole set, used in messages and reports.

    Raises:
        ValueError: If the columns differ in length, or a label is not -1, 0 or 1.

    Example:
        >>> ps = PromptSet.from_texts(["How do I bake bread?"], label=0, kind="harmless")
        >>> len(ps), ps[0].kind
        (1, 'harmless')
    """

    texts: tuple[str, ...]
    labels: tuple[int, ...]
    kinds: tuple[str, ...]
    categories: tuple[str, ...]
    sources: tuple[str, ...]
    name: str = ""

    def __init__(
        self,
        texts: Iterable[str],
        labels: Iterable[int],
        kinds: Iterable[str],
        categories: Iterable[str],
        sources: Iterable[str],
        name: str = "",
    ) -> None:
        columns = {
            "texts": texts,
            "labels": labels,
            "kinds": kinds,
            "categories": categories,
            "sources": sources,
        }
        for column, value in columns.items():
            if isinstance(value, str):
                raise TypeError(f"PromptSet.{column} must be a sequence, not a single string")
            object.__setattr__(self, column, tuple(value))
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "labels", tuple(int(label) for label in self.labels))
        self._validate()

    def _validate(self) -> None:
        lengths = {column: len(getattr(self, column)) for column in _COLUMNS}
        if len(set(lengths.values())) > 1:
            listed = ", ".join(f"{column}={n}" for column, n in lengths.items())
            raise ValueError(
                f"PromptSet {self.name!r}: columns differ in length ({listed}); "
                "give every column one entry per prompt."
            )
        bad = sorted(set(self.labels) - _LABELS)
        if bad:
            raise ValueError(
                f"PromptSet {self.name!r}: labels must be 1 (refuse), 0 (answer) or -1 "
                f"(unknown), got {bad}."
            )
        for column in ("texts", "kinds", "categories", "sources"):
            if not all(isinstance(v, str) for v in getattr(self, column)):
                raise TypeError(f"PromptSet {self.name!r}: every entry of {column} must be a str")

    # Construction ---------------------------------------------------------------------------

    @classmethod
    def from_texts(
        cls,
        texts: Iterable[str],
        *,
        label: int,
        kind: str,
        category: str = "",
        source: str = "",
        name: str = "",
    ) -> "PromptSet":
        """Build a set whose prompts all share one label, kind, category and source.

        Args:
            texts: The user messages.
            label: 1 = should be refused, 0 = should be answered, -1 = unknown.
            kind: The kind of every prompt ("harmful", "harmless", ...).
            category: The category of every prompt.
            source: The source of every prompt.
            name: The name of the set.

        Returns:
            The new set.
        """
        texts = tuple(texts)
        n = len(texts)
        return cls(
            texts=texts,
            labels=(label,) * n,
            kinds=(kind,) * n,
            categories=(category,) * n,
            sources=(source,) * n,
            name=name,
        )

    @classmethod
    def from_records(cls, records: Iterable[Mapping[str, Any]], *, name: str = "") -> "PromptSet":
        """Build a set from dicts with the keys of `Prompt` (as written by `to_records`).

        Only "text" is required; "label" defaults to -1, "kind" to "unknown", "category" and
        "source" to "".

        Args:
            records: One mapping per prompt.
            name: The name of the set.

        Returns:
            The new set.

        Raises:
            DatasetFormatError: If a record has no "text".
        """
        columns: dict[str, list[Any]] = {column: [] for column in _COLUMNS}
        for i, record in enumerate(records):
            if "text" not in record:
                raise DatasetFormatError(
                    f"record {i} of {name or 'the records'} has no 'text' key (keys: "
                    f"{sorted(record)}); give each record a 'text' with the prompt."
                )
            columns["texts"].append(record["text"])
            columns["labels"].append(record.get("label", UNKNOWN))
            columns["kinds"].append(record.get("kind", "unknown"))
            columns["categories"].append(record.get("category", ""))
            columns["sources"].append(record.get("source", ""))
        return cls(**columns, name=name)

    def to_records(self) -> list[dict[str, Any]]:
        """Return one dict per prompt with the keys text, label, kind, category and source."""
        return [{f.name: getattr(prompt, f.name) for f in fields(Prompt)} for prompt in iter(self)]

    @staticmethod
    def concat(sets: Iterable["PromptSet"], *, name: str | None = None) -> "PromptSet":
        """Concatenate sets in order.

        Args:
            sets: The sets to join.
            name: The name of the result; by default the names joined with "+".

        Returns:
            One set holding every prompt of every set, in order.
        """
        sets = list(sets)
        if name is None:
            name = "+".join(s.name for s in sets if s.name)
        columns = {c: tuple(v for s in sets for v in getattr(s, c)) for c in _COLUMNS}
        return PromptSet(**columns, name=name)

    def __add__(self, other: "PromptSet") -> "PromptSet":
        if not isinstance(other, PromptSet):
            return NotImplemented
        return PromptSet.concat([self, other])

    # Access ---------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.texts)

    def __iter__(self) -> Iterator[Prompt]:
        for row in zip(*(getattr(self, c) for c in _COLUMNS), strict=True):
            yield Prompt(*row)

    @overload
    def __getitem__(self, index: int) -> Prompt: ...

    @overload
    def __getitem__(self, index: slice | Sequence[int] | Sequence[bool]) -> "PromptSet": ...

    def __getitem__(self, index: Any) -> "Prompt | PromptSet":
        if isinstance(index, slice):
            return self.select(range(len(self))[index])
        if isinstance(index, numbers.Integral):
            i = int(index)
            return Prompt(*(getattr(self, c)[i] for c in _COLUMNS))
        return self.select(index)

    def select(self, indices: Iterable[int] | Iterable[bool]) -> "PromptSet":
        """Return the prompts at `indices`, in that order (a boolean mask also works).

        Args:
            indices: Integer positions (negative ones count from the end), or one bool per prompt.

        Returns:
            A new set with the same name.

        Raises:
            IndexError: If a position is out of range.
            ValueError: If a boolean mask does not have one entry per prompt.
        """
        to_list = getattr(indices, "tolist", None)  # NumPy arrays give Python scalars.
        index_list = list(to_list() if to_list is not None else indices)
        if index_list and all(isinstance(i, bool) for i in index_list):
            if len(index_list) != len(self):
                raise ValueError(
                    f"boolean mask has {len(index_list)} entries for {len(self)} prompts"
                )
            index_list = [i for i, keep in enumerate(index_list) if keep]
        n = len(self)
        for i in index_list:
            if not -n <= int(i) < n:
                raise IndexError(f"index {i} out of range for PromptSet {self.name!r} of {n}")
        columns = {c: tuple(getattr(self, c)[int(i)] for i in index_list) for c in _COLUMNS}
        return PromptSet(**columns, name=self.name)

    def filter(
        self,
        *,
        kind: str | Collection[str] | None = None,
        label: int | Collection[int] | None = None,
        category: str | Collection[str] | None = None,
        source: str | Collection[str] | None = None,
    ) -> "PromptSet":
        """Keep the prompts that match every given criterion.

        Each criterion is one value or a collection of accepted values; `None` accepts all.

        Args:
            kind: Kind(s) to keep.
            label: Label(s) to keep.
            category: Category (or categories) to keep.
            source: Source(s) to keep.

        Returns:
            A new set with the same name, in the original order (possibly empty).
        """
        criteria = [
            (self.kinds, _as_filter(kind)),
            (self.labels, _as_filter(label)),
            (self.categories, _as_filter(category)),
            (self.sources, _as_filter(source)),
        ]
        active = [(column, accepted) for column, accepted in criteria if accepted is not None]
        keep = [i for i in range(len(self)) if all(col[i] in acc for col, acc in active)]
        return self.select(keep)

    def deduplicate(self) -> "PromptSet":
        """Drop prompts whose text already appeared earlier, keeping the first occurrence."""
        seen: set[str] = set()
        keep = []
        for i, text in enumerate(self.texts):
            if text not in seen:
                seen.add(text)
                keep.append(i)
        return self.select(keep)

    # Splitting and sampling -----------------------------------------------------------------

    def _shuffled(self, indices: Sequence[int], seed: int) -> list[int]:
        """Order `indices` by a seeded hash of their text: stable across Python/NumPy versions."""
        return sorted(indices, key=lambda i: (_sha256(f"{seed}\x00{self.texts[i]}"), i))

    def split(
        self, test_size: float | int = 0.2, *, seed: int = 0, stratify: bool = True
    ) -> tuple["PromptSet", "PromptSet"]:
        """Split into disjoint (train, test) sets, deterministically for a given seed.

        With `stratify`, every (kind, label) group is split in the same proportion, so the
        parts keep the mix of the whole; the number of test prompts per group is allocated by
        largest remainder so the total is exactly `round(test_size * len(self))`. Which prompts
        go to the test part depends only on the seed and their text, and both parts keep the
        original order.

        Args:
            test_size: Fraction of prompts (0 < x < 1) or number of prompts for the test part.
            seed: Seed of the split.
            stratify: Whether to split each (kind, label) group separately.

        Returns:
            The pair (train, test), named "<name>/train" and "<name>/test".

        Raises:
            EmptyPromptSetError: If the set is empty.
            ValueError: If `test_size` leaves either part empty.
        """
        self.require_nonempty()
        n = len(self)
        n_test = test_size if isinstance(test_size, int) else round(float(test_size) * n)
        if not (0 < n_test < n) or (not isinstance(test_size, int) and not 0 < test_size < 1):
            raise ValueError(
                f"test_size={test_size!r} gives {n_test} of {n} prompts to the test part; "
                "pass a fraction in (0, 1) or a count that leaves both parts non-empty."
            )
        groups: dict[tuple[str, int], list[int]] = {}
        for i in range(n):
            key = (self.kinds[i], self.labels[i]) if stratify else ("", 0)
            groups.setdefault(key, []).append(i)
        quotas = {key: n_test * len(members) / n for key, members in groups.items()}
        counts = {key: math.floor(q) for key, q in quotas.items()}
        by_remainder = sorted(groups, key=lambda key: (-(quotas[key] - counts[key]), key))
        for key in by_remainder[: n_test - sum(counts.values())]:
            counts[key] += 1
        test: set[int] = set()
        for key, members in groups.items():
            test.update(self._shuffled(members, seed)[: counts[key]])
        train_set = self.select(i for i in range(n) if i not in test)
        test_set = self.select(sorted(test))
        return (
            replace(train_set, name=f"{self.name}/train"),
            replace(test_set, name=f"{self.name}/test"),
        )

    def sample(self, n: int, seed: int = 0) -> "PromptSet":
        """Draw `n` prompts without replacement, deterministically for a given seed.

        Args:
            n: How many prompts to draw (at most `len(self)`).
            seed: Seed of the draw.

        Returns:
            A new set with the same name; the drawn prompts keep their original order.

        Raises:
            ValueError: If `n` is negative or larger than the set.
        """
        if not 0 <= n <= len(self):
            raise ValueError(
                f"cannot sample {n} prompts from PromptSet {self.name!r} of {len(self)}; "
                f"pass 0 <= n <= {len(self)}."
            )
        return self.select(sorted(self._shuffled(range(len(self)), seed)[:n]))

    # Identity and summaries -----------------------------------------------------------------

    def hash(self) -> str:
        """Return a SHA-256 hex digest of the texts, labels and kinds, in order.

        The name, categories and sources do not enter the hash: two sets that feed a model the
        same prompts with the same targets hash alike.
        """
        payload = json.dumps(
            [self.texts, self.labels, self.kinds], ensure_ascii=False, separators=(",", ":")
        )
        return _sha256(payload)

    def prompt_hashes(self) -> list[str]:
        """Return the SHA-256 hex digest of each text (UTF-8), in order."""
        return [_sha256(text) for text in self.texts]

    def kind_counts(self) -> dict[str, int]:
        """Return the number of prompts of each kind, sorted by kind."""
        return dict(sorted(Counter(self.kinds).items()))

    def label_counts(self) -> dict[int, int]:
        """Return the number of prompts with each label, sorted by label."""
        return dict(sorted(Counter(self.labels).items()))

    def require_nonempty(self) -> "PromptSet":
        """Return the set itself, or raise if it holds no prompts.

        Raises:
            EmptyPromptSetError: If the set is empty.
        """
        if not self.texts:
            raise EmptyPromptSetError(
                f"PromptSet {self.name or '(unnamed)'!r} has no prompts. Load a non-empty "
                "dataset file, or loosen the filter / selection that produced this set."
            )
        return self

    def __repr__(self) -> str:
        return f"PromptSet(name={self.name!r}, n={len(self)}, kinds={self.kind_counts()})"


#: What every method accepts as prompts: a `PromptSet` or plain user messages.
Prompts = PromptSet | Sequence[str]


def texts_of(prompts: Prompts) -> list[str]:
    """The user messages of a `PromptSet`, or of a sequence of strings, as a list.

    The one conversion every method uses, so that methods take either form.
    """
    if isinstance(prompts, PromptSet):
        return list(prompts.texts)
    if isinstance(prompts, str):
        raise TypeError(
            "pass a sequence of prompts (a list of strings or a PromptSet), not one str: "
            "wrap a single prompt in a list"
        )
    texts = list(prompts)
    wrong = [(i, type(t).__name__) for i, t in enumerate(texts) if not isinstance(t, str)]
    if wrong:
        i, kind = wrong[0]
        raise TypeError(
            f"prompt {i} is a {kind}, not a str ({len(wrong)} of {len(texts)} are not strings); "
            "pass the user messages as strings"
        )
    return texts


def as_prompt_set(prompts: Prompts, kind: str) -> PromptSet:
    """`prompts` as a `PromptSet` of `kind` (labelled harmful when the kind is harmful)."""
    if isinstance(prompts, PromptSet):
        return prompts
    label = HARMFUL if kind in HARMFUL_KINDS else HARMLESS
    return PromptSet.from_texts(texts_of(prompts), label=label, kind=kind, name=kind)


def split_by_kind(
    prompt_sets: Mapping[str, Prompts],
    fractions: tuple[float, float, float] = (0.5, 0.25, 0.25),
    *,
    seed: int = 0,
) -> tuple[dict[str, PromptSet], dict[str, PromptSet], dict[str, PromptSet]]:
    """Split every kind into (train, val, test) with the seeded, stratified `PromptSet.split`.

    The one place the toolkit splits prompts for a model that has no splits of its own (the
    organism has; a public dataset has not).

    Args:
        prompt_sets: kind -> prompts.
        fractions: Shares of train, val and test (they must sum to 1).
        seed: Seed of both splits.

    Returns:
        (train, val, test), each kind -> `PromptSet`.

    Raises:
        EmptyPromptSetError: A kind has too few prompts for three non-empty parts.
    """
    if len(fractions) != 3 or any(f <= 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-9:
        raise ValueError(f"fractions {fractions} must be three positive shares summing to 1")
    train: dict[str, PromptSet] = {}
    val: dict[str, PromptSet] = {}
    test: dict[str, PromptSet] = {}
    for kind, prompts in prompt_sets.items():
        whole = as_prompt_set(prompts, kind)
        n = len(whole)
        n_rest = round(n * (fractions[1] + fractions[2]))
        n_test = round(n_rest * fractions[2] / (fractions[1] + fractions[2]))
        if not 0 < n_test < n_rest < n:
            raise EmptyPromptSetError(
                f"kind {kind!r} has {n} prompts, too few to split into train, val and test "
                f"({fractions}); give at least {math.ceil(2 / min(fractions))} per kind"
            )
        train[kind], rest = whole.split(n_rest, seed=seed)
        val[kind], test[kind] = rest.split(n_test, seed=seed)
    return train, val, test
