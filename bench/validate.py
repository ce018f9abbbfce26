"""Benchmark of the signal validator (issue 2, "Performance"): a benchmark, never a test.

It generates N seed-like signals of all eleven types (about 5 % with 1–2 errors, some with
warnings) as NDJSON, a JSON array and CSV (and, with --gzip, a gzipped NDJSON), runs
``manage.py validate_signals FILE --report ndjson`` on each in a fresh process, and prints
wall time, signals/s and peak RSS beside the raw parse rate of the same NDJSON file with
orjson, line by line, measured in the same run.

Usage (from the project root)::

    .venv/bin/python bench/validate.py                     # N = 1,000,000 (≈ 560 MB NDJSON)
    .venv/bin/python bench/validate.py --signals 100000    # quick smoke run
    .venv/bin/python bench/validate.py --gzip --repeat 2   # add .ndjson.gz; best of 2 runs
    .venv/bin/python bench/validate.py --formats ndjson    # only some formats
    .venv/bin/python bench/validate.py --generate-only     # write the files, measure nothing

Files go to ``var/bench/`` (``--out``), named after N, the seed and the generator's
version; a complete set already there is reused. Each run's findings are kept beside them
(``findings-<format>.ndjson``) and checked against what was generated: line count, the
summary line and exit status; on a difference, the first signals whose findings differ from
their mutations are named (``<stem>.mutations.ndjson`` lists every mutated signal). Each
mutation gives exactly one finding, in every format (CSV included: no wrong value that a
CSV cell would turn right, such as a quantity "2").

Figures: sizes and memory in MB of 10^6 bytes. "peak RSS" is ``ru_maxrss`` of the measured
process and its waited-for descendants (``os.wait4`` in a tiny helper process, so the figure
belongs to that run alone), i.e. the largest single process; "Σ PSS" is the largest sum of
proportional set sizes over the whole process tree, sampled every 50 ms (it counts the pages
that forked workers share only once). Wall time includes interpreter and Django start-up,
which is measured on a one-signal file and shown apart, with the CPU time of each run: on a
busy machine CPU seconds say more than wall seconds.
"""

from __future__ import annotations

import argparse
import bisect
import csv
import dataclasses
import gzip
import itertools
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import orjson

if TYPE_CHECKING:
    from _typeshed import SupportsLenAndGetItem

T = TypeVar("T")
ROOT = Path(__file__).resolve().parent.parent
GENERATOR_VERSION = 3
MB = 1_000_000

# --- targets (issue 2) ---------------------------------------------------------------------

TARGET_RATE = {"ndjson": 300_000, "json": 100_000, "csv": 150_000}
TARGET_ORJSON_RATIO = 0.8
TARGET_RSS_MB = 150.0

FORMATS = ("ndjson", "json", "csv", "gz")
FORMAT_LABELS = {
    "ndjson": "NDJSON",
    "json": "JSON array",
    "csv": "CSV",
    "gz": "NDJSON.gz",
}
SUFFIXES = {"ndjson": ".ndjson", "json": ".json", "csv": ".csv", "gz": ".ndjson.gz"}

# --- what the signals look like ------------------------------------------------------------

# Realistic proportions: browsing dominates, orders are rare.
TYPE_WEIGHTS: dict[str, float] = {
    "pageView": 38.0,
    "productView": 25.0,
    "addToCart": 8.0,
    "onSiteSearch": 8.0,
    "productConfiguration": 5.0,
    "identification": 4.0,
    "richMediaInteraction": 3.0,
    "order": 3.0,
    "cartAbandonment": 2.5,
    "browseAbandonment": 2.0,
    "error": 1.5,
}

# SPEC §3, written out again on purpose: the bench's expectations do not come from the
# validator's own table.
REQUIRED: dict[str, tuple[str, ...]] = {
    "addToCart": ("currency", "itemQuantity", "productId", "productName", "unitPrice"),
    "browseAbandonment": ("currency",),
    "cartAbandonment": ("abandonedCartValue", "currency"),
    "error": ("errorText", "errorType"),
    "identification": ("identifierName", "identifierValue"),
    "onSiteSearch": ("numberOfResults", "searchTerm"),
    "order": ("currency", "orderId"),
    "pageView": ("url",),
    "productConfiguration": ("currency", "productId", "productName"),
    "productView": ("productId", "productName"),
    "richMediaInteraction": ("mediaId",),
}
REQUIRED_STRINGS = frozenset(
    {
        "productId",
        "productName",
        "orderId",
        "url",
        "mediaId",
        "searchTerm",
        "errorText",
        "identifierValue",
    }
)
ITEM_TYPES = {"order": "orderedItems", "cartAbandonment": "abandonedItems"}
ITEM_TYPES_OPTIONAL = {"browseAbandonment": "abandonedItems"}

SIGNAL_NAMES: dict[str, tuple[str, ...]] = {
    "addToCart": ("Add product to cart in online store", "Add to cart"),
    "browseAbandonment": (
        "Browse abandonment on product listing page",
        "Browse abandonment on outdoor furniture",
    ),
    "cartAbandonment": ("Cart abandonment on checkout page", "Abandoned cart"),
    "error": ("Shopping cart error", "Checkout error", "Registration error"),
    "identification": ("Identification from login", "Identification from newsletter form"),
    "onSiteSearch": ("Product search in online store",),
    "order": ("Online store order", "Mobile app order"),
    "pageView": ("Page view from online store", "Page view"),
    "productConfiguration": ("Product configuration from online store",),
    "productView": ("Product view from online store", "Product detail view"),
    "richMediaInteraction": ("Video review interaction in online store",),
}
NEGATIVE_TYPES = frozenset({"error", "browseAbandonment", "cartAbandonment"})

FIRST_NAMES = (
    "james", "mary", "john", "patricia", "robert", "jennifer", "michael", "linda", "william",
    "elizabeth", "david", "barbara", "richard", "susan", "joseph", "jessica", "thomas", "sarah",
    "charles", "karen", "daniel", "lisa", "matthew", "nancy", "anthony", "betty", "mark",
    "sandra", "donald", "ashley", "steven", "emily", "paul", "donna", "andrew", "michelle",
    "joshua", "carol", "kevin", "amanda", "brian", "melissa", "george", "deborah", "timothy",
    "stephanie", "ronald", "rebecca", "jason", "laura", "edward", "helen", "jeffrey", "sharon",
    "ryan", "cynthia", "jacob", "kathleen", "gary", "amy", "nicholas", "anna", "eric",
    "shirley", "jonathan", "angela", "stephen", "olivia", "larry", "emma", "justin", "sophie",
    "scott", "chloe", "lukas", "mia", "jonas", "lea", "pierre", "camille", "hugo", "ines",
    "mateo", "lucia", "aiden", "harper", "noah", "ava", "liam", "isla",
)  # fmt: skip
LAST_NAMES = (
    "smith", "johnson", "williams", "brown", "jones", "garcia", "miller", "davis", "rodriguez",
    "martinez", "hernandez", "lopez", "gonzalez", "wilson", "anderson", "thomas", "taylor",
    "moore", "jackson", "martin", "lee", "perez", "thompson", "white", "harris", "sanchez",
    "clark", "ramirez", "lewis", "robinson", "walker", "young", "allen", "king", "wright",
    "scott", "torres", "nguyen", "hill", "flores", "green", "adams", "nelson", "baker", "hall",
    "rivera", "campbell", "mitchell", "carter", "roberts", "mueller", "schmidt", "schneider",
    "fischer", "weber", "meyer", "wagner", "becker", "schulz", "hoffmann", "dubois", "moreau",
    "laurent", "bernard", "petit", "durand", "leroy", "roux", "fernandez", "ruiz", "diaz",
    "morales", "obrien", "murphy", "kelly", "walsh", "byrne", "ryan", "oconnor", "patel",
    "shah", "khan", "singh", "ali", "chen", "wang", "li",
)  # fmt: skip
EMAIL_DOMAINS_MORE = ("mail.example.com", "shop.example.co.uk")

# Area codes in service in the US and Canada (NPA); exchanges start with 2-9.
NANP_AREA_CODES = (
    201, 202, 203, 205, 206, 208, 212, 213, 214, 215, 216, 303, 305, 310, 312, 313, 314,
    401, 403, 404, 407, 408, 410, 412, 415, 416, 469, 503, 504, 512, 514, 602, 604, 612,
    617, 619, 646, 702, 704, 713, 714, 718, 720, 773, 786, 801, 804, 818, 905, 917, 949,
)  # fmt: skip

APP_KEYS = (
    "3f9a1c7e0b2d4a6f8e1c3b5d7f9", "a81c0e5d3b7f49e2c6a8d0b4f13", "0d7e2b9c4f6a81e3d5b7c9f0a2e",
)  # fmt: skip

CURRENCY_WEIGHTS = (("USD", 0.7), ("EUR", 0.12), ("GBP", 0.08), ("CAD", 0.06), ("AUD", 0.04))

BRANDS = (
    ("AWESOME COLORS", "AC"), ("NORTHWOOD", "NW"), ("BRIGHTLINE", "BL"), ("TERRA HOME", "TH"),
    ("IRONCLAD", "IC"), ("SUMMIT OUTDOOR", "SO"), ("CASA VERDE", "CV"), ("PEAKFORM", "PF"),
)  # fmt: skip
COLORS = ("White", "Black", "Grey", "Navy", "Sage", "Sand", "Red", "Teak", "Oak", "Blue")
SIZES = ("SM", "MD", "LG", "XL")

# (department, category, product nouns, typical price)
CATALOG: tuple[tuple[str, str, tuple[str, ...], float], ...] = (
    ("Painting & Decorating", "Paint", (
        "Interior Paint Satin Finish 32 Fl Oz", "Exterior Paint Matte Finish 1 Gal",
        "Primer Sealer 1 Qt", "Ceiling Paint Flat 1 Gal", "Chalk Finish Paint 16 Fl Oz",
    ), 34.0),
    ("Painting & Decorating", "Tools", (
        "Double Thick Chip Paint Brush", "Microfiber Paint Roller 9 Inch", "Angled Sash Brush",
        "Paint Tray Set", "Telescopic Extension Pole", "Professional Paint Brush 2 Inch",
    ), 12.0),
    ("Painting & Decorating", "Wallpaper", (
        "Peel and Stick Wallpaper Roll", "Textured Vinyl Wallpaper",
    ), 45.0),
    ("Outdoor Living", "Furniture / Dining", (
        "Premium Teak Outdoor Dining Chair", "Aluminum Extendable Patio Table 84 Inch",
        "Cantilever Patio Umbrella 11 Foot", "Wicker Bistro Set",
    ), 320.0),
    ("Outdoor Living", "Grills", ("Gas Grill 3 Burner", "Charcoal Kettle Grill 22 Inch"), 280.0),
    ("Outdoor Living", "Garden", (
        "Raised Garden Bed Cedar", "Expandable Garden Hose 50 Ft", "Pruning Shears",
    ), 40.0),
    ("Kitchen", "Cookware", (
        "Nonstick Frying Pan 10 Inch", "Cast Iron Skillet 12 Inch", "Stainless Saucepan 3 Qt",
    ), 48.0),
    ("Kitchen", "Small Appliances", (
        "Espresso Machine", "Stand Mixer 5 Qt", "Electric Kettle 1.7 L", "Blender 1200 W",
    ), 150.0),
    ("Home Decor", "Lighting", ("LED Floor Lamp", "Pendant Light", "Table Lamp Linen"), 85.0),
    ("Home Decor", "Textiles", (
        "Linen Throw Pillow", "Wool Area Rug 5x8", "Blackout Curtain",
    ), 60.0),
    ("Tools & Hardware", "Power Tools", (
        "Cordless Drill Driver 20V", "Random Orbital Sander", "Circular Saw 7-1/4 Inch",
    ), 130.0),
    ("Tools & Hardware", "Hand Tools", (
        "Claw Hammer 16 Oz", "Screwdriver Set 12 Piece", "Tape Measure 25 Ft",
    ), 22.0),
    ("Apparel", "Men / Outerwear", (
        "Waterproof Rain Jacket", "Quilted Vest", "Fleece Hoodie",
    ), 90.0),
    ("Apparel", "Women / Shoes", (
        "Trail Running Shoe", "Leather Ankle Boot", "Canvas Sneaker",
    ), 95.0),
)  # fmt: skip

SEARCH_TERMS = (
    "paint with satin finish", "white ceiling paint", "paint roller", "teak chair",
    "patio umbrella", "gas grill", "garden hose 50ft", "cast iron", "espresso machine",
    "stand mixer red", "floor lamp", "wool rug", "cordless drill", "sander", "rain jacket",
    "running shoes women", "ankle boots", "wallpaper peel and stick", "brush set",
    "outdoor dining set", "kettle", "blackout curtains", "hammer", "gift card",
    "summer sale", "primer", "chalk paint", "bistro set", "pruning shears", "vest",
)  # fmt: skip
ERRORS = (
    ("This promo code is invalid.", "USER", "promoCode"),
    ("Your card was declined.", "user", "payment"),
    ("Please enter a valid postcode.", "USER", "shippingAddress"),
    ("This e-mail address is already registered.", "user", "registration"),
    ("Something went wrong. Please try again later.", "APPLICATION", "checkout"),
    ("Payment service unavailable (503).", "application", "paymentGateway"),
    ("Session expired.", "application", "session"),
)
ABANDONMENT_REASONS = (
    "APPLICATION_ERROR", "LARGEST_CONTENTFUL_PAINT", "CUMULATIVE_LAYOUT_SHIFT",
    "FIRST_INPUT_DELAY", "RAGE_CLICK", "USER_ERRORS", "EXCESSIVE_SCROLLING",
)  # fmt: skip
ABANDONMENT_DESCRIPTIONS = (
    "Payment form validation errors", "User scrolled through 35 products without engagement",
    "Shipping costs shown at checkout", "Page took too long to load", "Session timed out",
)  # fmt: skip
INTERACTIONS = ("LAUNCH", "load", "PAUSE", "continue", "COMPLETE", "stop", "ENLARGE")
CONFIGURATIONS = (
    "Size selection", "Color selection", "Quantity change", "Finish selection",
    "FAQ opened", "Reviews opened",
)  # fmt: skip
CUSTOM_ATTRIBUTES = (
    ("loyaltyTier", ("bronze", "silver", "gold", "platinum")),
    ("abTestVariant", ("A", "B", "control")),
    ("channel", ("web", "ios", "android")),
    ("storeId", ("0142", "0077", "0311", "1024")),
    ("utmCampaign", ("summer_sale", "newsletter_w34", "retargeting")),
)
PAGE_GROUPS = ("Product Categories", "Product Detail", "Content", "Checkout", "Account")
AVAILABILITY = ("In Stock", "In Stock", "In Stock", "Low Stock", "Out of Stock", "Back Order")

START_MS = 1_754_006_400_000  # 2025-08-01T00:00:00Z
SPAN_MS = 120 * 86_400_000  # four months of traffic
OFFSETS = (0, 0, 0, 0, 0, 0, 120, 60, -300, -240, 330)  # minutes east of UTC


class FastRandom(random.Random):
    """random.Random with choice and randint drawn from one random() call each: the
    generator makes some thirty draws per signal, and the stock ones are 3-4 times slower.
    """

    def choice(self, seq: SupportsLenAndGetItem[T]) -> T:
        return seq[int(self.random() * len(seq))]

    def randint(self, a: int, b: int) -> int:
        return a + int(self.random() * (b - a + 1))


def _cumulative(weights: Sequence[float]) -> list[float]:
    return list(itertools.accumulate(weights))


@dataclass(frozen=True, slots=True)
class Product:
    product_id: str
    name: str
    price: float
    category: str
    category_id: str
    dept_slug: str
    url: str
    images: tuple[str, ...]
    description: str
    brand: str
    department: str


@dataclass(frozen=True, slots=True)
class Contact:
    kind: str  # contactKey | email | sms | whatsapp
    value: str
    email: str  # the address an identification signal may carry
    phone: str


def _slug(text: str) -> str:
    out = "".join(c.lower() if c.isalnum() else "-" for c in text)
    while "--" in out:
        out = out.replace("--", "-")
    return out.strip("-")


def _price(rng: random.Random, typical: float) -> float:
    value = typical * rng.lognormvariate(0.0, 0.45)
    return round(max(1.0, round(value)) - rng.choice((0.01, 0.01, 0.51, 0.05, 0.0)), 2)


def build_catalog(rng: random.Random, size: int = 4000) -> list[Product]:
    products: list[Product] = []
    seen: set[str] = set()
    for number in range(size):
        department, category, nouns, typical = rng.choice(CATALOG)
        brand, code = rng.choice(BRANDS)
        noun = rng.choice(nouns)
        color = rng.choice(COLORS)
        cat_code = "".join(w[0] for w in category.replace("/", " ").split()).upper()[:3]
        product_id = f"{code}-{cat_code}{noun[:2].upper()}-{color[:3].upper()}-{rng.choice(SIZES)}"
        if product_id in seen:
            product_id = f"{product_id}-{number:04d}"
        seen.add(product_id)
        name = f"{brand} {noun} {color}"
        dept_slug = _slug(department)
        slug = _slug(f"{brand} {noun} {color}")
        url = f"https://www.example.com/{dept_slug}/{_slug(category)}/{slug}"
        images = tuple(
            f"https://www.example.com/images/{slug}-{view}.jpg"
            for view in ("front", "side", "detail")[: rng.randint(1, 3)]
        )
        products.append(
            Product(
                product_id=product_id,
                name=name,
                price=_price(rng, typical),
                category=f"{department} / {category}",
                category_id=f"CAT-{1000 + CATALOG.index((department, category, nouns, typical))}",
                dept_slug=dept_slug,
                url=url,
                images=images,
                description=f"{noun} by {brand.title()}, {color.lower()}",
                brand=brand.title(),
                department=department,
            )
        )
    return products


def _phone(rng: random.Random) -> str:
    """A *possible* E.164 number (fictional, but with real country and area codes)."""
    country = rng.random()
    if country < 0.55:  # US / Canada: +1 NPA NXX XXXX
        exchange = rng.randint(200, 999)
        return f"+1{rng.choice(NANP_AREA_CODES)}{exchange}{rng.randint(0, 9999):04d}"
    if country < 0.70:  # UK mobile: +44 7xxx xxxxxx
        return f"+447{rng.randint(100, 999)}{rng.randint(0, 999999):06d}"
    if country < 0.82:  # German mobile: +49 15x xxxxxxxx
        return f"+4915{rng.choice('1279')}{rng.randint(0, 99_999_999):08d}"
    if country < 0.90:  # French mobile: +33 6/7 xx xx xx xx
        return f"+33{rng.choice('67')}{rng.randint(0, 99_999_999):08d}"
    if country < 0.95:  # Australian mobile: +61 4xx xxx xxx
        return f"+614{rng.randint(0, 99_999_999):08d}"
    return f"+346{rng.randint(0, 99_999_999):08d}"  # Spanish mobile


def _email(rng: random.Random, first: str, last: str) -> str:
    pattern = rng.random()
    number = str(rng.randint(1, 999)) if rng.random() < 0.6 else ""
    if pattern < 0.55:
        local = f"{first}.{last}{number}"
    elif pattern < 0.75:
        local = f"{first[0]}{last}{number}"
    elif pattern < 0.88:
        local = f"{first}_{last}{number}"
    elif pattern < 0.95:
        local = f"{last}.{first}{number}"
    else:
        local = f"{first}.{last}+news"
    u = rng.random()
    if u < 0.9:
        domain = "example.com" if u < 0.6 else "example.org" if u < 0.75 else "example.net"
    else:
        domain = rng.choice(EMAIL_DOMAINS_MORE)
    return f"{local}@{domain}"


