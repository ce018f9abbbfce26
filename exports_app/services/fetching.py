"""Fetching an export file into the archive (SPEC §7–§8): streamed from SFTP to a temporary
name, resumed after a dropped connection (the bytes already there are kept, the SHA-256
carried on), checked (its size, its gzip, its CSV), and only then moved into place and
marked fetched — never a partial file marked complete. The archive keeps the file after
Connect deletes it (28 days) for EXPORT_ARCHIVE_DAYS.
"""

from __future__ import annotations

import csv
import functools
import gzip
import io
import logging
import time
import uuid
import zlib
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import IO, Any, cast

import orjson
from django.conf import settings
from django.core.exceptions import SuspiciousFileOperation
from django.db import transaction
from django.utils import timezone

from connectadmin import alerts, files
from exports_app import sftp_client, transfer
from exports_app.models import ExportFile, ExportJob, JobStatus
from exports_app.services.keys import account_session
from signals_app.models import audit

log = logging.getLogger(__name__)

# Sleeping between reconnects; replaced in tests.
sleep = time.sleep


class FetchFailed(Exception):
    """The file could not be fetched; str() says why, for a person."""


@dataclass(frozen=True, slots=True)
class Contents:
    rows: int
    by_type: dict[str, int]


def new_stored_name() -> str:
    return uuid.uuid4().hex + ".csv.gz"


def is_stored(export_file: ExportFile) -> bool:
    """Whether the archive (the exports storage, connectadmin.files) holds the file."""
    return files.exports().exists(export_file.stored_name)


def open_stored(export_file: ExportFile) -> IO[bytes]:
    """The archived file, to read as a stream."""
    return cast(IO[bytes], files.exports().open(export_file.stored_name, "rb"))


def queue_fetch(export_file: ExportFile) -> None:
    from exports_app.tasks import fetch_export  # the tasks module imports this one

    transaction.on_commit(functools.partial(fetch_export.delay, export_file.pk))


def file_fetch(*, file_id: int, user: Any = None) -> ExportFile:
    """Fetch the file (see the module docstring); FetchFailed with the reason. Safe to run
    again: a fetched file is left alone, a partial one resumed. Its rows are known when it
    is marked fetched; its rows per signal type are counted right after (count_types)."""
    export_file = ExportFile.objects.select_related("account").get(pk=file_id)
    if export_file.fetched and is_stored(export_file):
        if not export_file.types_counted:
            count_types(export_file)
        return export_file
    storage = files.exports()
    try:
        # Before any name of ours is made from it: a remote name that leaves the export
        # folder, or an archive name that leaves the archive, is refused whole.
        sftp_client.safe_remote_path(export_file.remote_path)
        partial = files.partial_path(storage, export_file.stored_name)
    except (sftp_client.SftpError, SuspiciousFileOperation) as exc:
        _failed(export_file, str(exc))
        raise FetchFailed(str(exc)) from None
    try:
        arrived = transfer.transfer(
            functools.partial(account_session, export_file.account),
            export_file.remote_path,
            partial,
            max_inflated=settings.EXPORT_MAX_INFLATED_BYTES,
            sleep=sleep,
        )
    except transfer.TransferFailed as exc:  # the bytes so far stay, for the next try
        _failed(export_file, str(exc))
        raise FetchFailed(str(exc)) from None
    except transfer.NotAnExport as exc:  # whole but unusable: nothing to resume
        partial.unlink(missing_ok=True)
        _failed(export_file, str(exc))
        raise FetchFailed(str(exc)) from None
    files.put_whole(storage, export_file.stored_name, partial)
    now = timezone.now()
    with transaction.atomic():
        ExportFile.objects.filter(pk=export_file.pk).update(
            size_bytes=arrived.size,
            remote_size=arrived.size,
            sha256=arrived.sha256,
            rows=arrived.rows,
            rows_by_type={},
            types_counted=False,
            fetched=True,
            fetched_at=now,
            fetched_by=user if getattr(user, "pk", None) else None,
            error="",
            keep_until=now + timedelta(days=settings.EXPORT_ARCHIVE_DAYS),
            removed_at=None,
        )
        fetched = ExportJob.objects.filter(file=export_file).exclude(status=JobStatus.FETCHED)
        job_ids = list(fetched.values_list("pk", flat=True))
        ExportJob.objects.filter(pk__in=job_ids).update(
            status=JobStatus.FETCHED, finished_at=now, error_message=""
        )
        transaction.on_commit(functools.partial(alerts.export_jobs_ended, job_ids))
    audit(
        action="export.fetched",
        actor=user,
        account=export_file.account.name,
        path=export_file.remote_path,
        bytes=arrived.size,
        rows=arrived.rows,
        sha256=arrived.sha256,
    )
    export_file.refresh_from_db()
    count_types(export_file)
    return export_file


