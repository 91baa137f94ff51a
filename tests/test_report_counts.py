"""Counts and intervals behind every rate, the rendered prompts, the budget (issue #20, #14).

One `interp report --quick` on the organism (baseline, probes, SafeSwitch, DRO) checks that
every section's rate tables show k/n with a bootstrap interval and store the counts in
`metrics.json`, that the page shows the rendered prompt of each condition and the settings
used, and that the SafeSwitch prober is fitted once for the two sections that use it. The
cost model and the size choice are pure functions, tested directly.
"""

import html
import json
import re

import pytest

import interp
from interp import cli
from interp.errors import BudgetError
from interp.evaluation import bootstrap_interval
from interp.organism import CHECKPOINT_DIR as ORGANISM
from interp.report import QUICK, Calibration, RateCount, choose_sizes, estimate_seconds
from interp.report.budget import remaining_seconds, section_units
from interp.safeswitch import SafeSwitchProber

#: A table cell: rate (k/n) [low, high].
CELL = re.compile(r"(\d\.\d{3}) \((\d+)/(\d+)\) \[(\d\.\d{3}), (\d\.\d{3})\]")
SECTIONS = ["baseline", "probes", "safeswitch", "dro"]


@pytest.fixture(scope="module")
def quick_report(tmp_path_factory):
    """`interp report --quick` on the organism, counting the SafeSwitch prober's fits."""
    out = tmp_path_factory.mktemp("quick")
    fits = []
    original = SafeSwitchProber.fit

    def counted(self, *args, **kwargs):
        fits.append(len(args[0]))
        return original(self, *args, **kwargs)

    mp = pytest.MonkeyPatch()
    mp.setattr(SafeSwitchProber, "fit", counted)
    try:
        argv = ["report", "--model", str(ORGANISM), "--out", str(out), "--quick"]
        assert cli.main([*argv, "--sections", *SECTIONS]) == 0
    finally:
        mp.undo()
    metrics = json.loads((out / "metrics.json").read_text())
    return metrics, (out / "report.html").read_text(), fits


def _section(page, heading):
    start = page.index(f"<h2>{heading}")
    end = page.find("<section>", start)
    return page[start : end if end > 0 else len(page)]


def test_rate_count_cell_and_json():
    flags = [1] * 22 + [0] * 8
    count = RateCount.from_flags(flags, seed=0)
    low, high = bootstrap_interval(flags, n_boot=2000, seed=0)
    assert (count.k, count.n, count.low, count.high) == (22, 30, low, high)
    assert count.cell() == f"0.733 (22/30) [{low:.3f}, {high:.3f}]"
    assert count.to_dict() == {"rate": 0.7333, "k": 22, "n": 30,
                               "interval": [round(low, 4), round(high, 4)]}  # fmt: skip
    assert count.complement().k == 8 and count.complement().to_dict()["rate"] == 0.2667
    assert RateCount.from_flags([]).cell() == "n/a (0/0)"


@pytest.mark.parametrize(
    ("heading", "n_cells"),
    [("Baseline", 6 * 4), ("Probes and maps", 4 * 4), ("SafeSwitch", 4 * 4 + 4), ("DRO", 4 * 3)],
)
def test_every_section_shows_counts_and_intervals(quick_report, heading, n_cells):
    _, page, _ = quick_report
    cells = CELL.findall(_section(page, heading))
    assert len(cells) >= n_cells
    for rate, k, n, low, high in cells:
        assert float(rate) == pytest.approx(int(k) / int(n), abs=5e-4)
        assert float(low) <= float(rate) + 5e-4 and float(rate) <= float(high) + 5e-4


def test_metrics_store_the_counts_beside_the_rates(quick_report):
    metrics, _, _ = quick_report
    n = metrics["run"]["n_measured"]
    for cond, per_kind in metrics["baseline"].items():
        for kind, rate in per_kind.items():
            block = metrics["baseline_counts"][cond][kind]
            assert block["n"] == n[kind] and block["rate"] == rate
            assert block["k"] == round(rate * block["n"])
            assert block["interval"][0] <= rate <= block["interval"][1]
    switch = metrics["safeswitch"]
    for method, per_kind in switch["compliance"].items():
        for kind, rate in per_kind.items():
            assert switch["compliance_counts"][method][kind]["rate"] == pytest.approx(rate)
    assert {k: c["n"] for k, c in switch["flag_counts"].items()} == n
    for kind, per_cond in metrics["dro"]["refusal"].items():
        for cond, rate in per_cond.items():
            assert metrics["dro"]["refusal_counts"][cond][kind]["rate"] == pytest.approx(rate)
    refusal = metrics["probes"]["refusal_counts"]
    assert set(refusal) == {"none", "default", "short", "mistral"}
    assert all(refusal[c][k]["n"] == n[k] for c in refusal for k in n)
    assert metrics["intervals"]["n_boot"] == 2000


