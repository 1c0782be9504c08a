"""Charts drawn on the server as inline SVG: no chart library, no script, readable by a screen
reader (each chart is an image with a title and a description that states the numbers)."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import markupsafe
else:  # imported by the first chart drawn, not at the hub's start (docs/performance.md, cold start)
    from edge.lazy_import import LazyModule

    markupsafe = LazyModule("markupsafe")

_ids = itertools.count(1)


def escape(text: object) -> markupsafe.Markup:
    return markupsafe.escape(text)


def _nice_max(value: int) -> int:
    """A round axis top at or above `value` (1, 2, 2.5, 5 × 10^n)."""
    if value <= 0:
        return 1
    magnitude = 1
    while magnitude * 10 <= value:
        magnitude *= 10
    for step in (1, 2, 2.5, 5, 10):
        top = int(step * magnitude)
        if top >= value:
            return top
    return 10 * magnitude


def columns(
    labels: Sequence[str],
    values: Sequence[int],
    *,
    title: str,
    description: str,
    compare: Sequence[int] | None = None,
    compare_label: str = "",
    value_label: str = "",
    axis_format: Callable[[int], str] = str,
) -> markupsafe.Markup:
    """Vertical bars (e.g. sales per hour), with an optional comparison series drawn as a line."""
    width, height, left, bottom, top = 720, 240, 8, 22, 18
    n = max(len(values), 1)
    peak = _nice_max(max([*values, *(compare or [])], default=0))
    slot = (width - left * 2) / n
    plot_h = height - bottom - top
    uid = next(_ids)
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
        f'aria-labelledby="chart{uid}-t chart{uid}-d" preserveAspectRatio="xMidYMid meet">',
        f'<title id="chart{uid}-t">{escape(title)}</title><desc id="chart{uid}-d">{escape(description)}</desc>',
        f'<line class="axis" x1="{left}" y1="{height - bottom}" x2="{width - left}" y2="{height - bottom}"/>',
    ]
    # the top of the scale and its midpoint, as faint rules with their values
    for frac in (1.0, 0.5):
        y = height - bottom - plot_h * frac
        tick = escape(axis_format(int(peak * frac)))
        parts.append(f'<line class="grid" x1="{left}" y1="{y:.1f}" x2="{width - left}" y2="{y:.1f}"/>'
                     f'<text class="tick" x="{left + 2}" y="{y - 4:.1f}">{tick}</text>')
    for i, value in enumerate(values):
        h = plot_h * value / peak
        x = left + i * slot + slot * 0.15
        parts.append(f'<rect class="bar" x="{x:.1f}" y="{height - bottom - h:.1f}" width="{slot * 0.7:.1f}" '
                     f'height="{h:.1f}"><title>{escape(labels[i])}: {escape(str(value_label or value))}</title></rect>')
    if compare:
        points = " ".join(f"{left + i * slot + slot / 2:.1f},{height - bottom - plot_h * v / peak:.1f}"
                          for i, v in enumerate(compare))
        parts.append(f'<polyline class="compare" points="{points}"><title>{escape(compare_label)}</title></polyline>')
    for i, label in enumerate(labels):
        if len(labels) <= 12 or i % 3 == 0:
            parts.append(f'<text class="tick" x="{left + i * slot + slot / 2:.1f}" y="{height - 6}" '
                         f'text-anchor="middle">{escape(label)}</text>')
    parts.append("</svg>")
    return markupsafe.Markup("".join(parts))


def shares(rows: Sequence[tuple[str, int, str]], *, title: str, description: str) -> markupsafe.Markup:
    """Horizontal bars for parts of a whole: (label, value, the value as text)."""
    width, row_h, label_w = 420, 30, 120
    peak = max((value for _, value, _ in rows), default=0) or 1
    height = max(len(rows), 1) * row_h + 4
    uid = next(_ids)
    parts = [
        f'<svg class="chart shares" viewBox="0 0 {width} {height}" role="img" '
        f'aria-labelledby="chart{uid}-t chart{uid}-d" preserveAspectRatio="xMinYMin meet">',
        f'<title id="chart{uid}-t">{escape(title)}</title><desc id="chart{uid}-d">{escape(description)}</desc>',
    ]
    for i, (label, value, text) in enumerate(rows):
        y = i * row_h + 4
        bar_w = (width - label_w - 130) * value / peak
        parts.append(f'<text class="label" x="0" y="{y + 18}">{escape(label)}</text>'
                     f'<rect class="bar" x="{label_w}" y="{y + 4}" width="{max(bar_w, 1):.1f}" height="{row_h - 10}"/>'
                     f'<text class="value" x="{label_w + bar_w + 8:.1f}" y="{y + 18}">{escape(text)}</text>')
    parts.append("</svg>")
    return markupsafe.Markup("".join(parts))
