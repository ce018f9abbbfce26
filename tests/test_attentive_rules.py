"""Attentive custom events (SPEC §6, issue 13 point 2): one test per rule of attentive.py, each
asserting the exact (path, severity, code) triples for a clean event with one thing broken,
so removing or loosening a rule fails a test; the good inputs that must give no finding (the
seed's own example among them); every file format, split over processes too; the command
line end to end; files that mix Connect signals and Attentive events; 10,000 properties; the
200 keys per event type counted across the parts of a file."""

from __future__ import annotations

import copy
import gzip
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from signals_app.validation import validate
from signals_app.validation.attentive import (
    KEY_FORBIDDEN,
    MAX_KEYS_PER_TYPE,
    TYPE_FORBIDDEN,
    KeyLimit,
    check_event,
)
from signals_app.validation.engine import check_signal
from signals_app.validation.findings import Finding, Summary
from signals_app.validation.readers import UnreadableFile, open_signal_file
from signals_app.validation.validate import Options, validate_file
from tests.test_cli import order, page_view, run_command, run_process

Triple = tuple[str, str, str]

NOW = datetime(2025, 9, 1, 12, 0, tzinfo=UTC).timestamp()
RECENT = "2025-09-01T08:00:00Z"  # 4 hours before NOW

# The seed's example input (seeds/004_7fb2253cbedae88d.txt), the value of customEventInput
# verbatim: it has no placeholder to fill. Its occurredAt is judged from an hour later.
SEED_EVENT: dict[str, Any] = {
    "externalEventId": "37fb97a9-6cfd-4983-bd65-68d104d53b70",
    "occurredAt": "2021-03-30T14:38:29+00:00",
    "properties": '{ "customKey":"customValue" }',
    "type": "Order Shipped",
    "user": {
        "email": "test@gmail.com",
        "phone": "+13115552368",
        "externalIdentifiers": {
            "clientUserId": "c60b3f4e-ec73-4ff0-be4b-6a0fce825e89",
            "customIdentifiers": [
                {"name": "customIdentifierName", "value": "customIdentifierValue"}
            ],
        },
    },
}
SEED_NOW = datetime(2021, 3, 30, 15, 38, 29, tzinfo=UTC).timestamp()


def event(**fields: Any) -> dict[str, Any]:
    """A clean event, with an externalEventId of its own; a field given as None is left
    out."""
    record: dict[str, Any] = {
        "type": "Order Shipped",
        "user": {"email": "jane.doe@example.com"},
        "properties": {"color": "red", "size": "M", "price": 19.99},
        "externalEventId": str(uuid.uuid4()),
        "occurredAt": RECENT,
    }
    record.update(fields)
    return {key: value for key, value in record.items() if value is not None}


def triples(record: Any, *, keys: KeyLimit | None = None, now: float = NOW) -> list[Triple]:
    check = check_event(record, keys=keys, now=now)
    return [(i.path, i.severity, str(i.code)) for i in check.issues]


def messages(record: Any, *, now: float = NOW) -> list[str]:
    return [i.message for i in check_event(record, now=now).issues]


# --- good inputs -------------------------------------------------------------------------


def test_the_seeds_example_input_is_clean() -> None:
    assert triples(copy.deepcopy(SEED_EVENT), now=SEED_NOW) == []
    assert check_event(SEED_EVENT, now=SEED_NOW).signal_type == "Order Shipped"


@pytest.mark.parametrize(
    "record",
    [
        event(),
        {"type": "Order Shipped", "user": {"email": "jane.doe@example.com"}},  # the minimum
        event(user={"phone": "+13115552368"}),  # the vendors' fictional number: possible
        event(user={"phone": "+447700900123"}),
        event(user={"externalIdentifiers": {"clientUserId": "c60b3f4e"}}),
        event(user={"externalIdentifiers": {"customIdentifiers": [{"name": "n", "value": "v"}]}}),
        event(user={"email": "a@b.co", "phone": None, "externalIdentifiers": None}),  # nulls
        event(properties={}),
        event(properties=None),
        event(properties='{"customKey": "customValue"}'),  # a JSON-encoded string
        event(properties={"n": 1, "b": True, "x": None, "s": "plain", "e": ""}),
        event(properties={"url": "https://example.com/" + "a" * 1004}),  # 1,024: shortened
        event(properties={"text": "x" * 5000}),  # long, but no URL
        event(properties={"ftp": "ftp://example.com/" + "a" * 2000}),  # not http(s)
        event(type="Added to cart: 2 items; 50% off!"),  # : ; % ! are allowed
        event(type="Order Shipped", externalEventId=None, occurredAt=None),
        event(occurredAt="2025-09-01T13:30:00+02:00"),  # 11.5 hours before NOW
        event(occurredAt="2025-09-02T08:00:00Z"),  # in the future: no rule
    ],
)
def test_good_events_give_no_finding(record: dict[str, Any]) -> None:
    assert triples(record) == []


# --- the record --------------------------------------------------------------------------


