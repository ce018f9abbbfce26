"""One small test per rule of SPEC §2–§4: each asserts the exact (path, severity, code)
triples the engine reports for a clean record with one thing broken, so removing or
loosening a rule fails a test."""

from __future__ import annotations

import copy
import json
import math
from typing import Any

import pycountry
import pytest

from signals_app.validation.engine import check_signal
from signals_app.validation.fastpath import FastPath
from signals_app.validation.findings import Summary
from signals_app.validation.schema import SIGNAL_TYPES, Kind, Tier
from tests.seed_examples import (
    APP_KEY,
    CONTACT_KEY,
    EMAIL,
    MINIMAL_ITEM,
    minimal_record,
)

Triple = tuple[str, str, str]

# SPEC §3's table, copied by hand so the schema table itself is checked against the spec.
SPEC_REQUIRED: dict[str, set[str]] = {
    "addToCart": {"currency", "itemQuantity", "productId", "productName", "unitPrice"},
    "browseAbandonment": {"currency"},
    "cartAbandonment": {"abandonedCartValue", "currency"},
    "error": {"errorText", "errorType"},
    "identification": {"identifierName", "identifierValue"},
    "onSiteSearch": {"numberOfResults", "searchTerm"},
    "order": {"currency", "orderId"},
    "pageView": {"url"},
    "productConfiguration": {"currency", "productId", "productName"},
    "productView": {"productId", "productName"},
    "richMediaInteraction": {"mediaId"},
}
SPEC_PRO_TYPES = {"addToCart", "identification", "order"}
SPEC_PREMIUM_TYPES = set(SPEC_REQUIRED) - SPEC_PRO_TYPES
SPEC_COMMON_OPTIONAL = {
    "category",
    "description",
    "effect",
    "name",
    "signalCustomAttributes",
    "signalTimestamp",
}
SPEC_INTEGER_FIELDS = {"itemQuantity", "numberOfResults", "inventoryQuantity"}

BLANKS = ["", " ", "\t\n", "\u00a0\u2003"]
UNICODE_BLANK = "\u00a0\u2003"

ITEM_ARRAYS = [
    ("order", "orderedItems"),
    ("cartAbandonment", "abandonedItems"),
    ("browseAbandonment", "abandonedItems"),
]


def triples(
    record: Any, *, tier: Tier = "ultimate", default_app_key: str | None = None
) -> list[Triple]:
    """The engine's issues as (path, severity, code); on the way, the fast path must not
    call a record clean that the engine finds a problem in (tests/test_fuzz.py does the
    same with generated records)."""
    check = check_signal(record, tier=tier, default_app_key=default_app_key)
    fast = FastPath(tier=tier, default_app_key=default_app_key)
    verdicts = [fast.check_value(record), fast.check_json(json.dumps(record).encode())]
    fast.prefer_wrapper = True
    verdicts += [fast.check_value(record), fast.check_json(json.dumps(record).encode())]
    for verdict in verdicts:
        if verdict is not None:
            assert check.issues == [], f"the fast path calls this clean: {record!r}"
            assert verdict == (check.signal_type, check.contact_key_only)
    return [(i.path, i.severity, str(i.code)) for i in check.issues]


def messages(record: Any, *, tier: Tier = "ultimate") -> list[str]:
    return [i.message for i in check_signal(record, tier=tier).issues]


def record_of(signal_type: str = "pageView", **content: Any) -> dict[str, Any]:
    return minimal_record(signal_type, **content)


def with_ids(**attributes: Any) -> dict[str, Any]:
    record = record_of("order")
    record["identifiableAttributes"] = attributes
    return record


def without(record: dict[str, Any], *path: str) -> dict[str, Any]:
    record = copy.deepcopy(record)
    target = record
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    return record


def with_item(signal_type: str, array: str, **fields: Any) -> dict[str, Any]:
    item = {**MINIMAL_ITEM, **fields}
    return record_of(signal_type, **{array: [item]})


def required_fields_in_schema() -> list[tuple[str, str]]:
    return [
        (type_name, field_name)
        for type_name, signal_type in SIGNAL_TYPES.items()
        for field_name, field in signal_type.fields.items()
        if field.required
    ]


def optional_fields_in_schema() -> list[tuple[str, str]]:
    return [
        (type_name, field_name)
        for type_name, signal_type in SIGNAL_TYPES.items()
        for field_name, field in signal_type.fields.items()
        if not field.required
    ]


SPEC_REQUIRED_PAIRS = [(t, f) for t, fields in SPEC_REQUIRED.items() for f in sorted(fields)]


def test_the_minimal_records_are_clean() -> None:
    for signal_type in SIGNAL_TYPES:
        assert triples(record_of(signal_type)) == [], signal_type


# --- The schema table against SPEC §3 ----------------------------------------------------


def test_the_schema_has_exactly_the_eleven_types_of_the_spec() -> None:
    assert set(SIGNAL_TYPES) == set(SPEC_REQUIRED)


@pytest.mark.parametrize("signal_type", sorted(SPEC_REQUIRED))
def test_the_schema_requires_exactly_the_fields_the_spec_requires(signal_type: str) -> None:
    fields = SIGNAL_TYPES[signal_type].fields
    assert {name for name, f in fields.items() if f.required} == SPEC_REQUIRED[signal_type]


