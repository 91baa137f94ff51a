"""Cost of the refusal-direction interventions during generation (issue #5).

1. Greedy generation with directional-ablation hooks on every layer (resid_pre, attn_out,
   mlp_out) against unhooked generation through the same loop (same prompts, same number of
   tokens): target <= 1.15x.
2. The orthogonalised model (weights edited, no hooks) against the original: target 1.00x,
   within the noise that an A/A pair (the same loop timed twice) shows in the same run.
3. The shared decoding loop, unhooked, against HF `generate` on the same weights and prompts,
   at batch 1 and batch 32: target <= 1.2x.

Measured on a locally built 8-layer, d_model 512 Llama and, when built, the model organism.
All timings interleave the methods and take the fastest of several rounds of runs.

The loop runs the model's own HF modules with the hooks as torch hooks (`interp.native`). For
contrast, the same loop forced through the bridge's wrappers (a no-op hook attached to the
bridge directly makes every call take the bridge) is reported against HF `generate` as well.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
ORGANISM = REPO / "assets" / "organism"
WORDS = [
    "bread",
    "poem",
    "river",
    "lamp",
    "garden",
    "photo",
    "python",
    "story",
    "music",
    "travel",
    "recipe",
    "letter",
]
NEW_TOKENS = 32
#: Two timings of identical work in one run differ by up to about this much on the 2-core box:
#: the `same_loop_twice` A/A entries ranged 0.955-1.055 over four runs. The orthogonalised model
#: (the same modules, other weights) is judged within it.
NOISE = 0.10


def _prompts(n: int) -> list[str]:
    return [
        f"Please tell me about {WORDS[i % 12]} and {WORDS[(i * 7) % 12]} number {i}."
        for i in range(n)
    ]


def _best_of(fns: dict[str, Callable[[], object]], reps: int, rounds: int = 3) -> dict[str, float]:
    """Fastest of `rounds * reps` timings per function, the functions interleaved call by call.

    Interference on a shared machine only ever adds time, so the minimum is the estimate that
    moves least between runs (an A/A pair of medians differed by up to 20% here), and
    alternating the functions on every call spreads slow spells over all of them.
    """
    for fn in fns.values():  # warm-up
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds * reps):
        for key, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[key].append(time.perf_counter() - start)
    return {k: min(v) for k, v in times.items()}


def _ratio(
    t: dict[str, float], num: str, den: str, target: float, what: str, **extra: object
) -> dict:
    """A lower-is-better entry: the timing `num` over the timing `den`."""
    value = round(t[num] / t[den], 3)
    return {"value": value, "target": target, "better": "lower", "what": what, **extra}


def _measure(model_dir: Path, tag: str, reps: int) -> dict[str, dict]:
    from transformers import AutoModelForCausalLM

    import interp
    from interp.directions import Direction
    from interp.generation import greedy_decode
    from interp.interventions import DirectionalAblation, orthogonalize
    from interp.sites import Site

    model = interp.load_model(model_dir, device="cpu")
    info = interp.model_info(model)
    hf = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    # The bridge runs eager attention; HF defaults to SDPA. Both are reported.
    hf_eager = AutoModelForCausalLM.from_pretrained(
        model_dir, dtype=torch.float32, attn_implementation="eager"
    ).eval()
    torch.manual_seed(0)
    direction = Direction.from_vector(torch.randn(info.d_model), model, info.n_layers // 2)
    hooks = DirectionalAblation(direction).hooks(model)
    ortho = orthogonalize(model, direction)
    out: dict[str, dict] = {}
    shape = f"{info.n_layers} layers, d_model {info.d_model}, {NEW_TOKENS} new tokens"
    for size in (32, 1):
        batch = interp.encode(model, _prompts(size))

        def loop(m=model, h=(), b=batch) -> object:
            return greedy_decode(m, b, max_new_tokens=NEW_TOKENS, fwd_hooks=h, stop_at_eos=False)

        def hf_generate(b=batch, m=hf) -> object:
            with torch.no_grad():
                return m.generate(
                    b.tokens,
                    attention_mask=b.attention_mask,
                    max_new_tokens=NEW_TOKENS,
                    min_new_tokens=NEW_TOKENS,
                    do_sample=False,
                    pad_token_id=model.tokenizer.pad_token_id,
                )

        def bridge_loop() -> object:
            with model.hooks(fwd_hooks=[(Site("resid_pre", 0).hook_name, lambda *_, **__: None)]):
                return loop()

        fns: dict[str, Callable[[], object]] = {
            "loop": loop,
            "hf": hf_generate,
            "hf_eager": lambda: hf_generate(m=hf_eager),
            "bridge": bridge_loop,
        }
        if size == 32:
            fns |= {
                "ablate": lambda: loop(h=hooks),
                "ortho": lambda: loop(m=ortho),
                "loop_again": loop,  # an A/A pair: what "within noise" means in this run
            }
        t = _best_of(fns, reps if size > 1 else 3 * reps)  # batch 1 is short and noisier

        if size == 32:
            out[f"ablation_hooks_vs_unhooked_generation[{tag}]"] = _ratio(
                t,
                "ablate",
                "loop",
                1.15,
                f"greedy generation with ablation on every layer / unhooked, same loop; batch 32, {shape}",
            )
            out[f"orthogonalized_vs_original_generation[{tag}]"] = _ratio(
                t,
                "ortho",
                "loop",
                1.0,
                f"greedy generation, orthogonalised weights / original weights (within noise); batch 32, {shape}",
                tolerance=NOISE,
            )
            out[f"same_loop_twice[{tag}]"] = _ratio(
                t,
                "loop_again",
                "loop",
                1.0,
                f"A/A: the same unhooked loop timed twice in one run (the noise floor); batch 32, {shape}",
                contrast=True,
            )
        out[f"decode_loop_vs_hf_generate_batch{size}[{tag}]"] = _ratio(
            t,
            "loop",
            "hf",
            1.2,
            f"interp greedy_decode unhooked / HF generate, same weights and prompts; batch {size}, {shape}",
        )
        out[f"decode_loop_bridge_path_vs_hf_generate_batch{size}[{tag}]"] = _ratio(
            t,
            "bridge",
            "hf",
            1.2,
            f"contrast: the same loop forced through the bridge's wrappers / HF generate; batch {size}, {shape}",
            contrast=True,
        )
        out[f"decode_loop_vs_hf_generate_eager_batch{size}[{tag}]"] = _ratio(
            t,
            "loop", "hf_eager", 1.2,
            f"interp greedy_decode unhooked / HF generate with eager attention (as the bridge runs), same weights and prompts; batch {size}, {shape}",
        )  # fmt: skip
    return out


def run() -> dict[str, dict]:
    """Measure every ratio; returns benchmark entries keyed by name."""
    from interp.testing import build_wide_model

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            results = _measure(build_wide_model(Path(tmp) / "wide"), "wide-8x512", reps=3)
        if (ORGANISM / "config.json").exists():
            results |= _measure(ORGANISM, "organism", reps=5)
    finally:
        torch.set_num_threads(before)
    return results


if __name__ == "__main__":
    for name, entry in run().items():
        print(f"{name}: {entry['value']}x (target {entry['target']}) - {entry['what']}")
