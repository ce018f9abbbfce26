"""A key written twice in one object (SPEC §5, `duplicate_key`): the file's bytes are sent
as written while the decoders keep only the last value, so the signal is rejected, at the
repeated key's path, in every format and at any depth (issue 12)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from signals_app.validation import duplicates as duplicates_module
from signals_app.validation.duplicates import find_duplicates
from signals_app.validation.fastpath import FastPath
from signals_app.validation.findings import Finding
from signals_app.validation.validate import Options, validate_file
from tests.conftest import require
from tests.test_cli import order, page_view, run_command

COMPILED = "the duplicate-key scanner signals_app/validation/_dupscan.c, built by `make`"


@pytest.fixture(params=["compiled", "python"])
def scanner(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each test that takes it runs with the C scanner, then without (no C compiler):
    both must find the same keys."""
    if request.param == "compiled":
        require(duplicates_module.scan_keys is not None, COMPILED)
    else:
        monkeypatch.setattr(duplicates_module, "scan_keys", None)
        monkeypatch.setattr(duplicates_module, "_warned", True)  # its own test below
    return str(request.param)


PAGE_VIEW = json.dumps(page_view(), separators=(",", ":"))


def with_twice(text: str, member: str, repeated: str) -> str:
    """`text` with `repeated` written right before its first `member` (same object)."""
    assert member in text
    return text.replace(member, repeated + "," + member, 1)


def judged(path: Path, *, workers: int = 1) -> tuple[list[Finding], int]:
    findings: list[Finding] = []
    summary = validate_file(path, Options(), findings.append, workers=workers, parallel_min_bytes=0)
    return findings, summary.rejected


def duplicates(findings: list[Finding]) -> list[tuple[int, str]]:
    return [(f.signal, f.path) for f in findings if f.code == "duplicate_key"]


# A clean signal each, but for the key written twice.
ENVELOPE_TWICE = with_twice(PAGE_VIEW, '"appKey":"app-key-1"', '"appKey":"someone-else"')
IDENTITY_TWICE = with_twice(PAGE_VIEW, '"contactKey"', '"contactKey":"AAUN-000000000"')
CONTENT_TWICE = with_twice(PAGE_VIEW, '"url"', '"url":"not a url"')
ESCAPED_TWICE = with_twice(PAGE_VIEW, '"url"', '"\\u0075rl":"https://other.example/"')
BLANK_BEFORE_COLON = with_twice(PAGE_VIEW, '"url"', '"url" \t :"https://other.example/"')
ITEM_TWICE = json.dumps(order(), separators=(",", ":")).replace(
    '"productId":"AC-1"', '"productId":"AC-1","productId":"AC-2"'
)
# `":` inside a string value: more pairs than keys, and no key written twice.
QUOTE_COLON_IN_VALUE = json.dumps(page_view() | {"sessionId": 'say "hi": twice ":'})

EXPECTED = [
    (0, "appKey"),
    (1, "identifiableAttributes.contactKey"),
    (2, "signalContent.url"),
    (3, "signalContent.url"),
    (4, "signalContent.url"),
    (5, "signalContent.orderedItems[0].productId"),
]
RECORDS = [
    ENVELOPE_TWICE,
    IDENTITY_TWICE,
    CONTENT_TWICE,
    ESCAPED_TWICE,
    BLANK_BEFORE_COLON,
    ITEM_TWICE,
    QUOTE_COLON_IN_VALUE,
    PAGE_VIEW,
]


def test_the_records_are_clean_but_for_the_key_written_twice() -> None:
    for text in RECORDS:
        assert len(find_duplicates(text)) == (text not in (QUOTE_COLON_IN_VALUE, PAGE_VIEW))
    # The decoders keep the last value without a word: why the text must be looked at.
    assert json.loads(CONTENT_TWICE)["signalContent"]["url"] == page_view()["signalContent"]["url"]


