"""An injectable clock: tests shift it (control endpoint) to cross a UTC day or age files."""

from __future__ import annotations

import time
from datetime import UTC, datetime


class Clock:
    def __init__(self, offset_seconds: float = 0.0) -> None:
        self.offset_seconds = offset_seconds

    def time(self) -> float:
        return time.time() + self.offset_seconds

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.time(), UTC)


def iso(moment: datetime) -> str:
    """UTC, millisecond precision, `Z` suffix: the vendor's own timestamp format."""
    return (
        moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    )


def iso_ts(ts: float) -> str:
    return iso(datetime.fromtimestamp(ts, UTC))


def parse_iso(text: str) -> datetime:
    """ISO 8601 date-time; a value without a time zone is taken as UTC."""
    moment = datetime.fromisoformat(text.strip())
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment
