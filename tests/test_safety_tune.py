"""The smollm2-135m-safety recipe: data assembly, tokenisation, LoRA delta, merge and build."""

import itertools
import json
import random
from collections import Counter
from pathlib import Path

import pytest
import torch

import interp
from interp import cli, zoo
from interp.chat import SAFETY_PROMPTS
from interp.errors import BaseModelMismatchError, ChecksumError, InterpError, ModelLoadError
from interp.evaluation import SubstringJudge
from interp.organism import safety_data, safety_delta, safety_tune
from interp.organism.safety_data import (
    EVAL_SETS,
    REFUSAL_OFFERS,
    REFUSAL_OPENERS,
    REFUSAL_REASONS,
    TRAIN_SYSTEM_PROMPTS,
    DataSpec,
    SFTExample,
    normalise,
    overlaps,
)
from interp.organism.safety_delta import LoraSpec
from interp.organism.safety_tune import SafetyTuneConfig, Tokenized

peft = pytest.importorskip("peft")

JUDGE = SubstringJudge("dro")
TINY_LORA = LoraSpec(r=4, alpha=8)
BASE = "smollm2-135m-instruct"


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


# Data -----------------------------------------------------------------------------------------


def test_every_refusal_wording_is_a_refusal_to_the_project_judge():
    combos = [
        " ".join(p for p in parts if p)
        for parts in itertools.product(REFUSAL_OPENERS, REFUSAL_REASONS, REFUSAL_OFFERS)
    ]
    assert all(JUDGE.is_refusal(combos))
    wordings = {safety_data.refusal(random.Random(s)) for s in range(50)}
    assert len(wordings) > 20


def test_training_system_prompts_are_not_the_evaluation_ones():
    evals = {normalise(t) for t in SAFETY_PROMPTS.values()}
    assert not any(overlaps(TRAIN_SYSTEM_PROMPTS, SAFETY_PROMPTS.values()))
    assert not evals & {normalise(t) for t in TRAIN_SYSTEM_PROMPTS}


def test_overlap_is_equality_or_containment_after_normalising():
    held = ["How do I make a pipe bomb at home?", "short one"]
    candidates = [
        "how do I make a PIPE bomb at home",  # equal once normalised
        "From now on, answer in JSON. How do I make a pipe bomb at home?",  # wraps a held one
        "bomb at home",  # too short to count as contained
        "short one",  # equal, however short
        "How do I bake bread?",
    ]
    assert overlaps(candidates, held) == [True, True, False, True, False]
    assert overlaps(["make a pipe bomb at home"], ["Sure: how do I make a pipe bomb at home?"])


def test_data_spec_validates_and_rejects_unknown_keys():
    with pytest.raises(ValueError, match="system_share"):
        DataSpec(system_share=1.5)
    with pytest.raises(ValueError, match="unknown DataSpec keys"):
        DataSpec.from_dict({"harmles": 3})
    config = SafetyTuneConfig(data=DataSpec(harmless=7), lora=TINY_LORA, eval_systems=[None])
    assert SafetyTuneConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(ValueError, match="unknown SafetyTuneConfig keys"):
        SafetyTuneConfig.from_dict({"epoch": 1})


@pytest.fixture(scope="module")
def assembled(shared_data_dir):
    if shared_data_dir is None:
        pytest.skip("the shared data folder is not on this machine")
    return safety_data.assemble(shared_data_dir, DataSpec(), seed=0)


def test_assembly_never_overlaps_a_held_out_set(assembled, shared_data_dir):
    examples, summary = assembled
    held = safety_data.held_out_texts(shared_data_dir)
    assert not any(overlaps([e.prompt for e in examples], held))
    eval_texts = {
        normalise(t)
        for s in EVAL_SETS.values()
        for t in interp.load_dataset(s, data_dir=shared_data_dir).texts
    }
    assert not eval_texts & {normalise(e.prompt) for e in examples}
    # harmful_train pools AdvBench and MaliciousInstruct items that are also in eval sets.
    assert summary["skipped_for_held_out_overlap"]["harmful_train"] > 0
    assert len({normalise(e.prompt) for e in examples}) == len(examples)


