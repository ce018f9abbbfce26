"""Counting an export's rows as its bytes arrive (exports_app.transfer): exactly as Python's
csv reader counts records, quotes and all, in pieces cut anywhere; gzip members, bombs,
damage and cut-short files named; the counting child fed through a pipe."""

from __future__ import annotations

import csv
import gzip
import io
import os
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exports_app.transfer import NotAnExport, PipedCounter, RecordCounter, count_records

HEADER = "SIGNAL_TYPE,SIGNAL_CONTENT,DESCRIPTION\r\n"


def csv_text(rows: list[list[str]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["SIGNAL_TYPE", "SIGNAL_CONTENT", "DESCRIPTION"])
    writer.writerows(rows)
    return out.getvalue()


def counted(data: bytes, cap: int = 10**9) -> int:
    return count_records(io.BytesIO(data).read, cap).rows


def test_quoted_newlines_and_escaped_quotes_do_not_end_a_row() -> None:
    text = csv_text(
        [
            ["order", '{"signalType":"order","note":"two\nlines"}', 'say ""hi""'],
            ["addToCart", "{}", "a\r\nb\n\nc"],
            ["pageView", '""', ""],
        ]
    )
    assert counted(gzip.compress(text.encode())) == 3


def test_a_last_row_without_its_newline_counts_and_a_header_alone_is_no_row() -> None:
    assert counted(gzip.compress(b"SIGNAL_TYPE\norder\naddToCart")) == 2
    assert counted(gzip.compress(HEADER.encode())) == 0


@settings(max_examples=150, deadline=None)
@given(
    rows=st.lists(
        st.lists(st.text(alphabet='ab,"\n\r x{}:', max_size=12), min_size=3, max_size=3),
        max_size=30,
    ),
    cut=st.integers(min_value=1, max_value=50),
)
def test_rows_are_counted_as_the_csv_reader_counts_them_in_any_pieces(
    rows: list[list[str]], cut: int
) -> None:
    text = csv_text(rows).encode()
    expected = sum(1 for _ in csv.reader(io.StringIO(text.decode(), newline=""))) - 1
    counter = RecordCounter()
    for at in range(0, len(text), cut):
        counter.feed(text[at : at + cut])
    assert counter.finish() - 1 == expected


def test_gzip_members_one_after_another_are_one_file() -> None:
    data = gzip.compress(b"SIGNAL_TYPE\norder\n") + gzip.compress(b"addToCart\npageView\n")
    assert counted(data) == 3


@pytest.mark.parametrize(
    ("data", "said"),
    [
        (b"SIGNAL_TYPE,SIGNAL_CONTENT\norder,{}\n", "not gzip data"),
        (b"", "the file is empty"),
        (gzip.compress(b"SIGNAL_TYPE\n" + os.urandom(20_000).hex().encode())[:-200], "cut short"),
        (gzip.compress(b"a,b\n")[:10] + b"\x00garbage" * 40, "damaged"),
        (gzip.compress(b""), "no CSV header"),
        (gzip.compress(b'SIGNAL_TYPE,X\norder,"never closed\n'), "quoted field never ends"),
    ],
)
def test_what_is_no_export_says_why(data: bytes, said: str) -> None:
    with pytest.raises(NotAnExport, match=said):
        counted(data)


def test_a_bomb_stops_at_the_cap_without_inflating_whole() -> None:
    bomb = zlib.compressobj(9, zlib.DEFLATED, 31)
    data = bomb.compress(b"SIGNAL_TYPE\n") + bomb.compress(b"\0" * 200_000_000) + bomb.flush()
    assert len(data) < 400_000
    with pytest.raises(NotAnExport, match=r"inflates past 0\.1 GB"):
        counted(data, cap=100_000_000)


def test_the_piped_child_counts_what_it_is_fed_and_says_why_it_stopped() -> None:
    text = csv_text([["order", '{"a":"b\nc"}', ""]] * 10_000).encode()
    counter = PipedCounter(10**9)
    data = gzip.compress(text)
    for at in range(0, len(data), 4096):
        counter.feed(data[at : at + 4096])
    assert counter.result().rows == 10_000

    refused = PipedCounter(10**9)
    for _ in range(200):  # the child stops reading at the first piece; writing then fails
        refused.feed(b"plain text, no gzip " * 50_000)
        if refused.broken:
            break
    assert refused.broken
    with pytest.raises(NotAnExport, match="not gzip"):
        refused.result()