@pytest.mark.parametrize("signal_type", sorted(SPEC_REQUIRED))
def test_every_type_accepts_the_common_optional_fields(signal_type: str) -> None:
    fields = SIGNAL_TYPES[signal_type].fields
    for name in SPEC_COMMON_OPTIONAL:
        assert name in fields
        assert not fields[name].required


@pytest.mark.parametrize("signal_type", sorted(SPEC_REQUIRED))
def test_the_schema_tiers_are_the_spec_tiers(signal_type: str) -> None:
    tiers = SIGNAL_TYPES[signal_type].tiers
    expected = (
        {"pro", "premium", "ultimate"}
        if signal_type in SPEC_PRO_TYPES
        else {
            "premium",
            "ultimate",
        }
    )
    assert tiers == expected


def test_the_integer_fields_of_the_spec_are_integers_in_the_schema() -> None:
    seen = set()
    for signal_type in SIGNAL_TYPES.values():
        for name, field in signal_type.fields.items():
            if name in SPEC_INTEGER_FIELDS:
                assert field.kind is Kind.INTEGER, (signal_type.name, name)
                seen.add(name)
    assert seen == SPEC_INTEGER_FIELDS


# --- Envelope (SPEC §2) ---------------------------------------------------------------


def test_it_requires_an_app_key() -> None:
    assert triples(without(record_of(), "appKey")) == [("appKey", "error", "required")]


def test_a_null_app_key_is_a_missing_one() -> None:
    record = record_of()
    record["appKey"] = None
    assert triples(record) == [("appKey", "error", "required")]


def test_the_default_app_key_fills_a_missing_one() -> None:
    assert triples(without(record_of(), "appKey"), default_app_key=APP_KEY) == []


@pytest.mark.parametrize("blank", BLANKS)
def test_it_rejects_a_blank_app_key(blank: str) -> None:
    record = record_of()
    record["appKey"] = blank
    assert triples(record) == [("appKey", "error", "required")]
    # The default fills a missing key, not a broken one.
    assert triples(record, default_app_key=APP_KEY) == [("appKey", "error", "required")]


def test_it_rejects_an_app_key_that_is_not_a_string() -> None:
    record = record_of()
    record["appKey"] = 12345
    assert triples(record) == [("appKey", "error", "type")]


def test_a_session_id_that_is_not_a_string_is_a_warning() -> None:
    record = record_of()
    record["sessionId"] = 42
    assert triples(record) == [("sessionId", "warning", "type")]


def test_a_test_flag_that_is_not_a_boolean_is_a_warning() -> None:
    record = record_of()
    record["test"] = "true"
    assert triples(record) == [("test", "warning", "type")]
    record["test"] = False
    assert triples(record) == []


def test_it_requires_signal_content() -> None:
    assert triples(without(record_of(), "signalContent")) == [
        ("signalContent", "error", "required")
    ]


@pytest.mark.parametrize("content", ["pageView", [], 3, True], ids=repr)
def test_it_rejects_signal_content_that_is_not_an_object(content: Any) -> None:
    record = record_of()
    record["signalContent"] = content
    assert triples(record) == [("signalContent", "error", "type")]


def test_it_requires_a_signal_type() -> None:
    assert triples(without(record_of(), "signalContent", "signalType")) == [
        ("signalContent.signalType", "error", "required")
    ]


def test_it_rejects_a_signal_type_that_is_not_a_string() -> None:
    record = record_of()
    record["signalContent"]["signalType"] = 7
    assert triples(record) == [("signalContent.signalType", "error", "type")]


@pytest.mark.parametrize("signal_type", ["pageview", "emailOpen", "purchase", ""])
def test_it_rejects_an_unknown_signal_type(signal_type: str) -> None:
    record = record_of()
    record["signalContent"]["signalType"] = signal_type
    assert triples(record) == [("signalContent.signalType", "error", "enum")]


def test_an_unknown_signal_type_suggests_the_close_one() -> None:
    record = record_of()
    record["signalContent"]["signalType"] = "pageview"
    assert '"pageView"' in messages(record)[0]


@pytest.mark.parametrize("record", [[], "signal", 3, None, True], ids=repr)
def test_it_rejects_a_record_that_is_not_an_object(record: Any) -> None:
    assert triples(record) == [("", "error", "type")]


# --- identifiableAttributes (SPEC §2) -------------------------------------------------


def test_it_requires_identifiable_attributes() -> None:
    assert triples(without(record_of(), "identifiableAttributes")) == [
        ("identifiableAttributes", "error", "required")
    ]


def test_it_rejects_empty_identifiable_attributes() -> None:
    assert triples(with_ids()) == [("identifiableAttributes", "error", "required")]


@pytest.mark.parametrize("value", ["AAUN-132417508", ["AAUN-132417508"], 5], ids=repr)
def test_it_rejects_identifiable_attributes_that_are_not_an_object(value: Any) -> None:
    record = record_of()
    record["identifiableAttributes"] = value
    assert triples(record) == [("identifiableAttributes", "error", "type")]


