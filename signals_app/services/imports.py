"""Imports up to the preview: upload, validation (the Celery task's body), the preview's
queries, unambiguous fixes and the downloads.

The file is read as a stream everywhere: a 1 GB import is never held in memory, findings
and rejected signals go to the database in chunks while the file is read, and the preview
pages by keyset on the signal index, never by OFFSET.

Finding codes added here (beyond the validator's, see validation.findings.Code):
- ``unregistered_app_key`` (error, at ``appKey``): the signal names an app key that is not
  registered in connectadmin (SPEC §2, import flow only; the CLI judges the file alone).
"""

from __future__ import annotations

import csv
import difflib
import gzip
import importlib
import json
import logging
import os
import re
import shutil
import threading
import time
import unicodedata
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import IO, Any, cast

import msgspec
import orjson
from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.db import IntegrityError, transaction
from django.db import connection as db_connection
from django.db.models import Count, F, Window
from django.db.models.functions import RowNumber
from django.utils import timezone

from connectadmin.models import AppKey
from signals_app.models import (
    ImportFinding,
    ImportMode,
    ImportStatus,
    RejectedSignal,
    SignalImport,
    audit,
)
from signals_app.services.errors import ImportRefused
from signals_app.validation.engine import check_signal, unwrap
from signals_app.validation.fastpath import FastPath
from signals_app.validation.findings import ERROR, Code, Finding, Summary, path_pattern
from signals_app.validation.readers import Record, SignalFile, UnreadableFile, open_signal_file
from signals_app.validation.schema import (
    CUSTOM_ATTRIBUTE_FIELDS,
    ENVELOPE_FIELDS,
    ITEM_FIELDS,
    SIGNAL_TYPES,
    TIERS,
    Field,
    Kind,
    Tier,
)
from signals_app.validation.validate import (
    PARALLEL_MIN_BYTES,
    Options,
    validate_file,
    validate_records,
)
from signals_app.validation.values import CURRENCY_CODES

logger = logging.getLogger(__name__)

UNREGISTERED_APP_KEY = "unregistered_app_key"

IDEMPOTENCY_WINDOW = timedelta(hours=1)
# Rows per INSERT while validating: large enough to be cheap, small enough to keep the
# task's memory flat whatever the number of findings.
FINDINGS_CHUNK = 2000
REJECTED_CHUNK = 200
REJECTED_CHUNK_BYTES = 8 * 1024**2  # a record may be up to 16 MB: flush by size too
PROGRESS_EVERY_SECONDS = 0.5
MAX_FIX_SUGGESTIONS = 50
PROBLEM_EXAMPLES = 3
MAX_PROBLEM_ROWS = 200
# Column sizes of ImportFinding: an unknown field's name comes from the file.
_PATH_MAX = 500
_CODE_MAX = 40

# Statuses from which validation may (re)start: once sending has begun the findings are
# the ledger's reference and must not change under it.
_VALIDATABLE = {
    ImportStatus.UPLOADED,
    ImportStatus.VALIDATING,
    ImportStatus.VALIDATED,
    ImportStatus.UNREADABLE,
    ImportStatus.FAILED,
}


# --- results the views render ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProblemExample:
    signal: int
    line: int | None
    message: str


@dataclass(frozen=True, slots=True)
class ProblemRow:
    """One line of the preview's problem table: a field (array positions as []) and code."""

    path: str
    code: str
    severity: str
    count: int  # findings
    signals: int  # distinct signals with this problem
    share: float  # signals / all signals of the import, 0..1
    examples: list[ProblemExample]


@dataclass(frozen=True, slots=True)
class EntryFinding:
    path: str
    severity: str
    code: str
    message: str


