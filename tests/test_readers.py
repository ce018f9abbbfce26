"""Readers of import files (SPEC §5): format detection, streaming, CSV typing and the
messages of files that cannot be read."""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path
from typing import Any

import pytest

from signals_app.validation.readers import (
    Record,
    SignalFile,
    UnreadableFile,
    open_signal_file,
)

ENVELOPE: dict[str, Any] = {
    "appKey": "app-1",
    "identifiableAttributes": {"email": "jane@example.com"},
    "signalContent": {"signalType": "pageView", "url": "https://shop.example/"},
}
OTHER: dict[str, Any] = {
    "appKey": "app-1",
    "identifiableAttributes": {"sms": "+13115552368"},
    "signalContent": {"signalType": "order", "currency": "USD", "orderId": "o-1"},
}


def write(tmp_path: Path, data: bytes, *, gz: bool = False, name: str = "signals") -> Path:
    path = tmp_path / (name + (".gz" if gz else ""))
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def read_all(path: Path, **limits: Any) -> tuple[SignalFile, list[Record]]:
    with open_signal_file(path, **limits) as signal_file:
        return signal_file, list(signal_file)


def values(path: Path) -> list[Any]:
    """The records as Python objects (JSON records come as their text)."""
    return [parsed(record) for record in read_all(path)[1]]


def parsed(record: Record) -> Any:
    return record.value if record.raw is None else json.loads(record.raw)


def refusal(path: Path, **limits: int) -> str:
    with pytest.raises(UnreadableFile) as caught:
        read_all(path, **limits)
    return str(caught.value)


# --- JSON ----------------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True])
def test_it_streams_a_json_array_of_envelopes_wrappers_and_anything_else(
    tmp_path: Path, gz: bool
) -> None:
    data = json.dumps([ENVELOPE, {"signal": OTHER}, 42, "text"], indent=2).encode()
    signal_file, records = read_all(write(tmp_path, data, gz=gz))
    assert (signal_file.format, signal_file.compressed) == ("json-array", gz)
    # Each record is its text as written, like an NDJSON line (no line number).
    expected = [ENVELOPE, {"signal": OTHER}, 42, "text"]
    assert [(r.index, r.line, r.value) for r in records] == [(i, None, None) for i in range(4)]
    assert [json.loads(r.raw or b"") for r in records] == expected
    assert records[0].raw == json.dumps(ENVELOPE, indent=2).replace("\n", "\n  ").encode()


def test_it_reads_json_numbers_as_int_and_float(tmp_path: Path) -> None:
    path = write(tmp_path, b'[{"a": 2, "b": 2.5, "c": -1e3}]')
    assert values(path) == [{"a": 2, "b": 2.5, "c": -1000.0}]
    assert isinstance(values(path)[0]["b"], float)


def test_it_reads_an_empty_json_array_as_no_records(tmp_path: Path) -> None:
    signal_file, records = read_all(write(tmp_path, b"[]"))
    assert signal_file.format == "json-array"
    assert records == []


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("indent", [None, 2])
def test_it_streams_the_signals_key_of_an_object(
    tmp_path: Path, gz: bool, indent: int | None
) -> None:
    data = json.dumps({"signals": [ENVELOPE, OTHER], "note": "ignored"}, indent=indent)
    signal_file, records = read_all(write(tmp_path, data.encode(), gz=gz))
    assert signal_file.format == "json-signals"
    assert [parsed(record) for record in records] == [ENVELOPE, OTHER]


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("record", [ENVELOPE, {"signal": ENVELOPE}])
def test_it_reads_one_pretty_printed_envelope_or_wrapper(
    tmp_path: Path, gz: bool, record: dict[str, Any]
) -> None:
    signal_file, records = read_all(write(tmp_path, json.dumps(record, indent=4).encode(), gz=gz))
    assert signal_file.format == "json-single"
    assert [parsed(r) for r in records] == [record]
    assert records[0].raw == json.dumps(record, indent=4).encode()


def test_it_tells_formats_from_content_not_from_the_file_name(tmp_path: Path) -> None:
    path = write(tmp_path, json.dumps([ENVELOPE]).encode(), name="signals.csv")
    assert read_all(path)[0].format == "json-array"


def test_it_skips_a_utf8_bom_before_json(tmp_path: Path) -> None:
    path = write(tmp_path, b"\xef\xbb\xbf" + json.dumps([ENVELOPE]).encode())
    assert values(path) == [ENVELOPE]