def archive_purge(*, now: datetime | None = None) -> int:
    """Take the files whose retention (EXPORT_ARCHIVE_DAYS from their fetch) has passed out
    of the archive: the bytes go, the record stays with its rows, size and SHA-256, saying
    when it was removed. Returns how many went. Run hourly by celery beat."""
    now = now or timezone.now()
    removed = 0
    for export_file in ExportFile.objects.filter(fetched=True, keep_until__lte=now):
        files.exports().delete(export_file.stored_name)
        ExportFile.objects.filter(pk=export_file.pk).update(fetched=False, removed_at=now)
        audit(
            action="export.archive_removed",
            actor=None,
            account=export_file.account.name,
            path=export_file.remote_path,
            kept_until=export_file.keep_until.isoformat() if export_file.keep_until else "",
        )
        removed += 1
    return removed


def count_types(export_file: ExportFile) -> None:
    """Rows per signal type of a fetched file (a full CSV read: slower than the row count,
    so after the file is marked fetched; the pages say it is being counted meanwhile)."""
    try:
        with open_stored(export_file) as raw:
            contents = read_contents(raw)
    except FetchFailed as exc:  # fetched and counted, yet not readable as CSV rows
        log.warning("counting types of %s: %s", export_file.remote_path, exc)
        by_type = {"(rows not readable)": export_file.rows or 0}
    else:
        by_type = contents.by_type
    ExportFile.objects.filter(pk=export_file.pk).update(rows_by_type=by_type, types_counted=True)
    export_file.rows_by_type, export_file.types_counted = by_type, True


class _Capped(io.RawIOBase):
    """The inflated bytes of a gzip file, refusing to go past a cap."""

    def __init__(self, raw: IO[bytes], cap: int) -> None:
        self._gzip = gzip.GzipFile(fileobj=raw, mode="rb")
        self._cap = cap
        self._read = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._gzip.read1(len(buffer))
        self._read += len(data)
        if self._read > self._cap:
            raise FetchFailed(
                f"the file inflates past {self._cap / 1e9:.1f} GB, the most an export file "
                "may (EXPORT_MAX_INFLATED_MB)"
            )
        buffer[: len(data)] = data
        return len(data)


def read_contents(raw: IO[bytes]) -> Contents:
    """Rows and rows per signal type of an export CSV (gzip), read as a stream from `raw`
    (seekable, at its start); FetchFailed when it is not what Connect writes."""
    by_type: Counter[str] = Counter()
    rows = 0
    if raw.read(2) != b"\x1f\x8b":
        raise FetchFailed("the file is not gzip data, as Connect's export files are")
    raw.seek(0)
    stream = io.TextIOWrapper(
        io.BufferedReader(_Capped(raw, settings.EXPORT_MAX_INFLATED_BYTES), 1 << 20),
        encoding="utf-8",
        errors="replace",
        newline="",
    )
    try:
        reader = csv.reader(stream)
        header = next(reader, None)
        if header is None:
            raise FetchFailed("the file holds no CSV header")
        names = [name.strip().upper() for name in header]
        type_at = names.index("SIGNAL_TYPE") if "SIGNAL_TYPE" in names else None
        content_at = names.index("SIGNAL_CONTENT") if "SIGNAL_CONTENT" in names else None
        for row in reader:
            rows += 1
            by_type[_signal_type(row, type_at, content_at)] += 1
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise FetchFailed(
            f"the gzip data is damaged or cut short after {rows} rows ({exc})"
        ) from None
    except csv.Error as exc:
        raise FetchFailed(f"the CSV is malformed after {rows} rows ({exc})") from None
    return Contents(rows, dict(by_type.most_common()))


def _signal_type(row: list[str], type_at: int | None, content_at: int | None) -> str:
    if type_at is not None and type_at < len(row) and row[type_at]:
        return row[type_at]
    if content_at is not None and content_at < len(row) and row[content_at]:
        try:
            content = orjson.loads(row[content_at])
        except orjson.JSONDecodeError:
            return "(unreadable content)"
        if isinstance(content, dict) and isinstance(content.get("signalType"), str):
            return str(content["signalType"])
    return "(none)"


def _failed(export_file: ExportFile, reason: str) -> None:
    ExportFile.objects.filter(pk=export_file.pk).update(error=reason)
    stopped = ExportJob.objects.filter(file=export_file, status=JobStatus.FETCHING)
    job_ids = list(stopped.values_list("pk", flat=True))
    ExportJob.objects.filter(pk__in=job_ids).update(
        status=JobStatus.FAILED,
        error_message=f"Fetching the file failed: {reason}",
        finished_at=timezone.now(),
    )
    alerts.export_jobs_ended(job_ids)
    audit(action="export.fetch_failed", path=export_file.remote_path, reason=reason)
