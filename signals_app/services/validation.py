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

Storing: rows go from the child's files to the database as tuples, with COPY on
PostgreSQL (`executemany` elsewhere). The validator's findings are stored as soon as the
child says they are final, while its follow-up pass still runs (`_read_result`); the rest
once it has answered.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, cast

import orjson
from django.conf import settings
from django.db import connection as db_connection
from django.db import transaction
from django.db.models import Model
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
    FINDINGS_FILE,
    OTHER_ACCOUNT,
    UNREGISTERED_APP_KEY,
    VALIDATED_MARK,
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

# Rows per COPY (or executemany): large enough to be cheap, small enough to keep memory
# flat and the progress moving.
STORE_CHUNK_ROWS = 10_000
STORE_CHUNK_BYTES = 8 * 1024**2  # a record may be up to 16 MB: cut by size too
PROGRESS_EVERY_SECONDS = 0.5
EARLY_POLL_SECONDS = 0.05  # how often the wait for the reader looks for its findings
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
    with (
        scratch.folder("validate") as folder,
        # The forked reader opens a path: on this machine, a copy when the storage is no
        # folder here (removed with the scratch folder).
        import_file_path(signal_import, folder=folder) as path,
    ):
        size = signal_import.size_bytes or path.stat().st_size
        job = _read_job(signal_import, path, folder, size)
        counters = ReadCounters()
        reader = Forked(read_import, (job, counters), limits=_limits())
        storing = _Storing(import_id, folder)
        try:
            with _ReadProgress(import_id, counters, size):
                result = _read_result(reader, storing)
        except UnreadableFile as exc:
            storing.forget(signal_import)
            _mark_unreadable(import_id, str(exc))
            return
        except (MemoryError, ChildDied, TimedOut) as exc:
            logger.warning("import %s: reading stopped: %r", import_id, exc)
            storing.forget(signal_import)
            _mark_unreadable(import_id, _cause(exc))
            return
        except Exception as exc:  # the reader itself broke: say so, do not loop on it
            logger.exception("import %s: the reader failed", import_id)
            storing.forget(signal_import)
            _mark_failed(import_id, exc)
            return
        except BaseException:
            storing.forget(signal_import)
            raise
        finally:
            reader.kill()  # a no-op once it has answered
        try:
            _store(import_id, result, storing)
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
        fix_suggestions=_storable_fixes(result.fix_suggestions),
        findings_not_stored=result.findings_not_stored,
        records_not_stored=result.records_not_stored,
    )
    audit(
        action="import.validated",
        signal_import=signal_import,
        kind=signal_import.kind,
        signals=summary.signals,
        valid=summary.valid,
        rejected=summary.rejected,
        findings_not_stored=result.findings_not_stored,
    )


def _read_job(signal_import: SignalImport, path: Path, folder: str, size: int) -> ReadJob:
    app_key = signal_import.app_key
    if app_key is None:
        # Attentive custom events: Attentive's rules, and no app key to look up.
        options = Options(destination="attentive")
        keys = KeyDirectory(account="", own=frozenset(), others={})
    else:
        options = Options(tier=validation_tier(app_key.tier), default_app_key=app_key.key)
        keys = _key_directory(app_key)
    return ReadJob(
        path=str(path),
        folder=folder,
        options=options,
        keys=keys,
        max_inflated=settings.SIGNALS_GZIP_MAX_INFLATED_BYTES,
        workers=_validation_workers(),
        parallel_min_bytes=int(getattr(settings, "SIGNALS_PARALLEL_MIN_BYTES", PARALLEL_MIN_BYTES)),
        storage_budget=storage_budget(size),
    )


def _key_directory(app_key: AppKey) -> KeyDirectory:
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
    return KeyDirectory(account=account.name, own=frozenset(own), others=others)


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


def _read_result(reader: Forked[ReadResult], storing: _Storing) -> ReadResult:
    """The reader's answer, waited for in a thread; meanwhile this thread stores the
    validator's findings as soon as the reader says they are final, while its follow-up
    pass runs on (that pass takes one core: the database and this process the other), and
    the waiting thread the rejected records once the reader has answered (`_Storing`)."""
    answer: list[tuple[bool, Any]] = []
    answered = threading.Event()

    def wait() -> None:
        try:
            result = reader.result(timeout=_max_seconds())
        except BaseException as exc:  # raised again below, in this thread
            answer.append((False, exc))
            answered.set()
            return
        answer.append((True, result))
        try:
            storing.rejected_beside(result)
        finally:
            answered.set()

    waiter = threading.Thread(target=wait, name="validation-reader", daemon=True)
    waiter.start()
    try:
        while not answered.wait(EARLY_POLL_SECONDS):
            storing.findings_if_ready()
    except BaseException:
        reader.kill()  # the waiter then ends soon
        waiter.join()
        raise
    waiter.join()
    ok, value = answer[0]
    if not ok:
        raise value
    return cast(ReadResult, value)


