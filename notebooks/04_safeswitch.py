# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 04 · SafeSwitch: a refusal head switched on by the model's own internal state
#
# SafeSwitch (Han et al. 2025) keeps a model's utility by intervening only when its internal
# state predicts unsafe behaviour. A **two-stage prober** reads the post-final-norm state:
# stage 1 at the last prompt token ("is the request harmful?"), stage 2 after a few greedy
# answer tokens ("will the model comply?"). Where both fire, the answer is regenerated with a
# **refusal head**: a copy of the unembedding fine-tuned on refusals, with the rest of the
# model frozen. This notebook builds both on the bundled model organism and compares
# SafeSwitch with the base model, a safety system prompt and the head always on.

# %% tags=["parameters"]
# The model to study: "organism" (the bundled model organism; runs offline in seconds), or a
# zoo name or HF chat-model directory, e.g. "smollm2-135m-safety" (after
# `interp fetch smollm2-135m-safety`), which takes its prompts from the public datasets in
# DATA_DIR. Set it here, with papermill (`-p MODEL ...`), or through INTERP_MODEL.
import os

MODEL = os.environ.get("INTERP_MODEL", "organism")
DATA_DIR = os.environ.get("INTERP_DATA", "../../shared/data")
N_PER_KIND = 64  # prompts per kind and split on a real model

# %%
import tempfile
from pathlib import Path

import torch

import interp
from interp.interventions import apply
from interp.organism import load_with_prompts
from interp.safeswitch import (
    RefusalHead,
    SafeSwitch,
    SafeSwitchProber,
    compliance_figure,
    evaluate_safeswitch,
    gate_figure,
    head_data,
    prober_features,
    refusal_pairs,
)

# The organism's own splits, or (any other model) the public train / val / held-out ones.
model, prompts = load_with_prompts(MODEL, data_dir=DATA_DIR, max_per_kind=N_PER_KIND)
if MODEL == "organism":
    torch.set_num_threads(1)  # a tiny model: one thread is fastest on a shared CPU
KINDS = ("harmful", "jailbreak", "harmless", "borderline")
# The public train split has no borderline prompts (they are all held out): use what it has.
train = {k: prompts("train", k).sample(32, seed=0) for k in KINDS if k in prompts("train").kinds}

# %% [markdown]
# ## The refusal head's targets: the model's own refusals under the warning prompt
# SafeSwitch trains the head on refusals. By default we use the model's own greedy answers
# to harmful training requests under the SafeSwitch *warning* system prompt, keeping those the
# judge calls refusals, so that the head learns the model's own voice.

# %%
harmful_train = [t for k in ("harmful", "jailbreak") for t in train[k].texts]
pairs = refusal_pairs(model, harmful_train, max_new_tokens=32)
print(f"{len(pairs)} of {len(harmful_train)} requests refused under the warning prompt")
for request, response in list(zip(pairs.requests, pairs.responses, strict=True))[:3]:
    print(f"{request}\n  -> {response}")

# %% [markdown]
# ## Training only the unembedding, on cached states
# The body is frozen, so each training sequence runs through the model once; the head then
# trains on the cached `ln_final` states. The loss through the bridge itself (head swapped in
# by hooks) equals the loss on the cache.

# %%
head = RefusalHead(system="helpful", seed=0).fit(model, pairs)
data = head_data(model, pairs, system="helpful")
print(f"{len(data)} cached tokens; loss {head.initial_loss_:.3f} -> {head.losses_[-1]:.3f}")
print(f"cache loss {head.loss(data):.6f} vs bridge loss {head.bridge_loss(model, pairs):.6f}")
print(
    f"head parameters: {head.n_params_:,} = {head.params_fraction(model):.1%} of the model "
    "(the organism's vocabulary is a large share of a tiny model; SafeSwitch reports < 6% "
    "for 7-9B models)"
)

# %% [markdown]
# The head is an intervention value: `apply` swaps it in for a `with` block.

# %%
question = prompts("test", "harmless").texts[0]
with apply(model, head):
    print("head:", interp.generate(model, [question], system="helpful").texts[0])
print("base:", interp.generate(model, [question], system="helpful").texts[0])

# %% [markdown]
# ## The two-stage prober
# Stage 1 learns harmful vs harmless requests; stage 2 learns whether the model's own greedy
# answer complies (judged by the DRO substring judge).

# %%
texts = [t for k in train for t in train[k].texts]
harmful = [int(k in ("harmful", "jailbreak")) for k in train for _ in train[k].texts]
feats = prober_features(model, texts, max_new_tokens=16)
prober = SafeSwitchProber(seed=0).fit(
    feats.stage1, harmful, feats.stage2, feats.complied, model=model
)
switch = SafeSwitch(prober, head)  # thresholds 0.5 / 0.5, helpful system prompt

# %% [markdown]
# ## Gated generation
# One batch holds flagged and unflagged requests: every row is decoded once with the LM head
# (which gives both prober states); flagged rows are regenerated with the refusal head.

# %%
mixed = [prompts("test", k).texts[i] for k in ("jailbreak", "harmless") for i in range(2)]
result = switch.generate_gated(model, mixed, max_new_tokens=32)
for text, flag, base, new in zip(
    mixed, result.flagged, result.base.texts, result.completions.texts, strict=True
):
    print(f"{text}\n  flagged={flag}\n  base:       {base}\n  SafeSwitch: {new}")

# %% [markdown]
# ## Evaluation: base / warning prompt / head always on / SafeSwitch
# A sample of each held-out kind keeps this fast; `tests/test_safeswitch_organism.py` and the
# report use the whole test split.

# %%
test = {k: prompts("test", k).sample(min(16, len(prompts("test", k))), seed=0) for k in KINDS}
evaluation = evaluate_safeswitch(model, switch, test, max_new_tokens=32)
print("flag rate:", evaluation.flag_rate)
compliance_figure(evaluation)

# %%
gate_figure(evaluation)

# %% [markdown]
# ## Calibrating the stage-1 threshold for a target false-positive rate
# On validation prompts, the smallest stage-1 threshold that flags at most `target_fpr` of the
# harmless requests (a new `SafeSwitch`; the old one is unchanged).

# %%
val = prompts("val").sample(64, seed=0)
calibrated = switch.calibrate(model, val, target_fpr=0.02)
print(f"stage-1 threshold {switch.stage1_threshold} -> {calibrated.stage1_threshold:.4f}")

# %% [markdown]
# ## Saving and loading
# `save(dir)` writes safetensors + JSON (model, d_model, d_vocab, training-data hash, checksums);
# `load(dir, model)` checks the files and the model.

# %%
path = head.save(Path(tempfile.mkdtemp()) / "refusal_head")
loaded = RefusalHead.load(path, model)
sorted(p.name for p in path.iterdir()), torch.equal(loaded.weight_, head.weight_)

# %% [markdown]
# The whole switch saves the same way (its prober and head in subdirectories, the thresholds
# in `safeswitch.json`), and loads with every part checked against the model.

# %%
switch_path = switch.save(Path(tempfile.mkdtemp()) / "safeswitch")
again = SafeSwitch.load(switch_path, model)
sorted(p.name for p in switch_path.iterdir()), again.stage1_threshold