def test_an_unknown_attribute_alone_is_no_identifiable_attribute() -> None:
    record = with_ids(phone="+14035549090")
    assert triples(record) == [
        ("identifiableAttributes.phone", "warning", "unknown_field"),
        ("identifiableAttributes", "error", "required"),
    ]
    assert '"sms"' in messages(record)[0]


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("contactKey", CONTACT_KEY),
        ("email", EMAIL),
        ("email", "test@gmail.com"),
        ("sms", "+14035549090"),
        ("sms", "+29012345"),  # 8 digits, the shortest E.164 number
        ("sms", "+491511234567890"),  # 15 digits, the longest
        ("whatsapp", "+37455190000"),
        ("whatsapp", "+13115552368"),  # fictional 555 number (Attentive's example)
    ],
)
def test_it_accepts_each_kind_of_identifiable_attribute(key: str, value: str) -> None:
    assert triples(with_ids(**{key: value})) == []


def test_a_contact_key_alone_is_flagged() -> None:
    assert check_signal(with_ids(contactKey=CONTACT_KEY)).contact_key_only is True
    assert check_signal(with_ids(email=EMAIL)).contact_key_only is False
    assert check_signal(with_ids(sms="+14035549090")).contact_key_only is False
    both = check_signal(with_ids(contactKey=CONTACT_KEY, email=EMAIL))
    assert both.contact_key_only is False


@pytest.mark.parametrize(
    "email",
    [
        "jane.doe",
        "jane.doe@",
        "@example.com",
        "jane doe@example.com",
        "jane.doe@example",  # no dot in the domain
        "jane..doe@example.com",
        "jane.doe@example..com",
        "jane.doe@localhost",
        "jane.doe@example.test",  # special-use domain
        "[email\u00a0protected]",  # the documents' obfuscation is not an address
        "[email protected]",
        "",
    ],
)
def test_it_rejects_an_invalid_email(email: str) -> None:
    assert triples(with_ids(email=email)) == [("identifiableAttributes.email", "error", "format")]


@pytest.mark.parametrize("key", ["sms", "whatsapp"])
@pytest.mark.parametrize(
    "phone",
    [
        "14035549090",  # no +
        "+1 403 554 9090",  # spaces
        "+1-403-554-9090",
        "+1403554909x",
        "+1234567",  # 7 digits
        "+4915112345678901",  # 16 digits
        "+0123456789",  # no country code starts with 0
        "+1403554909",  # too short for +1: impossible
        "+12345678",  # a local number without its area code is no E.164 number
        "+999123456789",  # no such country code
        "+68312345",  # too long for Niue (+683)
    ],
)
def test_it_rejects_an_invalid_phone_number(key: str, phone: str) -> None:
    assert triples(with_ids(**{key: phone})) == [
        (f"identifiableAttributes.{key}", "error", "format")
    ]


@pytest.mark.parametrize("key", ["contactKey", "email", "sms", "whatsapp"])
def test_it_rejects_an_identifiable_attribute_that_is_not_a_string(key: str) -> None:
    assert triples(with_ids(**{key: 14035549090})) == [
        (f"identifiableAttributes.{key}", "error", "type")
    ]


@pytest.mark.parametrize("key", ["contactKey", "email", "sms", "whatsapp"])
def test_it_rejects_a_null_identifiable_attribute(key: str) -> None:
    assert triples(with_ids(**{key: None})) == [(f"identifiableAttributes.{key}", "error", "type")]


@pytest.mark.parametrize("blank", BLANKS)
def test_it_rejects_a_blank_contact_key(blank: str) -> None:
    assert triples(with_ids(contactKey=blank)) == [
        ("identifiableAttributes.contactKey", "error", "required")
    ]


@pytest.mark.parametrize(
    "attributes",
    [
        {"contactKey": CONTACT_KEY, "email": EMAIL},
        {"email": EMAIL, "sms": "+14035549090"},
        {"sms": "+14035549090", "whatsapp": "+14035549090"},
        {"contactKey": CONTACT_KEY, "email": EMAIL, "sms": "+37455190000", "whatsapp": "+1403"},
    ],
    ids=["contactKey+email", "email+sms", "sms+whatsapp", "all-four"],
)
def test_more_than_one_identifiable_attribute_is_ambiguous(attributes: dict[str, str]) -> None:
    expected = [("identifiableAttributes", "warning", "ambiguous")]
    if attributes.get("whatsapp") == "+1403":
        expected.insert(0, ("identifiableAttributes.whatsapp", "error", "format"))
    assert triples(with_ids(**attributes)) == expected


def test_an_unknown_field_in_identifiable_attributes_is_a_warning() -> None:
    assert triples(with_ids(contactKey=CONTACT_KEY, userId="42")) == [
        ("identifiableAttributes.userId", "warning", "unknown_field")
    ]


# --- Required fields of each type (SPEC §3) -------------------------------------------


@pytest.mark.parametrize(("signal_type", "field"), SPEC_REQUIRED_PAIRS)
def test_it_requires_each_field_the_spec_requires(signal_type: str, field: str) -> None:
    record = without(record_of(signal_type), "signalContent", field)
    assert triples(record) == [(f"signalContent.{field}", "error", "required")]


@pytest.mark.parametrize(("signal_type", "field"), required_fields_in_schema())
def test_it_requires_each_field_the_schema_requires(signal_type: str, field: str) -> None:
    record = without(record_of(signal_type), "signalContent", field)
    assert triples(record) == [(f"signalContent.{field}", "error", "required")]


