"""Validation of an import (the Celery task's body): the validator over the file, its
findings stored as they arrive, then one follow-up pass for what findings alone do not
give (rejected records, fix suggestions, unregistered app keys); `problem_counts` for the
history's charts.

The file is read as a stream: a 1 GB import is never held in memory, findings and rejected
signals go to the database in chunks while the file is read.

Finding codes added here (beyond the validator's, see validation.findings.Code):
- ``unregistered_app_key`` (error, at ``appKey``): the signal names an app key that is not
  registered in connectadmin (SPEC §2, import flow only; the CLI judges the file alone).
"""

from __future__ import annotations

import gzip
import logging
import os
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any, cast

import msgspec
from django.conf import settings
from django.db import connection as db_connection
from django.utils import timezone

from connectadmin.models import AppKey
from signals_app.models import (
    ImportFinding,
    ImportStatus,
    RejectedSignal,
    SignalImport,
    audit,
)
from signals_app.services.fixes import FIXABLE_CODES, FixSuggestion, fixes_for
from signals_app.services.records import NOT_PARSED, dumps, record_value, validation_tier
from signals_app.services.upload import import_file_path
from signals_app.validation.engine import unwrap
from signals_app.validation.findings import ERROR, Finding, Summary, path_pattern
from signals_app.validation.readers import Record, SignalFile, UnreadableFile, open_signal_file
from signals_app.validation.validate import (
    PARALLEL_MIN_BYTES,
    Forked,
    Options,
    validate_file,
    validate_records,
)

logger = logging.getLogger(__name__)

UNREGISTERED_APP_KEY = "unregistered_app_key"

# Rows per INSERT while validating: large enough to be cheap, small enough to keep the
# task's memory flat whatever the number of findings.
FINDINGS_CHUNK = 2000
REJECTED_CHUNK = 200
REJECTED_CHUNK_BYTES = 8 * 1024**2  # a record may be up to 16 MB: flush by size too
PROGRESS_EVERY_SECONDS = 0.5
MAX_FIX_SUGGESTIONS = 50
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
    options = Options(tier=validation_tier(app_key.tier), default_app_key=app_key.key)
    registered = frozenset(AppKey.objects.values_list("key", flat=True))
    path = import_file_path(signal_import)
    max_inflated = settings.SIGNALS_GZIP_MAX_INFLATED_BYTES
    store = _FindingStore(import_id)
    keys_scan: Forked[bool] | None = None
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
            if file_format in _JSON_FORMATS:
                # The scan of the app keys reads the whole file on one core: beside the
                # validator's parts rather than after them. Forked before the progress
                # thread starts, and so left out of the progress it reports.
                keys_scan = Forked(_all_app_keys_registered, (path, registered))
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
        keys_known = keys_scan.result() if keys_scan is not None else None
        follow_up.run(path, max_inflated, file_format, keys_known=keys_known)
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
    finally:
        if keys_scan is not None:
            keys_scan.kill()  # a no-op once its result is in
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


def _storable(record: Record, value: Any) -> tuple[Any, str]:
    """(record, raw) for RejectedSignal: the value (jsonb on PostgreSQL, for queries) and
    its JSON text, which keeps the keys in the file's order for the preview (jsonb orders
    them its own way). A record that is not JSON is kept as text only. PostgreSQL refuses
    NUL characters in text and jsonb, so a record holding one is kept as its JSON text
    with the NUL replaced."""
    if value is NOT_PARSED:
        text = (record.raw or b"").decode("utf-8", errors="replace")
        return None, text.replace("\x00", "\ufffd")
    text = dumps(value).decode()
    if "\\u0000" in text:
        return None, text.replace("\\u0000", "\ufffd")
    return value, text


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
        if finding.code in FIXABLE_CODES:
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

    def run(
        self, path: Path, max_inflated: int, file_format: str, *, keys_known: bool | None = None
    ) -> None:
        """`keys_known`: what _all_app_keys_registered said of the file, when it was asked
        already (None: ask it here)."""
        if keys_known is None:
            keys_known = file_format in _JSON_FORMATS and _all_app_keys_registered(
                path, self.registered_keys
            )
        last = self.store.last_flagged(_HAS_ERROR | _FIXABLE)
        if keys_known and last < 0:
            return  # the common case of a clean file: nothing to read again
        fixable = (
            ImportFinding.objects.filter(signal_import_id=self.import_id, code__in=FIXABLE_CODES)
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
        value = record_value(record)
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
        if value is not NOT_PARSED and fixable:
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
