"""An improvement and its confidence bounds against the line it must clear, as inline SVG.

A pure function of numbers to markup, so it is unit-tested without a server and the decision page
needs no JavaScript, no chart library and no network. Every label is text in the SVG itself and
the drawing carries a ``<title>``/``<desc>`` that says the same in words: a reader who cannot tell
the colours apart, or uses a screen reader, gets the verdict's numbers all the same.

Presentation attributes (``fill``, ``stroke``), not ``style``: the pages' Content-Security-Policy
allows no inline styles.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape

WIDTH, HEIGHT = 560, 100
_LEFT, _RIGHT = 24, 24  # room for the end labels
_AXIS_Y, _BAR_Y = 62, 44
_CLEAR, _UNCLEAR, _INK, _REFERENCE = "#1a7f37", "#b35900", "#1f2328", "#8250df"


@dataclass(frozen=True)
class Interval:
    """What one chart shows: ``estimate`` within ``[low, high]`` against ``reference``.

    ``reference`` is the margin the lower bound must clear (primary metric) or minus the tolerance
    the upper bound must not fall below (secondary metrics, slices, guard sets).
    """

    estimate: float | None
    low: float | None
    high: float | None
    reference: float | None
    reference_label: str
    title: str
    bounds_label: str = "confidence bounds"


def _finite(value: object) -> float | None:
    """A plain finite float, or None: the audit log stores non-finite numbers as null."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _bound(value: object) -> float | None:
    """Like ``_finite`` but keeps ±infinity, which a one-sided bound may legitimately be."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        return None
    return float(value)


def _number(value: float | None) -> str:
    if value is None:
        return "n/a"
    if math.isinf(value):
        return "+∞" if value > 0 else "−∞"
    return f"{value:+.4f}"


def _domain(values: list[float]) -> tuple[float, float]:
    """The x range: every finite number shown and zero, padded by a tenth on each side."""
    low, high = min(values + [0.0]), max(values + [0.0])
    span = high - low or max(abs(high), 1e-3)
    return low - span / 10, high + span / 10


class _Scale:
    def __init__(self, domain: tuple[float, float]):
        self.low, self.high = domain

    def x(self, value: float) -> float:
        """Pixels for ``value``; infinities land on the edges."""
        if math.isinf(value):
            return float(_LEFT if value < 0 else WIDTH - _RIGHT)
        return _LEFT + (value - self.low) / (self.high - self.low) * (WIDTH - _LEFT - _RIGHT)


def _text(x: float, y: float, content: str, anchor: str = "middle", fill: str = _INK, weight: str = "normal") -> str:
    return (f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" font-size="12" fill="{fill}" '
            f'font-weight="{weight}">{escape(content)}</text>')


def _anchor(x: float) -> str:
    """Keep a label inside the drawing near either edge."""
    return "start" if x < _LEFT + 40 else "end" if x > WIDTH - _RIGHT - 40 else "middle"


def _outward(x: float, preferred: str) -> str:
    """A bound's label reads away from the interval (so two close bounds do not overlap), unless
    that would push it out of the drawing."""
    if preferred == "end" and x < _LEFT + 60:
        return "start"
    if preferred == "start" and x > WIDTH - _RIGHT - 60:
        return "end"
    return preferred


def _description(interval: Interval, low: float | None, high: float | None, estimate: float | None) -> str:
    return (f"{interval.title}: improvement {_number(estimate)}, {interval.bounds_label} "
            f"[{_number(low)}, {_number(high)}], {interval.reference_label} {_number(_finite(interval.reference))}")


def _reference_line(scale: _Scale, reference: float | None, label: str) -> list[str]:
    if reference is None:
        return []
    x = scale.x(reference)
    return [f'<line x1="{x:.1f}" y1="14" x2="{x:.1f}" y2="{_AXIS_Y + 6}" stroke="{_REFERENCE}" stroke-width="2" '
            f'stroke-dasharray="5 3"/>',
            _text(x, 11, f"{label} {_number(reference)}", _anchor(x), _REFERENCE)]


def _interval_marks(scale: _Scale, estimate: float | None, low: float | None, high: float | None,
                    colour: str) -> list[str]:
    marks = []
    if low is not None and high is not None:
        x1, x2 = scale.x(low), scale.x(high)
        marks.append(f'<line x1="{x1:.1f}" y1="{_BAR_Y}" x2="{x2:.1f}" y2="{_BAR_Y}" stroke="{colour}" stroke-width="6" '
                     f'stroke-linecap="butt"/>')
        for x, value, outward in ((x1, low, "end"), (x2, high, "start")):
            marks.append(f'<line x1="{x:.1f}" y1="{_BAR_Y - 9}" x2="{x:.1f}" y2="{_BAR_Y + 9}" stroke="{colour}" '
                         f'stroke-width="2"/>')
            marks.append(_text(x, _AXIS_Y + 20, _number(value), _outward(x, outward)))
    if estimate is not None:
        x = scale.x(estimate)
        marks.append(f'<circle cx="{x:.1f}" cy="{_BAR_Y}" r="5" fill="{_INK}"/>')
        marks.append(_text(x, _BAR_Y - 13, f"{_number(estimate)}", _anchor(x), weight="bold"))
    return marks


def _clears(low: float | None, high: float | None, reference: float | None) -> bool:
    """Whether the whole interval lies on the good side of the reference line."""
    return low is not None and reference is not None and low >= reference and (high is None or high >= reference)


def interval_chart(interval: Interval) -> str:
    """An ``<svg>`` element: the estimate as a dot, its bounds as a bar, the reference as a dashed
    line and zero as a thin one, each labelled with its number. Missing or non-finite numbers
    (NaN, null from the audit log) are left out and said to be unavailable; an infinite bound is
    drawn to the edge and labelled ∞."""
    estimate = _finite(interval.estimate)
    low, high = _bound(interval.low), _bound(interval.high)
    reference = _finite(interval.reference)
    shown = [v for v in (estimate, low, high, reference) if v is not None and math.isfinite(v)]
    scale = _Scale(_domain(shown))
    description = _description(interval, low, high, estimate)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="interval-chart" viewBox="0 0 {WIDTH} {HEIGHT}" '
             f'width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="{escape(description)}">',
             f"<title>{escape(interval.title)}</title>", f"<desc>{escape(description)}</desc>",
             f'<line x1="{_LEFT}" y1="{_AXIS_Y}" x2="{WIDTH - _RIGHT}" y2="{_AXIS_Y}" stroke="{_INK}" stroke-width="1"/>']
    zero = scale.x(0.0)
    parts += [f'<line x1="{zero:.1f}" y1="{_BAR_Y - 14}" x2="{zero:.1f}" y2="{_AXIS_Y + 4}" stroke="#6e7781" '
              f'stroke-width="1"/>', _text(zero, _AXIS_Y + 34, "0", _anchor(zero), "#6e7781")]
    parts += _reference_line(scale, reference, interval.reference_label)
    colour = _CLEAR if _clears(low, high, reference) else _UNCLEAR
    parts += _interval_marks(scale, estimate, low, high, colour)
    if low is None or high is None or estimate is None:
        parts.append(_text(WIDTH / 2, _BAR_Y + 4, "interval not available: the numbers are not finite", weight="bold"))
    parts.append("</svg>")
    return "".join(parts)
