"""Reading an import's file, in the child process that validation runs it in (see
`validation`): the validator over the file, then one follow-up pass over the records that
need more than their findings, everything written as files into a folder the parent then
loads into the database. Nothing here touches the database: the child shares the parent's
connection and must never use it.

What is kept for the database follows a storage policy, so that no file can make the
database hold more than a bounded multiple of its own size (SPEC §5): the counts per field
and code are always exact (they are the summary's); of `storage_budget` bytes (estimated
per row), three quarters go to findings, kept in file order, those the preview needs
first — each signal's first finding and the first EXAMPLES of each field and code — while
the others only fill half of that share; the last quarter goes to rejected records, in
file order. What is not kept is counted.

Finding codes added here (beyond the validator's, see validation.findings.Code), errors at
``appKey`` in the import flow only (the CLI judges the file alone, SPEC §2 and §5):
- ``unregistered_app_key``: the signal names an app key not registered in connectadmin;
- ``other_account``: the signal names an app key of another Connect account than the
  chosen key's, so it would be sent with the wrong account's API key.
"""

from __future__ import annotations

import codecs
import zlib
from array import array
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, replace
from itertools import islice
from pathlib import Path
from typing import IO, Any

import msgspec
import orjson

from signals_app.services.fixes import FIXABLE_CODES, FixSuggestion, fixes_for
from signals_app.services.records import NOT_PARSED, record_value
from signals_app.validation.engine import unwrap
from signals_app.validation.findings import ERROR, Finding, Summary, path_pattern
from signals_app.validation.processes import ReadCounters
from signals_app.validation.readers import Record, open_signal_file
from signals_app.validation.validate import Options, validate_file

UNREGISTERED_APP_KEY = "unregistered_app_key"
OTHER_ACCOUNT = "other_account"

EXAMPLES = 20  # findings of each field and code always kept (the preview's examples)
# Written into the folder once the validator's findings are all in the findings file (the
# follow-up pass may add more after them): "<bytes> <findings>" of the file at that moment.
# The parent stores those meanwhile (validation: a second core is idle in the follow-up).
FINDINGS_FILE = "findings.ndjson"
VALIDATED_MARK = "findings.validated"
MAX_FIX_SUGGESTIONS = 50
# Signals whose lines the follow-up keeps (16 bytes each); beyond, it reads every record.
_LINES_MAX = 8_000_000
# Estimated bytes a stored row costs the database beyond its text (heap tuple, indexes),
# on the safe side of PostgreSQL 15's: a finding's path is stored twice (path, pattern)
# and its pattern is in two indexes. Measured: 425 bytes for a finding with a 22-character
# path and a 79-character message (estimated 587), 121 for a rejected record "{}" (202);
# 200,000 "{}" signals stored ~20% under the estimate (tests/integration/
# test_poison_uploads.py checks the database grows by less than the budget).
FINDING_ROW_BYTES = 420
FINDING_PATH_WEIGHT = 4
REJECTED_ROW_BYTES = 200

# Flags per signal index, set while the validator's findings arrive.
_HAS_FINDING = 1
_HAS_ERROR = 2
_AT_APP_KEY = 4  # a finding at appKey already (no app key finding on top)
_FIXABLE = 8  # a finding a fix may address
_REJECTED_BYTE = bytes.maketrans(
    bytes(range(256)), bytes(1 if b & _HAS_ERROR else 0 for b in range(256))
)


@dataclass(frozen=True, slots=True)
class KeyDirectory:
    """The app keys a signal may name: those of the chosen key's Connect account, and
    the other accounts' (with the account's name, for the message)."""

    account: str
    own: frozenset[str]
    others: dict[str, str]


@dataclass(frozen=True, slots=True)
class ReadJob:
    path: str
    folder: str
    options: Options
    keys: KeyDirectory
    max_inflated: int
    workers: int
    parallel_min_bytes: int
    storage_budget: int


@dataclass(slots=True)
class ReadResult:
    file_format: str
    compressed: bool
    summary: Summary
    fix_suggestions: list[dict[str, Any]]
    findings_path: str  # NDJSON: {"signal", "line", "path", "severity", "code", "message"}
    rejected_path: str  # NDJSON: {"signal", "line", "raw"}
    rejected_flags: bytes  # zlib: one byte per signal, 1 when rejected
    findings_stored: int = 0
    findings_not_stored: int = 0
    records_stored: int = 0
    records_not_stored: int = 0


