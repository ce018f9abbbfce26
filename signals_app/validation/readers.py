"""Open an import file of behavioral signals (SPEC §5), tell its format from its content and
stream its records one by one: a 1 GB file is never held in memory.

Formats, told from the content (never from the file name), each also inside a gzip wrapper
(magic bytes 1f 8b):

- ``json-array``: ``[envelope, ...]`` or ``[{"signal": envelope}, ...]``; one record per
  element, whatever the element is (a number in the array is still a record).
- ``json-signals``: ``{"signals": [...]}``, when "signals" is the object's first key.
- ``json-single``: one envelope or wrapper alone, pretty-printed or not.
- ``ndjson``: one envelope or wrapper per line. Blank lines are skipped but counted in line
  numbers; CRLF and a UTF-8 BOM are fine. Records carry the stripped line bytes, unparsed.
- ``csv``: a header row, then one signal per row (see "CSV" below).
- ``export-csv``: Connect's export CSV (SPEC §7), told by its ``SIGNAL_CONTENT`` column.
- ``events-csv``: Attentive custom events, one per row (see "Events CSV" below); only when
  the file is opened for the ``attentive`` destination.

Readers deliver each record as found: they do not unwrap ``{"signal": ...}`` and do not
validate signals; the engine does both.

JSON or NDJSON: a file that starts with ``{`` is NDJSON when its first line is a complete
JSON object (unless that object's first key is "signals"), or when one of its next few
non-blank lines is a complete object and its first line is broken, or cut short where the
lines together break as one document (unless the first key is "signals"): a bad first
record does not turn an NDJSON file into one unreadable document. Otherwise it is a JSON
document: "signals" as its first key makes it ``json-signals``, anything else
``json-single``.

CSV: columns ``appKey``, ``sessionId``, ``test``, ``identifiableAttributes.<key>`` and
``signalContent.<field>`` build the nested envelope; the header needs at least one of them.
The delimiter is a comma, or a semicolon or tab when the comma yields no known column
(spreadsheets in some locales save so). An empty cell means the field is absent, and a row
with no cell filled is skipped (it is not a signal). Cells are typed by the field's kind in
``schema``: numbers (int when the text is an int, else float; the text itself when it is no
finite number), booleans (true/false/1/0/yes/no, any case; ``test`` too), JSON text for
string lists, items and custom attributes; anything that does not convert stays the text,
so the engine reports a type error. Unknown ``signalContent.x`` columns stay text; other
unknown columns land in the envelope under their own name (the engine warns about them).
Columns with a blank header are ignored. A field given by two columns of the header, or a
key written twice in a cell of JSON, makes the row's envelope a ``RowWithDuplicates`` that
says so when the row fills both (the engine reports ``duplicate_key``; the last cell or
value is the one kept). A row with fewer cells than the header lacks the
missing fields; cells beyond the header's width are ignored. ``line`` is the physical line
where the row starts (quoted cells may span lines).

Events CSV (``destination="attentive"``): columns ``type``, ``externalEventId``,
``occurredAt``, ``user.email``, ``user.phone``, ``user.externalIdentifiers.clientUserId``,
``user.externalIdentifiers.customIdentifiers`` (JSON text: a list of {name, value}),
``properties`` (JSON text: an object) and ``properties.<key>`` (one column per property;
everything after ``properties.`` is the key, dots included) build the nested event; ``user``
and ``user.externalIdentifiers`` may also come whole as JSON text. Cells are text (CSV has no
types: a number or a list in a property goes in the ``properties`` JSON cell); an empty cell
means absent; JSON cells that are no JSON stay text for the engine to report. A key given
twice in a row (two columns, a column and a key of a JSON cell, a key twice in a cell) makes
a ``RowWithDuplicates`` (``duplicate_key``). Other columns land at their own path (``foo``,
``user.foo``), where the engine reports them as unknown fields; Connect's columns
(``appKey``, ``identifiableAttributes.<key>``, ``signalContent.<field>``) build a Connect
envelope, which the engine reports as a signal in an events file (``wrong_destination``). A
header naming event columns is an events CSV; one naming only Connect's is refused, and so
is, for the ``connect`` destination, one naming Attentive's only: each names the other
destination.

Export CSV (header names matched case-insensitively, spaces and hyphens read as ``_``):
``ACOUSTIC_APP_KEY`` -> ``appKey``; ``TLTSID`` -> ``sessionId``; ``SIGNAL_CONTENT`` (JSON
text; kept as text when it is not JSON) -> ``signalContent``, given ``signalType`` from the
``SIGNAL_TYPE`` column when the content lacks one; ``EMAIL`` -> ``email``; ``SMS``,
``PHONE`` or ``PHONE_NUMBER`` -> ``sms``; ``WHATSAPP`` -> ``whatsapp``; ``CONTACT_KEY`` or
``CONTACTKEY`` -> ``contactKey``, each into ``identifiableAttributes`` (first non-empty
column wins). With none of them filled, ``identifiableAttributes`` is left out so the engine
reports it missing. Every other column is ignored.

Limits: a gzip file may inflate to ``max_inflated_bytes``; one record may take
``max_record_bytes`` (an NDJSON line exactly; a JSON record to within one 64 KB chunk; a CSV
cell through the csv module's process-wide field limit, which is raised to it, never
lowered). NDJSON lines are not checked for UTF-8 here: the stage that decodes them does so.

Messages of ``UnreadableFile`` give byte offsets from 0 in the file's (decompressed)
content, a BOM included, and leave the file name to the caller. Errors that only show
further on (a truncated gzip, broken JSON past the first 64 KB, a bad CSV line) are raised
while iterating, after the records before them.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import math
import os
import re
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import compress
from types import TracebackType
from typing import IO, Any, Final

import orjson

from signals_app.validation.duplicates import duplicate_issues
from signals_app.validation.errors import UnreadableFile
from signals_app.validation.findings import ERROR, Code, Issue, RowWithDuplicates, TooLargeText
from signals_app.validation.jsondoc import (
    ARRAY,
    SIGNALS,
    SINGLE,
    WHOLE,
    JsonDocument,
    breaks_as_document,
    first_key,
    first_value_layout,
    value_kind,
)
from signals_app.validation.jsontext import TooLarge, parse_json
from signals_app.validation.schema import Kind, all_field_kinds
from signals_app.validation.sizes import human_size

__all__ = ["FORMATS", "Record", "SignalFile", "UnreadableFile", "open_signal_file"]

FORMATS: Final = (
    "json-array",
    "json-signals",
    "json-single",
    "ndjson",
    "csv",
    "export-csv",
    "events-csv",
)

_BUFFER_BYTES = 256 * 1024  # large reads keep per-call overhead low on 1 GB files
_HEAD_BYTES = 64 * 1024  # what format detection looks at
_TEXT_CHECK_BYTES = 1024  # NUL bytes or invalid UTF-8 in these make a file binary
_PROBE_LINES = 5  # non-blank lines read to tell NDJSON from a JSON document
_PROBE_BYTES = 1024**2  # how far after the first line the next ones are looked for

_UTF8_BOM = codecs.BOM_UTF8
_GZIP_MAGIC = b"\x1f\x8b"
_ZIP_MAGIC = b"PK\x03\x04"
_FOREIGN_BOMS = (  # UTF-32 first: its little-endian BOM starts with UTF-16's
    (codecs.BOM_UTF32_LE, "UTF-32"),
    (codecs.BOM_UTF32_BE, "UTF-32"),
    (codecs.BOM_UTF16_LE, "UTF-16"),
    (codecs.BOM_UTF16_BE, "UTF-16"),
)
MAX_BLANK_BYTES: Final = 64 * 10**6  # blank space in a row that a file may hold
_BLANK_RUN: Final = re.compile(rb"[ \t\r\n]*+")
NO_CSV_ROWS: Final = "the CSV has its header row but no signals in the rows after it"
_CSV_COLUMNS_HINT = (
    "appKey, sessionId, test, identifiableAttributes.*, signalContent.* or SIGNAL_CONTENT"
)
_EVENT_COLUMNS_HINT = "type, user.email, user.phone, user.externalIdentifiers.*, properties.*"
Destination = str  # "connect" or "attentive" (validate.Options.destination)


@dataclass(slots=True)
class Record:
    """One signal as found in the file, before any unwrapping or validation."""

    index: int  # signal number, from 0, in file order
    line: int | None  # 1-based line where the record starts (NDJSON and CSV only)
    raw: bytes | None  # JSON and NDJSON: the record's text as in the file; CSV: None
    value: Any  # CSV: the record as Python objects; JSON and NDJSON: None


def open_signal_file(
    path: str | os.PathLike[str],
    *,
    max_inflated_bytes: int = 4 * 1024**3,
    max_record_bytes: int = 16 * 1024**2,
    max_blank_bytes: int = MAX_BLANK_BYTES,
    destination: Destination = "connect",
) -> SignalFile:
    """Open `path` and detect its format; raise UnreadableFile for what can be seen up front
    (the rest, such as a truncated gzip or broken JSON further on, surfaces while iterating).
    `destination`: what the records are, "connect" signals or "attentive" custom events
    (which only CSV detection and reading need to know).
    """
    try:
        file = io.BufferedReader(io.FileIO(path), buffer_size=_BUFFER_BYTES)
    except OSError as exc:
        raise UnreadableFile(f"the file cannot be opened ({exc.strerror or exc})") from None
    try:
        return SignalFile(
            file,
            max_inflated_bytes=max_inflated_bytes,
            max_record_bytes=max_record_bytes,
            max_blank_bytes=max_blank_bytes,
            destination=destination,
        )
    except BaseException:
        file.close()
        raise


class SignalFile:
    """An open import file. Iterate it for Records (each iteration starts from the top);
    use it as a context manager, or call close()."""

    format: str
    compressed: bool
    size: int

    def __init__(
        self,
        file: io.BufferedReader[Any],
        *,
        max_inflated_bytes: int,
        max_record_bytes: int,
        max_blank_bytes: int = MAX_BLANK_BYTES,
        destination: Destination = "connect",
    ) -> None:
        self._file = file
        self._events = destination == "attentive"
        self._max_inflated_bytes = max_inflated_bytes
        self._max_record_bytes = max_record_bytes
        self._max_blank_bytes = max_blank_bytes
        self._position_at_close = 0
        self.size = os.fstat(file.fileno()).st_size
        self.compressed = file.peek(2)[:2] == _GZIP_MAGIC
        self._bom = 0  # length of a UTF-8 BOM to skip
        self._delimiter = ","
        self.format = self._detect()

    @property
    def bom_length(self) -> int:
        """Bytes of a UTF-8 byte order mark at the start of the content (0 or 3)."""
        return self._bom

    @property
    def delimiter(self) -> str:
        """The CSV delimiter (CSV formats)."""
        return self._delimiter

    @property
    def max_record_bytes(self) -> int:
        return self._max_record_bytes

    def csv_header(self) -> tuple[list[str], int, int] | None:
        """CSV formats: the header row as the reader takes it, the lines it spans (blank
        lines before it included) and the byte offset where the rows after it start; None
        when the header cannot be read (iterating the file then says why)."""
        self._raise_csv_field_limit()
        stream = self._content()
        stream.read(self._bom)
        consumed = self._bom

        def lines() -> Iterator[str]:
            nonlocal consumed
            for line in stream:
                consumed += len(line)
                yield line.decode()

        reader = csv.reader(lines(), delimiter=self._delimiter, strict=True)
        try:
            header = next((row for row in reader if any(row)), None)
        except (UnicodeDecodeError, csv.Error):
            return None
        if header is None:
            return None
        return header, reader.line_num, consumed

    def _raise_csv_field_limit(self) -> None:
        if csv.field_size_limit() < self._max_record_bytes:
            # A cell of JSON may be long; the module-wide limit is only ever raised.
            csv.field_size_limit(self._max_record_bytes)

    def position(self) -> int:
        """Bytes of the file on disk consumed so far (compressed bytes for a gzip file)."""
        if self._file.closed:
            return self._position_at_close
        return self._file.tell()

    def close(self) -> None:
        if not self._file.closed:
            self._position_at_close = self._file.tell()
            self._file.close()

    def __enter__(self) -> SignalFile:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __iter__(self) -> Iterator[Record]:
        stream = self._content()
        if self._bom:
            stream.read(self._bom)
        if self.format == "ndjson":
            return self._ndjson_records(stream)
        if self.format == "json-array":
            return self._json_records(stream, ARRAY)
        if self.format == "json-signals":
            return self._json_records(stream, SIGNALS)
        if self.format == "json-single":
            return self._json_records(stream, SINGLE)
        return self._csv_records(stream)

    # --- reading -------------------------------------------------------------------------

    def _content(self) -> io.BufferedReader[Any]:
        """The file's content from its first byte, decompressed when it is gzip."""
        self._file.seek(0)
        if not self.compressed:
            return self._file
        return io.BufferedReader(
            _Inflater(self._file, self._max_inflated_bytes, self._max_blank_bytes),
            buffer_size=_BUFFER_BYTES,
        )

    def _ndjson_records(self, stream: io.BufferedReader[Any]) -> Iterator[Record]:
        # The hot loop of the fastest path: keep per-line work to a bare minimum.
        limit = self._max_record_bytes + 1
        readline = stream.readline
        index = 0
        number = 0
        while line := readline(limit):
            number += 1
            if len(line) == limit and line[-1] != 10:  # 10 is "\n": the line goes on
                raise UnreadableFile(
                    f"line {number} is longer than {human_size(self._max_record_bytes)}, "
                    "the limit for one signal"
                )
            line = line.strip()
            if line:
                yield Record(index, number, line, None)
                index += 1
            else:
                number += self._skip_blank(stream, number)

    def _skip_blank(
        self, stream: io.BufferedReader[Any], line: int, *, limit: int | None = None
    ) -> int:
        """After a blank line, the blank space that follows, skipped a buffer at a time
        rather than a line at a time (a file of a billion newlines takes seconds, not
        minutes); returns the newlines skipped. Refuses a run of blank space longer than
        `max_blank_bytes`."""
        newlines = 0
        run = 1
        while data := stream.peek(1):
            blank = _BLANK_RUN.match(data).end()  # type: ignore[union-attr]  # always matches
            if not blank:
                break
            newlines += data.count(b"\n", 0, blank)
            run += blank
            if limit is not None:  # format detection: enough seen, or leave it to reading
                if run > limit or run > self._max_blank_bytes:
                    break
            elif run > self._max_blank_bytes:
                raise UnreadableFile(_blank_run_refusal(self._max_blank_bytes, f"line {line}"))
            stream.read(blank)
            if blank < len(data):
                break
        return newlines

    def _json_records(self, stream: io.BufferedReader[Any], mode: str) -> Iterator[Record]:
        document = JsonDocument(
            stream.read, mode=mode, offset=self._bom, max_record_bytes=self._max_record_bytes
        )
        for index, raw in enumerate(document):
            yield Record(index, None, raw, None)

    def _csv_records(self, stream: io.BufferedReader[Any]) -> Iterator[Record]:
        self._raise_csv_field_limit()
        # Decoding line by line (in C, through map) lets a decoding error name its line.
        # strict: an unclosed quote is refused at the end rather than swallowing the rest.
        reader = csv.reader(map(bytes.decode, stream), delimiter=self._delimiter, strict=True)
        line_num = 0
        try:
            header = next((row for row in reader if any(row)), None)
            if header is None:
                return
            build = csv_row_builder(self.format, header)
            line_num = reader.line_num
            index = 0
            for row in reader:
                start = line_num + 1
                line_num = reader.line_num
                envelope = build(row)
                if envelope:
                    yield Record(index, start, None, envelope)
                    index += 1
            if index == 0:
                raise UnreadableFile(NO_CSV_ROWS)
        except UnicodeDecodeError as exc:
            raise UnreadableFile(
                f"line {reader.line_num + 1} is not valid UTF-8 (byte 0x{exc.object[exc.start]:02x}"
                f" at column {exc.start + 1}); save the file as CSV UTF-8"
            ) from None
        except csv.Error as exc:
            raise _bad_csv(exc, line_num + 1, reader.line_num) from None

    # --- detection -----------------------------------------------------------------------

    def _detect(self) -> str:
        head = self._content().read(_HEAD_BYTES)
        if not head:
            raise UnreadableFile(
                "the file holds no data once decompressed"
                if self.compressed
                else "the file is empty"
            )
        if head.count(0) == len(head):
            raise UnreadableFile(self._zeros_refusal(len(head)))
        for bom, encoding in _FOREIGN_BOMS:
            if head.startswith(bom):
                raise UnreadableFile(
                    f"the file is encoded as {encoding} (it starts with a {encoding} byte order "
                    "mark); save it as UTF-8"
                )
        if head.startswith(_UTF8_BOM):
            self._bom = len(_UTF8_BOM)
        _check_text(head)
        text = head[self._bom :]
        stripped = text.lstrip()
        if not stripped:
            if len(head) < _HEAD_BYTES:
                raise UnreadableFile("the file is empty (it holds only blank space)")
            raise UnreadableFile(
                f"the first {_HEAD_BYTES} bytes are blank space; not JSON, NDJSON or CSV"
            )
        whole = len(head) < _HEAD_BYTES  # the head is the whole content
        if stripped[:1] == b"[":
            return "json-array"  # what is wrong with it shows while reading it
        if stripped[:1] == b"{":
            return self._detect_object(text)
        csv_format = self._detect_csv(stripped)
        if csv_format:
            return csv_format
        kind = value_kind(stripped)
        if kind and not breaks_as_document(stripped, whole=whole):
            raise UnreadableFile(
                f"the top level is {kind}; expected an array of signals or an object"
            )
        first_line = stripped.split(b"\n", 1)[0].strip().decode(errors="replace")
        preview = first_line if len(first_line) <= 60 else first_line[:57] + "..."
        hint = _EVENT_COLUMNS_HINT if self._events else _CSV_COLUMNS_HINT
        raise UnreadableFile(
            f"the file is not JSON, NDJSON or CSV: its first line ({preview!r}) is not JSON, "
            f"and as a CSV header it names none of the columns {hint}"
        )

    def _detect_object(self, text: bytes) -> str:
        """NDJSON, or a JSON document whose first key decides between json-signals and
        json-single (see the module docstring)."""
        lines, too_long = self._first_lines()
        first = _json_object(lines[0]) if lines and not too_long else None
        if first is not None and next(iter(first), None) != "signals":
            return "ndjson"
        if first is None and lines and not too_long:
            # A first line holding a whole object that orjson refuses (a huge integer, a
            # lone surrogate escape, a syntax error inside) starts NDJSON; so does a first
            # line cut short followed by lines that are objects. A first line that opens
            # a document without closing it ({"signals": [, or pretty-printed JSON)
            # starts a JSON document.
            key = first_key(lines[0])
            opens_signals = key is not None and key[0] == "signals"
            if first_value_layout(lines[0]) == WHOLE:
                if not opens_signals:
                    return "ndjson"
            elif (
                not opens_signals
                and any(_json_object(line) is not None for line in lines[1:])
                and breaks_as_document(text, whole=False)
            ):
                return "ndjson"
        key = first_key(text)
        if key is not None and key[0] == "signals":
            kind = value_kind(text, key[1])
            if kind and kind != "an array":
                raise UnreadableFile(
                    f'the "signals" key holds {kind}; expected an array of signals'
                )
            return "json-signals"
        # A first line over the record limit is refused either way; as NDJSON, the message
        # names the line.
        return "ndjson" if too_long else "json-single"

    def _first_lines(self) -> tuple[list[bytes], bool]:
        """The first few non-blank lines (_PROBE_LINES), stripped, and whether the first is
        longer than a record may be (then it comes alone, cut off). The lines after the
        first are looked for in the next _PROBE_BYTES only: a million blank lines after it
        say nothing more."""
        stream = self._content()
        stream.read(self._bom)
        limit = self._max_record_bytes + 1
        lines: list[bytes] = []
        budget = -1  # bytes left to read for the later lines, once the first is found
        while len(lines) < _PROBE_LINES and budget != 0 and (line := stream.readline(limit)):
            if len(line) == limit and line[-1] != 10:
                if not lines:
                    return [line], True
                break  # a long later line: the lines so far decide
            if budget > 0:
                budget = max(budget - len(line), 0)
            if line.strip():
                lines.append(line.strip())
                if budget < 0:
                    budget = _PROBE_BYTES
            else:
                self._skip_blank(stream, 0, limit=_PROBE_BYTES)
        return lines, False

    def _zeros_refusal(self, head: int) -> str:
        """What to say of content that starts with nothing but zero bytes: a zero-filled
        file, or (gzip) a bomb, which deflate makes of zeros at about 1,000 to 1."""
        if not self.compressed:
            return (
                f"the file holds only zero bytes (its first {_size(min(head, self.size))} at "
                "least): it is not text; a damaged or zero-filled file?"
            )
        stream = self._content()
        inflated = 0
        while inflated < _ZEROS_PROBE_BYTES:
            chunk = stream.read(4 * 1024**2)
            if not chunk:
                return (
                    f"the file is gzip data that inflates to {_size(inflated)} of zero bytes "
                    "and nothing else; it holds no signals"
                )
            if chunk.count(0) != len(chunk):
                return f"the file is binary, not text (zero bytes from byte 0 to {inflated})"
            inflated += len(chunk)
        estimate = _inflated_estimate(inflated, self._file.tell(), self.size, self._file)
        return (
            f"the file is gzip data that inflates to about {_size(estimate)} of zero bytes "
            f"(nothing but zeros in the first {_size(inflated)}); refused as a gzip bomb or "
            "a zero-filled file"
        )

    def _detect_csv(self, text: bytes) -> str | None:
        header_line = text.split(b"\n", 1)[0].decode(errors="replace")
        if self._events:
            return self._detect_events_csv(header_line)
        for delimiter in (",", ";", "\t"):
            names = [name.strip() for name in next(csv.reader([header_line], delimiter=delimiter))]
            if any(_normalized(name) == "SIGNAL_CONTENT" for name in names):
                self._delimiter = delimiter
                return "export-csv"
            if any(_is_csv_column(name) for name in names):
                self._delimiter = delimiter
                return "csv"
        for delimiter in (",", ";", "\t"):
            names = [name.strip() for name in next(csv.reader([header_line], delimiter=delimiter))]
            if any(_is_attentive_only_column(name) for name in names):
                raise UnreadableFile(
                    "the CSV's columns are those of Attentive custom events "
                    f"({_EVENT_COLUMNS_HINT}), not of Acoustic Connect signals; check and send "
                    "it as a file for Attentive (validate_signals --destination attentive)"
                )
        return None

    def _detect_events_csv(self, header_line: str) -> str | None:
        """An events CSV, when the header names an event column with some delimiter; a
        header naming only Connect's columns is refused with a word on the destination."""
        for delimiter in (",", ";", "\t"):
            names = [name.strip() for name in next(csv.reader([header_line], delimiter=delimiter))]
            if any(_is_event_column(name) for name in names):
                self._delimiter = delimiter
                return "events-csv"
        for delimiter in (",", ";", "\t"):
            names = [name.strip() for name in next(csv.reader([header_line], delimiter=delimiter))]
            if any(_is_csv_column(name) or _normalized(name) == "SIGNAL_CONTENT" for name in names):
                raise UnreadableFile(
                    "the CSV's columns are those of Acoustic Connect signals "
                    f"({_CSV_COLUMNS_HINT}), not of Attentive custom events "
                    f"({_EVENT_COLUMNS_HINT}); check and send it as a file for Connect"
                )
        return None