@pytest.mark.parametrize(("signal_type", "field"), SPEC_REQUIRED_PAIRS)
def test_a_null_required_field_is_missing(signal_type: str, field: str) -> None:
    record = record_of(signal_type, **{field: None})
    assert triples(record) == [(f"signalContent.{field}", "error", "required")]


@pytest.mark.parametrize(("signal_type", "field"), SPEC_REQUIRED_PAIRS)
def test_a_required_field_of_the_wrong_type_is_an_error(signal_type: str, field: str) -> None:
    record = record_of(signal_type, **{field: ["x"]})
    assert triples(record) == [(f"signalContent.{field}", "error", "type")]


@pytest.mark.parametrize(("signal_type", "field"), optional_fields_in_schema())
def test_an_optional_field_of_the_wrong_type_is_a_warning(signal_type: str, field: str) -> None:
    record = record_of(signal_type, **{field: {"x": 1}})
    assert triples(record) == [(f"signalContent.{field}", "warning", "type")]


@pytest.mark.parametrize(("signal_type", "field"), optional_fields_in_schema())
def test_a_null_optional_field_is_a_warning(signal_type: str, field: str) -> None:
    record = record_of(signal_type, **{field: None})
    assert triples(record) == [(f"signalContent.{field}", "warning", "type")]


# --- Tiers (SPEC §3) ---------------------------------------------------------------------


@pytest.mark.parametrize("signal_type", sorted(SPEC_PREMIUM_TYPES))
def test_a_premium_type_is_not_in_a_pro_subscription(signal_type: str) -> None:
    assert triples(record_of(signal_type), tier="pro") == [
        ("signalContent.signalType", "error", "not_in_subscription")
    ]


@pytest.mark.parametrize("signal_type", sorted(SPEC_PRO_TYPES))
def test_a_pro_type_is_in_a_pro_subscription(signal_type: str) -> None:
    assert triples(record_of(signal_type), tier="pro") == []


@pytest.mark.parametrize("tier", ["premium", "ultimate"])
@pytest.mark.parametrize("signal_type", sorted(SPEC_REQUIRED))
def test_every_type_is_in_premium_and_ultimate(signal_type: str, tier: Tier) -> None:
    assert triples(record_of(signal_type), tier=tier) == []


def test_a_premium_type_in_pro_is_still_checked_field_by_field() -> None:
    record = without(record_of("pageView"), "signalContent", "url")
    assert triples(record, tier="pro") == [
        ("signalContent.signalType", "error", "not_in_subscription"),
        ("signalContent.url", "error", "required"),
    ]


# --- Strings (SPEC §3) ---------------------------------------------------------------------


@pytest.mark.parametrize("blank", BLANKS)
@pytest.mark.parametrize(
    ("signal_type", "field"),
    [
        ("pageView", "url"),
        ("order", "orderId"),
        ("addToCart", "productName"),
        ("error", "errorText"),
    ],
)
def test_it_rejects_a_blank_required_string(signal_type: str, field: str, blank: str) -> None:
    assert triples(record_of(signal_type, **{field: blank})) == [
        (f"signalContent.{field}", "error", "required")
    ]


@pytest.mark.parametrize("blank", BLANKS)
def test_a_blank_optional_string_is_fine(blank: str) -> None:
    assert triples(record_of("pageView", pageGroup=blank, description=blank)) == []


def test_it_rejects_a_required_string_that_is_a_number() -> None:
    assert triples(record_of("order", orderId=2937)) == [("signalContent.orderId", "error", "type")]


def test_a_name_of_256_characters_is_fine() -> None:
    assert triples(record_of(name="n" * 256)) == []
    assert triples(record_of(name="😀" * 256)) == []


@pytest.mark.parametrize("name", ["n" * 257, "😀" * 257, "é" * 300])
def test_a_name_over_256_characters_is_a_warning(name: str) -> None:
    assert triples(record_of(name=name)) == [("signalContent.name", "warning", "max_length")]


# --- Numbers (SPEC §3) ---------------------------------------------------------------------


@pytest.mark.parametrize("boolean", [True, False])
@pytest.mark.parametrize(
    ("signal_type", "field", "severity"),
    [
        ("addToCart", "itemQuantity", "error"),
        ("addToCart", "unitPrice", "error"),
        ("cartAbandonment", "abandonedCartValue", "error"),
        ("onSiteSearch", "numberOfResults", "error"),
        ("addToCart", "discount", "warning"),
        ("order", "orderValue", "warning"),
        ("productView", "inventoryQuantity", "warning"),
    ],
)
def test_a_boolean_is_never_a_number(
    signal_type: str, field: str, severity: str, boolean: bool
) -> None:
    assert triples(record_of(signal_type, **{field: boolean})) == [
        (f"signalContent.{field}", severity, "type")
    ]


def test_it_rejects_a_boolean_quantity() -> None:
    assert triples(record_of("addToCart", itemQuantity=True)) == [
        ("signalContent.itemQuantity", "error", "type")
    ]


@pytest.mark.parametrize("value", ["39.99", "2"])
def test_a_number_written_as_a_string_is_not_a_number(value: str) -> None:
    assert triples(record_of("addToCart", unitPrice=value, itemQuantity=value)) == [
        ("signalContent.itemQuantity", "error", "type"),
        ("signalContent.unitPrice", "error", "type"),
    ]


