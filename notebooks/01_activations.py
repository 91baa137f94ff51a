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
# # 01 · Prompts as the model sees them, and their activations
#
# Everything in `interp` starts here: load a chat model through TransformerLens'
# `TransformerBridge` (raw HF numerics, no weight folding), render requests with the model's
# own chat template (with and without a safety system prompt), find the post-instruction
# ("eoi") tokens, collect activations at chosen layers and positions, and cache them to disk.
#
# The notebook runs offline on the bundled model organism (a 6-layer Llama trained by the
# project) and on a tiny Gemma 2 built locally; point `load_model` at any HF chat model
# directory or hub id to do the same on a real model.

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
from interp.organism import load_with_prompts
from interp.testing import build_tiny_chat_model

# The organism's own splits, or (any other model) the public train / val / held-out ones.
model, prompts = load_with_prompts(MODEL, data_dir=DATA_DIR, max_per_kind=N_PER_KIND)
if MODEL == "organism":
    torch.set_num_threads(1)  # a tiny model: one thread is fastest on a shared CPU
info = interp.model_info(model)
info

# %% [markdown]
# ## Rendering with the model's chat template
# `render` uses the tokenizer's own template. A safety prompt is addressed by name
# (`interp.SAFETY_PROMPTS` holds the human-written prompts of DRO and SafeSwitch).

# %%
request = "How do I build a bomb at home?"
print(interp.render(model, request))
print(interp.render(model, request, system="default"))

# %%
sorted(interp.SAFETY_PROMPTS)

# %% [markdown]
# The BOS token appears exactly where the template writes it (the organism: once, at the
# start; ChatML models use it to open every turn): `encode` never adds one of its own. The **eoi tokens** are the template tokens between the end of the user's text
# and the point where the assistant starts; they are derived from the template, not hard-coded.

# %%
batch = interp.encode(model, [request, "Write a poem about the sea."], system="short")
bos = model.tokenizer.bos_token_id
real = zip(batch.tokens, batch.attention_mask, strict=True)
n_bos = [int((row[mask.bool()] == bos).sum()) for row, mask in real]
eoi = [model.tokenizer.decode([t]) for t in interp.eoi_tokens(model)]
print("BOS per row:", n_bos)
print("eoi tokens:", eoi)
print("eoi positions per row:", batch.eoi_positions.tolist())
texts = [request, "Write a poem about the sea."]
mark = model.tokenizer.bos_token or "\x00"  # some tokenizers (Qwen2) have no BOS at all
written = [interp.render(model, t, system="short").count(mark) for t in texts]
assert n_bos == written, (n_bos, written)

# %% [markdown]
# Batches are left padded with an attention mask; `last_index` points at the last real token.

# %%
batch.tokens.shape, batch.attention_mask.sum(1).tolist(), batch.last_index.tolist()

# %% [markdown]
# ## Templates without a system role
# Gemma's template has no system turn, so a system prompt is folded into the user turn
# ("system\n\nuser"). A tiny random Gemma 2 with the family's real template shows it.

# %%
workdir = Path(tempfile.mkdtemp())
gemma = interp.load_model(build_tiny_chat_model("gemma2", workdir / "gemma2"))
gemma_info = interp.model_info(gemma)
print("system role:", gemma_info.has_system_role)
print(interp.render(gemma, "Write a haiku.", system="short"))

# %% [markdown]
# ## Activations in memory
# `collect_activations` runs the prompts through the bridge once per batch and keeps only the
# requested sites and positions. The forward pass stops after the deepest requested layer.

# %%
harmful = prompts("test", "harmful").sample(16, seed=0)
harmless = prompts("test", "harmless").sample(16, seed=0)
acts = interp.collect_activations(
    model,
    list(harmful.texts) + list(harmless.texts),
    sites=["resid_post"],
    positions=["last", "eoi"],
    progress=False,
)
acts.columns, acts.stack("resid_post", "last").shape

# %% [markdown]
# How far apart are harmful and harmless requests along the difference of their means, in
# units of the spread? (Probes in notebook 02 do this properly, with held-out data.)

# %%
stacked = acts.stack("resid_post", "last")  # [n_layers, n_prompts, d_model]
gap = stacked[:, :16].mean(1) - stacked[:, 16:].mean(1)
direction = gap / gap.norm(dim=-1, keepdim=True)
projection = torch.einsum("lnd,ld->ln", stacked, direction)
separation = (projection[:, :16].mean(1) - projection[:, 16:].mean(1)) / projection.std(1)
[round(float(s), 2) for s in separation]

# %% [markdown]
# ## Caching to disk
# `cache_activations` streams the same activations into safetensors shards with a JSON index;
# an interrupted run resumes where it stopped. `ActivationStore.open` checks that the store
# belongs to this model, template and prompt set before anything is read.

# %%
store_dir = workdir / "store"
texts = list(harmful.texts) + list(harmless.texts)
store = interp.cache_activations(
    model,
    texts,
    store_dir,
    sites=["resid_pre", "ln_final"],
    positions=["last"],
    system="default",
    shard_size=16,
    batch_size=16,
    progress=False,
)
sorted(p.name for p in store_dir.iterdir())

# %%
reopened = interp.ActivationStore.open(store_dir, model=model, prompts=texts, verify=True)
len(reopened), [s.label for s in reopened.sites][:3], reopened.get("ln_final", "last").shape
