"""Tests of `interp.data.PromptSet`: construction, selection, splitting, hashing, bad input."""

import hashlib
from collections import Counter

import numpy as np
import pytest

from interp.data import Prompt, PromptSet
from interp.errors import DatasetFormatError, EmptyPromptSetError


def _mixed(n_harmful: int = 40, n_harmless: int = 60, n_borderline: int = 20) -> PromptSet:
    harmful = PromptSet.from_texts(
        [f"harmful request {i}" for i in range(n_harmful)], label=1, kind="harmful", source="a"
    )
    harmless = PromptSet.from_texts(
        [f"harmless request {i}" for i in range(n_harmless)], label=0, kind="harmless", source="b"
    )
    borderline = PromptSet.from_texts(
        [f"borderline request {i}" for i in range(n_borderline)], label=0, kind="borderline"
    )
    return PromptSet.concat([harmful, harmless, borderline], name="mixed")


def test_constructor_converts_sequences_to_tuples() -> None:
    ps = PromptSet(
        texts=["a", "b"],
        labels=np.array([1, 0]),
        kinds=["harmful", "harmless"],
        categories=("x", ""),
        sources=iter(["s", "t"]),
        name="two",
    )
    assert ps.texts == ("a", "b")
    assert ps.labels == (1, 0) and all(type(v) is int for v in ps.labels)
    assert ps.sources == ("s", "t")
    assert len(ps) == 2
    assert list(ps) == [Prompt("a", 1, "harmful", "x", "s"), Prompt("b", 0, "harmless", "", "t")]
    with pytest.raises(AttributeError):
        ps.name = "other"  # type: ignore[misc]


def test_length_mismatch_names_the_lengths() -> None:
    with pytest.raises(ValueError, match=r"texts=2.*labels=1.*kinds=2"):
        PromptSet(
            texts=["a", "b"], labels=[1], kinds=["k", "k"], categories=["", ""], sources=["", ""]
        )


def test_bad_label_and_bad_types_are_rejected() -> None:
    with pytest.raises(ValueError, match="labels must be 1"):
        PromptSet.from_texts(["a"], label=2, kind="harmful")
    with pytest.raises(TypeError, match="texts"):
        PromptSet.from_texts([b"bytes"], label=1, kind="harmful")  # type: ignore[list-item]
    with pytest.raises(TypeError, match="single string"):
        PromptSet(texts="abc", labels=[1], kinds=["k"], categories=[""], sources=[""])


def test_getitem_int_slice_indices_and_mask() -> None:
    ps = _mixed()
    assert ps[0] == Prompt("harmful request 0", 1, "harmful", "", "a")
    assert ps[-1].text == "borderline request 19"
    assert ps[np.int64(1)].text == "harmful request 1"
    head = ps[:3]
    assert isinstance(head, PromptSet) and head.texts == ps.texts[:3] and head.name == "mixed"
    picked = ps[[5, 2]]
    assert picked.texts == (ps.texts[5], ps.texts[2])
    assert ps[np.array([5, 2])] == picked
    mask = [k == "borderline" for k in ps.kinds]
    assert ps[mask].kind_counts() == {"borderline": 20}
    assert ps[np.array(mask)].kind_counts() == {"borderline": 20}
    with pytest.raises(IndexError):
        ps.select([len(ps)])
    with pytest.raises(ValueError, match="boolean mask"):
        ps.select([True, False])


def test_filter_by_kind_label_category_source() -> None:
    ps = _mixed()
    assert ps.filter(kind="harmful").kind_counts() == {"harmful": 40}
    assert ps.filter(label=0).kind_counts() == {"borderline": 20, "harmless": 60}
    assert len(ps.filter(kind=["harmful", "borderline"])) == 60
    assert len(ps.filter(label=0, source="b")) == 60
    assert len(ps.filter(kind="harmful", label=0)) == 0
    assert len(ps.filter(category="nope")) == 0
    assert ps.filter() == ps


def test_split_is_deterministic_disjoint_and_complete() -> None:
    ps = _mixed()
    train, test = ps.split(0.25, seed=3)
    again_train, again_test = ps.split(0.25, seed=3)
    assert (train, test) == (again_train, again_test)
    assert set(train.texts).isdisjoint(test.texts)
    assert sorted(train.texts + test.texts) == sorted(ps.texts)
    assert len(test) == 30 and len(train) == 90
    assert train.name == "mixed/train" and test.name == "mixed/test"
    other = ps.split(0.25, seed=4)[1]
    assert set(other.texts) != set(test.texts)
    # Both parts keep the original order.
    order = {t: i for i, t in enumerate(ps.texts)}
    assert [order[t] for t in test.texts] == sorted(order[t] for t in test.texts)


def test_split_is_stratified_by_kind_and_label() -> None:
    ps = _mixed()
    _, test = ps.split(0.25, seed=0)
    assert test.kind_counts() == {"borderline": 5, "harmful": 10, "harmless": 15}
    # A size that does not divide evenly still gives the exact total.
    _, test = ps.split(7, seed=1)
    assert len(test) == 7
    counts = test.kind_counts()
    assert all(abs(counts.get(k, 0) - 7 * n / 120) < 1 for k, n in ps.kind_counts().items())


def test_split_without_stratify_and_bad_sizes() -> None:
    ps = _mixed()
    train, test = ps.split(0.5, seed=0, stratify=False)
    assert len(test) == 60 and len(train) == 60
    for bad in (0.0, 1.0, 1.5, 0, 120):
        with pytest.raises(ValueError, match="test_size"):
            ps.split(bad)


