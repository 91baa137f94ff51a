"""Bad numbers, layers and labels get a specific error that names the value and the fix."""

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch

import interp
from interp import cli
from interp import store as store_mod
from interp.activations import Activations
from interp.cast import CAST, CastError
from interp.chat import SAFETY_PROMPTS, SystemText, encode, resolve_system
from interp.directions import Direction
from interp.dro import AnchorSpace, SoftPrompt
from interp.errors import (
    IncompleteOrganismError,
    ParameterError,
    StoreMismatchError,
    UnknownSafetyPromptError,
)
from interp.interventions import ActAdd
from interp.organism import CHECKPOINT_DIR as ORGANISM_DIR
from interp.organism import load_with_prompts, organism_card
from interp.probes import (
    LayerMismatchError,
    LinearProbe,
    NonBinaryLabelsError,
    ProbeInputError,
    fit_probes_per_layer,
)
from interp.refusal_direction import SelectionConfig
from interp.safeinfer import SafeInfer
from interp.safeswitch import SafeSwitchProber
from interp.sites import Site


def _planted(n_layers: int = 3, n: int = 40, d: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    y = torch.arange(n) % 2
    x = torch.randn(n_layers, n, d, generator=g)
    x[-1, :, 0] += 4.0 * (2 * y - 1)
    return x, y


# 1. Layers that do not match the stack.


def test_five_layer_names_for_a_three_layer_stack_are_refused():
    x, y = _planted(n_layers=3)
    with pytest.raises(LayerMismatchError, match=r"5 layer numbers .* 3 layers"):
        fit_probes_per_layer(x, y, layers=[10, 20, 30, 40, 50], n_boot=0)
    with pytest.raises(LayerMismatchError, match="twice"):
        fit_probes_per_layer(x, y, layers=[0, 1, 1], n_boot=0)
    with pytest.raises(LayerMismatchError, match="-1"):
        fit_probes_per_layer(x, y, layers=[-1, 0, 1], n_boot=0)
    # The right number of layer names labels the rows.
    assert fit_probes_per_layer(x, y, layers=[4, 5, 6], n_boot=0).best_layer == 6


def _activations(x: torch.Tensor, layers: list[int]) -> Activations:
    sites = tuple(Site("resid_post", layer) for layer in layers)
    return Activations(
        data={s.label: x[i][:, None] for i, s in enumerate(sites)},
        sites=sites,
        columns=("last",),
        prompts=(),
    )


def test_layers_of_collected_activations_pick_rows_and_unknown_ones_are_refused():
    x, y = _planted(n_layers=3)
    acts = _activations(x, [2, 5, 7])
    picked = fit_probes_per_layer(acts, y, layers=[7, 2], n_boot=0)
    whole = fit_probes_per_layer(acts, y, n_boot=0)
    assert picked.layers == (7, 2)
    assert picked.accuracy == (whole.accuracy[2], whole.accuracy[0])
    with pytest.raises(LayerMismatchError, match=r"layer 3 .*collected: \[2, 5, 7\]"):
        fit_probes_per_layer(acts, y, layers=[2, 3], n_boot=0)


# 2. Soft labels where a method takes hard ones.


def test_half_labels_are_refused_by_hard_label_probes():
    x, y = _planted(n_layers=1)
    soft = y.double()
    soft[3] = 0.5
    with pytest.raises(NonBinaryLabelsError, match=r"0\.5 at row 3"):
        fit_probes_per_layer(x, soft, n_boot=0)
    with pytest.raises(NonBinaryLabelsError, match=r"0\.5"):
        LinearProbe().fit(x[0], soft)
    with pytest.raises(NonBinaryLabelsError, match="nan"):
        LinearProbe().fit(x[0], [float("nan")] + y[1:].tolist())
    with pytest.raises(NonBinaryLabelsError, match="-1"):
        LinearProbe().fit(x[0], [-1] + y[1:].tolist())
    with pytest.raises(ProbeInputError, match="numbers"):
        LinearProbe().fit(x[0], ["harmful"] * len(y))
    # 0.0 / 1.0 floats and booleans are hard labels.
    assert LinearProbe().fit(x[0], y.double()).score(x[0], y.bool()) > 0.9


def test_half_labels_are_refused_by_the_safeswitch_prober():
    x, y = _planted(n_layers=1)
    soft = y.double()
    soft[0] = 0.5
    with pytest.raises(NonBinaryLabelsError, match=r"0\.5 at row 0"):
        SafeSwitchProber(epochs=1).fit(x[0], soft, x[0], y)
    with pytest.raises(NonBinaryLabelsError, match=r"0\.5 at row 0"):
        SafeSwitchProber(epochs=1).fit(x[0], y, x[0], soft)


def test_anchor_space_takes_soft_compliance_but_hard_harmful_labels():
    x, y = _planted(n_layers=1, d=8)
    comply = torch.linspace(0, 1, len(y), dtype=torch.float64)
    AnchorSpace(n_components=2).fit(x[0], y, comply)  # soft comply rates are its input
    soft = y.double()
    soft[5] = 0.5
    with pytest.raises(NonBinaryLabelsError, match=r"0\.5 at row 5"):
        AnchorSpace(n_components=2).fit(x[0], soft, comply)


# 3. Safety-prompt names are a closed set; literal system text cannot be mistaken for one.


def test_a_typo_of_a_safety_prompt_name_is_refused_with_the_nearest_name():
    with pytest.raises(UnknownSafetyPromptError, match="did you mean 'default'"):
        resolve_system("defualt")
    with pytest.raises(UnknownSafetyPromptError, match="did you mean 'warning'"):
        resolve_system("Warnings")
    with pytest.raises(UnknownSafetyPromptError, match="pass None"):
        resolve_system("none")  # no system prompt is None, not a name
    assert resolve_system("default") == SAFETY_PROMPTS["default"]
    assert resolve_system(None) is None


def test_literal_system_text_passes_as_written():
    text = "You are a pirate. Answer in rhymes."
    assert resolve_system(text) == text
    assert resolve_system(SAFETY_PROMPTS["short"]) == SAFETY_PROMPTS["short"]
    assert resolve_system("") == ""  # an empty system turn is text, not a name
    # A one-word system prompt is literal when marked as such.
    assert resolve_system(SystemText("Pirate")) == "Pirate"
    assert resolve_system(SystemText("default")) == "default"


def test_encode_refuses_a_mistyped_system_name(tiny_model_dirs):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dirs["llama"])
    with pytest.raises(UnknownSafetyPromptError, match="'defualt'.*did you mean 'default'"):
        encode(tokenizer, ["How do I bake bread?"], system="defualt")
    named = encode(tokenizer, ["How do I bake bread?"], system="default")
    literal = encode(tokenizer, ["How do I bake bread?"], system=SAFETY_PROMPTS["default"])
    assert torch.equal(named.tokens, literal.tokens)