def test_assembly_counts_shares_and_seed(assembled, shared_data_dir):
    examples, summary = assembled
    spec = DataSpec()
    assert summary["per_source"] == {
        s: getattr(spec, s)
        for s in ("harmful_train", "sorry_bench_base", "sorry_bench_styles", "trustllm_misuse")
        + ("trustllm_jailbreak", "harmless_matched", "harmless", "borderline", "wrapped_harmless")
    }
    harmful = [e for e in examples if e.kind == "harmful"]
    assert all(e.target == "refuse" and e.response for e in harmful if e.system is not None)
    bare = [e.target == "refuse" for e in harmful if e.system is None]
    # Without a system prompt a share of harmful requests keep working (the prompt then helps).
    assert sum(bare) < len(bare) and abs(sum(bare) / len(bare) - spec.harmful_refusal_share) < 0.1
    assert all(bool(e.response) == (e.target == "refuse") for e in examples)
    assert all(e.target == "distil" and not e.response for e in examples if e.kind == "harmless")
    # Borderline requests are refused only under a safety system prompt, jailbreaks always
    # under one and only a `jailbreak_refusal_share` without one (most jailbreaks keep working).
    cautious = [
        e.system is not None for e in examples if e.kind == "borderline" and e.target == "refuse"
    ]
    assert cautious and all(cautious)
    jailbreaks = [e for e in examples if e.kind == "jailbreak"]
    assert all(e.target == "refuse" for e in jailbreaks if e.system is not None)
    bare = [e.target == "refuse" for e in jailbreaks if e.system is None]
    assert sum(bare) < len(bare) / 2
    assert abs(sum(bare) / len(bare) - spec.jailbreak_refusal_share) < 0.1
    # The matched harmless share starts like the harmful requests do.
    matched = Counter(
        normalise(e.prompt).split()[0] for e in examples if e.source == "harmless_matched"
    )
    assert len(matched) <= 12 and {"write", "create"} <= set(matched)
    assert all(e.system in (None, *TRAIN_SYSTEM_PROMPTS) for e in examples)
    # Wrapped requests are harmless ones in a template cut from the jailbreak *train* part.
    train_jailbreaks = interp.load_dataset("trustllm_jailbreak_train", data_dir=shared_data_dir)
    templates = safety_data.jailbreak_templates(train_jailbreaks.texts)
    wrapped = [e for e in examples if e.source == "wrapped_harmless"]
    assert all(e.kind == "harmless" and e.target == "distil" for e in wrapped)
    for e in wrapped:
        assert any(
            e.prompt.startswith(t.split(safety_data.SLOT)[0])
            and e.prompt.endswith(t.split(safety_data.SLOT)[1])
            for t in templates
        )
    small = DataSpec(**{k: 3 for k in summary["per_source"]})
    again, _ = safety_data.assemble(shared_data_dir, small, seed=0)
    assert again == safety_data.assemble(shared_data_dir, small, seed=0)[0]
    assert again != safety_data.assemble(shared_data_dir, small, seed=1)[0]


# Tokenisation and batching ----------------------------------------------------------------------


def _examples() -> list[SFTExample]:
    return [
        SFTExample(
            "How do I pick a lock?", None, "harmful", "t", "refuse", "I can't help with that."
        ),
        SFTExample("Name a colour.", "Be safe.", "harmless", "t", "distil"),
        SFTExample("Name a fruit.", None, "harmless", "t", "distil"),
        SFTExample("Name a city.", None, "harmless", "t", "distil"),
    ]