def csv_row_builder(file_format: str, header: list[str]) -> Callable[[list[str]], dict[str, Any]]:
    """What turns one row of a CSV format into an envelope, or an event for "events-csv"
    (empty: the row is skipped)."""
    if file_format == "events-csv":
        return _event_row_builder(header)
    return _export_row_builder(header) if file_format == "export-csv" else _row_builder(header)


def _bad_csv(exc: csv.Error, start: int, line: int) -> UnreadableFile:
    reason = str(exc)
    if reason == "unexpected end of data":
        return UnreadableFile(f"a quoted cell in the row starting at line {start} is never closed")
    if reason.startswith("field larger than field limit"):
        return UnreadableFile(
            f"a cell in the row starting at line {start} is longer than {csv.field_size_limit()} "
            "characters (a quote left open?)"
        )
    return UnreadableFile(f"the CSV is malformed at line {line}: {reason}")


# --- gzip ----------------------------------------------------------------------------------


class _Inflater(io.RawIOBase):
    """Decompresses a gzip stream, counting inflated bytes against a cap and turning the
    gzip module's errors into UnreadableFile."""

    def __init__(self, file: IO[bytes], max_inflated_bytes: int, max_blank_bytes: int) -> None:
        self._gzip = gzip.GzipFile(fileobj=file, mode="rb")
        self._max_inflated_bytes = max_inflated_bytes
        self._max_blank_bytes = max_blank_bytes
        self._inflated = 0
        self._blank_run = 0  # blank bytes in a row, to within one read

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        try:
            data = self._gzip.read1(len(buffer))
        except EOFError:
            raise UnreadableFile(
                f"the gzip data is truncated: it ends after {human_size(self._inflated)} inflated, "
                "before the end of the compressed stream"
            ) from None
        except (gzip.BadGzipFile, zlib.error) as exc:
            raise UnreadableFile(
                f"the gzip data is damaged after {human_size(self._inflated)} inflated ({exc})"
            ) from None
        size = len(data)
        self._inflated += size
        if self._inflated > self._max_inflated_bytes:
            raise UnreadableFile(
                f"the gzip data inflates past {human_size(self._max_inflated_bytes)}; "
                "refused as a possible gzip bomb"
            )
        # A small gzip may inflate to gigabytes of newlines: refused once the run of blank
        # space passes the limit, rather than read a line at a time to the inflate cap.
        if _BLANK_RUN.match(data).end() == size:  # type: ignore[union-attr]
            self._blank_run += size
            if self._blank_run > self._max_blank_bytes:
                where = f"byte {self._inflated - self._blank_run} of the inflated data"
                raise UnreadableFile(_blank_run_refusal(self._max_blank_bytes, where))
        else:
            self._blank_run = 0
        buffer[:size] = data
        return size

    def close(self) -> None:
        self._gzip.close()  # leaves the file itself open: SignalFile owns it
        super().close()


