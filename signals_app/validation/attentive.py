"""The rule engine for Attentive custom events (SPEC §6; seeds/004_7fb2253cbedae88d.txt): judges
one event record, ``{type, user, properties, externalEventId, occurredAt}``, and returns every
issue in the Connect engine's own result type (`engine.SignalCheck`), never raising for bad
data. Paths are relative to the event: ``type``, ``user.phone``, ``properties.color``.

Severity mirrors what Attentive does with the event, as for Connect (SPEC §4):

- **error**, Attentive refuses the event (createCustomEvent answers with an error): the record
  is no object; ``type`` missing, not a string, blank, or holding one of
  ``" ' ( ) { } [ ] \\ | ,``; ``user`` missing or no object, or with none of an e-mail, a
  phone, an external identifier (``externalIdentifiers.clientUserId``, or
  ``externalIdentifiers.customIdentifiers``: a list of ``{name, value}``); ``user.email`` no
  valid address; ``user.phone`` no E.164 number (a leading ``+`` and a *possible* number, the
  offline check of SPEC §2 that the Connect engine makes of sms / whatsapp); ``properties``
  neither an object nor a string holding a JSON object; a property key holding one of
  ``' " { } [ ] \\ | ,``; ``externalEventId`` no string, or empty; ``occurredAt`` no ISO 8601
  date-time with a time zone; a field that CreateCustomEventInput (or UserInput, ...) does
  not define (GraphQL refuses an input with an unknown field; ``unknown_field``); a key
  written twice (``duplicate_key``, also inside a properties string); an Acoustic Connect
  signal in the file (``wrong_destination``).
- **warning**, the event is taken but something will not work: a property key beyond the
  first 200 keys of its event type (``key_limit``, at ``properties``); ``occurredAt`` more
  than 12 hours before the check (``too_old``: no journey fires); a URL value (a string
  starting ``http://`` or ``https://``) over 1,024 characters (``max_length``: Attentive does
  not shorten it); a list or object as a property value (``email_only``: usable in e-mail
  journeys only, not SMS).

The 200 keys per type need state across the records of a run: a `KeyLimit`, which keeps
the first 200 keys of each type in file order and warns on every event (without an error)
that carries a key beyond them. It keeps at most 200 keys per type, whatever the file; and at
most `MAX_TYPES_TRACKED` types: the types after that are not counted (documented
approximation; no real file has 100,000 event types). Events with an error do not count:
Attentive never receives them. validate.py keeps the count exact when a file is split over
several processes (see `KeySnapshot` and validate._key_reruns).

Properties are checked at their first level: keys, URL values and list / object values; what
is inside a list or a nested object is the e-mail journey's business.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import msgspec
import orjson

from signals_app.validation.duplicates import duplicate_issues
from signals_app.validation.engine import SignalCheck
from signals_app.validation.findings import (
    ERROR,
    WARNING,
    Code,
    Issue,
    RowWithDuplicates,
    TooLargeText,
)
from signals_app.validation.jsontext import TooLarge, parse_json
from signals_app.validation.values import (
    TzDateTime,
    datetime_problem,
    describe,
    email_problem,
    is_blank,
    phone_problem,
    suggest,
)

__all__ = [
    "CONNECT_FIELDS",
    "EVENT_FIELDS",
    "MAX_KEYS_PER_TYPE",
    "MAX_TYPES_TRACKED",
    "EventIds",
    "KeyLimit",
    "KeySnapshot",
    "attentive_duplicates",
    "check_event",
    "is_connect_signal",
]

EVENT_FIELDS: Final = ("type", "user", "properties", "externalEventId", "occurredAt")
USER_FIELDS: Final = ("email", "phone", "externalIdentifiers")
EXTERNAL_IDENTIFIER_FIELDS: Final = ("clientUserId", "customIdentifiers")
CUSTOM_IDENTIFIER_FIELDS: Final = ("name", "value")
# A record with either of these is an Acoustic Connect signal (SPEC §2); so is one with an
# appKey and no type or user (an event with a stray appKey is an event with an unknown field).
CONNECT_FIELDS: Final = ("signalContent", "identifiableAttributes", "appKey")

TYPE_FORBIDDEN: Final = "\"'(){}[]\\|,"
KEY_FORBIDDEN: Final = "'\"{}[]\\|,"
MAX_KEYS_PER_TYPE: Final = 200
MAX_TYPES_TRACKED: Final = 100_000
MAX_URL_LENGTH: Final = 1024
JOURNEY_WINDOW_SECONDS: Final = 12 * 3600

_EVENT_NAMES = frozenset(EVENT_FIELDS)
_USER_NAMES = frozenset(USER_FIELDS)
_EXTERNAL_NAMES = frozenset(EXTERNAL_IDENTIFIER_FIELDS)
_CUSTOM_NAMES = frozenset(CUSTOM_IDENTIFIER_FIELDS)
_TYPE_FORBIDDEN_RE = re.compile("[" + re.escape(TYPE_FORBIDDEN) + "]")
_KEY_FORBIDDEN_RE = re.compile("[" + re.escape(KEY_FORBIDDEN) + "]")
_SHOWN_TYPE_FORBIDDEN = " ".join(TYPE_FORBIDDEN)
_SHOWN_KEY_FORBIDDEN = " ".join(KEY_FORBIDDEN)
_MISSING: Any = object()
_TZ_DATETIME = msgspec.json.Decoder(TzDateTime)  # as values.datetime_problem reads it
_KEYS_NAMED = 5  # property keys a key_limit message names


# --- the 200 keys per event type --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KeySnapshot:
    """What a KeyLimit saw: per event type its first keys (200 at most) in order and whether
    a key beyond them came; and whether types went untracked (MAX_TYPES_TRACKED). The parts of
    a file split over processes send theirs to the parent, which merges them in file order."""

    types: dict[str, tuple[tuple[str, ...], bool]]
    capped: bool


class KeyLimit:
    """The first MAX_KEYS_PER_TYPE property keys of each event type, in the order a run
    meets them; `preset`: the keys already met (the parts before, for a part of a file)."""

    __slots__ = ("_keys", "_over", "capped", "max_types")

    def __init__(
        self,
        preset: Mapping[str, Iterable[str]] | None = None,
        *,
        max_types: int = MAX_TYPES_TRACKED,
    ) -> None:
        self._keys: dict[str, dict[str, None]] = {}
        self._over: set[str] = set()
        self.capped = False
        self.max_types = max_types
        for event_type, keys in (preset or {}).items():
            known = self._keys[event_type] = {}
            for key in keys:
                if len(known) == MAX_KEYS_PER_TYPE:
                    break
                known[key] = None

    def beyond(self, event_type: str, properties: dict[str, Any]) -> list[str]:
        """Count an event's property keys; those beyond its type's first 200, in its order."""
        known = self._keys.get(event_type)
        if known is None:
            if len(self._keys) >= self.max_types:
                self.capped = True
                return []
            known = self._keys[event_type] = {}
        if known.keys() >= properties.keys():  # the usual case: nothing new, in C
            return []
        extra: list[str] = []
        room = MAX_KEYS_PER_TYPE - len(known)
        for key in properties:
            if key in known:
                continue
            if room > 0:
                known[key] = None
                room -= 1
            else:
                extra.append(key)
        if extra:
            self._over.add(event_type)
        return extra

    def snapshot(self) -> KeySnapshot:
        return KeySnapshot(
            {t: (tuple(keys), t in self._over) for t, keys in self._keys.items()}, self.capped
        )


# --- one id per event -------------------------------------------------------------------


def id_hash(external_event_id: str) -> int:
    """A 64-bit digest of an externalEventId (stable across processes, unlike hash())."""
    digest = hashlib.blake2b(external_event_id.encode("utf-8", "surrogatepass"), digest_size=8)
    return int.from_bytes(digest.digest(), "little", signed=True)


class EventIds:
    """The externalEventIds of the valid events a run has met, as 64-bit digests (1,000,000
    events take about 100 MB as strings, 40 as digests; two ids of a million events share a
    digest about once in 30 million files). `before`: the ids that valid events of the
    parts before this one have (a part of a file split over processes, run again)."""

    __slots__ = ("seen",)

    def __init__(self, before: Iterable[int] = ()) -> None:
        self.seen: set[int] = set(before)

    def repeat(self, external_event_id: str) -> Issue | None:
        """Note a valid event's id; the warning when an event before it had it too. (The
        message names no index: a part of a file split over processes does not know its
        events' numbers in the file, and its report must be the single pass's.)"""
        digest = id_hash(external_event_id)
        if digest not in self.seen:
            self.seen.add(digest)
            return None
        shown = external_event_id if len(external_event_id) <= 80 else external_event_id[:80] + "…"
        return Issue(
            "externalEventId",
            WARNING,
            Code.DUPLICATE_EVENT_ID,
            f'externalEventId "{shown}" is an earlier event\'s too: Attentive takes events '
            "with one id for one event, so one of them may be dropped as a resend; give each "
            "event an id of its own",
        )

    def digests(self) -> tuple[int, ...]:
        return tuple(self.seen)


# --- one event --------------------------------------------------------------------------


def is_connect_signal(record: dict[str, Any]) -> bool:
    """An Acoustic Connect signal envelope, or the vendor's `{"signal": envelope}` wrapper."""
    if "signalContent" in record or "identifiableAttributes" in record:
        return True
    if "appKey" in record and not ("type" in record and "user" in record):
        return True
    inner = record.get("signal")
    return (
        isinstance(inner, dict)
        and "type" not in record
        and ("signalContent" in inner or "identifiableAttributes" in inner)
    )


