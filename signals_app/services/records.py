"""An import file's records as the services handle them, shared by validation, fixes,
preview and downloads: parsed to Python values, dumped back to JSON, judged at the app
key's tier."""

from __future__ import annotations

import json
from typing import Any, cast

import orjson

from signals_app.validation.readers import Record
from signals_app.validation.schema import TIERS, Tier
from signals_app.validation.validate import parse_json


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


def dumps(value: Any) -> bytes:
    try:
        return orjson.dumps(value)
    except TypeError:  # an integer beyond 64 bits
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