def test_the_rendered_prompt_of_each_condition_is_shown(quick_report):
    metrics, page, _ = quick_report
    model = interp.load_model(ORGANISM)
    first = cli.report.report_prompt_sets(ORGANISM, metrics["run"]["n_per_kind"], None)["harmful"]
    section = _section(page, "Baseline")
    for condition in metrics["baseline"]:
        system = None if condition == "none" else condition
        assert html.escape(interp.render(model, first.texts[0], system)) in section
    assert section.count("<details class='rendered'>") == len(metrics["baseline"])


def test_the_prober_is_fitted_once_and_shared(quick_report):
    metrics, page, fits = quick_report
    assert len(fits) == 1
    prober = metrics["safeswitch_prober"]
    # It is trained on the organism's train split (64 sampled per kind), scored on the test sets.
    assert prober["n_train"]["harmful queries"] == 128
    assert prober["n_eval"] == metrics["run"]["n_measured"]
    assert "fitted once in this report" in _section(page, "Probes and maps")
    # Its accuracies carry their counts: k correct of every scored prompt, shown as cells.
    n_eval = sum(prober["n_eval"].values())
    for stage in (1, 2):
        block = prober["accuracy_counts"][f"stage{stage}"]
        assert block["n"] == n_eval
        assert block["k"] / block["n"] == pytest.approx(prober[f"stage{stage}_accuracy"], abs=1e-4)
        assert f"({block['k']}/{n_eval})" in _section(page, "Probes and maps")


def test_figures_name_their_refusal_direction(quick_report):
    _, page, _ = quick_report
    assert _section(page, "Probes and maps").count("Refusal direction used:") == 2
    assert _section(page, "DRO").count("Refusal direction used:") == 2


def test_settings_used_and_the_estimate_are_recorded(quick_report):
    metrics, page, _ = quick_report
    run = metrics["run"]
    assert (run["n_per_kind"], run["max_new_tokens"]) == (24, 16) and run["preset"] == "quick"
    assert run["sections"] == SECTIONS and run["seed"] == 0 and run["threads"] == 1
    assert run["estimate_s"] > 0 and run["wall_s"] > 0
    assert run["calibration"]["n_prompts"] == 4 * cli.report.CALIBRATION_PER_KIND
    # After each section the remaining time is estimated again; nothing is left at the end.
    assert [p["after"] for p in run["progress"]] == SECTIONS
    assert run["progress"][-1]["remaining_estimate_s"] == 0
    settings = _section(page, "Settings used")
    assert (
        f"<td>{run['estimate_s']:.1f}</td>" in settings
        and f"<td>{run['wall_s']:.1f}</td>" in settings
    )
    assert page.index("<h2>Settings used") < page.index("<h2>Baseline")


def test_section_units_follow_the_documented_cost_model():
    from interp.report import budget

    assert section_units("baseline", 100, 32) == 6 * 100 * 32
    organism = budget.ORGANISM_SHAPE
    per_layer = budget.PROBES_PER_PROMPT_LAYER
    assert section_units("probes", 100, 32) == 4 * 100 * 16 + per_layer * 100 * 6
    assert section_units("probes", 100, 8) == 4 * 100 * 8 + per_layer * 100 * 6
    assert section_units("safeswitch", 0, 32) == budget.SAFESWITCH_FIXED
    assert section_units("dro", 10, 99) == 300 + budget.DRO_FIXED
    # The refusal direction's scoring grows with the candidates: layers below the cut x eoi
    # positions (the organism: 4 x 5; SmolLM2-135M: 24 x 6).
    smollm2 = budget.ModelShape(30, 6)
    assert (organism.n_candidates, smollm2.n_candidates) == (20, 144)
    grow = section_units("refusal_direction", 96, 16, smollm2) - section_units(
        "refusal_direction", 96, 16, organism
    )
    assert grow == budget.RD_PER_PROMPT_CANDIDATE * 96 * (144 - 20) > 0
    assert section_units("probes", 96, 16, smollm2) > section_units("probes", 96, 16)
    with pytest.raises(BudgetError, match="no cost model for section 'probez'"):
        section_units("probez", 1, 1)
    # Kinds contribute at most n_per_kind each.
    assert estimate_seconds(["baseline"], {"a": 5, "b": 50}, 10, 4, 1.0) == 6 * 15 * 4


def test_remaining_time_is_rescaled_by_the_sections_done():
    rate = 1e-3
    # The baseline ran at the calibrated speed: the rest is the plain estimate.
    on_time = section_units("baseline", 50, 16) * rate
    plain = (section_units("probes", 50, 16) + section_units("dro", 50, 16)) * rate
    assert remaining_seconds({"baseline": on_time}, ["probes", "dro"], 50, 16, rate) == (
        pytest.approx(plain)
    )
    # Three times slower than calibrated: three times the estimate.
    slow = remaining_seconds({"baseline": 3 * on_time}, ["probes", "dro"], 50, 16, rate)
    assert slow == pytest.approx(3 * plain)
    assert remaining_seconds({}, ["dro"], 50, 16, rate) == pytest.approx(
        section_units("dro", 50, 16) * rate
    )


