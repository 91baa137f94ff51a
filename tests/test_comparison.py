"""The comparison: every method on the same prompts, rates with intervals, KL / CE and cost."""

import json
import math

import pytest
import torch

import interp
from interp import organism
from interp.comparison import (
    COMPARISON_KINDS,
    TABLE_HEADER,
    ComparisonError,
    Method,
    baseline_method,
    compare,
    comparison_figure,
    decoder_method,
    prompt_method,
    safeswitch_method,
    soft_prompt_method,
)
from interp.directions import diff_in_means
from interp.evaluation import bootstrap_interval, refusal_rates
from interp.generation import generate
from interp.organism import CHECKPOINT_DIR as ORGANISM
from interp.report import Report
from interp.report.comparison import add_comparison


@pytest.fixture(scope="module")
def model():
    # Module fixtures run before the autouse one-thread fixture: set it here too, or the
    # timed runs below compete for cores (and take ten times as long).
    torch.set_num_threads(1)
    return interp.load_model(ORGANISM)


@pytest.fixture(scope="module")
def sets():
    """A few held-out prompts of every kind (the first 8 of the organism's test split)."""
    return {k: list(organism.prompts("test", k).texts[:8]) for k in COMPARISON_KINDS}


class Plain:
    """A decoder that is the identity: plain greedy decoding, as SafeInfer or CAST plug in."""

    def generate(self, model, prompts, *, max_new_tokens=48, batch_size=32):
        return generate(model, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size)


@pytest.fixture(scope="module")
def result(model, sets):
    methods = [
        baseline_method(),
        prompt_method("warning"),
        decoder_method("identity", "defence", Plain()),
    ]
    return compare(model, methods, sets, max_new_tokens=12, n_boot=500, repeats=2)


def test_none_rates_equal_refusal_rates_of_plain_generation(model, sets, result):
    rates, _ = refusal_rates(model, sets, conditions=["none", "warning"], max_new_tokens=12)
    for name in ("none", "warning"):
        for kind in COMPARISON_KINDS:
            cell = result[name].rates[kind]
            assert cell.n == len(sets[kind])
            assert cell.rate == pytest.approx(rates[name][kind], abs=1e-4)
            assert cell.k == round(cell.rate * cell.n)
    harmful = [result["none"].rates[k] for k in ("harmful", "jailbreak")]
    assert result["none"].safety.k == sum(c.k for c in harmful)
    assert result["none"].over_refusal == result["none"].rates["borderline"]
    # The warning prompt makes the organism refuse more: the rows differ, so the test can fail.
    assert result["warning"].safety.rate > result["none"].safety.rate


def test_identity_has_zero_kl_and_cost_near_one(result):
    none = result["none"]
    assert none.kl_harmless == 0.0
    assert none.ce_harmless == pytest.approx(result.reference_ce)
    assert result["warning"].kl_harmless > 0.0
    identity = result["identity"]
    assert identity.responses == none.responses
    assert identity.kl_harmless is None and "no teacher-forced" in identity.not_applicable
    for m in (none, identity):
        assert m.cost == pytest.approx(m.seconds / result.reference_seconds)
        assert 0.4 < m.cost < 2.5, m.cost  # the same decoding as the reference, timed again


def test_intervals_contain_the_rate_and_shrink_with_n():
    small = bootstrap_interval([1, 0, 0, 0] * 5, seed=0)
    large = bootstrap_interval([1, 0, 0, 0] * 100, seed=0)
    assert small[0] <= 0.25 <= small[1] and large[0] <= 0.25 <= large[1]
    assert large[1] - large[0] < 0.5 * (small[1] - small[0])
    assert bootstrap_interval([1, 0, 1] * 7, seed=3) == bootstrap_interval([1, 0, 1] * 7, seed=3)
    assert bootstrap_interval([1, 0, 1] * 7, seed=3) != bootstrap_interval([1, 0, 1] * 7, seed=4)
    assert bootstrap_interval([0, 0, 0]) == (0.0, 0.0)