@pytest.mark.parametrize("record", [[event()], "an event", 42, None, True])
def test_an_event_must_be_an_object(record: Any) -> None:
    assert triples(record) == [("", "error", "type")]


def test_an_unknown_field_is_an_error() -> None:
    """GraphQL refuses an input with a field its input type does not define."""
    assert triples(event(color="red")) == [("color", "error", "unknown_field")]
    assert triples(event(Type="x")) == [("Type", "error", "unknown_field")]
    assert 'did you mean "type"?' in messages(event(Type="x"))[0]


def test_the_graphql_variables_get_a_hint() -> None:
    record = {"customEventInput": event()}
    assert triples(record) == [
        ("customEventInput", "error", "unknown_field"),
        ("type", "error", "required"),
        ("user", "error", "required"),
    ]
    assert "the object inside customEventInput" in messages(record)[0]


# --- type --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "code"),
    [(None, "required"), ("", "required"), ("  \t", "required"), (42, "type"), (["x"], "type")],
)
def test_type_is_a_required_non_blank_string(value: Any, code: str) -> None:
    record = event()
    record["type"] = value
    assert triples(record) == [("type", "error", code)]
    del record["type"]
    assert triples(record) == [("type", "error", "required")]


@pytest.mark.parametrize("character", list(TYPE_FORBIDDEN))
def test_type_must_not_hold_a_forbidden_character(character: str) -> None:
    record = event(type=f"Order{character}Shipped")
    assert triples(record) == [("type", "error", "format")]
    shown = f'"{character}"' if character == "'" else f"'{character}'"
    assert messages(record)[0].startswith(f"type contains {shown};")


def test_the_forbidden_characters_are_the_documented_ones() -> None:
    assert sorted(TYPE_FORBIDDEN) == sorted("\"'(){}[]\\|,")
    assert sorted(KEY_FORBIDDEN) == sorted("'\"{}[]\\|,")


def test_type_names_every_forbidden_character_once() -> None:
    assert messages(event(type="a(b)c,d(e"))[0].startswith("type contains '(', ')', ',';")


# --- user --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("user", "expected"),
    [
        (None, [("user", "error", "required")]),
        ("jane@example.com", [("user", "error", "type")]),
        ([{"email": "jane@example.com"}], [("user", "error", "type")]),
        ({}, [("user", "error", "required")]),
        ({"email": None, "phone": None}, [("user", "error", "required")]),
        ({"externalIdentifiers": {}}, [("user", "error", "required")]),
        ({"externalIdentifiers": {"customIdentifiers": []}}, [("user", "error", "required")]),
        ({"email": "not-an-address"}, [("user.email", "error", "format")]),
        ({"email": "[email protected]"}, [("user.email", "error", "format")]),
        ({"email": 42}, [("user.email", "error", "type")]),
        ({"email": " "}, [("user.email", "error", "required")]),
        ({"phone": "13115552368"}, [("user.phone", "error", "format")]),  # no +
        ({"phone": "+1 311 555 2368"}, [("user.phone", "error", "format")]),
        ({"phone": "+1234"}, [("user.phone", "error", "format")]),
        ({"phone": "+12345678"}, [("user.phone", "error", "format")]),  # not possible for +1
        ({"phone": 13115552368}, [("user.phone", "error", "type")]),
        ({"phone": ""}, [("user.phone", "error", "required")]),
        # A bad phone is an error even beside a good e-mail: Attentive refuses the event.
        ({"email": "a@b.co", "phone": "555-2368"}, [("user.phone", "error", "format")]),
        ({"externalIdentifiers": "c60b"}, [("user.externalIdentifiers", "error", "type")]),
        (
            {"externalIdentifiers": {"clientUserId": ""}},
            [("user.externalIdentifiers.clientUserId", "error", "required")],
        ),
        (
            {"externalIdentifiers": {"clientUserId": 42}},
            [("user.externalIdentifiers.clientUserId", "error", "type")],
        ),
        (
            {"externalIdentifiers": {"customIdentifiers": {"name": "n", "value": "v"}}},
            [("user.externalIdentifiers.customIdentifiers", "error", "type")],
        ),
        (
            {"externalIdentifiers": {"customIdentifiers": ["n=v"]}},
            [("user.externalIdentifiers.customIdentifiers[0]", "error", "type")],
        ),
        (
            {"externalIdentifiers": {"customIdentifiers": [{"name": "n", "value": "v"}, {}]}},
            [
                ("user.externalIdentifiers.customIdentifiers[1].name", "error", "required"),
                ("user.externalIdentifiers.customIdentifiers[1].value", "error", "required"),
            ],
        ),
        (
            {"externalIdentifiers": {"customIdentifiers": [{"name": "n", "value": 7}]}},
            [("user.externalIdentifiers.customIdentifiers[0].value", "error", "type")],
        ),
        (
            {
                "externalIdentifiers": {
                    "customIdentifiers": [{"name": "n", "value": "v", "type": "x"}]
                }
            },
            [("user.externalIdentifiers.customIdentifiers[0].type", "error", "unknown_field")],
        ),
        (
            {"email": "a@b.co", "externalIdentifiers": {"userId": "x"}},
            [("user.externalIdentifiers.userId", "error", "unknown_field")],
        ),
        ({"email": "a@b.co", "sms": "+13115552368"}, [("user.sms", "error", "unknown_field")]),
    ],
)
def test_user_rules(user: Any, expected: list[Triple]) -> None:
    record = event()
    record["user"] = user
    assert triples(record) == expected


