"""Plot builders: expected traces, frames, and no files written."""

import os

import plotly.graph_objects as go
import torch

from interp import plots
from interp.dro import dro_figure, dro_map, prompt_shift_figure
from interp.probes import fit_probes_per_layer
from interp.projection import project


def _sweep():
    g = torch.Generator().manual_seed(0)
    y = torch.arange(80) % 2
    x = torch.randn(3, 80, 6, generator=g)
    x[1, :, 0] += 4 * y
    return fit_probes_per_layer(x, y, n_boot=20)


def _acts(shift=0.0, n=20):
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 6, generator=g) + shift


def test_figures_have_expected_traces_and_write_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("show", "write_html", "write_image"):
        monkeypatch.setattr(
            go.Figure, name, lambda *a, _n=name, **k: (_ for _ in ()).throw(AssertionError(_n))
        )
    sweep = _sweep()
    fig = plots.probe_accuracy_figure({"none": sweep, "default": sweep})
    assert [t.name for t in fig.data].count("none") == 1 and len(fig.data) == 5
    assert any("best layer 1" in (t.name or "") for t in fig.data)

    kinds, labels = ["harmful", "harmless"] * 10, [1, 0] * 10
    maps = [
        project({"none": _acts(), "default": _acts(float(i))}, labels, kinds, layer=i)
        for i in range(3)
    ]
    fig = plots.map_figure(maps)
    assert len(fig.frames) == 3 and len(fig.layout.sliders[0].steps) == 3
    names = [t.name for t in fig.data]
    assert "harmful / none" in names and "shift none -> default" in names
    assert all(len(f.data) == len(fig.data) for f in fig.frames)
    # Each frame's axis titles give that layer's own explained variance.
    for frame, proj in zip(fig.frames, maps, strict=True):
        ratio = proj.explained_variance_ratio
        assert frame.layout.xaxis.title.text == f"PCA 1 ({ratio[0]:.0%})"
        assert frame.layout.yaxis.title.text == f"PCA 2 ({ratio[1]:.0%})"
    assert len({f.layout.xaxis.title.text for f in fig.frames}) > 1  # they do differ here

    dro = dro_map(
        {"none": _acts(), "default": _acts(1.0)},
        labels,
        kinds,
        {"none": labels, "default": [1] * 20},
    )
    fig = dro_figure(dro)
    names = [t.name for t in fig.data]
    assert "harmfulness boundary" in names and "refusal boundary" in names

    fig = prompt_shift_figure(
        {"default": {"harmful": [0.1, 0.2], "harmless": [0.0, 0.1]}}, best_layer=1
    )
    assert len(fig.data) == 2
    assert os.listdir(tmp_path) == []
