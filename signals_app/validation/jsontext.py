"""A record's JSON text as Python objects, within the limits that keep one file from taking a
worker down (SPEC §5): the same for every format, an NDJSON line, a JSON array's element or
a CSV cell holding JSON."""

from __future__ import annotations

import json
import re
import sys
from typing import Any

import orjson

from signals_app.validation.jsondoc import deeper_than

MAX_NESTING = 1024  # orjson's limit for arrays and objects within each other

__all__ = ["MAX_NESTING", "TooLarge", "parse_json"]


def parse_json(raw: bytes | str) -> Any:
    """A record's JSON text as Python objects (objects keep their keys in the text's
    order); ValueError when it is no JSON text.

    orjson first (fast); the standard library only for what orjson refuses but JSON
    allows, such as integers beyond 64 bits, so such a value gets a finding, not a crash.
    What the standard library takes beyond JSON is refused, or the record would be
    called valid and then fail when sent:
    - \\u escapes of lone UTF-16 surrogates ("\\ud800"): they stand for no character, and
      no text can hold one (not Connect's, not a database's, not a library's);
    - NaN, Infinity and -Infinity, which are no JSON numbers;
    - a UTF-8 byte order mark, which json.loads skips: the reader skips the file's own,
      so one here is inside the file (files joined with cat, say);
    - UTF-16 or UTF-32, which json.loads guesses from zero bytes: the bytes are decoded
      as the UTF-8 the file is in (surrogatepass, so a surrogate gets the message below);
    - nesting past orjson's limit, where json.loads would raise RecursionError.

    A record past a reading limit (SPEC §5: nested deeper than 1,024 levels, an integer
    of more than 4,300 digits) raises TooLarge, a ValueError of its own."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        pass
    # Nesting is checked on the bytes, not left to json.loads's RecursionError, which comes
    # at the interpreter's recursion limit (raised by some hosts; past the C stack, a crash).
    data = raw if isinstance(raw, bytes) else raw.encode("utf-8", "surrogatepass")
    if deeper_than(data, MAX_NESTING):
        raise TooLarge(
            f"its arrays and objects are nested more than {MAX_NESTING:,} levels deep, "
            "the most a signal may have"
        )
    text = raw.decode("utf-8", "surrogatepass") if isinstance(raw, bytes) else raw
    if text.startswith("\ufeff"):
        raise ValueError(
            "it starts with a byte order mark (bytes EF BB BF), which belongs only at the "
            "very start of a file; were files joined together?"
        )
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
        json.dumps(value, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        raise ValueError(
            "it holds a \\u escape of a lone UTF-16 surrogate, which is no character"
        ) from None
    except RecursionError:
        raise TooLarge(
            f"its arrays and objects are nested more than {MAX_NESTING:,} levels deep, "
            "the most a signal may have"
        ) from None
    except json.JSONDecodeError:
        raise
    except ValueError as exc:  # int(): more digits than Python's limit
        digits = _DIGITS.search(str(exc))
        if digits is None:
            raise
        raise TooLarge(
            f"it holds a number of {int(digits.group(1)):,} digits; a signal's numbers may "
            f"have {sys.get_int_max_str_digits():,} digits at most"
        ) from None
    return value


class TooLarge(ValueError):
    """A record past one of the limits that keep a file from taking a worker down."""


_DIGITS = re.compile(r"value has (\d+) digits")


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")