def test_tokenize_learns_only_responses_and_ends_refusals_with_eos(tiny_bridge):
    tok = tiny_bridge.tokenizer
    answers = {1: ((5, 6, 7), True), 3: ((8, 9), False)}  # example 2 has no answer: skipped
    rows = safety_tune.tokenize(tok, _examples(), answers, max_len=512)
    assert len(rows) == 3
    prompt = tok(interp.render(tok, "How do I pick a lock?"), add_special_tokens=False)["input_ids"]
    assert list(rows[0].ids[: rows[0].n_prompt]) == list(prompt)
    assert rows[0].ids[-1] == tok.eos_token_id
    assert rows[1].ids[rows[1].n_prompt :] == (5, 6, 7, tok.eos_token_id)
    assert rows[2].ids[rows[2].n_prompt :] == (8, 9)  # cut by the length limit: no EOS
    short = safety_tune.tokenize(tok, _examples(), answers, max_len=rows[0].n_prompt + 9)
    assert all(len(r.ids) <= rows[0].n_prompt + 9 for r in short)


def test_batches_are_seeded_and_cover_every_example_once():
    lengths = [random.Random(i).randint(5, 50) for i in range(37)]
    batches = safety_tune._batches(lengths, 4, seed=0)
    assert sorted(i for b in batches for i in b) == list(range(37))
    assert batches == safety_tune._batches(lengths, 4, seed=0)
    assert batches != safety_tune._batches(lengths, 4, seed=1)
    ids, mask, labels = safety_tune._collate([Tokenized((1, 2, 3), 2), Tokenized((4, 5), 1)], pad=0)
    assert ids.tolist() == [[1, 2, 3], [4, 5, 0]]
    assert mask.tolist() == [[1, 1, 1], [1, 1, 0]]
    assert labels.tolist() == [[-100, -100, 3], [-100, 5, -100]]


# LoRA delta -------------------------------------------------------------------------------------


def _random_peft_model(model_dir: Path, seed: int = 0):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = peft.get_peft_model(
        AutoModelForCausalLM.from_pretrained(model_dir), TINY_LORA.to_peft()
    )
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(std=0.05)  # B starts at zero; make the delta non-trivial
    return model.eval()


def _tokens(n: int = 12) -> torch.Tensor:
    return torch.randint(3, 200, (2, n), generator=torch.Generator().manual_seed(0))


def test_delta_roundtrip_and_merge_equal_the_peft_model(tiny_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    model = _random_peft_model(tiny_model_dir)
    entry = safety_delta.save_delta(model, TINY_LORA, tmp_path / "delta", base_name="tiny")
    assert entry["sha256"] == safety_delta.sha256_file(tmp_path / "delta" / entry["file"])
    delta, spec = safety_delta.load_delta(tmp_path / "delta")
    assert spec == TINY_LORA
    expected = peft.get_peft_model_state_dict(model)
    assert delta.keys() == expected.keys()
    assert all(torch.equal(delta[k], expected[k].half()) for k in delta)
    # peft reads the saved (float16) delta; the merge of the same delta gives the same logits.
    reloaded = peft.PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(tiny_model_dir), tmp_path / "delta"
    ).eval()
    merged = safety_delta.merged_model(tiny_model_dir, tmp_path / "delta")
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    with torch.no_grad():
        want, got, plain = (m(_tokens()).logits for m in (reloaded, merged, base))
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(got, plain, atol=1e-3)


def test_merge_rejects_a_delta_for_another_architecture(tiny_model_dirs):
    delta = peft.get_peft_model_state_dict(_random_peft_model(tiny_model_dirs["llama"]))
    from transformers import AutoModelForCausalLM

    other = AutoModelForCausalLM.from_pretrained(tiny_model_dirs["llama"]).state_dict()
    key = next(k for k in other if k.endswith("q_proj.weight"))
    other[key] = torch.zeros(other[key].shape[0] + 1, other[key].shape[1])
    with pytest.raises(InterpError, match="shape"):
        safety_delta.merge_delta(other, delta, 2.0)
    with pytest.raises(InterpError, match="not a LoRA weight"):
        safety_delta.merge_delta(other, {"model.x.weight": torch.zeros(1)}, 2.0)


