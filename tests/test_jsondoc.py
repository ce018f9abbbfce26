"""A JSON document cut into its records as bytes (jsondoc): the records are exactly the
document's elements, whatever the layout and wherever the reads end; nesting, long numbers
and long strings cost no more than their bytes; the structure's faults are placed."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from signals_app.validation.errors import UnreadableFile
from signals_app.validation.jsondoc import (
    ARRAY,
    OPENS,
    SIGNALS,
    SINGLE,
    WHOLE,
    JsonDocument,
    breaks_as_document,
    first_key,
    first_value_layout,
    value_kind,
)


def reads_of(data: bytes, size: int) -> Callable[[int], bytes]:
    """A stream that hands out at most `size` bytes a read, whatever was asked."""
    stream = io.BytesIO(data)
    return lambda _asked: stream.read(size)


def records(data: bytes, *, mode: str = ARRAY, size: int = 1 << 20, limit: int = 1 << 24) -> list:
    return list(JsonDocument(reads_of(data, size), mode=mode, offset=0, max_record_bytes=limit))


def refusal(data: bytes, **kwargs: Any) -> str:
    with pytest.raises(UnreadableFile) as caught:
        records(data, **kwargs)
    return str(caught.value)


# Strings with what a splitter could trip on: quotes, backslashes, brackets, commas.
tricky_text = st.text(alphabet=st.sampled_from('ab"\\[]{},: \n\té€\U0001f600'), max_size=12)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | tricky_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(tricky_text, inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    elements=st.lists(json_values, max_size=8),
    indent=st.sampled_from([None, 0, 2, "\t"]),
    read_size=st.integers(min_value=1, max_value=64),
)
def test_the_records_are_the_elements_whatever_the_layout_and_the_reads(
    elements: list[Any], indent: Any, read_size: int
) -> None:
    data = json.dumps(elements, indent=indent, ensure_ascii=False).encode()
    found = records(data, size=read_size)
    assert [json.loads(raw) for raw in found] == elements
    # Each record is the element's own text: nothing before it, nothing after it.
    assert all(raw == raw.strip() for raw in found)


@settings(max_examples=100, deadline=None)
@given(elements=st.lists(json_values, max_size=5), read_size=st.integers(1, 32))
def test_a_signals_document_gives_its_array_and_skips_the_rest(
    elements: list[Any], read_size: int
) -> None:
    data = json.dumps({"signals": elements, "then": {"more": [1, "]}"]}}).encode()
    assert [json.loads(raw) for raw in records(data, mode=SIGNALS, size=read_size)] == elements


@settings(max_examples=100, deadline=None)
@given(value=json_values, read_size=st.integers(1, 32))
def test_a_single_document_is_one_record(value: Any, read_size: int) -> None:
    data = b"  " + json.dumps(value, indent=1).encode() + b"\n\n"
    assert [json.loads(raw) for raw in records(data, mode=SINGLE, size=read_size)] == [value]


@settings(max_examples=30, deadline=None)
@given(depth=st.integers(min_value=1, max_value=200_000), read_size=st.sampled_from([4096, 65536]))
def test_nesting_of_any_depth_is_cut_without_building_it(depth: int, read_size: int) -> None:
    deep = b"[" * depth + b"]" * depth
    data = b"[" + deep + b',{"a":' + deep + b"}]"
    assert records(data, size=read_size) == [deep, b'{"a":' + deep + b"}"]


@settings(max_examples=30, deadline=None)
@given(digits=st.integers(min_value=1, max_value=100_000), read_size=st.sampled_from([999, 65536]))
def test_numbers_of_any_length_stay_text(digits: int, read_size: int) -> None:
    number = b"9" * digits
    data = b'[{"n": ' + number + b"}, " + number + b", -" + number + b".5e3]"
    assert records(data, size=read_size) == [
        b'{"n": ' + number + b"}",
        number,
        b"-" + number + b".5e3",
    ]


@settings(max_examples=30, deadline=None)
@given(
    length=st.integers(min_value=0, max_value=300_000), read_size=st.sampled_from([997, 100_000])
)
def test_strings_of_any_length_with_escaped_quotes(length: int, read_size: int) -> None:
    text = ('x\\"[' * (length // 4 + 1))[:length].rstrip("\\")
    element = b'{"s": "' + text.encode() + b'"}'
    assert records(b"[" + element + b"]", size=read_size) == [element]


def test_a_record_is_refused_past_the_limit_wherever_the_reads_end() -> None:
    big = b'{"s": "' + b"x" * 5000 + b'"}'
    for size in (13, 4096, 1 << 20):
        assert refusal(b"[1, " + big + b"]", size=size, limit=4000).startswith(
            "signal 1 is larger than 3.9 KiB, the limit for one signal (it starts at byte 4)"
        )
    assert records(b"[1, " + big + b"]", limit=len(big)) == [b"1", big]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b'[{"a": 1}', "the JSON ends early at byte 9 (line 1)"),
        (b'[{"a": "1}]', "the JSON ends early at byte 11 (line 1)"),
        (b'[{"a": 1}\n {"b": 2}]', "the JSON is invalid at byte 11 (line 2): expected a comma"),
        (b'[{"a": 1},\n]', "the JSON is invalid at byte 11 (line 2): a comma right before ]"),
        (b'[{"a": 1}] x', "the JSON is invalid at byte 11 (line 1, after '[{\"a\": 1}]'): text"),
        (b"[1,,2]", "the JSON is invalid at byte 3 (line 1, after '[1,'): expected a signal"),
        (b'{"a": 1}', "the JSON is invalid at byte 0 (line 1): expected [ to open"),
    ],
)
def test_faults_of_the_structure_are_placed(data: bytes, message: str) -> None:
    for size in (1, 3, 1 << 20):
        assert refusal(data, size=size).startswith(message)


def test_a_broken_record_is_kept_whole_for_the_engine_to_report() -> None:
    data = b'[{"a": tru}, {"b": [1 2]}, {"c": "\\ud800"}, NaN, {"d": 1}]'
    assert records(data) == [
        b'{"a": tru}',
        b'{"b": [1 2]}',
        b'{"c": "\\ud800"}',
        b"NaN",
        b'{"d": 1}',
    ]


def test_the_rest_of_a_signals_document_is_skipped_without_keeping_it() -> None:
    rest = b'"x": "' + b"y" * 3_000_000 + b'"'
    data = b'{"signals": [{"a": 1}], ' + rest + b"}"
    assert records(data, mode=SIGNALS, limit=100) == [b'{"a": 1}']


def test_questions_about_the_first_line() -> None:
    assert first_value_layout(b'{"a": 1}') == WHOLE
    assert first_value_layout(b'{"a": tru}') == WHOLE  # complete, if broken
    assert first_value_layout(b'{"a": [' + b"[" * 5000 + b"]" * 5000 + b"]}") == WHOLE
    assert first_value_layout(b'{"signals": [') == OPENS
    assert first_value_layout(b'{"a": "x}') == OPENS
    assert first_key(b' {\n "signals" : [') == ("signals", 16)
    assert first_key(b'{"sign\\u0061ls": 1}') == ("signals", 17)
    assert first_key(b'{"a"') is None
    assert [value_kind(text) for text in (b"[", b"{", b'"', b"-1", b"true", b"null", b"x")] == [
        "an array",
        "an object",
        "a string",
        "a number",
        "a boolean",
        "null",
        "",
    ]
    assert not breaks_as_document(b'{"a": [1, 2', whole=False)  # only cut
    assert breaks_as_document(b'{"a": [1 2' + b", 3" * 40, whole=False)
    assert not breaks_as_document(b'{"a": [1 2', whole=False)  # a cut token, perhaps
    assert breaks_as_document(b'{"a": 1}\n{"b": 2}', whole=False)  # two documents
    assert not breaks_as_document(b'{"a": ' + b"[" * 5000, whole=False)
