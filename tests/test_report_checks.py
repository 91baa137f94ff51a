"""The report checks itself: versions recorded, the organism against its card, uniform or
empty generations flagged, and arguments that would waste or lose a run refused up front."""

import json
from contextlib import contextmanager

import pytest
import torch

import interp
from interp import cli, organism
from interp.evaluation import judge_warnings, refusal_rates
from interp.organism import CHECKPOINT_DIR as ORGANISM
from interp.report import Report


@pytest.fixture
def no_model_loading(monkeypatch):
    """Fail the test if a command gets as far as loading a model."""

    def refuse(*_args, **_kwargs):
        raise AssertionError("the model was loaded before the arguments were checked")

    monkeypatch.setattr(interp, "load_model", refuse)


def _dropping_the_cache(real):
    """A `forward_session` whose steps forget the KV cache: each new token sees itself only.

    This is what TransformerLens 4.3's bridge does under transformers 5.24 (docs/UPSTREAM.md).
    """

    @contextmanager
    def session(model, hooks=(), **kwargs):
        with real(model, hooks, **kwargs) as step:

            def forgetful(ids, mask, past=None, **kw):
                return step(ids, mask[:, -ids.shape[1] :], None, **kw)

            yield forgetful

    return session


def test_library_versions_names_every_library():
    versions = interp.library_versions()
    assert set(versions) == {
        "python",
        "torch",
        "transformers",
        "transformer-lens",
        "tokenizers",
        "interp",
    }
    assert versions["interp"] == interp.__version__
    assert versions["torch"] == torch.__version__


def test_judge_warnings_flag_uniform_and_empty_conditions():
    rates = {
        "none": {"harmful": 0.8, "harmless": 0.0},
        "default": {"harmful": 0.0, "harmless": 0.0},
        "warning": {"harmful": 1.0, "harmless": 1.0},
    }
    responses = {
        "none": {"harmful": ["I'm sorry."], "harmless": ["Sure."]},
        "default": {"harmful": ["", "ok"], "harmless": ["  "]},
        "warning": {"harmful": ["No."], "harmless": ["No."]},
    }
    messages = judge_warnings(rates, responses)
    assert len(messages) == 3
    assert any("'default'" in m and "judged compliant" in m for m in messages)
    assert any("'warning'" in m and "judged a refusal" in m for m in messages)
    assert any("'default'" in m and "2 of 3 generations are empty" in m for m in messages)
    assert not any("'none'" in m for m in messages)


def test_warnings_head_the_page_and_the_metrics():
    report = Report(title="t")
    report.add("Section", "<p>body</p>")
    assert "Warnings" not in report.html()
    report.warn("every <answer> is empty")
    page = report.html()
    assert page.index("Warnings") < page.index("Section")
    assert "every &lt;answer&gt; is empty" in page
    assert report.metrics["warnings"] == ["every <answer> is empty"]


def test_out_that_is_a_file_is_refused_before_loading(tmp_path, no_model_loading):
    out = tmp_path / "report.html"
    out.write_text("an earlier report")
    with pytest.raises(SystemExit, match="is an existing file"):
        cli.main(["report", "--model", str(ORGANISM), "--out", str(out)])
    assert out.read_text() == "an earlier report"


def test_out_that_cannot_be_created_is_refused_before_loading(tmp_path, no_model_loading):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(SystemExit, match="is not writable"):
        cli.main(["report", "--model", str(ORGANISM), "--out", str(blocker / "report")])


@pytest.mark.parametrize("flag", ["--max-new-tokens", "--n-per-kind"])
@pytest.mark.parametrize("value", ["0", "-3", "many"])
def test_counts_below_one_are_refused(flag, value, capsys, no_model_loading, tmp_path):
    with pytest.raises(SystemExit) as exc:
        cli.main(["report", "--model", str(ORGANISM), "--out", str(tmp_path), flag, value])
    assert exc.value.code == 2  # argparse's usage error
    err = capsys.readouterr().err
    assert flag in err and ("at least 1" in err or "not an integer" in err)


def test_versions_command_prints_them(capsys):
    assert cli.main(["versions"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert f"interp {interp.__version__}" in lines
    assert any(line.startswith("transformers ") for line in lines)


@pytest.fixture(scope="module")
def organism_bridge():
    return interp.load_model(ORGANISM)


@pytest.fixture(scope="module")
def card() -> dict:
    return json.loads((ORGANISM / "card.json").read_text())


def _test_split() -> dict[str, list[str]]:
    return {kind: list(organism.prompts("test", kind).texts) for kind in cli.report.KINDS}


def test_the_real_organism_matches_its_card(organism_bridge, card):
    rates, _ = refusal_rates(organism_bridge, _test_split(), conditions=["none", "default"])
    assert organism.card_mismatches(rates, card) == []
    # The comparison is not vacuous: both conditions and every kind were compared.
    assert rates["none"]["harmful"] == pytest.approx(
        card["behaviour"]["rates"]["harmful"]["none"]["refusal_dro"], abs=0.1
    )


def test_card_mismatches_name_each_cell(card):
    rates = {"none": {"harmful": 0.02, "harmless": 0.0}}
    assert organism.card_mismatches(rates, card) == ["harmful / none: measured 0.020, card 0.792"]


def test_a_broken_decoder_makes_the_report_fail(monkeypatch, tmp_path, capsys):
    import interp.generation

    monkeypatch.setattr(
        interp.generation, "forward_session", _dropping_the_cache(interp.generation.forward_session)
    )
    out = tmp_path / "report"
    argv = ["report", "--model", str(ORGANISM), "--out", str(out), "--sections", "baseline"]
    assert cli.main(argv) == cli.report.EXIT_BEHAVIOUR_MISMATCH
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["organism_check"]["status"] == "failed"
    assert any("harmful / none" in m for m in metrics["organism_check"]["mismatches"])
    assert any("does not behave as its card says" in w for w in metrics["warnings"])
    assert "Warnings: these numbers may be wrong" in (out / "report.html").read_text()
    assert "Likely cause" in capsys.readouterr().err
    assert set(metrics["run"]["versions"]) >= {"python", "torch", "transformers", "interp"}


def test_a_run_killed_in_a_later_section_keeps_what_it_measured(monkeypatch, tmp_path):
    # The probes section dies (as a process killed for memory would, mid-run): the files
    # written after the baseline stay, flagged as incomplete, naming what did not run.
    def killed(*_args, **_kwargs):
        raise KeyboardInterrupt("killed in the probes section")

    monkeypatch.setattr("interp.report.probes.add_probes", killed)
    out = tmp_path / "report"
    argv = ["report", "--model", str(ORGANISM), "--out", str(out), "--quick",
            "--sections", "baseline", "probes"]  # fmt: skip
    with pytest.raises(KeyboardInterrupt):
        cli.main(argv)
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["baseline"]) >= {"none", "default"} and "probes" not in metrics
    assert metrics["run"]["sections_left"] == ["probes"]
    assert any("before the sections probes had run" in w for w in metrics["warnings"])
    page = (out / "report.html").read_text()
    assert "Baseline" in page and "incomplete report" in page
