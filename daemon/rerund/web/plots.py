"""Small inline SVG plots: step durations over time, queue length, a job's step timeline.

Hand-drawn rather than a charting library: three plot kinds, no assets to
ship, and the markup can be read by tests like any other page element.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape

PALETTE = ("#2f5fd0", "#e8590c", "#2b8a3e", "#7950f2", "#c92a2a", "#1098ad", "#f08c00", "#5c7cfa")
STATE_COLOURS = {
    "committed": "#2b8a3e",
    "identical": "#69db7c",
    "failed": "#c92a2a",
    "running": "#f08c00",
    "not-run": "#ced4da",
    "pending": "#dee2e6",
}


@dataclass(frozen=True)
class Bar:
    label: str
    state: str
    start: float | None
    end: float | None


def line_chart(
    series: Mapping[str, Sequence[tuple[float, float]]],
    *,
    y_label: str,
    css: str,
    width: int = 720,
    height: int = 220,
    step: bool = False,
) -> str:
    """Lines over time, one per series (``step``: a step function, for counts)."""
    points = [point for values in series.values() for point in values]
    if not points:
        return _empty(f"plot {css}", width, "no data yet")
    left, right, top, bottom = 48, 150, 12, 28
    x_min = min(x for x, _ in points)
    x_max = max(x for x, _ in points)
    y_max = max(*(y for _, y in points), 1e-9)
    plot_w, plot_h = width - left - right, height - top - bottom

    def sx(x: float) -> float:
        return left + (x - x_min) / ((x_max - x_min) or 1) * plot_w

    def sy(y: float) -> float:
        return top + plot_h - y / y_max * plot_h

    parts = [
        f'<svg class="plot {css}" xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}">',
        f'<line class="axis" x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" '
        f'y2="{top + plot_h}"/>',
        f'<line class="axis" x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}"/>',
        f'<text x="4" y="{top + 8}">{_number(y_max)}</text>',
        f'<text x="4" y="{top + plot_h}">0</text>',
        f'<text x="{left}" y="{height - 8}">{_clock(x_min)}</text>',
        f'<text x="{left + plot_w - 40}" y="{height - 8}">{_clock(x_max)}</text>',
        f'<text x="{left + 4}" y="{top + 8}">{escape(y_label)}</text>',
    ]
    for number, (name, values) in enumerate(sorted(series.items())):
        colour = PALETTE[number % len(PALETTE)]
        ordered = sorted(values)
        coords: list[str] = []
        for index, (x, y) in enumerate(ordered):
            if step and index:
                coords.append(f"{sx(x):.1f},{sy(ordered[index - 1][1]):.1f}")
            coords.append(f"{sx(x):.1f},{sy(y):.1f}")
        parts.append(
            f'<polyline class="series" data-series="{escape(name)}" stroke="{colour}" '
            f'points="{" ".join(coords)}"/>'
        )
        if not step:
            parts.extend(
                f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2.5" fill="{colour}">'
                f"<title>{escape(name)}: {_number(y)} s</title></circle>"
                for x, y in ordered
            )
        legend_y = top + 10 + number * 14
        if legend_y < height - 10:
            parts.append(
                f'<rect x="{width - right + 10}" y="{legend_y - 8}" width="10" height="10" '
                f'fill="{colour}"/><text x="{width - right + 24}" y="{legend_y + 1}">'
                f"{escape(name[:22])}</text>"
            )
    parts.append("</svg>")
    return "".join(parts)


def timeline(bars: Sequence[Bar], *, now: float | None = None, width: int = 720) -> str:
    """One bar per step, placed on a shared time axis, coloured by outcome."""
    now = time.time() if now is None else now
    started = [bar.start for bar in bars if bar.start is not None]
    row_h, label_w = 22, 220
    height = max(1, len(bars)) * row_h + 24
    if not started:
        return _empty("timeline", width, "not started")
    t0 = min(started)
    t1 = max((bar.end or now) for bar in bars if bar.start is not None)
    span = max(t1 - t0, 1e-3)
    plot_w = width - label_w - 70
    parts = [
        f'<svg class="timeline" xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}">'
    ]
    for row, bar in enumerate(bars):
        y = row * row_h + 4
        parts.append(f'<text x="4" y="{y + 14}">{escape(bar.label[:34])}</text>')
        if bar.start is None:
            continue
        end = bar.end or now
        x = label_w + (bar.start - t0) / span * plot_w
        w = max((end - bar.start) / span * plot_w, 2)
        colour = STATE_COLOURS.get(bar.state, "#adb5bd")
        parts.append(
            f'<rect class="bar" data-state="{escape(bar.state)}" x="{x:.1f}" y="{y}" '
            f'width="{w:.1f}" height="{row_h - 6}" fill="{colour}"><title>{escape(bar.label)}: '
            f"{escape(bar.state)}, {end - bar.start:.2f} s</title></rect>"
            f'<text x="{x + w + 4:.1f}" y="{y + 14}">{end - bar.start:.2f} s</text>'
        )
    parts.append(f'<text x="{label_w}" y="{height - 4}">0 s</text>')
    parts.append(f'<text x="{label_w + plot_w - 30}" y="{height - 4}">{span:.1f} s</text></svg>')
    return "".join(parts)


def queue_lengths(
    jobs: Sequence[tuple[float, float | None]], *, now: float
) -> list[tuple[float, float]]:
    """Queue length over time from (queued at, left the queue at) pairs."""
    changes: list[tuple[float, int]] = []
    for queued, left in jobs:
        changes.append((queued, 1))
        changes.append((left if left is not None else now, -1))
    changes.sort()
    length = 0
    points: list[tuple[float, float]] = []
    for moment, delta in changes:
        length += delta
        points.append((moment, float(max(length, 0))))
    if points:
        points.append((now, points[-1][1]))
    return points


def _empty(css: str, width: int, text: str) -> str:
    return f'<svg class="{css}" width="{width}" height="30"><text x="6" y="20">{text}</text></svg>'


def _number(value: float) -> str:
    return f"{value:.2f}" if value < 10 else f"{value:.0f}"


def _clock(moment: float) -> str:
    return time.strftime("%m-%d %H:%M", time.gmtime(moment))
