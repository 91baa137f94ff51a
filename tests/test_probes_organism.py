"""Probes and the safety-prompt shift on the model organism ."""

import numpy as np
import pytest

from interp.organism import CHECKPOINT_DIR as ORGANISM

SAFETY = ("default", "short", "mistral", "warning")


@pytest.fixture(scope="module")
def organism_model():
    import interp

    model = interp.load_model(ORGANISM)
    return model, interp.model_info(model)


@pytest.fixture(scope="module")
def train_stack(organism_model):
    import interp
    from interp import organism

    model, _ = organism_model
    prompts = organism.prompts("train")  # all four kinds: label 1 = harmful or jailbreak
    acts = interp.collect_activations(model, prompts, ["resid_post"], batch_size=64, progress=False)
    return acts.stack("resid_post"), prompts.labels


def test_best_layer_probe_accuracy(train_stack):
    from interp.probes import fit_probes_per_layer

    x, y = train_stack
    sweep = fit_probes_per_layer(x, y, backend="torch")
    assert sweep.best_accuracy >= 0.95
    assert sweep.best_layer != 0


def test_torch_matches_sklearn_per_layer(train_stack):
    from interp.probes import fit_probes_per_layer

    x, y = train_stack
    a = fit_probes_per_layer(x, y, backend="torch", n_boot=0)
    b = fit_probes_per_layer(x, y, backend="sklearn", n_boot=0)
    assert np.abs(np.array(a.accuracy) - np.array(b.accuracy)).max() <= 0.01


def test_every_safety_prompt_shifts_toward_refusal(organism_model):
    from interp import organism
    from interp.dro import collect_conditions, shift_by_layer
    from interp.probes import fit_probes_per_layer

    model, _ = organism_model
    sets = {k: list(organism.prompts("test", k).texts) for k in ("harmful", "harmless")}
    data = collect_conditions(model, sets, SAFETY, max_new_tokens=16, batch_size=64)
    rows = data.rows(("harmful", "harmless"))
    sweep = fit_probes_per_layer(data.acts["none"][:, rows], list(data.labels), n_boot=0)
    shifts = shift_by_layer(data, ["harmful", "harmless"])
    best = sweep.layers.index(sweep.best_layer)
    for cond in SAFETY:
        for kind in ("harmful", "harmless"):
            assert shifts[cond][kind][best] > 0, (cond, kind, shifts[cond][kind])