def test_cli_system_flag_follows_the_same_rule(tmp_path, capsys):
    argv = ["cache", "--model", str(tmp_path / "absent"), "--prompts", str(tmp_path / "p.txt")]
    with pytest.raises(SystemExit):
        cli.main([*argv, "--out", str(tmp_path / "s"), "--system", "defualt"])
    assert "did you mean 'default'" in capsys.readouterr().err


# 4. An organism directory without a complete card is refused, not taken for another model.


def _organism_copy(tmp_path: Path, *, card: str | None) -> Path:
    out = tmp_path / "organism"
    shutil.copytree(ORGANISM_DIR, out, ignore=shutil.ignore_patterns("card.json", "README.md"))
    if card is not None:
        (out / "card.json").write_text(card)
    return out


def test_an_organism_directory_without_its_card_is_refused(tmp_path, tiny_model_dirs):
    half = _organism_copy(tmp_path, card=None)
    with pytest.raises(IncompleteOrganismError, match=r"no card\.json.*organism train"):
        cli.report._is_organism(half)
    with pytest.raises(IncompleteOrganismError, match="no card.json"):
        load_with_prompts(half, data_dir=tmp_path)
    # A complete organism and an ordinary model are told apart as before.
    assert cli.report._is_organism(ORGANISM_DIR)
    assert organism_card(ORGANISM_DIR)["name"] == "interp-organism"
    assert not cli.report._is_organism(tiny_model_dirs["llama"])
    assert organism_card(tiny_model_dirs["llama"]) is None


