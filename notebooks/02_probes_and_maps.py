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

# %%
import tempfile
from pathlib import Path

import interp
from interp import organism, plots
from interp.dro import collect_conditions, dro_figure, dro_map, prompt_shift_figure, shift_by_layer
from interp.probes import fit_probes_per_layer
from interp.projection import project
from interp.testing import build_tiny_chat_model

root = Path.cwd() if (Path.cwd() / "assets").exists() else Path.cwd().parent
model_dir = root / "assets" / "organism"
if not (model_dir / "config.json").exists():
    model_dir = build_tiny_chat_model("llama", Path(tempfile.mkdtemp()) / "tiny")
model = interp.load_model(model_dir)
info = interp.model_info(model)
info.name, info.n_layers, info.d_model

# %% [markdown]
# ## A probe per layer
# Harmful (and jailbreak) vs harmless (and borderline) requests from the organism's training split.

# %%
prompts = organism.prompts("train").sample(400, seed=0)
store = interp.cache_activations(
    model, prompts, Path(tempfile.mkdtemp()) / "store", sites=["resid_post"], progress=False
)
acts = store.load()
sweep = fit_probes_per_layer(acts, prompts.labels, n_boot=100)
plots.probe_accuracy_figure(sweep)

# %% [markdown]
# ## Safety prompts move every query
# The same test queries with no system prompt and with two safety prompts.

# %%
sets = {k: list(organism.prompts("test", k).texts)[:24] for k in ("harmful", "harmless")}
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