@dataclass(frozen=True, slots=True)
class RejectedEntry:
    signal: int
    line: int | None
    rejected: bool
    record: Any  # the signal as found in the file (JSON value); None when `raw` holds it
    raw: str  # the record's text when it is not JSON
    findings: list[EntryFinding]

    @property
    def failing_paths(self) -> set[str]:
        return {f.path for f in self.findings}

    @property
    def record_json(self) -> str:
        """The record pretty-printed for display."""
        if self.record is None:
            return self.raw
        return json.dumps(self.record, indent=2, ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class RejectedPage:
    entries: list[RejectedEntry]
    next_after: int | None  # pass as `after` for the next page; None on the last page


@dataclass(frozen=True, slots=True)
class FixSuggestion:
    """An unambiguous fix the preview offers; `id` is what import_apply_fixes takes."""

    id: str
    kind: str  # enum_spelling | currency_case | item_quantity | number_string
    path: str  # path pattern, array positions as []
    before: str  # an example of the value as found ("positve", "usd", "quantity", "2")
    after: str  # ... and as fixed
    signals: int  # signals it fixes
    description: str


# --- upload -----------------------------------------------------------------------------


def import_create(
    *,
    user: Any,
    app_key: AppKey,
    mode: str,
    upload: IO[bytes] | UploadedFile,
    original_name: str,
    idempotency_key: str | None = None,
) -> SignalImport:
    """Keep the uploaded file under a generated name and queue its validation.

    The same user and `idempotency_key` within an hour returns the import the first
    request created: a double-clicked submit makes one import, not two.
    """
    if mode not in ImportMode.values:
        raise ImportRefused("Choose whether the import is a test or a live one.")
    key = (idempotency_key or "").strip()[:64] or None
    if key is not None:
        existing = _recent_import_for_key(user, key)
        if existing is not None:
            return existing

    stored_name = uuid.uuid4().hex
    destination = _imports_dir() / stored_name
    _store_upload(upload, destination)
    try:
        with transaction.atomic():
            signal_import = SignalImport.objects.create(
                created_by=user,
                app_key=app_key,
                mode=mode,
                original_name=sanitize_file_name(original_name),
                stored_name=stored_name,
                size_bytes=destination.stat().st_size,
                status=ImportStatus.UPLOADED,
                idempotency_key=key,
            )
            audit(
                action="import.uploaded",
                actor=user,
                signal_import=signal_import,
                original_name=signal_import.original_name,
                size_bytes=signal_import.size_bytes,
                app_key=app_key.key,
                mode=mode,
            )
    except IntegrityError:
        destination.unlink(missing_ok=True)
        if key is not None:
            # The other click of a double-click committed first: that import is the one.
            existing = SignalImport.objects.filter(created_by=user, idempotency_key=key).first()
            if existing is not None:
                return existing
        raise
    except BaseException:
        destination.unlink(missing_ok=True)
        raise
    _queue_validation(signal_import)
    return signal_import


def _recent_import_for_key(user: Any, key: str) -> SignalImport | None:
    existing = SignalImport.objects.filter(created_by=user, idempotency_key=key).first()
    if existing is None:
        return None
    if existing.created_at >= timezone.now() - IDEMPOTENCY_WINDOW:
        return existing
    # An old token seen again is a new upload; free the key for it.
    SignalImport.objects.filter(pk=existing.pk).update(idempotency_key=None)
    return None


def _queue_validation(signal_import: SignalImport) -> None:
    # Looked up at run time: tasks imports this module, and a static import cycle makes
    # mypy lose track of `signals_app.services.imports` in tasks.py.
    tasks = importlib.import_module("signals_app.tasks")
    # On commit: the worker must find the row (and the file) when it starts. Celery uses
    # its DjangoTask class under Django (5.4+), which provides delay_on_commit.
    tasks.validate_import.delay_on_commit(signal_import.pk)


def _imports_dir() -> Path:
    directory = Path(settings.IMPORTS_DIR)
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def import_file_path(signal_import: SignalImport) -> Path:
    """Where the import's file is kept (a promoted import reads its source's file)."""
    return Path(settings.IMPORTS_DIR) / signal_import.validation_source.stored_name


def _store_upload(upload: IO[bytes] | UploadedFile, destination: Path) -> None:
    """Move Django's temporary file into place when possible (no copy of a 1 GB file);
    otherwise copy in chunks."""
    temporary_path = getattr(upload, "temporary_file_path", None)
    if callable(temporary_path):
        try:
            os.replace(temporary_path(), destination)
            return  # Django's clean-up of the temporary file then finds nothing to delete
        except OSError:
            pass  # another file system: copy below
    try:
        with destination.open("xb") as out:
            if isinstance(upload, UploadedFile):
                for chunk in upload.chunks():
                    out.write(chunk)
            else:
                shutil.copyfileobj(upload, out, 1024 * 1024)
    except BaseException:
        destination.unlink(missing_ok=True)
        raise


_UNSAFE_NAME_CHARS = re.compile(r"[\x00-\x1f\x7f/\\]+")


def sanitize_file_name(name: str) -> str:
    """The client's file name, for display only: no directories, control characters or
    surrounding blanks, at most 255 characters (keeping the extension)."""
    name = unicodedata.normalize("NFC", name or "")
    name = re.split(r"[/\\]", name)[-1]
    name = _UNSAFE_NAME_CHARS.sub("", name)
    name = " ".join(name.split()).strip(". ") or "upload"
    if len(name) > 255:
        stem, dot, extension = name.rpartition(".")
        if dot and len(extension) <= 16:
            name = stem[: 254 - len(extension)] + "." + extension
        else:
            name = name[:255]
    return name


# --- validation -------------------------------------------------------------------------


def import_validate(*, import_id: int) -> None:
    """Validate the import's file and store findings, rejected signals and totals.

    Two passes, both streaming:
    1. the validator over the whole file — split over the machine's cores when the file
       is large and its format allows (`validate_file`), single-process with progress
       per record otherwise — its findings stored in bulk as they arrive (in file order);
    2. one pass over the records that need more than their findings: the rejected ones
       (their record is stored for the preview and for fixes), those with a fixable
       finding (the fixes the preview offers), and every record naming an app key that
       is not registered (`unregistered_app_key`). A cheap scan of the raw bytes proves
       most files name registered keys only; then this pass reads just up to the last
       record it needs, and is skipped altogether for a file without findings.

    Re-runnable: a run starts by deleting what an earlier (crashed) run stored.
    """
    signal_import = SignalImport.objects.select_related("app_key").get(pk=import_id)
    if (
        signal_import.status not in _VALIDATABLE
        or signal_import.promoted_from_id is not None
        or signal_import.batches.exists()
    ):
        logger.info("import %s: not validated again (status %s)", import_id, signal_import.status)
        return
    SignalImport.objects.filter(pk=import_id).update(
        status=ImportStatus.VALIDATING,
        validation_started_at=timezone.now(),
        validation_finished_at=None,
        error_message="",
        bytes_read=0,
        signals=0,
    )
    _delete_validation_rows(signal_import)
    app_key = signal_import.app_key
    options = Options(tier=_tier(app_key.tier), default_app_key=app_key.key)
    registered = frozenset(AppKey.objects.values_list("key", flat=True))
    path = import_file_path(signal_import)
    max_inflated = settings.SIGNALS_GZIP_MAX_INFLATED_BYTES
    store = _FindingStore(import_id)
    try:
        with open_signal_file(path, max_inflated_bytes=max_inflated) as signal_file:
            SignalImport.objects.filter(pk=import_id).update(
                file_format=signal_file.format, compressed=signal_file.compressed
            )
            file_format = signal_file.format
            parallel = _parallel_fit(signal_file)
            if not parallel:
                summary = validate_records(_reporting(import_id, signal_file), options, store)
        if parallel:
            with _ChildReadProgress(import_id, path.stat().st_size):
                summary = validate_file(
                    path,
                    options,
                    store,
                    max_inflated_bytes=max_inflated,
                    workers=_validation_workers(),
                    parallel_min_bytes=_parallel_min_bytes(),
                )
        store.flush()
        follow_up = _FollowUp(import_id, registered, store)
        follow_up.run(path, max_inflated, file_format)
    except UnreadableFile as exc:
        # Nothing is half-imported (SPEC §5): drop what the readable beginning produced.
        _delete_validation_rows(signal_import)
        _mark_unreadable(import_id, str(exc))
        return
    except BaseException as exc:
        _delete_validation_rows(signal_import)
        SignalImport.objects.filter(pk=import_id).update(
            status=ImportStatus.FAILED,
            error_message=f"Validation stopped unexpectedly ({type(exc).__name__}); "
            "run it again or ask an administrator.",
            validation_finished_at=timezone.now(),
        )
        raise
    follow_up.adjust(summary)
    _refresh_preview_statistics(summary.errors + summary.warnings)
    size = signal_import.size_bytes or path.stat().st_size
    SignalImport.objects.filter(pk=import_id).update(
        status=ImportStatus.VALIDATED,
        validation_finished_at=timezone.now(),
        bytes_read=size,
        signals=summary.signals,
        valid=summary.valid,
        rejected=summary.rejected,
        errors=summary.errors,
        warnings=summary.warnings,
        contact_key_only=summary.contact_key_only,
        problem_counts=problem_counts(summary),
        fix_suggestions=follow_up.fix_suggestions(),
    )
    audit(
        action="import.validated",
        signal_import=signal_import,
        signals=summary.signals,
        valid=summary.valid,
        rejected=summary.rejected,
    )


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


def _validation_workers() -> int:
    return int(getattr(settings, "SIGNALS_VALIDATION_WORKERS", 0)) or (os.cpu_count() or 1)


def _parallel_min_bytes() -> int:
    return int(getattr(settings, "SIGNALS_PARALLEL_MIN_BYTES", PARALLEL_MIN_BYTES))


def _parallel_fit(signal_file: SignalFile) -> bool:
    """Whether validate_file may split the file over processes (its own conditions; it
    still takes the single pass when a part cannot be judged apart)."""
    return (
        not signal_file.compressed
        and _validation_workers() > 1
        and signal_file.size >= _parallel_min_bytes()
        and signal_file.format in _PARALLEL_FORMATS
    )


_PARALLEL_FORMATS = frozenset({"ndjson", "json-array", "csv", "export-csv"})


def _reporting(import_id: int, signal_file: SignalFile) -> Iterator[Record]:
    """The records, writing bytes read and signals read on the row now and then."""
    last = time.monotonic()
    for record in signal_file:
        if record.index % 256 == 0:
            now = time.monotonic()
            if now - last >= PROGRESS_EVERY_SECONDS:
                last = now
                SignalImport.objects.filter(pk=import_id).update(
                    bytes_read=signal_file.position(), signals=record.index
                )
        yield record


class _ChildReadProgress:
    """Progress of the parallel validation, seen from outside: the bytes the validator's
    worker processes (this process's children) have read so far, from Linux's
    /proc/<pid>/io, written to the row by a thread twice a second. Best effort: where
    /proc says nothing the row simply shows no progress until the end.

    (A hook in validate_file reporting each part's bytes through a shared counter would
    be exact; until it exists this measures the same thing.)
    """

    def __init__(self, import_id: int, size: int) -> None:
        self.import_id = import_id
        self.size = max(size, 1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="validation-progress", daemon=True)
        self._before: set[int] = set()

    def __enter__(self) -> _ChildReadProgress:
        self._before = set(_children_read())  # children from before are not ours
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def bytes_read(self) -> int:
        reads = _children_read()
        return min(sum(read for pid, read in reads.items() if pid not in self._before), self.size)

    def _watch(self) -> None:
        try:
            shown = 0
            while not self._stop.wait(max(PROGRESS_EVERY_SECONDS, 0.05)):
                done = self.bytes_read()
                if done > shown:  # workers that finished leave the sum: never go back
                    shown = done
                    SignalImport.objects.filter(pk=self.import_id).update(bytes_read=done)
        except Exception:  # progress must never break the validation
            logger.debug("import %s: no validation progress", self.import_id, exc_info=True)
        finally:
            db_connection.close()  # this thread's own connection


def _children_read() -> dict[int, int]:
    """{pid: bytes read} of this process's live children (Linux); {} elsewhere."""
    found: dict[int, int] = {}
    for children in Path("/proc/self/task").glob("*/children"):
        try:
            pids = children.read_text().split()
        except OSError:
            continue
        for pid in pids:
            try:
                io_text = Path(f"/proc/{pid}/io").read_text()
            except OSError:
                continue
            for line in io_text.splitlines():
                if line.startswith("rchar:"):
                    found[int(pid)] = int(line.split()[1])
                    break
    return found


def _tier(value: str) -> Tier:
    return cast(Tier, value) if value in TIERS else "pro"


def _delete_validation_rows(signal_import: SignalImport) -> None:
    ImportFinding.objects.filter(signal_import=signal_import).delete()
    RejectedSignal.objects.filter(signal_import=signal_import).delete()


def _mark_unreadable(import_id: int, reason: str) -> None:
    message = reason[:1].upper() + reason[1:]
    if not message.endswith("."):
        message += "."
    SignalImport.objects.filter(pk=import_id).update(
        status=ImportStatus.UNREADABLE,
        error_message=f"The file cannot be read: {message}",
        validation_finished_at=timezone.now(),
        signals=0,
        valid=0,
        rejected=0,
        errors=0,
        warnings=0,
        contact_key_only=0,
        problem_counts=[],
        fix_suggestions=[],
    )


def problem_counts(summary: Summary) -> list[dict[str, Any]]:
    """Summary.by_field as stored on the import: errors first, then by count."""
    rows: list[dict[str, Any]] = [
        {"path": path, "code": code, "severity": severity, "count": count}
        for (path, code, severity), count in summary.by_field.items()
    ]
    rows.sort(key=lambda r: (r["severity"] != ERROR, -r["count"], r["path"], r["code"]))
    return rows


class _EnvelopePeek(msgspec.Struct):
    """Just enough of a record to read its appKey: everything else is skipped in C."""

    appKey: Any = None
    signal: msgspec.Raw = msgspec.Raw(b"")
    signalContent: msgspec.Raw = msgspec.Raw(b"")


_peek_decoder = msgspec.json.Decoder(_EnvelopePeek)


def _file_app_key(record: Record) -> Any:
    """The appKey a record names (None when it names none)."""
    if record.raw is None:
        envelope, _ = unwrap(record.value)
        return envelope.get("appKey") if isinstance(envelope, dict) else None
    try:
        peek = _peek_decoder.decode(record.raw)
        if peek.signal and not peek.signalContent:  # the {"signal": ...} wrapper
            peek = _peek_decoder.decode(peek.signal)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None  # not an object: the engine has reported it
    return peek.appKey


_NOT_PARSED: Any = object()


def _record_value(record: Record) -> Any:
    """The record as Python objects; _NOT_PARSED when an NDJSON line is not JSON."""
    if record.raw is None:
        return record.value
    try:
        return orjson.loads(record.raw)
    except orjson.JSONDecodeError:
        try:  # integers beyond 64 bits are JSON too
            return json.loads(record.raw)
        except (ValueError, UnicodeDecodeError):
            return _NOT_PARSED


def _dumps(value: Any) -> bytes:
    try:
        return orjson.dumps(value)
    except TypeError:  # an integer beyond 64 bits
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def _storable(record: Record, value: Any) -> tuple[Any, str]:
    """(record, raw) for RejectedSignal. PostgreSQL refuses NUL characters in text and
    jsonb, so a record holding one is kept as its JSON text with the NUL replaced."""
    if value is _NOT_PARSED:
        text = (record.raw or b"").decode("utf-8", errors="replace")
        return None, text.replace("\x00", "\ufffd")
    text = _dumps(value).decode()
    if "\\u0000" in text:
        return None, text.replace("\\u0000", "\ufffd")
    return value, ""


def _clean_text(text: str, limit: int | None = None) -> str:
    text = text.replace("\x00", "\ufffd")
    return text[:limit] if limit is not None else text


# Flags per signal index, set while the validator's findings arrive.
_HAS_FINDING = 1
_HAS_ERROR = 2
_AT_APP_KEY = 4  # a finding at appKey already (no unregistered_app_key on top)
_FIXABLE = 8  # a finding a fix may address


class _FindingStore:
    """The validator's sink: findings (in file order) stored in chunks of FINDINGS_CHUNK,
    and one byte of flags per signal index, so the follow-up pass knows which records it
    needs without holding findings in memory (1 MB for a million signals)."""

    def __init__(self, import_id: int) -> None:
        self.import_id = import_id
        self.rows: list[ImportFinding] = []
        self.flags = bytearray()

    def __call__(self, finding: Finding) -> None:
        signal = finding.signal
        flags = self.flags
        if signal >= len(flags):
            flags.extend(bytes(signal + 1 - len(flags)))
        bits = _HAS_FINDING
        if finding.severity == ERROR:
            bits |= _HAS_ERROR
        if finding.path == "appKey":
            bits |= _AT_APP_KEY
        if finding.code in _FIXABLE_CODES:
            bits |= _FIXABLE
        flags[signal] |= bits
        self.rows.append(_finding_row(self.import_id, finding))
        if len(self.rows) >= FINDINGS_CHUNK:
            self.flush()

    def flush(self) -> None:
        if self.rows:
            ImportFinding.objects.bulk_create(self.rows, batch_size=FINDINGS_CHUNK)
            self.rows = []

    def flag(self, signal: int) -> int:
        return self.flags[signal] if signal < len(self.flags) else 0

    def last_flagged(self, mask: int) -> int:
        """The highest signal index with one of `mask`'s flags; -1 when none has."""
        for signal in range(len(self.flags) - 1, -1, -1):
            if self.flags[signal] & mask:
                return signal
        return -1


def _finding_row(import_id: int, f: Finding) -> ImportFinding:
    return ImportFinding(
        signal_import_id=import_id,
        signal=f.signal,
        line=f.line,
        path=_clean_text(f.path, _PATH_MAX),
        path_pattern=_clean_text(path_pattern(f.path), _PATH_MAX),
        severity=f.severity,
        code=f.code[:_CODE_MAX],
        message=_clean_text(f.message),
    )


class _FollowUp:
    """The second pass: one streaming walk over the file, in step with the stored fixable
    findings, for the records that need more than their findings (see import_validate)."""

    def __init__(
        self, import_id: int, registered_keys: frozenset[str], store: _FindingStore
    ) -> None:
        self.import_id = import_id
        self.registered_keys = registered_keys
        self.store = store
        self.findings: list[ImportFinding] = []
        self.rejected: list[RejectedSignal] = []
        self.rejected_bytes = 0
        self.unregistered = 0  # unregistered_app_key findings
        self.newly_rejected = 0  # signals valid but for their unregistered appKey
        self.fixes: dict[str, FixSuggestion] = {}

    def run(self, path: Path, max_inflated: int, file_format: str) -> None:
        keys_known = file_format in _JSON_FORMATS and _all_app_keys_registered(
            path, self.registered_keys
        )
        last = self.store.last_flagged(_HAS_ERROR | _FIXABLE)
        if keys_known and last < 0:
            return  # the common case of a clean file: nothing to read again
        fixable = (
            ImportFinding.objects.filter(signal_import_id=self.import_id, code__in=_FIXABLE_CODES)
            .order_by("signal", "id")
            .values_list("signal", "line", "path", "severity", "code", "message")
            .iterator(chunk_size=FINDINGS_CHUNK)
        )
        pending = next(fixable, None)
        flag = self.store.flag
        with open_signal_file(path, max_inflated_bytes=max_inflated) as signal_file:
            for record in signal_file:
                index = record.index
                if keys_known and index > last:
                    break
                bits = flag(index)
                findings: list[Finding] = []
                while pending is not None and pending[0] <= index:
                    if pending[0] == index:
                        signal, line, f_path, severity, code, message = pending
                        findings.append(
                            Finding(signal, line, f_path, cast(Any, severity), code, message)
                        )
                    pending = next(fixable, None)
                if not keys_known or bits & (_HAS_ERROR | _FIXABLE):
                    self._record(record, bits, findings)
        self.flush()

    def _record(self, record: Record, bits: int, fixable: list[Finding]) -> None:
        rejected = bool(bits & _HAS_ERROR)
        app_key = _file_app_key(record)
        if (
            isinstance(app_key, str)
            and app_key.strip()
            and app_key not in self.registered_keys
            and not bits & _AT_APP_KEY
        ):
            self.findings.append(
                _finding_row(
                    self.import_id,
                    Finding(
                        record.index,
                        record.line,
                        "appKey",
                        ERROR,
                        UNREGISTERED_APP_KEY,
                        f'appKey "{app_key[:80]}" is not registered in connectadmin; '
                        "correct it, or have an administrator add the key",
                    ),
                )
            )
            self.unregistered += 1
            if not rejected:
                self.newly_rejected += 1
                rejected = True
        if not rejected and not fixable:
            return
        value = _record_value(record)
        if rejected:
            stored, raw = _storable(record, value)
            self.rejected.append(
                RejectedSignal(
                    signal_import_id=self.import_id,
                    signal=record.index,
                    line=record.line,
                    record=stored,
                    raw=raw,
                )
            )
            self.rejected_bytes += len(record.raw or b"") + len(raw)
        if value is not _NOT_PARSED and fixable:
            self._count_fixes(value, fixable)
        if len(self.findings) >= FINDINGS_CHUNK:
            self._flush_findings()
        if len(self.rejected) >= REJECTED_CHUNK or self.rejected_bytes >= REJECTED_CHUNK_BYTES:
            self._flush_rejected()

    def _count_fixes(self, value: Any, findings: list[Finding]) -> None:
        seen: set[str] = set()
        for fix in fixes_for(value, findings):
            if fix.id in seen:
                continue
            seen.add(fix.id)
            known = self.fixes.get(fix.id)
            if known is not None:
                self.fixes[fix.id] = _with_signals(known, known.signals + 1)
            elif len(self.fixes) < MAX_FIX_SUGGESTIONS * 4:  # bounded: many typos, few kept
                self.fixes[fix.id] = fix.suggestion()

    def _flush_findings(self) -> None:
        if self.findings:
            ImportFinding.objects.bulk_create(self.findings, batch_size=FINDINGS_CHUNK)
            self.findings = []

    def _flush_rejected(self) -> None:
        if self.rejected:
            RejectedSignal.objects.bulk_create(self.rejected, batch_size=REJECTED_CHUNK)
            self.rejected = []
            self.rejected_bytes = 0

    def flush(self) -> None:
        self._flush_findings()
        self._flush_rejected()

    def adjust(self, summary: Summary) -> None:
        """Count the unregistered app keys in the summary, as the validator would have."""
        if self.unregistered:
            summary.errors += self.unregistered
            summary.by_field[("appKey", UNREGISTERED_APP_KEY, ERROR)] += self.unregistered
        summary.rejected += self.newly_rejected
        summary.valid -= self.newly_rejected

    def fix_suggestions(self) -> list[dict[str, Any]]:
        fixes = sorted(self.fixes.values(), key=lambda f: (-f.signals, f.id))
        return [asdict(f) for f in fixes[:MAX_FIX_SUGGESTIONS]]


# The scan proving a file names registered app keys only. Sound, not complete: anything
# it cannot account for (an appKey written with escapes, or followed by anything but a
# plain string, an escaped ASCII letter anywhere that could spell "appKey", a CSV file)
# sends the follow-up pass through every record, which then decides per record.
_APP_KEY_TOKEN = b'"appKey"'
_APP_KEY_PAIR = re.compile(rb'"appKey"[ \t\r\n]{0,64}:[ \t\r\n]{0,64}"([^"\\]{0,1024})"')
_ESCAPED_LETTER = re.compile(rb"\\u00(?:4[1-9A-Fa-f]|5[0-9Aa]|6[1-9A-Fa-f]|7[0-9Aa])")
_JSON_FORMATS = frozenset({"ndjson", "json-array", "json-signals", "json-single"})
_SCAN_BLOCK = 8 * 1024**2
_SCAN_OVERLAP = 4096  # longer than any pair the pattern takes
_SCAN_HEAD = 64


def _all_app_keys_registered(path: Path, registered: frozenset[str]) -> bool:
    """True only when every appKey the file's JSON records can name is registered.

    Blocks are cut after a newline, so a token never straddles two blocks; a pair that
    does (a newline between key and value at a block's end) only costs the full pass.
    """
    with path.open("rb") as raw:
        compressed = raw.read(2) == b"\x1f\x8b"
    seen: set[bytes] = set()
    with gzip.open(path, "rb") if compressed else path.open("rb") as f:
        carry = f.read(_SCAN_HEAD)
        while True:
            block = f.read(_SCAN_BLOCK)
            data = carry + block
            if block:
                cut = data.rfind(b"\n", 0, len(data) - _SCAN_OVERLAP) + 1
                if cut <= 0:
                    cut = max(len(data) - _SCAN_OVERLAP, 0)
            else:
                cut = len(data)
            if _ESCAPED_LETTER.search(data, 0, cut):
                return False
            pairs = _APP_KEY_PAIR.findall(data, 0, cut)
            if data.count(_APP_KEY_TOKEN, 0, cut) != len(pairs):
                return False
            seen.update(pairs)
            if not block:
                break
            carry = data[cut:]
    try:
        return all(value.decode() in registered for value in seen)
    except UnicodeDecodeError:
        return False


def _with_signals(fix: FixSuggestion, signals: int) -> FixSuggestion:
    return FixSuggestion(
        fix.id, fix.kind, fix.path, fix.before, fix.after, signals, fix.description
    )


# --- fixes ------------------------------------------------------------------------------

_FIXABLE_CODES = frozenset({str(Code.ENUM), str(Code.TYPE), str(Code.UNKNOWN_FIELD)})
_SEGMENT = re.compile(r"\[(\d+)\]|([^.\[\]]+)")
_JSON_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?")
_SIGNAL_TYPE_FIELD = Field(Kind.ENUM, required=True, choices=tuple(SIGNAL_TYPES))


@dataclass(frozen=True, slots=True)
class _Fix:
    """One fix at one concrete path of one record."""

    id: str
    kind: str
    pattern: str
    segments: list[str | int] = field(hash=False)
    before: str
    after: Any  # the new value; for item_quantity the new key

    def suggestion(self) -> FixSuggestion:
        shown_after = self.after if isinstance(self.after, str) else json.dumps(self.after)
        return FixSuggestion(
            id=self.id,
            kind=self.kind,
            path=self.pattern,
            before=self.before,
            after=shown_after,
            signals=1,
            description=_describe_fix(self.kind, self.pattern, self.before, shown_after),
        )

    def apply(self, envelope: dict[str, Any]) -> None:
        parent = _parent(envelope, self.segments)
        key = self.segments[-1]
        if parent is None:
            return
        if self.kind == "item_quantity":
            if isinstance(parent, dict) and key in parent and self.after not in parent:
                parent[self.after] = parent.pop(key)
        elif isinstance(parent, list):
            if isinstance(key, int):
                parent[key] = self.after
        elif isinstance(parent, dict):
            parent[key] = self.after


def _describe_fix(kind: str, pattern: str, before: str, after: str) -> str:
    if kind == "enum_spelling":
        return f'{pattern}: write "{after}" instead of "{before}"'
    if kind == "currency_case":
        return f'{pattern}: write currency codes in capitals ("{before}" becomes "{after}")'
    if kind == "item_quantity":
        return f"{pattern}: rename quantity to itemQuantity"
    return f'{pattern}: write numbers as numbers, not text ("{before}" becomes {after})'


def _segments(path: str) -> list[str | int]:
    return [int(index) if index else name for index, name in _SEGMENT.findall(path)]


def _parent(envelope: Any, segments: list[str | int]) -> Any:
    node = envelope
    for segment in segments[:-1]:
        if isinstance(segment, int):
            if not isinstance(node, list) or segment >= len(node):
                return None
            node = node[segment]
        else:
            if not isinstance(node, dict) or segment not in node:
                return None
            node = node[segment]
    return node


def _value_at(envelope: Any, segments: list[str | int]) -> Any:
    parent = _parent(envelope, segments)
    key = segments[-1]
    if isinstance(parent, dict) and isinstance(key, str):
        return parent.get(key, _NOT_PARSED)
    if isinstance(parent, list) and isinstance(key, int) and key < len(parent):
        return parent[key]
    return _NOT_PARSED


def _field_at(envelope: dict[str, Any], segments: list[str | int]) -> Field | None:
    """The schema field a path points at, given the record's own signalType."""
    if len(segments) == 1 and isinstance(segments[0], str):
        return ENVELOPE_FIELDS.get(segments[0])
    if len(segments) < 2 or segments[0] != "signalContent":
        return None
    content = envelope.get("signalContent")
    if not isinstance(content, dict):
        return None
    if segments == ["signalContent", "signalType"]:
        return _SIGNAL_TYPE_FIELD
    signal_type = content.get("signalType")
    spec = SIGNAL_TYPES.get(signal_type) if isinstance(signal_type, str) else None
    name = segments[1]
    if spec is None or not isinstance(name, str):
        return None
    outer = spec.fields.get(name)
    if len(segments) == 2:
        return outer
    if len(segments) == 4 and outer is not None and isinstance(segments[2], int):
        inner = segments[3]
        if not isinstance(inner, str):
            return None
        if outer.kind is Kind.ITEMS:
            return ITEM_FIELDS.get(inner)
        if outer.kind is Kind.CUSTOM_ATTRIBUTES:
            return CUSTOM_ATTRIBUTE_FIELDS.get(inner)
    return None


def _number_from_text(text: str, *, integer: bool) -> int | float | None:
    """ "2" -> 2, "9.95" -> 9.95: only text that is exactly a JSON number."""
    match = _JSON_NUMBER.fullmatch(text)
    if match is None:
        return None
    if not match.group(1) and not match.group(2):
        return int(text)
    number = float(text)
    if number != number or number in (float("inf"), float("-inf")):
        return None
    if integer:
        return int(number) if number.is_integer() else None
    return number


def _one_close_choice(value: str, choices: tuple[str, ...]) -> str | None:
    folded = {choice.lower(): choice for choice in choices}
    close = difflib.get_close_matches(value.strip().lower(), list(folded), n=2, cutoff=0.75)
    # Two candidates (or none) is a guess, not a fix.
    return folded[close[0]] if len(close) == 1 else None


def fixes_for(record: Any, findings: Iterable[Finding]) -> list[_Fix]:
    """The unambiguous fixes for one record's findings."""
    envelope, _ = unwrap(record)
    if not isinstance(envelope, dict):
        return []
    fixes: list[_Fix] = []
    for finding in findings:
        if finding.code not in _FIXABLE_CODES:
            continue
        segments = _segments(finding.path)
        if not segments:
            continue
        pattern = path_pattern(finding.path)
        if finding.code == Code.UNKNOWN_FIELD:
            fix = _item_quantity_fix(envelope, segments, pattern)
        else:
            fix = _value_fix(envelope, segments, pattern, finding.code)
        if fix is not None:
            fixes.append(fix)
    return fixes


def _item_quantity_fix(
    envelope: dict[str, Any], segments: list[str | int], pattern: str
) -> _Fix | None:
    if len(segments) != 4 or segments[3] != "quantity" or not isinstance(segments[2], int):
        return None
    outer = _field_at(envelope, segments[:2])
    item = _parent(envelope, segments)
    if outer is None or outer.kind is not Kind.ITEMS or not isinstance(item, dict):
        return None
    if "itemQuantity" in item:
        return None  # both present: which one is right is not ours to decide
    items_pattern = pattern.rsplit(".", 1)[0]
    return _Fix(
        f"item_quantity|{items_pattern}",
        "item_quantity",
        items_pattern,
        segments,
        "quantity",
        "itemQuantity",
    )


def _value_fix(
    envelope: dict[str, Any], segments: list[str | int], pattern: str, code: str
) -> _Fix | None:
    spec = _field_at(envelope, segments)
    value = _value_at(envelope, segments)
    if spec is None or not isinstance(value, str):
        return None
    if code == Code.ENUM and spec.kind is Kind.CURRENCY:
        upper = value.upper()
        if upper != value and upper in CURRENCY_CODES:
            return _Fix(
                f"currency_case|{pattern}", "currency_case", pattern, segments, value, upper
            )
    elif code == Code.ENUM and spec.kind is Kind.ENUM:
        choice = _one_close_choice(value, spec.choices)
        if choice is not None:
            return _Fix(
                f"enum_spelling|{pattern}|{value}",
                "enum_spelling",
                pattern,
                segments,
                value,
                choice,
            )
    elif code == Code.TYPE and spec.kind in (Kind.NUMBER, Kind.INTEGER):
        number = _number_from_text(value, integer=spec.kind is Kind.INTEGER)
        if number is not None:
            return _Fix(
                f"number_string|{pattern}", "number_string", pattern, segments, value, number
            )
    return None


def import_fix_suggestions(signal_import: SignalImport) -> list[FixSuggestion]:
    """The fixes the preview offers, most signals fixed first."""
    source = signal_import.validation_source
    return [FixSuggestion(**data) for data in source.fix_suggestions or []]


def import_apply_fixes(*, signal_import: SignalImport, user: Any, fixes: list[str]) -> SignalImport:
    """Write a corrected copy of the file (NDJSON, every signal in order, fixed or not)
    and create a new import from it, validated again by the normal task."""
    source = signal_import.validation_source
    if source.status != ImportStatus.VALIDATED:
        raise ImportRefused("Fixes can be applied once the file has been checked.")
    offered = {fix.id for fix in import_fix_suggestions(source)}
    chosen = set(fixes)
    if not chosen:
        raise ImportRefused("Choose at least one fix to apply.")
    if not chosen <= offered:
        raise ImportRefused("One of the chosen fixes is not offered for this file any more.")

    app_key = source.app_key
    stored_name = uuid.uuid4().hex
    destination = _imports_dir() / stored_name
    try:
        _write_fixed_file(source, destination, chosen, app_key)
        with transaction.atomic():
            fixed = SignalImport.objects.create(
                created_by=user,
                app_key=app_key,
                mode=signal_import.mode,
                original_name=_fixed_name(source.original_name),
                stored_name=stored_name,
                size_bytes=destination.stat().st_size,
                status=ImportStatus.UPLOADED,
            )
            audit(
                action="import.fixes_applied",
                actor=user,
                signal_import=fixed,
                source=str(source.public_id),
                source_name=source.original_name,
                fixes=sorted(chosen),
            )
    except BaseException:
        destination.unlink(missing_ok=True)
        raise
    _queue_validation(fixed)
    return fixed


def _write_fixed_file(
    source: SignalImport, destination: Path, chosen: set[str], app_key: AppKey
) -> None:
    tier = _tier(app_key.tier)
    fast = FastPath(tier=tier, default_app_key=app_key.key)
    with (
        open_signal_file(
            import_file_path(source), max_inflated_bytes=settings.SIGNALS_GZIP_MAX_INFLATED_BYTES
        ) as signal_file,
        destination.open("xb") as out,
    ):
        for record in signal_file:
            # Clean signals (the fast path says so) are copied as they are.
            if record.raw is not None and fast.check_json(record.raw) is not None:
                out.write(record.raw + b"\n")
                continue
            value = _record_value(record)
            if value is _NOT_PARSED:
                out.write((record.raw or b"") + b"\n")  # kept, still broken: indexes hold
                continue
            if record.raw is None and fast.check_value(value) is not None:
                out.write(_dumps(value) + b"\n")
                continue
            check = check_signal(value, tier=tier, default_app_key=app_key.key)
            findings = [Finding.at(record.index, record.line, issue) for issue in check.issues]
            envelope, _ = unwrap(value)
            for fix in fixes_for(value, findings):
                if fix.id in chosen:
                    fix.apply(envelope)
            out.write(_dumps(value) + b"\n")


_DATA_SUFFIXES = (".gz", ".json", ".ndjson", ".jsonl", ".csv", ".txt")


def _fixed_name(original: str) -> str:
    stem = original
    while stem.lower().endswith(_DATA_SUFFIXES):
        stem = stem.rsplit(".", 1)[0]
    stem = stem.removesuffix(".fixed")
    return sanitize_file_name(f"{stem[:200] or 'import'}.fixed.ndjson")


# --- preview queries --------------------------------------------------------------------


def import_problem_table(signal_import: SignalImport) -> list[ProblemRow]:
    """Problems by field pattern and code, errors first then by count, with the first
    examples of each: two queries, both walking one index without sorting."""
    source = signal_import.validation_source
    groups = list(
        ImportFinding.objects.filter(signal_import=source)
        .values("path_pattern", "code", "severity")
        .annotate(count=Count("id"), signals=Count("signal", distinct=True))
        .order_by()
    )
    # Impact: what loses signals first, then how many signals, then how many findings.
    groups.sort(
        key=lambda g: (
            g["severity"] != ERROR,
            -g["signals"],
            -g["count"],
            g["path_pattern"],
            g["code"],
        )
    )
    total = max(source.signals, 1)
    shown = groups[:MAX_PROBLEM_ROWS]
    examples = _problem_examples(
        source, {(g["path_pattern"], g["code"], g["severity"]) for g in shown}
    )
    return [
        ProblemRow(
            path=group["path_pattern"],
            code=group["code"],
            severity=group["severity"],
            count=group["count"],
            signals=group["signals"],
            share=group["signals"] / total,
            examples=examples.get((group["path_pattern"], group["code"], group["severity"]), []),
        )
        for group in shown
    ]


def _problem_examples(
    source: SignalImport, wanted: set[tuple[str, str, str]]
) -> dict[tuple[str, str, str], list[ProblemExample]]:
    """The first PROBLEM_EXAMPLES findings (by signal) of every problem group, in one
    query: ROW_NUMBER() over each group, read in the order of the index on
    (import, path_pattern, code, severity, signal, id), so nothing is sorted."""
    if not wanted:
        return {}
    numbered = (
        ImportFinding.objects.filter(signal_import=source)
        .annotate(
            nth=Window(
                RowNumber(),
                partition_by=[F("path_pattern"), F("code"), F("severity")],
                order_by=[F("signal").asc(), F("id").asc()],
            )
        )
        .filter(nth__lte=PROBLEM_EXAMPLES)
        .order_by("path_pattern", "code", "severity", "signal", "id")
        .values_list("path_pattern", "code", "severity", "signal", "line", "message")
    )
    examples: dict[tuple[str, str, str], list[ProblemExample]] = {}
    for path, code, severity, signal, line, message in numbered:
        key = (path, code, severity)
        if key in wanted:
            examples.setdefault(key, []).append(ProblemExample(signal, line, message))
    return examples


def import_rejected_page(
    signal_import: SignalImport,
    *,
    after: int | None = None,
    limit: int = 50,
    path: str | None = None,
    code: str | None = None,
    severity: str | None = None,
    rejected_only: bool = True,
) -> RejectedPage:
    """One page of rejected signals in file order, after signal index `after`.

    The filters keep signals with at least one finding at `path` (a path pattern, as in
    the problem table), of `code` and of `severity`. With `rejected_only=False` signals
    that only have warnings are listed too (their record is not stored: `record` is None
    and `raw` empty). Keyset pagination: `next_after` is the last signal of this page.
    """
    source = signal_import.validation_source
    limit = max(1, min(limit, 500))
    filtered = path is not None or code is not None or severity is not None
    records: dict[int, RejectedSignal] = {}
    if not filtered and rejected_only:
        rejected_rows = RejectedSignal.objects.filter(signal_import=source)
        if after is not None:
            rejected_rows = rejected_rows.filter(signal__gt=after)
        page_rows = list(rejected_rows.order_by("signal")[: limit + 1])
        signals = [row.signal for row in page_rows]
        records = {row.signal: row for row in page_rows[:limit]}
    else:
        matching = ImportFinding.objects.filter(signal_import=source)
        if path is not None:
            matching = matching.filter(path_pattern=path)
        if code is not None:
            matching = matching.filter(code=code)
        if severity is not None:
            matching = matching.filter(severity=severity)
        if after is not None:
            matching = matching.filter(signal__gt=after)
        if rejected_only and severity != ERROR:
            # Rejected means "has an error finding" (unregistered app keys included).
            matching = matching.filter(
                signal__in=ImportFinding.objects.filter(
                    signal_import=source, severity=ERROR
                ).values("signal")
            )
        signals = list(
            matching.order_by("signal").values_list("signal", flat=True).distinct()[: limit + 1]
        )
    has_more = len(signals) > limit
    signals = signals[:limit]
    if not signals:
        return RejectedPage(entries=[], next_after=None)
    if not records:
        records = {
            row.signal: row
            for row in RejectedSignal.objects.filter(signal_import=source, signal__in=signals)
        }
    by_signal: dict[int, list[EntryFinding]] = {signal: [] for signal in signals}
    lines: dict[int, int | None] = {}
    for signal, line, f_path, f_severity, f_code, message in (
        ImportFinding.objects.filter(signal_import=source, signal__in=signals)
        .order_by("signal", "id")
        .values_list("signal", "line", "path", "severity", "code", "message")
    ):
        by_signal[signal].append(EntryFinding(f_path, f_severity, f_code, message))
        lines.setdefault(signal, line)
    entries = []
    for signal in signals:
        row = records.get(signal)
        entries.append(
            RejectedEntry(
                signal=signal,
                line=row.line if row is not None else lines.get(signal),
                rejected=row is not None,
                record=row.record if row is not None else None,
                raw=row.raw if row is not None else "",
                findings=by_signal[signal],
            )
        )
    return RejectedPage(entries=entries, next_after=signals[-1] if has_more else None)


# --- downloads --------------------------------------------------------------------------

_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(cell: str) -> str:
    """A cell a spreadsheet shows as text: one starting like a formula gets a leading '."""
    return "'" + cell if cell.startswith(_FORMULA_STARTS) else cell


class _Line:
    """csv.writer's file: hands back the line just written."""

    def write(self, value: str) -> str:
        return value


def error_report_csv(signal_import: SignalImport) -> Iterator[str]:
    """Every finding as CSV (index, line, path, severity, code, message), in file order,
    streamed from the database in chunks."""
    source = signal_import.validation_source
    writer = csv.writer(_Line())
    yield writer.writerow(["index", "line", "path", "severity", "code", "message"])
    rows = (
        ImportFinding.objects.filter(signal_import=source)
        .order_by("signal", "id")
        .values_list("signal", "line", "path", "severity", "code", "message")
        .iterator(chunk_size=FINDINGS_CHUNK)
    )
    for signal, line, f_path, f_severity, f_code, message in rows:
        yield writer.writerow(
            [
                signal,
                "" if line is None else line,
                spreadsheet_safe(f_path),
                f_severity,
                spreadsheet_safe(f_code),
                spreadsheet_safe(message),
            ]
        )


def iter_valid_records(signal_import: SignalImport) -> Iterator[Record]:
    """The records of the valid signals, in file order, as the reader gives them.

    Walks the file and the rejected indexes side by side, so neither is held in memory.
    """
    source = signal_import.validation_source
    rejected = (
        RejectedSignal.objects.filter(signal_import=source)
        .order_by("signal")
        .values_list("signal", flat=True)
        .iterator(chunk_size=FINDINGS_CHUNK)
    )
    next_rejected = next(rejected, None)
    with open_signal_file(
        import_file_path(source), max_inflated_bytes=settings.SIGNALS_GZIP_MAX_INFLATED_BYTES
    ) as signal_file:
        for record in signal_file:
            while next_rejected is not None and next_rejected < record.index:
                next_rejected = next(rejected, None)
            if record.index == next_rejected:
                continue
            yield record


def iter_valid_signals(signal_import: SignalImport) -> Iterator[tuple[int, bytes]]:
    """(index, JSON text) of each valid signal, in file order, as found in the file."""
    for record in iter_valid_records(signal_import):
        yield record.index, record.raw if record.raw is not None else _dumps(record.value)


def valid_signals_ndjson(signal_import: SignalImport) -> Iterator[bytes]:
    """Only the valid signals, one per line, in file order."""
    for _index, text in iter_valid_signals(signal_import):
        yield text + b"\n"
