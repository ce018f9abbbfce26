"""Checks of single values against a field kind, shared by the rule engine and the fast
path so both judge a value the same way.

Each check returns None when the value is fine, or a (code, explanation) pair. The
explanations are fragments ("must be a whole number") that the engine turns into sentences.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable
from datetime import datetime
from functools import cache, lru_cache
from typing import Annotated, Any

import msgspec
import orjson
import phonenumbers
import pycountry
from email_validator import EmailNotValidError, validate_email

from signals_app.validation.findings import Code
from signals_app.validation.schema import Field, Kind

Problem = tuple[Code, str]

# ISO 4217 from a maintained list (pycountry ships the ISO data), not a hand-typed one.
CURRENCY_CODES: frozenset[str] = frozenset(c.alpha_3 for c in pycountry.currencies)

E164 = re.compile(r"\+[1-9][0-9]{7,14}")
CATALOG_DATETIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}")

# Date-times are parsed by msgspec's RFC 3339 parser (the ISO 8601 profile APIs use); the
# fast path decodes with the very same type, so both always agree.
TzDateTime = Annotated[datetime, msgspec.Meta(tz=True)]
_NaiveOrTz = datetime


def is_blank(value: str) -> bool:
    """Empty or only whitespace (str.isspace: the fast path uses the very same test)."""
    return not value or value.isspace()


def describe(value: Any) -> str:
    """A short, human description of a JSON value for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return f"the number {value!r}"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f'the string "{shown}"' if value else "an empty string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


# The same few wrong values tend to recur in a file, and difflib costs ~15 us a call.
@lru_cache(maxsize=4096)
def suggest(value: str, choices: tuple[str, ...] | frozenset[str]) -> str:
    """` (did you mean "x"?)` when one choice is close to the value, else ''."""
    folded = {c.lower(): c for c in choices}
    exact = folded.get(value.lower())
    if exact is None:
        close = difflib.get_close_matches(value.lower(), list(folded), n=1, cutoff=0.75)
        exact = folded[close[0]] if close else None
    return f' (did you mean "{exact}"?)' if exact else ""


# Addresses this simple are valid for email-validator too (tests/test_fuzz.py checks it
# with generated addresses), so they skip the library, which costs ~20 us a call.
SIMPLE_EMAIL = re.compile(
    r"[A-Za-z0-9_+-]+(?:\.[A-Za-z0-9_+-]+)*@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+"
    r"[A-Za-z]{2,24}"
)
_SPECIAL_USE_TLDS = frozenset({"arpa", "invalid", "local", "localhost", "onion", "test"})


def is_simple_email(value: str) -> bool:
    at = value.find("@")
    return bool(
        SIMPLE_EMAIL.fullmatch(value)
        and len(value) <= 254
        and at <= 64
        and "--" not in value[at:]
        and value.rsplit(".", 1)[-1].lower() not in _SPECIAL_USE_TLDS
    )


@lru_cache(maxsize=1 << 17)  # contacts recur across signals: a look-up beats any check
def email_problem(value: str) -> str | None:
    """Structural e-mail check, offline: no DNS or deliverability look-up (SPEC §2)."""
    if is_simple_email(value):
        return None
    try:
        validate_email(value, check_deliverability=False)
    except EmailNotValidError as exc:
        return f"is not a valid e-mail address: {exc}"
    return None