def test_user_is_required() -> None:
    assert triples(event(user=None)) == [("user", "error", "required")]


def test_the_phone_message_says_what_e164_is() -> None:
    [message] = messages(event(user={"phone": "3115552368"}))
    assert "E.164" in message and "leading +" in message


# --- properties --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("properties", "expected"),
    [
        (42, [("properties", "error", "type")]),
        (["color", "red"], [("properties", "error", "type")]),
        (True, [("properties", "error", "type")]),
        ("color=red", [("properties", "error", "format")]),  # a string that is not JSON
        ('{"color": "red"', [("properties", "error", "format")]),
        ("", [("properties", "error", "format")]),
        ('["red"]', [("properties", "error", "type")]),  # JSON, but no object
        ('"red"', [("properties", "error", "type")]),
        ("null", [("properties", "error", "type")]),
        ('{"a": "\\ud800"}', [("properties", "error", "format")]),  # a lone surrogate
        ('{"a": 1, "a": 2}', [("properties.a", "error", "duplicate_key")]),
        ('{"it\'s": 1}', [("properties.it's", "error", "format")]),
    ],
)
def test_properties_rules(properties: Any, expected: list[Triple]) -> None:
    assert triples(event(properties=properties)) == expected


@pytest.mark.parametrize("character", list(KEY_FORBIDDEN))
def test_a_property_key_must_not_hold_a_forbidden_character(character: str) -> None:
    key = f"gift{character}wrap"
    record = event(properties={"color": "red", key: True})
    assert triples(record) == [(f"properties.{key}", "error", "format")]


def test_characters_forbidden_in_types_only_are_fine_in_keys() -> None:
    assert triples(event(properties={"size (EU)": 42})) == []


def test_a_duplicate_in_the_properties_string_is_in_attentives_words() -> None:
    [message] = messages(event(properties='{"a": 1, "a": 2}'))
    assert "Attentive may take" in message and "Connect" not in message


# --- externalEventId and occurredAt ------------------------------------------------------


@pytest.mark.parametrize(("value", "code"), [(42, "type"), ("", "format"), (" ", "format")])
def test_external_event_id_is_a_string(value: Any, code: str) -> None:
    assert triples(event(externalEventId=value)) == [("externalEventId", "error", code)]


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ("yesterday", "format"),
        ("2025-09-01T08:00:00", "format"),  # no time zone
        ("2025-09-01", "format"),
        ("2025-02-30T08:00:00Z", "format"),
        (1756713600, "type"),
    ],
)
def test_occurred_at_is_an_iso_8601_date_time_with_a_time_zone(value: Any, code: str) -> None:
    assert triples(event(occurredAt=value)) == [("occurredAt", "error", code)]


def test_occurred_at_older_than_12_hours_fires_no_journey() -> None:
    assert triples(event(occurredAt="2025-08-31T23:59:59Z")) == [
        ("occurredAt", "warning", "too_old")
    ]
    assert triples(event(occurredAt="2025-09-01T00:00:01Z")) == []
    assert "triggers no journey" in messages(event(occurredAt="2025-08-01T00:00:00Z"))[0]


def test_occurred_at_is_measured_from_the_start_of_the_run(tmp_path: Path) -> None:
    old = datetime.now(UTC) - timedelta(hours=13)
    fresh = datetime.now(UTC) - timedelta(hours=1)
    path = tmp_path / "events.ndjson"
    write_ndjson(path, [event(occurredAt=old.isoformat()), event(occurredAt=fresh.isoformat())])
    assert codes_of(path, Options(destination="attentive")) == [(0, "occurredAt", "too_old")]


# --- warnings about property values ------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ("https://example.com/" + "a" * 1005, "max_length"),  # 1,025 characters
        ("http://example.com/" + "a" * 2000, "max_length"),
        ("HTTPS://EXAMPLE.COM/" + "A" * 1005, "max_length"),
        (["red", "blue"], "email_only"),
        ([], "email_only"),
        ({"sku": "A-1"}, "email_only"),
    ],
)
def test_property_values_that_will_not_work_everywhere(value: Any, code: str) -> None:
    record = event(properties={"color": "red", "thing": value})
    assert triples(record) == [("properties.thing", "warning", code)]


def test_a_properties_string_is_judged_as_its_object() -> None:
    record = event(properties=json.dumps({"items": [1, 2]}))
    assert triples(record) == [("properties.items", "warning", "email_only")]


# --- 200 keys per event type -------------------------------------------------------------


def keyed(event_type: str, keys: range | list[str], **fields: Any) -> dict[str, Any]:
    names = [f"k{k}" for k in keys] if isinstance(keys, range) else keys
    return event(type=event_type, properties=dict.fromkeys(names, 1), **fields)