# --- detection helpers ---------------------------------------------------------------------

_ZEROS_PROBE_BYTES: Final = 64 * 1024**2  # inflated before judging a gzip of zeros


def _inflated_estimate(inflated: int, consumed: int, size: int, file: IO[bytes]) -> int:
    """How much a gzip of zeros inflates to, from the ratio so far; snapped to the size its
    trailer gives modulo 4 GiB (ISIZE, exact for a single member) when that is near."""
    estimate = inflated * size // max(consumed, 1)
    try:
        file.seek(-4, os.SEEK_END)
        isize = int.from_bytes(file.read(4), "little")
    except OSError:
        return estimate
    wraps = round((estimate - isize) / 2**32)
    snapped = isize + max(wraps, 0) * 2**32
    return snapped if abs(snapped - estimate) < estimate // 10 else estimate


def _size(count: int) -> str:
    """Bytes for people: 512 bytes, 64 KB, 4.0 GB (powers of 1,000, as disks count)."""
    for unit, scale in (("GB", 10**9), ("MB", 10**6), ("KB", 10**3)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}" if unit == "GB" else f"{count // scale} {unit}"
    return f"{count} bytes"


def _blank_run_refusal(limit: int, where: str) -> str:
    return (
        f"after {where}, the file holds more than {_size(limit)} of blank space in a row "
        "(spaces and line breaks without any signal); refused as a damaged or padded file"
    )


def _check_text(head: bytes) -> None:
    """Refuse binary files: NUL bytes or invalid UTF-8 early on."""
    if head.startswith(_ZIP_MAGIC):
        raise UnreadableFile(
            "the file is a ZIP archive (an Excel workbook?), not text; save it as CSV UTF-8 or JSON"
        )
    sample = head[:_TEXT_CHECK_BYTES]
    nul = sample.find(b"\x00")
    if nul >= 0:
        even, odd = sample[0::2], sample[1::2]
        if even.count(0) > len(even) // 2 or odd.count(0) > len(odd) // 2:
            raise UnreadableFile(
                "the file looks like UTF-16 text without a byte order mark; save it as UTF-8"
            )
        raise UnreadableFile(f"the file is binary, not text (a NUL byte at byte {nul})")
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        decoder.decode(sample, final=len(head) <= _TEXT_CHECK_BYTES)
    except UnicodeDecodeError as exc:
        line = sample.count(b"\n", 0, exc.start) + 1
        raise UnreadableFile(
            f"the file is not UTF-8 text (byte 0x{sample[exc.start]:02x} at byte {exc.start}, "
            f"line {line}); save it as UTF-8"
        ) from None


def _json_object(line: bytes) -> dict[str, Any] | None:
    """The line as a JSON object, or None when it is not one."""
    if not line.startswith(b"{"):
        return None
    try:
        value = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def _is_csv_column(name: str) -> bool:
    return name in ("appKey", "sessionId", "test") or name.startswith(
        ("identifiableAttributes.", "signalContent.")
    )


_EVENT_TOP_COLUMNS: Final = frozenset(
    {"type", "user", "properties", "externalEventId", "occurredAt"}
)


def _is_event_column(name: str) -> bool:
    return name in _EVENT_TOP_COLUMNS or name.startswith(("user.", "properties."))


def _is_attentive_only_column(name: str) -> bool:
    """A column only an events CSV has ("type" and "properties" alone are too common words
    to call a file Attentive's)."""
    return name in ("user", "externalEventId", "occurredAt") or name.startswith(
        ("user.", "properties.")
    )


def _normalized(name: str) -> str:
    return re.sub(r"[\s\-]+", "_", name.strip()).upper()


# --- CSV rows ------------------------------------------------------------------------------

Converter = Callable[[str], Any]

_BOOLEANS: Final[dict[str, Any]] = {
    spelling: value
    for word, value in (("true", True), ("false", False), ("yes", True), ("no", False))
    for spelling in (word, word.upper(), word.capitalize())
} | {"1": True, "0": False}


def _to_boolean(cell: str) -> Any:
    value = _BOOLEANS.get(cell)  # the usual spellings without any string work
    if value is None:
        value = _BOOLEANS.get(cell.strip().lower(), cell)
    return value


def _to_number(cell: str) -> Any:
    """An int when the text is one, else a finite float, else the text itself."""
    try:
        if cell.isdecimal():  # the common case, settled without float()
            return int(cell)
        number = float(cell)
    except ValueError:  # not a number, or more digits than int() accepts
        return cell
    if not math.isfinite(number) or "_" in cell:  # Python reads "1_000"; people do not
        return cell
    if "." in cell or "e" in cell or "E" in cell:
        return number
    try:
        return int(cell)  # "-3", " 7 "
    except ValueError:
        return number


def _from_json(cell: str) -> Any:
    """The cell's JSON (read as an NDJSON line would be); the text itself when it is no
    JSON, so the engine reports a type problem; TooLargeText past a reading limit."""
    try:
        return orjson.loads(cell)
    except orjson.JSONDecodeError:
        pass
    try:
        return parse_json(cell)
    except TooLarge as exc:
        return TooLargeText(cell, str(exc))
    except ValueError:
        return cell


_KIND_CONVERTERS: Final[dict[Kind, Converter]] = {
    Kind.NUMBER: _to_number,
    Kind.INTEGER: _to_number,  # a fractional part is the engine's to report
    Kind.BOOLEAN: _to_boolean,
    Kind.STRING_LIST: _from_json,
    Kind.ITEMS: _from_json,
    Kind.CUSTOM_ATTRIBUTES: _from_json,
}


def _content_converters() -> dict[str, Converter]:
    converters = {}
    for name, kinds in all_field_kinds().items():
        # Every field has one kind today; should that change, the text goes through as is.
        converter = _KIND_CONVERTERS.get(next(iter(kinds))) if len(kinds) == 1 else None
        if converter is not None:
            converters[name] = converter
    return converters


_CONTENT_CONVERTERS: Final = _content_converters()
_ENVELOPE_CONVERTERS: Final[dict[str, Converter]] = {"test": _to_boolean}

# Where a column's value goes in the envelope being built for a row.
_ENVELOPE, _IDENTITY, _CONTENT, _IGNORED = 0, 1, 2, 3
_IDENTITY_PREFIX = "identifiableAttributes."
_CONTENT_PREFIX = "signalContent."

Column = tuple[int, str, Converter | None]


def _column(name: str) -> Column:
    if not name:
        return (_IGNORED, "", None)
    if name.startswith(_IDENTITY_PREFIX):
        return (_IDENTITY, name[len(_IDENTITY_PREFIX) :], None)
    if name.startswith(_CONTENT_PREFIX):
        field = name[len(_CONTENT_PREFIX) :]
        return (_CONTENT, field, _CONTENT_CONVERTERS.get(field))
    return (_ENVELOPE, name, _ENVELOPE_CONVERTERS.get(name))


def _row_builder(header: list[str]) -> Callable[[list[str]], dict[str, Any]]:
    names = [name.strip() for name in header]
    # A cell of JSON may hold a key twice: its converter tells `found`, per row.
    found: list[Issue] = []
    columns = [_json_cell_column(_column(name), name, found) for name in names]
    ignored: dict[str, Any] = {}
    repeated = _repeated_columns(names, columns)

    def build(row: list[str]) -> dict[str, Any]:
        envelope: dict[str, Any] = {}
        identity: dict[str, Any] = {}
        content: dict[str, Any] = {}
        targets = (envelope, identity, content, ignored)
        # Most cells of a mixed-type file are empty: compress() and filter() skip them in C,
        # pairing each filled cell with its column (cells past the header's width drop out).
        filled = zip(compress(columns, row), filter(None, row), strict=False)
        for (target, key, convert), cell in filled:
            targets[target][key] = cell if convert is None else convert(cell)
        if identity:
            envelope["identifiableAttributes"] = identity
        if content:
            envelope["signalContent"] = content
        if repeated:
            found.extend(_repeated_in_row(repeated, row))
        if found:
            envelope = RowWithDuplicates(envelope)
            envelope.duplicates = found[:]
            found.clear()
        return envelope

    return build


def _json_cell_column(column: Column, name: str, found: list[Issue]) -> Column:
    """A column of JSON cells gets a converter that also reports a key written twice in
    the cell (SPEC §5) into `found`, at the path of the object in the signal."""
    target, key, convert = column
    if convert is not _from_json:
        return column

    def from_json(cell: str) -> Any:
        value = _from_json(cell)
        # No "{" (a list of strings, say): no object, so no key at all.
        if value is not cell and value.__class__ is not TooLargeText and "{" in cell:
            found.extend(duplicate_issues(cell, value, prefix=name, inside=f" (column {name})"))
        return value

    return (target, key, from_json)


def _repeated_columns(names: list[str], columns: list[Column]) -> list[tuple[str, list[int]]]:
    """Fields that more than one column of the header fills: each with its columns."""
    where: dict[tuple[int, str], list[int]] = {}
    for index, (target, key, _) in enumerate(columns):
        if target != _IGNORED:
            where.setdefault((target, key), []).append(index)
    return [(names[indexes[0]], indexes) for indexes in where.values() if len(indexes) > 1]


def _repeated_in_row(repeated: list[tuple[str, list[int]]], row: list[str]) -> Iterator[Issue]:
    """A field that the row fills in more than one of its columns: only the last one was
    checked, and which one was meant is the file's to say."""
    width = len(row)
    for name, indexes in repeated:
        filled = [i for i in indexes if i < width and row[i]]
        if len(filled) > 1:
            columns = ", ".join(_column_letter(i) for i in filled)
            yield Issue(
                name,
                ERROR,
                Code.DUPLICATE_KEY,
                f"the header has {len(indexes)} columns named {name} and this row fills "
                f"{len(filled)} of them (columns {columns}): only the last one was checked; "
                "keep one column",
            )


def _column_letter(index: int) -> str:
    """A column as a spreadsheet names it: A, B, ..., Z, AA, AB, ..."""
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(65 + rest) + letters
    return letters


_EXPORT_IDENTITIES: Final = {
    "EMAIL": "email",
    "SMS": "sms",
    "PHONE": "sms",
    "PHONE_NUMBER": "sms",
    "WHATSAPP": "whatsapp",
    "CONTACT_KEY": "contactKey",
    "CONTACTKEY": "contactKey",
}


def _export_row_builder(header: list[str]) -> Callable[[list[str]], dict[str, Any]]:
    names = [_normalized(name) for name in header]

    def where(name: str) -> int | None:
        return names.index(name) if name in names else None

    app_key, session, content, signal_type = (
        where("ACOUSTIC_APP_KEY"),
        where("TLTSID"),
        where("SIGNAL_CONTENT"),
        where("SIGNAL_TYPE"),
    )
    identities = [
        (i, _EXPORT_IDENTITIES[n]) for i, n in enumerate(names) if n in _EXPORT_IDENTITIES
    ]

    def build(row: list[str]) -> dict[str, Any]:
        def cell(i: int | None) -> str:
            return row[i] if i is not None and i < len(row) else ""

        envelope: dict[str, Any] = {}
        if value := cell(app_key):
            envelope["appKey"] = value
        identity: dict[str, str] = {}
        for i, key in identities:
            if (value := cell(i)) and key not in identity:
                identity[key] = value
        if identity:
            envelope["identifiableAttributes"] = identity
        if value := cell(session):
            envelope["sessionId"] = value
        duplicates: list[Issue] = []
        if value := cell(content):
            signal_content = _from_json(value)
            if signal_content is not value and signal_content.__class__ is not TooLargeText:
                duplicates = duplicate_issues(
                    value, signal_content, prefix="signalContent", inside=" (column SIGNAL_CONTENT)"
                )
            kind = cell(signal_type)
            if isinstance(signal_content, dict) and kind and "signalType" not in signal_content:
                signal_content["signalType"] = kind
            envelope["signalContent"] = signal_content
        if duplicates:
            envelope = RowWithDuplicates(envelope)
            envelope.duplicates = duplicates
        return envelope

    return build


# --- events CSV (Attentive) ----------------------------------------------------------------

# Columns whose cells are JSON text: an object (or, customIdentifiers, a list).
_EVENT_JSON_COLUMNS: Final = frozenset(
    {
        ("user",),
        ("properties",),
        ("user", "externalIdentifiers"),
        ("user", "externalIdentifiers", "customIdentifiers"),
    }
)
_ABSENT: Final[Any] = object()


@dataclass(frozen=True, slots=True)
class _EventColumn:
    index: int  # in the header
    name: str
    path: tuple[str, ...]  # where the cell goes in the event
    json: bool  # the cell is JSON text


def _event_path(name: str) -> tuple[str, ...]:
    """Where a column's cell goes in an event: `properties.<key>` (the key may hold dots),
    `user.a.b`, Connect's two-level columns; any other name is a key of the event itself."""
    if name.startswith("properties."):
        return ("properties", name[len("properties.") :])
    if name.startswith("user."):
        return ("user", *name[len("user.") :].split("."))
    for prefix in (_IDENTITY_PREFIX, _CONTENT_PREFIX):
        if name.startswith(prefix):
            return (prefix[:-1], name[len(prefix) :])
    return (name,)


def _event_row_builder(header: list[str]) -> Callable[[list[str]], dict[str, Any]]:
    # Lazily imported: the Connect reader does not need the Attentive engine.
    from signals_app.validation.attentive import attentive_duplicates

    names = [name.strip() for name in header]
    columns: list[_EventColumn | None] = []
    for index, name in enumerate(names):
        if not name:
            columns.append(None)  # a blank header: ignored, as in a Connect CSV
            continue
        path = _event_path(name)
        columns.append(_EventColumn(index, name, path, path in _EVENT_JSON_COLUMNS))

    def build(row: list[str]) -> dict[str, Any]:
        filled = [(c, cell) for c, cell in zip(columns, row, strict=False) if cell and c]
        if not filled:
            return {}
        # What holds a value before the value: `properties` (a cell of JSON) before
        # `properties.color`, so the column's key joins the cell's object.
        filled.sort(key=lambda pair: len(pair[0].path))
        event: dict[str, Any] = {}
        given: dict[tuple[str, ...], int] = {}  # path -> the column that gave it
        found: list[Issue] = []
        for column, cell in filled:
            value: Any = cell
            if column.json:
                value = _from_json(cell)
                if value is not cell and value.__class__ is not TooLargeText and "{" in cell:
                    found.extend(
                        attentive_duplicates(
                            cell,
                            value,
                            prefix=".".join(column.path),
                            inside=f" (column {column.name})",
                        )
                    )
            _place_in_event(event, column, value, given, found)
        if found:
            event = RowWithDuplicates(event)
            event.duplicates = found
        return event

    return build


def _place_in_event(
    event: dict[str, Any],
    column: _EventColumn,
    value: Any,
    given: dict[tuple[str, ...], int],
    found: list[Issue],
) -> None:
    path = column.path
    target = event
    for step in path[:-1]:
        child = target.get(step, _ABSENT)
        if child is _ABSENT:
            child = target[step] = {}
        elif child.__class__ is not dict:
            return  # a cell that is no object holds the place: the engine reports it
        target = child
    last = path[-1]
    if last in target:
        # Given by another column, or inside the JSON of a column that holds this one.
        other = next(
            (given[path[:depth]] for depth in range(len(path), 0, -1) if path[:depth] in given),
            column.index,
        )
        shown = ".".join(path)
        found.append(
            Issue(
                shown,
                ERROR,
                Code.DUPLICATE_KEY,
                f"{shown} is given twice in this row (columns {_column_letter(other)} and "
                f"{_column_letter(column.index)}): only the last one was checked; keep one",
            )
        )
    target[last] = value
    given[path] = column.index
