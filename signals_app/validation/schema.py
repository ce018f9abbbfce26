"""The signal specification as data (SPEC §2–§3): envelope, eleven behavior types, item
schemas, enumerations and subscription tiers. One engine (`engine.py`) and one fast path
(`fastpath.py`) read this table; nothing else should hard-code a field.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Literal

Tier = Literal["pro", "premium", "ultimate"]
TIERS: tuple[Tier, ...] = ("pro", "premium", "ultimate")


class Kind(StrEnum):
    """How a field's value is checked."""

    STRING = "string"
    NUMBER = "number"  # finite JSON number, never a boolean
    INTEGER = "integer"  # a number with no fractional part
    BOOLEAN = "boolean"
    CURRENCY = "currency"  # ISO 4217 code
    ENUM = "enum"  # one of `Field.choices`, matched case-insensitively
    DATETIME = "datetime"  # ISO 8601 (RFC 3339 profile) date-time with a time zone
    CATALOG_DATETIME = "catalog_datetime"  # exactly yyyy-MM-dd HH:mm:ss.SSS
    STRING_LIST = "string_list"  # array of strings
    ITEMS = "items"  # array of product items (ITEM_FIELDS)
    CUSTOM_ATTRIBUTES = "custom_attributes"  # array of {name: str, value: str}
    EMAIL = "email"
    PHONE = "phone"  # E.164: "+" and 8–15 digits, a possible number


@dataclass(frozen=True, slots=True)
class Field:
    kind: Kind
    required: bool = False
    choices: tuple[str, ...] = ()  # for Kind.ENUM: the canonical spellings
    max_length: int | None = None
    hint: str = ""  # a short description used in messages


def req(kind: Kind, *choices: str) -> Field:
    return Field(kind, required=True, choices=choices)


def opt(kind: Kind, *choices: str, max_length: int | None = None) -> Field:
    return Field(kind, required=False, choices=choices, max_length=max_length)


S, N, I, B = Kind.STRING, Kind.NUMBER, Kind.INTEGER, Kind.BOOLEAN  # noqa: E741

EFFECTS = ("positive", "negative")
CATEGORIES = ("Behavior",)
INTERACTION_TYPES = ("load", "launch", "pause", "continue", "complete", "stop", "enlarge")
ABANDONMENT_REASONS = (
    "APPLICATION_ERROR",
    "LARGEST_CONTENTFUL_PAINT",
    "CUMULATIVE_LAYOUT_SHIFT",
    "FIRST_INPUT_DELAY",
    "RAGE_CLICK",
    "USER_ERRORS",
    "EXCESSIVE_SCROLLING",
)
ERROR_TYPES = ("application", "user")
IDENTIFIER_NAMES = ("email", "sms", "contactKey")

NAME_MAX_LENGTH = 256

# The envelope of one signal (SPEC §2). identifiableAttributes and signalContent have
# their own rules in the engine; they are listed here so unknown fields can be told apart.
ENVELOPE_FIELDS: MappingProxyType[str, Field] = MappingProxyType(
    {
        "appKey": req(S),
        "identifiableAttributes": Field(Kind.STRING, required=True),  # object, see below
        "sessionId": opt(S),
        "test": opt(B),
        "signalContent": Field(Kind.STRING, required=True),  # object, see below
    }
)

# At least one is required; more than one is ambiguous (warning).
IDENTIFIABLE_ATTRIBUTES: MappingProxyType[str, Field] = MappingProxyType(
    {
        "contactKey": opt(S),
        "email": opt(Kind.EMAIL),
        "sms": opt(Kind.PHONE),
        "whatsapp": opt(Kind.PHONE),
    }
)

# Every type accepts these.
COMMON_FIELDS: dict[str, Field] = {
    "category": opt(Kind.ENUM, *CATEGORIES),
    "description": opt(S),
    "effect": opt(Kind.ENUM, *EFFECTS),
    "name": opt(S, max_length=NAME_MAX_LENGTH),
    "signalCustomAttributes": opt(Kind.CUSTOM_ATTRIBUTES),
    "signalTimestamp": opt(Kind.DATETIME),
}

# Fields of one item of orderedItems / abandonedItems.
ITEM_FIELDS: MappingProxyType[str, Field] = MappingProxyType(
    {
        "productId": req(S),
        "productName": req(S),
        "unitPrice": req(N),
        "currency": opt(Kind.CURRENCY),
        "discount": opt(N),
        "imageUrls": opt(Kind.STRING_LIST),
        "inventoryQuantity": opt(I),
        "itemQuantity": opt(I),
        "productCategory": opt(S),
        "productCategoryId": opt(S),
        "productDescription": opt(S),
        "productUrls": opt(Kind.STRING_LIST),
        "promotionId": opt(S),
        "shoppingCartUrl": opt(S),
        "virtualCategory": opt(S),
    }
)

# Fields of one entry of signalCustomAttributes.
CUSTOM_ATTRIBUTE_FIELDS: MappingProxyType[str, Field] = MappingProxyType(
    {"name": req(S), "value": req(S)}
)

# Names that people write for a field that has another name; the unknown-field warning
# suggests the right one (SPEC §4: the older document's `quantity`).
RENAMED_FIELDS: MappingProxyType[str, str] = MappingProxyType(
    {"quantity": "itemQuantity", "phone": "sms", "contact_key": "contactKey"}
)

_PRODUCT_DETAIL: dict[str, Field] = {
    "discount": opt(N),
    "imageUrls": opt(Kind.STRING_LIST),
    "productCategory": opt(S),
    "productCategoryId": opt(S),
    "productDescription": opt(S),
    "productUrls": opt(Kind.STRING_LIST),
    "promotionId": opt(S),
    "shoppingCartUrl": opt(S),
    "virtualCategory": opt(S),
}


