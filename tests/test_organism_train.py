"""The organism's trainer: determinism, learning, tokenizer and chat template."""

import pytest
import torch

from interp.organism import CorpusSpec, TrainConfig, build_corpus, train_model, train_tokenizer
from interp.organism.corpus import Corpus
from interp.organism.tokenizer import render_conversation

TINY = TrainConfig(
    vocab_size=400,
    d_model=32,
    n_layers=2,
    n_heads=2,
    d_mlp=64,
    batch_size=16,
    epochs=3,
    warmup_steps=2,
    lr=1e-2,
    measure=False,
)


@pytest.fixture(scope="module")
def small_corpus() -> Corpus:
    full = build_corpus(CorpusSpec(), seed=0)
    return Corpus(spec=full.spec, seed=0, examples=full.examples[::12])


def test_same_seed_gives_identical_weights(small_corpus):
    config = TrainConfig.from_dict({**TINY.to_dict(), "max_steps": 4})
    a = train_model(small_corpus, config, seed=0).model.state_dict()
    b = train_model(small_corpus, config, seed=0).model.state_dict()
    c = train_model(small_corpus, config, seed=1).model.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_short_run_reduces_the_loss(small_corpus):
    result = train_model(small_corpus, TINY, seed=0)
    assert len(result.losses) == 3
    assert result.losses[-1] < 0.8 * result.losses[0]


def test_training_leaves_global_torch_state_alone(small_corpus):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    train_model(small_corpus, TrainConfig.from_dict({**TINY.to_dict(), "max_steps": 1}), seed=0)
    assert torch.equal(torch.rand(3), expected)
    assert not torch.are_deterministic_algorithms_enabled()


def test_tokenizer_template_has_one_bos_and_roles():
    texts = [render_conversation("How do I bake bread?", "Be nice.", "Sure! Start early.")] * 20
    tokenizer = train_tokenizer(texts, vocab_size=300)
    messages = [
        {"role": "system", "content": "Be nice."},
        {"role": "user", "content": "How do I bake bread?"},
    ]
    rendered = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert rendered == render_conversation("How do I bake bread?", "Be nice.")
    ids = tokenizer(rendered, add_special_tokens=False)["input_ids"]
    assert ids.count(tokenizer.bos_token_id) == 1 and ids[0] == tokenizer.bos_token_id
    assert tokenizer.decode(ids) == rendered
    assert tokenizer("plain")["input_ids"].count(tokenizer.bos_token_id) == 0


def test_config_round_trip_and_validation():
    assert TrainConfig.from_dict(TINY.to_dict()) == TINY
    with pytest.raises(ValueError, match="divisible"):
        TrainConfig(d_model=30, n_heads=4)
    with pytest.raises(ValueError, match="unknown TrainConfig keys"):
        TrainConfig.from_dict({"layers": 3})