def build_contacts(rng: random.Random, count: int) -> list[Contact]:
    contacts: list[Contact] = []
    for _ in range(count):
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        email = _email(rng, first, last)
        phone = _phone(rng)
        u = rng.random()
        if u < 0.35:
            letters = "".join(rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZ") for _ in range(4))
            key = (
                f"{letters}-{rng.randint(100_000_000, 999_999_999)}"
                if rng.random() < 0.7
                else f"CRM-{rng.randint(0, 9_999_999):08d}"
            )
            contacts.append(Contact("contactKey", key, email, phone))
        elif u < 0.80:
            contacts.append(Contact("email", email, email, phone))
        elif u < 0.92:
            contacts.append(Contact("sms", phone, email, phone))
        else:
            contacts.append(Contact("whatsapp", phone, email, phone))
    return contacts


def _distinct_contact(contact: Contact, index: int) -> Contact:
    """The contact made unique by `index`: its e-mail's local part, its phone's last
    digits and its contact key carry it."""
    local, _, domain = contact.email.partition("@")
    email = f"{local}.{index}@{domain}"
    phone = f"{contact.phone[:-7]}{index % 10_000_000:07d}"
    value = {"email": email, "contactKey": f"{contact.value}-{index}"}.get(contact.kind, phone)
    return dataclasses.replace(contact, value=value, email=email, phone=phone)


# --- mutations: each gives exactly one finding of a known severity and code ---------------


@dataclass(frozen=True, slots=True)
class Mutation:
    name: str
    severity: str  # "error" | "warning"
    code: str  # the finding's code (SPEC §5)
    weight: float
    # (generator, envelope, content, slots in use) -> applied?
    apply: Callable[[Generator, dict[str, Any], dict[str, Any], set[str]], bool]


def _claim(used: set[str], slot: str) -> bool:
    if slot in used or "*" in used:
        return False
    used.add(slot)
    return True


def _items(content: dict[str, Any]) -> list[dict[str, Any]] | None:
    kind = content["signalType"]
    key = ITEM_TYPES.get(kind) or ITEM_TYPES_OPTIONAL.get(kind)
    items = content.get(key) if key else None
    return items if items else None


def m_missing_required(
    g: Generator, env: dict[str, Any], c: dict[str, Any], used: set[str]
) -> bool:
    name = g.rng.choice(REQUIRED[c["signalType"]])
    if name not in c or not _claim(used, name):
        return False
    if g.rng.random() < 0.15:
        c[name] = None  # "is null" in JSON, an empty cell in CSV: required either way
    else:
        del c[name]
    return True


def m_blank_required(g: Generator, env: dict[str, Any], c: dict[str, Any], used: set[str]) -> bool:
    names = [n for n in REQUIRED[c["signalType"]] if n in REQUIRED_STRINGS and n in c]
    if not names:
        return False
    name = g.rng.choice(names)
    if not _claim(used, name):
        return False
    c[name] = g.rng.choice(("", "   ", " "))
    return True


# Values of the wrong type that stay wrong in CSV too (a CSV "39.99" is a number again).
WRONG_NUMBERS: dict[str, tuple[Any, ...]] = {
    "unitPrice": (True, "39,99", "$39.99", False),
    "itemQuantity": ("2 pcs", 1.5, "two", True),
    "abandonedCartValue": ("159.97 USD", True, "n/a"),
    "numberOfResults": ("9 results", 2.5, "many", False),
}


def m_wrong_type(g: Generator, env: dict[str, Any], c: dict[str, Any], used: set[str]) -> bool:
    names = [n for n in REQUIRED[c["signalType"]] if n in WRONG_NUMBERS and n in c]
    if not names:
        return False
    name = g.rng.choice(names)
    if not _claim(used, name):
        return False
    c[name] = g.rng.choice(WRONG_NUMBERS[name])
    return True


def m_bad_currency(g: Generator, env: dict[str, Any], c: dict[str, Any], used: set[str]) -> bool:
    if "currency" not in REQUIRED[c["signalType"]] or "currency" not in c:
        return False
    if not _claim(used, "currency"):
        return False
    c["currency"] = g.rng.choice(("usd", "US$", "EURO", "eur", "Dollar", "UKP"))
    return True


def m_bad_enum(g: Generator, env: dict[str, Any], c: dict[str, Any], used: set[str]) -> bool:
    kind = c["signalType"]
    if kind == "error" and _claim(used, "errorType"):
        c["errorType"] = g.rng.choice(("fatal", "SYSTEM", "warning", "validation"))
        return True
    if kind == "identification" and _claim(used, "identifierName"):
        c["identifierName"] = g.rng.choice(("phone", "mail", "customerId", "e-mail"))
        return True
    return False


def m_bad_identifier_value(
    g: Generator, env: dict[str, Any], c: dict[str, Any], used: set[str]
) -> bool:
    if c["signalType"] != "identification" or used & {"identifierName", "identifierValue", "*"}:
        return False
    used.update(("identifierName", "identifierValue"))  # the check needs a sound name
    name = c["identifierName"].lower()
    if name == "email":
        c["identifierValue"] = c["identifierValue"].replace("@", g.rng.choice(("(at)", "@@", " @")))
    elif name == "sms":
        c["identifierValue"] = g.rng.choice(("0044 7700 900123", "555-0134", "+1 (202) 555-0143"))
    else:
        c["identifierValue"] = "  "
    return True


def m_bad_item(g: Generator, env: dict[str, Any], c: dict[str, Any], used: set[str]) -> bool:
    items = _items(c)
    if items is None or not _claim(used, "items.required"):
        return False
    item = g.rng.choice(items)
    u = g.rng.random()
    if u < 0.6:
        del item["unitPrice"]
    elif u < 0.8:
        item["unitPrice"] = g.rng.choice(("12.99 USD", True, "free"))
    else:
        del item["productId"]
    return True


def m_missing_app_key(g: Generator, env: dict[str, Any], c: dict[str, Any], used: set[str]) -> bool:
    if not _claim(used, "appKey"):
        return False
    if g.rng.random() < 0.7:
        del env["appKey"]
    else:
        env["appKey"] = ""
    return True


def m_missing_identity(
    g: Generator, env: dict[str, Any], c: dict[str, Any], used: set[str]
) -> bool:
    if not _claim(used, "identity"):
        return False
    if g.rng.random() < 0.7:
        del env["identifiableAttributes"]
    else:
        env["identifiableAttributes"] = {}
    return True


def m_bad_identity(g: Generator, env: dict[str, Any], c: dict[str, Any], used: set[str]) -> bool:
    if not _claim(used, "identity"):
        return False
    ids = env["identifiableAttributes"]
    (key, value), = ids.items()  # fmt: skip
    if key == "email":
        ids[key] = g.rng.choice(
            (value.replace("@", "@@"), value.replace("@", "."), value.replace(".", " ", 1),
             value.split("@")[0] + "@example")
        )  # fmt: skip
    elif key == "contactKey":
        ids[key] = g.rng.choice(("", " "))
    else:
        ids[key] = g.rng.choice(
            (value[1:], "+1 (202) 555-0143", value[:5], "00" + value[1:], value + "1234567")
        )  # fmt: skip
    return True


def m_unknown_type(g: Generator, env: dict[str, Any], c: dict[str, Any], used: set[str]) -> bool:
    if used:
        return False
    used.add("*")  # an unknown type hides every other content finding
    c["signalType"] = g.rng.choice(
        ("purchase", "pageview", "checkout", "addToBasket", "PageView", "productClick")
    )
    return True


def w_unknown_field(g: Generator, env: dict[str, Any], c: dict[str, Any], used: set[str]) -> bool:
    if not _claim(used, "unknown"):
        return False
    name, value = g.rng.choice(
        (("couponCode", "SAVE10"), ("pageTitle", "Interior paint | Example Store"),
         ("referrer", "https://www.google.com/"), ("deviceType", "mobile"))
    )  # fmt: skip
    c[name] = value
    return True


def w_item_quantity(g: Generator, env: dict[str, Any], c: dict[str, Any], used: set[str]) -> bool:
    items = _items(c)
    if items is None or not _claim(used, "items.quantity"):
        return False
    item = items[-1]
    item["quantity"] = item.pop("itemQuantity", 1)
    return True


def w_naive_timestamp(g: Generator, env: dict[str, Any], c: dict[str, Any], used: set[str]) -> bool:
    if not _claim(used, "signalTimestamp"):
        return False
    stamp = c.get("signalTimestamp") or "2025-09-14T17:02:45.120Z"
    c["signalTimestamp"] = stamp[:23]  # no zone
    return True


def w_bad_effect(g: Generator, env: dict[str, Any], c: dict[str, Any], used: set[str]) -> bool:
    if not _claim(used, "effect"):
        return False
    c["effect"] = g.rng.choice(("neutral", "mixed", "+1"))
    return True


def w_long_name(g: Generator, env: dict[str, Any], c: dict[str, Any], used: set[str]) -> bool:
    if not _claim(used, "name"):
        return False
    base = c.get("name") or "Signal"
    c["name"] = (base + " - " + "campaign tracking " * 20)[: g.rng.randint(257, 400)]
    return True


def w_ambiguous(g: Generator, env: dict[str, Any], c: dict[str, Any], used: set[str]) -> bool:
    if not _claim(used, "identity"):
        return False
    ids = env["identifiableAttributes"]
    contact: Contact = g.current_contact
    if "email" not in ids:
        ids["email"] = contact.email
    else:
        ids["sms"] = contact.phone
    return True


def w_bad_optional(g: Generator, env: dict[str, Any], c: dict[str, Any], used: set[str]) -> bool:
    kind = c["signalType"]
    rng = g.rng
    if kind == "productView":
        name, value = rng.choice(
            (("msrp", "n/a"), ("productRating", "4.5 stars"), ("dateAdded", "2024-03-12T10:15:00Z"),
             ("currency", "usd"), ("inventoryQuantity", 12.5))
        )  # fmt: skip
    elif kind in ("browseAbandonment", "cartAbandonment"):
        name, value = "abandonmentReason", rng.choice(("TIMEOUT", "price", "other"))
    elif kind == "richMediaInteraction":
        name, value = "interactionType", rng.choice(("play", "seek", "mute"))
    elif kind == "identification":
        name, value = "identificationFromLogin", rng.choice(("maybe", "sso"))
    else:
        return False
    if not _claim(used, name):
        return False
    c[name] = value
    return True


ERROR_MUTATIONS = (
    Mutation("missing required field", "error", "required", 30, m_missing_required),
    Mutation("blank required string", "error", "required", 10, m_blank_required),
    Mutation("wrong type (string quantity, boolean price...)", "error", "type", 15, m_wrong_type),
    Mutation("bad currency", "error", "enum", 10, m_bad_currency),
    Mutation("bad required enumeration", "error", "enum", 4, m_bad_enum),
    Mutation("identifierValue does not fit identifierName", "error", "format", 3,
             m_bad_identifier_value),
    Mutation("item lacks or breaks a required field", "error", "required|type", 8, m_bad_item),
    Mutation("missing or empty appKey", "error", "required", 5, m_missing_app_key),
    Mutation("missing identifiableAttributes", "error", "required", 3, m_missing_identity),
    Mutation("bad e-mail / phone / contactKey", "error", "format|required", 10, m_bad_identity),
    Mutation("unknown signalType", "error", "enum", 4, m_unknown_type),
)  # fmt: skip
WARNING_MUTATIONS = (
    Mutation("unknown field", "warning", "unknown_field", 30, w_unknown_field),
    Mutation("item quantity instead of itemQuantity", "warning", "unknown_field", 8,
             w_item_quantity),
    Mutation("naive signalTimestamp", "warning", "format", 25, w_naive_timestamp),
    Mutation("bad effect", "warning", "enum", 10, w_bad_effect),
    Mutation("name over 256 characters", "warning", "max_length", 5, w_long_name),
    Mutation("several identifiable attributes", "warning", "ambiguous", 10, w_ambiguous),
    Mutation("invalid optional field", "warning", "type|enum|format", 12, w_bad_optional),
)  # fmt: skip


# --- the generator -------------------------------------------------------------------------


@dataclass
class Expected:
    """What the generated file must produce."""

    signals: int = 0
    rejected: int = 0
    errors: int = 0
    warnings: int = 0
    by_type: Counter[str] = field(default_factory=Counter)
    by_mutation: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {
            "signals": self.signals,
            "valid": self.signals - self.rejected,
            "rejected": self.rejected,
            "errors": self.errors,
            "warnings": self.warnings,
            "by_type": dict(self.by_type),
            "by_mutation": dict(self.by_mutation),
        }


class Generator:
    """Seed-like signals, deterministic for a seed."""

    def __init__(
        self,
        seed: int,
        *,
        contacts: int,
        error_rate: float,
        warning_rate: float,
        distinct: bool = False,
    ) -> None:
        """`distinct`: every signal has a contact, a session and products of its own (no
        cache of the validator's e-mail and phone checks is ever hit)."""
        self.rng: random.Random = FastRandom(seed)
        self.distinct = distinct
        self._serial = 0
        self.products = build_catalog(self.rng)
        self.contacts = build_contacts(self.rng, contacts)
        self.error_rate = error_rate
        self.warning_rate = warning_rate
        self.sessions: dict[int, str] = {}
        self.current_contact = self.contacts[0]
        self.mutations: list[str] = []  # applied to the last signal
        self.counts = (0, 0)  # its errors and warnings
        self._types = list(TYPE_WEIGHTS)
        self._type_cum = _cumulative(list(TYPE_WEIGHTS.values()))
        self._currency = [c for c, _ in CURRENCY_WEIGHTS]
        self._currency_cum = _cumulative([w for _, w in CURRENCY_WEIGHTS])
        self._errors_cum = _cumulative([m.weight for m in ERROR_MUTATIONS])
        self._warnings_cum = _cumulative([m.weight for m in WARNING_MUTATIONS])
        self._builders: dict[str, Callable[[dict[str, Any]], None]] = {
            "addToCart": self._add_to_cart,
            "browseAbandonment": self._browse_abandonment,
            "cartAbandonment": self._cart_abandonment,
            "error": self._error,
            "identification": self._identification,
            "onSiteSearch": self._search,
            "order": self._order,
            "pageView": self._page_view,
            "productConfiguration": self._product_configuration,
            "productView": self._product_view,
            "richMediaInteraction": self._rich_media,
        }

    # picking ----------------------------------------------------------------------------

    def _pick(self, values: Sequence[Any], cumulative: list[float]) -> Any:
        return values[bisect.bisect(cumulative, self.rng.random() * cumulative[-1])]

    def _skewed(self, size: int, power: float = 3.0) -> int:
        """An index in [0, size) where low indices come back often (popular items)."""
        return int(size * self.rng.random() ** power)

    def _product(self) -> Product:
        product = self.products[self._skewed(len(self.products), 2.0)]
        if not self.distinct:
            return product
        self._serial += 1
        unique = f"{product.product_id}-{self._serial}"
        return dataclasses.replace(product, product_id=unique, url=f"{product.url}?v={unique}")

    def _currency_code(self) -> str:
        return str(self._pick(self._currency, self._currency_cum))

    def _timestamp(self, index: int, total: int, naive: bool = False) -> str:
        rng = self.rng
        ms = START_MS + SPAN_MS * index // max(total, 1) + rng.randint(0, 90_000)
        offset = rng.choice(OFFSETS)
        local = ms // 1000 + offset * 60
        tm = time.gmtime(local)
        stamp = (
            f"{tm.tm_year:04d}-{tm.tm_mon:02d}-{tm.tm_mday:02d}T"
            f"{tm.tm_hour:02d}:{tm.tm_min:02d}:{tm.tm_sec:02d}.{ms % 1000:03d}"
        )
        if offset == 0:
            return stamp + "Z"
        sign = "+" if offset > 0 else "-"
        return f"{stamp}{sign}{abs(offset) // 60:02d}:{abs(offset) % 60:02d}"

    def _session(self, contact_index: int) -> str:
        session = self.sessions.get(contact_index)
        if session is None or self.rng.random() < 0.3:
            bits = self.rng.getrandbits(64)
            if self.rng.random() < 0.6:
                session = f"OOII{bits % 10**15:015d}a{self.rng.randint(1000, 9999)}"
            else:
                session = f"SESS-{bits:016X}"[:17]
            self.sessions[contact_index] = session
        return session

    # one signal ---------------------------------------------------------------------------

    def signal(self, index: int, total: int, expected: Expected) -> dict[str, Any]:
        rng = self.rng
        if self.distinct:
            contact_index = -1 - index  # a session of its own too
            contact = _distinct_contact(build_contacts(rng, 1)[0], index)
        else:
            contact_index = self._skewed(len(self.contacts))
            contact = self.contacts[contact_index]
        self.current_contact = contact
        kind = str(self._pick(self._types, self._type_cum))
        content: dict[str, Any] = {"signalType": kind}
        if rng.random() < 0.8:
            content["category"] = "Behavior"
        if rng.random() < 0.85:
            content["name"] = rng.choice(SIGNAL_NAMES[kind])
        if rng.random() < 0.8:
            content["effect"] = "negative" if kind in NEGATIVE_TYPES else "positive"
        self._builders[kind](content)
        if rng.random() < 0.05:
            content["description"] = f"{kind} imported from the store's event log"
        if rng.random() < 0.12:
            content["signalCustomAttributes"] = [
                {"name": name, "value": rng.choice(values)}
                for name, values in rng.sample(CUSTOM_ATTRIBUTES, rng.randint(1, 3))
            ]
        if rng.random() < 0.95:
            content["signalTimestamp"] = self._timestamp(index, total)
        envelope: dict[str, Any] = {}
        if rng.random() < 0.9:
            envelope["sessionId"] = self._session(contact_index)
        envelope["appKey"] = APP_KEYS[0] if rng.random() < 0.8 else rng.choice(APP_KEYS)
        envelope["identifiableAttributes"] = {contact.kind: contact.value}
        envelope["signalContent"] = content

        errors = warnings = 0
        used: set[str] = set()
        self.mutations.clear()
        if rng.random() < self.error_rate:
            wanted = 1 if rng.random() < 0.7 else 2
            errors = self._mutate(
                ERROR_MUTATIONS, self._errors_cum, wanted, envelope, content, used, expected
            )
        if rng.random() < self.warning_rate:
            warnings = self._mutate(
                WARNING_MUTATIONS, self._warnings_cum, 1, envelope, content, used, expected
            )
        expected.signals += 1
        expected.by_type[kind] += 1
        expected.errors += errors
        expected.warnings += warnings
        if errors:
            expected.rejected += 1
        self.counts = (errors, warnings)
        return envelope

    def _mutate(
        self,
        mutations: Sequence[Mutation],
        cumulative: list[float],
        wanted: int,
        envelope: dict[str, Any],
        content: dict[str, Any],
        used: set[str],
        expected: Expected,
    ) -> int:
        applied = 0
        for _ in range(20):
            if applied == wanted or "*" in used:  # "*": an unknown type, nothing else counts
                break
            mutation: Mutation = self._pick(mutations, cumulative)
            if mutation.apply(self, envelope, content, used):
                applied += 1
                expected.by_mutation[mutation.name] += 1
                self.mutations.append(mutation.name)
        return applied

    # the eleven types (fields and values modelled on seeds/000 and seeds/002) -------------

    def _product_fields(self, c: dict[str, Any], p: Product, extra: float = 0.5) -> None:
        rng = self.rng
        if rng.random() < 0.8:
            c["productCategory"] = p.category
        if rng.random() < 0.2 * extra * 2:
            c["productCategoryId"] = p.category_id
        if rng.random() < 0.6 * extra * 2:
            c["productUrls"] = (
                [p.url] if rng.random() < 0.7 else [p.url, p.url + "?ref=bestsellers"]
            )
        if rng.random() < 0.5 * extra * 2:
            c["imageUrls"] = list(p.images)
        if rng.random() < 0.15:
            c["virtualCategory"] = rng.choice(("Sale", "New arrivals", "Bestsellers"))
        if rng.random() < 0.1:
            c["promotionId"] = rng.choice(("SUMMER2025", "BF-2025", "WELCOME10"))

    def _add_to_cart(self, c: dict[str, Any]) -> None:
        rng = self.rng
        p = self._product()
        c["currency"] = self._currency_code()
        c["productId"] = p.product_id
        c["productName"] = p.name
        c["itemQuantity"] = rng.choice((1, 1, 1, 1, 2, 2, 3, 4))
        c["unitPrice"] = p.price
        if rng.random() < 0.3:
            c["discount"] = rng.choice((0, 5, 7, 10, round(p.price * 0.1, 2)))
        self._product_fields(c, p)
        if rng.random() < 0.6:
            c["shoppingCartUrl"] = "https://www.example.com/cart"

    def _item(self, currency: str, *, ordered: bool) -> dict[str, Any]:
        rng = self.rng
        p = self._product()
        item: dict[str, Any] = {
            "productId": p.product_id,
            "productName": p.name,
            "unitPrice": p.price,
        }
        if ordered or rng.random() < 0.6:
            item["itemQuantity"] = rng.choice((1, 1, 1, 2, 2, 3))
        if ordered and rng.random() < 0.7:
            item["currency"] = currency
        if not ordered and rng.random() < 0.5:
            item["productDescription"] = p.description
            item["inventoryQuantity"] = rng.randint(0, 300)
        if rng.random() < 0.4:
            item["discount"] = rng.choice((0, 2.0, 5.0, 7))
        if rng.random() < 0.8:
            item["productCategory"] = p.category
        if rng.random() < 0.6:
            item["productUrls"] = [p.url]
        if rng.random() < 0.3:
            item["imageUrls"] = list(p.images[:2])
        if rng.random() < 0.4:
            item["shoppingCartUrl"] = "https://www.example.com/cart"
        if rng.random() < 0.1:
            item["virtualCategory"] = "Sale"
        return item

    def _items_list(self, currency: str, *, ordered: bool) -> list[dict[str, Any]]:
        count = 1 + self._skewed(4, 1.8)
        return [self._item(currency, ordered=ordered) for _ in range(count)]

    @staticmethod
    def _total(items: list[dict[str, Any]]) -> float:
        return round(sum(i["unitPrice"] * i.get("itemQuantity", 1) for i in items), 2)

    def _browse_abandonment(self, c: dict[str, Any]) -> None:
        rng = self.rng
        c["currency"] = currency = self._currency_code()
        if rng.random() < 0.7:
            c["abandonmentReason"] = rng.choice(ABANDONMENT_REASONS)
        if rng.random() < 0.4:
            c["abandonmentReasonDescription"] = rng.choice(ABANDONMENT_DESCRIPTIONS)
        if rng.random() < 0.2:
            c["promotionId"] = "SUMMER2025"
        if rng.random() < 0.2:
            c["productCategoryId"] = self._product().category_id
        if rng.random() < 0.8:
            c["abandonedItems"] = self._items_list(currency, ordered=False)

    def _cart_abandonment(self, c: dict[str, Any]) -> None:
        rng = self.rng
        c["currency"] = currency = self._currency_code()
        items = self._items_list(currency, ordered=False)
        c["abandonedCartValue"] = self._total(items)
        if rng.random() < 0.5:
            c["abandonmentReason"] = rng.choice(ABANDONMENT_REASONS)
        if rng.random() < 0.3:
            c["abandonmentReasonDescription"] = rng.choice(ABANDONMENT_DESCRIPTIONS)
        if rng.random() < 0.7:
            c["shoppingCartUrl"] = "https://www.example.com/cart"
        if rng.random() < 0.85:
            c["abandonedItems"] = items

    def _error(self, c: dict[str, Any]) -> None:
        text, kind, identifier = self.rng.choice(ERRORS)
        c["errorText"] = text
        c["errorType"] = kind
        if self.rng.random() < 0.6:
            c["errorIdentifier"] = identifier

    def _identification(self, c: dict[str, Any]) -> None:
        rng = self.rng
        contact = self.current_contact
        u = rng.random()
        if contact.kind in ("sms", "whatsapp") and u < 0.5:
            c["identifierName"], c["identifierValue"] = "sms", contact.phone
        elif contact.kind == "contactKey" and u < 0.3:
            c["identifierName"], c["identifierValue"] = "contactKey", contact.value
        else:
            c["identifierName"], c["identifierValue"] = "email", contact.email
        if rng.random() < 0.7:
            c["identificationFromLogin"] = rng.random() < 0.6

    def _search(self, c: dict[str, Any]) -> None:
        rng = self.rng
        c["searchTerm"] = rng.choice(SEARCH_TERMS)
        results = 0 if rng.random() < 0.12 else int(rng.lognormvariate(2.5, 1.0))
        c["numberOfResults"] = results
        if results == 0 and "effect" in c:
            c["effect"] = "negative"

    def _order(self, c: dict[str, Any]) -> None:
        rng = self.rng
        c["currency"] = currency = self._currency_code()
        u = rng.random()
        if u < 0.5:
            letters = "".join(rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZ") for _ in range(3))
            c["orderId"] = f"{rng.randint(0, 99999):05d}-2025-{letters}"
        elif u < 0.8:
            c["orderId"] = str(rng.randint(100_000_000, 999_999_999))  # digits, yet a string
        else:
            c["orderId"] = f"ORD-{rng.randint(1, 9_999_999):07d}"
        items = self._items_list(currency, ordered=True)
        subtotal = self._total(items)
        shipping = rng.choice((0, 0, 4.99, 9.95, 15.45))
        tax = round(subtotal * rng.choice((0.0, 0.05, 0.07, 0.2)), 2)
        discount = rng.choice((0, 0, 0, 5, 10))
        c["orderSubtotal"] = subtotal
        c["orderShippingHandling"] = shipping
        c["orderTax"] = tax
        c["orderDiscount"] = discount
        c["orderValue"] = round(subtotal + shipping + tax - discount, 2)
        if rng.random() < 0.95:
            c["orderedItems"] = items

    def _page_view(self, c: dict[str, Any]) -> None:
        rng = self.rng
        u = rng.random()
        p = self._product()
        if u < 0.45:
            c["url"] = p.url
            group = "Product Detail"
        elif u < 0.75:
            c["url"] = (
                f"https://www.example.com/{p.dept_slug}/{_slug(p.category.split(' / ')[-1])}/"
            )
            group = "Product Categories"
        elif u < 0.85:
            c["url"] = "https://www.example.com/"
            group = "Content"
        else:
            path = rng.choice(("cart", "checkout", "account/orders", "blog/painting-tips", "help"))
            c["url"] = f"https://www.example.com/{path}"
            group = rng.choice(PAGE_GROUPS)
        if rng.random() < 0.15:
            c["url"] += "?utm_source=newsletter&utm_medium=email&utm_campaign=summer_sale"
        if rng.random() < 0.8:
            c["pageCategory"] = p.department
        if rng.random() < 0.75:
            c["pageGroup"] = group

    def _product_configuration(self, c: dict[str, Any]) -> None:
        rng = self.rng
        p = self._product()
        c["currency"] = self._currency_code()
        c["productId"] = p.product_id
        c["productName"] = p.name
        if rng.random() < 0.8:
            c["configurationType"] = rng.choice(CONFIGURATIONS)
        if rng.random() < 0.8:
            c["unitPrice"] = p.price
        if rng.random() < 0.3:
            c["inventoryQuantity"] = rng.randint(0, 500)
        self._product_fields(c, p, extra=0.3)

    def _product_view(self, c: dict[str, Any]) -> None:
        rng = self.rng
        p = self._product()
        c["productId"] = p.product_id
        c["productName"] = p.name
        if rng.random() < 0.8:
            c["currency"] = self._currency_code()
        if rng.random() < 0.85:
            c["unitPrice"] = p.price
        if rng.random() < 0.6:
            c["availability"] = rng.choice(AVAILABILITY)
        if rng.random() < 0.6:
            c["brandName"] = p.brand
        if rng.random() < 0.3:
            c["discount"] = rng.choice((0, 0, 5, 10))
        if rng.random() < 0.5:
            c["inventoryQuantity"] = rng.randint(0, 500)
        if rng.random() < 0.2:
            c["msrp"] = round(p.price * 1.2, 2)
        if rng.random() < 0.2:
            c["productRating"] = rng.choice((3.5, 4.0, 4.2, 4.5, 4.8, 5))
        if rng.random() < 0.15:
            c["sku"] = p.product_id.replace("-", "")
        if rng.random() < 0.15:
            c["tags"] = rng.sample(("eco", "bestseller", "new", "sale", "premium", "gift"), 2)
        if rng.random() < 0.1:
            c["dateAdded"] = (
                f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d} "
                f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:00.000"
            )
        if rng.random() < 0.1:
            c["productStatus"] = rng.choice(("Active", "Discontinued", "Upcoming"))
        self._product_fields(c, p)

    def _rich_media(self, c: dict[str, Any]) -> None:
        rng = self.rng
        p = self._product()
        c["mediaId"] = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(9))
        if rng.random() < 0.8:
            c["interactionType"] = rng.choice(INTERACTIONS)
        if rng.random() < 0.7:
            c["mediaCategory"] = rng.choice(("video", "video", "audio"))
        if rng.random() < 0.6:
            c["mediaName"] = f"How I used {p.name.title()}"
        if rng.random() < 0.6:
            c["url"] = p.url