def check_event(
    record: Any, *, keys: KeyLimit | None = None, now: float | None = None
) -> SignalCheck:
    """Every issue of one Attentive custom event. `keys` counts property keys per event
    type across a run (without it, an event alone cannot pass the 200); `now` (seconds since
    the epoch, the current time when None) is what occurredAt is measured from."""
    check = SignalCheck()
    issues = check.issues
    if record.__class__ is RowWithDuplicates:  # what the CSV reader saw in the row's cells
        issues.extend(record.duplicates)
    if not isinstance(record, dict):
        issues.append(
            Issue(
                "",
                ERROR,
                Code.TYPE,
                f"an Attentive custom event must be a JSON object, found {describe(record)}",
            )
        )
        return check
    if is_connect_signal(record):
        issues.append(
            Issue(
                "",
                ERROR,
                Code.WRONG_DESTINATION,
                "this is an Acoustic Connect signal, not an Attentive custom event: an event "
                "is {type, user, properties, externalEventId, occurredAt}; send the signal to "
                "Connect, or map it to an event first",
            )
        )
        return check

    for key in record:
        if key not in _EVENT_NAMES:
            issues.append(_unknown(str(key), str(key), "an Attentive custom event", EVENT_FIELDS))

    event_type = _check_type(record.get("type", _MISSING), issues)
    _check_user(record.get("user", _MISSING), issues)
    properties = _check_properties(record.get("properties", _MISSING), issues)

    event_id = record.get("externalEventId")
    if event_id is not None:
        if not isinstance(event_id, str):
            issues.append(
                Issue(
                    "externalEventId",
                    ERROR,
                    Code.TYPE,
                    f"externalEventId must be a string, found {describe(event_id)}",
                )
            )
        elif is_blank(event_id):
            issues.append(
                Issue(
                    "externalEventId",
                    ERROR,
                    Code.FORMAT,
                    "externalEventId is empty: leave it out or give the event a unique id "
                    "(a UUID is recommended)",
                )
            )

    occurred_at = record.get("occurredAt")
    if occurred_at is not None:
        _check_occurred_at(occurred_at, time.time() if now is None else now, issues)

    check.signal_type = event_type
    if (
        keys is not None
        and event_type is not None
        and properties
        and not any(issue.severity == ERROR for issue in issues)
    ):
        extra = keys.beyond(event_type, properties)
        if extra:
            issues.append(_key_limit(event_type, extra))
    return check


