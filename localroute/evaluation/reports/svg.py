"""A histogram as inline SVG for the HTML reports.

Written by hand because a report must be one self-contained file: no plotting library we depend
on emits standalone SVG (matplotlib is not a dependency), and a histogram is a few rectangles.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

import numpy as np

WIDTH, HEIGHT = 560, 220
LEFT, RIGHT, TOP, BOTTOM = 48, 12, 16, 40


def histogram_svg(values: Sequence[float], label: str, series: Sequence[tuple[str, Sequence[float]]]
                  | None = None, bins: int = 20) -> str:
    """Bars of `values` (or overlaid outlines of several named series) with axis labels."""
    groups = list(series) if series is not None else [("", values)]
    every = [v for _, vs in groups for v in vs]
    if not every:
        return f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="40" role="img">' \
               f'<text x="8" y="24">no {escape(label)} data</text></svg>'
    low, high = float(min(every)), float(max(every))
    if high <= low:
        high = low + 1e-9 if low else 1.0
    edges = np.linspace(low, high, bins + 1)
    counts = [np.histogram(np.asarray(vs, dtype=float), bins=edges)[0] for _, vs in groups]
    peak = max(int(c.max()) for c in counts) or 1
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    bar_w = plot_w / bins
    colours = ("#4c78a8", "#f58518", "#54a24b")
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(label)} histogram">',
        f'<line x1="{LEFT}" y1="{TOP + plot_h}" x2="{LEFT + plot_w}" y2="{TOP + plot_h}" '
        'stroke="#333"/>',
        f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{TOP + plot_h}" stroke="#333"/>',
    ]
    for index, (name, _) in enumerate(groups):
        colour = colours[index % len(colours)]
        fill = "fill-opacity=\"0.55\"" if len(groups) > 1 else "fill-opacity=\"0.85\""
        for b, count in enumerate(counts[index]):
            if not count:
                continue
            h = plot_h * int(count) / peak
            x, y = LEFT + b * bar_w, TOP + plot_h - h
            parts.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(bar_w - 1, 1):.1f}" height="{h:.1f}" '
                f'fill="{colour}" {fill}><title>{escape(name)} {edges[b]:.3g}–{edges[b + 1]:.3g}: '
                f'{int(count)}</title></rect>'
            )
        if name:
            parts.append(f'<text x="{LEFT + 8 + 90 * index}" y="{TOP + 10}" font-size="11" '
                         f'fill="{colour}">■ {escape(name)}</text>')
    for frac in (0.0, 0.5, 1.0):
        x = LEFT + plot_w * frac
        parts.append(f'<text x="{x:.1f}" y="{TOP + plot_h + 14}" font-size="10" '
                     f'text-anchor="middle">{low + (high - low) * frac:.3g}</text>')
    parts += [
        f'<text x="{LEFT - 6}" y="{TOP + 8}" font-size="10" text-anchor="end">{peak}</text>',
        f'<text x="{LEFT - 6}" y="{TOP + plot_h}" font-size="10" text-anchor="end">0</text>',
        f'<text x="{LEFT + plot_w / 2:.1f}" y="{HEIGHT - 6}" font-size="11" '
        f'text-anchor="middle">{escape(label)}</text>',
        "</svg>",
    ]
    return "\n".join(parts)
