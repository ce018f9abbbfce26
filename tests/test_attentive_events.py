"""A Connect signal as an Attentive custom event (signals_app/services/attentive_events)."""

from __future__ import annotations

from typing import Any

import pytest

from signals_app.services.attentive_events import (
    DEFAULT_EVENT_TYPES,
    event_type_problem,
    event_types,
    map_signal,
    source_path,
)
from signals_app.validation.schema import SIGNAL_TYPES


def signal(identities: dict[str, Any], **content: Any) -> dict[str, Any]:
    return {
        "appKey": "shop-key",
        "identifiableAttributes": identities,
        "signalContent": {"signalType": "addToCart", **content},
    }


def test_every_connect_signal_type_has_a_usable_default_event_type() -> None:
    assert set(DEFAULT_EVENT_TYPES) == set(SIGNAL_TYPES)
    assert all(event_type_problem(name) is None for name in DEFAULT_EVENT_TYPES.values())


def test_a_signal_becomes_an_event_with_its_user_time_and_content() -> None:
    mapped = map_signal(
        signal(
            {"email": "ann@example.com"},
            productId="AC-1",
            unitPrice=9.5,
            signalTimestamp="2026-12-04T10:00:00Z",
            signalCustomAttributes=[{"name": "color", "value": "red"}],
        ),
        event_types(),
    )
    assert mapped.event == {
        "type": "Added to cart",
        "user": {"email": "ann@example.com"},
        "occurredAt": "2026-12-04T10:00:00Z",
        "properties": {"productId": "AC-1", "unitPrice": 9.5, "color": "red"},
    }
    assert mapped.left_out == []


@pytest.mark.parametrize(
    ("identities", "user"),
    [
        ({"sms": "+14035549090"}, {"phone": "+14035549090"}),
        ({"whatsapp": "+14035549090"}, {"phone": "+14035549090"}),
        ({"contactKey": "c-1"}, {"externalIdentifiers": {"clientUserId": "c-1"}}),
        (
            {"email": "a@b.co", "contactKey": "c-1"},
            {"email": "a@b.co", "externalIdentifiers": {"clientUserId": "c-1"}},
        ),
    ],
)
def test_each_identity_maps_to_its_attentive_user_field(
    identities: dict[str, Any], user: dict[str, Any]
) -> None:
    assert map_signal(signal(identities), event_types()).event["user"] == user


def test_without_a_timestamp_or_content_the_event_has_neither() -> None:
    event = map_signal(signal({"email": "a@b.co"}), event_types()).event
    assert event == {"type": "Added to cart", "user": {"email": "a@b.co"}}


def test_a_custom_attribute_named_like_a_content_field_is_left_out_and_said() -> None:
    mapped = map_signal(
        signal(
            {"email": "a@b.co"},
            productId="AC-1",
            signalCustomAttributes=[
                {"name": "productId", "value": "other"},
                {"name": "size", "value": "M"},
                {"name": "size", "value": "L"},
            ],
        ),
        event_types(),
    )
    assert mapped.event["properties"] == {"productId": "AC-1", "size": "M"}
    assert [path for path, _ in mapped.left_out] == [
        "signalContent.signalCustomAttributes[0].name",
        "signalContent.signalCustomAttributes[2].name",
    ]


def test_the_marketer_renames_an_event_type_for_one_import() -> None:
    types = event_types({"addToCart": "  Cart add  "})
    assert map_signal(signal({"email": "a@b.co"}), types).event["type"] == "Cart add"
    assert types["order"] == DEFAULT_EVENT_TYPES["order"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"addToCart": "Cart, added"}, "addToCart: an event type must not contain ,"),
        ({"addToCart": "  "}, "addToCart: an event type needs a name"),
        ({"addToCart": 'A "b" (c)'}, 'addToCart: an event type must not contain " ( )'),
        ({"purchase": "Bought"}, "purchase: not a Connect behavior signal type"),
    ],
)
def test_an_unusable_event_type_is_refused_naming_the_signal_type(
    overrides: dict[str, str], message: str
) -> None:
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        event_types(overrides)


@pytest.mark.parametrize(
    ("event_path", "expected"),
    [
        ("type", "signalContent.signalType"),
        ("occurredAt", "signalContent.signalTimestamp"),
        ("user", "identifiableAttributes"),
        ("user.email", "identifiableAttributes.email"),
        ("user.phone", "identifiableAttributes.sms"),
        ("user.externalIdentifiers.clientUserId", "identifiableAttributes.contactKey"),
        ("properties", "signalContent"),
        ("properties.orderedItems", "signalContent.orderedItems"),
        ("properties.orderedItems[1].productId", "signalContent.orderedItems[1].productId"),
        ("properties.gift|wrap", "signalContent.signalCustomAttributes[1]"),
        ("properties.nowhere", "signalContent"),
    ],
)
def test_a_problem_of_the_event_points_at_the_field_of_the_signal(
    event_path: str, expected: str
) -> None:
    source = signal(
        {"sms": "+14035549090", "contactKey": "c-1"},
        orderedItems=[{"productId": "a"}, {"productId": "b"}],
        signalCustomAttributes=[
            {"name": "size", "value": "M"},
            {"name": "gift|wrap", "value": "yes"},
        ],
    )
    assert source_path(event_path, source) == expected