# --- NDJSON --------------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True])
def test_it_yields_ndjson_lines_raw_with_their_line_numbers(tmp_path: Path, gz: bool) -> None:
    lines = [json.dumps(ENVELOPE).encode(), json.dumps({"signal": OTHER}).encode()]
    data = b"\xef\xbb\xbf" + lines[0] + b"\r\n\r\n   \r\n" + lines[1] + b"\r\n\n"
    signal_file, records = read_all(write(tmp_path, data, gz=gz))
    assert signal_file.format == "ndjson"
    assert records == [Record(0, 1, lines[0], None), Record(1, 4, lines[1], None)]


def test_it_reads_ndjson_after_leading_blank_lines_and_without_a_final_newline(
    tmp_path: Path,
) -> None:
    data = b"\n\n" + json.dumps(ENVELOPE).encode() + b"\n{}"
    assert [(r.index, r.line, r.raw) for r in read_all(write(tmp_path, data))[1]] == [
        (0, 3, json.dumps(ENVELOPE).encode()),
        (1, 4, b"{}"),
    ]


def test_it_keeps_a_broken_ndjson_line_for_the_engine(tmp_path: Path) -> None:
    # A broken first record must not turn the file into one unreadable JSON document.
    data = b'{"appKey": "a", oops\n' + json.dumps(ENVELOPE).encode() + b"\n"
    signal_file, records = read_all(write(tmp_path, data))
    assert signal_file.format == "ndjson"
    assert [record.raw for record in records] == [b'{"appKey": "a", oops', data.split(b"\n")[1]]


def test_broken_first_lines_followed_by_objects_are_ndjson(tmp_path: Path) -> None:
    line = json.dumps(ENVELOPE).encode()
    data = b'{"appKey": "a", oops\n{"appKey": }\n' + line + b"\n"
    signal_file, records = read_all(write(tmp_path, data))
    assert signal_file.format == "ndjson"
    assert len(records) == 3


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize(
    "first",
    [
        b'{"appKey": "a", "signalContent": {"signalType": "order"',
        b'{"appKey": "a",',
        b'{"appKey": "app-',  # inside a string
        b'{"appKey":',
    ],
)
def test_a_first_line_cut_short_without_a_syntax_error_still_starts_ndjson(
    tmp_path: Path, gz: bool, first: bytes
) -> None:
    # On its own the first line only opens a document; with the whole objects after it,
    # the lines break as one document: NDJSON, the first record a syntax finding.
    line = json.dumps(ENVELOPE).encode()
    data = first + b"\n" + line + b"\n" + line + b"\n"
    signal_file, records = read_all(write(tmp_path, data, gz=gz))
    assert signal_file.format == "ndjson"
    assert [record.raw for record in records] == [first, line, line]


@pytest.mark.parametrize("gz", [False, True])
def test_documents_whose_first_line_opens_them_stay_documents(tmp_path: Path, gz: bool) -> None:
    line = json.dumps(ENVELOPE).encode()
    wrapper = b'{"signal":\n' + line + b"\n}\n"
    signal_file, records = read_all(write(tmp_path, wrapper, gz=gz, name="wrapper"))
    assert signal_file.format == "json-single"
    assert [parsed(record) for record in records] == [{"signal": ENVELOPE}]
    # Truncated or broken, they are refused where they end or break, not read as NDJSON.
    assert refusal(write(tmp_path, wrapper[:-2], gz=gz, name="cut")).startswith(
        "the JSON ends early"
    )
    no_comma = b'{"signals": [\n' + line + b",\n" + line + b"\n" + line + b"\n]}\n"
    assert refusal(write(tmp_path, no_comma, gz=gz, name="no-comma")).startswith(
        "the JSON is invalid at byte"
    )


def test_a_whole_first_object_that_orjson_refuses_starts_ndjson(tmp_path: Path) -> None:
    # A lone surrogate escape (no character; the engine refuses the record) on line 1.
    data = b'{"appKey": "\\ud800"}\n{"appKey": "\\udfff"}\n' + json.dumps(ENVELOPE).encode()
    signal_file, records = read_all(write(tmp_path, data))
    assert signal_file.format == "ndjson"
    assert len(records) == 3


