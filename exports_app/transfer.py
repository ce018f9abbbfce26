"""Bringing an export file over from SFTP: its bytes appended to a temporary file, resumed
after a dropped connection, their SHA-256 computed, and their rows counted as they arrive.

Counting rows means inflating the whole gzip, which costs about as much CPU as the
transfer itself: done after the download it would nearly double the time. So the bytes
also go, as they arrive, through a pipe to a forked child that inflates them (ISA-L, about
twice zlib's speed) and counts the CSV's records, on the other core. The child also
stands between the file and this process: data that is no gzip, inflates past the cap or
is cut short ends the child with the reason (NotAnExport), never this process.

Rows are counted exactly as a CSV reader would: a newline inside a quoted field does not
end a record. Only the quote characters and newlines matter for that (an escaped quote,
`""`, toggles twice), and C-speed bytes methods keep just those, drop pairs of quotes, and
leave a line's quote parity; most pieces then hold no quote at all and their newlines are
counted at once.

Nothing here touches the database (services.fetching does): the benchmark
(bench/export_fetch.py) runs this very code.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, cast

from isal import isal_zlib  # ISA-L's inflate: about twice zlib's speed, the same API

from exports_app import sftp_client
from exports_app.sftp_client import ConnectionBroke, Session, SftpError
from signals_app.validation.processes import Forked, Limits

# (isal's stubs call it an instance; it is the exception class)
_INFLATE_ERROR: Final = cast(type[Exception], isal_zlib.IsalError)

log = logging.getLogger(__name__)

RECONNECTS: Final = 5  # dropped connections in a row without a byte more: failed
MAX_RECONNECTS: Final = 50  # dropped connections in all, however far each got
BACKOFF: Final = (0.5, 1.0, 2.0, 5.0, 10.0)
PIPE_BYTES: Final = 1 << 20  # the pipe to the counting child (Linux caps it at 1 MB)
INFLATE_STEP: Final = 8 << 20  # inflated bytes at most per step: a bomb never lands whole
COUNTER_LIMITS: Final = Limits(memory_bytes=512 * 1024**2)
HEADER_BYTES: Final = 64 * 1024
# Every byte but the quote and the newline, which are all a record count needs.
_NOT_QUOTE_OR_NEWLINE: Final = bytes(b for b in range(256) if b not in (0x22, 0x0A))


class TransferFailed(Exception):
    """The bytes did not all arrive; those that did stay, for the next try to resume."""


class NotAnExport(Exception):
    """The file arrived but is not what Connect writes (no gzip, damaged, too large once
    inflated, no CSV); nothing of it is worth keeping."""


@dataclass(frozen=True, slots=True)
class Counted:
    rows: int  # records after the header
    inflated: int  # bytes of CSV
    header: str


@dataclass(frozen=True, slots=True)
class Transferred:
    size: int
    sha256: str
    rows: int
    inflated: int
    header: str


class RecordCounter:
    """Counts CSV records in pieces of inflated text, quotes respected."""

    def __init__(self) -> None:
        self.records = 0
        self.inside = False  # within a quoted field
        self.last = b"\n"  # the last byte seen

    def feed(self, text: bytes) -> None:
        if not text:
            return
        marks = text.translate(None, _NOT_QUOTE_OR_NEWLINE).replace(b'""', b"")
        if not self.inside and b'"' not in marks:
            self.records += len(marks)  # newlines only, none inside quotes
        else:
            for i, newlines in enumerate(marks.split(b'"')):
                if i:
                    self.inside = not self.inside
                if not self.inside:
                    self.records += len(newlines)
        self.last = text[-1:]

    def finish(self) -> int:
        """The number of records, the last one counted without its newline."""
        if self.inside:
            raise NotAnExport("the CSV is malformed: a quoted field never ends")
        return self.records + (0 if self.last == b"\n" else 1)


def count_records(read: Callable[[int], bytes], max_inflated: int) -> Counted:
    """Inflate the gzip bytes `read` gives (b"" at the end) and count the CSV's records."""
    counter = RecordCounter()
    inflater: Any = None  # the gzip member being read; None between members
    inflated = 0
    header = b""
    start = b""
    while piece := read(PIPE_BYTES):
        if len(start) < 2:
            start += piece[:2]
            if len(start) >= 2 and start[:2] != b"\x1f\x8b":
                raise NotAnExport("the file is not gzip data, as Connect's export files are")
        pending = True
        while piece or pending:
            if inflater is None:
                inflater = isal_zlib.decompressobj(31)
            try:
                text = inflater.decompress(piece, INFLATE_STEP)
            except _INFLATE_ERROR as exc:
                raise NotAnExport(
                    f"the gzip data is damaged after {max(counter.records - 1, 0)} rows ({exc})"
                ) from None
            pending = len(text) == INFLATE_STEP  # more may come out of what went in
            piece = inflater.unconsumed_tail
            if inflater.eof:  # the next gzip member, if any, follows
                piece, inflater, pending = inflater.unused_data, None, False
            inflated += len(text)
            if inflated > max_inflated:
                raise NotAnExport(
                    f"the file inflates past {max_inflated / 1e9:.1f} GB, the most an export "
                    "file may (EXPORT_MAX_INFLATED_MB)"
                )
            if len(header) < HEADER_BYTES:
                header += text[: HEADER_BYTES - len(header)]
            counter.feed(text)
    if not start:
        raise NotAnExport("the file is empty, not gzip data as Connect's export files are")
    if inflater is not None:
        raise NotAnExport(f"the gzip data is cut short after {max(counter.records - 1, 0)} rows")
    records = counter.finish()
    first = header.split(b"\n", 1)[0].strip(b"\r")
    if records == 0 or not first:
        raise NotAnExport("the file holds no CSV header")
    return Counted(records - 1, inflated, first.decode("utf-8", "replace"))


