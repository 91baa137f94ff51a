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


def test_public_prompts_splits_are_disjoint_labelled_and_complete(shared_data_dir):
    train = interp.data.public_prompts("train", data_dir=shared_data_dir)
    val = interp.data.public_prompts("val", data_dir=shared_data_dir)
    test = interp.data.public_prompts("test", data_dir=shared_data_dir)
    assert set(test.kinds) == set(HELD_OUT_SETS)
    # Borderline prompts are held out: the public ones are XSTest's (see PUBLIC_SPLITS).
    assert set(train.kinds) == set(val.kinds) == {"harmful", "harmless", "jailbreak"}
    for a, b in ((train, val), (train, test), (val, test)):
        assert not set(a.texts) & set(b.texts)
    for ps in (train, val, test):
        pairs = zip(ps.labels, ps.kinds, strict=True)
        assert all((label == 1) == (kind in ("harmful", "jailbreak")) for label, kind in pairs)
    # The split of a set without a validation part is 80/20 and seeded.
    parts = [
        interp.data.public_prompts(s, "jailbreak", data_dir=shared_data_dir)
        for s in ("train", "val")
    ]
    assert (len(parts[0]), len(parts[1])) == (896, 224)
    again = interp.data.public_prompts("val", "jailbreak", data_dir=shared_data_dir)
    assert parts[1].texts == again.texts
    capped = interp.data.public_prompts("train", data_dir=shared_data_dir, max_per_kind=5)
    assert capped.kind_counts() == {"harmful": 5, "harmless": 5, "jailbreak": 5}
    assert set(capped.texts) <= set(train.texts)
    with pytest.raises(ValueError, match="max_per_kind must be at least 1"):
        interp.data.public_prompts("train", data_dir=shared_data_dir, max_per_kind=0)
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        interp.data.public_prompts("dev", data_dir=shared_data_dir)
    with pytest.raises(ValueError, match="unknown kind"):
        interp.data.public_prompts("train", "borderline", data_dir=shared_data_dir)


def test_load_with_prompts_pairs_a_model_with_its_splits(tiny_model_dirs, shared_data_dir):
    from interp.organism import CHECKPOINT_DIR, load_with_prompts, prompts

    model, split = load_with_prompts("organism")
    assert split is prompts and interp.model_info(model).n_layers == 6
    assert str(CHECKPOINT_DIR).endswith("assets/organism")
    tiny = tiny_model_dirs["qwen2"]
    with pytest.raises(ValueError, match="pass data_dir"):
        load_with_prompts(tiny)
    model, split = load_with_prompts(tiny, data_dir=shared_data_dir, max_per_kind=3)
    assert interp.model_info(model).n_layers == 2
    test = split("test")
    assert test.kind_counts() == dict.fromkeys(HELD_OUT_SETS, 3)
    assert set(split("train", "harmful").texts) <= set(
        interp.load_dataset("harmful_train", data_dir=shared_data_dir).texts
    )
