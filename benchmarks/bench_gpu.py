"""GPU benchmark (issue #18, item 5): a random-weight model of Llama-3-8B's shapes in bf16.

Run it with `benchmarks/gpu.sh` on a machine with a CUDA device. It writes a random Llama
checkpoint (32 layers, d_model 4096, 32 query / 8 key-value heads, d_mlp 14336, vocab 128256;
the tokenizer is the tiny test models' one, from `interp.testing.build_wide_model`) into a
temporary HF directory, initialised directly on the device in bf16, boots it with
`interp.load_model` and measures, each as a ratio against a baseline timed in the same run
(interleaved call by call, median of `--reps` calls, `torch.cuda.synchronize` around each):

1. caching every layer's last-token resid_post (`interp.collect_activations`) / a plain HF
   forward over the same batch, both including the chat rendering and tokenisation;
2. interp's decoding loop (`interp.generation.greedy_decode`, the loop `interp.generate` runs
   per batch, here without the early stop so that every row makes the same number of tokens) /
   HF `generate` with `min_new_tokens`, greedy, same weights and prompts;
3. the same loop with `DirectionalAblation` applied through `interp.apply` / unhooked;
4. the probe sweep (`fit_probes_per_layer`, batched torch on the device) / scikit-learn layer by
   layer on the CPU with its default threads, on the same activations (the organism's train
   prompts through this model), with the solver settings of `bench_probes.py` and the largest
   per-layer accuracy gap alongside (at most `PROBE_REPS` timed sweeps each);
5. peak GPU memory (`torch.cuda.max_memory_allocated`) while interp caches, generates and
   ablates, over the model's parameter bytes (before the HF baseline copy is loaded).

Entries are keyed `gpu/<name>[<shape>]` and name the device. Without a CUDA device (or with one
too small for the model and its HF baseline copy) every entry is written with `"value": null`
and a `"status"` saying why, merged into the results file without touching other entries.
`--tiny --device cpu` runs the whole path at tiny shapes on the CPU (the test does that); its
figures say nothing about speed.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import resource
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_probes import SOLVER, accuracy_gap  # noqa: E402
from run import judge  # noqa: E402

logger = logging.getLogger("bench_gpu")
NO_DEVICE = "not measured: no device"
#: At most this many timed sweeps per backend: one scikit-learn sweep over 32 layers of 4096
#: features is the slowest call of the run.
PROBE_REPS = 3
WORDS = ["bread", "poem", "river", "lamp", "garden", "photo", "python", "story", "music"]


@dataclass(frozen=True)
class Shape:
    """The model's shape, and how large a workload each measurement runs at it."""

    n_layers: int
    d_model: int
    n_heads: int
    n_kv_heads: int
    d_mlp: int
    vocab_size: int
    batch: int
    new_tokens: int
    probe_prompts: int

    def n_params(self) -> int:
        """Parameters of the Llama model of this shape (untied embeddings, no biases)."""
        d_kv = self.d_model // self.n_heads * self.n_kv_heads
        attn = 2 * self.d_model * self.d_model + 2 * self.d_model * d_kv
        block = attn + 3 * self.d_model * self.d_mlp + 2 * self.d_model
        return self.n_layers * block + 2 * self.vocab_size * self.d_model + self.d_model

    def describe(self) -> str:
        """One line for the entries' `what`."""
        return (
            f"{self.n_layers} layers, d_model {self.d_model}, {self.n_heads}/{self.n_kv_heads} "
            f"heads, d_mlp {self.d_mlp}, vocab {self.vocab_size}, bf16"
        )


SHAPES = {
    "llama3-8b": Shape(32, 4096, 32, 8, 14336, 128256, batch=32, new_tokens=32, probe_prompts=1512),
    "tiny": Shape(2, 64, 4, 2, 128, 1024, batch=8, new_tokens=8, probe_prompts=160),
}

#: name -> (target, better, what): the fixed part of every entry, measured or not.
ENTRIES: dict[str, tuple[float, str, str]] = {
    "cache_last_resid_post_vs_hf_forward": (
        1.10,
        "lower",
        "interp.collect_activations of every layer's last-token resid_post / plain HF forward, "
        "same batch, both with chat rendering and tokenisation",
    ),
    "decode_loop_vs_hf_generate": (
        1.20,
        "lower",
        "interp's greedy decoding loop / HF generate (greedy, min_new_tokens), same weights and prompts",
    ),
    "ablation_hooks_vs_unhooked_generation": (
        1.15,
        "lower",
        "greedy decoding with DirectionalAblation on every layer via interp.apply / unhooked, same loop",
    ),
    "probe_sweep_speedup": (
        20.0,
        "higher",
        "scikit-learn LogisticRegression layer by layer / fit_probes_per_layer batched on the "
        "device, same activations (organism train prompts), both to tol 1e-6",
    ),
    "probe_sweep_accuracy_gap": (
        0.01,
        "lower",
        "largest per-layer held-out accuracy difference, torch on the device vs scikit-learn",
    ),
    "peak_memory_vs_param_bytes": (
        1.30,
        "lower",
        "peak GPU memory (torch.cuda.max_memory_allocated) while caching, generating and "
        "ablating / the model's parameter bytes",
    ),
}


