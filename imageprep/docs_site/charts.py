"""Small SVG charts: a bar chart of counts and a colour histogram. Plain strings, no scripts."""
from __future__ import annotations

from html import escape

import numpy as np

CHANNEL_COLOURS = {3: ("#d62728", "#2ca02c", "#1f77b4"), 4: ("#d62728", "#2ca02c", "#1f77b4", "#7f7f7f"),
                   1: ("#555555",)}
CHANNEL_NAMES = {3: ("R", "G", "B"), 4: ("R", "G", "B", "A"), 1: ("L",)}


def _label(text: str, limit: int = 22) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def bar_chart(counts: list[tuple[str | None, int]], title: str) -> str:
    """Horizontal bars, one per value, with the count at the end of each bar."""
    row, label_width, bar_width, pad = 22, 170, 320, 8
    width = label_width + bar_width + 70
    height = pad * 2 + row * len(counts)
    top = max((n for _, n in counts), default=0) or 1
    parts = [f'<svg class="chart bars" role="img" aria-label="{escape(title)}" viewBox="0 0 {width} {height}" '
             f'width="{width}" height="{height}"><title>{escape(title)}</title>']
    for i, (value, n) in enumerate(counts):
        name = "(no label)" if value is None else str(value)
        y = pad + i * row
        length = max(1.0, bar_width * n / top) if n else 0.0
        parts.append(
            f'<g><title>{escape(name)}: {n}</title>'
            f'<text x="{label_width - 8}" y="{y + 15}" text-anchor="end">{escape(_label(name))}</text>'
            f'<rect x="{label_width}" y="{y + 3}" width="{length:.1f}" height="{row - 6}" rx="2"/>'
            f'<text x="{label_width + length + 6:.1f}" y="{y + 15}" class="count">{n}</text></g>')
    parts.append("</svg>")
    return "".join(parts)


def histogram_chart(hist: np.ndarray, title: str) -> str:
    """Per-channel lines (fractions of pixels per bin) over 0-255, filled lightly underneath."""
    channels, bins = hist.shape
    colours = CHANNEL_COLOURS.get(channels, CHANNEL_COLOURS[1] * channels)
    names = CHANNEL_NAMES.get(channels, tuple(str(c) for c in range(channels)))
    left, top, plot_w, plot_h = 48, 26, 440, 150
    width, height = left + plot_w + 20, top + plot_h + 44
    peak = float(hist.max()) or 1.0
    step = plot_w / bins
    parts = [f'<svg class="chart histogram" role="img" aria-label="{escape(title)}" viewBox="0 0 {width} {height}" '
             f'width="{width}" height="{height}"><title>{escape(title)}</title>',
             f'<line class="axis" x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}"/>',
             f'<line class="axis" x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}"/>',
             f'<text x="{left - 6}" y="{top + 4}" text-anchor="end">{peak * 100:.1f}%</text>',
             f'<text x="{left - 6}" y="{top + plot_h}" text-anchor="end">0</text>']
    for tick in (0, 64, 128, 192, 256):
        x = left + plot_w * tick / 256
        parts.append(f'<text x="{x:.1f}" y="{top + plot_h + 16}" text-anchor="middle">{tick}</text>')
    parts.append(f'<text x="{left + plot_w / 2:.1f}" y="{top + plot_h + 34}" text-anchor="middle">'
                 f'pixel value ({bins} bins per channel)</text>')
    for c in range(channels):
        points = [(left + (i + 0.5) * step, top + plot_h - plot_h * float(hist[c, i]) / peak) for i in range(bins)]
        line = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
        area = f"{points[0][0]:.1f},{top + plot_h} {line} {points[-1][0]:.1f},{top + plot_h}"
        parts.append(f'<polygon points="{area}" fill="{colours[c]}" fill-opacity="0.12" stroke="none"/>'
                     f'<polyline points="{line}" fill="none" stroke="{colours[c]}" stroke-width="1.8">'
                     f'<title>{names[c]}</title></polyline>')
        parts.append(f'<text x="{left + plot_w - 18 * (channels - 1 - c)}" y="{top - 10}" '
                     f'fill="{colours[c]}" text-anchor="end" class="legend">{names[c]}</text>')
    parts.append("</svg>")
    return "".join(parts)
