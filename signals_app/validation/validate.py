"""Validating a whole file: read records as a stream, let the fast path wave clean signals
through, and hand everything else to the rule engine for its findings.

Large uncompressed NDJSON files are split by byte ranges over the machine's cores; each
part reports findings relative to its start and the parts are stitched back in file order,
so the report is the same as a single pass.
"""

from __future__ import annotations

import itertools
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from signals_app.validation.engine import check_signal, unwrap
from signals_app.validation.fastpath import FastPath
from signals_app.validation.findings import ERROR, Code, Finding, Issue, Summary
from signals_app.validation.readers import Record, UnreadableFile, open_signal_file
from signals_app.validation.schema import Tier

FindingSink = Callable[[Finding], None]
ProgressSink = Callable[[int, int], None]  # (bytes read, file size)

DEFAULT_MAX_INFLATED = 4 * 1024**3
BOM = b"\xef\xbb\xbf"
# Below this, forking workers costs more than it saves.
PARALLEL_MIN_BYTES = 64 * 1024**2


class BadEncoding(UnreadableFile):
    """An NDJSON line that is not UTF-8: the whole file is refused (SPEC §5)."""

    def __init__(self, line: int | None) -> None:
        super().__init__(f"line {line} is not valid UTF-8; save the file as UTF-8")
        self.line = line


@dataclass(frozen=True, slots=True)
class Options:
    tier: Tier = "ultimate"
    default_app_key: str | None = None


