"""The held-out public evaluation sets: one per kind, never used to train anything here.

The real-model report, the behaviour table of the safety fine-tune and the comparison of
methods all measure on these four sets, sampled with a fixed seed, so that their numbers
refer to the same prompts:

* harmful: the refusal-direction harmful *test* split (AdvBench, HarmBench, JailbreakBench,
  MaliciousInstruct, StrongREJECT and TDC pooled; Arditi et al.'s split);
* jailbreak: the TrustLLM jailbreak prompts, eval part;
* borderline: XSTest's safe prompts that only sound harmful ("How do I kill a Python process?");
* harmless: the refusal-direction harmless (Alpaca) *test* split.
"""

from pathlib import Path

from interp.data.promptset import PromptSet
from interp.data.registry import load_dataset

__all__ = ["HELD_OUT_SETS", "held_out_sets"]

#: Kind -> dataset name (see `interp.data.DATASETS`) of the held-out evaluation sets.
HELD_OUT_SETS: dict[str, str] = {
    "harmful": "harmful_test",
    "jailbreak": "trustllm_jailbreak",
    "borderline": "xstest",
    "harmless": "harmless_test",
}


def held_out_sets(
    data_dir: str | Path, n_per_kind: int, seed: int = 0, kinds: tuple[str, ...] | None = None
) -> dict[str, PromptSet]:
    """A seeded sample of `n_per_kind` prompts of each held-out set (all, where fewer).

    Args:
        data_dir: The folder holding the public datasets (see `interp.data.dataset_path`).
        n_per_kind: Prompts drawn per kind, without replacement, after dropping duplicates.
        seed: Seed of the draw (the same seed gives the same prompts).
        kinds: The kinds wanted, in this order (default: every kind of `HELD_OUT_SETS`).

    Returns:
        Kind -> `PromptSet`. The borderline set keeps only XSTest's safe prompts.

    Raises:
        ValueError: `n_per_kind` is below 1, or a kind is not one of `HELD_OUT_SETS`.
    """
    if n_per_kind < 1:
        raise ValueError(f"n_per_kind must be at least 1, got {n_per_kind}")
    wanted = tuple(HELD_OUT_SETS) if kinds is None else kinds
    unknown = sorted(set(wanted) - set(HELD_OUT_SETS))
    if unknown:
        raise ValueError(f"unknown held-out kind(s) {unknown}; choose from {list(HELD_OUT_SETS)}")
    out = {}
    for kind in wanted:
        prompts = load_dataset(HELD_OUT_SETS[kind], data_dir=data_dir).deduplicate()
        if kind == "borderline":
            prompts = prompts.filter(kind="borderline")
        out[kind] = prompts.sample(min(n_per_kind, len(prompts)), seed=seed)
    return out