def test_cells_hold_their_interval_and_metrics_are_json(result):
    for m in result.methods:
        for cell in (*m.rates.values(), m.safety, m.over_refusal):
            assert cell.low <= cell.rate <= cell.high
    block = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert block["order"] == ["none", "warning", "identity"]
    assert block["methods"]["identity"]["kl_harmless"] is None
    rows = result.table()
    assert [len(r) for r in rows] == [len(TABLE_HEADER)] * 3
    assert rows[2][TABLE_HEADER.index("KL harmless")] == "n/a"


def test_bad_input_raises_a_comparison_error(model, sets):
    with pytest.raises(ComparisonError, match="no methods"):
        compare(model, [], sets)
    with pytest.raises(ComparisonError, match="repeated: \\['none'\\]"):
        compare(model, [baseline_method(), baseline_method()], sets)
    partial = {k: v for k, v in sets.items() if k != "jailbreak"}
    with pytest.raises(ComparisonError, match="missing \\['jailbreak'\\]"):
        compare(model, [baseline_method()], partial)
    with pytest.raises(ComparisonError, match="unknown family"):
        Method("x", "magic", lambda m, p, n: None)  # type: ignore[arg-type]
    with pytest.raises(ComparisonError, match="has no generate"):
        decoder_method("x", "defence", object())


def test_the_figure_has_one_marker_per_method_with_error_bars(result):
    fig = comparison_figure(result)
    assert [t.text[0] for t in fig.data] == list(result.names)
    warning = result["warning"]
    trace = fig.data[1]
    assert trace.y[0] == warning.safety.rate
    assert trace.error_y.arrayminus[0] == pytest.approx(warning.safety.rate - warning.safety.low)


def test_the_section_on_the_organism_has_every_row_and_says_what_is_missing(model, sets):
    train = {k: list(organism.prompts("train", k).texts[:24]) for k in ("harmful", "harmless")}
    # The candidate the refusal-direction section selects on the organism (layer 1, eoi-4).
    chosen = diff_in_means(model, train["harmful"], train["harmless"]).direction(1, "eoi-4")
    report = Report(title="t")
    # What the refusal-direction section leaves for the comparison; SafeSwitch and DRO did not run.
    report.fitted["refusal_direction"] = {
        "direction": chosen, "actadd_coeff": 1.0, "actadd_layer": chosen.layer,
    }  # fmt: skip
    report.metrics["safeswitch"] = {"skipped": "no refusals to learn from"}
    block = add_comparison(
        report, model, interp.model_info(model), sets, train=train, max_new_tokens=8
    )
    expected = ["none", "default", "short", "mistral", "helpful", "warning", "ablation", "actadd"]
    expected += ["safeinfer_sa", "safeinfer_sgds", "safeinfer", "cast"]
    assert block["order"] == expected
    assert set(block["not_fitted"]) == {"safeswitch", "dro"}
    # CAST steers only what its condition flags: far less harmless refusal than ActAdd.
    rates = {m: block["methods"][m]["rates"]["harmless"]["rate"] for m in ("cast", "actadd")}
    assert rates["cast"] <= 0.1 < rates["actadd"]
    # Guided decoding has no single next-token distribution: n/a, with the reason.
    assert block["methods"]["safeinfer_sgds"]["kl_harmless"] is None
    assert "guided decoding" in block["methods"]["safeinfer_sgds"]["not_applicable"]
    assert "skipped: no refusals" in block["not_fitted"]["safeswitch"]
    heading, body = report.sections[-1]
    assert heading == "Comparison"
    assert body.count("<tr>") == 1 + len(expected)
    assert "Methods not compared" in body and "dro" in body and "plotly" in body
    assert report.metrics["comparison"] is block
    # Ablating the refusal direction lowers safety; ActAdd of it raises refusal of harmless.
    methods = block["methods"]
    assert methods["ablation"]["safety"]["rate"] < methods["none"]["safety"]["rate"]
    assert methods["actadd"]["kl_harmless"] > 0 and math.isfinite(methods["actadd"]["cost"])


def test_the_cli_runs_the_section_last_and_records_why_it_could_not(model, sets):
    from argparse import Namespace

    from interp import cli

    assert cli.SECTIONS[-1] == "comparison"
    report = Report(title="t")
    no_jailbreak = {k: v for k, v in sets.items() if k != "jailbreak"}  # as for a real model
    args = Namespace(max_new_tokens=4, data_dir=None)
    cli.report._run_section("comparison", report, model, None, no_jailbreak, {}, {}, args)
    assert "missing ['jailbreak']" in report.metrics["comparison"]["skipped"]
    assert "Skipped" in report.sections[-1][1]


