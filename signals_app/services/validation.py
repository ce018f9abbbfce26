"""Validation of an import (the Celery task's body).

The file is read where a crash cannot spread: in a forked child (`reading.read_import`)
with limits on its memory (SIGNALS_VALIDATION_MEMORY_BYTES beyond the worker's own size)
and processor time (SIGNALS_VALIDATION_CPU_SECONDS), and a limit on how long the worker
waits for it (SIGNALS_VALIDATION_MAX_SECONDS). The child writes the findings and rejected
records to keep into a folder; this process, which alone talks to the database, then
stores them. Whatever the file does to the child — a crash in a parser, memory or time
running out — ends the child, and the import is *unreadable* with a message that names the
cause; the worker stays up and nothing is redelivered. A worker that dies anyway (killed
from outside) comes back to the import at most SIGNALS_TASK_MAX_STARTS times
(`deliveries`).

Progress: the child and its parts count the bytes and signals read in memory shared with
this process (`ReadCounters`), which a thread here writes to the import's row twice a
second; then the rows being stored.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
from django.conf import settings
from django.db import connection as db_connection
from django.db import transaction
from django.utils import timezone

from connectadmin.models import AppKey
from signals_app.models import (
    ImportFinding,
    ImportStatus,
    RejectedSet,
    RejectedSignal,
    SignalImport,
    audit,
)
from signals_app.services.deliveries import VALIDATE, GaveUp, counted_start
from signals_app.services.reading import (
    OTHER_ACCOUNT,
    UNREGISTERED_APP_KEY,
    KeyDirectory,
    ReadJob,
    ReadResult,
    read_import,
)
from signals_app.services.records import validation_tier
from signals_app.services.upload import import_file_path
from signals_app.validation import scratch
from signals_app.validation.errors import UnreadableFile
from signals_app.validation.findings import ERROR, Summary, path_pattern
from signals_app.validation.processes import (
    ChildDied,
    Forked,
    Limits,
    ReadCounters,
    TimedOut,
    signal_name,
)
from signals_app.validation.validate import PARALLEL_MIN_BYTES, Options

logger = logging.getLogger(__name__)

__all__ = ["OTHER_ACCOUNT", "UNREGISTERED_APP_KEY", "import_validate", "problem_counts"]

# Rows per INSERT: large enough to be cheap, small enough to keep memory flat.
FINDINGS_CHUNK = 2000
REJECTED_CHUNK = 200
REJECTED_CHUNK_BYTES = 8 * 1024**2  # a record may be up to 16 MB: flush by size too
PROGRESS_EVERY_SECONDS = 0.5
# Column sizes of ImportFinding: an unknown field's name comes from the file.
_PATH_MAX = 500
_CODE_MAX = 40

# Statuses from which validation may (re)start: once sending has begun the findings are
# the ledger's reference and must not change under it.
_VALIDATABLE = {
    ImportStatus.UPLOADED,
    ImportStatus.VALIDATING,
    ImportStatus.VALIDATED,
    ImportStatus.FAILED,
}


def import_validate(*, import_id: int) -> None:
    """Validate the import's file and store findings, rejected signals and totals.
    Re-runnable: a run starts by deleting what an earlier (killed) run stored."""
    signal_import = SignalImport.objects.select_related("app_key__account").get(pk=import_id)
    if (
        signal_import.status not in _VALIDATABLE
        or signal_import.promoted_from_id is not None
        or signal_import.batches.exists()
    ):
        logger.info("import %s: not validated again (status %s)", import_id, signal_import.status)
        return
    try:
        with counted_start(job=VALIDATE, import_id=import_id):
            _validate(signal_import)
    except GaveUp as exc:
        _delete_validation_rows(signal_import)
        _mark_unreadable(
            import_id,
            f"the worker reading it stopped {exc.starts} times before it was read (killed "
            "from outside, or out of memory), so it is not read again",
        )
        audit(action="import.validation_abandoned", signal_import=signal_import, starts=exc.starts)


def _validate(signal_import: SignalImport) -> None:
    import_id = signal_import.pk
    SignalImport.objects.filter(pk=import_id).update(
        status=ImportStatus.VALIDATING,
        validation_started_at=timezone.now(),
        validation_finished_at=None,
        validation_phase="reading",
        rows_to_store=0,
        rows_stored=0,
        error_message="",
        bytes_read=0,
        signals=0,
    )
    _delete_validation_rows(signal_import)
    path = import_file_path(signal_import)
    size = signal_import.size_bytes or path.stat().st_size
    with scratch.folder("validate") as folder:
        job = _read_job(signal_import, path, folder, size)
        counters = ReadCounters()
        reader = Forked(read_import, (job, counters), limits=_limits())
        try:
            with _ReadProgress(import_id, counters, size):
                result = reader.result(timeout=_max_seconds())
        except UnreadableFile as exc:
            _mark_unreadable(import_id, str(exc))
            return
        except (MemoryError, ChildDied, TimedOut) as exc:
            logger.warning("import %s: reading stopped: %r", import_id, exc)
            _mark_unreadable(import_id, _cause(exc))
            return
        except Exception as exc:  # the reader itself broke: say so, do not loop on it
            logger.exception("import %s: the reader failed", import_id)
            _mark_failed(import_id, exc)
            return
        finally:
            reader.kill()  # a no-op once it has answered
        try:
            _store(import_id, result)
        except BaseException as exc:
            _delete_validation_rows(signal_import)
            _mark_failed(import_id, exc)
            raise
    summary = result.summary
    _refresh_preview_statistics(result.findings_stored)
    SignalImport.objects.filter(pk=import_id).update(
        status=ImportStatus.VALIDATED,
        validation_finished_at=timezone.now(),
        validation_phase="",
        file_format=result.file_format,
        compressed=result.compressed,
        bytes_read=size,
        signals=summary.signals,
        valid=summary.valid,
        rejected=summary.rejected,
        errors=summary.errors,
        warnings=summary.warnings,
        contact_key_only=summary.contact_key_only,
        problem_counts=problem_counts(summary),
        fix_suggestions=result.fix_suggestions,
        findings_not_stored=result.findings_not_stored,
        records_not_stored=result.records_not_stored,
    )
    audit(
        action="import.validated",
        signal_import=signal_import,
        signals=summary.signals,
        valid=summary.valid,
        rejected=summary.rejected,
        findings_not_stored=result.findings_not_stored,
    )


def _read_job(signal_import: SignalImport, path: Path, folder: str, size: int) -> ReadJob:
    app_key = signal_import.app_key
    account = app_key.account
    own: set[str] = set()
    others: dict[str, str] = {}
    for key, account_id, account_name in AppKey.objects.values_list(
        "key", "account_id", "account__name"
    ):
        if account_id == account.pk:
            own.add(key)
        else:
            others[key] = account_name
    return ReadJob(
        path=str(path),
        folder=folder,
        options=Options(tier=validation_tier(app_key.tier), default_app_key=app_key.key),
        keys=KeyDirectory(account=account.name, own=frozenset(own), others=others),
        max_inflated=settings.SIGNALS_GZIP_MAX_INFLATED_BYTES,
        workers=_validation_workers(),
        parallel_min_bytes=int(getattr(settings, "SIGNALS_PARALLEL_MIN_BYTES", PARALLEL_MIN_BYTES)),
        storage_budget=storage_budget(size),
    )


def storage_budget(size: int) -> int:
    """Bytes an import's findings and rejected records may take in the database: a base
    plus a multiple of the file's size (SPEC §5: no file makes the database hold more than
    a bounded multiple of itself)."""
    base = int(getattr(settings, "SIGNALS_STORED_FINDINGS_BASE_BYTES", 16 * 10**6))
    factor = float(getattr(settings, "SIGNALS_STORED_FINDINGS_PER_FILE_BYTE", 4))
    return base + int(factor * size)


def _limits() -> Limits:
    return Limits(
        memory_bytes=int(getattr(settings, "SIGNALS_VALIDATION_MEMORY_BYTES", 2 * 1024**3)),
        cpu_seconds=int(getattr(settings, "SIGNALS_VALIDATION_CPU_SECONDS", 15 * 60)),
    )


def _max_seconds() -> int:
    return int(getattr(settings, "SIGNALS_VALIDATION_MAX_SECONDS", 30 * 60))


def _validation_workers() -> int:
    return int(getattr(settings, "SIGNALS_VALIDATION_WORKERS", 0)) or (os.cpu_count() or 1)


def _cause(exc: BaseException) -> str:
    """The sentence an unreadable import shows for a reader that did not come back."""
    if isinstance(exc, MemoryError):
        memory = _limits().memory_bytes or 0
        return (
            f"reading it needed more than {memory / 1024**3:.1f} GiB of memory, the most one "
            "file may take (a signal too large to hold, or a file the reader cannot follow)"
        )
    if isinstance(exc, TimedOut):
        return (
            f"the file took longer than {_minutes(exc.seconds)} to read, the most one file may take"
        )
    assert isinstance(exc, ChildDied)
    if exc.signal == signal.SIGXCPU:
        cpu = _limits().cpu_seconds or 0
        return (
            f"the file took longer than {_minutes(cpu)} of processor time to read, the most "
            "one file may take"
        )
    if exc.signal == signal.SIGKILL:
        return (
            "the process reading it was killed (signal SIGKILL), most likely because the "
            "machine ran out of memory reading it"
        )
    if exc.signal is not None:
        return (
            f"the reader crashed on it (signal {signal_name(exc.signal)}): something in the "
            "file is beyond what the reader can take"
        )
    return f"the process reading it stopped (exit status {exc.exit_code}) without an answer"


def _minutes(seconds: float) -> str:
    if seconds < 120:
        return "1 second" if round(seconds) == 1 else f"{seconds:.0f} seconds"
    return f"{seconds / 60:.0f} minutes"


class _ReadProgress:
    """Writes the bytes and signals the reader has read (its shared counters) to the
    import's row twice a second, from a thread of this process."""

    def __init__(self, import_id: int, counters: ReadCounters, size: int) -> None:
        self.import_id = import_id
        self.counters = counters
        self.size = max(size, 1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="validation-progress", daemon=True)

    def __enter__(self) -> _ReadProgress:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _watch(self) -> None:
        try:
            shown = (-1, -1)
            while not self._stop.wait(max(PROGRESS_EVERY_SECONDS, 0.05)):
                read, signals = self.counters.totals()
                now = (min(read, self.size), signals)
                if now > shown:  # parts that finished leave the sum: never go back
                    shown = now
                    SignalImport.objects.filter(pk=self.import_id).update(
                        bytes_read=now[0], signals=now[1]
                    )
        except Exception:  # progress must never break the validation
            logger.debug("import %s: no validation progress", self.import_id, exc_info=True)
        finally:
            db_connection.close()  # this thread's own connection


