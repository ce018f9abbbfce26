"""Template helpers for the import pages: role checks for the navigation, number formats."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django import template
from django.utils import timezone

from signals_app.access import can_import, sees_all_imports, sees_health
from signals_app.audit_words import describe

register = template.Library()


@register.filter
def may_import(user: Any) -> bool:
    return can_import(user)


@register.filter
def sees_all(user: Any) -> bool:
    return sees_all_imports(user)


@register.filter
def may_see_health(user: Any) -> bool:
    return sees_health(user)


@register.filter
def percent(part: int | None, whole: int | None) -> str:
    """12, 400 -> "3.0 %"; nothing to divide by -> "—"."""
    if not whole:
        return "—"
    return f"{100 * (part or 0) / whole:.1f} %"


@register.filter
def millis(value: int | None) -> str:
    if value is None:
        return "—"
    return f"{value / 1000:.2f} s" if value >= 1000 else f"{value} ms"


@register.filter
def num(value: int | None) -> str:
    """12345 -> "12,345" (without enabling django.contrib.humanize)."""
    return "—" if value is None else f"{value:,}"


@register.filter
def share(value: float | None) -> str:
    """0.1234 -> "12.3 %"; tiny but non-zero shares do not round to nothing."""
    if not value:
        return "0 %"
    if value < 0.001:
        return "< 0.1 %"
    return f"{100 * value:.1f} %"


@register.filter
def when(value: datetime | None) -> str:
    """One way to write a moment on every page: "Dec 4, 18:25" in the local time zone,
    with the year when it is not this year."""
    if value is None:
        return "—"
    local = timezone.localtime(value)
    if local.year == timezone.localtime().year:
        return f"{local:%b} {local.day}, {local:%H:%M}"
    return f"{local:%b} {local.day}, {local.year} {local:%H:%M}"


@register.filter
def audit_sentence(event: Any) -> str:
    """An audit event in people's words (signals_app.audit_words)."""
    return describe(event.action, event.detail)


FORMAT_NAMES = {
    "ndjson": "NDJSON",
    "json-array": "JSON array",
    "json-signals": 'JSON {"signals": …}',
    "json-single": "JSON, one signal",
    "csv": "CSV",
    "export-csv": "Connect export CSV",
}


@register.filter
def format_name(value: str | None) -> str:
    """A reader's format as people name it: "json-array" -> "JSON array"."""
    return FORMAT_NAMES.get(value or "", (value or "").upper())