@cache
def _always_possible_lengths(country_code: int) -> frozenset[int]:
    """The national-number lengths for which phonenumbers calls *every* digit string after
    `+<country_code>` IS_POSSIBLE, worked out from the library's own metadata.

    For '+' and digits, parse() takes the country code, then may strip a national prefix
    (and carrier code) from the national number, keeping the shorter number only when its
    length tests IS_POSSIBLE or TOO_LONG; is_possible_number_with_reason() then tests the
    length alone against the region's general description. So a length the library calls
    IS_POSSIBLE stays so whatever the digits: stripping shortens the number, which cannot
    make it too long, and a result kept is possible. That fails only where a national
    prefix *transform* rule may rewrite the digits (Argentina, Brazil, Japan and a few
    more): those take the library every time, as do lengths under two digits (parse()
    refuses those). tests/test_values_speedups.py checks the claim against the library.
    """
    region = phonenumbers.region_code_for_country_code(country_code)
    metadata = phonenumbers.PhoneMetadata.metadata_for_region_or_calling_code(country_code, region)
    if metadata is None or metadata.general_desc is None:
        return frozenset()
    if metadata.national_prefix_transform_rule or min(metadata.general_desc.possible_length) < 2:
        return frozenset()
    return frozenset(
        length
        for length in range(2, 18)  # 17 digits: the longest national number parse() takes
        if phonenumbers.is_possible_number_with_reason(
            phonenumbers.PhoneNumber(country_code=country_code, national_number=int("9" * length))
        )
        == phonenumbers.ValidationResult.IS_POSSIBLE
    )


def is_always_possible(value: str) -> bool:
    """True when phonenumbers would parse an E.164-shaped `value` and call it IS_POSSIBLE
    whatever its digits (see _always_possible_lengths); False means "ask the library".
    The country code is read as parse() reads it: the shortest known prefix, up to 3."""
    digits = value[1:]
    for size in (1, 2, 3):
        country_code = int(digits[:size])
        if country_code in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
            return len(digits) - size in _always_possible_lengths(country_code)
    return False


@lru_cache(maxsize=1 << 17)
def phone_problem(value: str) -> str | None:
    """E.164: '+' and 8-15 digits that form a *possible* number (SPEC §2)."""
    if not E164.fullmatch(value):
        return "must be an E.164 phone number: '+' and 8 to 15 digits, e.g. +14035549090"
    if is_always_possible(value):
        return None  # the library's answer, without its ~16 us parse
    return library_phone_problem(value)


def library_phone_problem(value: str) -> str | None:
    """phone_problem's answer from phonenumbers itself, for an E.164-shaped value."""
    try:
        number = phonenumbers.parse(value)
    except phonenumbers.NumberParseException as exc:
        return f"is not a phone number: {exc}"
    # IS_POSSIBLE only: a number that is possible only when dialled locally (without its
    # area code, e.g. +1 234 5678) is no E.164 number.
    reason = phonenumbers.is_possible_number_with_reason(number)
    if reason != phonenumbers.ValidationResult.IS_POSSIBLE:
        return f"is not a possible phone number for country code +{number.country_code}"
    return None


# msgspec's own RFC 3339 parser, the one the fast path's typed decode uses, reached through
# ready decoders: msgspec.convert(value, TzDateTime) would hash the Annotated type in
# Python on every call.
_TZ_DATETIME = msgspec.json.Decoder(TzDateTime)
_ANY_DATETIME = msgspec.json.Decoder(_NaiveOrTz)


def datetime_problem(value: str) -> str | None:
    try:
        text = orjson.dumps(value)
    except TypeError:  # a lone surrogate: no text, so no date-time either
        return "must be an ISO 8601 date-time with a time zone, e.g. 2025-08-31T08:29:30.001Z"
    try:
        _TZ_DATETIME.decode(text)
    except msgspec.ValidationError:
        try:
            _ANY_DATETIME.decode(text)
        except msgspec.ValidationError:
            return "must be an ISO 8601 date-time with a time zone, e.g. 2025-08-31T08:29:30.001Z"
        return "needs a time zone, e.g. 2025-08-31T08:29:30.001Z (Z for UTC, or +02:00)"
    return None


def catalog_datetime_problem(value: str) -> str | None:
    if CATALOG_DATETIME.fullmatch(value):
        try:
            # The shape is fixed by the regex; fromisoformat only checks the calendar
            # (30 February, hour 24) and is forty times faster than strptime.
            datetime.fromisoformat(value)
        except ValueError:
            return "is not a real date and time"
        return None
    return 'must be written exactly as "yyyy-MM-dd HH:mm:ss.SSS", e.g. "2025-04-12 08:29:30.001"'


