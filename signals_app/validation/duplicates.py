"""Objects that hold the same key twice (SPEC §5, `duplicate_key`).

orjson and msgspec keep the last value of a repeated key without a word, so the validator
would judge that value while the file's bytes, sent as written, still hold both: what
Connect makes of them is undefined. Finding them exactly means reading every key of every
object, which would cost as much as parsing again; so the check is in two steps:

- cheap: the keys *written* in the text are at most its `":` pairs plus the colons right
  after blank space (every key is a string followed by its colon, perhaps after blanks);
  the keys *read* are counted in the decoded value. A key written twice is read once, so
  the counts agree only when no key repeats;
- exact, only when they disagree (a `":` inside a string value does that too): the text
  is followed token by token, without recursion, to name each repeated key and the path
  of its object. Keys are compared as decoded, so "a" and "\\u0061" are the same key.

Counting costs more than the decode's checks of a clean signal, so a small C extension,
_dupscan.c (built by `make` beside this file), looks first: it follows the text's strings
and brackets and compares each object's keys byte for byte, and says 0 (no key twice:
nothing more to do), 1 (one: the exact step names it) or -1 (not sure: a key with an
escape, an object of more than 64 keys, nesting past 256 levels; the two steps above
answer). Without it (no C compiler), the two steps do all the work, with a warning once
per process. tests/test_duplicate_key.py checks both ways and that they agree.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any, Final, NamedTuple

import orjson

from signals_app.validation.findings import ERROR, Code, Issue

__all__ = [
    "Duplicate",
    "count_keys",
    "duplicate_issue",
    "duplicate_issues",
    "find_duplicates",
    "key_scanner",
    "keys_at_most",
    "scan_keys",
]

logger = logging.getLogger(__name__)


def _compiled_scanner() -> Callable[[bytes | str], int] | None:
    try:
        from signals_app.validation._dupscan import scan
    except ImportError:  # not built: `make` builds it where a C compiler is
        return None
    return scan


# The C scanner: 0 no key twice, 1 a key twice, -1 not sure; None when not built.
scan_keys = _compiled_scanner()
_warned = False


def key_scanner() -> Callable[[bytes | str], int] | None:
    """scan_keys, with a warning the first time it is missing (the validator is then
    correct but slower)."""
    global _warned
    if scan_keys is None and not _warned:
        _warned = True
        logger.warning(
            "signals_app/validation/_dupscan.c is not built (run `make`; it needs a C "
            "compiler): duplicate keys are looked for in Python, which is slower"
        )
    return scan_keys


class Duplicate(NamedTuple):
    """A key written more than once in one object."""

    path: str  # of the key: the object's path and the key (the key alone at the top)
    key: str
    where: str  # the object's path, "" for the top object
    times: int


def keys_at_most(text: bytes | str) -> int:
    """An upper bound of the keys written in a JSON text (see the module's docstring)."""
    if isinstance(text, str):  # a CSV cell
        count = text.count('":') + text.count(" :")
        for character in "\t\r\n":
            if character in text:
                count += text.count(character + ":")
        return count
    count = text.count(b'":') + text.count(b" :")
    # A tab, CR or LF is rare in a record: one memchr each says whether to count.
    for blank, key_end in _OTHER_BLANKS:
        if text.find(blank) >= 0:
            count += text.count(key_end)
    return count


_OTHER_BLANKS: Final = ((9, b"\t:"), (13, b"\r:"), (10, b"\n:"))


def count_keys(value: Any) -> int:
    """The keys of every object in a decoded JSON value (without recursion: a record may
    be nested 1,024 levels deep)."""
    count = 0
    todo = [value]
    pop, push = todo.pop, todo.extend
    while todo:
        item = pop()
        if item.__class__ is dict:
            count += len(item)
            push([v for v in item.values() if v.__class__ is dict or v.__class__ is list])
        elif item.__class__ is list:
            push([v for v in item if v.__class__ is dict or v.__class__ is list])
    return count


def _keys_read(text: bytes | str, value: Any) -> int:
    """count_keys(value), sooner in C when the text has no backslash: its strings then
    hold no quote, so in orjson's compact writing of the value every `":` ends a key."""
    if isinstance(text, bytes) and text.find(0x5C) < 0:
        try:
            return orjson.dumps(value).count(b'":')
        except orjson.JSONEncodeError:  # an integer past 64 bits, say
            pass
    return count_keys(value)


# Tokens of a JSON text known to be valid: a string, a bracket or punctuation, a scalar.
_TOKEN: Final = re.compile(rb'"[^"\\]*+(?:\\.[^"\\]*+)*+"|[{}\[\]:,]|[^\s"{}\[\]:,]++', re.S)
_OPEN_OBJECT, _CLOSE_OBJECT, _OPEN_ARRAY, _CLOSE_ARRAY = 0x7B, 0x7D, 0x5B, 0x5D
_COMMA, _COLON, _QUOTE = 0x2C, 0x3A, 0x22


class _Frame:
    """An object or array being read: its path, and per key (objects) the times seen."""

    __slots__ = ("index", "key", "keys", "path")

    def __init__(self, path: str, keys: dict[str, int] | None) -> None:
        self.path = path
        self.keys = keys  # None for an array
        self.key = ""  # of the member being read (objects)
        self.index = 0  # of the element being read (arrays)


def find_duplicates(text: bytes | str) -> list[Duplicate]:
    """Every key written more than once in an object of `text` (valid JSON), in the order
    of their second writing."""
    data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    repeated: list[tuple[_Frame, str]] = []
    stack: list[_Frame] = []
    expecting_key = False
    for match in _TOKEN.finditer(data):
        token = match.group()
        first = token[0]
        if first in (_OPEN_OBJECT, _OPEN_ARRAY):
            path = _child_path(stack[-1]) if stack else ""
            stack.append(_Frame(path, {} if first == _OPEN_OBJECT else None))
            expecting_key = first == _OPEN_OBJECT
        elif first in (_CLOSE_OBJECT, _CLOSE_ARRAY):
            stack.pop()
            expecting_key = False
        elif first == _COMMA:
            frame = stack[-1]
            if frame.keys is None:
                frame.index += 1
            else:
                expecting_key = True
        elif first == _COLON:
            expecting_key = False
        elif expecting_key and first == _QUOTE:
            frame = stack[-1]
            keys = frame.keys
            assert keys is not None
            key = _decoded(token)
            times = keys.get(key, 0) + 1
            keys[key] = times
            frame.key = key
            if times == 2:
                repeated.append((frame, key))
    return [
        Duplicate(_joined(frame.path, key), key, frame.path, (frame.keys or {})[key])
        for frame, key in repeated
    ]


def _child_path(frame: _Frame) -> str:
    if frame.keys is None:
        return f"{frame.path}[{frame.index}]"
    return _joined(frame.path, frame.key)


def _joined(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _decoded(token: bytes) -> str:
    if b"\\" not in token:
        return token[1:-1].decode("utf-8", "surrogatepass")
    try:
        key = orjson.loads(token)
    except orjson.JSONDecodeError:  # a lone surrogate: the standard library reads it
        import json

        key = json.loads(token.decode("utf-8", "surrogatepass"))
    return str(key)


def duplicate_issue(duplicate: Duplicate, *, inside: str = "", place: str = "") -> Issue:
    """The finding for one repeated key. `place` says where its object is when the path
    does not ("in the record" for the wrapper); `inside` adds what holds it (a CSV cell)."""
    key, where, times = duplicate.key, duplicate.where, duplicate.times
    place = place or (f"in {_last_step(where)}" if where else "in the signal")
    written = "twice" if times == 2 else f"{times} times"
    return Issue(
        duplicate.path,
        ERROR,
        Code.DUPLICATE_KEY,
        f"{key} is written {written} {place}{inside}: the file is sent as written and "
        f"Connect may take {'either value' if times == 2 else 'any of them'}, so keep only "
        "one (only the last one was checked)",
    )


def _last_step(path: str) -> str:
    return path.rsplit(".", 1)[-1]


def duplicate_issues(
    text: bytes | str, value: Any, *, prefix: str = "", wrapped: bool = False, inside: str = ""
) -> list[Issue]:
    """The duplicate_key issues of a record (or a CSV cell) whose text is `text` and
    decoded value `value`; none, cheaply, when the counts say no key repeats. `prefix` is
    the path of the value in its signal (a CSV cell's field); `wrapped`: the record is the
    vendor's `{"signal": envelope}` wrapper, whose paths lose their "signal." (SPEC §5:
    paths are relative to the envelope)."""
    scan = scan_keys
    found = -1 if scan is None else scan(text)
    if found == 0:
        return []
    if found < 0:  # not sure, or no scanner: count
        written = keys_at_most(text)
        if written < 2 or written == _keys_read(text, value):
            return []
    issues = []
    for duplicate in find_duplicates(text):
        place = ""
        if prefix:
            duplicate = duplicate._replace(
                path=_prefixed(prefix, duplicate.path), where=_prefixed(prefix, duplicate.where)
            )
        elif wrapped:
            if duplicate.where:
                duplicate = duplicate._replace(
                    path=_in_envelope(duplicate.path), where=_in_envelope(duplicate.where)
                )
            else:
                place = "in the record, around the signal"
        issues.append(duplicate_issue(duplicate, inside=inside, place=place))
    return issues


def _prefixed(prefix: str, path: str) -> str:
    if not path:
        return prefix
    return prefix + path if path[0] == "[" else f"{prefix}.{path}"


def _in_envelope(path: str) -> str:
    """A path of the wrapper record as a path of its envelope (`signal.x` -> `x`)."""
    if path == "signal":
        return ""
    return path[len("signal.") :] if path.startswith("signal.") else path
