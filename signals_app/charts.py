"""Charts drawn by the app itself: inline SVG strings, no JavaScript, no CDN.

Each chart carries a <title> and <desc> for screen readers, and the template shows the same
numbers as a table beside it, so the chart is never the only way to read them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from django.utils.safestring import SafeString, mark_safe

TEST_COLOUR = "#8fb0f0"
LIVE_COLOUR = "#2457d6"
INK = "#5b6575"
GRID = "#e4e8ef"


def _nice_max(value: int) -> int:
    """A round top for the axis: 1, 2, 5 × a power of ten at or above value."""
    if value <= 0:
        return 1
    magnitude = 1
    while True:
        for step in (1, 2, 5):
            if step * magnitude >= value:
                return step * magnitude
        magnitude *= 10


def _short(n: int) -> str:
    if n >= 1_000_000:
        return f"{n / 1_000_000:.1f}M".replace(".0M", "M")
    if n >= 10_000:
        return f"{n // 1000}k"
    return f"{n:,}"


def signals_per_day(days: Sequence[date], test: Sequence[int], live: Sequence[int]) -> SafeString:
    """Signals sent per day, test and live in two panels with a scale each: a few thousand
    live signals stay visible beside a hundred thousand test ones."""
    width, panel_h, gap = 560, 96, 34
    left, right, top, bottom = 48, 8, 18, 24
    height = top + 2 * panel_h + gap + bottom
    plot_w = width - left - right
    slot = plot_w / max(len(days), 1)
    bar_w = max(slot * 0.7, 1.0)
    total_test, total_live = sum(test), sum(live)
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
        f'aria-labelledby="chart-days-title chart-days-desc" xmlns="http://www.w3.org/2000/svg">',
        '<title id="chart-days-title">Signals sent per day</title>',
        f'<desc id="chart-days-desc">Last {len(days)} days: {total_test:,} test and '
        f"{total_live:,} live signals sent.</desc>",
    ]
    for panel, (name, series, colour) in enumerate(
        (("Test", test, TEST_COLOUR), ("Live", live, LIVE_COLOUR))
    ):
        panel_top = top + panel * (panel_h + gap)
        base = panel_top + panel_h
        top_value = _nice_max(max(series, default=0))
        parts.append(
            f'<text x="{left}" y="{panel_top - 5}" font-size="13" font-weight="600" '
            f'fill="{INK}">{name}</text>'
        )
        for fraction in (0, 1):
            y = base - panel_h * fraction
            parts.append(
                f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" '
                f'stroke="{GRID}"/>'
            )
            parts.append(
                f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="13" '
                f'fill="{INK}">{_short(int(top_value * fraction))}</text>'
            )
        for index, (day, count) in enumerate(zip(days, series, strict=True)):
            if not count:
                continue
            x = left + slot * index + (slot - bar_w) / 2
            h = max(panel_h * count / top_value, 1.5)
            parts.append(
                f'<rect x="{x:.1f}" y="{base - h:.1f}" width="{bar_w:.1f}" height="{h:.1f}" '
                f'fill="{colour}"><title>{day:%b %d}: {count:,} {name.lower()}</title></rect>'
            )
    for index, day in enumerate(days):
        if (len(days) - 1 - index) % 7 == 0:  # weekly, ending on the last day
            x = left + slot * index + (slot - bar_w) / 2
            anchor = "end" if index == len(days) - 1 else "middle"
            label_x = x + bar_w if anchor == "end" else x + bar_w / 2
            parts.append(
                f'<text x="{label_x:.1f}" y="{height - 6}" text-anchor="{anchor}" '
                f'font-size="13" fill="{INK}">{day:%b %d}</text>'
            )
    parts.append("</svg>")
    return mark_safe("".join(parts))  # numbers and escaped labels only


@dataclass(frozen=True, slots=True)
class Bar:
    field: str  # the field's path, or "" for the whole signal
    problem: str
    count: int
    percent: float  # of the longest bar


def bars(rows: Sequence[tuple[str, str, int]]) -> list[Bar]:
    """Rows (field, problem, count), longest first as given, as bars an HTML list draws:
    labels at the page's own size that wrap instead of being cut."""
    top_value = max((count for _, _, count in rows), default=0) or 1
    return [Bar(field, problem, count, 100 * count / top_value) for field, problem, count in rows]