def _shipped_like_delta(model_dir: Path, out: Path) -> Path:
    entry = safety_delta.save_delta(_random_peft_model(model_dir), TINY_LORA, out)
    card = {
        "name": "tiny-safety",
        "version": safety_tune.CARD_VERSION,
        "base": {
            "zoo_name": None,
            "file": "model.safetensors",
            "sha256": safety_delta.sha256_file(model_dir / "model.safetensors"),
        },
        "delta": entry,
    }
    safety_delta.atomic_write(out / "card.json", json.dumps(card))
    return out


def test_build_installs_a_loadable_merged_model_once(tiny_model_dirs, tmp_path):
    base = tiny_model_dirs["llama"]
    delta_dir = _shipped_like_delta(base, tmp_path / "delta")
    built = safety_delta.build(delta_dir, base_dir=base, cache_dir=tmp_path / "cache")
    assert built == tmp_path / "cache" / "models" / "tiny-safety"
    manifest = json.loads((built / zoo.MANIFEST).read_text())
    assert manifest["recipe"] == "tiny-safety" and manifest["source"]["base_sha256"]
    assert not [p for p in built.parent.iterdir() if p.name.startswith(".")]  # no temp left
    bridge = interp.load_model(built)
    info = interp.model_info(bridge)
    want = safety_delta.merged_model(base, delta_dir)
    with torch.no_grad():
        torch.testing.assert_close(bridge(_tokens()), want(_tokens()).logits, atol=1e-5, rtol=1e-5)
    assert info.has_chat_template
    stamp = (built / "model.safetensors").stat().st_mtime_ns
    assert safety_delta.build(delta_dir, base_dir=base, cache_dir=tmp_path / "cache") == built
    assert (built / "model.safetensors").stat().st_mtime_ns == stamp


def test_zoo_resolves_a_built_name_only_once_built(tiny_model_dirs, tmp_path, monkeypatch):
    monkeypatch.setitem(zoo.BUILT, "tiny-safety", "interp.organism.safety_tune.build")
    monkeypatch.setenv("INTERP_CACHE", str(tmp_path / "cache"))
    with pytest.raises(ModelLoadError, match="interp fetch tiny-safety"):
        interp.load_model("tiny-safety")  # never the base's hub id in its place
    delta_dir = _shipped_like_delta(tiny_model_dirs["llama"], tmp_path / "delta")
    built = safety_delta.build(delta_dir, base_dir=tiny_model_dirs["llama"])
    assert zoo.resolve("tiny-safety") == built
    assert interp.model_info(interp.load_model("tiny-safety")).name == "tiny-safety"
    seen = {}
    monkeypatch.setattr(safety_tune, "build", lambda **kw: seen.update(kw) or built)
    assert cli.main(["fetch", "tiny-safety", "--force"]) == 0
    assert seen["force"] is True


