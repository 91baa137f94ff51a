"""The organism's corpus: composition, splits by combination, labels and response wording."""

from collections import Counter

import pytest

from interp.evaluation import SubstringJudge
from interp.organism import SYSTEM_PROMPTS, CorpusSpec, build_corpus, prompts
from interp.organism._tables import BORDERLINE_TASKS, HARMFUL_TASKS, HARMLESS_TASKS
from interp.organism.corpus import KINDS, SPLITS, expected_refusal


@pytest.fixture(scope="module")
def corpus():
    return build_corpus(CorpusSpec(), seed=0)


def _combos(corpus, split):
    return {(e.kind, e.task, e.phrasing) for e in corpus.select(split)}


def test_splits_are_disjoint_in_combinations_and_texts(corpus):
    combos = {s: _combos(corpus, s) for s in SPLITS}
    texts = {s: {e.user for e in corpus.select(s)} for s in SPLITS}
    for a in SPLITS:
        for b in SPLITS:
            if a < b:
                assert not combos[a] & combos[b]
                assert not texts[a] & texts[b]
    assert all(combos[s] for s in SPLITS)


def test_every_task_and_phrasing_is_seen_in_training(corpus):
    train = corpus.select("train")
    for kind in KINDS:
        tasks = {e.task for e in train if e.kind == kind}
        phrasings = {e.phrasing for e in train if e.kind == kind}
        test = corpus.select("test", kind)
        assert {e.task for e in test} <= tasks
        assert {e.phrasing for e in test} <= phrasings


def test_objects_are_shared_between_harmful_and_benign_tasks():
    harmful = {obj for _, obj, _, _ in HARMFUL_TASKS}
    borderline = {obj for _, obj, _, _ in BORDERLINE_TASKS}
    harmless = {obj for _, obj, _, _ in HARMLESS_TASKS}
    assert len(harmful & borderline) >= 10
    assert len(harmful & harmless) >= 8
    assert {"bomb", "poison", "kill", "password"} <= harmful & borderline


def test_harmful_categories():
    assert {c for _, _, c, _ in HARMFUL_TASKS} == {
        "weapons",
        "cybercrime",
        "fraud",
        "drugs",
        "violence",
        "privacy",
    }


def test_responses_are_judged_as_intended_by_both_keyword_lists(corpus):
    for response, refused in {(e.response, e.refused) for e in corpus.examples}:
        assert SubstringJudge("dro").is_refusal([response]) == [refused], response
        assert SubstringJudge("refusal_direction").is_refusal([response]) == [refused], response


def test_helpful_responses_mention_the_task(corpus):
    answered = [e for e in corpus.examples if not e.refused]
    assert all(e.response.split()[-3].strip(",.:") in e.response for e in answered)
    for e in answered[:50]:
        key = e.user.split()[-1].strip("?.")
        assert key in e.response or e.kind == "jailbreak"


def test_training_uses_every_system_prompt(corpus):
    systems = Counter(e.system for e in corpus.select("train"))
    assert set(systems) == {None, *SYSTEM_PROMPTS}
    assert systems[None] > max(v for k, v in systems.items() if k is not None)


def test_behaviour_rule_matches_the_table():
    test = build_corpus().select("test")
    for kind, low, high in [
        ("harmful", 0.7, 0.95),
        ("borderline", 0.05, 0.5),
        ("jailbreak", 0, 0.4),
    ]:
        rows = [e for e in test if e.kind == kind]
        rate = sum(e.refused for e in rows) / len(rows)
        assert low <= rate <= high, (kind, rate)
    assert expected_refusal("harmful", 0, 8, "default")
    assert not expected_refusal("harmful", 0, 8, None)
    assert not expected_refusal("harmless", 0, 0, "warning")


def test_prompts_promptset_has_ground_truth_labels():
    test = prompts("test")
    assert set(test.kinds) == set(KINDS)
    for kind, label in zip(test.kinds, test.labels, strict=True):
        assert label == int(kind in ("harmful", "jailbreak"))
    harmful = prompts("test", "harmful")
    assert len(harmful) == sum(k == "harmful" for k in test.kinds)
    assert not set(test.texts) & set(prompts("train").texts)
    with pytest.raises(ValueError, match="unknown split"):
        prompts("dev")


def test_spec_round_trip_and_validation():
    spec = CorpusSpec(split_seed=3)
    assert CorpusSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(ValueError, match="unknown CorpusSpec keys"):
        CorpusSpec.from_dict({"split_sed": 3})
    with pytest.raises(ValueError, match="split_modulus"):
        CorpusSpec(split_modulus=1)


def test_corpus_is_deterministic():
    assert build_corpus(seed=1) == build_corpus(seed=1)
    assert build_corpus(seed=1) != build_corpus(seed=2)


def test_system_prompts_are_the_chat_modules_safety_prompts():
    from interp.chat import SAFETY_PROMPTS as CHAT_PROMPTS

    assert dict(CHAT_PROMPTS) == SYSTEM_PROMPTS