def key(name: str, tag: str) -> str:
    """The results-file key of entry `name` at shape `tag`."""
    return f"gpu/{name}[{tag}]"


def entry(name: str, tag: str, value: float | None, device: str | None, **extra: object) -> dict:
    """A results entry in `benchmarks/run.py`'s format, judged against its target."""
    target, better, what = ENTRIES[name]
    detail = extra.pop("detail", "")
    out = {
        "value": value,
        "target": target,
        "better": better,
        "what": f"{what}; {SHAPES[tag].describe()}{detail}",
        "device": device,
        **extra,
    }
    out["met"] = judge(out)
    return out


def not_measured(tag: str, status: str = NO_DEVICE) -> dict[str, dict]:
    """Every entry of shape `tag`, unmeasured, with `status` saying why."""
    return {key(name, tag): entry(name, tag, None, None, status=status) for name in ENTRIES}


def write_results(out: Path, entries: dict[str, dict]) -> None:
    """Merge `entries` into the JSON results file `out`, keeping every other entry (atomic)."""
    from interp._atomic import atomic_write

    results = json.loads(out.read_text()) if out.exists() else {}
    results |= entries
    atomic_write(out, json.dumps(results, indent=2, sort_keys=True) + "\n")


def build_model(out_dir: Path, shape: Shape, device: torch.device, seed: int = 0) -> Path:
    """Write a random bf16 Llama checkpoint of `shape`, initialised on `device`, to `out_dir`.

    The tokenizer, chat template and generation config come from `build_wide_model` (a tiny
    model whose weights are then replaced); the vocabulary of the model may exceed the
    tokenizer's, as only token ids pass through it.
    """
    from transformers import LlamaConfig, LlamaForCausalLM

    from interp.testing import build_wide_model

    build_wide_model(out_dir, n_layers=1, d_model=64, n_heads=4, n_kv_heads=2, d_mlp=128)
    config = json.loads((out_dir / "config.json").read_text())
    config |= {
        "num_hidden_layers": shape.n_layers,
        "hidden_size": shape.d_model,
        "num_attention_heads": shape.n_heads,
        "num_key_value_heads": shape.n_kv_heads,
        "head_dim": shape.d_model // shape.n_heads,
        "intermediate_size": shape.d_mlp,
        "vocab_size": shape.vocab_size,
        "max_position_embeddings": 8192,
    }
    (out_dir / "model.safetensors").unlink()
    torch.manual_seed(seed)
    with torch.device(device):
        model = LlamaForCausalLM._from_config(LlamaConfig.from_dict(config), dtype=torch.bfloat16)
    model.save_pretrained(out_dir)
    del model
    _empty_cache(device)
    return out_dir