@pytest.mark.parametrize("workers", [1, 2])
def test_ndjson_rejects_a_signal_with_a_key_written_twice_at_any_depth(
    tmp_path: Path, workers: int, scanner: str
) -> None:
    path = tmp_path / "signals.ndjson"
    path.write_text("\n".join(RECORDS) + "\n")
    findings, rejected = judged(path, workers=workers)
    assert duplicates(findings) == EXPECTED
    assert rejected == len(EXPECTED)
    assert [f.line for f in findings] == [1, 2, 3, 4, 5, 6]
    assert {f.severity for f in findings} == {"error"}


def test_the_message_names_the_key_and_its_object(tmp_path: Path) -> None:
    path = tmp_path / "signals.ndjson"
    path.write_text(ITEM_TWICE + "\n" + ENVELOPE_TWICE + "\n")
    findings, _ = judged(path)
    assert findings[0].message.startswith(
        "productId is written twice in orderedItems[0]: the file is sent as written and "
        "Connect may take either value, so keep only one"
    )
    assert findings[1].message.startswith("appKey is written twice in the signal:")


@pytest.mark.parametrize("workers", [1, 2])
def test_a_json_array_rejects_it_too(tmp_path: Path, workers: int, scanner: str) -> None:
    path = tmp_path / "signals.json"
    path.write_text("[\n" + ",\n".join(RECORDS) + "\n]\n")  # one per line: parts may split it
    findings, rejected = judged(path, workers=workers)
    assert duplicates(findings) == EXPECTED
    assert rejected == len(EXPECTED)


def test_a_pretty_printed_document_and_three_times_the_same_key(
    tmp_path: Path, scanner: str
) -> None:
    text = json.dumps(json.loads(PAGE_VIEW), indent=2)
    text = text.replace('"url"', '"url": "a",\n    "url" : "b",\n    "url"', 1)
    path = tmp_path / "signals.json"
    path.write_text("[" + text + "]")
    findings, rejected = judged(path)
    assert duplicates(findings) == [(0, "signalContent.url")]
    assert "url is written 3 times in signalContent" in findings[0].message
    assert rejected == 1


def test_a_record_that_only_the_standard_library_reads(tmp_path: Path, scanner: str) -> None:
    # An integer past 64 bits: orjson neither reads nor writes it, the counts still agree.
    big = with_twice(PAGE_VIEW, '"appKey"', '"sessionId":123456789012345678901234567890')
    big = with_twice(big, '"appKey"', '"sessionId":"SESS-1"')
    path = tmp_path / "signals.ndjson"
    path.write_text(big + "\n" + big.replace(',"sessionId":"SESS-1"', "") + "\n")
    findings, rejected = judged(path)
    assert duplicates(findings) == [(0, "sessionId")]
    assert rejected == 1


def test_the_vendors_wrapper_gives_paths_in_the_envelope(tmp_path: Path, scanner: str) -> None:
    wrapped = '{"signal":' + CONTENT_TWICE + "}"
    signal_twice = '{"signal":' + PAGE_VIEW + ',"signal":' + PAGE_VIEW + "}"
    path = tmp_path / "signals.ndjson"
    path.write_text(wrapped + "\n" + signal_twice + "\n" + '{"signal":' + PAGE_VIEW + "}\n")
    findings, rejected = judged(path)
    assert duplicates(findings) == [(0, "signalContent.url"), (1, "signal")]
    assert "in the record, around the signal" in findings[1].message
    assert rejected == 2


def test_the_fast_path_never_calls_such_a_signal_clean(scanner: str) -> None:
    fast = FastPath(tier="ultimate", default_app_key=None)
    # The generated checks call the scanner, or count keys without it.
    for check in fast._checks.values():
        assert check.__globals__["scan"] is duplicates_module.scan_keys
    assert fast.check_json(PAGE_VIEW.encode()) is not None
    # More `":` than keys: without the scanner, not sure, so the engine judges it (and
    # finds no key twice); the scanner knows a string value when it sees one.
    verdict = fast.check_json(QUOTE_COLON_IN_VALUE.encode())
    assert (verdict is None) == (scanner == "python")
    for text in RECORDS[:6]:
        assert fast.check_json(text.encode()) is None, text
        assert fast.json_classifier()(text.encode()) == 0


