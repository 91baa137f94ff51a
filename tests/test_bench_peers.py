"""The bookkeeping of `benchmarks/bench_peers.py`, on synthetic timings (no peer installed)."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_peers", REPO / "benchmarks/bench_peers.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_imports_without_any_peer(bench):
    code = (
        "import sys, importlib.util as u; s = u.spec_from_file_location('b', sys.argv[1]); "
        "m = u.module_from_spec(s); s.loader.exec_module(m); "
        "print(sorted(p for p in ('nnsight', 'repeng', 'steering_vectors', 'heretic', "
        "'pyvene', 'transformers', 'interp') if p in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(REPO / "benchmarks/bench_peers.py")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.strip() == "[]"  # the peers (and even the models) load inside the functions
    assert callable(bench.run)
    peers = bench.read_peers((REPO / "requirements/peers.in").read_text())
    assert peers == [
        "nnsight==0.8.1",
        "repeng==0.4.0",
        "steering-vectors==0.12.2",
        "heretic-llm==1.4.0",
        "pyvene==0.1.8",
    ]


def test_ratio_is_to_the_fastest_correct_peer_not_the_fastest(bench):
    times = {"interp": [1.0, 1.2, 1.1], "fast_wrong": [0.1, 0.1, 0.1], "slow": [2.0, 2.2, 2.1]}
    checks = {
        "interp": bench.ok("same"),
        "fast_wrong": bench.failed("differs"),
        "slow": bench.ok("same"),
    }
    entry = bench.speed_entry("x", times, checks)
    assert entry["value"] == pytest.approx(1.1 / 2.1, abs=1e-3)
    assert entry["fastest_correct"] == "interp"
    assert entry["correctness"] == {"interp": True, "fast_wrong": False, "slow": True}
    assert "ratio_to_fastest_correct" not in entry["peers"]["fast_wrong"]
    assert entry["peers"]["slow"]["ratio_to_fastest_correct"] == pytest.approx(2.1 / 1.1, 1e-3)
    assert entry["target"] == 1.05 and entry["better"] == "lower"
    json.dumps(entry)  # results.json must be able to hold it


def test_a_peer_that_never_ran_is_reported_with_its_error(bench):
    checks = {"interp": bench.ok("same"), "peer": bench.ok("same")}
    checks["broken"] = bench.failed("ImportError: no module")
    installs = {"broken": {"spec": "broken==1", "ok": False, "error": "no wheel"}}
    entry = bench.speed_entry("x", {"interp": [2.0], "peer": [1.0]}, checks, installs)
    assert entry["value"] == 2.0
    assert entry["peers"]["broken"]["check"]["detail"] == "ImportError: no module"
    assert entry["peers"]["broken"]["install"]["error"] == "no wheel"


def test_no_correct_peer_gives_a_contrast_entry_and_a_wrong_interp_raises(bench):
    entry = bench.speed_entry(
        "x", {"interp": [1.0], "p": [0.5]}, {"interp": bench.ok("y"), "p": bench.failed("n")}
    )
    assert entry["contrast"] is True and "no other peer" in entry["what"]
    with pytest.raises(ValueError, match="own output failed"):
        bench.summarize({"interp": [1.0]}, {"interp": bench.failed("wrong")})


def test_interleaved_rotates_the_order_and_times_every_call(bench):
    calls: list[str] = []
    ticks = iter(range(100))
    fns = {name: (lambda n=name: calls.append(n)) for name in ("a", "b", "c")}
    times = bench.interleaved(fns, rounds=3, clock=lambda: float(next(ticks)))
    assert calls == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]
    assert all(t == [1.0, 1.0, 1.0] for t in times.values())


def test_states_and_tokens_checks(bench):
    ref = torch.zeros(4, 3, 8)
    assert bench.states_check(ref, ref + 1e-7, atol=1e-5, rtol=1e-5)["ok"]
    bad = bench.states_check(ref, ref + 1e-3, atol=1e-5, rtol=1e-5)
    assert not bad["ok"] and bad["max_abs_diff"] == pytest.approx(1e-3, rel=1e-3)
    assert not bench.states_check(ref, ref[:, :2], atol=1e-5, rtol=1e-5)["ok"]
    diff = bench.tokens_check([[1, 2, 3], [4]], [[1, 2, 3], [4, 5]])
    assert not diff["ok"] and diff["first_difference"] == [1, 1]
    assert not bench.tokens_check([[1]], [[1], [2]])["ok"]


def test_plan_install_withholds_changes_to_installed_packages(bench):
    report = {
        "install": [
            {"metadata": {"name": "repeng", "version": "0.4.0"}},
            {"metadata": {"name": "numpy", "version": "1.26.4"}},
            {"metadata": {"name": "gguf", "version": "0.19.0"}},
            {"metadata": {"name": "Torch", "version": "2.13.0"}},
        ]
    }
    plan = bench.plan_install(report, {"numpy": "2.4.6", "torch": "2.13.0"})
    assert plan["new"] == ["gguf==0.19.0", "repeng==0.4.0"]
    assert plan["conflicts"] == [{"name": "numpy", "have": "2.4.6", "wanted": "1.26.4"}]
    assert bench.plan_install({"install": []}, {})["conflicts"] == []