@pytest.mark.parametrize(
    ("signal_type", "field"),
    [
        ("addToCart", "itemQuantity"),
        ("onSiteSearch", "numberOfResults"),
        ("productView", "inventoryQuantity"),
        ("productConfiguration", "inventoryQuantity"),
    ],
)
@pytest.mark.parametrize("value", [2, 2.0, 0, 10**30, 1e20])
def test_an_integer_field_takes_a_number_without_fractional_part(
    signal_type: str, field: str, value: float
) -> None:
    assert triples(record_of(signal_type, **{field: value})) == []


@pytest.mark.parametrize(
    ("signal_type", "field", "severity"),
    [
        ("addToCart", "itemQuantity", "error"),
        ("onSiteSearch", "numberOfResults", "error"),
        ("productView", "inventoryQuantity", "warning"),
        ("productConfiguration", "inventoryQuantity", "warning"),
    ],
)
@pytest.mark.parametrize("value", [2.5, 0.1, -1.5])
def test_an_integer_field_rejects_a_fractional_part(
    signal_type: str, field: str, severity: str, value: float
) -> None:
    assert triples(record_of(signal_type, **{field: value})) == [
        (f"signalContent.{field}", severity, "type")
    ]


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan], ids=repr)
@pytest.mark.parametrize(
    ("signal_type", "field", "severity"),
    [
        ("addToCart", "unitPrice", "error"),
        ("addToCart", "itemQuantity", "error"),
        ("order", "orderValue", "warning"),
        ("productView", "msrp", "warning"),
    ],
)
def test_a_number_must_be_finite(signal_type: str, field: str, severity: str, value: float) -> None:
    assert triples(record_of(signal_type, **{field: value})) == [
        (f"signalContent.{field}", severity, "type")
    ]


def test_negative_and_zero_numbers_are_numbers() -> None:
    assert triples(record_of("order", orderDiscount=-5, orderValue=0, orderTax=0.0)) == []


# --- Currency (SPEC §3) ----------------------------------------------------------------------


@pytest.mark.parametrize("code", ["USD", "EUR", "GBP", "JPY", "XXX"])
def test_it_accepts_an_iso_4217_currency(code: str) -> None:
    # XXX ("no currency involved") is in ISO 4217 as pycountry ships it.
    assert pycountry.currencies.get(alpha_3=code) is not None
    assert triples(record_of("order", currency=code)) == []


def test_it_accepts_every_currency_of_the_maintained_list() -> None:
    for currency in pycountry.currencies:
        assert triples(record_of("order", currency=currency.alpha_3)) == [], currency.alpha_3


@pytest.mark.parametrize("code", ["usd", "Usd"])
def test_a_lowercase_currency_is_an_error_with_a_suggestion(code: str) -> None:
    record = record_of("order", currency=code)
    assert triples(record) == [("signalContent.currency", "error", "enum")]
    assert 'did you mean "USD"' in messages(record)[0]


@pytest.mark.parametrize("code", ["ABC", "US", "USDD", "$", "dollar", ""])
def test_it_rejects_a_code_that_is_not_iso_4217(code: str) -> None:
    assert triples(record_of("order", currency=code)) == [
        ("signalContent.currency", "error", "enum")
    ]


def test_it_rejects_a_currency_that_is_not_a_string() -> None:
    assert triples(record_of("order", currency=840)) == [
        ("signalContent.currency", "error", "type")
    ]


def test_an_invalid_optional_currency_is_a_warning() -> None:
    assert triples(record_of("productView", currency="usd")) == [
        ("signalContent.currency", "warning", "enum")
    ]


# --- Date-times (SPEC §3) ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "timestamp",
    [
        "2025-08-31T08:29:30.001Z",
        "2025-08-31T08:29:30Z",
        "2025-08-31T10:29:30.001+02:00",
        "2025-08-31T03:29:30-05:00",
    ],
)
def test_it_accepts_a_timestamp_with_a_time_zone(timestamp: str) -> None:
    assert triples(record_of(signalTimestamp=timestamp)) == []


@pytest.mark.parametrize("timestamp", ["2025-08-31T08:29:30.001", "2025-08-31T08:29:30"])
def test_a_timestamp_without_a_time_zone_is_a_warning(timestamp: str) -> None:
    record = record_of(signalTimestamp=timestamp)
    assert triples(record) == [("signalContent.signalTimestamp", "warning", "format")]
    assert "time zone" in messages(record)[0]


@pytest.mark.parametrize(
    "timestamp",
    ["yesterday", "", "2025-13-01T00:00:00Z", "2025-02-30T00:00:00Z", "31/08/2025 08:29", "Z"],
)
def test_a_timestamp_that_is_not_a_date_time_is_a_warning(timestamp: str) -> None:
    assert triples(record_of(signalTimestamp=timestamp)) == [
        ("signalContent.signalTimestamp", "warning", "format")
    ]


def test_a_timestamp_that_is_a_number_is_a_warning() -> None:
    assert triples(record_of(signalTimestamp=1756628970)) == [
        ("signalContent.signalTimestamp", "warning", "type")
    ]


def test_it_accepts_a_catalog_date() -> None:
    assert triples(record_of("productView", dateAdded="2025-04-12 08:29:30.001")) == []