def read_import(job: ReadJob, counters: ReadCounters) -> ReadResult:
    """The child's whole job (see the module docstring)."""
    with open_signal_file(
        job.path, max_inflated_bytes=job.max_inflated, destination=job.options.destination
    ) as signal_file:
        file_format, compressed = signal_file.format, signal_file.compressed
    folder = Path(job.folder)
    keeper = _Keeper(folder, job.storage_budget, fixes=job.options.destination == "connect")
    try:
        summary = validate_file(
            job.path,
            # The validator counts the signals naming a key outside the account's, so
            # the follow-up knows whether it must look at every record's key.
            replace(job.options, app_keys=job.keys.own),
            keeper,
            max_inflated_bytes=job.max_inflated,
            counters=counters,
            workers=job.workers,
            parallel_min_bytes=job.parallel_min_bytes,
        )
        keeper.fixable.close()
        keeper.mark_validated()
        follow_up = _FollowUp(job, keeper, summary)
        follow_up.run(file_format, compressed=compressed)
    finally:
        keeper.close()
    flags = keeper.flags
    if len(flags) < summary.signals:
        flags.extend(bytes(summary.signals - len(flags)))
    return ReadResult(
        file_format=file_format,
        compressed=compressed,
        summary=summary,
        fix_suggestions=follow_up.fix_suggestions(),
        findings_path=str(keeper.findings_path),
        rejected_path=str(keeper.rejected_path),
        rejected_flags=zlib.compress(bytes(flags[: summary.signals]).translate(_REJECTED_BYTE)),
        findings_stored=keeper.findings_stored,
        findings_not_stored=keeper.findings_not_stored,
        records_stored=keeper.records_stored,
        records_not_stored=keeper.records_not_stored,
    )


