"""Sizes for people: a limit is written as "16 MiB", never "16777216 bytes"."""

from __future__ import annotations


def human_size(size: int) -> str:
    """1073741824 -> "1 GiB"; exact multiples stay whole numbers."""
    value = float(size)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")