@pytest.mark.parametrize(
    "date",
    [
        "2025-13-12 08:29:30.001",  # month 13
        "2025-02-30 08:29:30.001",
        "2025-04-12 24:29:30.001",
        "2025-04-12T08:29:30.001",
        "2025-04-12 08:29:30",
        "2025-04-12 08:29:30.001Z",
        "2025-04-12 08:29:30.0012",
        "25-04-12 08:29:30.001",
        "",
    ],
)
def test_a_catalog_date_must_be_exactly_yyyy_mm_dd_hh_mm_ss_sss(date: str) -> None:
    assert triples(record_of("productView", dateAdded=date)) == [
        ("signalContent.dateAdded", "warning", "format")
    ]


# --- identifierValue fits identifierName (SPEC §3) ------------------------------------------


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("email", EMAIL),
        ("EMAIL", EMAIL),
        ("sms", "+14035549090"),
        ("SMS", "+37455190000"),
        ("contactKey", CONTACT_KEY),
        ("contactKey", "not an e-mail, not a phone"),
    ],
)
def test_an_identifier_value_that_fits_its_name_is_fine(name: str, value: str) -> None:
    assert triples(record_of("identification", identifierName=name, identifierValue=value)) == []


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("email", "jane.doe"),
        ("email", "+14035549090"),
        ("Email", "[email protected]"),
        ("sms", "14035549090"),
        ("sms", EMAIL),
        ("sms", "+1403554909"),
    ],
)
def test_an_identifier_value_that_does_not_fit_its_name_is_an_error(name: str, value: str) -> None:
    assert triples(record_of("identification", identifierName=name, identifierValue=value)) == [
        ("signalContent.identifierValue", "error", "format")
    ]


@pytest.mark.parametrize("name", ["email", "sms", "contactKey"])
@pytest.mark.parametrize("blank", BLANKS)
def test_a_blank_identifier_value_is_missing(name: str, blank: str) -> None:
    assert triples(record_of("identification", identifierName=name, identifierValue=blank)) == [
        ("signalContent.identifierValue", "error", "required")
    ]


# --- signalCustomAttributes (SPEC §3) -------------------------------------------------------


def test_custom_attributes_with_string_name_and_value_are_fine() -> None:
    attributes = [{"name": "loyaltyTier", "value": "gold"}, {"name": "store", "value": "42"}]
    assert triples(record_of(signalCustomAttributes=attributes)) == []
    assert triples(record_of(signalCustomAttributes=[])) == []


@pytest.mark.parametrize(
    ("attributes", "expected"),
    [
        ("gold", [("signalContent.signalCustomAttributes", "warning", "type")]),
        (["gold"], [("signalContent.signalCustomAttributes[0]", "warning", "type")]),
        (
            [{"name": "tier", "value": "gold"}, {"name": 1, "value": "gold"}],
            [("signalContent.signalCustomAttributes[1].name", "warning", "type")],
        ),
        (
            [{"name": "tier", "value": 3}],
            [("signalContent.signalCustomAttributes[0].value", "warning", "type")],
        ),
        (
            [{"name": "tier"}],
            [("signalContent.signalCustomAttributes[0].value", "warning", "required")],
        ),
        (
            [{"value": "gold"}],
            [("signalContent.signalCustomAttributes[0].name", "warning", "required")],
        ),
        (
            [{"name": " ", "value": "gold"}],
            [("signalContent.signalCustomAttributes[0].name", "warning", "required")],
        ),
        (
            [{"name": "tier", "value": "gold", "type": "string"}],
            [("signalContent.signalCustomAttributes[0].type", "warning", "unknown_field")],
        ),
    ],
    ids=[
        "not-array",
        "entry-not-object",
        "name-not-string",
        "value-not-string",
        "value-missing",
        "name-missing",
        "name-blank",
        "unknown-key",
    ],
)
def test_broken_custom_attributes_are_warnings(attributes: Any, expected: list[Triple]) -> None:
    assert triples(record_of(signalCustomAttributes=attributes)) == expected


# --- Enumerations (SPEC §3) ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("signal_type", "field", "value"),
    [
        ("pageView", "effect", "positive"),
        ("pageView", "effect", "POSITIVE"),
        ("pageView", "effect", "Negative"),
        ("pageView", "category", "Behavior"),
        ("pageView", "category", "behavior"),
        ("pageView", "category", "BEHAVIOR"),
        ("richMediaInteraction", "interactionType", "launch"),
        ("richMediaInteraction", "interactionType", "LAUNCH"),
        ("richMediaInteraction", "interactionType", "Enlarge"),
        ("richMediaInteraction", "interactionType", "cOnTiNuE"),
        ("cartAbandonment", "abandonmentReason", "USER_ERRORS"),
        ("cartAbandonment", "abandonmentReason", "rage_click"),
        ("browseAbandonment", "abandonmentReason", "Excessive_Scrolling"),
        ("error", "errorType", "user"),
        ("error", "errorType", "USER"),
        ("error", "errorType", "Application"),
        ("identification", "identifierName", "EMAIL"),
        ("identification", "identifierName", "Email"),
    ],
)
def test_enumerations_are_matched_case_insensitively(
    signal_type: str, field: str, value: str
) -> None:
    assert triples(record_of(signal_type, **{field: value})) == []


@pytest.mark.parametrize("name", ["contactKey", "contactkey", "CONTACTKEY"])
def test_identifier_name_contact_key_in_any_case(name: str) -> None:
    record = record_of("identification", identifierName=name, identifierValue=CONTACT_KEY)
    assert triples(record) == []