def test_a_signals_document_with_one_signal_per_line_is_not_ndjson(tmp_path: Path) -> None:
    # Its second line is a whole object: the first line, which opens a document, decides.
    line = json.dumps(ENVELOPE).encode()
    data = b'{"signals": [\n' + line + b",\n" + line + b"\n]}\n"
    signal_file, records = read_all(write(tmp_path, data))
    assert signal_file.format == "json-signals"
    assert [parsed(record) for record in records] == [ENVELOPE, ENVELOPE]
    single = b'{"signals": [\n' + line + b"\n]}\n"
    assert read_all(write(tmp_path, single, name="one"))[0].format == "json-signals"


def test_it_reads_a_single_compact_envelope_as_one_ndjson_line(tmp_path: Path) -> None:
    signal_file, records = read_all(write(tmp_path, json.dumps(ENVELOPE).encode()))
    assert signal_file.format == "ndjson"
    assert records == [Record(0, 1, json.dumps(ENVELOPE).encode(), None)]


def test_it_refuses_an_ndjson_line_over_the_record_limit(tmp_path: Path) -> None:
    data = b'{"a": 1}\n{"a": "' + b"x" * 200 + b'"}\n'
    assert refusal(write(tmp_path, data), max_record_bytes=100) == (
        "line 2 is longer than 100 bytes, the limit for one signal"
    )


# --- CSV -----------------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True])
def test_it_builds_envelopes_from_csv_columns(tmp_path: Path, gz: bool) -> None:
    data = (
        b"appKey,sessionId,test,identifiableAttributes.email,signalContent.signalType,"
        b"signalContent.url,signalContent.currency,signalContent.orderId\n"
        b"app-1,,,jane@example.com,pageView,https://shop.example/,,\n"
        b"app-1,s-9,false,,order,,USD,o-1\n"
    )
    signal_file, records = read_all(write(tmp_path, data, gz=gz))
    assert signal_file.format == "csv"
    assert records == [
        Record(0, 2, None, ENVELOPE),
        Record(
            1,
            3,
            None,
            {
                "appKey": "app-1",
                "sessionId": "s-9",
                "test": False,
                "signalContent": {"signalType": "order", "currency": "USD", "orderId": "o-1"},
            },
        ),
    ]


def test_it_reads_a_spreadsheet_csv_with_bom_crlf_and_quoted_cells(tmp_path: Path) -> None:
    data = (
        "\ufeffappKey,signalContent.signalType,signalContent.errorText,signalContent.errorType\r\n"
        'app-1,error,"Line one\r\nsaid ""no"", then line two",user\r\n'
        "app-1,error,plain,application\r\n"
    ).encode()
    records = read_all(write(tmp_path, data))[1]
    assert [(record.line, record.value["signalContent"]["errorText"]) for record in records] == [
        (2, 'Line one\r\nsaid "no", then line two'),
        (4, "plain"),
    ]
    assert records[0].value["appKey"] == "app-1"  # the BOM is not part of the first column


def test_it_numbers_csv_lines_past_multi_line_cells_and_blank_rows(tmp_path: Path) -> None:
    data = b'\nappKey,signalContent.description\na,"one\ntwo\nthree"\n,\n\nb,four\n'
    records = read_all(write(tmp_path, data))[1]
    assert [(record.index, record.line, record.value["appKey"]) for record in records] == [
        (0, 3, "a"),
        (1, 8, "b"),
    ]


def test_it_types_csv_cells_by_the_kind_of_their_field(tmp_path: Path) -> None:
    columns = {
        "test": "YES",
        "signalContent.unitPrice": "12.50",
        "signalContent.orderValue": "-3",
        "signalContent.discount": "1e2",
        "signalContent.itemQuantity": "2",
        "signalContent.numberOfResults": "2.5",
        "signalContent.inventoryQuantity": " 7 ",
        "signalContent.identificationFromLogin": "0",
        "signalContent.tags": '["a", "b"]',
        "signalContent.orderedItems": '[{"productId": "p", "unitPrice": 1}]',
        "signalContent.signalCustomAttributes": '[{"name": "n", "value": "v"}]',
        "signalContent.productId": "00123",
        "signalContent.currency": "usd",
        "signalContent.signalTimestamp": "2025-08-31T08:29:30.001Z",
    }
    content = values(write(tmp_path, csv_text(columns)))[0]
    assert content == {
        "test": True,
        "signalContent": {
            "unitPrice": 12.5,
            "orderValue": -3,
            "discount": 100.0,
            "itemQuantity": 2,
            "numberOfResults": 2.5,
            "inventoryQuantity": 7,
            "identificationFromLogin": False,
            "tags": ["a", "b"],
            "orderedItems": [{"productId": "p", "unitPrice": 1}],
            "signalCustomAttributes": [{"name": "n", "value": "v"}],
            "productId": "00123",
            "currency": "usd",
            "signalTimestamp": "2025-08-31T08:29:30.001Z",
        },
    }
    assert isinstance(content["signalContent"]["orderValue"], int)
    assert isinstance(content["signalContent"]["discount"], float)


