"""The reproducibility badge: a flat SVG a README can embed (``reproducible 11/12``)."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

COLOURS = {
    "reproducible": "#4c1",  # every record identical
    "differs": "#e05d44",  # a record differs or failed
    "incomplete": "#dfb317",  # some records could not run
    "unknown": "#9f9f9f",  # never verified
}


def badge_state(states: Sequence[str] | None) -> str:
    """The badge's colour name for the verdict states of one verification."""
    if not states:
        return "unknown"
    if any(state in ("differs", "failed") for state in states):
        return "differs"
    if any(state != "identical" for state in states):
        return "incomplete"
    return "reproducible"


def badge_svg(label: str, value: str, state: str) -> str:
    """A shields.io-style flat badge; widths estimated from the text (Verdana 11px)."""
    left = _width(label)
    right = _width(value)
    total = left + right
    colour = COLOURS.get(state, COLOURS["unknown"])
    label_text, value_text = escape(label), escape(value)
    return f"""<svg xmlns="http://www.w3.org/2000/svg" width="{total}" height="20" \
role="img" aria-label="{label_text}: {value_text}" data-state="{escape(state)}">
<title>{label_text}: {value_text}</title>
<linearGradient id="s" x2="0" y2="100%"><stop offset="0" stop-color="#bbb" stop-opacity=".1"/>\
<stop offset="1" stop-opacity=".1"/></linearGradient>
<clipPath id="r"><rect width="{total}" height="20" rx="3" fill="#fff"/></clipPath>
<g clip-path="url(#r)"><rect width="{left}" height="20" fill="#555"/>\
<rect x="{left}" width="{right}" height="20" fill="{colour}"/>\
<rect width="{total}" height="20" fill="url(#s)"/></g>
<g fill="#fff" text-anchor="middle" font-family="Verdana,Geneva,DejaVu Sans,sans-serif" \
font-size="11">\
<text x="{left / 2}" y="15" fill="#010101" fill-opacity=".3">{label_text}</text>\
<text x="{left / 2}" y="14">{label_text}</text>\
<text x="{left + right / 2}" y="15" fill="#010101" fill-opacity=".3">{value_text}</text>\
<text x="{left + right / 2}" y="14">{value_text}</text></g>
</svg>
"""


def _width(text: str) -> int:
    return int(len(text) * 6.6) + 12