# --- storing what the reader kept ----------------------------------------------------------


def _store(import_id: int, result: ReadResult) -> None:
    """Load the reader's files: findings, rejected records and the rejected set, with the
    rows stored so far on the import's row for its progress."""
    total = result.findings_stored + result.records_stored
    SignalImport.objects.filter(pk=import_id).update(
        validation_phase="storing", rows_to_store=total, rows_stored=0
    )
    progress = _StoreProgress(import_id)
    findings: list[ImportFinding] = []
    for data in _lines(result.findings_path):
        findings.append(_finding_row(import_id, data))
        if len(findings) >= FINDINGS_CHUNK:
            ImportFinding.objects.bulk_create(findings)
            progress.add(len(findings))
            findings = []
    if findings:
        ImportFinding.objects.bulk_create(findings)
        progress.add(len(findings))
    rejected: list[RejectedSignal] = []
    chunk_bytes = 0
    for data in _lines(result.rejected_path):
        rejected.append(
            RejectedSignal(
                signal_import_id=import_id,
                signal=data["signal"],
                line=data["line"],
                raw=data["raw"],
            )
        )
        chunk_bytes += len(data["raw"])
        if len(rejected) >= REJECTED_CHUNK or chunk_bytes >= REJECTED_CHUNK_BYTES:
            RejectedSignal.objects.bulk_create(rejected)
            progress.add(len(rejected))
            rejected, chunk_bytes = [], 0
    if rejected:
        RejectedSignal.objects.bulk_create(rejected)
        progress.add(len(rejected))
    RejectedSet.objects.create(
        signal_import_id=import_id, flags=result.rejected_flags, count=result.summary.rejected
    )
    progress.flush()


