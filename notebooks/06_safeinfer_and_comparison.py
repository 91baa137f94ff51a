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
# # The comparison: every method on the same held-out prompts
#
# One evaluation over every method the toolkit has: the template default (no system prompt
# given), each human safety prompt, the DRO soft prompt, SafeSwitch, the refusal-direction
# ablation (an attack) and ActAdd of the direction (steering). Every method answers the same
# held-out harmful, jailbreak, borderline and harmless prompts of the model organism, one judge
# decides refusals, and each rate comes with a seeded bootstrap 95% interval. KL and CE on
# harmless prompts and the decoding cost are measured against plain greedy decoding in the
# same run. Everything is fitted small here so that the notebook runs in seconds.

# %%
import tempfile
from pathlib import Path

import torch

import interp
from interp import organism
from interp.cast import CAST
from interp.comparison import (
    COMPARISON_KINDS,
    TABLE_HEADER,
    ablation_method,
    actadd_method,
    baseline_method,
    compare,
    comparison_figure,
    decoder_method,
    intervention_method,
    prompt_methods,
    safeswitch_method,
    soft_prompt_method,
)
from interp.directions import diff_in_means
from interp.dro import AnchorSpace, SoftPrompt, collect_anchor_data
from interp.interventions import DirectionalAblation
from interp.safeinfer import GuidedDecoding, SafeInfer
from interp.safeswitch import fit_safeswitch
from interp.testing import build_tiny_chat_model

# The organism is tiny: one intra-op thread is as fast and does not fight other processes.
torch.set_num_threads(1)
torch.manual_seed(0)
root = Path.cwd() if (Path.cwd() / "assets").exists() else Path.cwd().parent
model_dir = root / "assets" / "organism"
if not (model_dir / "config.json").exists():
    model_dir = build_tiny_chat_model("llama", Path(tempfile.mkdtemp()) / "tiny")
model = interp.load_model(model_dir)
info = interp.model_info(model)
info.name, info.n_layers, info.d_model

# %% [markdown]
# ## Fit the methods on the training split
# Small fits: the refusal direction from 32 training prompts per kind (the candidate the
# refusal-direction section selects on the organism: layer 1, position eoi-4), SafeSwitch on
# 24 prompts per kind, DRO on 12 queries per kind for 10 epochs.

# %%
train = {k: organism.prompts("train", k) for k in COMPARISON_KINDS}
candidates = diff_in_means(
    model, train["harmful"].sample(32, seed=0), train["harmless"].sample(32, seed=0)
)
direction = candidates.direction(min(1, info.n_layers - 1), "eoi-4")
switch = fit_safeswitch(model, train, n_per_kind=24, seed=0)
small = {k: list(train[k].sample(12, seed=0).texts) for k in COMPARISON_KINDS}
refuse, answer = small["harmful"] + small["jailbreak"], small["harmless"] + small["borderline"]
data = collect_anchor_data(model, refuse, answer, n_samples=2, max_new_tokens=6)
anchor = AnchorSpace(n_components=4).fit(*data.stacked())
soft = SoftPrompt("short", epochs=10, batch_size=24, lr=1e-2, seed=0)
soft.fit(model, refuse, answer, anchor)
direction.layer, direction.position, soft.n_steps_

# %% [markdown]
# ## The methods
# Each builder wraps one method as a `Method`: a name, a family and a `generate(model,
# prompts, max_new_tokens) -> Completions`.

# %%
methods = [
    baseline_method(),
    *prompt_methods(),
    soft_prompt_method(soft),
    safeswitch_method(switch),
    ablation_method(direction),
    actadd_method(direction, 1.0),
]

# %% [markdown]
# ## SafeInfer and CAST
# **SafeInfer** (`interp.safeinfer`): a function vector from in-context refusals of harmful
# questions, added after block L/4 at the last position (safety amplification, SA), and
# decoding that vetoes tokens an "unsafe" copy of the model prefers (sGDS; here the unsafe
# copy is the same weights with the refusal direction ablated). **CAST** (`interp.cast`): the
# refusal direction added only to prompts whose state passes a condition threshold chosen by
# F1. Any object with `generate(model, prompts, *, max_new_tokens, ...) -> interp.Completions`
# joins the comparison through `decoder_method`, one line each.

# %%
harmful32 = train["harmful"].sample(32, seed=0)
safeinfer = SafeInfer(
    n_prompts=32, n_search_prompts=16, search_layers=range(max(1, info.n_layers // 2)), seed=0
).fit(model, harmful32, direction=direction)
cast = CAST(direction, coeff=1.0).fit(model, harmful32, train["harmless"].sample(32, seed=0))
guided = GuidedDecoding(alpha=safeinfer.alpha, unsafe=(DirectionalAblation(direction),))
methods += [
    intervention_method("safeinfer_sa", "defence", [safeinfer.amplification()]),
    decoder_method("safeinfer_sgds", "defence", guided),
    decoder_method("safeinfer", "defence", safeinfer),
    decoder_method("cast", "defence", cast),
]
print("SafeInfer heads:", safeinfer.heads_[:5], "... SA layer", safeinfer.layer_)
print(f"CAST condition layer {cast.layer_}, threshold {cast.threshold_:.3f}")
[(m.name, m.family) for m in methods]

# %% [markdown]
# ## Run the comparison on the held-out test split
# 16 prompts per kind keep the notebook fast; `interp report` runs it on the whole test split.

# %%
test = {k: organism.prompts("test", k).sample(16, seed=0) for k in COMPARISON_KINDS}
result = compare(model, methods, test, max_new_tokens=24, batch_size=64, seed=0)
for row in [list(TABLE_HEADER), *result.table()]:
    print("  ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in row))

# %% [markdown]
# ## Safety against over-refusal
# Upper left is better: more harmful and jailbreak requests refused, fewer borderline ones.
# Marker area is the decoding cost relative to plain greedy decoding; bars are 95% intervals.

# %%
comparison_figure(result)

# %% [markdown]
# The same numbers as `metrics.json["comparison"]` of `interp report`:

# %%
block = result.to_dict()
{name: (m["safety"]["rate"], m["over_refusal"]["rate"]) for name, m in block["methods"].items()}