# --- writing the files ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DataSet:
    n: int
    seed: int
    out: Path

    @property
    def stem(self) -> str:
        return f"signals-{self.n}-s{self.seed}-v{GENERATOR_VERSION}"

    def path(self, fmt: str) -> Path:
        return self.out / f"{self.stem}{SUFFIXES[fmt]}"

    @property
    def manifest(self) -> Path:
        return self.out / f"{self.stem}.manifest.json"

    @property
    def mutations(self) -> Path:
        """One line per signal given errors or warnings: [index, errors, warnings, names]."""
        return self.out / f"{self.stem}.mutations.ndjson"

    @property
    def tiny(self) -> Path:
        return self.out / f"{self.stem}.first.ndjson"


def _part(path: Path) -> Path:
    return path.with_name(path.name + ".part")


def _cell(value: Any) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int | float):
        return repr(value)
    return orjson.dumps(value).decode()


def generate(data: DataSet, args: argparse.Namespace) -> dict[str, Any]:
    """Write NDJSON, JSON array and CSV (reusing a complete earlier set); the manifest."""
    settings = {
        "generator_version": GENERATOR_VERSION,
        "n": data.n,
        "seed": data.seed,
        "contacts": args.contacts,
        "error_rate": args.error_rate,
        "warning_rate": args.warning_rate,
    }
    if data.manifest.exists() and not args.regenerate:
        manifest: dict[str, Any] = orjson.loads(data.manifest.read_bytes())
        files = [data.path(f) for f in ("ndjson", "json", "csv")] + [data.mutations]
        if all(manifest.get(k) == v for k, v in settings.items()) and all(
            f.exists() for f in files
        ):
            print(f"Reusing {data.out / data.stem}.* (generated earlier for N and seed)")
            return manifest
    data.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    generator = Generator(
        data.seed,
        contacts=args.contacts,
        error_rate=args.error_rate,
        warning_rate=args.warning_rate,
    )
    expected = Expected()
    identity_columns: dict[str, None] = {}
    content_columns: dict[str, None] = {"signalType": None}
    envelope_columns: dict[str, None] = {}
    ndjson_part, json_part = _part(data.path("ndjson")), _part(data.path("json"))
    with (
        ndjson_part.open("wb", buffering=4 * MB) as ndjson,
        json_part.open("wb", buffering=4 * MB) as array,
        _part(data.mutations).open("wb", buffering=MB) as mutations,
    ):
        array.write(b"[\n")
        for index in range(data.n):
            envelope = generator.signal(index, data.n, expected)
            for key in envelope:
                if key not in envelope_columns:
                    envelope_columns[key] = None
            for key in envelope.get("identifiableAttributes", ()):
                if key not in identity_columns:
                    identity_columns[key] = None
            for key in envelope["signalContent"]:
                if key not in content_columns:
                    content_columns[key] = None
            line = orjson.dumps(envelope)
            ndjson.write(line)
            ndjson.write(b"\n")
            if index:
                array.write(b",\n")
            array.write(line)
            if generator.mutations:
                errors, warnings = generator.counts
                mutations.write(orjson.dumps([index, errors, warnings, generator.mutations]))
                mutations.write(b"\n")
            if index and index % 200_000 == 0:
                print(f"  generated {index:,} signals", flush=True)
        array.write(b"\n]\n")
    columns = [c for c in ("appKey", "sessionId") if c in envelope_columns]
    columns += [
        f"identifiableAttributes.{k}"
        for k in ("contactKey", "email", "sms", "whatsapp")
        if k in identity_columns
    ]
    columns += [f"signalContent.{k}" for k in content_columns]
    _write_csv(ndjson_part, _part(data.path("csv")), columns)
    for path in [data.path(f) for f in ("ndjson", "json", "csv")] + [data.mutations]:
        _part(path).replace(path)
    with data.path("ndjson").open("rb") as f:
        data.tiny.write_bytes(f.readline())
    manifest = {
        **settings,
        "expected": expected.as_dict(),
        "csv_columns": len(columns),
    }
    data.manifest.write_bytes(orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
    print(f"Generated {data.n:,} signals in {time.perf_counter() - started:.1f} s")
    return manifest


def _write_csv(ndjson_path: Path, csv_path: Path, columns: list[str]) -> None:
    position = {name: i for i, name in enumerate(columns)}
    width = len(columns)
    with (
        ndjson_path.open("rb", buffering=4 * MB) as source,
        csv_path.open("w", encoding="utf-8", newline="", buffering=4 * MB) as target,
    ):
        writer = csv.writer(target)  # RFC 4180: CRLF, quoted where needed, as spreadsheets
        writer.writerow(columns)
        loads, cell = orjson.loads, _cell
        for line in source:
            envelope = loads(line)
            row = [""] * width
            for key, value in envelope.items():
                if key == "identifiableAttributes":
                    for name, attribute in value.items():
                        row[position[f"identifiableAttributes.{name}"]] = cell(attribute)
                elif key == "signalContent":
                    for name, content_value in value.items():
                        row[position[f"signalContent.{name}"]] = cell(content_value)
                else:
                    row[position[key]] = cell(value)
            writer.writerow(row)


def ensure_gzip(data: DataSet) -> None:
    target = data.path("gz")
    if target.exists() and target.stat().st_mtime >= data.path("ndjson").stat().st_mtime:
        return
    started = time.perf_counter()
    with data.path("ndjson").open("rb") as source, gzip.open(_part(target), "wb", 6) as sink:
        shutil.copyfileobj(source, sink, 4 * MB)
    _part(target).replace(target)
    print(f"Compressed the NDJSON in {time.perf_counter() - started:.1f} s")


# --- measuring -----------------------------------------------------------------------------

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def _process_tree(root: int) -> list[int]:
    pids = [root]
    for pid in pids:  # grows while we walk it
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                with open(f"/proc/{pid}/task/{task}/children") as f:
                    pids.extend(int(child) for child in f.read().split())
            except OSError:
                continue
    return pids


def _rss_pss(pid: int) -> tuple[int, int]:
    rss = pss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as f:
            for line in f:
                if line.startswith(b"Rss:"):
                    rss = int(line.split()[1]) * 1024
                elif line.startswith(b"Pss:"):
                    pss = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError):
        pass
    return rss, pss