@pytest.mark.parametrize(
    ("column", "cell"),
    [
        ("signalContent.unitPrice", "twelve"),
        ("signalContent.unitPrice", "nan"),
        ("signalContent.unitPrice", "inf"),
        ("signalContent.unitPrice", "1_000"),
        ("signalContent.itemQuantity", "-Infinity"),
        ("signalContent.itemQuantity", "2 pcs"),
        ("test", "maybe"),
        ("signalContent.identificationFromLogin", "y"),
        ("signalContent.tags", "a, b"),
        ("signalContent.orderedItems", "[{broken"),
        ("signalContent.signalCustomAttributes", "name=value"),
    ],
)
def test_it_keeps_the_text_of_a_csv_cell_that_does_not_convert(
    tmp_path: Path, column: str, cell: str
) -> None:
    value = values(write(tmp_path, csv_text({column: cell})))[0]
    if column == "test":
        assert value["test"] == cell
    else:
        assert value["signalContent"][column.removeprefix("signalContent.")] == cell


@pytest.mark.parametrize("cell", ["true", "TRUE", "True", " yes ", "1", "tRuE"])
def test_it_reads_the_usual_spellings_of_true(tmp_path: Path, cell: str) -> None:
    assert values(write(tmp_path, csv_text({"test": cell})))[0] == {"test": True}


def test_it_keeps_unknown_csv_columns_as_text(tmp_path: Path) -> None:
    data = csv_text({"appKey": "a", "signalContent.colour": "12", "notes": "call back"})
    assert values(write(tmp_path, data)) == [
        {"appKey": "a", "notes": "call back", "signalContent": {"colour": "12"}}
    ]


def test_it_fills_short_csv_rows_and_ignores_cells_past_the_header(tmp_path: Path) -> None:
    data = b"appKey,sessionId,signalContent.url,\na\nb,s,u,ignored,ignored too\n"
    assert values(write(tmp_path, data)) == [
        {"appKey": "a"},
        {"appKey": "b", "sessionId": "s", "signalContent": {"url": "u"}},
    ]


def test_it_leaves_out_empty_csv_groups_so_the_engine_reports_them(tmp_path: Path) -> None:
    data = b"appKey,identifiableAttributes.email,signalContent.url\na,,\n"
    assert values(write(tmp_path, data)) == [{"appKey": "a"}]


@pytest.mark.parametrize("delimiter", [";", "\t"])
def test_it_reads_csv_saved_with_semicolons_or_tabs(tmp_path: Path, delimiter: str) -> None:
    data = f"appKey{delimiter}signalContent.unitPrice\na{delimiter}1.5\n".encode()
    assert values(write(tmp_path, data)) == [{"appKey": "a", "signalContent": {"unitPrice": 1.5}}]


@pytest.mark.parametrize("rows", [b"", b",\r\n,\r\n"])
def test_it_refuses_a_csv_with_a_header_and_no_rows_like_an_empty_file(
    tmp_path: Path, rows: bytes
) -> None:
    path = write(tmp_path, b"appKey,signalContent.url\r\n" + rows)
    with open_signal_file(path) as signal_file:
        assert signal_file.format == "csv"
    assert refusal(path) == "the CSV has its header row but no signals in the rows after it"


def csv_text(columns: dict[str, str]) -> bytes:
    names = ",".join(columns)
    cells = ",".join('"' + cell.replace('"', '""') + '"' for cell in columns.values())
    return f"{names}\n{cells}\n".encode()