CSV_HEADER = [
    "appKey",
    "identifiableAttributes.email",
    "signalContent.signalType",
    "signalContent.url",
    "signalContent.url",
]


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    out = io.StringIO()
    csv.writer(out).writerows([header, *rows])
    path.write_text(out.getvalue())
    return path


@pytest.mark.parametrize("workers", [1, 2])
def test_a_csv_column_twice_is_a_finding_where_a_row_fills_both(
    tmp_path: Path, workers: int
) -> None:
    row = ["app-key-1", "jane.doe@example.com", "pageView"]
    path = write_csv(
        tmp_path / "signals.csv",
        CSV_HEADER,
        [
            [*row, "https://a.example/", "https://b.example/"],
            [*row, "https://a.example/", ""],
            [*row, "", "https://b.example/"],
        ],
    )
    findings, rejected = judged(path, workers=workers)
    assert duplicates(findings) == [(0, "signalContent.url")]
    assert findings[0].line == 2
    assert "the header has 2 columns named signalContent.url" in findings[0].message
    assert "(columns D, E)" in findings[0].message
    assert rejected == 1


def test_a_csv_cell_of_json_with_a_key_twice(tmp_path: Path, scanner: str) -> None:
    items = '[{"productId":"AC-1","productName":"Brush","unitPrice":9.49,"productId":"AC-2"}]'
    attributes = '[{"name":"a","value":"b"}]'
    header = [
        "appKey",
        "identifiableAttributes.email",
        "signalContent.signalType",
        "signalContent.currency",
        "signalContent.orderId",
        "signalContent.orderedItems",
        "signalContent.signalCustomAttributes",
    ]
    row = ["app-key-1", "jane.doe@example.com", "order", "USD", "o-1"]
    path = write_csv(
        tmp_path / "signals.csv",
        header,
        [
            [*row, items, attributes],
            [
                *row,
                items.replace("AC-2", "x").replace(',"productId":"x"', ""),
                '[{"name":"a","value":"x\\":y"}]',
            ],
        ],
    )
    findings, rejected = judged(path)
    assert duplicates(findings) == [(0, "signalContent.orderedItems[0].productId")]
    assert "(column signalContent.orderedItems)" in findings[0].message
    assert rejected == 1


def test_an_export_csv_signal_content_with_a_key_twice(tmp_path: Path, scanner: str) -> None:
    content = json.dumps(page_view()["signalContent"]).replace('"url"', '"url": "x", "url"')
    path = write_csv(
        tmp_path / "export.csv",
        ["ACOUSTIC_APP_KEY", "SIGNAL_CONTENT", "EMAIL"],
        [["app-key-1", content, "jane.doe@example.com"]],
    )
    findings, rejected = judged(path)
    assert duplicates(findings) == [(0, "signalContent.url")]
    assert "(column SIGNAL_CONTENT)" in findings[0].message
    assert rejected == 1


def test_validate_signals_reports_it(tmp_path: Path) -> None:
    path = tmp_path / "signals.ndjson"
    path.write_text(PAGE_VIEW + "\n" + CONTENT_TWICE + "\n")
    code, out, _ = run_command(str(path), "--report", "ndjson")
    lines: list[dict[str, Any]] = [json.loads(line) for line in out.splitlines()]
    assert code == 1
    assert {k: lines[0][k] for k in ("signal", "line", "path", "severity", "code")} == {
        "signal": 1,
        "line": 2,
        "path": "signalContent.url",
        "severity": "error",
        "code": "duplicate_key",
    }
    assert lines[-1]["summary"]["rejected"] == 1
    code, out, _ = run_command(str(path), "--report", "text")
    assert "signalContent.url: duplicate_key error, 1 time" in out


# --- The C scanner (_dupscan.c) against the exact check in Python --------------------------