@dataclass(frozen=True, slots=True)
class SignalType:
    name: str
    label: str
    fields: MappingProxyType[str, Field]  # per-type fields plus COMMON_FIELDS
    tiers: frozenset[Tier]


ALL_TIERS: frozenset[Tier] = frozenset(TIERS)
PREMIUM_UP: frozenset[Tier] = frozenset({"premium", "ultimate"})


def _type(name: str, label: str, tiers: frozenset[Tier], **fields: Field) -> SignalType:
    merged = {**COMMON_FIELDS, **fields}
    return SignalType(name, label, MappingProxyType(merged), tiers)


SIGNAL_TYPES: MappingProxyType[str, SignalType] = MappingProxyType(
    {
        t.name: t
        for t in (
            _type(
                "addToCart",
                "Add-to-cart",
                ALL_TIERS,
                currency=req(Kind.CURRENCY),
                itemQuantity=req(I),
                productId=req(S),
                productName=req(S),
                unitPrice=req(N),
                **_PRODUCT_DETAIL,
            ),
            _type(
                "browseAbandonment",
                "Browse abandonment",
                PREMIUM_UP,
                currency=req(Kind.CURRENCY),
                abandonmentReason=opt(Kind.ENUM, *ABANDONMENT_REASONS),
                abandonmentReasonDescription=opt(S),
                abandonedItems=opt(Kind.ITEMS),
                promotionId=opt(S),
                productCategoryId=opt(S),
            ),
            _type(
                "cartAbandonment",
                "Cart abandonment",
                PREMIUM_UP,
                abandonedCartValue=req(N),
                currency=req(Kind.CURRENCY),
                abandonmentReason=opt(Kind.ENUM, *ABANDONMENT_REASONS),
                abandonmentReasonDescription=opt(S),
                abandonedItems=opt(Kind.ITEMS),
                shoppingCartUrl=opt(S),
            ),
            _type(
                "error",
                "Error",
                PREMIUM_UP,
                errorText=req(S),
                errorType=req(Kind.ENUM, *ERROR_TYPES),
                errorIdentifier=opt(S),
            ),
            _type(
                "identification",
                "Identification",
                ALL_TIERS,
                identifierName=req(Kind.ENUM, *IDENTIFIER_NAMES),
                identifierValue=req(S),
                identificationFromLogin=opt(B),
            ),
            _type(
                "onSiteSearch",
                "On-site search",
                PREMIUM_UP,
                numberOfResults=req(I),
                searchTerm=req(S),
            ),
            _type(
                "order",
                "Order",
                ALL_TIERS,
                currency=req(Kind.CURRENCY),
                orderId=req(S),
                orderDiscount=opt(N),
                orderedItems=opt(Kind.ITEMS),
                orderShippingHandling=opt(N),
                orderSubtotal=opt(N),
                orderTax=opt(N),
                orderValue=opt(N),
            ),
            _type(
                "pageView",
                "Page view",
                PREMIUM_UP,
                url=req(S),
                pageCategory=opt(S),
                pageGroup=opt(S),
            ),
            _type(
                "productConfiguration",
                "Product configuration",
                PREMIUM_UP,
                currency=req(Kind.CURRENCY),
                productId=req(S),
                productName=req(S),
                configurationType=opt(S),
                inventoryQuantity=opt(I),
                unitPrice=opt(N),
                **_PRODUCT_DETAIL,
            ),
            _type(
                "productView",
                "Product view",
                PREMIUM_UP,
                productId=req(S),
                productName=req(S),
                availability=opt(S),
                brandDescription=opt(S),
                brandName=opt(S),
                categories=opt(S),
                currency=opt(Kind.CURRENCY),
                dateAdded=opt(Kind.CATALOG_DATETIME),
                inventoryQuantity=opt(I),
                model=opt(S),
                msrp=opt(N),
                productRating=opt(N),
                productStatus=opt(S),
                sku=opt(S),
                tags=opt(Kind.STRING_LIST),
                unitPrice=opt(N),
                **_PRODUCT_DETAIL,
            ),
            _type(
                "richMediaInteraction",
                "Rich media interaction",
                PREMIUM_UP,
                mediaId=req(S),
                interactionType=opt(Kind.ENUM, *INTERACTION_TYPES),
                mediaCategory=opt(S),
                mediaName=opt(S),
                url=opt(S),
            ),
        )
    }
)

# Export-only marketing signal types (SPEC §7): exportable, never importable.
MARKETING_SIGNAL_TYPES: tuple[str, ...] = (
    "emailClick",
    "emailDelivery",
    "emailFailure",
    "emailInbound",
    "emailOpen",
    "emailSend",
    "smsClick",
    "smsDelivery",
    "smsFailure",
    "smsInbound",
    "smsSend",
    "whatsAppClick",
    "whatsAppDelivery",
    "whatsAppFailure",
    "whatsAppInbound",
    "whatsAppOpen",
    "whatsAppSend",
)


def types_for_tier(tier: Tier) -> frozenset[str]:
    return frozenset(name for name, t in SIGNAL_TYPES.items() if tier in t.tiers)


def all_field_kinds() -> dict[str, set[Kind]]:
    """Every signalContent field name with the kinds it has across types (CSV typing)."""
    kinds: dict[str, set[Kind]] = {}
    for signal_type in SIGNAL_TYPES.values():
        for name, spec in signal_type.fields.items():
            kinds.setdefault(name, set()).add(spec.kind)
    return kinds
