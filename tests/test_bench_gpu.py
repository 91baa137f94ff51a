"""The GPU benchmark's script path, run on the CPU at tiny shapes, and its no-device path."""

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "benchmarks"


@pytest.fixture(scope="module")
def bench_gpu():
    spec = importlib.util.spec_from_file_location("bench_gpu", BENCH / "bench_gpu.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_gpu"] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_tiny_cpu_run_measures_every_entry_and_keeps_other_entries(bench_gpu, tmp_path):
    out = tmp_path / "results.json"
    out.write_text(json.dumps({"other": {"value": 1.0}}))
    assert bench_gpu.main(["--tiny", "--device", "cpu", "--out", str(out), "--reps", "1"]) == 0
    results = json.loads(out.read_text())
    assert results["other"] == {"value": 1.0}
    gpu = {k: v for k, v in results.items() if k.startswith("gpu/")}
    assert sorted(gpu) == sorted(f"gpu/{name}[tiny]" for name in bench_gpu.ENTRIES)
    for name, entry in gpu.items():
        assert math.isfinite(entry["value"]), name
        assert entry["device"].startswith("cpu"), name
        assert isinstance(entry["met"], bool), name
        assert {"target", "better", "what"} <= entry.keys()
    for name in bench_gpu.ENTRIES:
        if name != "probe_sweep_accuracy_gap":  # a gap of 0 is the best value, not a failure
            assert gpu[f"gpu/{name}[tiny]"]["value"] > 0, name
    # Both probe backends fit the same objective to tol 1e-6: the same held-out accuracies.
    assert gpu["gpu/probe_sweep_accuracy_gap[tiny]"]["value"] <= 0.01


def test_no_device_marks_entries_not_measured_through_gpu_sh(tmp_path):
    out = tmp_path / "results.json"
    out.write_text(json.dumps({"other": {"value": 2.0}}))
    # Hiding every CUDA device makes this the no-device path on any machine.
    env = os.environ | {"PYTHON": sys.executable, "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run(
        ["bash", str(BENCH / "gpu.sh"), "--tiny", "--out", str(out)],
        cwd=tmp_path,  # the script finds the repository root itself
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    results = json.loads(out.read_text())
    assert results["other"] == {"value": 2.0}
    gpu = {k: v for k, v in results.items() if k.startswith("gpu/")}
    assert len(gpu) == 6
    for entry in gpu.values():
        assert entry["value"] is None
        assert entry["status"] == "not measured: no device"
        assert entry["met"] is None
        assert entry["target"] > 0 and entry["better"] in ("lower", "higher") and entry["what"]


def test_committed_results_mark_the_llama3_8b_entries(bench_gpu):
    results = json.loads((BENCH / "results.json").read_text())
    for name in bench_gpu.ENTRIES:
        entry = results[f"gpu/{name}[llama3-8b]"]
        # Either measured on a named device, or marked as not measured.
        assert (entry["value"] is None and entry["status"].startswith("not measured")) or (
            math.isfinite(entry["value"]) and entry["device"]
        )