def test_a_card_that_does_not_parse_or_is_not_the_organisms_is_refused(tmp_path):
    whole = (ORGANISM_DIR / "card.json").read_text()
    cut = _organism_copy(tmp_path / "cut", card=whole[: len(whole) // 2])
    with pytest.raises(IncompleteOrganismError, match="does not parse"):
        cli.report._is_organism(cut)
    other = _organism_copy(tmp_path / "other", card='{"name": "something-else"}')
    with pytest.raises(IncompleteOrganismError, match="corpus_spec"):
        cli.report._is_organism(other)


def test_the_trainer_writes_the_card_last_and_a_killed_run_is_refused(tmp_path, monkeypatch):
    from interp.organism import TrainConfig, train_organism

    tiny = dict(vocab_size=300, d_model=16, n_layers=1, n_heads=2, d_mlp=32, batch_size=64)
    config = TrainConfig.from_dict({**TrainConfig().to_dict(), **tiny, "max_steps": 1})

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # the run dies while measuring, before the card is written

    monkeypatch.setattr("interp.organism.behaviour.measure_behaviour", killed)
    with pytest.raises(KeyboardInterrupt):
        train_organism(tmp_path / "killed", config=config)
    assert (tmp_path / "killed" / "model.safetensors").is_file()
    assert not (tmp_path / "killed" / "card.json").exists()
    with pytest.raises(IncompleteOrganismError, match="did not finish"):
        cli.report._is_organism(tmp_path / "killed")
    done = train_organism(
        tmp_path / "done", config=TrainConfig.from_dict({**config.to_dict(), "measure": False})
    )
    assert cli.report._is_organism(done)
    assert sorted(p.name for p in done.iterdir() if p.name.startswith(".")) == []


# 5. The prompt-set hash is unambiguous.


def _cache_two(model, out: Path, prompts: list[str]):
    return interp.cache_activations(
        model, prompts, out, ["ln_final"], ["last"], batch_size=2, progress=False
    )


def test_prompt_set_hash_tells_two_prompts_from_one_with_a_nul(tiny_model_dirs, tmp_path):
    two, one = ["a", "b"], ["a\x00b"]
    assert store_mod.prompt_set_hash(two) != store_mod.prompt_set_hash(one)
    assert store_mod.prompt_set_hash(["ab", ""]) != store_mod.prompt_set_hash(["a", "b"])
    model = interp.load_model(tiny_model_dirs["llama"])
    _cache_two(model, tmp_path / "s", two)
    assert len(interp.ActivationStore.open(tmp_path / "s", prompts=two)) == 2
    with pytest.raises(StoreMismatchError, match="other prompts"):
        interp.ActivationStore.open(tmp_path / "s", prompts=one)
    with pytest.raises(StoreMismatchError, match="another job"):
        _cache_two(model, tmp_path / "s", one)  # never resumed as the two-row store


def test_a_store_hashed_the_old_way_still_opens_and_is_not_ambiguous(tiny_model_dirs, tmp_path):
    model = interp.load_model(tiny_model_dirs["llama"])
    _cache_two(model, tmp_path / "s", ["a", "b"])
    path = tmp_path / "s" / "meta.json"
    meta = json.loads(path.read_text())
    # As written before the change: NUL-joined texts, no hash version, no checksum.
    meta["prompt_set_hash"] = hashlib.sha256(b"a\x00b").hexdigest()
    del meta["prompt_set_hash_version"], meta["checksum"]
    path.write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
    assert len(interp.ActivationStore.open(tmp_path / "s", prompts=["a", "b"])) == 2
    with pytest.raises(StoreMismatchError, match="other prompts"):
        interp.ActivationStore.open(tmp_path / "s", prompts=["a\x00b"])
    _cache_two(model, tmp_path / "s", ["a", "b"])  # resuming the same job still works
    with pytest.raises(StoreMismatchError, match="another job"):
        _cache_two(model, tmp_path / "s", ["a\x00b"])


# 6. Model-, prompt- and generation-derived strings are escaped in report.html.


def test_hostile_strings_never_reach_report_html_raw(tiny_model_dirs, tmp_path, monkeypatch):
    from dataclasses import replace

    from interp.evaluation import rates

    name, prompt, answer = (f"<img src=x onerror=alert({i})>" for i in (1, 2, 3))
    hostile_model = tmp_path / name
    shutil.copytree(tiny_model_dirs["llama"], hostile_model)
    sets = {kind: [f"{prompt} {kind} {i}" for i in range(2)] for kind in cli.report.KINDS}
    monkeypatch.setattr(cli.report, "report_prompt_sets", lambda *args, **kwargs: sets)
    real_generate = rates.generate

    def hostile_generate(*args, **kwargs):
        out = real_generate(*args, **kwargs)
        return replace(out, texts=tuple(f"{answer} {t}" for t in out.texts))

    monkeypatch.setattr(rates, "generate", hostile_generate)
    out = tmp_path / "report"
    argv = ["report", "--model", str(hostile_model), "--out", str(out), "--sections", "baseline"]
    assert cli.main([*argv, "--n-per-kind", "2", "--max-new-tokens", "2"]) == 0
    page = (out / "report.html").read_text()
    assert "<img" not in page
    for i, where in ((1, "model name"), (2, "prompts"), (3, "generations")):
        assert f"&lt;img src=x onerror=alert({i})&gt;" in page, where


# 7. Integers, coefficients and rates are checked where they are given, naming value and range.


@pytest.fixture(scope="module")
def llama(tiny_model_dirs):
    return interp.load_model(tiny_model_dirs["llama"])


def test_generation_and_collection_sizes_are_checked(llama):
    prompts = ["How do I bake bread?"]
    with pytest.raises(ParameterError, match=r"max_new_tokens must be an integer >= 1, got 0"):
        interp.generate(llama, prompts, max_new_tokens=0)
    for bad in (0, -4, 2.5, True):
        with pytest.raises(ParameterError, match=rf"batch_size must be an integer >= 1, got {bad}"):
            interp.generate(llama, prompts, batch_size=bad)
    with pytest.raises(ParameterError, match="batch_size .* got 0"):
        interp.collect_activations(llama, prompts, batch_size=0, progress=False)
    with pytest.raises(ParameterError, match="shard_size .* got -1"):
        interp.cache_activations(llama, prompts, "unused", shard_size=-1, progress=False)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda d: CAST(d, coeff=float("nan")), r"coeff must be a finite number, got nan"),
        (lambda d: CAST(d, batch_size=0), r"batch_size must be an integer >= 1, got 0"),
        (lambda d: CAST(d, n_thresholds=0), r"n_thresholds must be an integer >= 1, got 0"),
        (lambda d: CAST(d, steer_layer=-1), r"steer_layer must be an integer >= 0, got -1"),
        (lambda d: ActAdd(d, 1.0, layer=-2), r"layer must be an integer >= 0, got -2"),
        (lambda d: SoftPrompt(epochs=0), r"epochs must be an integer >= 1, got 0"),
        (lambda d: SoftPrompt(batch_size=-1), r"batch_size must be an integer >= 1, got -1"),
        (lambda d: SoftPrompt(lr=float("nan")), r"lr must be a number > 0, got nan"),
        (lambda d: SoftPrompt(lr=0.0), r"lr must be a number > 0, got 0.0"),
        (lambda d: SoftPrompt(grad_clip=0), r"grad_clip must be .* \(0, inf\), got 0"),
        (lambda d: SoftPrompt(loss_weights=(1.0, 1.0)), r"loss_weights must be 3 numbers"),
        (lambda d: SoftPrompt(loss_weights=(1, -1, 1)), r"loss_weights\[1\] must be .* >= 0"),
        (lambda d: SafeInfer(n_heads=0), r"n_heads must be an integer >= 1, got 0"),
        (lambda d: SafeInfer(n_shots=-1), r"n_shots must be an integer >= 1, got -1"),
        (lambda d: SafeInfer(n_prompts=0), r"n_prompts must be an integer >= 1, got 0"),
        (lambda d: SafeInfer(n_search_prompts=0), r"n_search_prompts must be .* >= 1, got 0"),
        (lambda d: AnchorSpace(n_components=0), r"n_components must be an integer >= 1"),
        (lambda d: AnchorSpace(C=0.0), r"C must be a finite number in \(0, inf\), got 0.0"),
        (lambda d: LinearProbe(C=-1.0), r"C must be a finite number in \(0, inf\), got -1.0"),
        (lambda d: LinearProbe(max_iter=0), r"max_iter must be an integer >= 1, got 0"),
        (lambda d: SelectionConfig(max_kl=float("nan")), r"max_kl must be a finite number"),
    ],
)
def test_method_hyperparameters_are_checked_at_construction(build, message):
    direction = Direction(torch.ones(8), Site("resid_pre", 1), position="last")
    with pytest.raises(ParameterError, match=message):
        build(direction)


def test_good_hyperparameters_still_construct():
    direction = Direction(torch.ones(8), Site("resid_pre", 1), position="last")
    for bad in (1.5, float("nan")):
        with pytest.raises(CastError, match=r"val_fraction must be in \(0, 1\), got"):
            CAST(direction, val_fraction=bad)
    CAST(direction, coeff=-2.0, batch_size=1, n_thresholds=1, val_fraction=0.25, steer_layer=0)
    SoftPrompt(epochs=1, batch_size=1, lr=1e-3, grad_clip=0.5, loss_weights=(1.0, 0.0, 2.0))
    SafeInfer(n_heads=1, n_shots=1, n_prompts=1, n_search_prompts=1)
    AnchorSpace(n_components=1, C=0.1, max_iter=1)
    SelectionConfig(max_kl=0.0)