# --- export CSV ----------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True])
def test_it_maps_an_export_csv_to_envelopes(tmp_path: Path, gz: bool) -> None:
    content = json.dumps({"signalType": "order", "currency": "USD", "orderId": "o-1"})
    data = (
        "DATASET_ID,ACOUSTIC_APP_KEY,TLTSID,SIGNAL_TYPE,SIGNAL_CONTENT,EMAIL,Phone Number\n"
        f'd-1,app-1,5f0c,order,"{content.replace(chr(34), chr(34) * 2)}",jane@example.com,'
        "+13115552368\n"
    ).encode()
    signal_file, records = read_all(write(tmp_path, data, gz=gz))
    assert signal_file.format == "export-csv"
    assert records == [
        Record(
            0,
            2,
            None,
            {
                "appKey": "app-1",
                "identifiableAttributes": {"email": "jane@example.com", "sms": "+13115552368"},
                "sessionId": "5f0c",
                "signalContent": json.loads(content),
            },
        )
    ]


@pytest.mark.parametrize(
    ("column", "key"),
    [
        ("email", "email"),
        ("SMS", "sms"),
        ("phone", "sms"),
        ("PHONE_NUMBER", "sms"),
        ("WhatsApp", "whatsapp"),
        ("CONTACT_KEY", "contactKey"),
        ("ContactKey", "contactKey"),
        ("Contact key", "contactKey"),
    ],
)
def test_it_maps_export_identity_columns_case_insensitively(
    tmp_path: Path, column: str, key: str
) -> None:
    data = f'signal_content,{column}\n"{{}}",x-1\n'.encode()
    assert values(write(tmp_path, data)) == [
        {"identifiableAttributes": {key: "x-1"}, "signalContent": {}}
    ]


def test_it_leaves_out_identity_when_an_export_row_has_none(tmp_path: Path) -> None:
    data = b'ACOUSTIC_APP_KEY,SIGNAL_CONTENT,EMAIL,CONTACT_KEY\napp-1,"{""url"": ""u""}",,\n'
    assert values(write(tmp_path, data)) == [{"appKey": "app-1", "signalContent": {"url": "u"}}]


def test_it_takes_the_signal_type_column_when_export_content_lacks_one(tmp_path: Path) -> None:
    data = (
        b"SIGNAL_TYPE,SIGNAL_CONTENT\n"
        b'pageView,"{""url"": ""u""}"\n'
        b'order,"{""signalType"": ""x""}"\n'
    )
    assert values(write(tmp_path, data)) == [
        {"signalContent": {"url": "u", "signalType": "pageView"}},
        {"signalContent": {"signalType": "x"}},
    ]


def test_it_keeps_export_content_that_is_not_json_as_text(tmp_path: Path) -> None:
    data = b"SIGNAL_CONTENT,EMAIL\nnot json,a@example.com\n"
    assert values(write(tmp_path, data)) == [
        {"identifiableAttributes": {"email": "a@example.com"}, "signalContent": "not json"}
    ]


# --- files that cannot be read -------------------------------------------------------------


def test_it_refuses_an_empty_file(tmp_path: Path) -> None:
    assert refusal(write(tmp_path, b"")) == "the file is empty"


def test_it_refuses_an_empty_gzip(tmp_path: Path) -> None:
    assert refusal(write(tmp_path, b"", gz=True)) == "the file holds no data once decompressed"


def test_it_refuses_a_file_of_blank_space(tmp_path: Path) -> None:
    assert refusal(write(tmp_path, b" \r\n\t\n")) == "the file is empty (it holds only blank space)"


def test_it_refuses_binary_garbage(tmp_path: Path) -> None:
    assert refusal(write(tmp_path, b"\x89PNG\r\n\x1a\n\x00\x00")) == (
        "the file is binary, not text (a NUL byte at byte 8)"
    )


def test_it_refuses_text_that_is_not_utf8(tmp_path: Path) -> None:
    data = "appKey,signalContent.searchTerm\nk,café\n".encode("cp1252")
    assert refusal(write(tmp_path, data)) == (
        f"the file is not UTF-8 text (byte 0xe9 at byte {data.index(0xE9)}, line 2); "
        "save it as UTF-8"
    )


def test_it_refuses_a_csv_line_that_is_not_utf8_further_on(tmp_path: Path) -> None:
    data = b"appKey,signalContent.searchTerm\n" + b"k,shoes\n" * 200 + "k,café\n".encode("cp1252")
    assert refusal(write(tmp_path, data)) == (
        "line 202 is not valid UTF-8 (byte 0xe9 at column 6); save the file as CSV UTF-8"
    )