class _Keeper:
    """The validator's sink: one byte of flags per signal, the fixable findings for the
    follow-up, and what the storage policy keeps, as files."""

    def __init__(self, folder: Path, budget: int, *, fixes: bool = True) -> None:
        self.flags = bytearray()
        self.fixes = fixes  # Connect's fixes apply (not to a file of Attentive events)
        self.findings_budget = budget * 3 // 4
        self.records_budget = budget - self.findings_budget
        self.used = self.records_used = 0
        self.findings_path = folder / FINDINGS_FILE
        self.rejected_path = folder / "rejected.ndjson"
        self.fixable_path = folder / "fixable.ndjson"
        self.findings: IO[bytes] = self.findings_path.open("wb", buffering=1 << 20)
        self.rejected: IO[bytes] = self.rejected_path.open("wb", buffering=1 << 20)
        self.fixable: IO[bytes] = self.fixable_path.open("wb", buffering=1 << 20)
        self.groups: Counter[tuple[str, str]] = Counter()
        self.last_signal = -1
        # The signals with an error or a fixable finding and their lines (NDJSON), in file
        # order: the follow-up then reads those lines alone (`lines_known`).
        self.line_signals = array("q")
        self.line_numbers = array("q")
        self.lines_known = True
        self.noting_lines = True  # until the validator is done: the follow-up's own not
        self._unfinished = ""  # of add_json_lines
        self.findings_stored = self.findings_not_stored = 0
        self.records_stored = self.records_not_stored = 0

    def __call__(self, finding: Finding) -> None:
        self.take(*finding)

    def add_json_lines(self, text: str) -> None:
        """The parallel path's findings, as NDJSON text (validate.LineSink), which may
        arrive in pieces that cut a line: the unfinished end waits for the next piece."""
        lines = (self._unfinished + text).split("\n")
        self._unfinished = lines.pop()
        for line in lines:
            data = orjson.loads(line)
            self.take(
                data["signal"],
                data.get("line"),
                data["path"],
                data["severity"],
                data["code"],
                data["message"],
            )

    def take(
        self, signal: int, line: int | None, path: str, severity: str, code: str, message: str
    ) -> None:
        flags = self.flags
        if signal >= len(flags):
            flags.extend(bytes(signal + 1 - len(flags)))
        bits = _HAS_FINDING
        if severity == ERROR:
            bits |= _HAS_ERROR
        if path == "appKey":
            bits |= _AT_APP_KEY
        data = {
            "signal": signal,
            "line": line,
            "path": path,
            "severity": severity,
            "code": code,
            "message": message,
        }
        if self.fixes and code in FIXABLE_CODES:
            bits |= _FIXABLE
            self.fixable.write(orjson.dumps(data, option=orjson.OPT_APPEND_NEWLINE))
        if bits & (_HAS_ERROR | _FIXABLE) and self.noting_lines and self.lines_known:
            self._note_line(signal, line)
        flags[signal] |= bits
        first = signal != self.last_signal
        self.last_signal = signal
        group = (path_pattern(path), code)
        self.groups[group] += 1
        needed = first or self.groups[group] <= EXAMPLES
        cost = FINDING_ROW_BYTES + FINDING_PATH_WEIGHT * len(path) + len(message)
        budget = self.findings_budget if needed else self.findings_budget // 2
        if self.used + cost <= budget:
            self.used += cost
            self.findings_stored += 1
            self.findings.write(orjson.dumps(data, option=orjson.OPT_APPEND_NEWLINE))
        else:
            self.findings_not_stored += 1

    def keep_record(self, signal: int, line: int | None, raw: str) -> None:
        cost = REJECTED_ROW_BYTES + len(raw.encode())
        if self.records_used + cost <= self.records_budget:
            self.records_used += cost
            self.records_stored += 1
            data = {"signal": signal, "line": line, "raw": raw}
            self.rejected.write(orjson.dumps(data, option=orjson.OPT_APPEND_NEWLINE))
        else:
            self.records_not_stored += 1

    def _note_line(self, signal: int, line: int | None) -> None:
        signals = self.line_signals
        last = signals[-1] if signals else -1
        if signal == last:
            return
        if signal < last or line is None or len(signals) >= _LINES_MAX:
            self.lines_known = False  # out of order, no line, too many: the reader then
            self.line_signals, self.line_numbers = array("q"), array("q")
            return
        signals.append(signal)
        self.line_numbers.append(line)

    def mark_validated(self) -> None:
        """Tell the parent the findings written so far are final (VALIDATED_MARK)."""
        self.noting_lines = False
        self.findings.flush()
        mark = self.findings_path.with_name(VALIDATED_MARK)
        part = mark.with_name(mark.name + ".part")
        part.write_text(f"{self.findings.tell()} {self.findings_stored}")
        part.replace(mark)  # whole or absent

    def flag(self, signal: int) -> int:
        return self.flags[signal] if signal < len(self.flags) else 0

    def last_flagged(self, mask: int) -> int:
        """The highest signal index with one of `mask`'s flags; -1 when none has."""
        for signal in range(len(self.flags) - 1, -1, -1):
            if self.flags[signal] & mask:
                return signal
        return -1

    def close(self) -> None:
        for file in (self.findings, self.rejected, self.fixable):
            file.close()