class _StoreProgress:
    def __init__(self, import_id: int) -> None:
        self.import_id = import_id
        self.stored = 0
        self.shown_at = time.monotonic()

    def add(self, rows: int) -> None:
        self.stored += rows
        if time.monotonic() - self.shown_at >= PROGRESS_EVERY_SECONDS:
            self.flush()

    def flush(self) -> None:
        self.shown_at = time.monotonic()
        SignalImport.objects.filter(pk=self.import_id).update(rows_stored=self.stored)


def _lines(path: str) -> Iterator[dict[str, Any]]:
    with open(path, "rb") as file:
        for line in file:
            yield orjson.loads(line)


def _finding_row(import_id: int, data: dict[str, Any]) -> ImportFinding:
    return ImportFinding(
        signal_import_id=import_id,
        signal=data["signal"],
        line=data["line"],
        path=_clean_text(data["path"], _PATH_MAX),
        path_pattern=_clean_text(path_pattern(data["path"]), _PATH_MAX),
        severity=data["severity"],
        code=data["code"][:_CODE_MAX],
        message=_clean_text(data["message"]),
    )


def _clean_text(text: str, limit: int | None = None) -> str:
    text = text.replace("\x00", "\ufffd")  # PostgreSQL refuses NUL in text
    return text[:limit] if limit is not None else text