@pytest.mark.parametrize(
    ("encoding", "name"),
    [("utf-16-le", "UTF-16"), ("utf-16-be", "UTF-16"), ("utf-32-le", "UTF-32")],
)
def test_it_refuses_utf16_and_utf32_with_a_byte_order_mark(
    tmp_path: Path, encoding: str, name: str
) -> None:
    data = ("\ufeff" + json.dumps([ENVELOPE])).encode(encoding)
    assert refusal(write(tmp_path, data)) == (
        f"the file is encoded as {name} (it starts with a {name} byte order mark); save it as UTF-8"
    )


def test_it_refuses_utf16_without_a_byte_order_mark(tmp_path: Path) -> None:
    data = json.dumps([ENVELOPE]).encode("utf-16-le")
    assert refusal(write(tmp_path, data)) == (
        "the file looks like UTF-16 text without a byte order mark; save it as UTF-8"
    )


def test_it_refuses_a_spreadsheet_workbook(tmp_path: Path) -> None:
    assert refusal(write(tmp_path, b"PK\x03\x04\x14\x00\x06\x00")).startswith(
        "the file is a ZIP archive (an Excel workbook?)"
    )


@pytest.mark.parametrize(
    ("data", "what"),
    [
        (b"42", "a number"),
        (b' "hello"\n', "a string"),
        (b"true", "a boolean"),
        (b"null", "null"),
    ],
)
def test_it_refuses_a_top_level_json_scalar(tmp_path: Path, data: bytes, what: str) -> None:
    assert refusal(write(tmp_path, data)) == (
        f"the top level is {what}; expected an array of signals or an object"
    )


def test_it_refuses_a_signals_key_that_is_no_array(tmp_path: Path) -> None:
    assert refusal(write(tmp_path, b'{"signals": {"appKey": "a"}}')) == (
        'the "signals" key holds an object; expected an array of signals'
    )


@pytest.mark.parametrize("gz", [False, True])
def test_it_refuses_a_truncated_json_array(tmp_path: Path, gz: bool) -> None:
    data = json.dumps([ENVELOPE, OTHER]).encode()[:-10]
    assert refusal(write(tmp_path, data, gz=gz)) == (
        f"the JSON ends early at byte {len(data)} (line 1); "
        "the file seems truncated or a bracket is missing"
    )


def test_it_refuses_a_truncated_json_array_after_streaming_its_beginning(tmp_path: Path) -> None:
    data = json.dumps([ENVELOPE] * 2000, indent=1).encode()[:-5]
    path = write(tmp_path, data)
    records: list[Record] = []
    with open_signal_file(path) as signal_file, pytest.raises(UnreadableFile) as caught:
        records.extend(signal_file)
    assert len(records) == 1999
    lines = data.count(b"\n") + 1
    assert str(caught.value) == (
        f"the JSON ends early at byte {len(data)} (line {lines}); "
        "the file seems truncated or a bracket is missing"
    )


def test_it_refuses_a_truncated_pretty_printed_document(tmp_path: Path) -> None:
    data = json.dumps(ENVELOPE, indent=2).encode()[:-3]
    assert refusal(write(tmp_path, data)).startswith(f"the JSON ends early at byte {len(data)}")


def test_a_json_record_that_is_not_json_is_kept_for_the_engine(tmp_path: Path) -> None:
    # As an NDJSON line that is not JSON: the engine reports it, the others are judged.
    data = b'[{"appKey": "a"},\n {"appKey": tru}, {"appKey": "\\ud800"}, {"appKey": "b"}]'
    assert [r.raw for r in read_all(write(tmp_path, data))[1]] == [
        b'{"appKey": "a"}',
        b'{"appKey": tru}',
        b'{"appKey": "\\ud800"}',
        b'{"appKey": "b"}',
    ]


def test_it_places_a_fault_of_the_array_at_its_byte_and_line(tmp_path: Path) -> None:
    data = b'[{"appKey": "a"},\n {"appKey": "b"} {"appKey": "c"}]'
    fault = data.index(b'{"appKey": "c"}')
    assert refusal(write(tmp_path, data)) == (
        f'the JSON is invalid at byte {fault} (line 2, after \'{{"appKey": "b"}}\'): '
        "expected a comma or ] after signal 1"
    )


