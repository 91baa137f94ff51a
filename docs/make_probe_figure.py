"""Draw the README's layer-wise probe figure from a report's metrics.json, as plain SVG.

Usage: python docs/make_probe_figure.py report/metrics.json docs/probes.svg [TITLE]

The harmful-vs-harmless probe's held-out accuracy per layer (`metrics["probes"]`, no system
prompt) with its 95% bootstrap interval as a band, and the two controls of the probes section
as horizontal lines: the bag-of-embeddings probe (the words alone) and the label-shuffled probe
at the best layer (what fitting noise reaches on this many prompts).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

W, H, LEFT, TOP, PW, PH = 640, 440, 60, 40, 540, 280
CONTROLS = (("bag_of_embeddings", "bag-of-embeddings control", "#dd8452"),
            ("shuffled_labels", "label-shuffled control", "#8c8c8c"))  # fmt: skip


def svg(probes: dict, title: str) -> str:
    """The figure's SVG text."""
    layers = probes["layers"]
    top = max(layers[-1], 1)

    def x(layer: float) -> float:
        return LEFT + layer / top * PW

    def y(acc: float) -> float:
        # Accuracy axis from 0.4 to 1.0: chance (0.5) sits inside the plot.
        return TOP + (1.0 - acc) / 0.6 * PH

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
           'font-family="sans-serif" font-size="11">',
           '<rect width="100%" height="100%" fill="white"/>',
           f'<text x="{LEFT}" y="22" font-size="13">{title}</text>']  # fmt: skip
    for t in (0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0):
        out.append(f'<line x1="{x(0)}" y1="{y(t)}" x2="{x(top)}" y2="{y(t)}" stroke="#eee"/>')
        out.append(f'<text x="{x(0) - 6}" y="{y(t) + 4}" text-anchor="end">{t:.1f}</text>')
    step = max(1, round(top / 10))
    for layer in range(0, top + 1, step):
        out.append(f'<text x="{x(layer)}" y="{y(0.4) + 15}" text-anchor="middle">{layer}</text>')
    out.append(f'<text x="{x(top / 2)}" y="{y(0.4) + 32}" text-anchor="middle">layer '
               "(resid_post, last prompt token)</text>")  # fmt: skip
    out.append(
        f'<text x="14" y="{y(0.7)}" transform="rotate(-90 14 {y(0.7)})" '
        'text-anchor="middle">held-out accuracy</text>'
    )
    band = [(x(lyr), y(hi)) for lyr, hi in zip(layers, probes["accuracy_high"], strict=True)]
    band += [(x(lyr), y(lo)) for lyr, lo in
             reversed(list(zip(layers, probes["accuracy_low"], strict=True)))]  # fmt: skip
    points = " ".join(f"{a:.1f},{b:.1f}" for a, b in band)
    out.append(f'<polygon points="{points}" fill="#4c72b0" fill-opacity="0.18" stroke="none"/>')
    line = " ".join(f"{x(lyr):.1f},{y(a):.1f}"
                    for lyr, a in zip(layers, probes["accuracy_by_layer"], strict=True))  # fmt: skip
    out.append(f'<polyline points="{line}" fill="none" stroke="#4c72b0" stroke-width="2"/>')
    legend = [("#4c72b0", f"probe, harmful vs harmless ({probes['n_train']} train / "
               f"{probes['n_test']} test prompts; best layer {probes['best_layer']}: "
               f"{probes['best_accuracy']:.2f})")]  # fmt: skip
    for key, name, colour in CONTROLS:
        acc = probes["controls"][key]["accuracy"]
        out.append(f'<line x1="{x(0)}" y1="{y(acc)}" x2="{x(top)}" y2="{y(acc)}" '
                   f'stroke="{colour}" stroke-dasharray="6 4" stroke-width="1.5"/>')  # fmt: skip
        legend.append((colour, f"{name}: {acc:.2f}"))
    for i, (colour, text) in enumerate(legend):
        ly = y(0.4) + 52 + 17 * i
        out.append(f'<rect x="{x(0)}" y="{ly - 5}" width="16" height="3" fill="{colour}"/>')
        out.append(f'<text x="{x(0) + 22}" y="{ly}">{text}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    metrics = json.loads(Path(sys.argv[1]).read_text())
    title = sys.argv[3] if len(sys.argv) > 3 else "Linear probe accuracy by layer"
    Path(sys.argv[2]).write_text(svg(metrics["probes"], title))