class _Storing:
    """The storing of one import's rows, begun before the reader has answered: the
    validator's findings once the reader says they are final (reading.VALIDATED_MARK),
    while its follow-up pass runs; on PostgreSQL, outside a transaction, the rejected
    records on a connection of their own as soon as it answers, beside the end of those
    findings. `_store` then stores the rest; one progress counts them all."""

    def __init__(self, import_id: int, folder: str) -> None:
        self.import_id = import_id
        self.mark = Path(folder) / VALIDATED_MARK
        self.findings_path = str(Path(folder) / FINDINGS_FILE)
        self.progress = _StoreProgress(import_id)
        self.findings_bytes = 0  # of the findings file, stored
        self.findings_looked = False
        self.rejected_stored = False
        self.rejected_error: BaseException | None = None
        self.started = False  # rows may be stored: `forget` deletes them
        # A second connection sees the import's row only once it is committed.
        self.beside = db_connection.vendor == "postgresql" and not db_connection.in_atomic_block

    def findings_if_ready(self) -> None:
        if self.findings_looked or not self.mark.exists():
            return
        self.findings_looked = True
        size, rows = map(int, self.mark.read_text().split())
        if not rows:
            return
        self.started = True
        self.progress.start(rows)
        import_id = self.import_id
        chunks = _chunks(self.findings_path, lambda data: _finding_row(import_id, data), 0, size)
        _write_rows()(ImportFinding, FINDING_COLUMNS, chunks, self.progress)
        self.progress.flush()
        self.findings_bytes = size

    def rejected_beside(self, result: ReadResult) -> None:
        """In the thread that waited for the reader, with its own connection."""
        if not self.beside or not result.records_stored:
            return
        self.started = True
        import_id = self.import_id
        try:
            self.progress.start(result.findings_stored + result.records_stored)
            chunks = _chunks(result.rejected_path, lambda data: _rejected_row(import_id, data))
            _copy_rows(RejectedSignal, REJECTED_COLUMNS, chunks, self.progress)
            self.rejected_stored = True
        except BaseException as exc:  # `_store` raises it, as a failure to store
            self.rejected_error = exc
        finally:
            db_connection.close()  # this thread's own

    def forget(self, signal_import: SignalImport) -> None:
        """Delete what was stored, when the reading failed after all."""
        if self.started:
            _delete_validation_rows(signal_import)


def _write_rows() -> Callable[..., None]:
    return _copy_rows if db_connection.vendor == "postgresql" else _insert_rows


def _store(import_id: int, result: ReadResult, storing: _Storing | None = None) -> None:
    """Load the reader's files: findings (those not stored yet, see `_Storing`), rejected
    records and the rejected set, with the rows stored so far on the import's row for its
    progress.

    Rows go from the reader's NDJSON lines straight to the database, a tuple each (no model
    instance): with COPY on PostgreSQL, `executemany` elsewhere, in chunks between which
    the progress is written. Measured on 1,000,000 signals with 5 % errors (89,581
    findings, 47,922 rejected records): bulk_create took 6.0–6.7 s, COPY 1.3–1.6 s."""
    if storing is None:
        storing = _Storing(import_id, str(Path(result.findings_path).parent))
    if storing.rejected_error is not None:
        raise storing.rejected_error
    progress = storing.progress
    progress.start(result.findings_stored + result.records_stored)
    write = _write_rows()
    findings = _chunks(
        result.findings_path,
        lambda data: _finding_row(import_id, data),
        storing.findings_bytes,
    )
    write(ImportFinding, FINDING_COLUMNS, findings, progress)
    if not storing.rejected_stored:
        rejected = _chunks(result.rejected_path, lambda data: _rejected_row(import_id, data))
        write(RejectedSignal, REJECTED_COLUMNS, rejected, progress)
    RejectedSet.objects.create(
        signal_import_id=import_id, flags=result.rejected_flags, count=result.summary.rejected
    )
    progress.flush()


Row = tuple[Any, ...]

# The columns each row gives, in order; RejectedSignal.record stays NULL (the preview
# parses `raw` when it shows a record).
FINDING_COLUMNS = (
    "signal_import_id",
    "signal",
    "line",
    "path",
    "path_pattern",
    "severity",
    "code",
    "message",
)
REJECTED_COLUMNS = ("signal_import_id", "signal", "line", "raw")


def _copy_rows(
    model: type[Model],
    columns: Sequence[str],
    chunks: Iterable[list[Row]],
    progress: _StoreProgress,
) -> None:
    """COPY the rows into the model's table, one COPY per chunk (each its own transaction,
    as each bulk INSERT was: a failed run's rows are deleted by the caller)."""
    quote = db_connection.ops.quote_name
    sql = f"COPY {quote(model._meta.db_table)} ({', '.join(map(quote, columns))}) FROM STDIN"
    with db_connection.cursor() as cursor:
        raw_cursor = cursor.cursor  # psycopg 3's own, which has copy()
        for rows in chunks:
            with raw_cursor.copy(sql) as copy:
                write_row = copy.write_row
                for row in rows:
                    write_row(row)
            progress.add(len(rows))


