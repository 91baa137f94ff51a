"""The public prompt splits: train and validation sets per kind, and the held-out sets.

`public_prompts(split, kind)` is to a real model what `interp.organism.prompts` is to the
organism: train prompts to fit probes, directions and heads on, validation prompts to select
on, and held-out test prompts to measure on (`held_out_sets`).

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

__all__ = ["HELD_OUT_SETS", "PUBLIC_SPLITS", "held_out_sets", "public_prompts"]

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


#: Split -> kind -> (dataset name, part). Part "all" is the whole set; "train" / "val" are
#: the two parts of a seeded, stratified 80/20 `PromptSet.split` of a set that has no
#: validation split of its own (the TrustLLM jailbreak train part). Borderline prompts exist
#: only in the test split: the public borderline sets are XSTest and TrustLLM's exaggerated
#: safety prompts, most of which are XSTest's (172 of 200), so both stay held out.
PUBLIC_SPLITS: dict[str, dict[str, tuple[str, str]]] = {
    "train": {
        "harmful": ("harmful_train", "all"),
        "harmless": ("harmless_train", "all"),
        "jailbreak": ("trustllm_jailbreak_train", "train"),
    },
    "val": {
        "harmful": ("harmful_val", "all"),
        "harmless": ("harmless_val", "all"),
        "jailbreak": ("trustllm_jailbreak_train", "val"),
    },
    "test": {kind: (name, "all") for kind, name in HELD_OUT_SETS.items()},
}
_SPLIT_SEED = 0


def public_prompts(
    split: str,
    kind: str | tuple[str, ...] | None = None,
    *,
    data_dir: str | Path,
    max_per_kind: int | None = None,
    seed: int = 0,
) -> PromptSet:
    """The public prompts of one split, for any model (the organism has its own splits).

    Args:
        split: "train", "val" or "test" (see `PUBLIC_SPLITS`; test = the held-out sets, all
            of them, deduplicated, XSTest's safe prompts as borderline).
        kind: One kind or several (all of the split's kinds when None), in this order.
        data_dir: The folder holding the public datasets.
        max_per_kind: At most this many prompts of each kind, drawn with `seed` (a real
            model's train split holds 18,793 harmless prompts); None keeps them all.
        seed: Seed of that draw.

    Returns:
        The prompts, with their kinds and labels (1 = should be refused).

    Raises:
        ValueError: An unknown split or kind, or `max_per_kind` below 1.
    """
    if max_per_kind is not None and max_per_kind < 1:
        raise ValueError(f"max_per_kind must be at least 1 (or None), got {max_per_kind}")
    if split not in PUBLIC_SPLITS:
        raise ValueError(f"unknown split {split!r}; choose from {list(PUBLIC_SPLITS)}")
    table = PUBLIC_SPLITS[split]
    kinds = tuple(table) if kind is None else ((kind,) if isinstance(kind, str) else kind)
    unknown = sorted(set(kinds) - set(table))
    if unknown:
        raise ValueError(f"unknown kind(s) {unknown}; choose from {list(table)}")
    parts = []
    for k in kinds:
        name, part = table[k]
        prompts = load_dataset(name, data_dir=data_dir).deduplicate()
        if split == "test" and k == "borderline":
            prompts = prompts.filter(kind="borderline")
        if part != "all":
            train, val = prompts.split(0.2, seed=_SPLIT_SEED)
            prompts = train if part == "train" else val
        if max_per_kind is not None and len(prompts) > max_per_kind:
            prompts = prompts.sample(max_per_kind, seed=seed)
        parts.append(prompts)
    return PromptSet.concat(parts, name=f"public/{split}")