def _parse(raw: bytes) -> Any:
    """orjson first (fast); the standard library only for what orjson refuses but JSON
    allows, such as integers beyond 64 bits, so such a value gets a finding, not a crash."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return json.loads(raw)


class _Judge:
    """Judges records one by one and keeps the summary."""

    def __init__(self, options: Options, sink: FindingSink | None) -> None:
        self.options = options
        self.fast = FastPath(tier=options.tier, default_app_key=options.default_app_key)
        self.sink = sink
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
            value = _parse(raw)
        except UnicodeDecodeError:
            raise BadEncoding(line) from None
        except ValueError as exc:
            issue = Issue("", ERROR, Code.SYNTAX, f"the record is not valid JSON: {exc}")
            self._report(index, line, [issue], contact_key_only=False)
            return
        self._full(index, line, value)

    def _clean(self, contact_key_only: bool) -> None:
        self.add_clean(1, 1 if contact_key_only else 0)

    def add_clean(self, count: int, contact_key_only: int) -> None:
        summary = self.summary
        summary.signals += count
        summary.valid += count
        summary.contact_key_only += contact_key_only

    def _full(self, index: int, line: int | None, value: Any) -> None:
        check = check_signal(
            value, tier=self.options.tier, default_app_key=self.options.default_app_key
        )
        if not self.fast.prefer_wrapper and unwrap(value)[0] is not value:
            self.fast.prefer_wrapper = True  # a wrapper file: decode wrappers first
        self._report(index, line, check.issues, contact_key_only=check.contact_key_only)

    def _report(
        self, index: int, line: int | None, issues: list[Issue], *, contact_key_only: bool
    ) -> None:
        self.summary.add(issues, contact_key_only=contact_key_only)
        if self.sink is not None:
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
    progress: ProgressSink | None = None,
    workers: int | None = None,
    parallel_min_bytes: int = PARALLEL_MIN_BYTES,
) -> Summary:
    """Validate a file, sending each finding to `sink` in file order.

    Raises UnreadableFile when the file cannot be read at all; findings already sent
    for its beginning must then be discarded by the caller (the CLI buffers them).
    """
    options = options or Options()
    workers = workers if workers is not None else (os.cpu_count() or 1)
    with open_signal_file(path, max_inflated_bytes=max_inflated_bytes) as signal_file:
        if (
            signal_file.format == "ndjson"
            and not signal_file.compressed
            and workers > 1
            and signal_file.size >= parallel_min_bytes
            and progress is None
        ):
            return _validate_ndjson_parallel(Path(path), options, sink, workers)
        records: Iterable[Record] = signal_file
        if progress is not None:
            records = _reporting(signal_file, progress)
        return validate_records(records, options, sink)


def _reporting(signal_file: Any, progress: ProgressSink) -> Iterator[Record]:
    for record in signal_file:
        if record.index % 10_000 == 0:
            progress(signal_file.position(), signal_file.size)
        yield record
    progress(signal_file.size, signal_file.size)


# --- NDJSON over several processes -------------------------------------------------------


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


@dataclass(frozen=True, slots=True)
class _PartResult:
    summary: Summary
    lines: int  # lines in the part, blank ones included
    findings_path: str
    bad_encoding_line: int | None = None  # counted from the part's start


def _validate_part(path: str, start: int, end: int, options: Options) -> _PartResult:
    """Validate the lines in [start, end); findings numbered from the part's start."""
    fd, findings_path = tempfile.mkstemp(prefix="connectadmin-part-", suffix=".ndjson")
    with os.fdopen(fd, "w", encoding="utf-8") as out, open(path, "rb") as f:
        f.seek(start)

        def sink(finding: Finding) -> None:
            out.write(orjson.dumps(finding.as_dict()).decode())
            out.write("\n")

        judge = _Judge(options, sink)
        # The hot loop: clean signals are only counted here, so the common case costs
        # the fast path's check and nothing else.
        fast_check = judge.fast.check_json
        clean = clean_contact_key_only = 0
        index = 0
        line_no = 0
        remaining = end - start
        for raw_line in f:
            remaining -= len(raw_line)
            line_no += 1
            if line_no == 1 and start == 0:
                raw_line = raw_line.removeprefix(BOM)
            # msgspec skips the whitespace around a record itself: strip only the lines
            # the fast path does not call clean (blank lines among them).
            verdict = fast_check(raw_line)
            if verdict is not None:
                clean += 1
                if verdict[1]:
                    clean_contact_key_only += 1
                index += 1
            else:
                stripped = raw_line.strip()
                if stripped:
                    try:
                        judge.judge_unclear_json(index, line_no, stripped)
                    except BadEncoding as exc:
                        judge.add_clean(clean, clean_contact_key_only)
                        return _PartResult(judge.summary, line_no, findings_path, exc.line)
                    index += 1
            if remaining <= 0:
                break
        judge.add_clean(clean, clean_contact_key_only)
    return _PartResult(judge.summary, line_no, findings_path)


def _validate_ndjson_parallel(
    path: Path, options: Options, sink: FindingSink | None, workers: int
) -> Summary:
    points = _split_points(path, workers)
    ranges = list(itertools.pairwise(points))
    # fork: the workers inherit the loaded code instead of importing it again.
    with ProcessPoolExecutor(len(ranges), mp_context=get_context("fork")) as pool:
        futures = [pool.submit(_validate_part, str(path), a, b, options) for a, b in ranges]
        results = [future.result() for future in futures]
    summary = Summary()
    signals_before = lines_before = 0
    try:
        for result in results:
            if result.bad_encoding_line is not None:
                raise BadEncoding(result.bad_encoding_line + lines_before)
            if sink is not None:
                with open(result.findings_path, "rb") as findings:
                    _replay(findings, sink, signals_before, lines_before)
            summary.merge(result.summary)
            signals_before += result.summary.signals
            lines_before += result.lines
    finally:
        for result in results:
            Path(result.findings_path).unlink(missing_ok=True)
    return summary


def _replay(findings: BinaryIO, sink: FindingSink, signals_before: int, lines_before: int) -> None:
    for line in findings:
        data = orjson.loads(line)
        sink(
            Finding(
                data["signal"] + signals_before,
                data["line"] + lines_before,
                data["path"],
                data["severity"],
                data["code"],
                data["message"],
            )
        )