def test_choose_sizes_cuts_prompts_then_answers():
    available = {"harmful": 48, "harmless": 80}
    sections = ["baseline", "probes"]
    rate = 1e-3

    def cost(n, t):
        return estimate_seconds(sections, available, n, t, rate)

    # A generous budget keeps everything; the cap is the larger set.
    big = choose_sizes(1e6, sections, available, rate, max_n_per_kind=200, max_new_tokens=32)
    assert (big.n_per_kind, big.max_new_tokens, big.fits) == (80, 32, True)
    # A tighter one: the largest n whose estimate fits, at the full answer length.
    budget = cost(40, 32) + 1e-9
    mid = choose_sizes(budget, sections, available, rate, max_n_per_kind=200, max_new_tokens=32)
    assert (mid.n_per_kind, mid.max_new_tokens) == (40, 32) and cost(41, 32) > budget
    # Below the floor of prompts per kind, answers get shorter first.
    small = choose_sizes(
        cost(24, 16), sections, available, rate, max_n_per_kind=200, max_new_tokens=32
    )
    assert (small.n_per_kind, small.max_new_tokens, small.fits) == (24, 16, True)
    # Nothing fits: the floor of prompts per kind with the shortest answers, flagged (fewer
    # prompts would not fit either, and would leave too few examples to fit anything).
    none = choose_sizes(1e-6, sections, available, rate, max_n_per_kind=200, max_new_tokens=32)
    assert (none.n_per_kind, none.max_new_tokens, none.fits) == (24, 8, False)
    # Only below the floor does it fit: it goes there.
    tiny = choose_sizes(
        cost(5, 8), sections, available, rate, max_n_per_kind=200, max_new_tokens=32
    )
    assert (tiny.n_per_kind, tiny.max_new_tokens, tiny.fits) == (5, 8, True)
    with pytest.raises(BudgetError, match="must be positive"):
        choose_sizes(0, sections, available, rate, max_n_per_kind=9, max_new_tokens=9)


def test_max_minutes_chooses_the_sizes_from_the_calibration(monkeypatch, tmp_path):
    # A fixed calibration (4 ms per decoded prompt-token) makes the choice predictable.
    monkeypatch.setattr(
        "interp.report.calibrate", lambda *a, **k: Calibration(32, 16, 32 * 16 * 4e-3)
    )
    out = tmp_path / "r"
    argv = ["report", "--model", str(ORGANISM), "--out", str(out), "--sections", "baseline"]
    assert cli.main([*argv, "--max-minutes", "0.5", "--max-new-tokens", "8"]) == 0
    run = json.loads((out / "metrics.json").read_text())["run"]
    budget = run["budget"]
    available = {"harmful": 48, "harmless": 80, "borderline": 32, "jailbreak": 28}
    n = run["n_per_kind"]
    assert budget["fits"] and 24 <= n < 80 and run["max_new_tokens"] == 8
    assert estimate_seconds(["baseline"], available, n, 8, 4e-3) <= budget["sections_s"]
    assert estimate_seconds(["baseline"], available, n + 1, 8, 4e-3) > budget["sections_s"]
    assert run["n_measured"] == {k: min(n, v) for k, v in available.items()}
    assert QUICK == {"n_per_kind": 24, "max_new_tokens": 16}


def test_max_minutes_must_be_positive(tmp_path):
    with pytest.raises(SystemExit, match="--max-minutes must be above 0"):
        cli.main(["report", "--out", str(tmp_path), "--max-minutes", "0"])


def test_calibration_decodes_each_kind_apart_on_a_random_sample(monkeypatch):
    from interp.report import budget

    calls: list[list[str]] = []
    monkeypatch.setattr(budget, "generate", lambda model, prompts, **kw: calls.append(prompts))
    texts = {"short": [f"s{i}" for i in range(20)], "long": [f"l{i}" for i in range(20)]}
    sample = budget.sample_for_calibration(texts, 8, seed=0)
    # Seeded, drawn at random (not the first 8), the same twice.
    assert sample == budget.sample_for_calibration(texts, 8, seed=0)
    assert sample["short"] != texts["short"][:8] and set(sample["short"]) <= set(texts["short"])
    calibration = budget.calibrate(None, sample, max_new_tokens=4)  # type: ignore[arg-type]
    # One warm-up call, then one call per kind: a long kind never pads a short one.
    assert calls[1:] == [sample["short"], sample["long"]]
    assert calibration.n_prompts == 16 and calibration.max_new_tokens == 4
    with pytest.raises(BudgetError, match="at least one prompt"):
        budget.calibrate(None, {"a": []})  # type: ignore[arg-type]
