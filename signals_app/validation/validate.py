"""Validating a whole file: read records as a stream, let the fast path wave clean signals
through, and hand everything else to the rule engine for its findings.

Large uncompressed NDJSON, CSV and one-element-per-line JSON array files are split by byte
ranges over the machine's cores; each part reports findings relative to its start and the
parts are stitched back in file order, so the report is the same as a single pass. A part
that cannot be judged apart from the rest (a JSON array laid out otherwise, a CSV split
inside a quoted cell, anything the single pass would refuse) sends the whole file down the
single pass, which then gives the findings or the refusal.

`Options.destination` chooses the rules: Acoustic Connect signals (the engine, behind the
fast path) or Attentive custom events (attentive.py, every record; no fast path). Events
count property keys per event type across the file (the first 200 are usable): each part
counts its own, and the parent reruns, with the keys of the parts before it, any part whose
count could differ from the single pass's (see _key_reruns), so the report stays the same.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import itertools
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal, Protocol, TypeVar

import orjson

from signals_app.validation import scratch
from signals_app.validation.duplicates import duplicate_issues
from signals_app.validation.engine import check_signal, unwrap
from signals_app.validation.fastpath import CLEAN, CLEAN_CONTACT_KEY_ONLY, NOT_SURE, FastPath
from signals_app.validation.findings import ERROR, Code, Finding, Issue, Summary
from signals_app.validation.jsontext import TooLarge, parse_json
from signals_app.validation.processes import Forked, ReadCounters
from signals_app.validation.readers import (
    MAX_BLANK_BYTES,
    NO_CSV_ROWS,
    Record,
    SignalFile,
    UnreadableFile,
    csv_row_builder,
    open_signal_file,
)
from signals_app.validation.schema import Tier

if TYPE_CHECKING:
    # Imported where used: a Connect run (and the command line's start) does without them.
    from signals_app.validation.attentive import EventIds, KeyLimit, KeySnapshot

FindingSink = Callable[[Finding], None]
IssueWriter = Callable[[int, int | None, Issue], None]

DEFAULT_MAX_INFLATED = 4 * 1024**3
BOM = b"\xef\xbb\xbf"
# Below this, forking workers costs more than it saves.
PARALLEL_MIN_BYTES = 64 * 1024**2


class LineSink(Protocol):
    """A finding sink that also takes findings already written as NDJSON lines (the
    contract's format, one finding per line, each ending in a newline)."""

    def __call__(self, finding: Finding) -> None: ...

    def add_json_lines(self, text: str) -> None: ...


class BadEncoding(UnreadableFile):
    """An NDJSON line that is not UTF-8: the whole file is refused (SPEC §5)."""

    def __init__(self, line: int | None) -> None:
        super().__init__(f"line {line} is not valid UTF-8; save the file as UTF-8")
        self.line = line


@dataclass(frozen=True, slots=True)
class Options:
    tier: Tier = "ultimate"
    default_app_key: str | None = None
    # The app keys an import's signals may name without a second look (the chosen key's
    # account's): the summary counts the signals naming another (Summary.other_app_keys),
    # so the caller knows whether it must read the file again to say whose key each is.
    # None (the command line): not counted.
    app_keys: frozenset[str] | None = None
    # Whose rules judge the records: Acoustic Connect signals, or Attentive custom events
    # (SPEC §6), which ignore tier, default_app_key and app_keys.
    destination: Literal["connect", "attentive"] = "connect"
    # Attentive: the moment occurredAt is measured from (seconds since the epoch: older
    # than 12 hours, no journey fires); None: when validate_file starts.
    now: float | None = None


class _NoFastPath:
    """The fast path's interface for Attentive events, which have none: every record is
    "not sure", so the engine judges it."""

    prefer_wrapper = False

    def check_json(self, raw: bytes) -> None:
        return None

    def check_value(self, value: Any) -> None:
        return None

    def classify_json(self, raw: bytes) -> int:
        return NOT_SURE

    def classify_value(self, value: Any) -> int:
        return NOT_SURE

    def json_classifier(self) -> Callable[[bytes], int]:
        return self.classify_json


class _Judge:
    """Judges records one by one and keeps the summary."""

    def __init__(
        self, options: Options, sink: FindingSink | None, writer: IssueWriter | None = None
    ) -> None:
        self.options = options
        self.fast: FastPath | _NoFastPath
        self.events = options.destination == "attentive"
        # Attentive: the property keys per event type met so far (None for Connect).
        self.keys: KeyLimit | None = None
        # Attentive: the externalEventIds of the valid events met so far.
        self.ids: EventIds | None = None
        self.now = 0.0  # Attentive: what occurredAt is measured from
        if self.events:
            from signals_app.validation import attentive

            self._attentive = attentive
            self.fast = _NoFastPath()
            self.keys = attentive.KeyLimit()
            self.ids = attentive.EventIds()
            self.now = time.time() if options.now is None else options.now
        else:
            self.fast = FastPath(
                tier=options.tier,
                default_app_key=options.default_app_key,
                app_keys=options.app_keys,
            )
        self.sink = sink
        self.writer = writer  # instead of the sink: takes the issue without a Finding
        self.summary = Summary()

    def judge_value(self, index: int, line: int | None, value: Any) -> None:
        verdict = self.fast.check_value(value)
        if verdict is not None:
            self._clean(verdict[1])
            return
        self._full(index, line, value)

    def judge_json(self, index: int, line: int | None, raw: bytes) -> None:
        verdict = self.fast.check_json(raw)
        if verdict is not None:
            self._clean(verdict[1])
            return
        self.judge_unclear_json(index, line, raw)

    def judge_unclear_json(self, index: int, line: int | None, raw: bytes) -> None:
        """A record the fast path did not call clean: the engine judges it."""
        try:
            value = parse_json(raw)
        except UnicodeDecodeError:
            raise BadEncoding(line) from None
        except TooLarge as exc:
            issue = Issue("", ERROR, Code.TOO_LARGE, f"the signal cannot be read: {exc}")
            self._report(index, line, [issue], contact_key_only=False)
            return
        except ValueError as exc:
            issue = Issue("", ERROR, Code.SYNTAX, f"the record is not valid JSON: {exc}")
            self._report(index, line, [issue], contact_key_only=False)
            return
        self._full(index, line, value, raw)

    def judge_unclear_value(
        self, index: int, line: int | None, value: Any, raw: bytes | None = None
    ) -> None:
        """A record the fast path did not call clean, read already (from `raw`, its text,
        when it was JSON): the engine judges it."""
        self._full(index, line, value, raw)

    def _clean(self, contact_key_only: bool) -> None:
        self.add_clean(1, 1 if contact_key_only else 0)

    def add_clean(self, count: int, contact_key_only: int) -> None:
        summary = self.summary
        summary.signals += count
        summary.valid += count
        summary.contact_key_only += contact_key_only

    def _full(self, index: int, line: int | None, value: Any, raw: bytes | None = None) -> None:
        if self.events:
            self._full_event(index, line, value, raw)
            return
        check = check_signal(
            value, tier=self.options.tier, default_app_key=self.options.default_app_key
        )
        wrapped = unwrap(value)[0] is not value
        if not self.fast.prefer_wrapper and wrapped:
            self.fast.prefer_wrapper = True  # a wrapper file: decode wrappers first
        issues = check.issues
        if self.options.app_keys is not None:
            app_key = unwrap(value)[0]
            app_key = app_key.get("appKey") if isinstance(app_key, dict) else None
            if (
                isinstance(app_key, str)
                and app_key.strip()
                and app_key not in self.options.app_keys
            ):
                self.summary.other_app_keys += 1
        if raw is not None:
            # The text's repeated keys, which the decoded value no longer shows.
            duplicates = duplicate_issues(raw, value, wrapped=wrapped)
            if duplicates:
                issues = duplicates + issues
        self._report(index, line, issues, contact_key_only=check.contact_key_only)

    def _full_event(
        self, index: int, line: int | None, value: Any, raw: bytes | None = None
    ) -> None:
        """An Attentive custom event. An event with a key written twice is rejected, so its
        property keys do not count towards its type's 200."""
        attentive = self._attentive
        duplicates = attentive.attentive_duplicates(raw, value) if raw is not None else []
        check = attentive.check_event(value, keys=None if duplicates else self.keys, now=self.now)
        issues = duplicates + check.issues if duplicates else check.issues
        external_id = value.get("externalEventId") if value.__class__ is dict else None
        if (
            self.ids is not None
            and isinstance(external_id, str)
            and external_id.strip()
            and not any(issue.severity == ERROR for issue in issues)
        ):
            # Only a valid event is sent: only its id can be taken for another's.
            repeat = self.ids.repeat(external_id)
            if repeat is not None:
                issues = [*issues, repeat]
        self._report(index, line, issues, contact_key_only=False)

    def key_snapshot(self) -> KeySnapshot | None:
        return None if self.keys is None else self.keys.snapshot()

    def id_digests(self) -> tuple[int, ...] | None:
        return None if self.ids is None else self.ids.digests()

    def _report(
        self, index: int, line: int | None, issues: list[Issue], *, contact_key_only: bool
    ) -> None:
        self.summary.add(issues, contact_key_only=contact_key_only)
        if self.writer is not None:
            for issue in issues:
                self.writer(index, line, issue)
        elif self.sink is not None:
            for issue in issues:
                self.sink(Finding.at(index, line, issue))


def validate_records(
    records: Iterable[Record], options: Options, sink: FindingSink | None = None
) -> Summary:
    judge = _Judge(options, sink)
    for record in records:
        if record.raw is not None:
            judge.judge_json(record.index, record.line, record.raw)
        else:
            judge.judge_value(record.index, record.line, record.value)
    return judge.summary


def validate_file(
    path: str | os.PathLike[str],
    options: Options | None = None,
    sink: FindingSink | None = None,
    *,
    max_inflated_bytes: int = DEFAULT_MAX_INFLATED,
    counters: ReadCounters | None = None,
    workers: int | None = None,
    parallel_min_bytes: int = PARALLEL_MIN_BYTES,
) -> Summary:
    """Validate a file, sending each finding to `sink` in file order.

    Uncompressed NDJSON, CSV and one-element-per-line JSON arrays of `parallel_min_bytes`
    or more are split over `workers` processes. `counters`, when given, shows the bytes
    and signals read so far, the parts' included, to another process. A sink
    with an `add_json_lines(text)` method (see LineSink) then takes the workers' NDJSON
    lines as they are, without a Finding object per finding.

    Raises UnreadableFile when the file cannot be read at all; findings already sent
    for its beginning must then be discarded by the caller (the CLI buffers them).
    """
    global _counters
    options = options or Options()
    if options.destination == "attentive" and options.now is None:
        options = dataclasses.replace(options, now=time.time())  # one moment for all parts
    workers = workers if workers is not None else (os.cpu_count() or 1)
    _counters = counters  # the parts, forked, find them here
    try:
        with open_signal_file(
            path, max_inflated_bytes=max_inflated_bytes, destination=options.destination
        ) as signal_file:
            if (
                not signal_file.compressed
                and workers > 1
                and signal_file.size >= parallel_min_bytes
            ):
                summary = _validate_parallel(Path(path), signal_file, options, sink, workers)
                if summary is not None:
                    return summary
                if counters is not None:
                    counters.clear()  # the single pass reads it all again
            records: Iterable[Record] = signal_file
            if counters is not None:
                records = _counting(signal_file, counters)
            return validate_records(records, options, sink)
    finally:
        _counters = None


_counters: ReadCounters | None = None  # of the validate_file call in progress


def _counting(signal_file: SignalFile, counters: ReadCounters) -> Iterator[Record]:
    count = 0
    for record in signal_file:
        count += 1
        if count % 4096 == 0:
            counters.set(0, signal_file.position(), count)
        yield record
    counters.set(0, signal_file.size, count)


def _count_part(number: int, bytes_read: int, signals: int) -> None:
    if _counters is not None:
        _counters.set(1 + number, bytes_read, signals)


# --- several processes -------------------------------------------------------------------

_BLOCK_BYTES = 4 * 1024**2  # what a worker reads at a time
_JSON_LINE_MAX = 1024**2  # a longer array element takes the single pass (its size limit)
_CSV_SCAN_BYTES = 8 * 1024**2


class _Unfit(Exception):
    """The part cannot be judged apart from the rest of the file: the whole file takes
    the single pass, which gives the findings or the refusal."""


@dataclass(frozen=True, slots=True)
class _PartResult:
    summary: Summary
    lines: int  # lines in the part, blank ones included
    findings_path: str
    bad_encoding_line: int | None = None  # counted from the part's start
    unfit: bool = False
    # JSON arrays: the part's first and last tokens ("[", "E" an element, ",", "]"),
    # "" when it has none, for the parent to check the structure across parts.
    first: str = ""
    last: str = ""
    # Attentive: the property keys per event type the part met (KeyLimit.snapshot), and
    # the digests of its valid events' externalEventIds (EventIds.digests).
    keys: KeySnapshot | None = None
    ids: tuple[int, ...] | None = None


class _FindingWriter:
    """A part's findings as NDJSON lines in a temporary file of the run's folder, numbered
    from the part's start (or for the whole file: the first part's numbers are final)."""

    def __init__(self, folder: str) -> None:
        fd, self.path = tempfile.mkstemp(prefix="part-", suffix=".ndjson", dir=folder)
        self._file = os.fdopen(fd, "wb", buffering=256 * 1024)

    def write(self, index: int, line: int | None, issue: Issue) -> None:
        path, severity, code, message = issue
        data: dict[str, Any]
        if line is None:
            data = {"signal": index, "path": path, "severity": severity}
        else:
            data = {"signal": index, "line": line, "path": path, "severity": severity}
        data["code"] = str(code)  # a StrEnum's str() is its value
        data["message"] = message
        self._file.write(orjson.dumps(data, option=orjson.OPT_APPEND_NEWLINE))

    def close(self) -> None:
        self._file.close()


def _validate_parallel(
    path: Path, signal_file: SignalFile, options: Options, sink: FindingSink | None, workers: int
) -> Summary | None:
    """The summary, or None when the file must take the single pass."""
    file_format = signal_file.format
    if file_format == "ndjson":
        points = _split_points(path, workers)
        part_args: tuple[Any, ...] = (signal_file.max_record_bytes,)
        return _run_parts(path, _validate_ndjson_part, points, part_args, options, sink, 0)
    if file_format == "json-array":
        if not _looks_one_per_line(path, signal_file.bom_length):
            return None
        points = _split_points(path, workers)
        return _run_parts(path, _validate_json_part, points, (), options, sink, 0)
    if file_format in ("csv", "export-csv", "events-csv"):
        head = signal_file.csv_header()
        if head is None:
            return None
        header, header_lines, body_start = head
        points = _csv_split_points(path, body_start, workers)
        part_args = (file_format, signal_file.delimiter, header, header_lines)
        summary = _run_parts(
            path, _validate_csv_part, points, part_args, options, sink, header_lines
        )
        if summary is not None and summary.signals == 0:
            raise UnreadableFile(NO_CSV_ROWS)  # as the single pass says it
        return summary
    return None


PartFunction = Callable[..., _PartResult]
T = TypeVar("T")


def _run_parts(
    path: Path,
    function: PartFunction,
    points: list[int],
    part_args: tuple[Any, ...],
    options: Options,
    sink: FindingSink | None,
    lines_before: int,
) -> Summary | None:
    """`function(path, number, start, end, options, folder, *part_args)` for each range
    between `points`, each in a process of its own; then the parts' findings in order.

    The parts write their findings into a folder of this run's, removed with all it holds
    whatever happens: a part that raises or is killed cannot remove its own file."""
    ranges = list(itertools.pairwise(points))
    folder = scratch.make("parts")
    try:
        parts: list[Forked[_PartResult]] = []
        results: list[_PartResult] = []
        try:
            for number, (a, b) in enumerate(ranges):
                args = (str(path), number, a, b, options, folder, *part_args)
                parts.append(Forked(function, args))
            for part in parts:
                results.append(part.result())
        except BaseException:  # a part failed, or a fork did: stop the others
            for part in parts:
                part.kill()
            raise
        if any(result.unfit for result in results) or not _tokens_fit(results, function):
            return None
        if options.destination == "attentive":
            reruns = _key_reruns([result.keys for result in results])
            if reruns is None:
                return None
            id_reruns = _id_reruns([result.ids or () for result in results])
            if reruns or id_reruns:
                _rerun_parts(
                    path, function, ranges, part_args, options, folder, reruns, id_reruns, results
                )
        return _stitch(results, sink, lines_before)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# Attentive: per part to run again, the keys each event type has met in the parts before it.
Presets = dict[int, dict[str, tuple[str, ...]]]
_key_presets: Presets = {}  # for the parts run again, forked, to find
# Attentive: per part to run again, the digests of the externalEventIds it shares with the
# valid events of the parts before it.
IdPresets = dict[int, frozenset[int]]
_id_presets: IdPresets = {}


def _part_judge(options: Options, writer: _FindingWriter, number: int) -> _Judge:
    judge = _Judge(options, None, writer.write)
    preset = _key_presets.get(number)
    if preset is not None:
        from signals_app.validation.attentive import KeyLimit

        judge.keys = KeyLimit(preset)
    ids = _id_presets.get(number)
    if ids is not None:
        from signals_app.validation.attentive import EventIds

        judge.ids = EventIds(ids)
    return judge


def _id_reruns(parts: list[tuple[int, ...]]) -> IdPresets:
    """The parts of an Attentive file holding an externalEventId that a valid event of a
    part before it has, each with those ids' digests: run again from them, the part warns
    where the single pass does (a part counted from nothing misses the repeats of ids met
    before it, and only those)."""
    seen: set[int] = set()
    reruns: IdPresets = {}
    for number, digests in enumerate(parts):
        if number and (shared := seen.intersection(digests)):
            reruns[number] = frozenset(shared)
        seen.update(digests)
    return reruns


def _key_reruns(snapshots: list[KeySnapshot | None]) -> Presets | None:
    """The parts of an Attentive file whose key_limit warnings could differ from the single
    pass's, each with the keys per type that the single pass has met when it reaches the
    part; None when the file must take the single pass (types past MAX_TYPES_TRACKED).

    A part counted from nothing. For a type the parts before it never met, that is what the
    single pass does. For another, it is still the same when the part met no more than 200
    keys of the type and these together with the keys met before are no more than 200:
    neither way warns. Any other part runs again from the keys met before it, which are
    the first 200 of the parts before it, merged in file order: each part's first 200
    hold all the keys the merge can take from it."""
    from signals_app.validation.attentive import MAX_KEYS_PER_TYPE, MAX_TYPES_TRACKED

    merged: dict[str, dict[str, None]] = {}
    reruns: Presets = {}
    for number, snapshot in enumerate(snapshots):
        assert snapshot is not None  # an Attentive part always sends its keys
        if snapshot.capped:
            return None
        if number and any(
            event_type in merged
            and (over or len(merged[event_type].keys() | set(keys)) > MAX_KEYS_PER_TYPE)
            for event_type, (keys, over) in snapshot.types.items()
        ):
            reruns[number] = {event_type: tuple(keys) for event_type, keys in merged.items()}
        for event_type, (keys, _) in snapshot.types.items():
            known = merged.setdefault(event_type, {})
            for key in keys:
                if len(known) >= MAX_KEYS_PER_TYPE:
                    break
                known[key] = None
    if len(merged) > MAX_TYPES_TRACKED:
        return None  # the single pass stops counting new types there
    return reruns


def _rerun_parts(
    path: Path,
    function: PartFunction,
    ranges: list[tuple[int, int]],
    part_args: tuple[Any, ...],
    options: Options,
    folder: str,
    reruns: Presets,
    id_reruns: IdPresets,
    results: list[_PartResult],
) -> None:
    """Run the parts in `reruns` and `id_reruns` again, each from its preset keys and ids,
    in place in `results`."""
    global _key_presets, _id_presets
    _key_presets, _id_presets = reruns, id_reruns  # the forked parts find theirs here
    parts: list[tuple[int, Forked[_PartResult]]] = []
    try:
        for number in sorted(reruns.keys() | id_reruns.keys()):
            a, b = ranges[number]
            args = (str(path), number, a, b, options, folder, *part_args)
            parts.append((number, Forked(function, args)))
        for number, part in parts:
            os.unlink(results[number].findings_path)
            results[number] = part.result()
    except BaseException:
        for _, part in parts:
            part.kill()
        raise
    finally:
        _key_presets, _id_presets = {}, {}


def _stitch(results: list[_PartResult], sink: FindingSink | None, lines_before: int) -> Summary:
    summary = Summary()
    signals_before = 0
    add_lines = getattr(sink, "add_json_lines", None)
    for number, result in enumerate(results):
        if result.bad_encoding_line is not None:
            raise BadEncoding(result.bad_encoding_line + lines_before)
        if sink is not None:
            # The first part numbered its findings for the whole file already.
            offsets = (0, 0) if number == 0 else (signals_before, lines_before)
            if add_lines is not None:
                _copy_lines(result.findings_path, add_lines, *offsets)
            else:
                with open(result.findings_path, "rb") as findings:
                    _replay(findings, sink, *offsets)
        summary.merge(result.summary)
        signals_before += result.summary.signals
        lines_before += result.lines
    return summary


def _copy_lines(
    findings_path: str, add_lines: Callable[[str], None], signals_before: int, lines_before: int
) -> None:
    if not signals_before and not lines_before:
        with open(findings_path, encoding="utf-8") as findings:
            while text := findings.read(1024**2):
                add_lines(text)
        return
    with open(findings_path, "rb") as findings:
        batch: list[bytes] = []
        for line in findings:
            batch.append(_renumbered(line, signals_before, lines_before))
            if len(batch) == 4096:
                add_lines(b"".join(batch).decode())
                batch.clear()
        if batch:
            add_lines(b"".join(batch).decode())


_SIGNAL_AT = len(b'{"signal":')
_LINE_KEY = b'"line":'


def _renumbered(line: bytes, signals_before: int, lines_before: int) -> bytes:
    """A finding line of _FindingWriter's with its signal (and line) moved on. The writer
    always starts a line `{"signal":N,` then `"line":L,` when it has one, so the numbers
    are swapped in place rather than the line parsed and written again."""
    comma = line.index(b",", _SIGNAL_AT)
    signal = int(line[_SIGNAL_AT:comma]) + signals_before
    rest = comma + 1
    if line.startswith(_LINE_KEY, rest):
        at = rest + len(_LINE_KEY)
        end = line.index(b",", at)
        number = int(line[at:end]) + lines_before
        return b'{"signal":%d,"line":%d%s' % (signal, number, line[end:])
    return b'{"signal":%d%s' % (signal, line[comma:])


def _replay(findings: IO[bytes], sink: FindingSink, signals_before: int, lines_before: int) -> None:
    for line in findings:
        data = orjson.loads(line)
        number = data.get("line")
        sink(
            Finding(
                data["signal"] + signals_before,
                None if number is None else number + lines_before,
                data["path"],
                data["severity"],
                data["code"],
                data["message"],
            )
        )


def _split_points(path: Path, parts: int) -> list[int]:
    """Byte offsets where each part starts, always at the beginning of a line."""
    size = path.stat().st_size
    points = [0]
    with path.open("rb") as f:
        for part in range(1, parts):
            f.seek(size * part // parts)
            f.readline()  # finish the line we landed in
            offset = f.tell()
            if offset > points[-1] and offset < size:
                points.append(offset)
    points.append(size)
    return points


def _line_blocks(path: str, start: int, end: int, max_line: int) -> Iterator[list[bytes]]:
    """The lines of bytes [start, end), each with its newline (but perhaps the last), a
    block at a time; raises _Unfit for a line longer than `max_line` without its newline
    (the single pass then says what it says). Lines are cut by BufferedReader's readline,
    in C with memchr: bytes.split would look at every byte in a loop of its own."""
    with open(path, "rb", buffering=0) as raw:
        lines_of = io.BufferedReader(_Window(raw, start, end), _BLOCK_BYTES).readlines
        while lines := lines_of(_BLOCK_BYTES):
            if max(map(len, lines)) > max_line and any(
                len(line.removesuffix(b"\n")) > max_line for line in lines
            ):
                raise _Unfit
            yield lines


# --- NDJSON ------------------------------------------------------------------------------


def _validate_ndjson_part(
    path: str,
    number: int,
    start: int,
    end: int,
    options: Options,
    folder: str,
    max_record_bytes: int,
) -> _PartResult:
    """Validate the lines in [start, end); findings numbered from the part's start."""
    writer = _FindingWriter(folder)
    judge = _part_judge(options, writer, number)
    # The hot loop: the fast path classifies a whole block of lines (one call per line,
    # counted in C); only the lines it does not call clean (blank ones among them) take
    # a Python step each, to the engine.
    fast = judge.fast
    clean = clean_contact_key_only = 0
    line_no = signals = 0  # before the block
    try:
        blank_run = read = 0
        for lines in _line_blocks(path, start, end, max_record_bytes):
            if line_no == 0 and start == 0:
                lines[0] = lines[0].removeprefix(BOM)
            # A block of nothing but blank lines (no signal is under 3 bytes a line) is
            # skipped whole; too long a run of them takes the single pass, which says so.
            block_bytes = sum(map(len, lines))
            if block_bytes < 3 * len(lines) and b"".join(lines).isspace():
                blank_run += block_bytes
                if blank_run > MAX_BLANK_BYTES:
                    raise _Unfit
                line_no += len(lines)
                read += block_bytes
                continue
            blank_run = 0
            # A classifier per block: the engine may switch the fast path to wrappers.
            codes = list(map(fast.json_classifier(), lines))
            clean += codes.count(CLEAN)
            contact_key_only = codes.count(CLEAN_CONTACT_KEY_ONLY)
            clean += contact_key_only
            clean_contact_key_only += contact_key_only
            blanks = 0
            i = -1
            for _ in range(codes.count(NOT_SURE)):
                i = codes.index(NOT_SURE, i + 1)
                stripped = lines[i].strip()
                if not stripped:
                    blanks += 1
                    continue
                judge.judge_unclear_json(signals + i - blanks, line_no + i + 1, stripped)
            line_no += len(lines)
            signals += len(lines) - blanks
            read += block_bytes
            _count_part(number, read, signals)
    except BadEncoding as exc:
        writer.close()
        return _PartResult(judge.summary, line_no, writer.path, bad_encoding_line=exc.line)
    except _Unfit:
        writer.close()
        return _PartResult(judge.summary, line_no, writer.path, unfit=True)
    writer.close()
    judge.add_clean(clean, clean_contact_key_only)
    return _PartResult(
        judge.summary, line_no, writer.path, keys=judge.key_snapshot(), ids=judge.id_digests()
    )


# --- JSON arrays, one element per line ---------------------------------------------------

# What may follow each token: "S" the file's start, "[" and "]" the brackets, "E" an
# element, "," the comma after one.
_FOLLOWS: dict[str, str] = {"S": "[", "[": "E]", "E": ",]", ",": "E", "]": ""}


def _looks_one_per_line(path: Path, bom: int) -> bool:
    """A cheap look at both ends: "[" and a complete object on its first lines, "]" as the
    last byte that is not blank (else the array is truncated: the single pass refuses it)."""
    with path.open("rb") as f:
        head = f.read(64 * 1024)[bom:]
        f.seek(max(0, path.stat().st_size - 4096))
        tail = f.read()
    if not tail.rstrip().endswith(b"]"):
        return False
    lines = [line.strip() for line in head.split(b"\n")[:-1]]  # complete lines only
    lines = [line for line in lines if line]
    if not lines or not lines[0].startswith(b"["):
        return False
    first = lines[0][1:].strip() or (lines[1] if len(lines) > 1 else b"")
    first = first.removesuffix(b",").removesuffix(b"]").strip()
    if not first.startswith(b"{"):
        return False
    try:
        return isinstance(orjson.loads(first), dict)
    except orjson.JSONDecodeError:
        return False


def _validate_json_part(
    path: str, number: int, start: int, end: int, options: Options, folder: str
) -> _PartResult:
    """Validate the array elements in [start, end), one per line; findings carry no line.
    Anything but "[", elements each alone on a line with its comma, and "]" makes the
    part unfit."""
    writer = _FindingWriter(folder)
    judge = _part_judge(options, writer, number)
    classify = judge.fast.classify_json
    state = "S" if number == 0 else ""
    first = ""
    index = clean = clean_contact_key_only = 0

    def push(token: str) -> None:
        nonlocal state, first
        if not state:
            first = token
        elif token not in _FOLLOWS[state]:
            raise _Unfit
        state = token

    try:
        read = 0
        for block, lines in enumerate(_line_blocks(path, start, end, _JSON_LINE_MAX)):
            read += sum(map(len, lines))
            _count_part(number, read, index)
            if number == 0 and block == 0:
                lines[0] = lines[0].removeprefix(BOM)
            for raw in lines:
                line = raw.strip()
                if not line:
                    continue
                if line[0] == 0x5B:  # "["
                    push("[")
                    line = line[1:].strip()
                    if not line:
                        continue
                suffix = line[-1]
                if suffix == 0x2C or suffix == 0x5D:  # "," or "]"
                    body = line[:-1].rstrip()
                else:
                    suffix = 0
                    body = line
                if body:
                    push("E")
                    code = classify(body)
                    if code == CLEAN:
                        clean += 1
                    elif code == CLEAN_CONTACT_KEY_ONLY:
                        clean += 1
                        clean_contact_key_only += 1
                    else:
                        if body[0] != 0x7B:  # "{"
                            raise _Unfit
                        try:
                            value = orjson.loads(body)
                        except orjson.JSONDecodeError:
                            raise _Unfit from None
                        judge.judge_unclear_value(index, None, value, body)
                    index += 1
                if suffix:
                    push("," if suffix == 0x2C else "]")
    except _Unfit:
        writer.close()
        return _PartResult(judge.summary, 0, writer.path, unfit=True)
    writer.close()
    judge.add_clean(clean, clean_contact_key_only)
    return _PartResult(
        judge.summary,
        0,
        writer.path,
        first=first,
        last=state,
        keys=judge.key_snapshot(),
        ids=judge.id_digests(),
    )


def _tokens_fit(results: list[_PartResult], function: PartFunction) -> bool:
    """JSON arrays: the parts' tokens join into "[", elements with commas between, "]"."""
    if function is not _validate_json_part:
        return True
    state = "S"
    for number, result in enumerate(results):
        if not result.last:
            continue
        if number > 0 and result.first not in _FOLLOWS[state]:
            return False
        state = result.last
    return state == "]"


# --- CSV ---------------------------------------------------------------------------------


def _csv_split_points(path: Path, body_start: int, parts: int) -> list[int]:
    """Line starts outside any quoted cell: an even number of quote bytes before them (a
    cell doubles its quotes). A wrong guess (a stray quote in an unquoted cell) shows as
    a part ending inside a quoted cell, and the file takes the single pass."""
    size = path.stat().st_size
    points = [body_start]
    quotes = 0
    with path.open("rb") as f:
        position = 0
        for part in range(1, parts):
            target = body_start + (size - body_start) * part // parts
            while position < target:
                chunk = f.read(min(_CSV_SCAN_BYTES, target - position))
                if not chunk:
                    break
                quotes += chunk.count(b'"')
                position += len(chunk)
            while position < size:
                line = f.readline()  # finish the line we are in; then whole lines
                quotes += line.count(b'"')
                position += len(line)
                if quotes % 2 == 0:
                    break
            if position > points[-1] and position < size:
                points.append(position)
    points.append(size)
    return points


class _Window(io.RawIOBase):
    """Bytes [start, end) of a file, as a raw stream."""

    def __init__(self, file: IO[bytes], start: int, end: int) -> None:
        self._file = file
        file.seek(start)
        self._left = end - start

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._left <= 0:
            return 0
        with memoryview(buffer) as view:
            count = self._file.readinto(view[: self._left])  # type: ignore[attr-defined]
        self._left -= count
        return count


def _validate_csv_part(
    path: str,
    number: int,
    start: int,
    end: int,
    options: Options,
    folder: str,
    file_format: str,
    delimiter: str,
    header: list[str],
    header_lines: int,
) -> _PartResult:
    """Validate the rows in [start, end) as readers.SignalFile does; lines numbered from
    the part's start (from the file's for the first part). A CSV error, one that the
    single pass would report or a split inside a quoted cell, makes the part unfit."""
    writer = _FindingWriter(folder)
    judge = _part_judge(options, writer, number)
    classify = judge.fast.classify_value
    full = judge.judge_unclear_value
    build = csv_row_builder(file_format, header)
    base = header_lines if number == 0 else 0
    line_num = base
    index = clean = clean_contact_key_only = 0
    with open(path, "rb", buffering=0) as raw:
        stream = io.BufferedReader(_Window(raw, start, end), 256 * 1024)
        reader = csv.reader(map(bytes.decode, stream), delimiter=delimiter, strict=True)
        try:
            for row in reader:
                row_start = line_num + 1
                line_num = base + reader.line_num
                envelope = build(row)
                if index & 4095 == 4095:
                    _count_part(number, raw.tell() - start, index)
                if envelope:
                    code = classify(envelope)
                    if code == CLEAN:
                        clean += 1
                    elif code == CLEAN_CONTACT_KEY_ONLY:
                        clean += 1
                        clean_contact_key_only += 1
                    else:
                        full(index, row_start, envelope)
                    index += 1
        except (UnicodeDecodeError, csv.Error):
            writer.close()
            return _PartResult(judge.summary, 0, writer.path, unfit=True)
    writer.close()
    judge.add_clean(clean, clean_contact_key_only)
    return _PartResult(
        judge.summary,
        reader.line_num,
        writer.path,
        keys=judge.key_snapshot(),
        ids=judge.id_digests(),
    )
