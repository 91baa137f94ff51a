"""Draw the README figure (docs/refusal.svg) from a report's metrics.json, as plain SVG.

Usage: python docs/make_figure.py report/metrics.json docs/refusal.svg

Grouped bars: refusal rate per prompt kind on the organism's held-out test split, for the base
model, a human safety prompt, and each intervention the report measured.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

KINDS = ("harmful", "jailbreak", "borderline", "harmless")
COLOURS = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3")


def methods(metrics: dict) -> dict[str, dict[str, float]]:
    """Method label -> kind -> refusal rate, from whichever sections the report has."""
    out: dict[str, dict[str, float]] = {}
    base = metrics.get("baseline", {})
    if "none" in base:
        out["no prompt"] = base["none"]
    if "default" in base:
        out["safety prompt (default)"] = base["default"]
    rates = metrics.get("refusal_direction", {}).get("refusal_rate", {})
    for key, label in (("ablation", "direction ablated"), ("actadd", "direction added")):
        if key in rates:
            out[label] = rates[key]
    switch = metrics.get("safeswitch", {}).get("compliance", {}).get("safeswitch")
    if switch:
        out["SafeSwitch"] = {k: 1.0 - v for k, v in switch.items()}
    dro = metrics.get("dro", {}).get("refusal", {}).get("dro")
    if dro:
        out["DRO soft prompt"] = dro
    return out


def svg(data: dict[str, dict[str, float]]) -> str:
    """A grouped bar chart as an SVG document."""
    width, height, left, top, bottom = 760, 330, 50, 30, 60
    plot_w, plot_h = width - left - 190, height - top - bottom
    group_w = plot_w / len(KINDS)
    bar_w = (group_w - 16) / max(len(data), 1)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        'font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{left}" y="18" font-size="14">Refusal rate on the organism\'s held-out '
        "test prompts</text>",
    ]
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        y = top + plot_h * (1 - tick)
        parts.append(
            f'<line x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>'
        )
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{tick:.2f}</text>')
    for g, kind in enumerate(KINDS):
        x0 = left + g * group_w + 8
        for m, (_, rates) in enumerate(data.items()):
            value = float(rates.get(kind, 0.0))
            h = plot_h * value
            x = x0 + m * bar_w
            parts.append(
                f'<rect x="{x:.1f}" y="{top + plot_h - h:.1f}" width="{bar_w - 2:.1f}" '
                f'height="{h:.1f}" fill="{COLOURS[m % len(COLOURS)]}"/>'
            )
        parts.append(
            f'<text x="{x0 + (group_w - 16) / 2:.1f}" y="{top + plot_h + 18}" '
            f'text-anchor="middle">{kind}</text>'
        )
    for m, label in enumerate(data):
        y = top + 10 + 20 * m
        x = left + plot_w + 20
        parts.append(
            f'<rect x="{x}" y="{y - 10}" width="12" height="12" '
            f'fill="{COLOURS[m % len(COLOURS)]}"/>'
        )
        parts.append(f'<text x="{x + 18}" y="{y}">{label}</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def main(argv: list[str]) -> int:
    """Read metrics.json, write the SVG."""
    metrics = json.loads(Path(argv[0]).read_text())
    Path(argv[1]).write_text(svg(methods(metrics)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