@pytest.mark.parametrize(
    ("signal_type", "field", "value", "severity"),
    [
        ("pageView", "effect", "neutral", "warning"),
        ("pageView", "category", "Behaviour", "warning"),
        ("pageView", "category", "Marketing", "warning"),
        ("richMediaInteraction", "interactionType", "play", "warning"),
        ("cartAbandonment", "abandonmentReason", "TIMEOUT", "warning"),
        ("browseAbandonment", "abandonmentReason", "RAGE CLICK", "warning"),
        ("error", "errorType", "fatal", "error"),
        ("error", "errorType", "", "error"),
        ("identification", "identifierName", "phone", "error"),
        ("identification", "identifierName", "whatsapp", "error"),
    ],
)
def test_a_value_outside_an_enumeration_is_reported(
    signal_type: str, field: str, value: str, severity: str
) -> None:
    assert triples(record_of(signal_type, **{field: value})) == [
        (f"signalContent.{field}", severity, "enum")
    ]


def test_an_enumeration_suggests_the_canonical_spelling() -> None:
    assert '"Behavior"' in messages(record_of(category="Behaviour"))[0]


@pytest.mark.parametrize(
    ("signal_type", "field", "severity"),
    [("pageView", "effect", "warning"), ("error", "errorType", "error")],
)
def test_an_enumeration_value_that_is_not_a_string_is_a_type_problem(
    signal_type: str, field: str, severity: str
) -> None:
    assert triples(record_of(signal_type, **{field: 1})) == [
        (f"signalContent.{field}", severity, "type")
    ]


# --- Items of orderedItems / abandonedItems (SPEC §3–§4) ----------------------------------


@pytest.mark.parametrize(("signal_type", "array"), ITEM_ARRAYS)
def test_a_complete_item_is_fine(signal_type: str, array: str) -> None:
    full = {
        **MINIMAL_ITEM,
        "currency": "USD",
        "discount": 0,
        "imageUrls": ["https://www.example.com/a.jpg"],
        "inventoryQuantity": 24,
        "itemQuantity": 2,
        "productCategory": "Tools",
        "productCategoryId": "T-1",
        "productDescription": "A brush",
        "productUrls": ["https://www.example.com/brush"],
        "promotionId": "SUMMER2025",
        "shoppingCartUrl": "https://www.example.com/cart",
        "virtualCategory": "",
    }
    assert triples(record_of(signal_type, **{array: [full, MINIMAL_ITEM]})) == []
    assert triples(record_of(signal_type, **{array: []})) == []


@pytest.mark.parametrize("field", ["productId", "productName", "unitPrice"])
@pytest.mark.parametrize(("signal_type", "array"), ITEM_ARRAYS)
def test_an_item_without_a_required_field_rejects_the_signal(
    signal_type: str, array: str, field: str
) -> None:
    item = {k: v for k, v in MINIMAL_ITEM.items() if k != field}
    record = record_of(signal_type, **{array: [MINIMAL_ITEM, item]})
    assert triples(record) == [(f"signalContent.{array}[1].{field}", "error", "required")]
    assert check_signal(record).rejected


@pytest.mark.parametrize(
    ("field", "value", "code"),
    [
        ("productId", 42, "type"),
        ("productId", "", "required"),
        ("productName", UNICODE_BLANK, "required"),
        ("productName", None, "required"),
        ("unitPrice", "9.49", "type"),
        ("unitPrice", True, "type"),
        ("unitPrice", math.inf, "type"),
    ],
)
@pytest.mark.parametrize(("signal_type", "array"), ITEM_ARRAYS)
def test_an_item_with_a_broken_required_field_rejects_the_signal(
    signal_type: str, array: str, field: str, value: Any, code: str
) -> None:
    assert triples(with_item(signal_type, array, **{field: value})) == [
        (f"signalContent.{array}[0].{field}", "error", code)
    ]


@pytest.mark.parametrize(
    ("field", "value", "path", "code"),
    [
        ("itemQuantity", 2.5, "itemQuantity", "type"),
        ("itemQuantity", True, "itemQuantity", "type"),
        ("inventoryQuantity", "24", "inventoryQuantity", "type"),
        ("currency", "usd", "currency", "enum"),
        ("discount", "7", "discount", "type"),
        ("imageUrls", "https://www.example.com/a.jpg", "imageUrls", "type"),
        ("productUrls", ["https://www.example.com/a", 3], "productUrls[1]", "type"),
        ("virtualCategory", 1, "virtualCategory", "type"),
        ("promotionId", None, "promotionId", "type"),
    ],
)
@pytest.mark.parametrize(("signal_type", "array"), ITEM_ARRAYS)
def test_an_item_with_a_broken_optional_field_is_a_warning(
    signal_type: str, array: str, field: str, value: Any, path: str, code: str
) -> None:
    assert triples(with_item(signal_type, array, **{field: value})) == [
        (f"signalContent.{array}[0].{path}", "warning", code)
    ]


@pytest.mark.parametrize("item", ["AC-DBL-BRSH-6", 3, None, ["AC-DBL-BRSH-6"]], ids=repr)
@pytest.mark.parametrize(("signal_type", "array"), ITEM_ARRAYS)
def test_an_item_that_is_not_an_object_rejects_the_signal(
    signal_type: str, array: str, item: Any
) -> None:
    record = record_of(signal_type, **{array: [MINIMAL_ITEM, item]})
    assert triples(record) == [(f"signalContent.{array}[1]", "error", "type")]