def attentive_duplicates(
    text: bytes | str, value: Any, *, prefix: str = "", inside: str | None = None
) -> list[Issue]:
    """duplicate_issues for an event (its record, its properties string, a CSV cell of
    JSON), in Attentive's words: the file is sent as written and what Attentive keeps of a
    key written twice is said nowhere. `prefix`: the path of the value in the event."""
    if inside is None:
        inside = " (in the properties string)" if prefix else ""
    return [
        issue._replace(
            message=issue.message.replace("Connect may take", "Attentive may take").replace(
                " in the signal", " in the event", 1
            )
        )
        for issue in duplicate_issues(text, value, prefix=prefix, inside=inside)
    ]


def _check_type(value: Any, issues: list[Issue]) -> str | None:
    """The event type when it is a good one."""
    if value is _MISSING or value is None:
        issues.append(
            Issue(
                "type",
                ERROR,
                Code.REQUIRED,
                'type is required: the name of the event, e.g. "Order Shipped" (case-sensitive)',
            )
        )
        return None
    if not isinstance(value, str):
        issues.append(
            Issue("type", ERROR, Code.TYPE, f"type must be a string, found {describe(value)}")
        )
        return None
    if is_blank(value):
        issues.append(Issue("type", ERROR, Code.REQUIRED, "type is empty; a value is required"))
        return None
    forbidden = _forbidden(_TYPE_FORBIDDEN_RE, value)
    if forbidden:
        issues.append(
            Issue(
                "type",
                ERROR,
                Code.FORMAT,
                f"type contains {forbidden}; Attentive refuses event types with any of "
                f"{_SHOWN_TYPE_FORBIDDEN}",
            )
        )
        return None
    return value


