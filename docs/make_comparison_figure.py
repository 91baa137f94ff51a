"""Draw the README's comparison figure from a report's metrics.json, as plain SVG.

Usage: python docs/make_comparison_figure.py report/metrics.json docs/comparison.svg [TITLE]

One marker per method of `metrics["comparison"]`: safety (harmful and jailbreak refusal pooled)
against over-refusal (borderline refusal), 95% bootstrap intervals as bars, marker area
proportional to the decoding cost relative to plain greedy decoding.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

COLOURS = {"baseline": "#4c72b0", "prompt": "#dd8452", "defence": "#55a868",
           "attack": "#c44e52", "steering": "#8172b3"}  # fmt: skip
W, H, LEFT, TOP, SIDE = 820, 440, 60, 40, 340


def svg(block: dict, title: str) -> str:
    """The figure's SVG text."""

    def x(v: float) -> float:
        return LEFT + v * SIDE

    def y(v: float) -> float:
        return TOP + (1 - v) * SIDE

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
           'font-family="sans-serif" font-size="11">',
           '<rect width="100%" height="100%" fill="white"/>',
           f'<text x="{LEFT}" y="22" font-size="13">{title}</text>']  # fmt: skip
    for t in (0, 0.25, 0.5, 0.75, 1):
        out.append(f'<line x1="{x(t)}" y1="{y(0)}" x2="{x(t)}" y2="{y(1)}" stroke="#eee"/>')
        out.append(f'<line x1="{x(0)}" y1="{y(t)}" x2="{x(1)}" y2="{y(t)}" stroke="#eee"/>')
        out.append(f'<text x="{x(t)}" y="{y(0) + 15}" text-anchor="middle">{t}</text>')
        out.append(f'<text x="{x(0) - 6}" y="{y(t) + 4}" text-anchor="end">{t}</text>')
    out.append(f'<text x="{x(0.5)}" y="{y(0) + 32}" text-anchor="middle">over-refusal '
               "(borderline refused)</text>")  # fmt: skip
    out.append(f'<text x="14" y="{y(0.5)}" transform="rotate(-90 14 {y(0.5)})" '
               'text-anchor="middle">safety (harmful + jailbreak refused)</text>')
    legend_y = TOP
    for name in block["order"]:
        m = block["methods"][name]
        s, o = m["safety"], m["over_refusal"]
        colour = COLOURS.get(m["family"], "#333")
        r = 4 + 3 * math.sqrt(max(m["cost"], 0.1))
        out.append(f'<line x1="{x(o["interval"][0])}" y1="{y(s["rate"])}" x2="{x(o["interval"][1])}" '
                   f'y2="{y(s["rate"])}" stroke="{colour}" opacity="0.5"/>')  # fmt: skip
        out.append(f'<line x1="{x(o["rate"])}" y1="{y(s["interval"][0])}" x2="{x(o["rate"])}" '
                   f'y2="{y(s["interval"][1])}" stroke="{colour}" opacity="0.5"/>')  # fmt: skip
        out.append(f'<circle cx="{x(o["rate"]):.1f}" cy="{y(s["rate"]):.1f}" r="{r:.1f}" '
                   f'fill="{colour}" fill-opacity="0.6" stroke="{colour}"/>')  # fmt: skip
        out.append(f'<circle cx="{x(1) + 28}" cy="{legend_y}" r="5" fill="{colour}"/>')
        out.append(f'<text x="{x(1) + 38}" y="{legend_y + 4}">{name} ({m["family"]}, '
                   f'cost {m["cost"]:.2f}x): {s["rate"]:.2f} / {o["rate"]:.2f}</text>')
        legend_y += 17
    out.append("</svg>")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    metrics = json.loads(Path(sys.argv[1]).read_text())
    title = sys.argv[3] if len(sys.argv) > 3 else "Safety against over-refusal"
    Path(sys.argv[2]).write_text(svg(metrics["comparison"], title))
