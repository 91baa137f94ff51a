"""Cost of SafeInfer's safety-guided decoding (issue #16).

sGDS with the unsafe model as refusal-direction ablation hooks on the second half of one
doubled batch (one KV cache), against plain greedy decoding of the same prompts through the
same loop: target <= 2.2x. The two-pass variant (the halves as two passes with their own
caches) is reported beside it as a contrast. Measured on the model organism (batch 32, 32
new tokens), fastest of interleaved rounds.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
ORGANISM = REPO / "assets" / "organism"
NEW_TOKENS = 32


def _best_of(fns: dict[str, Callable[[], object]], rounds: int = 5) -> dict[str, float]:
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for key, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[key].append(time.perf_counter() - start)
    return {k: min(v) for k, v in times.items()}


def _ratios(model, prompts: list[str], label: str, what: str, rounds: int) -> dict[str, dict]:
    import interp
    from interp.interventions import DirectionalAblation
    from interp.safeinfer import GuidedDecoding

    vec = torch.randn(int(model.cfg.d_model), generator=torch.Generator().manual_seed(0))
    unsafe = (DirectionalAblation(vec),)
    doubled = GuidedDecoding(unsafe=unsafe)
    two = GuidedDecoding(unsafe=unsafe, strategy="two_pass")
    opts = {"max_new_tokens": NEW_TOKENS, "batch_size": len(prompts)}
    t = _best_of(
        {
            "plain": lambda: interp.generate(model, prompts, **opts),
            "doubled": lambda: doubled.generate(model, prompts, **opts),
            "two_pass": lambda: two.generate(model, prompts, **opts),
        },
        rounds=rounds,
    )
    return {
        f"sgds_doubled_batch_vs_greedy[{label}]": {
            "value": round(t["doubled"] / t["plain"], 3), "target": 2.2, "better": "lower",
            "what": "sGDS decoding with the unsafe model as ablation hooks in the same batch / "
            f"plain greedy decoding; {what}",
        },
        f"sgds_two_pass_vs_greedy[{label}]": {
            "value": round(t["two_pass"] / t["plain"], 3), "target": 2.2, "better": "lower",
            "contrast": True, "what": f"same, the unsafe half as a second pass (contrast); {what}",
        },
    }  # fmt: skip


def run() -> dict[str, dict]:
    import interp
    from interp import organism, zoo

    torch.set_num_threads(1)
    model = interp.load_model(ORGANISM)
    prompts = list(organism.prompts("test", "harmful").texts)[:32]
    out = _ratios(model, prompts, "organism", "batch 32, organism (6 layers, d_model 128), "
                  f"{NEW_TOKENS} new tokens", rounds=5)  # fmt: skip
    if zoo.is_fetched("smollm2-135m-instruct"):
        real = interp.load_model("smollm2-135m-instruct")
        texts = list(organism.prompts("test", "harmful").texts)[:16]
        out |= _ratios(real, texts, "smollm2-135m", "batch 16, SmolLM2-135M-Instruct (30 "
                       f"layers, d_model 576), {NEW_TOKENS} new tokens", rounds=2)  # fmt: skip
    return out
