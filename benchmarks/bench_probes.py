"""Probe sweep speed (issue #4): the batched torch solver vs scikit-learn layer by layer.

Both fit the same objective (L2 logistic regression on standardised features, C=1) on the same
stratified split, each run to a tight tolerance (1e-6, up to 1,000 iterations) so that both
reach the same optimum: at scikit-learn's default 1e-4 the two solvers (and scikit-learn against
itself at 1e-6) disagree by about one point on the hardest layers. The ratio is sklearn wall
time over torch wall time, measured in this run, with the largest per-layer held-out accuracy
difference alongside. Both run on one thread (torch's, and scikit-learn's BLAS through
threadpoolctl). Stores: a synthetic one
(32 layers, 2,000 prompts, d_model 2048, a planted direction whose strength grows with depth)
and, if built, the model organism's last-token resid_post on its training prompts.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from threadpoolctl import threadpool_limits

REPO = Path(__file__).resolve().parents[1]
ORGANISM = REPO / "assets" / "organism"
TOL, MAX_ITER = 1e-6, 1000
#: What both backends are run with (no bootstrap: only the fit is timed).
SOLVER = {"n_boot": 0, "tol": TOL, "max_iter": MAX_ITER}


def synthetic(
    n_layers: int = 32, n: int = 2000, d: int = 2048
) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    y = torch.arange(n) % 2
    u = torch.randn(d, generator=g)
    x = torch.randn(n_layers, n, d, generator=g)
    x += (
        (2 * y - 1)[None, :, None].float()
        * torch.linspace(0.0, 3.0, n_layers)[:, None, None]
        * u
        / u.norm()
    )
    return x, y


def accuracy_gap(fast, ref) -> float:
    """Largest per-layer held-out accuracy difference between two probe sweeps."""
    return float(np.abs(np.array(fast.accuracy) - np.array(ref.accuracy)).max())


def compare(
    x: torch.Tensor, y: torch.Tensor, device: str | None = None
) -> tuple[float, float, dict]:
    from interp.probes import fit_probes_per_layer

    solver = SOLVER
    fit_probes_per_layer(x[:2], y, backend="torch", device=device, **solver)  # warm-up
    start = time.perf_counter()
    fast = fit_probes_per_layer(x, y, backend="torch", device=device, **solver)
    t_torch = time.perf_counter() - start
    with threadpool_limits(limits=torch.get_num_threads()):  # the same threads for both
        start = time.perf_counter()
        ref = fit_probes_per_layer(x, y, backend="sklearn", **solver)
        t_sk = time.perf_counter() - start
    gap = accuracy_gap(fast, ref)
    return (
        t_sk / t_torch,
        gap,
        {"torch": fast.accuracy, "sklearn": ref.accuracy, "t_torch": t_torch, "t_sklearn": t_sk},
    )


def run() -> dict[str, dict]:
    torch.set_num_threads(1)  # as the other benchmarks; scikit-learn's BLAS gets as many
    out: dict[str, dict] = {}
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    x, y = synthetic()
    for dev in devices:
        ratio, gap, _ = compare(x, y, dev)
        out[f"probe_sweep_speedup_synthetic_{dev}"] = {
            "value": round(ratio, 2),
            "target": 20,
            "better": "higher",
            "what": f"sklearn layer-by-layer / torch batched ({dev}) wall time, 32x2000x2048",
        }
        out[f"probe_sweep_accuracy_gap_synthetic_{dev}"] = {
            "value": round(gap, 4),
            "target": 0.01,
            "better": "lower",
            "what": "largest per-layer held-out accuracy difference, torch vs sklearn",
        }
    if (ORGANISM / "config.json").exists():
        import interp
        from interp import organism

        model = interp.load_model(ORGANISM)
        prompts = organism.prompts("train")
        acts = interp.collect_activations(model, prompts, ["resid_post"], progress=False)
        ratio, gap, _ = compare(acts.stack("resid_post"), torch.tensor(prompts.labels))
        out["probe_sweep_speedup_organism_cpu"] = {
            "value": round(ratio, 2),
            "target": 20,
            "better": "higher",
            "what": "sklearn / torch probe sweep on the organism's train prompts (all layers)",
        }
        out["probe_sweep_accuracy_gap_organism"] = {
            "value": round(gap, 4),
            "target": 0.01,
            "better": "lower",
            "what": "largest per-layer held-out accuracy difference on the organism",
        }
    return out


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=1))
