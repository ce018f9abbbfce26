"""The vendor's own examples (seeds 000, 001, 002) pass the validator as SPEC §3–§4 say:
every current example is clean, for the engine and for the fast path alike; the older
edition's `quantity` is the one documented exception."""

from __future__ import annotations

import copy
import json
from typing import Any

import orjson
import pytest

from signals_app.validation.engine import check_signal
from signals_app.validation.fastpath import FastPath
from signals_app.validation.schema import SIGNAL_TYPES, Tier
from tests.conftest import require
from tests.seed_examples import (
    ALL_TYPES,
    APP_KEY,
    EMAIL,
    PRO_TYPES,
    SEED_CONTACT_KEYS,
    SEED_EMAILS,
    SEED_SMS,
    SEED_WHATSAPP,
    SeedExample,
    minimal_record,
    seed_examples,
    seeds_dir,
    signals_from_mutation,
)

EXAMPLES = seed_examples()
# 001 predates `itemQuantity`: its order example is checked on its own below.
OLD_ORDER = {"001-json-order", "001-graphql-order"}
CURRENT = [e for e in EXAMPLES if e.id not in OLD_ORDER]


def triples(record: Any, *, tier: Tier = "ultimate") -> list[tuple[str, str, str]]:
    return [(i.path, i.severity, str(i.code)) for i in check_signal(record, tier=tier).issues]


def by_id(examples: list[SeedExample]) -> Any:
    return pytest.mark.parametrize("example", examples, ids=[e.id for e in examples])


def test_the_seed_documents_are_present() -> None:
    require(seeds_dir() is not None, "the vendor documents (seeds/000_…, 001_…, 002_…)")


# --- Extraction ---------------------------------------------------------------------


def test_it_extracts_every_example_of_the_seeds() -> None:
    require(bool(EXAMPLES), "the vendor documents (seeds/)")
    counts: dict[tuple[str, str], int] = {}
    for example in EXAMPLES:
        key = (example.document, example.form)
        counts[key] = counts.get(key, 0) + 1
    assert counts == {
        ("000", "json"): 9,
        ("000", "graphql"): 9,
        ("001", "json"): 9,
        ("001", "graphql"): 9,
        ("002", "graphql"): 11,
    }
    assert len({e.id for e in EXAMPLES}) == len(EXAMPLES)


def test_the_examples_cover_all_eleven_types() -> None:
    require(bool(EXAMPLES), "the vendor documents (seeds/)")

    def types(document: str) -> set[str]:
        return {e.signal_type for e in EXAMPLES if e.document == document}

    assert set(SIGNAL_TYPES) == ALL_TYPES
    assert len(types("000")) == 9
    assert types("002") == ALL_TYPES
    assert {e.signal_type for e in EXAMPLES} == ALL_TYPES


def test_000s_json_examples_are_file_import_wrappers() -> None:
    require(bool(EXAMPLES), "the vendor documents (seeds/)")
    wrappers = [e for e in EXAMPLES if e.document == "000" and e.form == "json"]
    assert wrappers
    assert all(set(e.record) == {"signal"} for e in wrappers)


def test_the_placeholders_are_filled() -> None:
    require(bool(EXAMPLES), "the vendor documents (seeds/)")
    text = json.dumps([e.record for e in EXAMPLES], ensure_ascii=False)
    assert "[email" not in text
    assert "protected]" not in text
    assert "YOUR_APP_KEY" not in text
    assert APP_KEY in text
    identifier_values = {
        e.envelope["signalContent"]["identifierValue"]
        for e in EXAMPLES
        if e.signal_type == "identification"
    }
    assert identifier_values == {EMAIL}
    emails = {
        e.envelope["identifiableAttributes"]["email"]
        for e in EXAMPLES
        if "email" in e.envelope["identifiableAttributes"]
    }
    assert emails == {EMAIL}


# --- signals_from_mutation ----------------------------------------------------------


def test_signals_from_mutation_reads_every_kind_of_literal() -> None:
    text = """
    mutation Import {
      createSignals(signals: [
        { appKey: "k", test: true, sessionId: null,
          signalContent: { signalType: "order", orderValue: 98.44, count: 3,
                           mode: FAST, tags: ["a" "b"], nested: { empty: [] },
                           note: \"\"\"block {braces}\"\"\" } }
        { appKey: "k2" }
      ]) { signalIds }
    }
    """
    assert signals_from_mutation(text) == [
        {
            "appKey": "k",
            "test": True,
            "sessionId": None,
            "signalContent": {
                "signalType": "order",
                "orderValue": 98.44,
                "count": 3,
                "mode": "FAST",
                "tags": ["a", "b"],
                "nested": {"empty": []},
                "note": "block {braces}",
            },
        },
        {"appKey": "k2"},
    ]


def test_signals_from_mutation_takes_one_object_as_a_list_of_one() -> None:
    text = 'mutation { createSignals(signals: { appKey: "k" }) { signalIds } }'
    assert signals_from_mutation(text) == [{"appKey": "k"}]


