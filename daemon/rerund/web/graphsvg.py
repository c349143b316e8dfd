"""The run-record graph as inline SVG, laid out by Graphviz ``dot``.

``dot -Tjson0`` gives positions only; the SVG is drawn here, so every node can
carry ``data-commit`` and ``data-state`` (for tests, scripts and the page's
script) and the markup stays small. Layouts are cached by their input: a page
view after a push pays for ``dot`` once.
"""

from __future__ import annotations

import json
import subprocess
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from html import escape
from threading import Lock
from typing import Any

from rerund.core.graph import RecordGraph

_PT_PER_INCH = 72.0
_LABEL_CHARS = 38
_DOT_TIMEOUT_S = 60


@dataclass(frozen=True)
class _Box:
    x: float
    y: float
    width: float
    height: float


class GraphLayoutError(Exception):
    """``dot`` is missing or failed."""


def graph_svg(graph: RecordGraph, states: Mapping[str, str]) -> str:
    """The graph as an ``<svg>`` element; ``states`` maps a commit to its node state."""
    if not graph.nodes:
        return '<svg class="record-graph" width="0" height="0" data-empty="true"></svg>'
    labels = [_label_lines(node.summary, node.outputs) for node in graph.nodes]
    ids = {node.commit: f"n{i}" for i, node in enumerate(graph.nodes)}
    layout = _cached_layout(_dot_source(labels, ids, graph.edges))
    width, height = layout["width"], layout["height"]
    parts = [
        f'<svg class="record-graph" xmlns="http://www.w3.org/2000/svg" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" width="{width:.0f}" height="{height:.0f}">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z"/></marker>'
        "</defs>",
        '<g class="edges">',
    ]
    for (upstream, downstream), path in zip(graph.edges, layout["edges"], strict=True):
        parts.append(
            f'<path class="edge" data-from="{upstream}" data-to="{downstream}" d="{path}" '
            'marker-end="url(#arrow)"/>'
        )
    parts.append('</g><g class="nodes">')
    for node, lines in zip(graph.nodes, labels, strict=True):
        box: _Box = layout["nodes"][ids[node.commit]]
        state = states.get(node.commit, "current")
        title = node.summary + "".join(f"\n• {reason}" for reason in node.stale_reasons)
        parts.append(
            f'<g class="node {state}" data-commit="{node.commit}" data-state="{state}" '
            f'tabindex="0"><title>{escape(title)}</title>'
            f'<rect x="{box.x:.1f}" y="{box.y:.1f}" width="{box.width:.1f}" '
            f'height="{box.height:.1f}" rx="4"/>'
        )
        line_y = box.y + box.height / 2 - (len(lines) - 1) * 7 + 4
        for number, line in enumerate(lines):
            css = "summary" if number == 0 else "output"
            parts.append(
                f'<text class="{css}" x="{box.x + box.width / 2:.1f}" '
                f'y="{line_y + number * 14:.1f}">{escape(line)}</text>'
            )
        parts.append("</g>")
    parts.append("</g></svg>")
    return "".join(parts)


def _label_lines(summary: str, outputs: tuple[str, ...]) -> list[str]:
    lines = [_cut(summary or "(no summary)")]
    lines.extend(_cut(path) for path in outputs[:2])
    if len(outputs) > 2:
        lines.append(f"+{len(outputs) - 2} more")
    return lines


def _cut(text: str) -> str:
    return text if len(text) <= _LABEL_CHARS else text[: _LABEL_CHARS - 1] + "…"


def _dot_source(
    labels: list[list[str]], ids: Mapping[str, str], edges: tuple[tuple[str, str], ...]
) -> str:
    lines = [
        "digraph records {",
        "rankdir=LR; nodesep=0.25; ranksep=0.5;",
        'node [shape=box, fontname="Helvetica", fontsize=11, margin="0.12,0.06"];',
    ]
    for name, label in zip(ids.values(), labels, strict=True):
        lines.append(f"{name} [label={json.dumps(chr(10).join(label))}];")
    lines.extend(f"{ids[up]} -> {ids[down]};" for up, down in edges)
    lines.append("}")
    # json.dumps writes "\n" as a backslash-n, which dot reads as a centred line break.
    return "\n".join(lines)


_CACHE: OrderedDict[str, dict[str, Any]] = OrderedDict()
_CACHE_LOCK = Lock()
_CACHE_SIZE = 32


def _cached_layout(source: str) -> dict[str, Any]:
    with _CACHE_LOCK:
        found = _CACHE.get(source)
        if found is not None:
            _CACHE.move_to_end(source)
            return found
    layout = _layout(source)
    with _CACHE_LOCK:
        _CACHE[source] = layout
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return layout


def _layout(source: str) -> dict[str, Any]:
    try:
        done = subprocess.run(
            ["dot", "-Tjson0"],
            input=source.encode(),
            capture_output=True,
            timeout=_DOT_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise GraphLayoutError(f"Graphviz dot could not lay out the graph: {exc}") from exc
    if done.returncode != 0:
        raise GraphLayoutError(f"dot failed: {done.stderr.decode(errors='replace').strip()}")
    data = json.loads(done.stdout)
    _, _, right, top = (float(v) for v in data["bb"].split(","))
    margin = 8.0
    height = top + 2 * margin

    def point(text: str) -> tuple[float, float]:
        x, y = (float(v) for v in text.split(","))
        return x + margin, height - margin - y

    nodes: dict[str, _Box] = {}
    for obj in data.get("objects", []):
        x, y = point(obj["pos"])
        width = float(obj["width"]) * _PT_PER_INCH
        box_height = float(obj["height"]) * _PT_PER_INCH
        nodes[obj["name"]] = _Box(x - width / 2, y - box_height / 2, width, box_height)
    edges = []
    for edge in sorted(data.get("edges", []), key=lambda e: int(e["_gvid"])):
        edges.append(_spline_path(edge["pos"], point))
    return {"width": right + 2 * margin, "height": height, "nodes": nodes, "edges": edges}


def _spline_path(pos: str, point: Any) -> str:
    """SVG path data for dot's ``e,x,y p0 p1 p2 p3 ...`` B-spline control points."""
    end = None
    controls = []
    for item in pos.split():
        if item.startswith("e,"):
            end = point(item[2:])
        elif item.startswith("s,"):
            continue
        else:
            controls.append(point(item))
    start, *rest = controls
    data = [f"M{start[0]:.1f},{start[1]:.1f}"]
    for i in range(0, len(rest) - 2, 3):
        (x1, y1), (x2, y2), (x3, y3) = rest[i : i + 3]
        data.append(f"C{x1:.1f},{y1:.1f} {x2:.1f},{y2:.1f} {x3:.1f},{y3:.1f}")
    if end is not None:
        data.append(f"L{end[0]:.1f},{end[1]:.1f}")
    return " ".join(data)