def test_the_fitted_method_adapters_reduce_to_their_prompt_when_they_do_nothing(model, sets):
    """An untrained soft prompt is its human prompt; a SafeSwitch that never fires is its
    system prompt: same answers, same KL and CE. One that always fires differs."""
    import dataclasses

    from interp.dro import SoftPrompt
    from interp.safeswitch import fit_safeswitch

    train = {k: list(organism.prompts("train", k).texts[:8]) for k in COMPARISON_KINDS}
    switch = fit_safeswitch(model, train, n_per_kind=8, max_new_tokens=8, min_per_class=1)
    never = dataclasses.replace(switch, stage1_threshold=1.0, stage2_threshold=1.0)
    always = dataclasses.replace(switch, stage1_threshold=0.0, stage2_threshold=0.0)
    methods = [
        prompt_method("short"),
        soft_prompt_method(SoftPrompt("short").initialize(model), name="soft"),
        prompt_method(switch.system),
        safeswitch_method(never, name="never"),
        safeswitch_method(always, name="always"),
    ]
    got = compare(model, methods, sets, max_new_tokens=8, n_boot=100)
    assert got["soft"].responses == got["short"].responses
    assert got["soft"].kl_harmless == pytest.approx(got["short"].kl_harmless, abs=1e-6)
    assert got["soft"].ce_harmless is None and "CE not computed" in got["soft"].not_applicable
    assert got["never"].responses == got[switch.system].responses
    assert got["never"].kl_harmless == pytest.approx(got[switch.system].kl_harmless, abs=1e-9)
    assert got["never"].ce_harmless == pytest.approx(got[switch.system].ce_harmless, abs=1e-9)
    assert got["always"].kl_harmless > got["never"].kl_harmless


def test_actadd_of_a_swept_direction_is_added_where_it_was_taken(model, sets):
    """A `resid_mid` direction (a site sweep) is steered at `resid_mid`, as the Refusal
    direction section's ActAdd condition does; a `resid_pre` one at its block input."""
    from interp.comparison import actadd_method
    from interp.interventions import ActAdd, apply
    from interp.refusal_direction import SiteAdd

    harmful = organism.prompts("train", "harmful").texts[:16]
    harmless = organism.prompts("train", "harmless").texts[:16]
    mid = diff_in_means(model, harmful, harmless, stream="resid_mid").direction(1, "eoi-1")
    pre = diff_in_means(model, harmful, harmless).direction(1, "eoi-1")
    prompts = sets["harmless"][:4]
    for direction, reference in ((mid, SiteAdd(mid, 4.0)), (pre, ActAdd(pre, 4.0, 1))):
        got = actadd_method(direction, 4.0).generate(model, prompts, 8)
        with apply(model, reference):
            want = generate(model, prompts, max_new_tokens=8)
        assert got.tokens == want.tokens
    plain = generate(model, prompts, max_new_tokens=8)
    with apply(model, ActAdd(mid, 4.0, 1)):  # the block input of the same layer differs
        elsewhere = generate(model, prompts, max_new_tokens=8)
    assert actadd_method(mid, 4.0).generate(model, prompts, 8).tokens != elsewhere.tokens
    assert elsewhere.tokens != plain.tokens


def test_inside_a_report_s_reuse_every_answer_is_still_decoded_and_timed(model, sets):
    small = {k: v[:4] for k, v in sets.items()}
    with interp.reuse_generations() as reuse:
        generate(model, small["harmless"], max_new_tokens=4)  # kept, like the baseline's
        before = reuse.to_dict()
        got = compare(model, [baseline_method()], small, max_new_tokens=4, n_boot=50)
        # The reference runs twice and `none` once, all plain calls: none was served from the
        # kept answers, so their wall times are decoding times.
        assert reuse.to_dict() == before == {"reused_prompts": 0, "decoded_prompts": 4}
        assert 0.2 < got["none"].cost < 5.0, got["none"].cost
        # The kept answers stay for calls after the comparison.
        generate(model, small["harmless"], max_new_tokens=4)
    assert reuse.to_dict() == {"reused_prompts": 4, "decoded_prompts": 4}
