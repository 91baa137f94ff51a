"""The `interp` command line on locally built models (the real-model code path) and the organism."""

import json
from pathlib import Path

import pytest

from interp import cli
from interp.data import PromptSet
from interp.organism import CHECKPOINT_DIR as ORGANISM
from interp.store import ActivationStore

REPO = Path(__file__).resolve().parents[1]


def test_report_on_a_local_model_skips_what_it_cannot_measure(
    tiny_model_dirs, shared_data_dir, tmp_path
):
    if shared_data_dir is None:
        pytest.skip("the public datasets (../shared/data) are not beside the checkout")
    out = tmp_path / "report"
    argv = ["report", "--model", str(tiny_model_dirs["qwen2"]), "--out", str(out)]
    argv += ["--data-dir", str(shared_data_dir), "--n-per-kind", "6", "--max-new-tokens", "4"]
    argv += ["--sections", "baseline", "refusal_direction"]
    assert cli.main(argv) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["model"]["n_layers"] == 2
    assert set(metrics["baseline"]) == {"none", "default", "short", "mistral", "helpful", "warning"}
    for rates in metrics["baseline"].values():
        assert set(rates) == {"harmful", "harmless", "borderline", "jailbreak"}
        assert all(0.0 <= r <= 1.0 for r in rates.values())
    assert metrics["timings"]["baseline"] > 0
    # Qwen2's template inserts its own system prompt: the condition is named as the model saw it.
    assert metrics["baseline_conditions"]["none"] == "template default system prompt"
    assert metrics["template_default_system_prompt"].startswith("You are Qwen")
    # A random model never refuses: the section says so instead of failing the report.
    assert "refused none" in metrics["refusal_direction"]["skipped"]
    page = (out / "report.html").read_text()
    assert "Skipped:" in page
    assert "this model's chat template inserts its own" in page and "You are Qwen" in page
    assert '<script src="http' not in page  # self-contained: plotly is inlined


def test_unknown_section_is_refused(tmp_path):
    with pytest.raises(SystemExit, match="unknown report section"):
        cli.main(["report", "--out", str(tmp_path), "--sections", "probez"])


def test_cache_command_writes_a_store_that_opens(tiny_model_dirs, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("Write a poem about rain.\nHow do I bake bread?\nName three rivers.\n")
    out = tmp_path / "store"
    argv = ["cache", "--model", str(tiny_model_dirs["llama"]), "--prompts", str(prompts)]
    argv += ["--out", str(out), "--sites", "resid_post", "ln_final", "--positions", "last", "eoi"]
    assert cli.main(argv) == 0
    store = ActivationStore.open(out, verify=True)
    assert len(store) == 3
    assert store.get("ln_final", "last").shape[0] == 3


def test_organism_train_passes_its_arguments_through(monkeypatch, tmp_path):
    seen = {}

    def fake_main_train(argv):
        seen["argv"] = argv
        return 0

    monkeypatch.setattr("interp.organism.main_train", fake_main_train)
    config = tmp_path / "config.json"
    argv = ["organism", "train", "--out", str(tmp_path / "o"), "--seed", "3"]
    assert cli.main([*argv, "--threads", "2", "--config", str(config)]) == 0
    assert seen["argv"] == [
        "--out",
        str(tmp_path / "o"),
        "--seed",
        "3",
        "--threads",
        "2",
        "--config",
        str(config),
    ]


def test_the_organism_is_recognised_by_its_card(tiny_model_dirs):
    assert cli.report._is_organism(ORGANISM)
    assert not cli.report._is_organism(tiny_model_dirs["llama"])
    train, val = cli.report.stage_sets(ORGANISM)
    assert set(train) == set(val) == set(cli.report.KINDS)
    assert cli.report.stage_sets(tiny_model_dirs["llama"]) == ({}, {})


def test_a_real_model_is_fitted_on_the_public_train_split(tiny_model_dirs, shared_data_dir):
    if shared_data_dir is None:
        pytest.skip("the public datasets (../shared/data) are not beside the checkout")
    train, val = cli.report.stage_sets(tiny_model_dirs["llama"], shared_data_dir, 5)
    assert set(train) == set(val) == {"harmful", "harmless", "jailbreak"}
    assert all(len(v) == 5 for v in (*train.values(), *val.values()))
    measured = cli.report.report_prompt_sets(tiny_model_dirs["llama"], 50, shared_data_dir)
    # The sets reach the sections as PromptSets, labels and kinds included.
    assert all(isinstance(v, PromptSet) and set(v.kinds) == {k} for k, v in measured.items())
    assert all(isinstance(v, PromptSet) for part in (train, val) for v in part.values())
    fitted = {t for part in (train, val) for v in part.values() for t in v.texts}
    assert not fitted & {t for v in measured.values() for t in v.texts}


def test_hostile_model_names_are_escaped_in_the_page(tiny_model_dirs, shared_data_dir, tmp_path):
    import shutil

    if shared_data_dir is None:
        pytest.skip("the public datasets (../shared/data) are not beside the checkout")
    hostile = tmp_path / "<img src=x onerror=alert(1)>"
    shutil.copytree(tiny_model_dirs["llama"], hostile)
    out = tmp_path / "report"
    argv = ["report", "--model", str(hostile), "--out", str(out), "--sections", "baseline"]
    assert cli.main([*argv, "--n-per-kind", "2", "--max-new-tokens", "2"]) == 0
    page = (out / "report.html").read_text()
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