def test_the_compiled_scanner_is_built() -> None:
    """The fast path must never be lost without a word: in CI (CI=true) a missing scanner
    fails the run; elsewhere the test is skipped loudly (the validator then warns)."""
    require(duplicates_module.scan_keys is not None, COMPILED)
    assert duplicates_module.key_scanner() is duplicates_module.scan_keys


def test_without_the_scanner_the_validator_warns_once_and_stays_exact(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(duplicates_module, "scan_keys", None)
    monkeypatch.setattr(duplicates_module, "_warned", False)
    with caplog.at_level("WARNING", logger="signals_app.validation.duplicates"):
        FastPath(tier="ultimate", default_app_key=None)
        fast = FastPath(tier="ultimate", default_app_key=None)
    assert [r.getMessage() for r in caplog.records if "_dupscan.c is not built" in r.message]
    assert len(caplog.records) == 1
    assert fast.check_json(PAGE_VIEW.encode()) is not None
    assert all(fast.check_json(text.encode()) is None for text in RECORDS[:6])


def reference_repeats(text: str) -> int:
    """Keys written more than once, counted once per object (the standard library's
    parser, which hands each object's pairs over as written)."""
    repeats = 0

    def pairs(members: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal repeats
        keys = [key for key, _ in members]
        repeats += sum(1 for key in set(keys) if keys.count(key) > 1)
        return dict(members)

    json.loads(text, object_pairs_hook=pairs)
    return repeats


# Keys that repeat often, are prefixes of one another, hold what a scanner must step over
# (a quote, a backslash, a colon, a brace), or are one string written in several ways.
KEYS = ["a", "ab", "abc", "b", "", " ", "a:", '"', '":', "\\", "a\\", "{", "}]", "é", "😀"]
KEYS += ["\x00", "\x1f", "\u2028", "\ud800"]
FEW_KEYS = st.sampled_from(["a", "b", "ab"])  # a child's key, then its parent's
BLANKS = st.sampled_from(["", "", "", " ", "\t", "\n", "\r\n", " \t "])
SCALARS = st.sampled_from(
    [
        *["0", "-1.5e3", "true", "false", "null", '""', '"x"', '":"', '"\\":"', '"\\\\"'],
        *['"{\\"a\\":1,\\"a\\":2}"', '"[}{]"', '"a\\\\\\""', '"\\u0022:"', '" :"'],
    ]
) | st.text(max_size=8).map(lambda value: json.dumps(value, ensure_ascii=False))


def written(key: str, style: int) -> str:
    """`key` as a JSON string: as is, with non-ASCII escaped, or every character escaped."""
    if style == 0 and not any("\ud800" <= c <= "\udfff" for c in key):
        return json.dumps(key, ensure_ascii=False)
    if style <= 1:
        return json.dumps(key)
    units = key.encode("utf-16-le", "surrogatepass")
    codes = [int.from_bytes(units[i : i + 2], "little") for i in range(0, len(units), 2)]
    return '"' + "".join(f"\\u{code:04x}" for code in codes) + '"'


@st.composite
def arrays(draw: st.DrawFn, texts: st.SearchStrategy[str]) -> str:
    items = draw(st.lists(texts, max_size=4))
    inside = ",".join(draw(BLANKS) + item + draw(BLANKS) for item in items)
    return "[" + (inside or draw(BLANKS)) + "]"


@st.composite
def objects(draw: st.DrawFn, texts: st.SearchStrategy[str]) -> str:
    keys = draw(  # half of the objects hold distinct strings (perhaps one key, escaped)
        st.lists(
            FEW_KEYS | st.sampled_from(KEYS) | st.text(max_size=3),
            max_size=6,
            unique=draw(st.booleans()),
        )
    )
    members = [
        draw(BLANKS)
        + written(key, draw(st.sampled_from([0, 0, 0, 1, 2])))
        + draw(BLANKS)
        + ":"
        + draw(BLANKS)
        + draw(texts)
        + draw(BLANKS)
        for key in keys
    ]
    return "{" + (",".join(members) or draw(BLANKS)) + "}"


texts = st.recursive(SCALARS, lambda children: objects(children) | arrays(children), max_leaves=16)
json_texts = st.tuples(BLANKS, objects(texts) | arrays(texts) | texts, BLANKS).map("".join)


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(json_texts)
def test_the_scanner_agrees_with_the_exact_check(text: str) -> None:
    scan = duplicates_module.scan_keys
    require(scan is not None, COMPILED)
    assert scan is not None
    repeats = reference_repeats(text)
    event(f"repeats: {min(repeats, 2)}")
    data = text.encode()
    found = scan(data)
    assert found in (-1, 0, 1)
    if found >= 0:
        assert found == (repeats > 0)
    if "\\" not in text:  # no key with an escape, few keys, little depth: it knows
        assert found == (repeats > 0)
    assert scan(text) == found == scan(bytearray(data)) == scan(memoryview(data))
    # The exact check names every key written twice, once per object.
    assert len(find_duplicates(text)) == len(find_duplicates(data)) == repeats
    # And the findings are the same with the scanner and without.
    value = json.loads(text)
    with_scanner = duplicates_module.duplicate_issues(data, value)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(duplicates_module, "scan_keys", None)
        assert duplicates_module.duplicate_issues(data, value) == with_scanner
    assert len(with_scanner) == repeats


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(json_texts, st.data())
def test_the_scanner_reads_no_further_than_a_broken_text(text: str, data: st.DataObject) -> None:
    """Any bytes at all (a cut, a byte changed, NUL, invalid UTF-8): an answer, no crash."""
    scan = duplicates_module.scan_keys
    require(scan is not None, COMPILED)
    assert scan is not None
    raw = text.encode()
    cut = data.draw(st.integers(0, len(raw)))
    where = data.draw(st.integers(0, cut))
    byte = data.draw(st.sampled_from([b"\\", b'"', b"\x00", b"\xff", b"{", b"]", b":"]))
    for broken in (raw[:cut], raw[:where] + byte + raw[where:cut], data.draw(st.binary())):
        assert scan(broken) in (-1, 0, 1)
        # Exactly the bytes asked about: the same answer from a slice of a larger buffer.
        assert scan(memoryview(b"{" + broken + b'"a":')[1 : 1 + len(broken)]) == scan(broken)


def test_the_scanner_on_texts_past_its_limits() -> None:
    scan = duplicates_module.scan_keys
    require(scan is not None, COMPILED)
    assert scan is not None
    many = {f"k{i}": i for i in range(10_000)}
    many_text = json.dumps(many).encode()
    assert scan(many_text) == -1  # more keys than it compares: the counts decide
    assert duplicates_module.duplicate_issues(many_text, many) == []
    twice = many_text[:-1] + b', "k0": 1}'
    assert scan(twice) == -1
    assert [i.path for i in duplicates_module.duplicate_issues(twice, json.loads(twice))] == ["k0"]
    assert scan(json.dumps({f"k{i}": i for i in range(64)}).encode()) == 0
    assert scan(b'{"a":1,' + b'"b":[' * 100_000 + b"]" * 100_000 + b',"a":2}') == -1
    assert scan(b"[" * 100_000) == -1
    assert scan(b'{"a":[' * 128 + b"1" + b"]}" * 128) == 0  # 256 levels: still sure
    assert scan(b'{"a":[' * 128 + b"{}" + b"]}" * 128) == -1
    for text in (b"", b'"', b'"\\', b'"abc\\"', b"}", b"]]]", b'{"a\x00":1,"a\x00":2}', b"\xff"):
        assert scan(text) in (-1, 0, 1)
    assert scan(b'{"a\x00":1,"a\x00":2}') == 1
    assert scan(b'{"a\x00":1,"a":2}') == 0
    assert scan(b'{"a":1,"\\u0061":2}') == -1  # the same key, written with an escape
    assert scan('{"\ud800":1}') == -1  # not UTF-8: Python reads it
    assert scan('{"é":1,"é":2}') == scan('{"é":1,"é":2}'.encode()) == 1
    with pytest.raises(TypeError):
        scan(1)  # type: ignore[arg-type]