def test_a_key_beyond_the_200th_of_its_type_is_a_warning() -> None:
    keys = KeyLimit()
    assert triples(keyed("A", range(150)), keys=keys) == []
    assert triples(keyed("A", range(100, 200)), keys=keys) == []  # 200 keys: all usable
    assert triples(keyed("B", range(1000, 1200)), keys=keys) == []  # another type: its own
    assert triples(keyed("A", range(199, 201)), keys=keys) == [
        ("properties", "warning", "key_limit")
    ]
    assert triples(keyed("A", range(0, 200)), keys=keys) == []  # only the first 200
    assert triples(keyed("A", [*map(str, range(3)), "k200"]), keys=keys) == [
        ("properties", "warning", "key_limit")
    ]  # every event that carries a key beyond them
    [issue] = check_event(keyed("A", range(195, 260)), keys=keys, now=NOW).issues
    assert "60 property keys (k200, k201, k202, k203, k204, ...)" in issue.message
    assert "only 200 keys per event type can be used in segments and journeys" in issue.message


def test_key_names_are_case_sensitive_and_so_are_types() -> None:
    keys = KeyLimit()
    assert triples(keyed("A", range(200)), keys=keys) == []
    assert triples(keyed("A", ["K1"]), keys=keys) == [("properties", "warning", "key_limit")]
    assert triples(keyed("a", ["K1"]), keys=keys) == []


def test_a_rejected_event_does_not_count_towards_the_200() -> None:
    keys = KeyLimit()
    rejected = keyed("A", range(300), user={"phone": "555"})
    assert triples(rejected, keys=keys) == [("user.phone", "error", "format")]
    assert triples(keyed("A", range(100, 300)), keys=keys) == []


def test_without_a_count_an_event_alone_is_not_limited() -> None:
    assert triples(keyed("A", range(300))) == []


def test_types_past_the_tracked_number_are_not_counted() -> None:
    keys = KeyLimit(max_types=2)
    assert keys.beyond("A", dict.fromkeys(map(str, range(300)))) != []
    assert keys.beyond("B", dict.fromkeys(map(str, range(300)))) != []
    assert keys.beyond("C", dict.fromkeys(map(str, range(300)))) == []
    assert keys.snapshot().capped


def test_ten_thousand_properties_in_one_event() -> None:
    record = keyed("Big", range(10_000))
    started = time.perf_counter()
    check = check_event(record, keys=KeyLimit(), now=NOW)
    assert time.perf_counter() - started < 1
    assert [(i.path, i.code) for i in check.issues] == [("properties", "key_limit")]
    assert "9,800 property keys" in check.issues[0].message


def test_ten_thousand_properties_through_the_command_line(tmp_path: Path) -> None:
    record = keyed("Big", range(10_000), occurredAt=None)
    record["properties"] |= {f"bad'{k}": 1 for k in range(3)}
    path = write_ndjson(tmp_path / "big.ndjson", [record])
    result = run_process(str(path), "--destination", "attentive")
    assert result.returncode == 1, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(f["path"], f["code"]) for f in lines[:-1]] == [
        (f"properties.bad'{k}", "format") for k in range(3)
    ]
    assert lines[-1]["summary"]["rejected"] == 1


# --- wrong destination -------------------------------------------------------------------


@pytest.mark.parametrize(
    "record",
    [
        order(),
        page_view(),
        {"signal": page_view()},  # the vendor's file-import wrapper
        {"identifiableAttributes": {"email": "a@b.co"}, "type": "x", "user": {}},
        {"appKey": "app-key-1", "signalContent": {"signalType": "pageView"}},
        {"appKey": "app-key-1"},
    ],
)
def test_a_connect_signal_is_no_attentive_event(record: dict[str, Any]) -> None:
    assert triples(record) == [("", "error", "wrong_destination")]
    assert "Acoustic Connect signal, not an Attentive custom event" in messages(record)[0]


def test_an_event_with_a_stray_app_key_is_an_event_with_an_unknown_field() -> None:
    assert triples(event(appKey="app-key-1")) == [("appKey", "error", "unknown_field")]


@pytest.mark.parametrize(
    "record",
    [
        event(),
        SEED_EVENT,
        {"type": "x", "user": {}},
        {"type": "x", "user.email": "a@b.co"},  # a CSV row's user.<key> columns
        {"signal": event()},
    ],
)
def test_an_attentive_event_is_no_connect_signal(record: dict[str, Any]) -> None:
    check = check_signal(record)
    assert [(i.path, i.severity, str(i.code)) for i in check.issues] == [
        ("", "error", "wrong_destination")
    ]
    assert "Attentive custom event" in check.issues[0].message


def test_a_connect_signal_with_a_type_field_is_still_judged_as_a_signal() -> None:
    check = check_signal(order() | {"type": "x"})
    assert [(i.path, str(i.code)) for i in check.issues] == [("type", "unknown_field")]