def _empty_cache(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _sync(device: torch.device) -> Callable[[], None]:
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


def interleaved_medians(
    fns: dict[str, Callable[[], object]],
    reps: int,
    sync: Callable[[], None],
    warmup: dict[str, Callable[[], object]] | None = None,
) -> dict[str, float]:
    """Median wall time of each function over `reps` calls, the functions alternating call by call.

    Each is warmed up once first (with `warmup`'s stand-in where given); the device is
    synchronised before and after every timed call so that queued kernels count where they run.
    """
    for name, fn in fns.items():
        (warmup or {}).get(name, fn)()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(reps):
        for name, fn in fns.items():
            sync()
            start = time.perf_counter()
            fn()
            sync()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def _prompts(n: int) -> list[str]:
    return [
        f"Please tell me about {WORDS[i % 9]} and {WORDS[(i * 4) % 9]}, item {i}." for i in range(n)
    ]


def _peak_memory(device: torch.device) -> tuple[int, str]:
    """Peak memory in bytes since the last reset, and what was measured."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device), "torch.cuda.max_memory_allocated"
    # No allocator statistics on the CPU: the process's peak RSS stands in (libraries included,
    # so at tiny shapes the ratio is large and means nothing; it only exercises the path).
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "peak RSS (cpu stand-in)"


def measure(tag: str, device: torch.device, reps: int, workdir: Path) -> dict[str, dict]:
    """Build the model of shape `tag` on `device` and measure every entry."""
    import interp

    shape = SHAPES[tag]
    model_dir = build_model(workdir / "model", shape, device)
    model = interp.load_model(model_dir, device=device, dtype=torch.bfloat16)
    name = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"cpu ({platform.machine()})"
    )
    param_bytes = sum(p.numel() * p.element_size() for p in model.original_model.parameters())
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    work = _Workload(model, model_dir, shape, device)
    for fn in (work.cache, work.loop, work.ablate):  # the first calls also warm up
        fn()
    peak, peak_how = _peak_memory(device)
    out = {
        key("peak_memory_vs_param_bytes", tag): entry(
            "peak_memory_vs_param_bytes",
            tag,
            round(peak / param_bytes, 3),
            name,
            detail=f"; {peak_how} {peak / 2**30:.2f} GiB, parameters {param_bytes / 2**30:.2f} GiB",
        )
    }
    out |= work.timings(tag, name, reps)
    out |= _probe_entries(model, shape, tag, name, device, reps)
    return out


class _Workload:
    """The batch, the direction and the timed calls of one model."""

    def __init__(self, model, model_dir: Path, shape: Shape, device: torch.device) -> None:
        import interp

        self.model, self.model_dir, self.shape, self.device = model, model_dir, shape, device
        self.texts = _prompts(shape.batch)
        self.batch = interp.encode(model, self.texts)
        gen = torch.Generator().manual_seed(0)
        vector = torch.randn(shape.d_model, generator=gen)
        self.direction = interp.Direction.from_vector(vector, model, shape.n_layers // 2)
        self.hf = None

    def cache(self) -> object:
        import interp

        return interp.collect_activations(
            self.model,
            self.texts,
            ["resid_post"],
            ["last"],
            batch_size=self.shape.batch,
            progress=False,
        )

    def loop(self) -> object:
        from interp.generation import greedy_decode

        return greedy_decode(
            self.model, self.batch, max_new_tokens=self.shape.new_tokens, stop_at_eos=False
        )

    def ablate(self) -> object:
        import interp

        with interp.apply(self.model, interp.DirectionalAblation(self.direction)):
            return self.loop()

    def hf_forward(self) -> object:
        import interp

        batch = interp.encode(self.model, self.texts).to(self.device)
        with torch.no_grad():
            return self.hf(batch.tokens, attention_mask=batch.attention_mask)

    def hf_generate(self) -> object:
        batch = self.batch.to(self.device)
        with torch.no_grad():
            return self.hf.generate(
                batch.tokens,
                attention_mask=batch.attention_mask,
                max_new_tokens=self.shape.new_tokens,
                min_new_tokens=self.shape.new_tokens,
                do_sample=False,
                pad_token_id=self.model.tokenizer.pad_token_id,
            )

    def timings(self, tag: str, device_name: str, reps: int) -> dict[str, dict]:
        """Load the plain HF copy and time interp's calls against it, interleaved."""
        from transformers import AutoModelForCausalLM

        self.hf = AutoModelForCausalLM.from_pretrained(
            self.model_dir, dtype=torch.bfloat16, device_map=str(self.device)
        ).eval()
        fns = {
            "cache": self.cache,
            "hf_forward": self.hf_forward,
            "loop": self.loop,
            "hf_generate": self.hf_generate,
            "ablate": self.ablate,
        }
        t = interleaved_medians(fns, reps, _sync(self.device))
        attn = self.hf.config._attn_implementation
        tokens = self.batch.tokens.shape[1]
        gen = f"; batch {self.shape.batch} x {tokens} prompt tokens, {self.shape.new_tokens} new"

        def ratio(name: str, num: str, den: str, detail: str) -> tuple[str, dict]:
            ms = f"; {t[num] * 1e3:.1f} ms vs {t[den] * 1e3:.1f} ms, median of {reps}"
            value = round(t[num] / t[den], 3)
            return key(name, tag), entry(name, tag, value, device_name, detail=detail + ms)

        self.hf = None
        _empty_cache(self.device)
        return dict(
            [
                ratio(
                    "cache_last_resid_post_vs_hf_forward",
                    "cache",
                    "hf_forward",
                    f"; batch {self.shape.batch} x {tokens} tokens, HF attention {attn}",
                ),
                ratio(
                    "decode_loop_vs_hf_generate",
                    "loop",
                    "hf_generate",
                    gen + f", HF attention {attn}",
                ),
                ratio("ablation_hooks_vs_unhooked_generation", "ablate", "loop", gen),
            ]
        )


def _probe_entries(
    model, shape: Shape, tag: str, device_name: str, device: torch.device, reps: int
) -> dict[str, dict]:
    """The probe sweep on this model's activations: batched torch on `device` vs scikit-learn."""
    import interp
    from interp import organism

    prompts = organism.prompts("train")
    prompts = prompts.sample(min(shape.probe_prompts, len(prompts)), seed=0)
    acts = interp.collect_activations(model, prompts, ["resid_post"], ["last"], progress=False)
    x, y = acts.stack("resid_post"), torch.tensor(prompts.labels)
    runs: dict[str, object] = {}

    def fit(backend: str, dev: str | None, rows: torch.Tensor = x) -> Callable[[], object]:
        def call() -> object:
            runs[backend] = interp.fit_probes_per_layer(
                rows, y, backend=backend, device=dev, **SOLVER
            )
            return runs[backend]

        return call

    fns = {"torch": fit("torch", str(device)), "sklearn": fit("sklearn", None)}
    # The warm-up fits two layers only: a full scikit-learn sweep is the slow part of the run.
    warm = {"torch": fit("torch", str(device), x[:2]), "sklearn": fit("sklearn", None, x[:2])}
    reps = min(reps, PROBE_REPS)
    t = interleaved_medians(fns, reps, _sync(device), warmup=warm)
    detail = (
        f"; {x.shape[0]} layers x {x.shape[1]} prompts x {x.shape[2]}; "
        f"{t['sklearn']:.2f} s vs {t['torch']:.3f} s, median of {reps}"
    )
    return {
        key("probe_sweep_speedup", tag): entry(
            "probe_sweep_speedup",
            tag,
            round(t["sklearn"] / t["torch"], 2),
            device_name,
            detail=detail,
        ),
        key("probe_sweep_accuracy_gap", tag): entry(
            "probe_sweep_accuracy_gap",
            tag,
            round(accuracy_gap(runs["torch"], runs["sklearn"]), 4),
            device_name,
        ),
    }


def unavailable(device: torch.device, shape: Shape) -> str | None:
    """Why `device` cannot run the benchmark at `shape` (None: it can)."""
    if device.type != "cuda":
        return None
    if not torch.cuda.is_available():
        if torch.version.cuda is None:
            logger.warning("torch %s is a CPU build; see benchmarks/gpu.sh", torch.__version__)
        return NO_DEVICE
    # The bridge and the plain HF baseline copy are resident together, plus activations.
    need = 2.5 * 2 * shape.n_params()
    have = torch.cuda.get_device_properties(device).total_memory
    if have < need:
        return (
            f"not measured: {torch.cuda.get_device_name(device)} has {have / 2**30:.0f} GiB, "
            f"needs about {need / 2**30:.0f} GiB"
        )
    return None


def benchmark(tag: str, device: str, reps: int, workdir: str | None = None) -> dict[str, dict]:
    """Every `gpu/` entry of shape `tag` on `device`: measured, or marked as not measured."""
    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None and torch.cuda.is_available():
        dev = torch.device("cuda", torch.cuda.current_device())
    status = unavailable(dev, SHAPES[tag])
    if status is not None:
        return not_measured(tag, status)
    root = Path(tempfile.mkdtemp(prefix="bench_gpu-", dir=workdir))
    try:
        return measure(tag, dev, reps, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def run() -> dict[str, dict]:
    """For `benchmarks/run.py`: the Llama-3-8B-shaped entries on CUDA, or marked not measured."""
    return benchmark("llama3-8b", "cuda", reps=5)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny shapes (tests the path only)")
    parser.add_argument("--device", default="cuda", help="torch device (default cuda)")
    parser.add_argument("--reps", type=int, default=None, help="timed calls per method")
    parser.add_argument(
        "--out", default=str(HERE / "results.json"), help="results file to merge into"
    )
    parser.add_argument("--workdir", default=None, help="where the temporary checkpoint goes")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    tag = "tiny" if args.tiny else "llama3-8b"
    reps = args.reps if args.reps is not None else (2 if args.tiny else 5)
    torch.manual_seed(0)
    entries = benchmark(tag, args.device, reps, args.workdir)
    write_results(Path(args.out), entries)
    for name, item in entries.items():
        shown = (
            item.get("status") if item["value"] is None else f"{item['value']}  met={item['met']}"
        )
        print(f"{name:60s} {shown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