class TreeSampler(threading.Thread):
    """Peak of the summed RSS and PSS of a process tree, sampled every `interval` s."""

    def __init__(self, root: int, interval: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.root = root
        self.interval = interval
        self.peak_rss = 0
        self.peak_pss = 0
        self.peak_processes = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            pids = _process_tree(self.root)[1:]  # the measuring helper itself left out
            total_rss = total_pss = 0
            for pid in pids:
                rss, pss = _rss_pss(pid)
                total_rss += rss
                total_pss += pss
            self.peak_rss = max(self.peak_rss, total_rss)
            self.peak_pss = max(self.peak_pss, total_pss)
            self.peak_processes = max(self.peak_processes, len(pids))
            self._stop_event.wait(self.interval)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


@dataclass
class Run:
    seconds: float
    max_rss: int  # bytes: ru_maxrss of the process and its waited-for descendants
    tree_rss: int  # bytes: sampled peak of the summed RSS of the tree
    tree_pss: int  # bytes: sampled peak of the summed PSS of the tree
    processes: int
    returncode: int
    stderr: str
    cpu_seconds: float


# Runs the measured command and reports its wall time and rusage. It is a tiny process of
# its own because a child's ru_maxrss starts at the RSS of the process that forked it (the
# kernel carries the pre-exec high-water mark over exec): forked from this script, which
# holds the generator, the figure would be the script's size, not the validator's. Forked
# from this helper, the floor is the helper's own ~8 MB.
MEASURE_HELPER = """\
import os, sys, time
started = time.perf_counter()
pid = os.fork()
if pid == 0:
    try:
        os.execv(sys.argv[2], sys.argv[2:])
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
seconds = time.perf_counter() - started
with open(sys.argv[1], "w") as f:
    cpu = usage.ru_utime + usage.ru_stime
    code = os.waitstatus_to_exitcode(status)
    f.write(f"{seconds} {usage.ru_maxrss} {cpu} {code}")
"""


def measure(command: list[str], stdout: Path | None) -> Run:
    """Run `command` in a fresh process; wall time and memory of that run alone."""
    program = shutil.which(command[0]) or command[0]
    with (
        open(stdout if stdout is not None else os.devnull, "wb") as out,
        open(os.devnull, "rb") as devnull_in,
        _TempText() as err,
        tempfile.NamedTemporaryFile("r", suffix=".rusage") as result,
    ):
        helper = [sys.executable, "-S", "-c", MEASURE_HELPER, result.name, program, *command[1:]]
        process = subprocess.Popen(helper, stdin=devnull_in, stdout=out, stderr=err.file, cwd=ROOT)
        sampler = TreeSampler(process.pid)
        sampler.start()
        helper_status = process.wait()
        sampler.stop()
        fields = result.read().split()
        if helper_status != 0 or len(fields) != 4:
            raise RuntimeError(f"the measuring helper failed: {err.read()[-2000:]}")
        # ru_maxrss covers the command and the descendants it waited for: per run.
        seconds, max_rss_kib, cpu, returncode = fields
        return Run(
            seconds=float(seconds),
            max_rss=int(max_rss_kib) * 1024,
            tree_rss=sampler.peak_rss,
            tree_pss=sampler.peak_pss,
            processes=sampler.peak_processes,
            returncode=int(returncode),
            stderr=err.read(),
            cpu_seconds=float(cpu),
        )


class _TempText:
    """A temporary file for a child's stderr, read back as text."""

    def __enter__(self) -> _TempText:
        self.file = tempfile.TemporaryFile()
        return self

    def read(self) -> str:
        self.file.seek(0)
        return self.file.read().decode(errors="replace")

    def __exit__(self, *exc: object) -> None:
        self.file.close()


ORJSON_SCRIPT = """\
import sys, time, orjson
started = time.perf_counter()
count = 0
loads = orjson.loads
with open(sys.argv[1], "rb") as f:
    for line in f:
        loads(line)
        count += 1
print(count, time.perf_counter() - started)
"""


def _warm(path: Path) -> None:
    """Read the file once so every run finds it in the page cache."""
    with path.open("rb", buffering=0) as f:
        while f.read(8 * MB):
            pass


@dataclass
class Check:
    ok: bool
    lines: str


def check_report(
    path: Path, expected: dict[str, Any], returncode: int, mutations: Path | None = None
) -> Check:
    """Compare the CLI's NDJSON report with what was generated; on a difference, name the
    first signals whose findings differ from their mutations."""
    lines = path.read_bytes().splitlines()
    notes: list[str] = []
    ok = True
    if not lines:
        return Check(False, "    no output at all")
    try:
        summary = orjson.loads(lines[-1])["summary"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return Check(False, f"    last line is no summary: {lines[-1][:200]!r}")
    got_codes: Counter[str] = Counter()
    per_signal: dict[int, list[dict[str, Any]]] = {}
    for line in lines[:-1]:
        finding = orjson.loads(line)
        got_codes[f"{finding['severity']}:{finding['code']}"] += 1
        per_signal.setdefault(finding["signal"], []).append(finding)
    pairs = [("signals", "signals"), ("rejected", "rejected"), ("errors", "errors")]
    pairs += [("warnings", "warnings")]
    parts = []
    for key, label in pairs:
        want, got = expected[key], summary.get(key)
        mark = "" if want == got else " ✗"
        ok &= want == got
        parts.append(f"{label} {got:,}/{want:,}{mark}" if isinstance(got, int) else f"{label} ?")
    want_lines = expected["errors"] + expected["warnings"] + 1
    ok &= len(lines) == want_lines
    parts.append(
        f"lines {len(lines):,}/{want_lines:,}" + ("" if len(lines) == want_lines else " ✗")
    )
    want_status = 1 if expected["rejected"] else 0
    ok &= returncode == want_status
    parts.append(f"exit {returncode}/{want_status}" + ("" if returncode == want_status else " ✗"))
    notes.append("    got/expected: " + ", ".join(parts))
    if not ok:
        codes = ", ".join(f"{k} {v:,}" for k, v in sorted(got_codes.items()))
        notes.append(f"    findings by severity:code: {codes}")
        if mutations is not None and mutations.exists():
            notes.extend(_signal_differences(per_signal, mutations))
    return Check(ok, "\n".join(notes))


def _signal_differences(
    per_signal: dict[int, list[dict[str, Any]]], mutations: Path, limit: int = 5
) -> list[str]:
    want: dict[int, tuple[int, int, list[str]]] = {}
    with mutations.open("rb") as f:
        for line in f:
            index, errors, warnings, names = orjson.loads(line)
            want[index] = (errors, warnings, names)
    notes: list[str] = []
    for index in sorted(set(want) | set(per_signal)):
        errors, warnings, names = want.get(index, (0, 0, []))
        found = per_signal.get(index, [])
        got_errors = sum(1 for f in found if f["severity"] == "error")
        if (got_errors, len(found) - got_errors) == (errors, warnings):
            continue
        notes.append(
            f"    signal {index}: expected {errors} error(s), {warnings} warning(s) from {names}"
        )
        notes.extend(
            f"      got {f['severity']} {f['code']} at {f['path']}: {f['message']}" for f in found
        )
        if len(notes) > limit * 4:
            break
    return notes


# --- the report ----------------------------------------------------------------------------


def machine() -> list[str]:
    model = "?"
    memory = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                memory = f"{int(line.split()[1]) / 1024**2:.1f} GiB"
                break
    except OSError:
        pass
    import msgspec

    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return [
        f"Machine: {os.cpu_count()} CPUs ({usable} usable), {model}, {memory} RAM, "
        f"{platform.system()} {platform.release()}",
        f"Python {platform.python_version()}, orjson {orjson.__version__}, "
        f"msgspec {msgspec.__version__}",
    ]


def _load() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def _load_1min(load: str) -> float:
    try:
        return float(load.split()[0])
    except (ValueError, IndexError):
        return 0.0


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


@dataclass
class Result:
    fmt: str
    size: int
    runs: list[Run]
    check: Check | None = None

    @property
    def best(self) -> Run:
        return min(self.runs, key=lambda r: r.seconds)

    @property
    def max_rss(self) -> int:
        return max(r.max_rss for r in self.runs)

    @property
    def tree_pss(self) -> int:
        return max(r.tree_pss for r in self.runs)


def _rate(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else float("inf")


def print_table(
    n: int,
    results: list[Result],
    orjson_result: Result | None,
    orjson_inner: list[float],
    startup: Run | None,
) -> bool:
    all_ok = True
    orjson_rate = _rate(n, orjson_result.best.seconds) if orjson_result else None
    header = (
        f"{'format':<11} {'size MB':>8} {'seconds':>8} {'signals/s':>10} {'CPU s':>6} "
        f"{'peak RSS':>9} {'Σ PSS':>7} {'procs':>5}  {'target':<36} verdict"
    )
    print(header)
    print("-" * len(header))
    if orjson_result is not None and orjson_rate is not None:
        run = orjson_result.best
        print(
            f"{'orjson raw':<11} {orjson_result.size / MB:>8.1f} {run.seconds:>8.2f} "
            f"{orjson_rate:>10,.0f} {run.cpu_seconds:>6.1f} {orjson_result.max_rss / MB:>9.1f} "
            f"{orjson_result.tree_pss / MB:>7.1f} {run.processes:>5}  "
            f"{'(reference: orjson.loads per line)':<36}"
        )
    for result in results:
        run = result.best
        rate = _rate(n, run.seconds)
        rss_mb = result.max_rss / MB
        targets: list[str] = []
        oks: list[bool] = []
        target_rate = TARGET_RATE.get(result.fmt)
        if target_rate is not None:
            targets.append(f"≥{target_rate // 1000}k/s")
            oks.append(rate >= target_rate)
        if result.fmt == "ndjson" and orjson_rate:
            ratio = rate / orjson_rate
            targets.append(f"≥{TARGET_ORJSON_RATIO}×orjson ({ratio:.2f}×)")
            oks.append(ratio >= TARGET_ORJSON_RATIO)
        targets.append(f"RSS<{TARGET_RSS_MB:.0f}")
        oks.append(rss_mb < TARGET_RSS_MB)
        checked = result.check is None or result.check.ok
        verdict = _verdict(all(oks)) + ("" if checked else " (report differs!)")
        all_ok &= all(oks) and checked
        print(
            f"{FORMAT_LABELS[result.fmt]:<11} {result.size / MB:>8.1f} {run.seconds:>8.2f} "
            f"{rate:>10,.0f} {run.cpu_seconds:>6.1f} {rss_mb:>9.1f} {result.tree_pss / MB:>7.1f} "
            f"{run.processes:>5}  "
            f"{', '.join(targets):<36} {verdict}"
        )
        if len(result.runs) > 1:
            times = ", ".join(f"{r.seconds:.2f}" for r in result.runs)
            median = statistics.median(r.seconds for r in result.runs)
            print(f"{'':<11} runs: {times} s (median {median:.2f})")
    print()
    if startup is not None:
        print(
            f"Start-up (interpreter + Django, one-signal file): {startup.seconds:.2f} s, "
            f"peak RSS {startup.max_rss / MB:.1f} MB; included in every validator time above."
        )
        for result in results:
            net = result.best.seconds - startup.seconds
            cpu = result.best.cpu_seconds
            print(
                f"  {FORMAT_LABELS[result.fmt]:<11} without start-up: {_rate(n, net):>10,.0f} "
                f"signals/s; CPU {cpu:.1f} s for {result.best.seconds:.2f} s wall "
                f"({cpu / result.best.seconds:.2f} cores)"
            )
    if orjson_inner:
        print(
            f"orjson loop alone (inside its process): {min(orjson_inner):.2f} s = "
            f"{_rate(n, min(orjson_inner)):,.0f} lines/s"
        )
    print(
        "CPU s = user + system time of the run, all its processes; on a busy machine it says "
        "more than the wall time (CPU s ÷ seconds = cores actually obtained)."
    )
    print(
        "peak RSS = ru_maxrss of the process and its descendants (largest single process; "
        "floor ≈ 8 MB, the measuring helper's); "
        "Σ PSS = peak of the tree's summed PSS, sampled every 50 ms; MB = 10^6 bytes."
    )
    return all_ok


# --- main ----------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark `manage.py validate_signals` on generated signal files.",
    )
    parser.add_argument("--signals", type=int, default=1_000_000, help="N (default 1,000,000)")
    parser.add_argument("--seed", type=int, default=2025, help="random seed (default 2025)")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "var" / "bench", help="data directory (var/bench/)"
    )
    parser.add_argument("--gzip", action="store_true", help="also measure the gzipped NDJSON")
    parser.add_argument(
        "--formats",
        default="",
        help=f"comma-separated subset of {','.join(FORMATS)} (default: all but gz; gz with --gzip)",
    )
    parser.add_argument("--repeat", type=int, default=1, help="runs per format; best is shown")
    parser.add_argument("--contacts", type=int, default=50_000, help="size of the contact pool")
    parser.add_argument("--error-rate", type=float, default=0.05, help="signals with 1-2 errors")
    parser.add_argument("--warning-rate", type=float, default=0.03, help="signals with a warning")
    parser.add_argument("--regenerate", action="store_true", help="ignore files made earlier")
    parser.add_argument(
        "--generate-only", action="store_true", help="write the files, measure nothing"
    )
    parser.add_argument(
        "--python", default=sys.executable, help="interpreter for the measured processes"
    )
    args = parser.parse_args(argv)
    if args.signals < 1 or args.repeat < 1:
        parser.error("--signals and --repeat must be at least 1")
    formats = [f for f in args.formats.split(",") if f] or ["ndjson", "json", "csv"]
    if args.gzip and "gz" not in formats:
        formats.append("gz")
    unknown = set(formats) - set(FORMATS)
    if unknown:
        parser.error(f"unknown format(s): {', '.join(sorted(unknown))}")
    args.format_list = formats
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    data = DataSet(args.signals, args.seed, args.out.resolve())
    for line in machine():
        print(line)
    load_before = _load()
    print(f"Load average before: {load_before}")
    manifest = generate(data, args)
    expected: dict[str, Any] = manifest["expected"]
    if "gz" in args.format_list:
        ensure_gzip(data)
    mix = ", ".join(
        f"{kind} {count / expected['signals']:.1%}"
        for kind, count in sorted(expected["by_type"].items(), key=lambda kv: -kv[1])
    )
    print(f"Signals: {expected['signals']:,} ({mix})")
    print(
        f"Expected: {expected['rejected']:,} rejected "
        f"({expected['rejected'] / expected['signals']:.1%}), {expected['errors']:,} errors, "
        f"{expected['warnings']:,} warnings"
    )
    if args.generate_only:
        return 0

    python = args.python
    startup = measure(
        [python, "manage.py", "validate_signals", str(data.tiny), "--report", "ndjson"], None
    )
    ndjson_path = data.path("ndjson")
    _warm(ndjson_path)
    orjson_runs: list[Run] = []
    orjson_inner: list[float] = []
    for _ in range(args.repeat):
        out = data.out / "orjson-count.txt"
        run = measure([python, "-c", ORJSON_SCRIPT, str(ndjson_path)], out)
        if run.returncode != 0:
            print(f"orjson run failed:\n{run.stderr}")
            return 2
        count, inner = out.read_text().split()
        orjson_inner.append(float(inner))
        if int(count) != expected["signals"]:
            print(f"orjson counted {count} lines, expected {expected['signals']}")
        orjson_runs.append(run)
    orjson_result = Result("orjson", ndjson_path.stat().st_size, orjson_runs)

    results: list[Result] = []
    for fmt in args.format_list:
        path = data.path(fmt)
        _warm(path)
        runs: list[Run] = []
        check: Check | None = None
        for attempt in range(args.repeat):
            report = data.out / f"findings-{fmt}.ndjson"
            command = [python, "manage.py", "validate_signals", str(path), "--report", "ndjson"]
            run = measure(command, report)
            runs.append(run)
            this = check_report(report, expected, run.returncode, data.mutations)
            if check is None or not this.ok:
                check = this
            print(
                f"{FORMAT_LABELS[fmt]} run {attempt + 1}: {run.seconds:.2f} s, "
                f"{_rate(args.signals, run.seconds):,.0f} signals/s, "
                f"peak RSS {run.max_rss / MB:.1f} MB, Σ PSS {run.tree_pss / MB:.1f} MB"
            )
            print(this.lines)
            if run.returncode not in (0, 1):
                print(f"    the CLI failed (exit {run.returncode}):\n{run.stderr[-2000:]}")
        results.append(Result(fmt, path.stat().st_size, runs, check))
    print(f"Load average after: {_load()}")
    busy = max(_load_1min(load_before), _load_1min(_load()))
    if busy > 0.5 * (os.cpu_count() or 1):
        print(
            f"Warning: the machine was busy (load average {busy:.1f} on {os.cpu_count()} CPUs): "
            "wall times and rates are pessimistic; compare CPU seconds, or rerun when idle."
        )
    print()
    ok = print_table(args.signals, results, orjson_result, orjson_inner, startup)
    print()
    print("All targets met." if ok else "Some targets missed (see FAIL above).")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