ANALYZE_MIN_FINDINGS = 10_000


def _refresh_preview_statistics(findings: int) -> None:
    """ANALYZE the findings table after a large bulk insert, before the import
    shows as validated: with the statistics of an empty table PostgreSQL plans the problem
    table's GROUP BY and ROW_NUMBER() badly (measured on 120,000 findings: 446 ms before
    ANALYZE, 126 ms after). Autovacuum would get there too, but later."""
    if findings < ANALYZE_MIN_FINDINGS or db_connection.vendor != "postgresql":
        return
    with db_connection.cursor() as cursor:  # ~150 ms for 120,000 findings
        cursor.execute(f"ANALYZE {ImportFinding._meta.db_table}")


# --- the import's row ----------------------------------------------------------------------


def _delete_validation_rows(signal_import: SignalImport) -> None:
    with transaction.atomic():
        ImportFinding.objects.filter(signal_import=signal_import).delete()
        RejectedSignal.objects.filter(signal_import=signal_import).delete()
        RejectedSet.objects.filter(signal_import=signal_import).delete()


def _mark_unreadable(import_id: int, reason: str) -> None:
    message = reason[:1].upper() + reason[1:]
    if not message.endswith("."):
        message += "."
    SignalImport.objects.filter(pk=import_id).update(
        status=ImportStatus.UNREADABLE,
        error_message=f"The file cannot be read: {message}",
        validation_finished_at=timezone.now(),
        validation_phase="",
        signals=0,
        valid=0,
        rejected=0,
        errors=0,
        warnings=0,
        contact_key_only=0,
        problem_counts=[],
        fix_suggestions=[],
        findings_not_stored=0,
        records_not_stored=0,
    )


def _mark_failed(import_id: int, exc: BaseException) -> None:
    SignalImport.objects.filter(pk=import_id).update(
        status=ImportStatus.FAILED,
        error_message=f"Validation stopped unexpectedly ({type(exc).__name__}); "
        "run it again or ask an administrator.",
        validation_finished_at=timezone.now(),
        validation_phase="",
    )


def problem_counts(summary: Summary) -> list[dict[str, Any]]:
    """Summary.by_field as stored on the import: errors first, then by count."""
    signals = summary.signals_by_field
    rows: list[dict[str, Any]] = [
        {
            "path": path,
            "code": code,
            "severity": severity,
            "count": count,
            "signals": signals[(path, code, severity)],
        }
        for (path, code, severity), count in summary.by_field.items()
    ]
    rows.sort(key=lambda r: (r["severity"] != ERROR, -r["count"], r["path"], r["code"]))
    return rows