@pytest.mark.parametrize(
    "text",
    [
        'mutation { exportSignals(jobName: "j") { dataJobId } }',
        "mutation ($s: [SignalInput!]!) { createSignals(signals: $s) { signalIds } }",
        "mutation { createSignals(signals: [1, 2]) { signalIds } }",
    ],
    ids=["other-mutation", "variable", "not-objects"],
)
def test_signals_from_mutation_refuses_what_is_not_a_literal_signal_list(text: str) -> None:
    with pytest.raises(ValueError):
        signals_from_mutation(text)


# --- Every current example is clean --------------------------------------------------


@by_id(CURRENT)
def test_every_current_example_is_clean_for_ultimate(example: SeedExample) -> None:
    check = check_signal(example.record, tier="ultimate")
    assert check.issues == []
    assert check.signal_type == example.signal_type
    assert check_signal(example.envelope, tier="ultimate").issues == []


@by_id(CURRENT)
def test_every_current_example_is_clean_for_premium(example: SeedExample) -> None:
    assert triples(example.record, tier="premium") == []


@by_id(CURRENT)
def test_the_fast_path_accepts_every_current_example(example: SeedExample) -> None:
    fast = FastPath(tier="ultimate", default_app_key=None)
    check = check_signal(example.record, tier="ultimate")
    expected = (example.signal_type, check.contact_key_only)
    envelope = example.envelope
    assert fast.check_json(orjson.dumps(envelope)) == expected
    assert fast.check_value(envelope) == expected
    wrapper = {"signal": envelope}
    fast.prefer_wrapper = True
    assert fast.check_json(orjson.dumps(wrapper)) == expected
    assert fast.check_value(wrapper) == expected


@by_id([e for e in CURRENT if e.signal_type in PRO_TYPES])
def test_the_types_every_subscription_has_are_clean_for_pro(example: SeedExample) -> None:
    assert triples(example.record, tier="pro") == []
    fast = FastPath(tier="pro", default_app_key=None)
    assert fast.check_value(example.envelope) is not None


@by_id([e for e in CURRENT if e.signal_type not in PRO_TYPES])
def test_premium_types_are_not_in_a_pro_subscription(example: SeedExample) -> None:
    assert triples(example.record, tier="pro") == [
        ("signalContent.signalType", "error", "not_in_subscription")
    ]
    fast = FastPath(tier="pro", default_app_key=None)
    assert fast.check_value(example.envelope) is None
    assert fast.check_json(orjson.dumps(example.envelope)) is None


# --- The older edition ----------------------------------------------------------------


@by_id([e for e in EXAMPLES if e.id in OLD_ORDER])
def test_the_older_editions_quantity_is_an_unknown_field_suggesting_item_quantity(
    example: SeedExample,
) -> None:
    check = check_signal(example.record, tier="ultimate")
    items = example.envelope["signalContent"]["orderedItems"]
    assert len(items) == 2
    assert [(i.path, i.severity, str(i.code)) for i in check.issues] == [
        (f"signalContent.orderedItems[{n}].quantity", "warning", "unknown_field")
        for n in range(len(items))
    ]
    assert all('"itemQuantity"' in issue.message for issue in check.issues)
    assert not check.rejected
    # Not clean, so the fast path leaves it to the engine.
    assert FastPath(tier="ultimate", default_app_key=None).check_value(example.envelope) is None


@by_id([e for e in EXAMPLES if e.document == "001"])
def test_missing_category_effect_or_name_is_never_an_error(example: SeedExample) -> None:
    record = copy.deepcopy(example.envelope)
    content = record["signalContent"]
    for name in ("category", "effect", "name"):
        assert name in content  # the older edition lists them as required
        del content[name]
    check = check_signal(record, tier="ultimate")
    assert not check.rejected
    assert all(i.severity != "error" for i in check.issues)
    assert not [i for i in check.issues if i.path.split(".")[-1] in {"category", "effect", "name"}]


# --- The seeds' contact values ------------------------------------------------------


SEED_ATTRIBUTES = (
    [("contactKey", v) for v in SEED_CONTACT_KEYS]
    + [("email", v) for v in SEED_EMAILS]
    + [(k, v) for k in ("sms", "whatsapp") for v in SEED_SMS + SEED_WHATSAPP]
)


@pytest.mark.parametrize(("key", "value"), SEED_ATTRIBUTES)
def test_the_seeds_contact_values_are_valid_identifiable_attributes(key: str, value: str) -> None:
    record = minimal_record("order")
    record["identifiableAttributes"] = {key: value}
    check = check_signal(record, tier="pro")
    assert check.issues == []
    assert check.contact_key_only is (key == "contactKey")
    assert FastPath(tier="pro", default_app_key=None).check_value(record) == (
        "order",
        key == "contactKey",
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [("email", v) for v in SEED_EMAILS]
    + [("sms", v) for v in SEED_SMS + SEED_WHATSAPP]
    + [("contactKey", v) for v in SEED_CONTACT_KEYS],
)
def test_the_seeds_contact_values_are_valid_identifier_values(name: str, value: str) -> None:
    record = minimal_record("identification", identifierName=name, identifierValue=value)
    assert triples(record, tier="pro") == []
    assert FastPath(tier="pro", default_app_key=None).check_value(record) is not None