@pytest.mark.parametrize(("signal_type", "array"), ITEM_ARRAYS)
def test_an_items_quantity_is_unknown_and_suggests_item_quantity(
    signal_type: str, array: str
) -> None:
    record = with_item(signal_type, array, quantity=2)
    assert triples(record) == [(f"signalContent.{array}[0].quantity", "warning", "unknown_field")]
    assert '"itemQuantity"' in messages(record)[0]


@pytest.mark.parametrize("value", [{"productId": "x"}, "items", 3], ids=repr)
@pytest.mark.parametrize(("signal_type", "array"), ITEM_ARRAYS)
def test_items_that_are_not_an_array_are_a_warning(
    signal_type: str, array: str, value: Any
) -> None:
    assert triples(record_of(signal_type, **{array: value})) == [
        (f"signalContent.{array}", "warning", "type")
    ]


def test_several_broken_items_are_each_reported_at_their_position() -> None:
    items = [MINIMAL_ITEM, {"productId": "x", "productName": "y"}, 5, {**MINIMAL_ITEM, "sku": 1}]
    assert triples(record_of("order", orderedItems=items)) == [
        ("signalContent.orderedItems[1].unitPrice", "error", "required"),
        ("signalContent.orderedItems[2]", "error", "type"),
        ("signalContent.orderedItems[3].sku", "warning", "unknown_field"),
    ]


# --- Unknown fields (SPEC §4) -------------------------------------------------------------


def test_an_unknown_envelope_field_is_a_warning() -> None:
    record = record_of()
    record["userId"] = "42"
    assert triples(record) == [("userId", "warning", "unknown_field")]


def test_an_unknown_content_field_is_a_warning() -> None:
    assert triples(record_of(pageTitle="Tools")) == [
        ("signalContent.pageTitle", "warning", "unknown_field")
    ]


def test_a_field_of_another_type_is_an_unknown_field_that_says_so() -> None:
    record = record_of("pageView", orderId="02937-2025-XIA")
    assert triples(record) == [("signalContent.orderId", "warning", "unknown_field")]
    assert "other signal types" in messages(record)[0]


def test_an_unknown_item_field_is_a_warning() -> None:
    assert triples(with_item("order", "orderedItems", color="white")) == [
        ("signalContent.orderedItems[0].color", "warning", "unknown_field")
    ]


def test_a_string_list_with_a_non_string_is_a_warning_at_the_element() -> None:
    assert triples(record_of("productView", tags=["paint", 3, "brush", None])) == [
        ("signalContent.tags[1]", "warning", "type"),
        ("signalContent.tags[3]", "warning", "type"),
    ]


def test_field_names_are_case_sensitive() -> None:
    assert triples(record_of("pageView", URL="https://www.example.com", url="u")) == [
        ("signalContent.URL", "warning", "unknown_field")
    ]


# --- The file-import wrapper (SPEC §5) ----------------------------------------------------


def test_the_signal_wrapper_is_unwrapped() -> None:
    assert triples({"signal": record_of()}) == []


def test_paths_inside_a_wrapper_stay_relative_to_the_envelope() -> None:
    envelope = without(record_of("pageView"), "signalContent", "url")
    envelope["identifiableAttributes"] = {"email": "jane.doe"}
    assert triples({"signal": envelope}) == [
        ("identifiableAttributes.email", "error", "format"),
        ("signalContent.url", "error", "required"),
    ]


def test_a_key_beside_the_wrapped_signal_is_an_unknown_field() -> None:
    assert triples({"signal": record_of(), "id": 12}) == [("id", "warning", "unknown_field")]


@pytest.mark.parametrize("inner", [None, "x", [record_of()]], ids=repr)
def test_a_wrapper_around_something_else_than_an_object_is_rejected(inner: Any) -> None:
    assert triples({"signal": inner}) == [("", "error", "type")]


def test_the_default_app_key_fills_a_wrapped_signal() -> None:
    assert triples({"signal": without(record_of(), "appKey")}, default_app_key=APP_KEY) == []


# --- Severity decides the verdict (SPEC §4) -------------------------------------------


def test_a_signal_with_only_warnings_is_valid() -> None:
    check = check_signal(record_of(name="n" * 300, pageTitle="x"))
    assert {i.severity for i in check.issues} == {"warning"}
    assert not check.rejected


def test_a_signal_with_one_error_is_rejected() -> None:
    check = check_signal(record_of(name="n" * 300, url=""))
    assert {i.severity for i in check.issues} == {"warning", "error"}
    assert check.rejected


def test_the_summary_counts_valid_and_rejected_signals() -> None:
    summary = Summary()
    for record in (
        record_of(),
        record_of(name="n" * 300),
        record_of(url=""),
        with_ids(contactKey=CONTACT_KEY, email=EMAIL),
    ):
        check = check_signal(record)
        summary.add(check.issues, contact_key_only=check.contact_key_only)
    assert summary.as_dict() == {
        "signals": 4,
        "valid": 3,
        "rejected": 1,
        "errors": 1,
        "warnings": 2,
    }
    assert summary.contact_key_only == 3