def test_it_places_a_fault_of_the_array_far_into_a_large_file(tmp_path: Path) -> None:
    good = json.dumps([ENVELOPE] * 3000, indent=2).encode()
    comma = good.index(b"},\n  {", 600_000) + 1  # past the first reads of 256 KB
    data = good[:comma] + good[comma + 1 :]  # a comma left out
    message = refusal(write(tmp_path, data))
    fault = data.index(b"{", comma)
    line = data.count(b"\n", 0, fault) + 1
    before = good.count(b"\n  {", 0, comma) - 1  # the signal the comma followed
    assert message == (
        f"the JSON is invalid at byte {fault} (line {line}): expected a comma or ] after "
        f"signal {before}"
    )


def test_a_comma_before_the_closing_bracket_is_refused(tmp_path: Path) -> None:
    data = json.dumps([ENVELOPE]).encode()[:-1] + b",\n]"
    assert refusal(write(tmp_path, data)).endswith("a comma right before ] (no signal follows it)")


def test_it_refuses_json_with_trailing_garbage(tmp_path: Path) -> None:
    data = json.dumps([ENVELOPE]).encode() + b"\n[1]"
    assert refusal(write(tmp_path, data)).startswith("the JSON is invalid at byte")


def test_it_refuses_a_json_record_over_the_record_limit(tmp_path: Path) -> None:
    data = json.dumps({"signals": [{"description": "x" * 300_000}]}).encode()
    assert refusal(write(tmp_path, data), max_record_bytes=100_000).startswith(
        "signal 0 is larger than 97.7 KiB, the limit for one signal"
    )


@pytest.mark.parametrize(
    "data",
    [b"hello world\nthis is prose", b"name,email\nJane,jane@example.com\n", b"<xml/>"],
)
def test_it_refuses_text_that_is_no_import_format(tmp_path: Path, data: bytes) -> None:
    first_line = data.split(b"\n")[0].decode()
    assert refusal(write(tmp_path, data)) == (
        f"the file is not JSON, NDJSON or CSV: its first line ({first_line!r}) is not JSON, "
        "and as a CSV header it names none of the columns appKey, sessionId, test, "
        "identifiableAttributes.*, signalContent.* or SIGNAL_CONTENT"
    )


def test_it_refuses_a_csv_quote_left_open(tmp_path: Path) -> None:
    data = b'appKey,signalContent.url\na,"https://x\nb,y\nc,z\n'
    assert refusal(write(tmp_path, data)) == (
        "a quoted cell in the row starting at line 2 is never closed"
    )


def test_it_refuses_a_csv_cell_over_the_record_limit(tmp_path: Path) -> None:
    # The reader only ever raises the csv module's process-wide limit; lower it here.
    saved = csv.field_size_limit(1000)
    try:
        data = b"appKey,signalContent.description\na," + b"x" * 2000 + b"\n"
        message = refusal(write(tmp_path, data), max_record_bytes=1000)
    finally:
        csv.field_size_limit(saved)
    assert message == (
        "a cell in the row starting at line 2 is longer than 1000 characters (a quote left open?)"
    )


def test_it_refuses_a_file_it_cannot_open(tmp_path: Path) -> None:
    assert refusal(tmp_path / "missing.json") == (
        "the file cannot be opened (No such file or directory)"
    )


# --- gzip ----------------------------------------------------------------------------------


def ndjson_lines(count: int) -> bytes:
    return b"".join(
        json.dumps({**ENVELOPE, "sessionId": f"s-{i}"}).encode() + b"\n" for i in range(count)
    )


def test_it_refuses_a_gzip_that_inflates_past_the_cap(tmp_path: Path) -> None:
    path = write(tmp_path, ndjson_lines(2000), gz=True)
    assert refusal(path, max_inflated_bytes=50_000) == (
        "the gzip data inflates past 48.8 KiB; refused as a possible gzip bomb"
    )


def test_a_gzip_of_one_signal_then_endless_newlines_is_refused_at_the_blank_limit(
    tmp_path: Path,
) -> None:
    # 5 GB of newlines deflate to a few MB; read a line at a time, they would hold a worker
    # for many minutes. Here: refused once the run passes the limit, in one buffer's time.
    data = json.dumps(ENVELOPE).encode() + b"\n" * 3_000_000
    message = refusal(write(tmp_path, data, gz=True), max_blank_bytes=1_000_000)
    assert message.startswith("after byte ")
    assert message.endswith(
        "of the inflated data, the file holds more than 1 MB of blank space in a row (spaces "
        "and line breaks without any signal); refused as a damaged or padded file"
    )


