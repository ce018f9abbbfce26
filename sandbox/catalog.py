"""The vendor's lists: signal types, tiers, required fields, export limits.

Duplicated from the app on purpose: the sandbox stands for the vendor and imports nothing
from connectadmin.
"""

from __future__ import annotations

from typing import Literal

BEHAVIOR_TYPES: tuple[str, ...] = (
    "addToCart",
    "browseAbandonment",
    "cartAbandonment",
    "error",
    "identification",
    "onSiteSearch",
    "order",
    "pageView",
    "productConfiguration",
    "productView",
    "richMediaInteraction",
)

MARKETING_TYPES: dict[str, tuple[str, ...]] = {
    "email": (
        "emailClick",
        "emailDelivery",
        "emailFailure",
        "emailInbound",
        "emailOpen",
        "emailSend",
    ),
    "sms": ("smsClick", "smsDelivery", "smsFailure", "smsInbound", "smsSend"),
    "whatsapp": (
        "whatsAppClick",
        "whatsAppDelivery",
        "whatsAppFailure",
        "whatsAppInbound",
        "whatsAppOpen",
        "whatsAppSend",
    ),
}
ALL_MARKETING_TYPES: tuple[str, ...] = tuple(t for ts in MARKETING_TYPES.values() for t in ts)
EXPORTABLE_TYPES: frozenset[str] = frozenset(BEHAVIOR_TYPES) | frozenset(ALL_MARKETING_TYPES)

Tier = Literal["pro", "premium", "ultimate"]
TIERS: tuple[Tier, ...] = ("pro", "premium", "ultimate")
TIER_TYPES: dict[str, frozenset[str]] = {
    "pro": frozenset({"addToCart", "identification", "order"}),
    "premium": frozenset(BEHAVIOR_TYPES),
    "ultimate": frozenset(BEHAVIOR_TYPES),
}

# Required signalContent fields and their JSON kind. The sandbox checks presence and kind
# only (the vendor discards such signals); enumerations, currencies and formats are the
# app's validator's job and are stored as received.
Kind = Literal["string", "number", "integer"]
REQUIRED_FIELDS: dict[str, dict[str, Kind]] = {
    "addToCart": {
        "currency": "string",
        "itemQuantity": "integer",
        "productId": "string",
        "productName": "string",
        "unitPrice": "number",
    },
    "browseAbandonment": {"currency": "string"},
    "cartAbandonment": {"abandonedCartValue": "number", "currency": "string"},
    "error": {"errorText": "string", "errorType": "string"},
    "identification": {"identifierName": "string", "identifierValue": "string"},
    "onSiteSearch": {"numberOfResults": "integer", "searchTerm": "string"},
    "order": {"currency": "string", "orderId": "string"},
    "pageView": {"url": "string"},
    "productConfiguration": {
        "currency": "string",
        "productId": "string",
        "productName": "string",
    },
    "productView": {"productId": "string", "productName": "string"},
    "richMediaInteraction": {"mediaId": "string"},
}

SIGNAL_GROUP: dict[str, str] = {
    "addToCart": "cart",
    "browseAbandonment": "product",
    "cartAbandonment": "cart",
    "error": "page",
    "identification": "session",
    "onSiteSearch": "page",
    "order": "order",
    "pageView": "page",
    "productConfiguration": "product",
    "productView": "product",
    "richMediaInteraction": "page",
}

IDENTIFIABLE_KEYS: tuple[str, ...] = ("contactKey", "email", "sms", "whatsapp")
MAX_SIGNALS_PER_MUTATION = 500

# Connect's published daily export limits, per subscription and UTC day.
DAILY_EXPORT_JOBS = 20
DAILY_EXPORT_BYTES = 1_000_000_000
DAILY_EXPORT_ROWS = 2_000_000
EXPORT_RETENTION_DAYS = 28
