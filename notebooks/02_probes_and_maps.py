# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Probes and maps: where does the model know a request is harmful?
#
# Cache last-token activations of the model organism (a tiny model if it is not built yet),
# sweep a linear probe over every layer, then look at the geometry of harmful and harmless
# queries with and without safety prompts (the DRO picture).

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
from interp import plots
from interp.dro import collect_conditions, dro_figure, dro_map, prompt_shift_figure, shift_by_layer
from interp.organism import load_with_prompts
from interp.probes import fit_probes_per_layer
from interp.projection import project

# The organism's own splits, or (any other model) the public train / val / held-out ones.
model, prompts = load_with_prompts(MODEL, data_dir=DATA_DIR, max_per_kind=N_PER_KIND)
if MODEL == "organism":
    torch.set_num_threads(1)  # a tiny model: one thread is fastest on a shared CPU
info = interp.model_info(model)
info.name, info.n_layers, info.d_model

# %% [markdown]
# ## A probe per layer
# Harmful (and jailbreak) vs harmless (and borderline) requests from the organism's training split.

# %%
train = prompts("train")
train = train.sample(min(400, len(train)), seed=0)
store = interp.cache_activations(
    model, train, Path(tempfile.mkdtemp()) / "store", sites=["resid_post"], progress=False
)
acts = store.load()
sweep = fit_probes_per_layer(acts, train.labels, n_boot=100)
plots.probe_accuracy_figure(sweep)

# %% [markdown]
# ## Safety prompts move every query
# The same test queries with no system prompt and with two safety prompts.

# %%
sets = {k: list(prompts("test", k).texts)[:24] for k in ("harmful", "harmless")}
data = collect_conditions(model, sets, ("default", "short"), max_new_tokens=12)
kinds = list(data.kinds)
labels = list(data.labels)
maps = [
    project({c: a[i] for c, a in data.acts.items()}, labels, kinds, layer=i)
    for i in range(info.n_layers)
]
plots.map_figure(maps)

# %%
best = sweep.best_layer
dro = dro_map({c: a[best] for c, a in data.acts.items()}, labels, kinds, data.refused, layer=best)
dro_figure(dro)

# %%
shifts = shift_by_layer(data, ["harmful", "harmless"])
prompt_shift_figure(shifts, best_layer=best) if shifts else "the model never refused"