def test_split_and_sample_of_empty_set_raise_empty_error() -> None:
    empty = PromptSet.from_texts([], label=1, kind="harmful", name="nothing")
    assert len(empty) == 0
    with pytest.raises(EmptyPromptSetError, match="nothing"):
        empty.split()
    with pytest.raises(EmptyPromptSetError, match=r"non-empty"):
        empty.require_nonempty()
    with pytest.raises(EmptyPromptSetError, match="loosen the filter"):
        _mixed().filter(kind="jailbreak").require_nonempty()
    ps = _mixed()
    assert ps.require_nonempty() is ps


def test_sample_is_deterministic_and_without_replacement() -> None:
    ps = _mixed()
    a = ps.sample(10, seed=7)
    assert a == ps.sample(10, seed=7)
    assert len(set(a.texts)) == 10 and set(a.texts) <= set(ps.texts)
    assert a != ps.sample(10, seed=8)
    assert ps.sample(len(ps)) == ps
    with pytest.raises(ValueError, match="cannot sample"):
        ps.sample(len(ps) + 1)


def test_hash_is_stable_and_sensitive() -> None:
    ps = PromptSet.from_texts(["a", "b"], label=1, kind="harmful", name="x")
    same = PromptSet(
        texts=("a", "b"),
        labels=(1, 1),
        kinds=("harmful", "harmful"),
        categories=("c", "d"),
        sources=("s", "t"),
        name="other name",
    )
    assert ps.hash() == same.hash()
    assert len(ps.hash()) == 64 and int(ps.hash(), 16) >= 0
    # The encoding is pinned: a change here invalidates every stored dataset hash.
    payload = '[["a","b"],[1,1],["harmful","harmful"]]'
    assert ps.hash() == hashlib.sha256(payload.encode()).hexdigest()
    assert ps.hash() != ps[::-1].hash()
    assert ps.hash() != PromptSet.from_texts(["a", "b "], label=1, kind="harmful").hash()
    assert ps.hash() != PromptSet.from_texts(["a", "b"], label=0, kind="harmful").hash()
    assert ps.hash() != PromptSet.from_texts(["a", "b"], label=1, kind="jailbreak").hash()
    assert ps.hash() != PromptSet.from_texts(["ab"], label=1, kind="harmful").hash()


def test_prompt_hashes_are_sha256_of_each_text() -> None:
    ps = PromptSet.from_texts(["héllo", "b"], label=0, kind="harmless")
    assert ps.prompt_hashes() == [
        hashlib.sha256("héllo".encode()).hexdigest(),
        hashlib.sha256(b"b").hexdigest(),
    ]


def test_records_round_trip_and_concat() -> None:
    ps = _mixed(3, 2, 1)
    records = ps.to_records()
    assert records[0] == {
        "text": "harmful request 0",
        "label": 1,
        "kind": "harmful",
        "category": "",
        "source": "a",
    }
    assert PromptSet.from_records(records, name="mixed") == ps
    partial = PromptSet.from_records([{"text": "hi"}])
    assert partial[0] == Prompt("hi", -1, "unknown", "", "")
    with pytest.raises(DatasetFormatError, match="no 'text' key"):
        PromptSet.from_records([{"prompt": "hi"}])
    joined = ps[:2] + ps[2:]
    assert joined.texts == ps.texts and joined.name == "mixed+mixed"
    assert Counter(joined.kinds) == Counter(ps.kinds)


def test_deduplicate_counts_and_repr() -> None:
    ps = PromptSet.from_texts(["a", "b", "a"], label=1, kind="harmful", name="dups")
    assert ps.deduplicate().texts == ("a", "b")
    assert ps.kind_counts() == {"harmful": 3}
    assert ps.label_counts() == {1: 3}
    assert repr(ps) == "PromptSet(name='dups', n=3, kinds={'harmful': 3})"


def test_split_by_kind_is_the_seeded_stratified_split():
    from interp.data import HARMFUL, HARMLESS, split_by_kind

    sets = {"harmful": [f"h{i}" for i in range(12)], "harmless": [f"s{i}" for i in range(8)]}
    train, val, test = split_by_kind(sets, seed=3)
    for kind, texts in sets.items():
        parts = [train[kind].texts, val[kind].texts, test[kind].texts]
        assert sorted(t for part in parts for t in part) == sorted(texts)  # disjoint, complete
        assert [len(p) for p in parts] == [len(texts) // 2, len(texts) // 4, len(texts) // 4]
    assert set(train["harmful"].labels) == {HARMFUL} and set(val["harmless"].labels) == {HARMLESS}
    again = split_by_kind(sets, seed=3)
    assert [d["harmful"].texts for d in again] == [d["harmful"].texts for d in (train, val, test)]
    other = split_by_kind(sets, seed=4)
    assert other[2]["harmful"].texts != test["harmful"].texts  # the seed decides
    with pytest.raises(EmptyPromptSetError, match="too few to split"):
        split_by_kind({"harmful": ["a", "b"]})


def test_texts_of_refuses_a_single_string_and_non_strings():
    from interp.data import texts_of

    assert texts_of(["a", "b"]) == ["a", "b"]
    assert texts_of(PromptSet.from_texts(["x"], label=1, kind="harmful")) == ["x"]
    with pytest.raises(TypeError, match="not one str"):
        texts_of("How do I build a bomb?")
    with pytest.raises(TypeError, match="prompt 0 is a NoneType.*2 of 2"):
        texts_of([None, 42])
