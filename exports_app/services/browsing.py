"""Browsing the results: an account's SFTP tree under Export/Signals grouped by date (files
the app did not ask for too), with what the archive holds of them; asking for a file to be
fetched; the first rows of an archived file, for a preview in the browser."""

from __future__ import annotations

import csv
import gzip
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import orjson
from django.db import transaction

from connectadmin.models import ConnectAccount
from exports_app import rules
from exports_app.models import ExportFile
from exports_app.services import fetching
from exports_app.services.keys import account_session
from exports_app.sftp_client import RemoteEntry, safe_remote_path

PREVIEW_COLUMNS = (
    "SIGNAL_TYPE", "SIGNAL_TIMESTAMP", "RECEIVED_TIMESTAMP", "EMAIL", "SMS", "WHATSAPP",
    "CONTACT_KEY", "ACOUSTIC_APP_KEY", "TLTSID",
)  # fmt: skip
PREVIEW_SCAN_ROWS = 200_000  # a filtered preview stops looking after this many rows


@dataclass
class RemoteFile:
    entry: RemoteEntry
    expires: datetime  # when Connect deletes it
    archived: ExportFile | None

    @property
    def name(self) -> str:
        return self.entry.path.rsplit("/", 1)[-1]


@dataclass
class Day:
    day: date | None
    files: list[RemoteFile] = field(default_factory=list)


def tree(account: ConnectAccount) -> list[Day]:
    """The account's export files on SFTP, newest day first (SftpError if it cannot log on)."""
    with account_session(account) as sftp:
        entries = sftp.tree()
    archived = {f.remote_path: f for f in ExportFile.objects.filter(account=account)}
    days: dict[date | None, Day] = {}
    for entry in entries:
        day = _day_of(entry)
        days.setdefault(day, Day(day)).files.append(
            RemoteFile(
                entry,
                entry.mtime + timedelta(days=rules.RETENTION_DAYS),
                archived.get(entry.path),
            )
        )
    return sorted(days.values(), key=lambda d: (d.day is not None, d.day), reverse=True)


def _day_of(entry: RemoteEntry) -> date | None:
    """Connect groups files in folders named by date; else the file's own date."""
    for part in entry.path.split("/"):
        try:
            return date.fromisoformat(part)
        except ValueError:
            continue
    return entry.mtime.date()


def fetch_requested(*, account: ConnectAccount, remote_path: str, user: Any) -> ExportFile:
    """Queue the fetch of a file seen on SFTP (a fetched one is left as it is)."""
    path = safe_remote_path(remote_path)
    with transaction.atomic():
        export_file, _ = ExportFile.objects.get_or_create(
            account=account,
            remote_path=path,
            defaults={"stored_name": fetching.new_stored_name(), "fetched_by": user},
        )
        if not export_file.fetched:
            ExportFile.objects.filter(pk=export_file.pk).update(error="", removed_at=None)
            fetching.queue_fetch(export_file)
    return export_file


@dataclass
class PreviewRow:
    cells: list[str]  # one per Preview.columns
    content: str  # SIGNAL_CONTENT, as indented JSON when it parses

    @property
    def lead(self) -> list[str]:
        return self.cells[:LEAD]

    @property
    def rest(self) -> list[str]:
        return self.cells[LEAD:]


LEAD = 2  # SIGNAL_TYPE and SIGNAL_TIMESTAMP come before the content; the rest after


@dataclass
class Preview:
    columns: list[str]  # those with a value in some row shown
    rows: list[PreviewRow]
    scanned: int
    complete: bool  # every row of the file was looked at

    @property
    def lead(self) -> list[str]:
        return self.columns[:LEAD]

    @property
    def rest(self) -> list[str]:
        return self.columns[LEAD:]


def preview(export_file: ExportFile, *, signal_type: str = "", limit: int = 25) -> Preview:
    """The first `limit` rows (of `signal_type` only, when given) of an archived file."""
    rows: list[PreviewRow] = []
    scanned = 0
    with (
        fetching.open_stored(export_file) as raw,
        gzip.open(raw, "rt", encoding="utf-8", errors="replace", newline="") as text,
    ):
        reader = csv.reader(text)
        header = [name.strip().upper() for name in next(reader, [])]
        columns = [c for c in PREVIEW_COLUMNS if c in header]
        if "SIGNAL_TYPE" not in columns:  # told from SIGNAL_CONTENT's signalType then
            columns.insert(0, "SIGNAL_TYPE")
        at = {name: i for i, name in enumerate(header)}
        complete = True
        for row in reader:
            scanned += 1
            kind = _cell(row, at, "SIGNAL_TYPE")
            content_text = _cell(row, at, "SIGNAL_CONTENT")
            content = _content(content_text)
            if not kind and isinstance(content, dict):
                kind = str(content.get("signalType") or "")
            if signal_type and kind != signal_type:
                if scanned >= PREVIEW_SCAN_ROWS:
                    complete = False
                    break
                continue
            cells = [kind if c == "SIGNAL_TYPE" else _cell(row, at, c) for c in columns]
            shown = (
                orjson.dumps(content, option=orjson.OPT_INDENT_2).decode()
                if content is not None
                else content_text
            )
            rows.append(PreviewRow(cells, shown))
            if len(rows) >= limit:
                complete = False
                break
    keep = [
        i
        for i, name in enumerate(columns)
        if name in ("SIGNAL_TYPE", "SIGNAL_TIMESTAMP") or any(r.cells[i] for r in rows)
    ]
    for shown_row in rows:
        shown_row.cells = [shown_row.cells[i] for i in keep]
    return Preview([columns[i] for i in keep], rows, scanned, complete)


def _cell(row: list[str], at: dict[str, int], name: str) -> str:
    i = at.get(name)
    return row[i] if i is not None and i < len(row) else ""


def _content(text: str) -> Any:
    if not text:
        return None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return None


def expires_at(export_file: ExportFile) -> datetime | None:
    """When Connect deletes the file from SFTP (28 days after it was written)."""
    written = export_file.remote_mtime or (
        export_file.jobs.order_by("ready_at").values_list("ready_at", flat=True).first()
    )
    return written + timedelta(days=rules.RETENTION_DAYS) if written else None