def _forbidden(pattern: re.Pattern[str], text: str) -> str:
    """The forbidden characters in `text`, named in the order they first appear."""
    found = dict.fromkeys(pattern.findall(text))
    return ", ".join(f"'{c}'" if c != "'" else '"\'"' for c in found)


def _check_user(user: Any, issues: list[Issue]) -> None:
    if user is _MISSING or user is None:
        issues.append(
            Issue(
                "user",
                ERROR,
                Code.REQUIRED,
                "user is required: an e-mail, an E.164 phone or an external identifier "
                "(externalIdentifiers.clientUserId or customIdentifiers)",
            )
        )
        return
    if user.__class__ is TooLargeText:
        issues.append(_too_large("user", user))
        return
    if not isinstance(user, dict):
        issues.append(
            Issue("user", ERROR, Code.TYPE, f"user must be an object, found {describe(user)}")
        )
        return
    for key in user:
        if key not in _USER_NAMES:
            issues.append(_unknown(f"user.{key}", str(key), "user", USER_FIELDS))
    identified = False
    email = user.get("email")
    if email is not None:
        identified = True
        if not isinstance(email, str):
            issues.append(
                Issue(
                    "user.email",
                    ERROR,
                    Code.TYPE,
                    f"user.email must be an e-mail address string, found {describe(email)}",
                )
            )
        elif is_blank(email):
            issues.append(
                Issue("user.email", ERROR, Code.REQUIRED, "user.email is empty: leave it out")
            )
        elif problem := email_problem(email):
            issues.append(Issue("user.email", ERROR, Code.FORMAT, f"user.email {problem}"))
    phone = user.get("phone")
    if phone is not None:
        identified = True
        if not isinstance(phone, str):
            issues.append(
                Issue(
                    "user.phone",
                    ERROR,
                    Code.TYPE,
                    f"user.phone must be an E.164 phone number string, found {describe(phone)}",
                )
            )
        elif is_blank(phone):
            issues.append(
                Issue("user.phone", ERROR, Code.REQUIRED, "user.phone is empty: leave it out")
            )
        elif problem := phone_problem(phone):
            hint = ""
            if not phone.startswith("+"):
                hint = " (E.164 starts with + and the country code, e.g. +1 for the US)"
            issues.append(
                Issue(
                    "user.phone",
                    ERROR,
                    Code.FORMAT,
                    f"user.phone {problem}{hint}; Attentive takes E.164 numbers only: a "
                    "leading + and a possible number for its country code",
                )
            )
    external = user.get("externalIdentifiers")
    if external is not None and _check_external(external, issues):
        identified = True
    if not identified:
        issues.append(
            Issue(
                "user",
                ERROR,
                Code.REQUIRED,
                "user needs an e-mail, an E.164 phone or an external identifier "
                "(externalIdentifiers.clientUserId or customIdentifiers)",
            )
        )