def test_ndjson_skips_blank_runs_fast_and_keeps_its_line_numbers(tmp_path: Path) -> None:
    line = json.dumps(ENVELOPE).encode()
    data = line + b"\n" + b" \r\n\t\n" * 200_000 + b"  " + line + b"\n\n" + line
    records = read_all(write(tmp_path, data), max_blank_bytes=10**6)[1]
    assert [(r.index, r.line, r.raw) for r in records] == [
        (0, 1, line),
        (1, 400_002, line),
        (2, 400_004, line),
    ]
    assert refusal(write(tmp_path, data, name="b"), max_blank_bytes=500_000) == (
        "after line 2, the file holds more than 500 KB of blank space in a row (spaces and "
        "line breaks without any signal); refused as a damaged or padded file"
    )


def test_a_gzip_of_zero_bytes_says_how_much_it_inflates_to(tmp_path: Path) -> None:
    small = write(tmp_path, b"\0" * 3_000_000, gz=True, name="small")
    assert refusal(small) == (
        "the file is gzip data that inflates to 3 MB of zero bytes and nothing else; "
        "it holds no signals"
    )
    bomb = tmp_path / "bomb.gz"
    with gzip.open(bomb, "wb") as out:
        for _ in range(25):
            out.write(b"\0" * 8_000_000)
    assert refusal(bomb) == (
        "the file is gzip data that inflates to about 200 MB of zero bytes (nothing but "
        "zeros in the first 67 MB); refused as a gzip bomb or a zero-filled file"
    )
    plain = write(tmp_path, b"\0" * 100_000, name="plain")
    assert refusal(plain) == (
        "the file holds only zero bytes (its first 65 KB at least): it is not text; a "
        "damaged or zero-filled file?"
    )


def test_it_reads_a_gzip_just_under_the_cap(tmp_path: Path) -> None:
    data = ndjson_lines(50)
    assert len(read_all(write(tmp_path, data, gz=True), max_inflated_bytes=len(data))[1]) == 50


def test_it_refuses_a_truncated_gzip(tmp_path: Path) -> None:
    compressed = gzip.compress(ndjson_lines(5000))
    path = tmp_path / "cut.ndjson.gz"
    path.write_bytes(compressed[: len(compressed) * 2 // 3])
    message = refusal(path)
    assert message.startswith("the gzip data is truncated: it ends after ")
    assert message.endswith(" inflated, before the end of the compressed stream")


def test_it_refuses_a_truncated_gzip_at_once_when_it_is_short(tmp_path: Path) -> None:
    path = tmp_path / "cut.json.gz"
    path.write_bytes(gzip.compress(json.dumps([ENVELOPE]).encode())[:-12])
    with pytest.raises(UnreadableFile, match=r"^the gzip data is truncated"):
        open_signal_file(path)


def test_it_refuses_damaged_gzip_data(tmp_path: Path) -> None:
    compressed = bytearray(gzip.compress(ndjson_lines(20)))
    compressed[-8] ^= 0xFF  # the CRC
    path = tmp_path / "damaged.gz"
    path.write_bytes(bytes(compressed))
    assert refusal(path).startswith("the gzip data is damaged after ")


def test_it_reads_a_gzip_of_several_members(tmp_path: Path) -> None:
    path = tmp_path / "members.gz"
    path.write_bytes(gzip.compress(ndjson_lines(3)) + gzip.compress(ndjson_lines(2)))
    assert [record.line for record in read_all(path)[1]] == [1, 2, 3, 4, 5]


# --- progress ------------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("kind", ["ndjson", "json", "csv"])
def test_position_grows_to_the_size_on_disk(tmp_path: Path, gz: bool, kind: str) -> None:
    many = [{**ENVELOPE, "sessionId": f"s-{i}"} for i in range(20_000)]
    if kind == "ndjson":
        data = ndjson_lines(20_000)
    elif kind == "json":
        data = json.dumps(many).encode()
    else:
        data = b"appKey,sessionId\n" + b"".join(b"a,s-%d\n" % i for i in range(20_000))
    path = write(tmp_path, data, gz=gz)
    with open_signal_file(path) as signal_file:
        assert signal_file.size == path.stat().st_size
        positions = [signal_file.position() for _ in signal_file]
        assert signal_file.position() == signal_file.size
    assert positions == sorted(positions)
    assert 0 < positions[0] < signal_file.size
    assert signal_file.position() == signal_file.size  # still answers once closed
