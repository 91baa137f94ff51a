"""Run every `benchmarks/bench_*.py` and write `benchmarks/results.json`.

Each benchmark module defines `run() -> dict[str, dict]`, mapping an entry name to
`{"value": float, "target": float, "better": "lower" | "higher", "what": str}` (extra keys
allowed: `"tolerance"` widens the target by that much, for "1.00x within noise";
`"contrast": true` marks an entry shown for comparison only, whose `met` is null; a `value` of
null with a `"status"` marks an entry that could not be measured here, e.g. the `gpu/` entries
without a CUDA device, whose `met` is null too). Values are ratios measured in one run against a
baseline from the same run, so they hold on noisy machines; they are not timed tests.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
HERE = Path(__file__).resolve().parent


def judge(entry: dict) -> bool | None:
    """Whether an entry meets its target; None for a contrast entry or one not measured."""
    if entry.get("contrast") or entry.get("value") is None:
        # A contrast entry shows what the measured path avoids; its target is the
        # headline's, for scale, and it is not judged against it.
        return None
    slack = entry.get("tolerance", 0.0)  # "1.00x within noise" targets carry one
    if entry["better"] == "lower":
        return bool(entry["value"] <= entry["target"] + slack)
    return bool(entry["value"] >= entry["target"] - slack)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default=str(HERE / "results.json"))
    parser.add_argument("-k", default="", help="only benchmarks whose file name contains this")
    args = parser.parse_args()
    results: dict[str, dict] = {}
    out = Path(args.out)
    if out.exists():
        results = json.loads(out.read_text())
    for path in sorted(HERE.glob("bench_*.py")):
        if args.k not in path.stem:
            continue
        if path.stem == "bench_peers" and "peers" not in args.k:
            continue  # needs the peers' own venv: `make bench-peers`
        spec = importlib.util.spec_from_file_location(path.stem, path)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[path.stem] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
        start = time.perf_counter()
        entries = module.run()
        for name, entry in entries.items():
            entry["met"] = judge(entry)
            results[name] = entry
            if entry["value"] is None:
                print(f"{name:55s} {entry.get('status', 'not measured')}")
                continue
            verdict = "contrast" if entry.get("contrast") else ("ok" if entry["met"] else "MISSED")
            print(
                f"{name:55s} {entry['value']:8.3f}  target {entry['better']}={entry['target']}  {verdict}"
            )
        print(f"  ({path.name}: {time.perf_counter() - start:.1f}s)")
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