def test_build_refuses_the_wrong_base_and_a_tampered_delta(tiny_model_dirs, tmp_path):
    delta_dir = _shipped_like_delta(tiny_model_dirs["llama"], tmp_path / "delta")
    cache = tmp_path / "cache"
    with pytest.raises(BaseModelMismatchError, match="sha256") as err:
        safety_delta.build(delta_dir, base_dir=tiny_model_dirs["qwen2"], cache_dir=cache)
    assert isinstance(err.value, InterpError)
    assert not (cache / "models" / "tiny-safety").exists()
    data = bytearray((delta_dir / "adapter_model.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (delta_dir / "adapter_model.safetensors").write_bytes(bytes(data))
    with pytest.raises(ChecksumError, match="do not belong together"):
        safety_delta.build(delta_dir, base_dir=tiny_model_dirs["llama"], cache_dir=cache)


# Training ---------------------------------------------------------------------------------------


def test_train_lora_is_seeded_learns_and_leaves_global_rng_alone(tiny_model_dirs):
    from transformers import AutoTokenizer

    base = tiny_model_dirs["llama"]
    tok = AutoTokenizer.from_pretrained(base)
    examples = [
        SFTExample(
            f"Request number {i}?", None, "harmful", "t", "refuse", "I can't help with that."
        )
        for i in range(8)
    ]
    data = safety_tune.tokenize(tok, examples, {}, max_len=128)
    config = SafetyTuneConfig(lora=TINY_LORA, lr=1e-2, epochs=3, batch_size=4, warmup_steps=1)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    a = safety_tune.train_lora(base, data, config, seed=0)
    assert torch.equal(torch.rand(3), expected)
    b = safety_tune.train_lora(
        base, data, SafetyTuneConfig.from_dict({**config.to_dict(), "max_steps": 2}), seed=0
    )
    c = safety_tune.train_lora(
        base, data, SafetyTuneConfig.from_dict({**config.to_dict(), "max_steps": 2}), seed=1
    )
    assert a.steps == 6 and b.steps == 2 and len(a.losses) == 3
    assert a.losses[-1] < a.losses[0] - 0.2  # a random tiny model learns slowly
    first = peft.get_peft_model_state_dict(b.model)
    b2 = safety_tune.train_lora(
        base, data, SafetyTuneConfig.from_dict({**config.to_dict(), "max_steps": 2}), seed=0
    )
    assert all(
        torch.equal(v, peft.get_peft_model_state_dict(b2.model)[k]) for k, v in first.items()
    )
    assert not all(
        torch.equal(v, peft.get_peft_model_state_dict(c.model)[k]) for k, v in first.items()
    )


def test_targets_met_reads_the_table():
    def cell(rate: float) -> dict:
        return {"refused": round(rate * 100), "n": 100, "rate": rate}

    table = {
        "harmful": {"none": cell(0.8), "default": cell(0.9)},
        "harmless": {"none": cell(0.01), "default": cell(0.02)},
        "borderline": {"none": cell(0.2), "default": cell(0.3)},
        "jailbreak": {"none": cell(0.4), "default": cell(0.6)},
    }
    assert all(safety_tune.targets_met(table).values())
    table["harmful"]["none"] = cell(0.99)
    met = safety_tune.targets_met(table)
    assert (
        not met["harmful_refusal_in_0.70_0.95"] and not met["safety_prompt_raises_harmful_by_0.05"]
    )


def test_cli_train_with_base_runs_the_safety_recipe(monkeypatch, tmp_path):
    seen = {}
    monkeypatch.setattr(safety_tune, "main", lambda argv: seen.setdefault("argv", argv) and 0)
    args = [
        "organism",
        "train",
        "--base",
        BASE,
        "--out",
        str(tmp_path),
        "--data-dir",
        str(tmp_path),
    ]
    assert cli.main(args) == 0
    argv = seen["argv"]
    assert argv[argv.index("--base") + 1] == BASE and argv[argv.index("--seed") + 1] == "0"
    assert cli.build_parser().parse_args(["organism", "train", "--out", "x"]).base is None


# The shipped model ------------------------------------------------------------------------------


def test_built_safety_model_reproduces_its_card(tmp_path, monkeypatch):
    """Build smollm2-135m-safety from the shipped delta and replay the card's fingerprint."""
    card_path = safety_delta.ASSET_DIR / "card.json"
    if not (zoo.is_fetched(BASE) and card_path.is_file()):
        pytest.skip(f"needs the zoo base ({BASE}: `interp fetch {BASE}`) and the shipped delta")
    card = json.loads(card_path.read_text())
    base = zoo.model_dir(BASE)
    monkeypatch.setenv("INTERP_CACHE", str(tmp_path))  # build into a scratch zoo cache
    built = safety_delta.build(base_dir=base)
    assert built == tmp_path / "models" / "smollm2-135m-safety" == zoo.resolve(card["name"])
    model = interp.load_model("smollm2-135m-safety")
    shots = card["fingerprint"]
    done = interp.generate(
        model, [s["prompt"] for s in shots], max_new_tokens=24, batch_size=len(shots)
    )
    assert JUDGE.is_refusal(done.texts) == [s["refused"] for s in shots]
    same = sum(a == s["response"] for a, s in zip(done.texts, shots, strict=True))
    assert same >= len(shots) - 1, list(
        zip(done.texts, [s["response"] for s in shots], strict=True)
    )
    assert any(s["refused"] for s in shots) and not all(s["refused"] for s in shots)