def _insert_rows(
    model: type[Model],
    columns: Sequence[str],
    chunks: Iterable[list[Row]],
    progress: _StoreProgress,
) -> None:
    """INSERT the rows with `executemany`, one transaction per chunk (SQLite: without one,
    each row would be a transaction of its own)."""
    quote = db_connection.ops.quote_name
    placeholders = ", ".join(["%s"] * len(columns))
    sql = (
        f"INSERT INTO {quote(model._meta.db_table)} ({', '.join(map(quote, columns))}) "
        f"VALUES ({placeholders})"
    )
    for rows in chunks:
        with transaction.atomic(), db_connection.cursor() as cursor:
            cursor.executemany(sql, rows)
        progress.add(len(rows))


class _StoreProgress:
    """Rows stored, of rows to store, on the import's row: written every
    PROGRESS_EVERY_SECONDS from whichever thread stores, never going back."""

    def __init__(self, import_id: int) -> None:
        self.import_id = import_id
        self.stored = 0
        self.shown_at = time.monotonic()
        self._lock = threading.Lock()

    def start(self, to_store: int) -> None:
        """The storing phase, with at least `to_store` rows to store."""
        rows = SignalImport.objects.filter(pk=self.import_id)
        if not rows.filter(rows_to_store__lt=to_store).update(
            validation_phase="storing", rows_to_store=to_store
        ):
            rows.update(validation_phase="storing")

    def add(self, rows: int) -> None:
        with self._lock:
            self.stored += rows
            if time.monotonic() - self.shown_at < PROGRESS_EVERY_SECONDS:
                return
        self.flush()

    def flush(self) -> None:
        with self._lock:
            self.shown_at = time.monotonic()
            stored = self.stored
        SignalImport.objects.filter(pk=self.import_id, rows_stored__lt=stored).update(
            rows_stored=stored
        )


def _chunks(
    path: str, to_row: Callable[[dict[str, Any]], Row], start: int = 0, end: int | None = None
) -> Iterator[list[Row]]:
    """The rows of a reader's NDJSON file (from byte `start` to byte `end`, whole lines),
    in lists of at most STORE_CHUNK_ROWS rows and about STORE_CHUNK_BYTES of text (a
    rejected record may be up to 16 MB)."""
    rows: list[Row] = []
    size = 0
    position = start
    loads = orjson.loads
    with open(path, "rb") as file:
        file.seek(start)
        for line in file:
            if end is not None and position >= end:
                break
            position += len(line)
            rows.append(to_row(loads(line)))
            size += len(line)
            if len(rows) >= STORE_CHUNK_ROWS or size >= STORE_CHUNK_BYTES:
                yield rows
                rows, size = [], 0
    if rows:
        yield rows


def _finding_row(import_id: int, data: dict[str, Any]) -> Row:
    """A finding as the row FINDING_COLUMNS name."""
    path = data["path"]
    return (
        import_id,
        data["signal"],
        data["line"],
        _clean_text(path, _PATH_MAX),
        _clean_text(path_pattern(path), _PATH_MAX),
        data["severity"],
        data["code"][:_CODE_MAX],
        _clean_text(data["message"]),
    )


def _rejected_row(import_id: int, data: dict[str, Any]) -> Row:
    """A rejected record as the row REJECTED_COLUMNS name (its text was cleaned of NUL by
    the reader)."""
    return (import_id, data["signal"], data["line"], data["raw"])


def _clean_text(text: str, limit: int | None = None) -> str:
    if "\x00" in text:
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


def _storable_fixes(suggestions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The fix suggestions PostgreSQL's jsonb can hold: one whose text has a NUL (a value
    from the file) is not offered rather than offered changed, as it would not apply."""
    return [fix for fix in suggestions if b"\\u0000" not in orjson.dumps(fix)]


def problem_counts(summary: Summary) -> list[dict[str, Any]]:
    """Summary.by_field as stored on the import: errors first, then by count."""
    signals = summary.signals_by_field
    rows: list[dict[str, Any]] = [
        {
            # As the findings' path_pattern: the preview finds its examples by it, and
            # PostgreSQL's jsonb refuses NUL as its text does.
            "path": _clean_text(path, _PATH_MAX),
            "code": code,
            "severity": severity,
            "count": count,
            "signals": signals[(path, code, severity)],
        }
        for (path, code, severity), count in summary.by_field.items()
    ]
    rows.sort(key=lambda r: (r["severity"] != ERROR, -r["count"], r["path"], r["code"]))
    return rows