def _count_from_pipe(read_end: int, write_end: int, max_inflated: int) -> Counted:
    """In the child: the parent's end of the pipe is closed, or the end never comes."""
    os.close(write_end)
    return count_records(lambda n: os.read(read_end, n), max_inflated)


class PipedCounter:
    """A forked child counting the records of the bytes written to it."""

    def __init__(self, max_inflated: int) -> None:
        read_end, write_end = os.pipe()
        with contextlib.suppress(OSError):  # a larger pipe: fewer switches
            fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
        try:
            self._child: Forked[Counted] = Forked(
                _count_from_pipe, (read_end, write_end, max_inflated), COUNTER_LIMITS
            )
        finally:
            os.close(read_end)
        self._write_end = write_end
        self.broken = False  # the child stopped reading (it has its verdict already)

    def feed(self, data: bytes) -> None:
        if self.broken:
            return
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self._write_end, view) :]
        except BrokenPipeError:
            self.broken = True

    def result(self) -> Counted:
        self._close()
        try:
            return self._child.result()
        except NotAnExport:
            raise
        except Exception as exc:  # it died: memory, a crash in the inflater
            raise NotAnExport(f"the file could not be read ({exc})") from None

    def kill(self) -> None:
        self._close()
        self._child.kill()

    def _close(self) -> None:
        if self._write_end >= 0:
            os.close(self._write_end)
            self._write_end = -1


class _Arrival:
    """Where the arriving bytes go besides the file: the hash and the counting child."""

    def __init__(self, max_inflated: int) -> None:
        self.max_inflated = max_inflated
        self.hasher = hashlib.sha256()
        self.counter = PipedCounter(max_inflated)

    def take(self, data: bytes) -> None:
        self.hasher.update(data)
        self.counter.feed(data)
        if self.counter.broken:  # it has its verdict already: stop here
            self.counter.result()

    def start_again(self) -> None:
        self.counter.kill()
        self.hasher = hashlib.sha256()
        self.counter = PipedCounter(self.max_inflated)


def transfer(
    open_session: Callable[[], AbstractContextManager[Session]],
    remote_path: str,
    partial: Path,
    *,
    max_inflated: int,
    sleep: Callable[[float], Any] = time.sleep,
) -> Transferred:
    """The remote file into `partial` (appended to what is there), counted on the way.
    TransferFailed keeps `partial` for a resume; NotAnExport means it is worthless."""
    arrival = _Arrival(max_inflated)  # its child forked before any SFTP thread exists
    try:
        if partial.exists():
            with partial.open("rb") as done:
                while chunk := done.read(1 << 20):
                    arrival.take(chunk)
        broken = stalled = 0
        read_size = sftp_client.READ_SIZE
        while True:
            changed = False
            have = 0
            try:
                with open_session() as sftp:
                    size = sftp.size(remote_path)
                    if size is None:
                        raise TransferFailed(
                            f"{remote_path} is not on the SFTP server any more "
                            "(Connect deletes export files after 28 days)"
                        )
                    have = partial.stat().st_size if partial.exists() else 0
                    changed = have > size  # the remote file changed under us
                    if not changed:
                        with partial.open("ab") as out:
                            sftp.download(
                                remote_path,
                                out,
                                start=have,
                                on_data=arrival.take,
                                read_size=read_size,
                            )
                        got = partial.stat().st_size
                        if got != size:
                            raise ConnectionBroke(f"{got} of {size} bytes arrived", 0)
                        break
            except ConnectionBroke as exc:
                broken += 1
                if (partial.stat().st_size if partial.exists() else 0) > have:
                    stalled = 0  # it moved on: not a reason to give up
                else:
                    stalled += 1
                    read_size = sftp_client.MIN_READ_SIZE  # no read came whole: smaller ones
                log.warning("fetching %s: %s (reconnect %d)", remote_path, exc, broken)
                if stalled > RECONNECTS or broken > MAX_RECONNECTS:
                    raise TransferFailed(
                        f"{exc}; gave up after {broken - 1} reconnects"
                        + (f", the last {stalled} without a byte more" if stalled else "")
                    ) from None
                sleep(BACKOFF[min(max(stalled, 1), len(BACKOFF)) - 1])
            except SftpError as exc:
                raise TransferFailed(str(exc)) from None
            if changed:  # start again, the session closed (no SFTP thread to fork with)
                partial.unlink()
                arrival.start_again()
        counted = arrival.counter.result()
        return Transferred(
            size, arrival.hasher.hexdigest(), counted.rows, counted.inflated, counted.header
        )
    finally:
        arrival.counter.kill()