def _check_external(external: Any, issues: list[Issue]) -> bool:
    """Check user.externalIdentifiers; True when it names an identifier at all (good or bad:
    a bad one has its own error)."""
    path = "user.externalIdentifiers"
    if external.__class__ is TooLargeText:
        issues.append(_too_large(path, external))
        return True
    if not isinstance(external, dict):
        issues.append(
            Issue(
                path,
                ERROR,
                Code.TYPE,
                f"{path} must be an object with clientUserId or customIdentifiers, "
                f"found {describe(external)}",
            )
        )
        return True
    for key in external:
        if key not in _EXTERNAL_NAMES:
            issues.append(
                _unknown(
                    f"{path}.{key}", str(key), "externalIdentifiers", EXTERNAL_IDENTIFIER_FIELDS
                )
            )
    named = False
    client = external.get("clientUserId")
    if client is not None:
        named = True
        _check_identifier_string(client, f"{path}.clientUserId", issues)
    custom = external.get("customIdentifiers")
    if custom is None:
        return named
    custom_path = f"{path}.customIdentifiers"
    if custom.__class__ is TooLargeText:
        issues.append(_too_large(custom_path, custom))
        return True
    if not isinstance(custom, list):
        issues.append(
            Issue(
                custom_path,
                ERROR,
                Code.TYPE,
                f"customIdentifiers must be a list of {{name, value}} objects, "
                f"found {describe(custom)}",
            )
        )
        return True
    for index, entry in enumerate(custom):
        entry_path = f"{custom_path}[{index}]"
        named = True
        if not isinstance(entry, dict):
            issues.append(
                Issue(
                    entry_path,
                    ERROR,
                    Code.TYPE,
                    f"customIdentifiers[{index}] must be an object with string name and value, "
                    f"found {describe(entry)}",
                )
            )
            continue
        for key in entry:
            if key not in _CUSTOM_NAMES:
                issues.append(
                    _unknown(
                        f"{entry_path}.{key}", str(key), "a custom identifier", ("name", "value")
                    )
                )
        for name in CUSTOM_IDENTIFIER_FIELDS:
            value = entry.get(name)
            if value is None:
                issues.append(
                    Issue(
                        f"{entry_path}.{name}",
                        ERROR,
                        Code.REQUIRED,
                        f"{name} is required in a custom identifier",
                    )
                )
            else:
                _check_identifier_string(value, f"{entry_path}.{name}", issues)
    return named


def _check_identifier_string(value: Any, path: str, issues: list[Issue]) -> None:
    name = path.rsplit(".", 1)[-1]
    if not isinstance(value, str):
        issues.append(
            Issue(path, ERROR, Code.TYPE, f"{name} must be a string, found {describe(value)}")
        )
    elif is_blank(value):
        issues.append(Issue(path, ERROR, Code.REQUIRED, f"{name} is empty; a value is required"))


def _check_properties(value: Any, issues: list[Issue]) -> dict[str, Any] | None:
    """Check properties; the object when it is one (decoded from its string if need be)."""
    if value is _MISSING or value is None:
        return None
    if value.__class__ is TooLargeText:
        issues.append(_too_large("properties", value))
        return None
    if isinstance(value, str):
        try:
            decoded = parse_json(value)
        except TooLarge as exc:
            issues.append(
                Issue("properties", ERROR, Code.TOO_LARGE, f"properties cannot be read: {exc}")
            )
            return None
        except ValueError as exc:
            issues.append(
                Issue(
                    "properties",
                    ERROR,
                    Code.FORMAT,
                    f"properties is a string but not JSON ({_first_line(exc)}); it must be an "
                    'object, or a string holding a JSON object such as "{\\"color\\": \\"red\\"}"',
                )
            )
            return None
        if not isinstance(decoded, dict):
            issues.append(
                Issue(
                    "properties",
                    ERROR,
                    Code.TYPE,
                    f"properties is a string holding {_json_kind(decoded)}; it must hold a JSON "
                    "object",
                )
            )
            return None
        issues.extend(attentive_duplicates(value, decoded, prefix="properties"))
        value = decoded
    elif not isinstance(value, dict):
        issues.append(
            Issue(
                "properties",
                ERROR,
                Code.TYPE,
                "properties must be an object, or a string holding a JSON object; "
                f"found {describe(value)}",
            )
        )
        return None
    # Most events have no forbidden character in any key: one search over them all says so.
    check_keys = _KEY_FORBIDDEN_RE.search("\0".join(map(str, value))) is not None
    for key, item in value.items():
        if check_keys and (forbidden := _forbidden(_KEY_FORBIDDEN_RE, str(key))):
            issues.append(
                Issue(
                    f"properties.{key}",
                    ERROR,
                    Code.FORMAT,
                    f"the property key {key} contains {forbidden}; Attentive refuses keys with "
                    f"any of {_SHOWN_KEY_FORBIDDEN}",
                )
            )
        cls = item.__class__
        if cls is str:
            if len(item) > MAX_URL_LENGTH and item[:8].lower().startswith(("http://", "https://")):
                issues.append(
                    Issue(
                        f"properties.{key}",
                        WARNING,
                        Code.MAX_LENGTH,
                        f"{key} is a URL of {len(item):,} characters: Attentive shortens links "
                        f"of {MAX_URL_LENGTH:,} characters at most, so this one is not shortened",
                    )
                )
        elif cls is list or cls is dict:
            what = "a list" if cls is list else "an object"
            issues.append(
                Issue(
                    f"properties.{key}",
                    WARNING,
                    Code.EMAIL_ONLY,
                    f"{key} is {what}: usable in e-mail journeys only; SMS messages cannot use "
                    "lists or nested objects",
                )
            )
    return value