# --- files: every format, also in parts --------------------------------------------------


def write_ndjson(path: Path, records: list[Any]) -> Path:
    path.write_bytes(b"".join(json.dumps(r).encode() + b"\n" for r in records))
    return path


def run(path: Path, options: Options, workers: int = 1) -> tuple[list[Finding], Summary]:
    found: list[Finding] = []
    summary = validate_file(path, options, found.append, workers=workers, parallel_min_bytes=0)
    return found, summary


def codes_of(path: Path, options: Options, workers: int = 1) -> list[tuple[int, str, str]]:
    return [(f.signal, f.path, f.code) for f in run(path, options, workers)[0]]


EVENTS = Options(destination="attentive", now=NOW)


def file_events() -> list[Any]:
    """Events with known problems spread over a file (the expected findings below)."""
    records: list[Any] = []
    for i in range(400):
        if i % 50 == 7:
            records.append(event(user={"phone": "3115552368"}))
        elif i % 50 == 21:
            records.append(order())
        elif i % 50 == 33:
            records.append(event(properties={"tags": ["a"], "color": "red"}))
        elif i % 50 == 44:
            records.append(event(type="Order, Shipped"))
        else:
            records.append(event(externalEventId=f"event-{i}"))
    return records


def expected_file_findings() -> list[tuple[int, str, str]]:
    found = []
    for i in range(400):
        found += {
            7: [(i, "user.phone", "format")],
            21: [(i, "", "wrong_destination")],
            33: [(i, "properties.tags", "email_only")],
            44: [(i, "type", "format")],
        }.get(i % 50, [])
    return found


