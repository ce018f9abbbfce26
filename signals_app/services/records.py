"""An import file's records as the services handle them, shared by validation, fixes,
preview and downloads: parsed to Python values, dumped back to JSON, judged at the app
key's tier."""

from __future__ import annotations

import json
from typing import Any, cast

import orjson

from signals_app.validation.jsontext import parse_json
from signals_app.validation.readers import Record
from signals_app.validation.schema import TIERS, Tier


def validation_tier(value: str) -> Tier:
    return cast(Tier, value) if value in TIERS else "pro"


NOT_PARSED: Any = object()


def record_value(record: Record) -> Any:
    """The record as Python objects; NOT_PARSED when an NDJSON line is not JSON."""
    if record.raw is None:
        return record.value
    return loads(record.raw)


def loads(text: bytes | str) -> Any:
    """JSON text as Python objects, objects keeping their keys in the text's order;
    NOT_PARSED when it is not JSON."""
    try:
        return parse_json(text)
    except ValueError:  # UnicodeDecodeError is one too
        return NOT_PARSED


_LINE_BREAKS_AS_SPACES = bytes.maketrans(b"\r\n", b"  ")


def one_line(raw: bytes) -> bytes:
    """A record's text on one line, for NDJSON written from it: a JSON record may be
    pretty-printed over several lines. JSON allows line breaks only between tokens, where
    a space does as well; a broken record stays as broken, on one line."""
    return raw.translate(_LINE_BREAKS_AS_SPACES) if b"\n" in raw or b"\r" in raw else raw


def dumps(value: Any) -> bytes:
    try:
        return orjson.dumps(value)
    except TypeError:  # an integer beyond 64 bits
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