class _FollowUp:
    """The second pass: one streaming walk over the file, in step with the fixable
    findings, for the records that need more than their findings: the rejected ones (their
    record is kept for the preview), those with a fixable finding (the fixes the preview
    offers), and every record naming an app key outside the chosen key's account. The
    validator counts those (Summary.other_app_keys); when there are none, as in most files,
    this pass reads just up to the last record it needs, only the flagged lines of an
    uncompressed NDJSON file, and nothing for a file without findings.
    """

    def __init__(self, job: ReadJob, keeper: _Keeper, summary: Summary) -> None:
        self.job = job
        self.keeper = keeper
        self.summary = summary
        self.fixes: dict[str, FixSuggestion] = {}

    def run(self, file_format: str, *, compressed: bool = True) -> None:
        job = self.job
        # The validator counted the signals naming a key outside the account's (its
        # Options.app_keys are the account's keys).
        keys_known = self.summary.other_app_keys == 0
        last = self.keeper.last_flagged(_HAS_ERROR | _FIXABLE)
        if keys_known and last < 0:
            return  # the common case of a clean file: nothing to read again
        flag = self.keeper.flag
        with (
            self.keeper.fixable_path.open("rb") as fixable_file,
            open_signal_file(
                job.path, max_inflated_bytes=job.max_inflated, destination=job.options.destination
            ) as signal_file,
        ):
            fixable = map(orjson.loads, fixable_file)
            pending = next(fixable, None)
            records: Iterable[Record] = signal_file
            if keys_known and file_format == "ndjson" and not compressed:
                records = self._flagged_lines() or signal_file
            for record in records:
                index = record.index
                if keys_known and index > last:
                    break
                findings: list[Finding] = []
                while pending is not None and pending["signal"] <= index:
                    if pending["signal"] == index:
                        findings.append(Finding(**pending))
                    pending = next(fixable, None)
                bits = flag(index)
                if not keys_known or bits & (_HAS_ERROR | _FIXABLE):
                    self._record(record, bits, findings)

    def _flagged_lines(self) -> Iterator[Record] | None:
        """The records of the signals with an error or a fixable finding, taken from the
        lines their findings name, without reading the other lines as records (the common
        case of an uncompressed NDJSON file whose app keys the scan vouched for). None
        when a line is unknown."""
        keeper = self.keeper
        if not keeper.lines_known or not keeper.line_signals:
            return None
        return _lines_of(self.job.path, zip(keeper.line_numbers, keeper.line_signals, strict=True))

    def _record(self, record: Record, bits: int, fixable: list[Finding]) -> None:
        rejected = bool(bits & _HAS_ERROR)
        if not bits & _AT_APP_KEY and self.job.options.destination == "connect":
            problem = self._app_key_problem(_file_app_key(record))
            if problem is not None:
                code, message = problem
                self.keeper.take(record.index, record.line, "appKey", ERROR, code, message)
                self.summary.errors += 1
                self.summary.by_field[("appKey", code, ERROR)] += 1
                self.summary.signals_by_field[("appKey", code, ERROR)] += 1
                if not rejected:
                    self.summary.rejected += 1
                    self.summary.valid -= 1
                    rejected = True
        if not rejected and not fixable:
            return
        value = record_value(record)
        if rejected:
            self.keeper.keep_record(record.index, record.line, _record_text(record, value))
        if value is not NOT_PARSED and fixable:
            self._count_fixes(value, fixable)

    def _app_key_problem(self, app_key: Any) -> tuple[str, str] | None:
        keys = self.job.keys
        if not isinstance(app_key, str) or not app_key.strip() or app_key in keys.own:
            return None
        shown = app_key[:80]
        other = keys.others.get(app_key)
        if other is not None:
            return (
                OTHER_ACCOUNT,
                f'appKey "{shown}" belongs to the Connect account "{other}", not to '
                f'"{keys.account}" (the chosen key\'s): it would be sent with the wrong '
                "account's API key; import it under a key of its own account",
            )
        return (
            UNREGISTERED_APP_KEY,
            f'appKey "{shown}" is not registered in connectadmin; correct it, or have an '
            "administrator add the key",
        )

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

    def fix_suggestions(self) -> list[dict[str, Any]]:
        fixes = sorted(self.fixes.values(), key=lambda f: (-f.signals, f.id))
        return [asdict(f) for f in fixes[:MAX_FIX_SUGGESTIONS]]


def _lines_of(path: str, wanted: Iterable[tuple[int, int]]) -> Iterator[Record]:
    """Record(signal, line, the line's stripped bytes) for each (line, signal) of
    `wanted`, lines rising, as the NDJSON reader gives them (a UTF-8 BOM skipped); the
    lines between are skipped in C (islice), never made records."""
    read = 0  # lines read so far
    with open(path, "rb", buffering=1024**2) as file:
        for line, signal in wanted:
            text = next(islice(file, line - read - 1, None), None)
            if text is None:
                return
            if read == 0:
                text = text.removeprefix(codecs.BOM_UTF8)  # as the reader skips it
            read = line
            yield Record(signal, line, text.strip(), None)


def _record_text(record: Record, value: Any) -> str:
    """A rejected record's text as the preview shows it: the file's own text for JSON and
    NDJSON (keys in the file's order), the row as JSON for CSV. PostgreSQL refuses NUL
    characters in text, so a NUL is kept as U+FFFD."""
    if record.raw is not None:
        text = record.raw.decode("utf-8", errors="replace")
    else:
        text = orjson.dumps(value, default=str).decode()
    return text.replace("\x00", "\ufffd").replace("\\u0000", "\ufffd")


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
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        return None  # not an object: the engine has reported it
    return peek.appKey


def _with_signals(fix: FixSuggestion, signals: int) -> FixSuggestion:
    return FixSuggestion(
        fix.id, fix.kind, fix.path, fix.before, fix.after, signals, fix.description
    )