@pytest.fixture
def went_parallel(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    runs: list[bool] = []
    original = validate._validate_parallel

    def spy(*args: Any, **kwargs: Any) -> Summary | None:
        summary = original(*args, **kwargs)
        runs.append(summary is not None)
        return summary

    monkeypatch.setattr(validate, "_validate_parallel", spy)
    return runs


def assert_every_way(path: Path, expected: list[tuple[int, str, str]]) -> Summary:
    single, summary = run(path, EVENTS)
    assert [(f.signal, f.path, f.code) for f in single] == expected
    for workers in (2, 3):
        parts, parts_summary = run(path, EVENTS, workers)
        assert parts == single
        assert parts_summary == summary
    return summary


def test_ndjson_events_alone_and_in_parts(tmp_path: Path, went_parallel: list[bool]) -> None:
    path = write_ndjson(tmp_path / "events.ndjson", file_events())
    summary = assert_every_way(path, expected_file_findings())
    assert (summary.signals, summary.rejected, summary.warnings) == (400, 24, 8)
    assert went_parallel and all(went_parallel)
    found, _ = run(path, EVENTS)
    assert found[0].line == 8  # NDJSON findings carry their line


def test_a_json_array_of_events_alone_and_in_parts(
    tmp_path: Path, went_parallel: list[bool]
) -> None:
    path = tmp_path / "events.json"
    path.write_text("[\n" + ",\n".join(json.dumps(r) for r in file_events()) + "\n]\n")
    assert_every_way(path, expected_file_findings())
    assert went_parallel and all(went_parallel)
    pretty = tmp_path / "pretty.json"
    pretty.write_text(json.dumps(file_events(), indent=2))
    assert codes_of(pretty, EVENTS) == expected_file_findings()


def test_a_single_event_and_a_gzip_of_events(tmp_path: Path) -> None:
    single = tmp_path / "one.json"
    single.write_text(json.dumps(event(user={"phone": "555"}), indent=2))
    assert codes_of(single, EVENTS) == [(0, "user.phone", "format")]
    assert codes_of(single, EVENTS, workers=2) == [(0, "user.phone", "format")]
    packed = tmp_path / "events.ndjson.gz"
    packed.write_bytes(
        gzip.compress(b"".join(json.dumps(r).encode() + b"\n" for r in file_events()))
    )
    assert codes_of(packed, EVENTS, workers=2) == expected_file_findings()


def test_duplicate_keys_and_lone_surrogates_in_an_events_file(tmp_path: Path) -> None:
    path = tmp_path / "events.ndjson"
    path.write_bytes(
        b'{"type": "A", "type": "B", "user": {"email": "a@b.co"}}\n'
        b'{"type": "A", "user": {"email": "a@b.co", "email": "c@d.co"}}\n'
        b'{"type": "A\\ud800", "user": {"email": "a@b.co"}}\n'
    )
    found, _ = run(path, EVENTS)
    assert [(f.signal, f.path, f.code) for f in found] == [
        (0, "type", "duplicate_key"),
        (1, "user.email", "duplicate_key"),
        (2, "", "syntax"),
    ]
    assert "in the event" in found[0].message and "Attentive may take" in found[0].message


# --- CSV ---------------------------------------------------------------------------------


def write_csv(path: Path, *lines: str) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_a_csv_of_events_builds_each_event(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "events.csv",
        "type,externalEventId,occurredAt,user.email,user.phone,"
        "user.externalIdentifiers.clientUserId,properties,properties.size,properties.a.b",
        'Order Shipped,e-1,2025-09-01T08:00:00Z,jane@example.com,,,"{""color"": ""red""}",M,x',
        "Order Shipped,,,,+13115552368,,,,",
        "Order Shipped,,,,,c60b3f4e,,L,",
    )
    with open_signal_file(path, destination="attentive") as signal_file:
        assert signal_file.format == "events-csv"
        records = [record.value for record in signal_file]
    assert records == [
        {
            "type": "Order Shipped",
            "externalEventId": "e-1",
            "occurredAt": "2025-09-01T08:00:00Z",
            "user": {"email": "jane@example.com"},
            "properties": {"color": "red", "size": "M", "a.b": "x"},
        },
        {"type": "Order Shipped", "user": {"phone": "+13115552368"}},
        {
            "type": "Order Shipped",
            "user": {"externalIdentifiers": {"clientUserId": "c60b3f4e"}},
            "properties": {"size": "L"},
        },
    ]
    assert codes_of(path, EVENTS) == []


def csv_events(rows: int) -> list[str]:
    lines = ["type,user.email,user.phone,properties,properties.color,occurredAt"]
    for i in range(rows):
        if i % 40 == 5:
            lines.append(f"Viewed,,{i},,,{RECENT}")  # a phone without +
        elif i % 40 == 17:
            lines.append(f'Viewed,a{i}@example.com,,"{{""tags"": [1]}}",blue,{RECENT}')
        elif i % 40 == 29:
            lines.append(f"View(ed),a{i}@example.com,,,blue,{RECENT}")
        else:
            lines.append(f"Viewed,a{i}@example.com,,,blue,{RECENT}")
    return lines


def test_a_csv_of_events_alone_and_in_parts(tmp_path: Path, went_parallel: list[bool]) -> None:
    path = write_csv(tmp_path / "events.csv", *csv_events(400))
    expected = []
    for i in range(400):
        expected += {
            5: [(i, "user.phone", "format")],
            17: [(i, "properties.tags", "email_only")],
            29: [(i, "type", "format")],
        }.get(i % 40, [])
    assert_every_way(path, expected)
    assert went_parallel and all(went_parallel)
    found, _ = run(path, EVENTS)
    assert found[0].line == 7  # the header is line 1


@pytest.mark.parametrize(
    ("header", "row", "expected"),
    [
        # An empty cell means absent.
        ("type,user.email,properties.color", "Viewed,a@b.co,", []),
        ("type,user.email,user.phone", "Viewed,,", [(0, "user", "required")]),
        # A properties cell that is not JSON, or not an object.
        ("type,user.email,properties", "Viewed,a@b.co,color=red", [(0, "properties", "format")]),
        ("type,user.email,properties", 'Viewed,a@b.co,"[1]"', [(0, "properties", "type")]),
        # Unknown columns are reported where they land.
        ("type,user.email,colour", "Viewed,a@b.co,red", [(0, "colour", "unknown_field")]),
        ("type,user.email,user.sms", "Viewed,a@b.co,+1311", [(0, "user.sms", "unknown_field")]),
        # A key given twice: two columns, or a column and the properties cell.
        (
            "type,user.email,user.email",
            "Viewed,a@b.co,c@d.co",
            [(0, "user.email", "duplicate_key")],
        ),
        (
            "type,user.email,properties,properties.color",
            'Viewed,a@b.co,"{""color"": ""red""}",blue',
            [(0, "properties.color", "duplicate_key")],
        ),
        (
            "type,user.email,properties",
            'Viewed,a@b.co,"{""a"": 1, ""a"": 2}"',
            [(0, "properties.a", "duplicate_key")],
        ),
        # A forbidden character in a property column's key.
        ("type,user.email,properties.it's", "Viewed,a@b.co,x", [(0, "properties.it's", "format")]),
        # customIdentifiers as JSON text.
        (
            "type,user.externalIdentifiers.customIdentifiers",
            'Viewed,"[{""name"": ""n"", ""value"": ""v""}]"',
            [],
        ),
        # A Connect signal's columns in an events file.
        (
            "type,user.email,appKey,identifiableAttributes.email,signalContent.signalType",
            ",,k,a@b.co,pageView",
            [(0, "", "wrong_destination")],
        ),
    ],
)
def test_csv_event_rows(
    tmp_path: Path, header: str, row: str, expected: list[tuple[int, str, str]]
) -> None:
    path = write_csv(tmp_path / "events.csv", header, row)
    assert codes_of(path, EVENTS) == expected


def test_a_csv_for_the_other_destination_is_refused_with_a_word_on_it(tmp_path: Path) -> None:
    connect = write_csv(
        tmp_path / "signals.csv",
        "appKey,identifiableAttributes.email,signalContent.signalType,signalContent.url",
        "k,a@b.co,pageView,https://example.com/",
    )
    with pytest.raises(UnreadableFile, match="Acoustic Connect signals"):
        run(connect, EVENTS)
    events = write_csv(tmp_path / "events.csv", "type,user.email", "Viewed,a@b.co")
    with pytest.raises(UnreadableFile, match="Attentive custom events"):
        run(events, Options())
    neither = write_csv(tmp_path / "other.csv", "name,address", "Jane,Main St")
    with pytest.raises(UnreadableFile, match=r"type, user\.email"):
        run(neither, EVENTS)


# --- files that mix both -----------------------------------------------------------------


def test_a_file_mixing_signals_and_events(tmp_path: Path) -> None:
    records = [order(), event(), page_view(), event(user={"phone": "555"}), {"signal": order()}]
    path = write_ndjson(tmp_path / "mixed.ndjson", records)
    assert codes_of(path, EVENTS) == [
        (0, "", "wrong_destination"),
        (2, "", "wrong_destination"),
        (3, "user.phone", "format"),
        (4, "", "wrong_destination"),
    ]
    # The same file for Connect: each event is one finding, not a pile of them.
    assert codes_of(path, Options()) == [
        (1, "", "wrong_destination"),
        (3, "", "wrong_destination"),
    ]


# --- 200 keys per type across the parts of a file ----------------------------------------


def key_file(path: Path, layout: list[tuple[str, range]]) -> Path:
    """One event per (type, keys): events of the same number of keys take about the same
    bytes, so two parts split the file near the middle of the list."""
    return write_ndjson(path, [keyed(event_type, keys) for event_type, keys in layout])


def key_limit_findings(path: Path, workers: int) -> list[tuple[int, str]]:
    found, _ = run(path, EVENTS, workers)
    return [(f.signal, f.message) for f in found if f.code == "key_limit"]


@pytest.fixture
def reruns(monkeypatch: pytest.MonkeyPatch) -> list[list[int]]:
    """The parts each parallel run judged again, with the keys met before them."""
    runs: list[list[int]] = []
    original = validate._rerun_parts

    def spy(*args: Any, **kwargs: Any) -> None:
        runs.append(sorted(args[6]))
        original(*args, **kwargs)

    monkeypatch.setattr(validate, "_rerun_parts", spy)
    return runs


def test_the_200_keys_are_counted_across_parts(
    tmp_path: Path, went_parallel: list[bool], reruns: list[list[int]]
) -> None:
    # Type A: keys 0-149 in the first half; 100-299 in the second, whose parts alone would
    # each count at most 200 keys and warn about nothing, or about the wrong ones.
    layout = [("A", range(k, k + 10)) for k in range(0, 150, 10)] * 4
    layout += [("A", range(k, k + 10)) for k in range(100, 300, 10)] * 3
    path = key_file(tmp_path / "keys.ndjson", layout)
    single = key_limit_findings(path, 1)
    assert [signal for signal, _ in single] == [
        i for i, (_, keys) in enumerate(layout) if keys.stop > MAX_KEYS_PER_TYPE
    ]
    for workers in (2, 3, 4):
        assert key_limit_findings(path, workers) == single
        _, summary = run(path, EVENTS, workers)
        assert summary == run(path, EVENTS)[1]
    assert went_parallel and all(went_parallel)
    assert reruns and all(parts for parts in reruns)


def test_parts_are_not_judged_again_when_no_type_passes_200_keys(
    tmp_path: Path, went_parallel: list[bool], reruns: list[list[int]]
) -> None:
    layout = [("A", range(k, k + 10)) for k in range(0, 200, 10)] * 5
    layout += [("B", range(k, k + 50)) for k in range(0, 1000, 50)]  # only in the second half
    path = key_file(tmp_path / "keys.ndjson", layout)
    single = key_limit_findings(path, 1)
    assert len(single) == 16  # B: its 5th event onwards
    assert key_limit_findings(path, 2) == single
    assert went_parallel == [True] and reruns == []


def test_the_200_keys_across_the_parts_of_a_csv(
    tmp_path: Path, went_parallel: list[bool], reruns: list[list[int]]
) -> None:
    lines = ["type,user.email,properties"]
    for start in [*range(0, 150, 10)] * 4 + [*range(100, 300, 10)] * 3:
        cell = json.dumps(dict.fromkeys((f"k{k}" for k in range(start, start + 10)), 1))
        lines.append('A,a@b.co,"' + cell.replace('"', '""') + '"')
    path = write_csv(tmp_path / "keys.csv", *lines)
    single = key_limit_findings(path, 1)
    assert len(single) == 30
    assert key_limit_findings(path, 2) == single
    assert went_parallel and all(went_parallel) and reruns


# --- one id per event ---------------------------------------------------------------------


def test_an_id_an_earlier_valid_event_has_is_a_warning_at_the_later(tmp_path: Path) -> None:
    records = [
        event(externalEventId="a"),
        event(externalEventId="b"),
        event(externalEventId="a"),  # 2: a again
        event(externalEventId="c", type="x|y"),  # 3: rejected, so its id is never sent
        event(externalEventId="c"),  # 4: the first valid c
        event(externalEventId="b", user=None),  # 5: rejected: no warning about its id
        event(externalEventId=None),  # 6: no id: Attentive has nothing to take it for
        event(externalEventId=None),  # 7
        event(externalEventId="b"),  # 8: b again
    ]
    path = write_ndjson(tmp_path / "ids.ndjson", records)
    found, summary = run(path, EVENTS)
    repeats = [(f.signal, f.path, f.severity) for f in found if f.code == "duplicate_event_id"]
    assert repeats == [(2, "externalEventId", "warning"), (8, "externalEventId", "warning")]
    message = next(f.message for f in found if f.code == "duplicate_event_id")
    assert message.startswith('externalEventId "a" is an earlier event\'s too: Attentive')
    assert summary.valid == 7  # a warning rejects nothing


def repeats_of(path: Path, workers: int) -> list[tuple[int, str]]:
    found, _ = run(path, EVENTS, workers)
    return [(f.signal, f.message) for f in found if f.code == "duplicate_event_id"]


@pytest.mark.parametrize("kind", ["ndjson", "json", "csv"])
def test_ids_repeated_across_the_parts_of_a_file_are_found_as_by_one_pass(
    tmp_path: Path, went_parallel: list[bool], monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    # 401 events: ids 0-199, then 100-299 (repeating 100-199 of the first half) and 250
    # once more at the end; a part alone sees no repeat of an id met in a part before it.
    ids = [*range(200), *range(100, 300), 250]
    rerun: list[list[int]] = []
    original = validate._rerun_parts

    def spy(*args: Any, **kwargs: Any) -> None:
        rerun.append(sorted(args[7]))
        original(*args, **kwargs)

    monkeypatch.setattr(validate, "_rerun_parts", spy)
    if kind == "csv":
        lines = ["type,user.email,externalEventId", *(f"T,a@b.co,id-{n}" for n in ids)]
        path = write_csv(tmp_path / "ids.csv", *lines)
    else:
        records = [event(externalEventId=f"id-{n}") for n in ids]
        if kind == "json":
            path = tmp_path / "ids.json"
            path.write_text("[\n" + ",\n".join(json.dumps(r) for r in records) + "\n]\n")
        else:
            path = write_ndjson(tmp_path / "ids.ndjson", records)
    single = repeats_of(path, 1)
    assert [signal for signal, _ in single] == [*range(200, 300), 400]
    for workers in (2, 3):
        assert repeats_of(path, workers) == single
        assert run(path, EVENTS, workers)[1] == run(path, EVENTS)[1]
    assert went_parallel and all(went_parallel)
    assert rerun and all(parts for parts in rerun)


# --- the command line --------------------------------------------------------------------


def test_the_command_line_judges_events_end_to_end(tmp_path: Path) -> None:
    fresh = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    clean = write_ndjson(tmp_path / "clean.ndjson", [event(occurredAt=fresh) for _ in range(3)])
    code, out, err = run_command(str(clean), "--destination", "attentive")
    assert (code, err) == (0, "")
    assert [json.loads(line) for line in out.splitlines()] == [
        {"summary": {"signals": 3, "valid": 3, "rejected": 0, "errors": 0, "warnings": 0}}
    ]
    # --tier and --app-key are Connect's: ignored.
    bad = write_ndjson(
        tmp_path / "bad.ndjson",
        [event(occurredAt=fresh), event(occurredAt=fresh, type="a|b"), order()],
    )
    result = run_process(str(bad), "--destination", "attentive", "--tier", "pro", "--app-key", "k")
    assert result.returncode == 1, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert lines == [
        {
            "signal": 1,
            "line": 2,
            "path": "type",
            "severity": "error",
            "code": "format",
            "message": lines[0]["message"],
        },
        {
            "signal": 2,
            "line": 3,
            "path": "",
            "severity": "error",
            "code": "wrong_destination",
            "message": lines[1]["message"],
        },
        {"summary": {"signals": 3, "valid": 1, "rejected": 2, "errors": 2, "warnings": 0}},
    ]
    # The same file for Connect judges the events as signals.
    assert run_process(str(bad)).stdout.count('"wrong_destination"') == 2


def test_the_command_line_refuses_an_unreadable_events_file(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "signals.csv", "appKey,identifiableAttributes.email", "k,a@b.co")
    result = run_process(str(path), "--destination", "attentive")
    assert result.returncode == 2
    assert "Acoustic Connect signals" in result.stderr
    assert list(json.loads(result.stdout)) == ["error"]


def test_the_text_report_speaks_of_events(tmp_path: Path) -> None:
    path = write_ndjson(tmp_path / "events.ndjson", [event(type="a|b")])
    code, out, _ = run_command(str(path), "--destination", "attentive", "--report", "text")
    assert code == 1
    assert "1 event checked as Attentive custom events." in out
    assert "(Attentive would refuse them)" in out
    assert "event 0 (line 1) error format at type" in out


def test_the_help_says_what_attentive_ignores() -> None:
    result = run_process("--help")
    text = " ".join(result.stdout.split())
    assert "--destination {connect,attentive}" in text
    assert text.count("ignored with --destination attentive") == 2
