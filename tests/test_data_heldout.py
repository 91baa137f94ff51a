"""The held-out evaluation sets: the same seeded prompts everywhere, disjoint from training."""

import pytest

import interp
from interp.data import HELD_OUT_SETS, held_out_sets, load_dataset


def test_held_out_sets_are_seeded_labelled_and_sized(shared_data_dir):
    first = held_out_sets(shared_data_dir, 16, seed=3)
    assert list(first) == list(HELD_OUT_SETS)
    assert {k: set(v.kinds) for k, v in first.items()} == {k: {k} for k in HELD_OUT_SETS}
    assert all(len(v) == 16 and len(set(v.texts)) == 16 for v in first.values())
    again = held_out_sets(shared_data_dir, 16, seed=3)
    assert all(first[k].texts == again[k].texts for k in first)
    other = held_out_sets(shared_data_dir, 16, seed=4)
    assert any(first[k].texts != other[k].texts for k in first)
    # More than a set holds gives the whole (deduplicated) set.
    whole = held_out_sets(shared_data_dir, 10_000, kinds=("borderline",))
    xstest = load_dataset("xstest", data_dir=shared_data_dir).filter(kind="borderline")
    assert list(whole) == ["borderline"] and len(whole["borderline"]) == len(xstest.deduplicate())


def test_held_out_sets_share_no_prompt_with_the_train_splits(shared_data_dir):
    held = held_out_sets(shared_data_dir, 10_000)
    for train in ("harmful_train", "harmless_train", "trustllm_jailbreak_train"):
        seen = set(interp.load_dataset(train, data_dir=shared_data_dir).texts)
        for kind, prompts in held.items():
            assert not seen & set(prompts.texts), (train, kind)


def test_held_out_sets_refuse_bad_arguments(shared_data_dir):
    with pytest.raises(ValueError, match="n_per_kind must be at least 1"):
        held_out_sets(shared_data_dir, 0)
    with pytest.raises(ValueError, match="unknown held-out kind.*'jailbreak'"):
        held_out_sets(shared_data_dir, 4, kinds=("harmfull",))
