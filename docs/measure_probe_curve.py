"""Measure a layer-wise harmful-vs-harmless probe curve, with its controls, at a chosen size.

Usage: python docs/measure_probe_curve.py MODEL DATA_DIR OUT.json [N_PER_KIND]

The report's probes section fits its probes on the measured prompts (at `--quick` sizes,
24 harmful and 24 harmless, 12 held out), too few to tell one layer from another. This script
takes N_PER_KIND (default 200) harmful and harmless prompts of the public *test* split
(`interp.data.public_prompts`, seeded; test, because smollm2-135m-safety was fine-tuned on the
train split's harmful requests), caches resid_post at the last prompt token of every
layer (no system prompt), fits one probe per layer on a stratified 75/25 split
(`interp.fit_probes_per_layer`, 200 bootstrap resamples of the held-out rows) and the two
controls of the probes section (`interp.report.probes.probe_controls`). It writes
`{"probes": {...}}` in the shape of a report's metrics.json, so that
`python docs/make_probe_figure.py OUT.json FIGURE.svg` draws it.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import interp
from interp.data import public_prompts
from interp.report.probes import probe_controls


def main(model_name: str, data_dir: str, out: str, n_per_kind: int = 200) -> None:
    """Measure and write the curve (see the module docstring)."""
    start = time.perf_counter()
    model = interp.load_model(model_name)
    prompts = public_prompts(
        "test", ("harmful", "harmless"), data_dir=data_dir, max_per_kind=n_per_kind
    )
    texts = list(prompts.texts)
    labels = [int(kind == "harmful") for kind in prompts.kinds]
    acts = interp.collect_activations(model, texts, ("resid_post",), ("last",), progress=False)
    stack = acts.stack("resid_post", "last")
    sweep = interp.fit_probes_per_layer(stack, labels, seed=0, n_boot=200)
    controls = probe_controls(model, texts, labels, stack, sweep, seed=0)
    block = {
        **sweep.to_dict(),
        "controls": controls,
        "prompts": {"split": "test", "harmful": sum(labels), "harmless": len(labels) - sum(labels)},
        "model": model_name,
        "seconds": round(time.perf_counter() - start, 1),
    }
    Path(out).write_text(json.dumps({"probes": block}, indent=1))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], *(int(a) for a in sys.argv[4:5]))
