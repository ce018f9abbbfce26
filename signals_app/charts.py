"""Charts drawn by the app itself: inline SVG strings, no JavaScript, no CDN.

Each chart carries a <title> and <desc> for screen readers, and the template shows the same
numbers as a table beside it, so the chart is never the only way to read them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

TEST_COLOUR = "#8fb0f0"
LIVE_COLOUR = "#2457d6"
BAR_COLOUR = "#c2453d"
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
    """Stacked columns: signals sent per day, test below live."""
    width, height = 560, 200
    left, right, top, bottom = 44, 8, 10, 24
    plot_w, plot_h = width - left - right, height - top - bottom
    top_value = _nice_max(max((t + v for t, v in zip(test, live, strict=True)), default=0))
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
    for fraction in (0, 0.5, 1):
        y = top + plot_h * (1 - fraction)
        parts.append(
            f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="{GRID}"/>'
        )
        parts.append(
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11" '
            f'fill="{INK}">{_short(int(top_value * fraction))}</text>'
        )
    for index, (day, t, v) in enumerate(zip(days, test, live, strict=True)):
        x = left + slot * index + (slot - bar_w) / 2
        y_base: float = top + plot_h
        label = f"{day:%b %d}: {t:,} test, {v:,} live"
        for count, colour in ((t, TEST_COLOUR), (v, LIVE_COLOUR)):
            if not count:
                continue
            h = plot_h * count / top_value
            y_base -= h
            parts.append(
                f'<rect x="{x:.1f}" y="{y_base:.1f}" width="{bar_w:.1f}" height="{h:.1f}" '
                f'fill="{colour}"><title>{escape(label)}</title></rect>'
            )
        if (len(days) - 1 - index) % 7 == 0:  # weekly, ending on the last day
            anchor = "end" if index == len(days) - 1 else "middle"
            label_x = x + bar_w if anchor == "end" else x + bar_w / 2
            parts.append(
                f'<text x="{label_x:.1f}" y="{height - 8}" text-anchor="{anchor}" '
                f'font-size="11" fill="{INK}">{day:%b %d}</text>'
            )
    parts.append("</svg>")
    return mark_safe("".join(parts))  # numbers and escaped labels only


def horizontal_bars(rows: Sequence[tuple[str, int]], *, title: str) -> SafeString:
    """One bar per row, longest first as given: rejection causes."""
    row_h, label_w, width = 26, 250, 560
    height = max(len(rows), 1) * row_h + 8
    plot_w = width - label_w - 56
    top_value = max((count for _, count in rows), default=0) or 1
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
    ]
    for index, (label, count) in enumerate(rows):
        y = 4 + index * row_h
        w = max(plot_w * count / top_value, 2)
        shown = label if len(label) <= 34 else "…" + label[-33:]  # fits label_w at 12px
        parts.append(
            f'<text x="{label_w - 8}" y="{y + 17}" text-anchor="end" font-size="12" '
            f'fill="{INK}">{escape(shown)}</text>'
        )
        parts.append(
            f'<rect x="{label_w}" y="{y + 4}" width="{w:.1f}" height="{row_h - 8}" rx="3" '
            f'fill="{BAR_COLOUR}"><title>{escape(label)}: {count:,}</title></rect>'
        )
        parts.append(
            f'<text x="{label_w + w + 6:.1f}" y="{y + 17}" font-size="12" '
            f'fill="{INK}">{count:,}</text>'
        )
    parts.append("</svg>")
    return mark_safe("".join(parts))  # numbers and escaped labels only
