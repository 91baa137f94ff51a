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
# # 03 · The refusal direction
#
# Arditi et al. (2024) found that refusal in chat models is mediated by a single direction in
# the residual stream. This notebook walks through the whole pipeline on the bundled model
# organism: **candidates** (difference in means at every layer × post-instruction position)
# → **scores** (bypass, induce, KL; single forward passes) → **selection** → **ablation /
# activation addition / weight orthogonalisation** → the **interactive explorer**.

# %% tags=["parameters"]
# The model to study: "organism" (the bundled model organism; runs offline in seconds), or a
# zoo name or HF chat-model directory, e.g. "smollm2-135m-safety" (after
# `interp fetch smollm2-135m-safety`), which takes its prompts from the public datasets in
# DATA_DIR. Set it here, with papermill (`-p MODEL ...`), or through INTERP_MODEL.
import os

MODEL = os.environ.get("INTERP_MODEL", "organism")
DATA_DIR = os.environ.get("INTERP_DATA", "../../shared/data")
N_PER_KIND = 32  # prompts per kind and split on a real model

# %%
import tempfile
from pathlib import Path

import torch

import interp
from interp.directions import Direction, diff_in_means
from interp.interventions import ActAdd, DirectionalAblation, apply, orthogonalize, save_hf
from interp.organism import load_with_prompts
from interp.refusal_direction import (
    SelectionConfig,
    evaluate_direction,
    explore,
    explorer_widget,
    pareto_figure,
    rates_figure,
    refusal_tokens,
    score_candidates,
    score_heatmaps,
    select_direction,
    selectable_layers,
)

# The organism's own splits, or (any other model) the public train / val / held-out ones.
model, prompts = load_with_prompts(MODEL, data_dir=DATA_DIR, max_per_kind=N_PER_KIND)
if MODEL == "organism":
    torch.set_num_threads(1)  # a tiny model: one thread is fastest on a shared CPU
info = interp.model_info(model)
info.n_layers, info.d_model

# %% [markdown]
# ## Refusal tokens, from the model's own refusals
# The refusal score is the log-odds of the tokens the model starts its refusals with. We
# derive them from the model's greedy answers to harmful training prompts.

# %%
tokens = refusal_tokens(model, prompts("train", "harmful"))
[model.tokenizer.decode([t]) for t in tokens]

# %% [markdown]
# ## Candidates: difference in means at every layer and eoi position

# %%
candidates = diff_in_means(model, prompts("train", "harmful"), prompts("train", "harmless"))
candidates.columns, candidates.norms()

# %% [markdown]
# ## Scores and selection
# Bypass: refusal score on harmful validation prompts with the direction ablated everywhere.
# Induce: refusal score on harmless prompts with the raw vector added at its layer. KL: how
# much ablation moves next-token distributions on harmless prompts.

# %%
# Only the layers the selection's layer filter keeps are scored (`selectable_layers`): the
# others cannot be selected, and on a 30-layer model they are a fifth of the work.
config = SelectionConfig()
table = score_candidates(
    model,
    candidates,
    prompts("val", "harmful"),
    prompts("val", "harmless"),
    tokens,
    layers=selectable_layers(info.n_layers, config),
)
selection = select_direction(table, config)
direction = selection.direction
print(
    f"layer {direction.layer}, {direction.position}: bypass {selection.bypass:.2f}, "
    f"induce {selection.induce:.2f}, KL {selection.kl:.3f}"
)
score_heatmaps(table, selection)

# %%
pareto_figure(table, selection)

# %% [markdown]
# ## Interventions as values
# `DirectionalAblation` and `ActAdd` are frozen values; `apply` installs their hooks for a
# `with` block and always removes them.

# %%
judge = interp.SubstringJudge("dro")
candidates_demo = interp.generate(model, prompts("test", "harmful").texts[:12], max_new_tokens=24)
refused = judge.is_refusal(candidates_demo.texts)
harmful = [p for p, r in zip(candidates_demo.prompts, refused, strict=True) if r][:4]
base_texts = [t for t, r in zip(candidates_demo.texts, refused, strict=True) if r][:4]
with apply(model, DirectionalAblation(direction)):
    ablated = interp.generate(model, harmful, max_new_tokens=24)
for prompt, base, new in zip(harmful, base_texts, ablated.texts, strict=True):
    print(f"{prompt}\n  base:    {base}\n  ablated: {new}")

# %%
harmless = list(prompts("test", "harmless").texts[:3])
with apply(model, ActAdd(direction, coeff=1.0)):
    for prompt, text in zip(
        harmless, interp.generate(model, harmless, max_new_tokens=24).texts, strict=True
    ):
        print(f"{prompt}\n  +r: {text}")

# %% [markdown]
# ## Weight orthogonalisation
# A new model whose embedding, attention-out and MLP-out weights cannot write the direction;
# on Llama-family models it equals hook ablation up to float rounding, and it exports as a
# plain Hugging Face directory.

# %%
ortho = orthogonalize(model, direction)
batch = interp.encode(model, harmful)
with torch.no_grad(), apply(model, DirectionalAblation(direction)):
    hooked = model(batch.tokens, attention_mask=batch.attention_mask)
with torch.no_grad():
    edited = ortho(batch.tokens, attention_mask=batch.attention_mask)
print(
    "max |logit diff| vs hooks:", float((hooked - edited).abs()[batch.attention_mask.bool()].max())
)
out_dir = save_hf(ortho, Path(tempfile.mkdtemp()) / "organism-orthogonalized")
sorted(p.name for p in out_dir.iterdir())

# %% [markdown]
# ## Evaluation: base / ablation / actadd / orthogonalised

# %%
# A sample of each held-out kind keeps this fast; tests/test_directions_organism.py uses all.
kinds = ("harmful", "harmless", "borderline", "jailbreak")
test = {k: prompts("test", k).sample(min(24, len(prompts("test", k))), seed=0) for k in kinds}
evaluation = evaluate_direction(model, direction, test, max_new_tokens=24, orthogonalized=ortho)
print("KL on harmless:", evaluation.kl_harmless)
rates_figure(evaluation.refusal_rate)

# %% [markdown]
# ## Saving the direction
# Every learned artifact saves the same way: `save(dir)` writes `direction.safetensors` and
# `direction.json` there; `load(dir, model)` checks the files and that the model is the one it
# was made on.

# %%
path = direction.save(Path(tempfile.mkdtemp()) / "refusal_direction")
Direction.load(path, model).metadata()

# %% [markdown]
# ## The explorer
# `explore` is the plain function; `explorer_widget` wraps it with a prompt box, a direction
# picker fed by the score table, the mode, a coefficient slider and a layer slider.

# %%
result = explore(model, harmful[0], direction, "ablate", refusal_tokens=tokens, max_new_tokens=24)
print(result.base_text, "|", result.intervened_text)
print(f"refusal score {result.base_score:.2f} -> {result.intervened_score:.2f}")
result.figure()

# %%
explorer_widget(model, selection, prompt=harmful[0], refusal_tokens=tokens)
