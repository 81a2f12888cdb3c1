"""The report's charts as small hand-written inline SVG: bars, stacked status bars, weekly trend.

SVG keeps the HTML one self-contained file that any browser draws without a network, a
script or a font file. The charts are string templates rather than a plotting library's
figures: three chart kinds do not need a layout engine, and measuring text to lay a figure
out cost a plotting library most of the report's time. Text is SVG ``<text>`` in the
browser's sans-serif font; its width is estimated (:func:`_width`) generously, and labels
too long for their room are shortened with an ellipsis (the full text stays in a tooltip).
Every data mark has the class ``mark`` and a ``<title>`` with its value.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import date
from html import escape

STATUS_COLOURS = {"accepted": "#2e7d32", "auto-accepted": "#81c784", "rejected": "#c62828", "open": "#9e9e9e"}
BAR = "#1565c0"
WEEK_BAR = "#d6deea"
INK = "#222"
MUTED = "#555"
GRID = "#e3e3e3"

WIDTH = 520  # px: one column of the report page, so text is drawn at its own size
FONT = 12  # px, tick labels and category labels
TITLE_FONT = 13
ROW = 24  # px per bar row
BAR_HEIGHT = 16
MAX_LABEL = 230  # px at most for the category labels left of the bars
VALUE_ROOM = 52  # px right of the longest bar for its value


def _width(text: str, size: int = FONT) -> float:
    """A generous estimate of ``text``'s width in px: DejaVu Sans (Linux's usual sans-serif,
    among the widest) rounded up per class of character."""
    return size * sum(
        0.4 if c in "ijlftrIJ.,:;'|!()/- " else 1.0 if c in "mwMW@%…—" else 0.75 if c.isupper() else 0.64 for c in text
    )


def _fit(text: str, room: float, size: int = FONT) -> str:
    """``text``, shortened with an ellipsis until it fits ``room`` px."""
    if _width(text, size) <= room:
        return text
    while text and _width(text + "…", size) > room:
        text = text[:-1]
    return text.rstrip() + "…"


def _num(value: float) -> str:
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.2f}".rstrip("0")


def _ticks(top: float, count: int = 5) -> list[int]:
    """Whole-number ticks from 0 to at least ``top`` (every axis they mark counts something),
    1, 2, 2.5 or 5 times a power of ten apart."""
    raw = max(top / count, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(s for m in (1, 2, 2.5, 5, 10) if (s := m * magnitude) >= raw and float(s).is_integer())
    return [int(i * step) for i in range(max(math.ceil(top / step - 1e-9), 1) + 1)]


def _text(x: float, y: float, text: str, *, anchor: str = "start", size: int = FONT, fill: str = INK, extra: str = "") -> str:
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" fill="{fill}"{extra}>{escape(text)}</text>'
    )


def _label(x: float, y: float, text: str, room: float, **kw) -> str:
    """A text that fits ``room``; when shortened, the full text is its tooltip."""
    shown = _fit(text, room, kw.get("size", FONT))
    if shown == text:
        return _text(x, y, text, **kw)
    return f"<g><title>{escape(text)}</title>{_text(x, y, shown, **kw)}</g>"


def _rect(x: float, y: float, w: float, h: float, fill: str, tip: str) -> str:
    return (
        f'<rect class="mark" x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{h:.1f}" fill="{fill}">'
        f"<title>{escape(tip)}</title></rect>"
    )


def _svg(height: float, title: str, body: list[str]) -> str:
    heading = _text(0, 16, _fit(title, WIDTH, TITLE_FONT), size=TITLE_FONT, extra=' font-weight="600"')
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height:.0f}" width="{WIDTH}" height="{height:.0f}" '
        f'role="img" aria-label="{escape(title)}" font-family="system-ui, -apple-system, Segoe UI, Roboto, sans-serif">'
        f"<title>{escape(title)}</title>{heading}" + "".join(body) + "</svg>"
    )


def _legend(y: float, items: Sequence[tuple[str, str, str]]) -> list[str]:
    """Swatches in one row at ``y``, right-aligned: (label, colour, shape 'box' or 'line')."""
    widths = [18 + _width(label, 11) + 14 for label, _, _ in items]
    x = WIDTH - sum(widths)
    out = []
    for (label, colour, shape), w in zip(items, widths):
        if shape == "line":
            out.append(f'<line x1="{x:.1f}" y1="{y - 4:.1f}" x2="{x + 14:.1f}" y2="{y - 4:.1f}" stroke="{colour}" stroke-width="2"/>')
            out.append(f'<circle cx="{x + 7:.1f}" cy="{y - 4:.1f}" r="3" fill="{colour}"/>')
        else:
            out.append(f'<rect x="{x:.1f}" y="{y - 10:.1f}" width="12" height="12" fill="{colour}"/>')
        out.append(_text(x + 18, y, label, size=11, fill=MUTED))
        x += w
    return out


def _bars(labels: list[str], stacks: list[list[tuple[float, str, str]]], axis: str, top: float) -> tuple[list[str], float]:
    """Horizontal bars from ``top`` down, one row per label, each a stack of (value, colour,
    tooltip) segments: the SVG elements and the height they need."""
    left = min(max(_width(label) for label in labels) + 12, MAX_LABEL)
    right = WIDTH - VALUE_ROOM
    bottom = top + ROW * len(labels)
    ticks = _ticks(max(sum(v for v, _, _ in stack) for stack in stacks))
    scale = (right - left) / ticks[-1]
    out = []
    for t in ticks:
        x = left + t * scale
        out.append(f'<line x1="{x:.1f}" y1="{top:.1f}" x2="{x:.1f}" y2="{bottom:.1f}" stroke="{GRID}"/>')
        out.append(_text(x, bottom + 15, _num(t), anchor="middle", size=11, fill=MUTED))
    for i, (label, stack) in enumerate(zip(labels, stacks)):
        y = top + i * ROW + (ROW - BAR_HEIGHT) / 2
        out.append(_label(left - 6, y + BAR_HEIGHT - 4, label, left - 8, anchor="end"))
        x = left
        for value, colour, tip in stack:
            if value > 0:
                out.append(_rect(x, y, value * scale, BAR_HEIGHT, colour, tip))
                x += value * scale
        out.append(_text(x + 4, y + BAR_HEIGHT - 4, _num(sum(v for v, _, _ in stack)), size=11, fill=MUTED))
    out.append(f'<line x1="{left:.1f}" y1="{top:.1f}" x2="{left:.1f}" y2="{bottom:.1f}" stroke="{MUTED}"/>')
    out.append(f'<line x1="{left:.1f}" y1="{bottom:.1f}" x2="{right:.1f}" y2="{bottom:.1f}" stroke="{MUTED}"/>')
    out.append(_text((left + right) / 2, bottom + 33, axis, anchor="middle", size=11, fill=MUTED))
    return out, bottom + 40


def barh(labels: Sequence[object], values: Sequence[float], title: str, axis: str) -> str:
    """Horizontal bars in the given order (the largest first), each labelled with its value."""
    names = [str(label) for label in labels]
    stacks = [[(float(v), BAR, f"{name}: {_num(v)}")] for name, v in zip(names, values)]
    body, height = _bars(names, stacks, axis, top=30)
    return _svg(height, title, body)


def stacked_status(labels: Sequence[object], counts: Sequence[dict[str, int]], title: str) -> str:
    """Bars per label stacked by bug status (``counts``: status → bugs), with a legend."""
    names = [str(label) for label in labels]
    stacks = [
        [(float(c.get(status, 0)), colour, f"{name}, {status}: {c.get(status, 0)}") for status, colour in STATUS_COLOURS.items()]
        for name, c in zip(names, counts)
    ]
    body, height = _bars(names, stacks, "bugs", top=50)
    return _svg(height, title, body + _legend(40, [(status, colour, "box") for status, colour in STATUS_COLOURS.items()]))


def weekly_rates(
    weeks: Sequence[date], bugs: Sequence[int], acceptance: Sequence[float | None], rejection: Sequence[float | None], title: str
) -> str:
    """Acceptance and rejection rate per week (lines, left axis), bugs reported per week (bars, right axis)."""
    left, right, top, bottom, height = 52, WIDTH - 62, 52, 236, 280
    band = (right - left) / len(weeks)
    counts = _ticks(max(bugs))
    count_scale = (bottom - top) / counts[-1]

    def rate_y(rate: float) -> float:
        return bottom - rate * (bottom - top)

    out = []
    every = math.ceil(len(weeks) * 52 / (right - left))  # a week label is ~45 px wide
    for i, (week, n) in enumerate(zip(weeks, bugs)):
        x = left + i * band
        h = n * count_scale
        out.append(_rect(x + band * 0.15, bottom - h, band * 0.7, h, WEEK_BAR, f"week of {week:%d %b %Y}: {n} bugs reported"))
        if i % every == 0:
            out.append(_text(x + band / 2, bottom + 15, f"{week:%d %b}", anchor="middle", size=11, fill=MUTED))
    for r in (0, 0.2, 0.4, 0.6, 0.8, 1.0):
        y = rate_y(r)
        out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{right}" y2="{y:.1f}" stroke="{GRID}"/>')
        out.append(_text(left - 6, y + 4, f"{r:.1f}", anchor="end", size=11, fill=MUTED))
    for c in counts:
        out.append(_text(right + 6, bottom - c * count_scale + 4, _num(c), size=11, fill=MUTED))
    for name, rates, colour in (
        ("acceptance rate", acceptance, STATUS_COLOURS["accepted"]),
        ("rejection rate", rejection, STATUS_COLOURS["rejected"]),
    ):
        points = [(left + (i + 0.5) * band, rate_y(r), week, r) for i, (week, r) in enumerate(zip(weeks, rates)) if r is not None]
        if len(points) > 1:
            path = " ".join(f"{'M' if i == 0 else 'L'}{x:.1f},{y:.1f}" for i, (x, y, _, _) in enumerate(points))
            out.append(f'<path class="mark" d="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        for x, y, week, r in points:
            out.append(
                f'<circle class="mark" cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{colour}">'
                f"<title>{name}, week of {week:%d %b %Y}: {r:.3f}</title></circle>"
            )
    out.append(f'<line x1="{left}" y1="{top}" x2="{left}" y2="{bottom}" stroke="{MUTED}"/>')
    out.append(f'<line x1="{right}" y1="{top}" x2="{right}" y2="{bottom}" stroke="{MUTED}"/>')
    out.append(f'<line x1="{left}" y1="{bottom}" x2="{right}" y2="{bottom}" stroke="{MUTED}"/>')
    middle = (top + bottom) / 2
    out.append(_text(14, middle, "share of decided bugs", anchor="middle", size=11, fill=MUTED, extra=f' transform="rotate(-90 14 {middle:.1f})"'))
    out.append(_text(WIDTH - 12, middle, "bugs reported", anchor="middle", size=11, fill=MUTED, extra=f' transform="rotate(90 {WIDTH - 12} {middle:.1f})"'))
    out.append(_text((left + right) / 2, bottom + 33, "week starting", anchor="middle", size=11, fill=MUTED))
    legend = [
        ("acceptance rate", STATUS_COLOURS["accepted"], "line"),
        ("rejection rate", STATUS_COLOURS["rejected"], "line"),
        ("bugs reported", WEEK_BAR, "box"),
    ]
    return _svg(height, title, out + _legend(40, legend))
