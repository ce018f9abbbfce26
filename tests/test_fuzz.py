"""Properties of the validator over generated input (hypothesis):

(a) any JSON value anywhere in a record: `check_signal` never raises, and every issue has a
    documented code, a severity and a path that points into the record (SPEC §5);
(b) the fast path agrees with the engine: whatever it calls clean, the engine finds no
    issue in, with the same signal type and contactKey-only flag;
(c) an address the fast path's simple e-mail shortcut accepts is one email-validator accepts.

Sizes keep the file well under half a minute on a busy two-core machine.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from typing import Any

import pytest
from email_validator import validate_email
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from signals_app.validation import values
from signals_app.validation.engine import SignalCheck, check_signal
from signals_app.validation.fastpath import FastPath
from signals_app.validation.findings import Code, Issue
from signals_app.validation.schema import (
    CUSTOM_ATTRIBUTE_FIELDS,
    ENVELOPE_FIELDS,
    IDENTIFIABLE_ATTRIBUTES,
    ITEM_FIELDS,
    SIGNAL_TYPES,
    TIERS,
    Kind,
    Tier,
)
from tests.seed_examples import (
    APP_KEY,
    CONTACT_KEY,
    EMAIL,
    MINIMAL_ITEM,
    SEED_EMAILS,
    SEED_SMS,
    SEED_WHATSAPP,
    minimal_record,
    seed_examples,
)

FUZZ = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
AGREEMENT = settings(FUZZ, max_examples=300)

# SPEC §5's codes; the engine has no further one for a record already read.
SPEC_CODES = {
    "required",
    "type",
    "enum",
    "format",
    "max_length",
    "not_in_subscription",
    "unknown_field",
    "ambiguous",
}
CONTENT_FIELD_NAMES = sorted({f for t in SIGNAL_TYPES.values() for f in t.fields})
ALL_FIELD_NAMES = sorted(
    set(CONTENT_FIELD_NAMES)
    | set(ENVELOPE_FIELDS)
    | set(IDENTIFIABLE_ATTRIBUTES)
    | set(ITEM_FIELDS)
    | set(CUSTOM_ATTRIBUTE_FIELDS)
    | {"signalType", "signal", "quantity", "phone"}
)
TYPE_FIELDS = [(t, f) for t, spec in SIGNAL_TYPES.items() for f in spec.fields]

# --- Strategies -------------------------------------------------------------------------

# Values a validator has opinions about: near misses of the valid ones included.
INTERESTING_STRINGS = [
    "",
    " ",
    "\u00a0\u2003",
    "\t",
    "\u200b",
    "USD",
    "usd",
    "XXX",
    "ABC",
    "positive",
    "POSITIVE",
    "Behavior",
    "behaviour",
    "LAUNCH",
    "RAGE_CLICK",
    "user",
    "email",
    "SMS",
    "contactKey",
    "contactkey",
    CONTACT_KEY,
    *SEED_EMAILS,
    "jane.doe@example",
    "jane.doe@example.test",
    "[email\u00a0protected]",
    *SEED_SMS,
    *SEED_WHATSAPP,
    "+12345678",
    "+1403554909",
    "14035549090",
    "2025-08-31T08:29:30.001Z",
    "2025-08-31T08:29:30.001+02:00",
    "2025-08-31T08:29:30.001",
    "2025-13-31T08:29:30Z",
    "2025-04-12 08:29:30.001",
    "2025-13-12 08:29:30.001",
    "n" * 257,
    *SIGNAL_TYPES,
    "pageview",
]

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.sampled_from([0, 1, -1, 2**53 + 1, 2**63, 2**64, 10**30, 10**400, -(10**400)])
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from([2.0, 2.5, 1e308, -0.0, 1e16])
    | st.text()
    | st.sampled_from(INTERESTING_STRINGS)
)
json_keys = st.text(max_size=10) | st.sampled_from(ALL_FIELD_NAMES)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(json_keys, children, max_size=5)
    ),
    max_leaves=16,
)
json_objects = st.dictionaries(json_keys, json_values, max_size=6)
tiers = st.sampled_from(TIERS)
default_app_keys = st.none() | st.just(APP_KEY)


def seed_like_records() -> list[dict[str, Any]]:
    """Clean records to start from: every seed example and a minimal record per type."""
    records = [copy.deepcopy(e.envelope) for e in seed_examples()]
    records += [minimal_record(t) for t in SIGNAL_TYPES]
    records.append(minimal_record("order", orderedItems=[MINIMAL_ITEM, MINIMAL_ITEM]))
    records.append(
        minimal_record(
            "productView",
            dateAdded="2025-04-12 08:29:30.001",
            tags=["paint"],
            signalCustomAttributes=[{"name": "tier", "value": "gold"}],
        )
    )
    records.append(
        minimal_record("identification", identifierName="sms", identifierValue="+14035549090")
    )
    return records


BASES = seed_like_records()

# --- Invariants of every check --------------------------------------------------------

_KNOWN_PATH = re.compile(r"[A-Za-z]+(?:\[\d+\])*(?:\.[A-Za-z]+(?:\[\d+\])*)*")
_STEP = re.compile(r"\.?([A-Za-z]+)|\[(\d+)\]")
_ABSENT: Any = object()


def _resolve(root: Any, path: str) -> Any:
    """The value at a path of known field names, or _ABSENT."""
    if not _KNOWN_PATH.fullmatch(path):
        return _ABSENT
    value = root
    for name, index in _STEP.findall(path):
        if name:
            if not isinstance(value, dict) or name not in value:
                return _ABSENT
            value = value[name]
        else:
            if not isinstance(value, list) or int(index) >= len(value):
                return _ABSENT
            value = value[int(index)]
    return value


def _is_unknown_key_path(root: Any, path: str) -> bool:
    """path is `<a known path to an object>.<one of its keys>` (the key may be anything)."""
    if isinstance(root, dict) and path in root:
        return True
    for at in (m.start() for m in re.finditer(r"\.", path)):
        parent = _resolve(root, path[:at])
        if isinstance(parent, dict) and path[at + 1 :] in parent:
            return True
    return False


def _parent_path(path: str) -> str:
    cut = max(path.rfind("."), path.rfind("["))
    return path[:cut] if cut > 0 else ""


def assert_well_formed(record: Any, check: SignalCheck) -> None:
    """Every issue has a documented code and severity and points into the record."""
    envelope = record
    if isinstance(record, dict) and "signal" in record and "signalContent" not in record:
        envelope = record["signal"]
    for issue in check.issues:
        assert isinstance(issue, Issue)
        assert issue.severity in ("error", "warning")
        assert str(issue.code) in SPEC_CODES
        assert isinstance(issue.message, str) and issue.message
        assert isinstance(issue.path, str)
        if issue.code is Code.UNKNOWN_FIELD:
            assert _is_unknown_key_path(envelope, issue.path) or (
                envelope is not record and issue.path in record
            ), issue
        elif issue.path == "":
            assert issue.code is Code.TYPE and not isinstance(envelope, dict)
        elif issue.code is Code.REQUIRED:
            # A missing field is reported where it belongs: its parent exists.
            parent = _parent_path(issue.path)
            assert parent == "" or _resolve(envelope, parent) is not _ABSENT, issue
            assert _KNOWN_PATH.fullmatch(issue.path), issue
        else:
            assert _resolve(envelope, issue.path) is not _ABSENT, issue
    assert check.rejected == any(i.severity == "error" for i in check.issues)
    if check.contact_key_only:
        assert isinstance(envelope, dict)
        assert list(
            k for k in IDENTIFIABLE_ATTRIBUTES if k in envelope["identifiableAttributes"]
        ) == ["contactKey"]


def checked(
    record: Any, tier: Tier = "ultimate", default_app_key: str | None = None
) -> SignalCheck:
    check = check_signal(record, tier=tier, default_app_key=default_app_key)
    assert_well_formed(record, check)
    return check


# --- (a) Never raises, always well-formed -------------------------------------------


@FUZZ
@given(json_values, tiers, default_app_keys)
def test_any_json_value_as_the_whole_record(
    record: Any, tier: Tier, default_app_key: str | None
) -> None:
    checked(record, tier, default_app_key)
    checked({"signal": record}, tier, default_app_key)


@FUZZ
@given(json_objects, st.sampled_from(sorted(ENVELOPE_FIELDS)), json_values, tiers)
def test_any_json_value_in_the_envelope(
    extra: dict[str, Any], field: str, value: Any, tier: Tier
) -> None:
    record = {**minimal_record("order"), **extra}
    checked(record, tier)
    record = minimal_record("order")
    record[field] = value
    checked(record, tier)
    checked({"signal": record, **extra}, tier)


@FUZZ
@given(json_values, json_objects, st.sampled_from(sorted(SIGNAL_TYPES)), tiers)
def test_any_json_value_as_signal_content(
    content: Any, fields: dict[str, Any], signal_type: str, tier: Tier
) -> None:
    record = minimal_record(signal_type)
    record["signalContent"] = content
    checked(record, tier)
    record["signalContent"] = {**fields, "signalType": signal_type}
    checked(record, tier)
    record["signalContent"] = {"signalType": signal_type, **fields}
    checked(record, tier)


@FUZZ
@given(st.sampled_from(TYPE_FIELDS), json_values, tiers)
def test_any_json_value_in_any_field_of_any_type(
    type_field: tuple[str, str], value: Any, tier: Tier
) -> None:
    signal_type, field = type_field
    checked(minimal_record(signal_type, **{field: value}), tier)


@FUZZ
@given(json_values, json_objects)
def test_any_json_value_as_identifiable_attributes(value: Any, attributes: dict[str, Any]) -> None:
    for ids in (value, attributes, {"contactKey": value}, {"email": value, "sms": value}):
        record = minimal_record("order")
        record["identifiableAttributes"] = ids
        checked(record)


@FUZZ
@given(
    st.sampled_from([("order", "orderedItems"), ("cartAbandonment", "abandonedItems")]),
    st.lists(json_values, max_size=3),
    json_objects,
    st.sampled_from(sorted(ITEM_FIELDS)),
    json_values,
)
def test_any_json_value_as_items(
    type_array: tuple[str, str],
    items: list[Any],
    extra: dict[str, Any],
    field: str,
    value: Any,
) -> None:
    signal_type, array = type_array
    checked(minimal_record(signal_type, **{array: items}))
    checked(minimal_record(signal_type, **{array: [{**MINIMAL_ITEM, **extra}]}))
    checked(minimal_record(signal_type, **{array: [{**MINIMAL_ITEM, field: value}]}))
    checked(minimal_record(signal_type, signalCustomAttributes=items))
    checked(minimal_record(signal_type, signalCustomAttributes=[extra]))


# --- (b) The fast path agrees with the engine ----------------------------------------


def _locations(value: Any) -> list[tuple[Any, Any]]:
    """Every (container, key) in a JSON value: dict keys and list positions."""
    found: list[tuple[Any, Any]] = []
    if isinstance(value, dict):
        for key, child in value.items():
            found.append((value, key))
            found.extend(_locations(child))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found.append((value, index))
            found.extend(_locations(child))
    return found


def _objects(value: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    if isinstance(value, dict):
        found.append(value)
        for child in value.values():
            found.extend(_objects(child))
    elif isinstance(value, list):
        for child in value:
            found.extend(_objects(child))
    return found


CASE_CHANGES: list[Callable[[str], str]] = [str.upper, str.lower, str.capitalize, str.swapcase]
WHITESPACE = [" ", "\u00a0", "\t", "\u2003", "\n"]
IDENTITY_VALUES = st.sampled_from(
    [CONTACT_KEY, *SEED_EMAILS, *SEED_SMS, *SEED_WHATSAPP, " ", "", "jane.doe", "+1403554909"]
)


@st.composite
def mutated_records(draw: st.DrawFn) -> dict[str, Any]:
    record = copy.deepcopy(draw(st.sampled_from(BASES)))
    for _ in range(draw(st.integers(0, 3))):
        mutation = draw(
            st.sampled_from(
                ["drop", "replace", "case", "whitespace", "unknown", "identities", "retype"]
            )
        )
        locations = _locations(record)
        if mutation in ("case", "whitespace"):
            locations = [(c, k) for c, k in locations if isinstance(c[k], str)]
        if mutation in ("drop", "replace", "case", "whitespace") and locations:
            container, key = draw(st.sampled_from(locations))
            value = container[key]
            if mutation == "drop":
                del container[key]
            elif mutation == "replace":
                container[key] = draw(json_values)
            elif mutation == "case":
                container[key] = draw(st.sampled_from(CASE_CHANGES))(value)
            elif mutation == "whitespace":
                space = draw(st.sampled_from(WHITESPACE))
                where = draw(st.sampled_from(["start", "end", "only", "middle"]))
                container[key] = {
                    "start": space + value,
                    "end": value + space,
                    "only": space * draw(st.integers(0, 2)),
                    "middle": value[: len(value) // 2] + space + value[len(value) // 2 :],
                }[where]
        elif mutation == "unknown":
            target = draw(st.sampled_from(_objects(record)))
            target[draw(json_keys)] = draw(json_values)
        elif mutation == "identities":
            keys = draw(st.lists(st.sampled_from(sorted(IDENTIFIABLE_ATTRIBUTES)), max_size=3))
            record["identifiableAttributes"] = {k: draw(IDENTITY_VALUES) for k in keys}
        elif mutation == "retype" and isinstance(record.get("signalContent"), dict):
            record["signalContent"]["signalType"] = draw(st.sampled_from(sorted(SIGNAL_TYPES)))
    return record


def assert_fast_path_agrees(record: Any, tier: Tier, default_app_key: str | None) -> None:
    check = checked(record, tier, default_app_key)
    fast = FastPath(tier=tier, default_app_key=default_app_key)
    raw = json.dumps(record).encode()
    verdicts = {"json": fast.check_json(raw), "value": fast.check_value(record)}
    fast.prefer_wrapper = True
    wrapped = {"signal": record}
    verdicts["wrapped json"] = fast.check_json(json.dumps(wrapped).encode())
    verdicts["wrapped value"] = fast.check_value(wrapped)
    for how, verdict in verdicts.items():
        if verdict is None:
            continue
        assert check.issues == [], f"fast path ({how}) calls clean: {record!r}"
        assert verdict == (check.signal_type, check.contact_key_only), how
    event("clean" if not check.issues else "not clean")
    event(f"fast path accepted: {verdicts['json'] is not None}")


@AGREEMENT
@given(mutated_records(), tiers, default_app_keys)
def test_the_fast_path_accepts_nothing_the_engine_flags(
    record: dict[str, Any], tier: Tier, default_app_key: str | None
) -> None:
    assert_fast_path_agrees(record, tier, default_app_key)


@FUZZ
@given(st.sampled_from(TYPE_FIELDS), json_values, tiers)
def test_the_fast_path_agrees_on_any_value_in_any_field(
    type_field: tuple[str, str], value: Any, tier: Tier
) -> None:
    signal_type, field = type_field
    assert_fast_path_agrees(minimal_record(signal_type, **{field: value}), tier, None)


@FUZZ
@given(
    st.sampled_from(sorted(ITEM_FIELDS) + sorted(CUSTOM_ATTRIBUTE_FIELDS)),
    json_scalars,
    st.sampled_from(["order", "cartAbandonment"]),
)
def test_the_fast_path_agrees_on_any_value_in_items_and_custom_attributes(
    field: str, value: Any, signal_type: str
) -> None:
    array = "orderedItems" if signal_type == "order" else "abandonedItems"
    if field in ITEM_FIELDS:
        record = minimal_record(signal_type, **{array: [{**MINIMAL_ITEM, field: value}]})
    else:
        entry = {"name": "tier", "value": "gold", field: value}
        record = minimal_record(signal_type, signalCustomAttributes=[entry])
    assert_fast_path_agrees(record, "ultimate", None)


# Values by kind, mostly valid and sometimes a near miss, so that the fast path often says
# "clean" and the agreement is tested where it matters.
_valid_text = st.text(st.characters(codec="ascii", categories=["L", "N"]), min_size=1, max_size=6)
_near_text = st.sampled_from(["", " ", "\u00a0", "\u2003", "\t", "\u200b"]) | st.text(max_size=6)
_spaced = st.tuples(st.sampled_from(["", " ", "\u00a0"]), st.sampled_from(["", " ", "\n"]))


def _cased(choices: tuple[str, ...] | list[str], padded: bool) -> st.SearchStrategy[str]:
    return st.builds(
        lambda choice, change, pad: pad[0] + change(choice) + pad[1],
        st.sampled_from(sorted(choices)),
        st.sampled_from([*CASE_CHANGES, str]),
        _spaced if padded else st.just(("", "")),
    )


_DATE = r"20[0-9]{2}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])"
_TIME = r"([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]"
_VALID: dict[Kind, st.SearchStrategy[Any]] = {
    Kind.STRING: _valid_text,
    Kind.NUMBER: st.integers(-(10**6), 10**6) | st.floats(-1e6, 1e6),
    Kind.INTEGER: st.integers(0, 10**6),
    Kind.BOOLEAN: st.booleans(),
    Kind.CURRENCY: st.sampled_from(["USD", "EUR", "GBP", "XXX"]),
    Kind.DATETIME: st.from_regex(
        rf"{_DATE}T{_TIME}(\.[0-9]{{1,6}})?(Z|[+-]0[0-9]:[0-5][0-9])", fullmatch=True
    ),
    Kind.CATALOG_DATETIME: st.from_regex(rf"{_DATE} {_TIME}\.[0-9]{{3}}", fullmatch=True),
    Kind.STRING_LIST: st.lists(_valid_text, max_size=3),
}
_NEAR_MISS: dict[Kind, st.SearchStrategy[Any]] = {
    Kind.STRING: _near_text,
    Kind.NUMBER: st.integers(-(2**70), 2**70) | st.floats() | st.booleans(),
    Kind.INTEGER: st.floats(-1e17, 1e17) | st.integers(-(2**70), 2**70) | st.booleans(),
    Kind.BOOLEAN: st.sampled_from(["true", 0, 1, None]),
    Kind.CURRENCY: _cased(["USD", "EUR", "XXX", "ABC", "US"], padded=True),
    Kind.DATETIME: st.from_regex(
        r"20[0-9]{2}-[01][0-9]-[0-3][0-9][Tt ][0-2][0-9]:[0-6][0-9](:[0-6][0-9](\.[0-9]{1,10})?)?"
        r"([Zz]|[+-][0-2][0-9]:?[0-5][0-9])?",
        fullmatch=True,
    ),
    Kind.CATALOG_DATETIME: st.from_regex(
        r"20[0-9]{2}-[01][0-9]-[0-3][0-9][ T][0-2][0-9]:[0-6][0-9]:[0-6][0-9]\.[0-9]{2,4}Z?",
        fullmatch=True,
    ),
    Kind.STRING_LIST: st.lists(_near_text | st.integers(), max_size=3),
}


def _near_valid(kind: Kind, choices: tuple[str, ...]) -> st.SearchStrategy[Any]:
    if kind is Kind.ENUM:
        valid, near = _cased(choices, padded=False), _cased(choices, padded=True) | _near_text
    elif kind is Kind.ITEMS:
        item = st.fixed_dictionaries(
            {n: _near_valid(f.kind, f.choices) for n, f in ITEM_FIELDS.items() if f.required},
            optional={
                n: _near_valid(f.kind, f.choices) for n, f in ITEM_FIELDS.items() if not f.required
            },
        )
        return st.lists(item, max_size=2)
    elif kind is Kind.CUSTOM_ATTRIBUTES:
        text = _near_valid(Kind.STRING, ())
        return st.lists(st.fixed_dictionaries({"name": text, "value": text}), max_size=2)
    else:
        valid, near = _VALID[kind], _NEAR_MISS[kind]
    # About one near miss in five.
    return st.integers(0, 4).flatmap(lambda n: near if n == 0 else valid)


_near_emails = st.one_of(
    st.from_regex(values.SIMPLE_EMAIL, fullmatch=True),
    st.sampled_from(SEED_EMAILS),
    st.sampled_from(["jane.doe@example.test", "jane@example", "Jane.Doe@EXAMPLE.com", " a@b.co"]),
)
_near_phones = st.one_of(
    st.sampled_from([*SEED_SMS, *SEED_WHATSAPP, "+29012345"]),
    st.sampled_from([*SEED_SMS, *SEED_WHATSAPP]),
    st.from_regex(r"\+?[0-9]{6,16}", fullmatch=True),
)
_NEAR_IDENTITIES = {
    "contactKey": _near_valid(Kind.STRING, ()),
    "email": _near_emails,
    "sms": _near_phones,
    "whatsapp": _near_phones,
}


@st.composite
def near_valid_records(draw: st.DrawFn) -> dict[str, Any]:
    signal_type = draw(st.sampled_from(sorted(SIGNAL_TYPES)))
    content: dict[str, Any] = {"signalType": signal_type}
    for name, field in SIGNAL_TYPES[signal_type].fields.items():
        if field.required or draw(st.integers(0, 9)) < 2:
            content[name] = draw(_near_valid(field.kind, field.choices))
    if signal_type == "identification" and draw(st.booleans()):
        name = str(content.get("identifierName", "email")).strip().lower()
        content["identifierValue"] = draw(_NEAR_IDENTITIES.get(name, _near_text))
    if draw(st.integers(0, 9)) == 0:
        content.pop(draw(st.sampled_from(sorted(content))))
    count = 2 if draw(st.integers(0, 4)) == 0 else 1
    keys = draw(
        st.lists(
            st.sampled_from(sorted(_NEAR_IDENTITIES)), min_size=count, max_size=count, unique=True
        )
    )
    record: dict[str, Any] = {
        "identifiableAttributes": {k: draw(_NEAR_IDENTITIES[k]) for k in keys},
        "signalContent": content,
    }
    if draw(st.booleans()):
        record["appKey"] = draw(_near_valid(Kind.STRING, ()))
    if draw(st.booleans()):
        record["test"] = draw(_near_valid(Kind.BOOLEAN, ()))
    return record


@AGREEMENT
@given(near_valid_records(), tiers, default_app_keys)
def test_the_fast_path_agrees_on_near_valid_records(
    record: dict[str, Any], tier: Tier, default_app_key: str | None
) -> None:
    assert_fast_path_agrees(record, tier, default_app_key)


@st.composite
def raw_json_with_duplicate_keys(draw: st.DrawFn) -> bytes:
    """A near-valid record as JSON text in which some objects repeat a key (JSON allows
    it; json.loads, which the engine's reader uses, keeps the last one)."""
    record = draw(st.one_of(near_valid_records(), st.sampled_from(BASES)))

    def dump(value: Any) -> str:
        if isinstance(value, dict):
            pairs = [(k, dump(v)) for k, v in value.items()]
            if pairs and draw(st.integers(0, 3)) == 0:
                key = draw(st.sampled_from([k for k, _ in pairs]))
                other = draw(st.sampled_from([value[key], *BASE_VALUES]) | json_values)
                pairs.insert(draw(st.integers(0, len(pairs))), (key, json.dumps(other)))
            return "{" + ",".join(f"{json.dumps(k)}:{v}" for k, v in pairs) + "}"
        if isinstance(value, list):
            return "[" + ",".join(dump(v) for v in value) + "]"
        return json.dumps(value, ensure_ascii=draw(st.booleans()))

    return dump(record).encode()


BASE_VALUES = [c[k] for record in BASES for c, k in _locations(record)[:20]]


@FUZZ
@given(raw_json_with_duplicate_keys(), tiers)
def test_the_fast_path_agrees_on_raw_json_with_repeated_keys(raw: bytes, tier: Tier) -> None:
    check = checked(json.loads(raw), tier)
    verdict = FastPath(tier=tier, default_app_key=None).check_json(raw)
    if verdict is not None:
        assert check.issues == [], raw
        assert verdict == (check.signal_type, check.contact_key_only)


@pytest.mark.parametrize("tier", TIERS)
def test_the_fast_path_accepts_the_clean_seed_like_records(tier: Tier) -> None:
    fast = FastPath(tier=tier, default_app_key=None)
    for record in BASES:
        check = check_signal(record, tier=tier)
        if check.issues:
            assert fast.check_value(record) is None
            continue
        expected = (check.signal_type, check.contact_key_only)
        assert fast.check_json(json.dumps(record).encode()) == expected, record
        assert fast.check_value(record) == expected, record


# --- (c) The e-mail shortcut ---------------------------------------------------------


@settings(FUZZ, max_examples=150)
@given(st.from_regex(values.SIMPLE_EMAIL, fullmatch=True))
def test_the_fast_paths_email_shortcut_accepts_only_valid_addresses(address: str) -> None:
    by_shortcut = values.is_simple_email(address)
    if by_shortcut:
        validate_email(address, check_deliverability=False)
    event(f"shortcut: {by_shortcut}")


def test_the_email_shortcut_takes_the_common_shape() -> None:
    assert values.is_simple_email(EMAIL)
    assert values.is_simple_email("test@gmail.com")
    assert not values.is_simple_email("jane.doe@example.test")
