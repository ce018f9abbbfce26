"""A Connect behavior signal as an Attentive custom event (SPEC §6, Attentive part).

An import of Connect signals can be sent to an Attentive account too, or instead. Each
valid signal becomes one `createCustomEvent` input:

- `user` from identifiableAttributes: email as `email`, an SMS or WhatsApp number as
  `phone` (Connect's rules already made it E.164), the contact key as
  `externalIdentifiers.clientUserId`; a signal naming several gives them all;
- `type` from the signal type, through a mapping the marketer may edit per import
  (DEFAULT_EVENT_TYPES: "Added to cart" for addToCart, ...);
- `occurredAt` from signalContent.signalTimestamp (absent: Attentive takes the time of
  the call);
- `properties` from the rest of signalContent; its custom attributes
  (`signalCustomAttributes`, a list of name and value) become properties of their own
  name, which segments can use, unless the content has a field of that name already.

`source_path` says which field of the signal a path of the event comes from, so that a
problem of the event is reported where the marketer can fix it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# Attentive's event type names are case-sensitive and free text; these read as the
# vendor's own examples do ("Order Shipped"): a past-tense action.
DEFAULT_EVENT_TYPES: Mapping[str, str] = {
    "addToCart": "Added to cart",
    "browseAbandonment": "Abandoned browse",
    "cartAbandonment": "Abandoned cart",
    "error": "Met a site error",
    "identification": "Identified",
    "onSiteSearch": "Searched the site",
    "order": "Placed order",
    "pageView": "Viewed page",
    "productConfiguration": "Configured product",
    "productView": "Viewed product",
    "richMediaInteraction": "Interacted with media",
}

# What Attentive refuses in a type name (SPEC §6).
EVENT_TYPE_FORBIDDEN = frozenset("\"'(){}[]\\|,")

_NOT_PROPERTIES = frozenset({"signalType", "signalTimestamp", "signalCustomAttributes"})


@dataclass(slots=True)
class MappedEvent:
    """The `createCustomEvent` input of one signal, without its externalEventId (given
    per destination at sending), and what was left out of it."""

    event: dict[str, Any]
    # (path in the signal, why it is not in the event): custom attributes whose name a
    # content field has already, or that have no name.
    left_out: list[tuple[str, str]] = field(default_factory=list)


def event_type_problem(name: Any) -> str | None:
    """Why `name` cannot be an Attentive event type (None: it can)."""
    if not isinstance(name, str) or not name.strip():
        return "an event type needs a name"
    forbidden = sorted(EVENT_TYPE_FORBIDDEN & set(name))
    if forbidden:
        shown = " ".join(forbidden)
        return f"an event type must not contain {shown} (Attentive refuses them)"
    if len(name) > 255:
        return "an event type is at most 255 characters"
    return None


def event_types(overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    """The signal type -> event type mapping of an import: the defaults with the
    marketer's changes. Raises ValueError naming the signal type of an unusable name or an
    unknown signal type."""
    mapping = dict(DEFAULT_EVENT_TYPES)
    for signal_type, name in (overrides or {}).items():
        if signal_type not in DEFAULT_EVENT_TYPES:
            raise ValueError(f"{signal_type}: not a Connect behavior signal type")
        problem = event_type_problem(name)
        if problem is not None:
            raise ValueError(f"{signal_type}: {problem}")
        mapping[signal_type] = name.strip()
    return mapping


def map_signal(envelope: Mapping[str, Any], types: Mapping[str, str]) -> MappedEvent:
    """The event of one *valid* signal (an envelope, unwrapped)."""
    content: Mapping[str, Any] = envelope["signalContent"]
    mapped = MappedEvent(
        event={"type": types[content["signalType"]], "user": _user(envelope)},
    )
    timestamp = content.get("signalTimestamp")
    if timestamp is not None:
        mapped.event["occurredAt"] = timestamp
    properties = {k: v for k, v in content.items() if k not in _NOT_PROPERTIES}
    for index, attribute in enumerate(content.get("signalCustomAttributes") or ()):
        name = attribute.get("name")
        path = f"signalContent.signalCustomAttributes[{index}]"
        if name in properties:
            why = f'not sent to Attentive: the event has a property "{name}" already'
            mapped.left_out.append((f"{path}.name", why))
            continue
        properties[name] = attribute.get("value")
    if properties:
        mapped.event["properties"] = properties
    return mapped


def _user(envelope: Mapping[str, Any]) -> dict[str, Any]:
    identities: Mapping[str, Any] = envelope["identifiableAttributes"]
    user: dict[str, Any] = {}
    if identities.get("email"):
        user["email"] = identities["email"]
    phone = identities.get("sms") or identities.get("whatsapp")
    if phone:
        user["phone"] = phone
    if identities.get("contactKey"):
        user["externalIdentifiers"] = {"clientUserId": identities["contactKey"]}
    return user


def source_path(event_path: str, signal: Mapping[str, Any]) -> str:
    """The path in `signal` (an envelope) that `event_path`, a path in its mapped event,
    comes from: where the marketer fixes what Attentive would refuse."""
    identities: Mapping[str, Any] = signal.get("identifiableAttributes") or {}
    content: Mapping[str, Any] = signal.get("signalContent") or {}
    if event_path == "type":
        return "signalContent.signalType"
    if event_path == "occurredAt":
        return "signalContent.signalTimestamp"
    if event_path == "user.email":
        return "identifiableAttributes.email"
    if event_path == "user.phone":
        return "identifiableAttributes." + ("sms" if identities.get("sms") else "whatsapp")
    if event_path.startswith("user.externalIdentifiers"):
        return "identifiableAttributes.contactKey"
    if event_path.startswith("user"):
        return "identifiableAttributes"
    if event_path.startswith("properties."):
        rest = event_path.removeprefix("properties.")
        for position, attribute in enumerate(content.get("signalCustomAttributes") or ()):
            name = attribute.get("name")
            if isinstance(name, str) and name not in content and rest.startswith(name):
                return f"signalContent.signalCustomAttributes[{position}]"
        key = re.split(r"[.\[]", rest, maxsplit=1)[0]
        if key in content:
            return "signalContent." + rest
    return "signalContent"
