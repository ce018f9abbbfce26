"""What an export request must be (SPEC §7, seeds/003), as data and pure checks shared by
the form, the command line and schedules: the signal types by group, the windows a
schedule may use, the file placement rules, the daily limits. No Django models here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo
from typing import Final

from email_validator import EmailNotValidError, validate_email

from signals_app.validation.schema import SIGNAL_TYPES

SIGNAL_GROUPS: Final[dict[str, tuple[str, ...]]] = {
    "Behavior": tuple(SIGNAL_TYPES),
    "E-mail": (
        "emailClick", "emailDelivery", "emailFailure", "emailInbound", "emailOpen",
        "emailSend",
    ),
    "SMS": ("smsClick", "smsDelivery", "smsFailure", "smsInbound", "smsSend"),
    "WhatsApp": (
        "whatsAppClick", "whatsAppDelivery", "whatsAppFailure", "whatsAppInbound",
        "whatsAppOpen", "whatsAppSend",
    ),
}  # fmt: skip
EXPORTABLE_TYPES: Final = frozenset(t for types in SIGNAL_GROUPS.values() for t in types)

# Daily limits per subscription and UTC day.
DAILY_JOBS: Final = 20
DAILY_ROWS: Final = 2_000_000
DAILY_BYTES: Final = 1_000_000_000
RETENTION_DAYS: Final = 28  # Connect deletes export files after this

PARENT_FOLDER_ROOT: Final = "Export/Signals"
_PARENT_FOLDER: Final = re.compile(r"[A-Za-z0-9 _/-]+")
_NAMING_PREFIX: Final = re.compile(r"[A-Za-z0-9 _.-]+")
_PATH: Final = re.compile(r"[A-Za-z0-9 _./-]+")

# Windows relative to a run, in the schedule's time zone.
WINDOWS: Final[dict[str, str]] = {
    "yesterday": "Yesterday",
    "last_7_days": "The last 7 days (up to yesterday)",
    "last_month": "Last month",
    "month_to_date": "This month so far",
}


class Problem(Exception):
    """A part of an export request that cannot be sent; `field` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def window_range(window: str, now: datetime, zone: tzinfo) -> tuple[datetime, datetime]:
    """[start, end) of a window at `now`, in `zone` (whole days there)."""
    today = now.astimezone(zone).date()
    if window == "yesterday":
        return _day(today - timedelta(days=1), zone), _day(today, zone)
    if window == "last_7_days":
        return _day(today - timedelta(days=7), zone), _day(today, zone)
    if window == "last_month":
        first_this = today.replace(day=1)
        first_last = (first_this - timedelta(days=1)).replace(day=1)
        return _day(first_last, zone), _day(first_this, zone)
    if window == "month_to_date":
        return _day(today.replace(day=1), zone), now
    raise Problem("window", f"{window!r} is not a window; choose one of {', '.join(WINDOWS)}")


def _day(day: date, zone: tzinfo) -> datetime:
    return datetime.combine(day, time(0), tzinfo=zone)


@dataclass(frozen=True, slots=True)
class Placement:
    """Where Connect writes the file: its default folder, a folder under Export/Signals
    with a prefix, or an exact path (never both)."""

    parent_folder: str = ""
    naming_prefix: str = ""
    path: str = ""

    def as_sftp(self) -> dict[str, str] | None:
        if self.path:
            return {"path": self.path}
        target = {}
        if self.parent_folder:
            target["parentFolder"] = self.parent_folder
        if self.naming_prefix:
            target["namingPrefix"] = self.naming_prefix
        return target or None


def check_job_name(name: str) -> str:
    name = name.strip()
    if not name:
        raise Problem("job_name", "Give the export a name (it must be unique).")
    if len(name) > 200:
        raise Problem("job_name", f"The name has {len(name)} characters; 200 at most.")
    return name


def check_signal_types(types: list[str]) -> list[str]:
    if not types:
        raise Problem("signal_types", "Choose at least one signal type.")
    unknown = sorted(set(types) - EXPORTABLE_TYPES)
    if unknown:
        raise Problem("signal_types", f"Not a signal type Connect exports: {', '.join(unknown)}.")
    return [t for group in SIGNAL_GROUPS.values() for t in group if t in types]


def check_range(start: datetime, end: datetime) -> None:
    if start >= end:
        raise Problem("timestamp_end", "The end must come after the start.")


def check_notifications(addresses: list[str]) -> list[str]:
    checked = []
    for address in addresses:
        try:
            checked.append(validate_email(address, check_deliverability=False).normalized)
        except EmailNotValidError as exc:
            raise Problem("notifications", f"{address!r} is not an e-mail address: {exc}") from None
    return checked


def check_placement(mode: str, parent_folder: str, naming_prefix: str, path: str) -> Placement:
    """SPEC §7's rules for `to.sftp`, each broken one named."""
    parent_folder, naming_prefix, path = parent_folder.strip(), naming_prefix.strip(), path.strip()
    if mode == "default":
        return Placement()
    if mode == "path":
        if parent_folder or naming_prefix:
            raise Problem("target_path", "A path cannot be combined with a folder or a prefix.")
        if not path:
            raise Problem(
                "target_path", "Give the file's path, e.g. Behavior Signals/Order/Demo_Export.csv."
            )
        if not path.endswith(".csv"):
            raise Problem("target_path", "The path must name a .csv file.")
        if path.startswith("/") or ".." in path.split("/") or "//" in path:
            raise Problem("target_path", "The path must be relative to your folder, without '..'.")
        if not _PATH.fullmatch(path):
            raise Problem(
                "target_path",
                "The path may use letters, digits, spaces, '-', '_', '.' and '/' only.",
            )
        return Placement(path=path)
    if mode == "folder":
        if path:
            raise Problem("target_path", "A path cannot be combined with a folder or a prefix.")
        folder = parent_folder.rstrip("/")
        if not folder:
            raise Problem("parent_folder", f"Give a folder under {PARENT_FOLDER_ROOT}.")
        if folder != PARENT_FOLDER_ROOT and not folder.startswith(PARENT_FOLDER_ROOT + "/"):
            raise Problem("parent_folder", f"The folder must start with {PARENT_FOLDER_ROOT}.")
        if ".." in folder.split("/") or "//" in folder:
            raise Problem("parent_folder", "The folder must not contain '..' or empty parts.")
        if not _PARENT_FOLDER.fullmatch(folder):
            raise Problem(
                "parent_folder",
                "The folder may use letters, digits, spaces, '-', '_' and '/' only.",
            )
        if naming_prefix and not _NAMING_PREFIX.fullmatch(naming_prefix):
            raise Problem(
                "naming_prefix",
                "The prefix may use letters, digits, spaces, '-', '_' and '.' only.",
            )
        return Placement(parent_folder=folder, naming_prefix=naming_prefix)
    raise Problem("placement", "Choose where Connect puts the file.")


def suggested_job_name(types: list[str], window: str, now: datetime) -> str:
    """A name that says what and when, unique enough to keep: "order, addToCart —
    yesterday — 2026-12-04 17:05"."""
    what = ", ".join(types[:3]) + (f" +{len(types) - 3}" if len(types) > 3 else "")
    when = WINDOWS.get(window, "custom range").lower()
    return f"{what or 'Signals'} — {when} — {now:%Y-%m-%d %H:%M:%S}"
