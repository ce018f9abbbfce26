"""A JSON document cut into its records as bytes, without building them (SPEC §5).

Each record comes out as the text it has in the file, like an NDJSON line, and goes to the
same parsing (orjson, then the standard library for what orjson refuses): a record nested
deeper than 1,024 levels, holding an integer of more than 4,300 digits or a lone surrogate
escape is a finding on its signal, and the others are still judged.

Why not a streaming parser such as ijson (yajl): it keeps a prefix string for every level
of nesting, so a 200 KB file nested 100,000 levels deep asks for gigabytes; and its C
backend crashes the process on an integer longer than Python's limit for int() (it calls
PyLong_FromString and uses the NULL it gets back). Here nothing is built per level:

- msgspec checks each record in C (decoding it as `msgspec.Raw`, which keeps the bytes and
  builds nothing) and tells where it ends: "trailing characters (byte N)" is the comma or
  bracket after it;
- where msgspec gives no such answer (a record cut by the end of the buffer, a record with
  a syntax error, nesting past its recursion limit), the structure is followed instead:
  strings jumped over by a regular expression, brackets counted, nothing else kept.

Only the document's own structure can make the file unreadable: an array that is never
closed, a missing comma between records, text after the end. A record that is not valid
JSON is its own finding (`syntax`), as in NDJSON.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Generator, Iterator
from typing import Final

import msgspec

from signals_app.validation.errors import UnreadableFile
from signals_app.validation.sizes import human_size

ARRAY, SIGNALS, SINGLE = "array", "signals", "single"

_READ_BYTES: Final = 256 * 1024
_SPACE: Final = b" \t\r\n"
_OPENERS: Final = b"{["
# From a position outside any string: everything up to the next bracket, or up to a quote
# whose string does not end in the buffer. Possessive, so nothing is remembered to backtrack.
_SKIP: Final = re.compile(rb'[^"\[\]{}]*+(?:"[^"\\]*+(?:\\.[^"\\]*+)*+"[^"\[\]{}]*+)*+', re.S)
_STRING: Final = re.compile(rb'"[^"\\]*+(?:\\.[^"\\]*+)*+"', re.S)
_SCALAR: Final = re.compile(rb"[^ \t\r\n,\[\]{}\"]*+")
_BLANK: Final = re.compile(rb"[ \t\r\n]*+")
# The start of {"signals": [ ...: the key as written (escapes allowed) and the colon.
_FIRST_KEY: Final = re.compile(
    rb'[ \t\r\n]*+\{[ \t\r\n]*+("[^"\\]*+(?:\\.[^"\\]*+)*+")[ \t\r\n]*+:', re.S
)
# How close to the end of the buffer a complaint of msgspec may be only a cut token.
_NEAR_END: Final = 64

_raw: Final = msgspec.json.Decoder(msgspec.Raw)
_COMMA_BEFORE_BRACKET: Final = "a comma right before ] (no signal follows it)"


class JsonDocument:
    """The records of a JSON document read from `read` (the content after any byte order
    mark; `offset` is where that starts in the content, for messages):

    - ARRAY: `[record, ...]`;
    - SIGNALS: `{"signals": [record, ...], ...}` ("signals" the first key; other members
      after the array are skipped);
    - SINGLE: the whole document is one record.

    Iterating yields each record's bytes; UnreadableFile when the structure breaks.
    Positions are offsets in the content; the buffer holds [_base, _base + len(_buf))."""

    def __init__(
        self, read: Callable[[int], bytes], *, mode: str, offset: int, max_record_bytes: int
    ) -> None:
        self._read = read
        self._mode = mode
        self._max_record_bytes = max_record_bytes
        self._buf = b""
        self._base = offset
        self._newlines = 0  # before _buf[0]
        self._dropped = b""  # the last bytes before _buf[0], for messages
        self._at_end = False
        self._index = 0  # of the next record
        self._start = offset

    # --- the document --------------------------------------------------------------------

    def __iter__(self) -> Iterator[bytes]:
        pos = self._blank(self._start)
        if self._mode == SINGLE:
            end = self._record_end(pos)
            yield self._take(pos, end)
            pos = end
        else:
            if self._mode == SIGNALS:
                pos = self._signals_key(pos)
            pos = self._expect(pos, 0x5B, "expected [ to open the array of signals")
            pos = yield from self._array(pos)
            if self._mode == SIGNALS:
                pos = self._rest_of_object(pos)
        self._expect_end(self._blank(pos))

    def _array(self, pos: int) -> Generator[bytes, None, int]:
        """The records of the array whose "[" is just before `pos`; returns the position
        after its "]"."""
        pos = self._blank(pos)
        if self._byte(pos) == 0x5D:  # "]": no records
            return pos + 1
        while True:
            pos = self._blank((yield from self._objects_in_buffer(pos)))
            end = self._record_end(pos)
            yield self._take(pos, end)
            pos = self._blank(end)
            after = self._byte(pos)
            if after == 0x2C:  # ","
                pos = self._blank(pos + 1)
                if self._byte(pos) == 0x5D:
                    raise self._invalid(pos, _COMMA_BEFORE_BRACKET)
                continue
            if after == 0x5D:
                return pos + 1
            if after < 0:
                raise self._ends_early()
            raise self._invalid(pos, f"expected a comma or ] after signal {self._index - 1}")

    def _objects_in_buffer(self, pos: int) -> Generator[bytes, None, int]:
        """The hot loop: records that are objects, each checked by msgspec, each followed
        by a comma within the buffer. Returns where the general loop takes over: a record
        that is not such an object, the last one, or one the buffer does not hold whole."""
        buf = self._buf
        base = self._base
        view = memoryview(buf)
        limit = self._max_record_bytes
        decode = _raw.decode
        blank = _BLANK.match
        at = pos - base
        size = len(buf)
        while at < size and buf[at] == 0x7B:  # "{"
            try:
                decode(view[at:])
            except msgspec.DecodeError as exc:
                message = str(exc)
                if not message.startswith("JSON is malformed: trailing characters (byte "):
                    break
                comma = at + int(message[message.rindex(" ") + 1 : -1]) - 1
            except RecursionError:
                break
            else:
                break  # the buffer ends with the record
            if buf[comma] != 0x2C:  # ","
                break
            end = comma
            while buf[end - 1] in _SPACE:
                end -= 1
            if end - at > limit:
                break
            self._index += 1
            yield buf[at:end]
            at = blank(buf, comma + 1).end()  # type: ignore[union-attr]
            if at < size and buf[at] == 0x5D:
                raise self._invalid(base + at, _COMMA_BEFORE_BRACKET)
        view.release()
        return base + at

    def _signals_key(self, pos: int) -> int:
        self._keep_from(pos)
        self._fill_to(pos + 4096)
        match = _FIRST_KEY.match(self._buf, pos - self._base)
        if match is None:
            raise self._invalid(pos, 'expected {"signals": [')
        return self._blank(self._base + match.end())

    def _rest_of_object(self, pos: int) -> int:
        """Past the object holding "signals", its other members skipped (never kept)."""
        pos = self._blank(pos)
        after = self._byte(pos)
        if after == 0x7D:  # "}"
            return pos + 1
        if after < 0:
            raise self._ends_early()
        if after != 0x2C:
            raise self._invalid(pos, 'expected a comma or } after the "signals" array')
        return self._container_end(pos, depth=1, keep=False)

    def _expect(self, pos: int, token: int, reason: str) -> int:
        pos = self._blank(pos)
        found = self._byte(pos)
        if found == token:
            return pos + 1
        if found < 0:
            raise self._ends_early()
        raise self._invalid(pos, reason)

    def _expect_end(self, pos: int) -> None:
        if self._byte(pos) >= 0:
            raise self._invalid(pos, "text after the end of the JSON")

    # --- one record ----------------------------------------------------------------------

    def _record_end(self, start: int) -> int:
        """Where the value starting at `start` ends (exclusive)."""
        first = self._byte(start)
        if first < 0:
            raise self._ends_early()
        if first in _OPENERS:
            end = self._checked_end(start)
            if end is not None:
                return end
            return self._container_end(start, depth=0, keep=True)
        if first == 0x22:  # '"'
            return self._string_end(start)
        return self._scalar_end(start)

    def _checked_end(self, start: int) -> int | None:
        """The end of the container at `start` as msgspec finds it while checking it in C;
        None when it cannot say (the record goes on past the buffer, is broken, or is
        nested past msgspec's recursion limit)."""
        at = start - self._base
        try:
            _raw.decode(memoryview(self._buf)[at:])
        except msgspec.DecodeError as exc:
            message = str(exc)
            if message.startswith("JSON is malformed: trailing characters (byte "):
                # msgspec names the byte after the first trailing one, counted from 0.
                after = at + int(message[message.rindex(" ") + 1 : -1]) - 1
                return self._base + self._trimmed(at, after)
            return None
        except RecursionError:
            return None
        return self._base + self._trimmed(at, len(self._buf))  # the buffer ends with it

    def _trimmed(self, at: int, after: int) -> int:
        buf = self._buf
        while after > at and buf[after - 1] in _SPACE:
            after -= 1
        return after

    def _container_end(self, start: int, *, depth: int, keep: bool) -> int:
        """Follow brackets from `start` until `depth` is back to zero; with `keep`, the
        bytes from `start` stay in the buffer (a record), else they may go (skipped)."""
        skip = _SKIP.match
        at = start - self._base
        while True:
            buf = self._buf
            at = skip(buf, at).end()  # type: ignore[union-attr]  # always matches
            if at < len(buf) and buf[at] != 0x22:
                bracket = buf[at]
                at += 1
                if bracket == 0x7B or bracket == 0x5B:
                    depth += 1
                elif (depth := depth - 1) == 0:
                    return self._base + at
                continue
            # The buffer ends, or a string does not end in it: read on.
            pos = self._base + at
            if keep:
                self._check_size(start, pos)
            if not self._more(start if keep else pos):
                raise self._ends_early()
            at = pos - self._base

    def _string_end(self, start: int) -> int:
        while True:
            match = _STRING.match(self._buf, start - self._base)
            if match is not None:
                return self._base + match.end()
            self._check_size(start, self._base + len(self._buf))
            if not self._more(start):
                raise self._ends_early()

    def _scalar_end(self, start: int) -> int:
        while True:
            end = _SCALAR.match(self._buf, start - self._base).end()  # type: ignore[union-attr]
            if end < len(self._buf) or not self._more(start):
                if self._base + end == start:
                    raise self._invalid(start, "expected a signal")
                return self._base + end
            self._check_size(start, self._base + end)

    def first_record_end(self) -> int:
        """Where the first value ends (format detection: without checking what follows)."""
        return self._record_end(self._blank(self._start))

    def _take(self, start: int, end: int) -> bytes:
        self._check_size(start, end)
        self._index += 1
        return self._buf[start - self._base : end - self._base]

    def _check_size(self, start: int, end: int) -> None:
        if end - start > self._max_record_bytes:
            raise UnreadableFile(
                f"signal {self._index} is larger than {human_size(self._max_record_bytes)}, the "
                f"limit for one signal (it starts at byte {start})"
            )

    # --- the buffer ----------------------------------------------------------------------

    def _byte(self, pos: int) -> int:
        """The byte at `pos` (reading on when needed), -1 past the end of the content."""
        at = pos - self._base
        if at >= len(self._buf):
            self._keep_from(pos)
            self._fill_to(pos + 1)
            at = pos - self._base
        return self._buf[at] if at < len(self._buf) else -1

    def _blank(self, pos: int) -> int:
        """Past the blank space from `pos` (which may run over several reads)."""
        while True:
            at = _BLANK.match(self._buf, pos - self._base).end()  # type: ignore[union-attr]
            pos = self._base + at
            if at < len(self._buf) or not self._more(pos):
                return pos

    def _fill_to(self, pos: int) -> None:
        while self._base + len(self._buf) < pos and self._append():
            pass

    def _keep_from(self, pos: int) -> None:
        """Drop the buffer before `pos` (never needed again)."""
        drop = min(pos - self._base, len(self._buf))
        if drop > 0:
            self._newlines += self._buf.count(b"\n", 0, drop)
            self._dropped = (self._dropped + self._buf[max(0, drop - 64) : drop])[-64:]
            self._base += drop
            self._buf = self._buf[drop:]

    def _more(self, keep: int) -> bool:
        """Drop the buffer before `keep` and read on; False when the content has ended."""
        self._keep_from(keep)
        return self._append()

    def _append(self) -> bool:
        if self._at_end:
            return False
        # Reads grow with the buffer, so a record read over many reads is copied a few
        # times, not once per read.
        data = self._read(max(_READ_BYTES, len(self._buf)))
        if not data:
            self._at_end = True
            return False
        self._buf += data
        return True

    # --- messages ------------------------------------------------------------------------

    def _ends_early(self) -> UnreadableFile:
        while self._more(self._base + len(self._buf)):  # to the end, counting, not keeping
            pass
        line = self._newlines + self._buf.count(b"\n") + 1
        return UnreadableFile(
            f"the JSON ends early at byte {self._base + len(self._buf)} (line {line}); "
            "the file seems truncated or a bracket is missing"
        )

    def _invalid(self, pos: int, reason: str) -> UnreadableFile:
        line = self._newlines + self._buf.count(b"\n", 0, pos - self._base) + 1
        buf = self._dropped + self._buf
        at = pos - self._base + len(self._dropped)
        line_start = buf.rfind(b"\n", 0, at) + 1
        near = buf[max(line_start, at - 20) : at].decode(errors="replace").strip()
        place = f"line {line}, after {near!r}" if near else f"line {line}"
        return UnreadableFile(f"the JSON is invalid at byte {pos} ({place}): {reason}")


# --- questions about the beginning of a file (format detection) ----------------------------

WHOLE, OPENS = "whole", "opens"


def first_value_layout(text: bytes) -> str:
    """WHOLE when the value `text` starts with ends within it (whatever its syntax inside),
    OPENS when it goes on past the end of `text`."""
    try:
        _raw.decode(text)
    except msgspec.DecodeError as exc:
        if str(exc).startswith("JSON is malformed: trailing characters"):
            return WHOLE
    except RecursionError:
        pass
    else:
        return WHOLE
    document = JsonDocument(_once(text), mode=SINGLE, offset=0, max_record_bytes=len(text) + 1)
    try:
        document.first_record_end()
    except UnreadableFile:
        return OPENS
    return WHOLE


def breaks_as_document(text: bytes, *, whole: bool) -> bool:
    """Whether `text` (the beginning of the content, or all of it when `whole`) has a
    syntax error as one JSON document: more than one value, or a fault before the place
    where `text` may merely have been cut."""
    try:
        _raw.decode(text)
    except RecursionError:
        return False
    except msgspec.DecodeError as exc:
        message = str(exc)
        if message == "Input data was truncated":
            return False
        if message.startswith("JSON is malformed: trailing characters"):
            return True
        at = _byte_of(message)
        return whole or at is None or at < len(text.rstrip()) - _NEAR_END
    return False


def first_key(text: bytes) -> tuple[str, int] | None:
    """The first key of the object `text` opens, and where the value after its colon
    starts; None when `text` does not get that far."""
    match = _FIRST_KEY.match(text)
    if match is None:
        return None
    try:
        key = msgspec.json.decode(match.group(1))
    except msgspec.DecodeError:
        return None
    if not isinstance(key, str):
        return None
    return key, _BLANK.match(text, match.end()).end()  # type: ignore[union-attr]


def value_kind(text: bytes, pos: int = 0) -> str:
    """In words, what the JSON value starting at `pos` is: "an array", "an object", "a
    string", "a number", "a boolean", "null", or "" when it starts like none of them."""
    first = text[pos : pos + 1]
    if first == b"[":
        return "an array"
    if first == b"{":
        return "an object"
    if first == b'"':
        return "a string"
    if first and first in b"-0123456789":
        return "a number"
    if text.startswith((b"true", b"false"), pos):
        return "a boolean"
    if text.startswith(b"null", pos):
        return "null"
    return ""


def deeper_than(text: bytes, limit: int) -> bool:
    """Whether `text`'s arrays and objects nest deeper than `limit` levels (brackets
    inside strings do not count); stops as soon as they do."""
    skip = _SKIP.match
    depth = at = 0
    size = len(text)
    while at < size:
        at = skip(text, at).end()  # type: ignore[union-attr]  # always matches
        if at >= size or text[at] == 0x22:  # the end, or a string never closed
            return False
        bracket = text[at]
        at += 1
        if bracket == 0x7B or bracket == 0x5B:
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


def _byte_of(message: str) -> int | None:
    found = re.search(r"\(byte (\d+)\)$", message)
    return int(found.group(1)) if found else None


def _once(text: bytes) -> Callable[[int], bytes]:
    chunks = [text]

    def read(size: int) -> bytes:
        return chunks.pop() if chunks else b""

    return read
