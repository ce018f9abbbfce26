"""The fast path: a typed msgspec decode that recognises *clean* signals (no finding at
all) in one pass of C code, built from the same table as the rule engine.

It only ever answers "clean" or "not sure": anything it does not accept goes to the full
engine, which produces the findings. So the fast path can never change a report, only
speed it up, provided it accepts nothing the engine would flag. Every constraint below
is therefore at least as strict as the engine's, and the values the engine judges with a
library (e-mail, phone, catalog dates, identifierValue) are re-checked after the decode
with the engine's own functions. tests/test_fastpath.py checks the agreement with
generated records.

A decode keeps the last value of a key written twice, so a signal's JSON text is only
called clean when the compiled scanner finds no key twice in it, or without the scanner
when it holds no more keys than were read (SPEC §5, `duplicate_key`; see duplicates.py):
the engine names the key.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import cache, lru_cache
from typing import Annotated, Any, Literal, cast

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType

from signals_app.validation.duplicates import key_scanner
from signals_app.validation.schema import (
    CUSTOM_ATTRIBUTE_FIELDS,
    ITEM_FIELDS,
    SIGNAL_TYPES,
    Field,
    Kind,
    Tier,
    types_for_tier,
)
from signals_app.validation.values import (
    CURRENCY_CODES,
    TzDateTime,
    catalog_datetime_problem,
    email_problem,
    phone_problem,
)

# A clean signal: (its type, whether a contactKey is its only identifiable attribute).
Clean = tuple[str, bool]
# The same as a number (FastPath.classify_json): not sure, clean, clean by contactKey only.
NOT_SURE, CLEAN, CLEAN_CONTACT_KEY_ONLY = 0, 1, 2

_FINITE = Meta(ge=-sys.float_info.max, le=sys.float_info.max)
# Integers of 64 bits at most: a wider one is not called clean here but judged by the
# engine, which reads it exactly (parse_json). An integer written in a number field is
# not read as a float, which changes no verdict.
_Int64 = Annotated[int, Meta(ge=-(2**63) + 1, le=2**63 - 1)]
# Non-empty is checked in C; "not blank" (all whitespace) after the decode with
# str.isspace, the engine's own test, because a regex pattern here costs half the speed.
_NonBlank = Annotated[str, Meta(min_length=1)]


_IDENTITY_PROBLEM: dict[str, Callable[[str], object]] = {
    "contactKey": str.isspace,
    "email": email_problem,
    "sms": phone_problem,
    "whatsapp": phone_problem,
}


def _variants(choices: tuple[str, ...]) -> tuple[str, ...]:
    """Spellings of an enumeration the fast path accepts; the engine accepts any case, so
    rarer spellings simply take the slower road."""
    spellings: set[str] = set()
    for choice in choices:
        spellings.update({choice, choice.lower(), choice.upper(), choice.capitalize()})
    return tuple(sorted(spellings))


def _value_type(field: Field) -> Any:
    kind = field.kind
    if kind is Kind.STRING:
        if field.max_length is not None:
            return Annotated[str, Meta(max_length=field.max_length)]
        return _NonBlank if field.required else str
    if kind is Kind.NUMBER:
        return _Int64 | Annotated[float, _FINITE]
    if kind is Kind.INTEGER:
        return _Int64
    if kind is Kind.BOOLEAN:
        return bool
    if kind is Kind.CURRENCY:
        return Literal[tuple(sorted(CURRENCY_CODES))]
    if kind is Kind.ENUM:
        return Literal[_variants(field.choices)]
    if kind is Kind.DATETIME:
        return TzDateTime
    if kind in (Kind.CATALOG_DATETIME, Kind.EMAIL, Kind.PHONE):
        return str  # re-checked after the decode
    if kind is Kind.STRING_LIST:
        return list[str]
    if kind is Kind.ITEMS:
        return list[_ITEM]  # type: ignore[valid-type]
    if kind is Kind.CUSTOM_ATTRIBUTES:
        return list[_CUSTOM_ATTRIBUTE]  # type: ignore[valid-type]
    raise AssertionError(f"no fast type for {kind}")


def _struct(name: str, fields: Any, **options: Any) -> type[Struct]:
    members: list[tuple[str, Any] | tuple[str, Any, Any]] = []
    for field_name, field in fields.items():
        value_type = _value_type(field)
        if field.required:
            members.append((field_name, value_type))
        else:
            members.append((field_name, value_type | UnsetType, UNSET))
    return msgspec.defstruct(
        name, members, forbid_unknown_fields=True, kw_only=True, gc=False, **options
    )


_ELEMENT_FIELDS = {Kind.ITEMS: ITEM_FIELDS, Kind.CUSTOM_ATTRIBUTES: CUSTOM_ATTRIBUTE_FIELDS}


def _required_strings(fields: Any) -> list[str]:
    return [f for f, spec in fields.items() if spec.required and spec.kind is Kind.STRING]


def _content_lines(signal_type: str) -> list[str]:
    """What a typed decode of one signal type cannot say, as lines of the generated check
    (see _signal_check): blank required strings (also in items and custom attributes;
    str.isspace, the engine's own test), catalog dates, an identification's
    identifierValue."""
    fields = SIGNAL_TYPES[signal_type].fields
    body: list[str] = []
    own = _required_strings(fields)
    if own:
        body.append(f"    if {' or '.join(f'c.{n}.isspace()' for n in own)}: return NOT_SURE")
    for name, spec in fields.items():
        if spec.kind in _ELEMENT_FIELDS:
            inner = _required_strings(_ELEMENT_FIELDS[spec.kind])
            body += [
                f"    if c.{name} is not UNSET:",
                f"        for e in c.{name}:",
                f"            if {' or '.join(f'e.{n}.isspace()' for n in inner)}: return NOT_SURE",
            ]
        elif spec.kind is Kind.CATALOG_DATETIME:
            body.append(
                f"    if c.{name} is not UNSET and catalog_datetime_problem(c.{name}): "
                "return NOT_SURE"
            )
    if signal_type == "identification":
        body.append("    if identifier_value_unfit(c): return NOT_SURE")
    return body


def _member_count(target: str, fields: Any) -> str:
    """How many members the decoded object `target` of `fields` has (a JSON null never
    decodes into an optional one): its fields, less those UNSET, counted in C."""
    return f"{len(fields)} - astuple({target}).count(UNSET)"


def _key_count_lines(signal_type: str, scanned: bool) -> list[str]:
    """Lines of the generated check that hand over to the engine a clean signal whose text
    may have written a key twice (SPEC §5, `duplicate_key`; see duplicates.py). `scanned`:
    the compiled scanner `scan` looks at the text (not 0: a key twice, or not sure).
    Without it, they count the keys the signal was read with, and the text's bound: its
    `":` pairs, and none of a blank then a colon (tab, CR, LF: rare, looked for by memchr
    first)."""
    if scanned:
        return ["    if raw is not None and scan(raw): return NOT_SURE"]
    fields = SIGNAL_TYPES[signal_type].fields
    lines = [
        "    if raw is not None:",
        # identifiableAttributes (one key, said above), signalContent, its signalType.
        "        n += 4 + (a is not UNSET) + (s.sessionId is not UNSET) + (s.test is not UNSET)",
        f"        n += {_member_count('c', fields)}",
    ]
    for name, spec in fields.items():
        if spec.kind in _ELEMENT_FIELDS:
            inner = _ELEMENT_FIELDS[spec.kind]
            if all(f.required for f in inner.values()):  # {name, value}: no optional member
                lines.append(f"        if c.{name} is not UNSET: n += {len(inner)} * len(c.{name})")
                continue
            lines += [
                f"        if c.{name} is not UNSET:",
                f"            for e in c.{name}:",
                f"                n += {_member_count('e', inner)}",
            ]
    lines += [
        "        if (",
        "            raw.count(b'\":') != n",
        "            or raw.find(b' :') >= 0",
        # find() of one byte is a memchr; `in` would first try the operand as an int.
        "            or (raw.find(9) >= 0 and raw.find(b'\\t:') >= 0)",
        "            or (raw.find(13) >= 0 and raw.find(b'\\r:') >= 0)",
        "            or (raw.find(10) >= 0 and raw.find(b'\\n:') >= 0)",
        "        ):",
        "            return NOT_SURE",
    ]
    return lines


@lru_cache(maxsize=256)
def _signal_check(
    signal_type: str,
    default_app_key: bool,
    scan: Callable[[bytes], int] | None,
    app_keys: frozenset[str] | None = None,
) -> Callable[[Any, Any, int], int]:
    """The whole check after the typed decode of a signal of this type, generated as one
    plain function the way dataclasses generates __init__ (a msgspec constraint or hook,
    or a chain of small functions, costs a Python call per value or per step): what
    depends on the run (the default app key) or on several members (exactly one
    identifiable attribute, checked by library: e-mail, phone), then the content, then,
    given the signal's JSON text `raw`, that no key was written twice: by `scan`, the
    compiled scanner of duplicates.py, or without it by counting keys (`n`: keys around
    the envelope, 1 for a wrapper). With `app_keys`, a signal naming another app key is
    not clean either (`elif a not in APP_KEYS`), so the engine sees it (Options.app_keys).
    NOT_SURE, CLEAN or CLEAN_CONTACT_KEY_ONLY. For
    pageView with no default app key, without the scanner (the key count shortened):

        def check(s, raw, n):
            a = s.appKey
            if a is UNSET: return NOT_SURE
            if a.isspace(): return NOT_SURE
            ids = s.identifiableAttributes
            if len(ids) != 1: return NOT_SURE
            kind, value = ids.popitem()
            if IDENTITY_PROBLEM[kind](value): return NOT_SURE
            c = s.signalContent
            if c.url.isspace(): return NOT_SURE
            if c.signalCustomAttributes is not UNSET:
                for e in c.signalCustomAttributes:
                    if e.name.isspace() or e.value.isspace(): return NOT_SURE
            if raw is not None:
                n += 4 + (a is not UNSET) + (s.sessionId is not UNSET) + (s.test is not UNSET)
                n += 9 - astuple(c).count(UNSET)
                ...
                if raw.count(b'":') != n or raw.find(b' :') >= 0 or ...: return NOT_SURE
            return CLEAN_CONTACT_KEY_ONLY if kind == "contactKey" else CLEAN
    """
    lines = [
        "def check(s, raw, n):",
        "    a = s.appKey",
        # Without a default, a signal needs its own appKey; with one, it may go without.
        "    if a is UNSET: " + ("pass" if default_app_key else "return NOT_SURE"),
        "    elif a.isspace(): return NOT_SURE",
        *(["    elif a not in APP_KEYS: return NOT_SURE"] if app_keys is not None else []),
        "    ids = s.identifiableAttributes",
        # None is an error, several are ambiguous: the engine says which.
        "    if len(ids) != 1: return NOT_SURE",
        "    kind, value = ids.popitem()",  # the dict is ours; popitem avoids an iterator
        "    if IDENTITY_PROBLEM[kind](value): return NOT_SURE",
        "    c = s.signalContent",
        *_content_lines(signal_type),
        *_key_count_lines(signal_type, scan is not None),
        '    return CLEAN_CONTACT_KEY_ONLY if kind == "contactKey" else CLEAN',
    ]
    namespace: dict[str, Any] = {
        "UNSET": UNSET,
        "NOT_SURE": NOT_SURE,
        "CLEAN": CLEAN,
        "CLEAN_CONTACT_KEY_ONLY": CLEAN_CONTACT_KEY_ONLY,
        "IDENTITY_PROBLEM": _IDENTITY_PROBLEM,
        "astuple": msgspec.structs.astuple,
        "catalog_datetime_problem": catalog_datetime_problem,
        "identifier_value_unfit": _identifier_value_unfit,
        "scan": scan,
        "APP_KEYS": app_keys,
    }
    source = "\n".join(lines) + "\n"
    exec(compile(source, f"<fast path check for {signal_type}>", "exec"), namespace)
    return cast(Callable[[Any, Any, int], int], namespace["check"])


def _identifier_value_unfit(content: Any) -> bool:
    name = content.identifierName.lower()
    if name == "email":
        return email_problem(content.identifierValue) is not None
    if name == "sms":
        return phone_problem(content.identifierValue) is not None
    return False


_CUSTOM_ATTRIBUTE = _struct("CustomAttribute", CUSTOM_ATTRIBUTE_FIELDS)
_ITEM = _struct("Item", ITEM_FIELDS)


# identifiableAttributes as a dict: a clean signal has exactly one entry, so one length
# test and one look-up replace four optional attributes.
_Identities = dict[Literal["contactKey", "email", "sms", "whatsapp"], _NonBlank]


_CONTENT_STRUCTS: dict[str, type[Struct]] = {
    name: _struct(f"Content_{name}", spec.fields, tag_field="signalType", tag=name)
    for name, spec in SIGNAL_TYPES.items()
}


# Per decoded content type, its signal type.
_SIGNAL_TYPE_OF: dict[type, str] = {struct: name for name, struct in _CONTENT_STRUCTS.items()}


@cache
def _decoders(tier: Tier) -> tuple[Any, Any, Any, Any]:
    """JSON decoders and converter types for envelopes and wrappers of one tier."""
    allowed = tuple(_CONTENT_STRUCTS[name] for name in sorted(types_for_tier(tier)))
    content: Any = allowed[0] if len(allowed) == 1 else _union(allowed)
    envelope = msgspec.defstruct(
        f"Envelope_{tier}",
        [
            ("identifiableAttributes", _Identities),
            ("signalContent", content),
            ("appKey", _NonBlank | UnsetType, UNSET),
            ("sessionId", str | UnsetType, UNSET),
            ("test", bool | UnsetType, UNSET),
        ],
        forbid_unknown_fields=True,
        gc=False,
    )
    wrapper = msgspec.defstruct(
        f"Wrapper_{tier}", [("signal", envelope)], forbid_unknown_fields=True, gc=False
    )
    return (
        msgspec.json.Decoder(envelope),
        msgspec.json.Decoder(wrapper),
        envelope,
        wrapper,
    )


def _union(members: tuple[type[Struct], ...]) -> Any:
    union: Any = members[0]
    for member in members[1:]:
        union = union | member
    return union


class FastPath:
    """Recognises clean signals for one tier and default app key."""

    def __init__(
        self,
        *,
        tier: Tier,
        default_app_key: str | None,
        app_keys: frozenset[str] | None = None,
    ) -> None:
        self._envelope_decoder, self._wrapper_decoder, self._envelope, self._wrapper = _decoders(
            tier
        )
        # Per decoded content type, the check after the decode.
        scan = key_scanner()
        self._checks = {
            struct: _signal_check(name, bool(default_app_key), scan, app_keys)
            for name, struct in _CONTENT_STRUCTS.items()
        }
        self.prefer_wrapper = False

    def check_json(self, raw: bytes) -> Clean | None:
        """A clean signal's verdict, or None when the engine must judge the record."""
        envelope = self._decode_json(raw)
        return None if envelope is None else self._verdict(envelope, raw)

    def check_value(self, value: Any) -> Clean | None:
        """The same for a record already read into Python objects (CSV), whose reader
        says what its text held twice (findings.RowWithDuplicates)."""
        envelope = self._convert(value)
        return None if envelope is None else self._verdict(envelope, None)

    def classify_json(self, raw: bytes) -> int:
        """check_json as a number, for counting whole blocks in C: NOT_SURE, CLEAN or
        CLEAN_CONTACT_KEY_ONLY (clean, identified by a contactKey alone)."""
        envelope = self._decode_json(raw)
        return NOT_SURE if envelope is None else self._post_check(envelope, raw)

    def _post_check(self, envelope: Any, raw: bytes | None) -> int:
        return self._checks[type(envelope.signalContent)](
            envelope, raw, 1 if self.prefer_wrapper else 0
        )

    def json_classifier(self) -> Callable[[bytes], int]:
        """classify_json as one plain function, for the hot loop (made again when
        prefer_wrapper changes)."""
        decode = (
            self._wrapper_decoder.decode if self.prefer_wrapper else self._envelope_decoder.decode
        )
        wrapped = self.prefer_wrapper
        outside = 1 if wrapped else 0  # the wrapper's own key
        checks = self._checks
        refused = (msgspec.ValidationError, msgspec.DecodeError, UnicodeDecodeError)

        def classify(raw: bytes) -> int:
            try:
                envelope = decode(raw)
            except refused:
                return NOT_SURE
            if wrapped:
                envelope = envelope.signal
            return checks[type(envelope.signalContent)](envelope, raw, outside)

        return classify

    def classify_value(self, value: Any) -> int:
        """check_value as a number (see classify_json)."""
        envelope = self._convert(value)
        return NOT_SURE if envelope is None else self._post_check(envelope, None)

    def _decode_json(self, raw: bytes) -> Any:
        try:
            if self.prefer_wrapper:
                return self._wrapper_decoder.decode(raw).signal
            return self._envelope_decoder.decode(raw)
        # msgspec raises UnicodeDecodeError for bytes that are not UTF-8: the engine's
        # stage reports those (or refuses the file).
        except (msgspec.ValidationError, msgspec.DecodeError, UnicodeDecodeError):
            return None

    def _convert(self, value: Any) -> Any:
        if value.__class__ is not dict:  # RowWithDuplicates among others: the engine's
            return None
        try:
            if self.prefer_wrapper:
                return msgspec.convert(value, self._wrapper).signal
            return msgspec.convert(value, self._envelope)
        except msgspec.ValidationError:
            return None

    def _verdict(self, envelope: Any, raw: bytes | None) -> Clean | None:
        code = self._post_check(envelope, raw)
        if code == NOT_SURE:
            return None
        return _SIGNAL_TYPE_OF[type(envelope.signalContent)], code == CLEAN_CONTACT_KEY_ONLY