def is_number(value: Any) -> bool:
    """A JSON number: int or float, never a boolean, always finite."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    return isinstance(value, float) and math.isfinite(value)


def _string(value: Any, field: Field) -> Problem | None:
    if not isinstance(value, str):
        return Code.TYPE, f"must be a string, found {describe(value)}"
    if field.required and is_blank(value):
        return Code.REQUIRED, "is empty; a value is required"
    if field.max_length is not None and len(value) > field.max_length:
        return Code.MAX_LENGTH, (
            f"is {len(value)} characters long; at most {field.max_length} are allowed"
        )
    return None


def _number(value: Any, field: Field) -> Problem | None:
    if not is_number(value):
        return Code.TYPE, f"must be a number, found {describe(value)}"
    return None


def _integer(value: Any, field: Field) -> Problem | None:
    if not is_number(value):
        return Code.TYPE, f"must be a whole number, found {describe(value)}"
    if isinstance(value, float) and not value.is_integer():
        return Code.TYPE, f"must be a whole number, found {value!r}"
    return None


def _boolean(value: Any, field: Field) -> Problem | None:
    if not isinstance(value, bool):
        return Code.TYPE, f"must be true or false, found {describe(value)}"
    return None


def _currency(value: Any, field: Field) -> Problem | None:
    if not isinstance(value, str):
        return Code.TYPE, f"must be an ISO 4217 currency code string, found {describe(value)}"
    if value in CURRENCY_CODES:
        return None
    hint = f' (did you mean "{value.upper()}"?)' if value.upper() in CURRENCY_CODES else ""
    return Code.ENUM, f'"{value}" is not an ISO 4217 currency code such as USD or EUR{hint}'


@cache
def _folded(choices: tuple[str, ...]) -> frozenset[str]:
    return frozenset(choice.lower() for choice in choices)


def _enum(value: Any, field: Field) -> Problem | None:
    if not isinstance(value, str):
        return Code.TYPE, f"must be one of {', '.join(field.choices)}; found {describe(value)}"
    # Matched case-insensitively: the vendor's own examples write USER and user (SPEC §3).
    if value.lower() in _folded(field.choices):
        return None
    return Code.ENUM, (
        f'"{value}" is not one of {", ".join(field.choices)}{suggest(value, field.choices)}'
    )


def _datetime(value: Any, field: Field) -> Problem | None:
    if not isinstance(value, str):
        return Code.TYPE, f"must be an ISO 8601 date-time string, found {describe(value)}"
    problem = datetime_problem(value)
    return (Code.FORMAT, problem) if problem else None


def _catalog_datetime(value: Any, field: Field) -> Problem | None:
    if not isinstance(value, str):
        return Code.TYPE, f"must be a date-time string, found {describe(value)}"
    problem = catalog_datetime_problem(value)
    return (Code.FORMAT, problem) if problem else None


def _email(value: Any, field: Field) -> Problem | None:
    if not isinstance(value, str):
        return Code.TYPE, f"must be an e-mail address string, found {describe(value)}"
    problem = email_problem(value)
    return (Code.FORMAT, problem) if problem else None


def _phone(value: Any, field: Field) -> Problem | None:
    if not isinstance(value, str):
        return Code.TYPE, f"must be an E.164 phone number string, found {describe(value)}"
    problem = phone_problem(value)
    return (Code.FORMAT, problem) if problem else None


# Kinds whose whole value is judged at once. Arrays (STRING_LIST, ITEMS, CUSTOM_ATTRIBUTES)
# are walked by the engine, which reports each element at its own path.
SCALAR_CHECKS: dict[Kind, Callable[[Any, Field], Problem | None]] = {
    Kind.STRING: _string,
    Kind.NUMBER: _number,
    Kind.INTEGER: _integer,
    Kind.BOOLEAN: _boolean,
    Kind.CURRENCY: _currency,
    Kind.ENUM: _enum,
    Kind.DATETIME: _datetime,
    Kind.CATALOG_DATETIME: _catalog_datetime,
    Kind.EMAIL: _email,
    Kind.PHONE: _phone,
}


def canonical_choice(value: str, field: Field) -> str | None:
    """The canonical spelling of an enumeration value, for the preview's fixes."""
    for choice in field.choices:
        if choice.lower() == value.lower():
            return choice
    return None