def _json_kind(value: Any) -> str:
    if value is None or isinstance(value, bool):
        return f"JSON {describe(value)}"
    if isinstance(value, list):
        return "a JSON array"
    if isinstance(value, str):
        return "a JSON string"
    return f"a JSON number ({value!r})"


def _first_line(exc: ValueError) -> str:
    return str(exc).split("\n", 1)[0]


def _check_occurred_at(value: Any, now: float, issues: list[Issue]) -> None:
    if not isinstance(value, str):
        issues.append(
            Issue(
                "occurredAt",
                ERROR,
                Code.TYPE,
                f"occurredAt must be an ISO 8601 date-time string, found {describe(value)}",
            )
        )
        return
    problem = datetime_problem(value)
    if problem:
        issues.append(Issue("occurredAt", ERROR, Code.FORMAT, f"occurredAt {problem}"))
        return
    moment = _TZ_DATETIME.decode(orjson.dumps(value)).timestamp()
    age = now - moment
    if age > JOURNEY_WINDOW_SECONDS:
        issues.append(
            Issue(
                "occurredAt",
                WARNING,
                Code.TOO_OLD,
                f"occurredAt is {_age(age)} before the check: Attentive records the event, but "
                "one older than 12 hours triggers no journey",
            )
        )


def _age(seconds: float) -> str:
    hours = seconds / 3600
    if hours < 48:
        return f"{hours:.0f} hours"
    days = hours / 24
    return f"{days:,.0f} days"


def _key_limit(event_type: str, extra: list[str]) -> Issue:
    shown = ", ".join(extra[:_KEYS_NAMED]) + (", ..." if len(extra) > _KEYS_NAMED else "")
    count = f"{len(extra):,} property keys" if len(extra) > 1 else "a property key"
    return Issue(
        "properties",
        WARNING,
        Code.KEY_LIMIT,
        f"{count} ({shown}) beyond the first {MAX_KEYS_PER_TYPE} keys of event type "
        f'"{event_type}" in this file: Attentive stores them but only {MAX_KEYS_PER_TYPE} keys '
        "per event type can be used in segments and journeys",
    )


def _too_large(path: str, cell: TooLargeText) -> Issue:
    return Issue(path, ERROR, Code.TOO_LARGE, f"the cell cannot be read: {cell.reason}")


def _unknown(path: str, name: str, where: str, known: tuple[str, ...]) -> Issue:
    if name == "customEventInput" and where.startswith("an Attentive"):
        hint = " (the GraphQL variables? The event is the object inside customEventInput)"
    else:
        hint = suggest(name, known)
    return Issue(
        path,
        ERROR,
        Code.UNKNOWN_FIELD,
        f"{name} is not a field of {where} ({', '.join(known)}): Attentive refuses an event "
        f"with a field its API does not define{hint}",
    )
