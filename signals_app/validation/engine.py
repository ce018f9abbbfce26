"""The rule engine: judges one signal record against the table in `schema.py` and returns
every issue, never raising for bad data (any JSON value at all gives issues).

Severity follows SPEC §4: an *error* where Connect would discard the whole signal (a
missing or invalid required field, an unknown or unsubscribed type, a broken item of
orderedItems / abandonedItems), a *warning* where the signal goes through but something is
lost (an invalid optional field, an unknown field, a name over 256 characters).

An Attentive custom event in a file of signals (a type and a user, no signalContent) is one
`wrong_destination` error, not a pile of unknown and missing fields; attentive.py judges
such events, and reports a Connect signal among them the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from math import isfinite
from typing import Any, NamedTuple

from signals_app.validation.findings import (
    ERROR,
    WARNING,
    Code,
    Issue,
    RowWithDuplicates,
    Severity,
    TooLargeText,
)
from signals_app.validation.schema import (
    CUSTOM_ATTRIBUTE_FIELDS,
    ENVELOPE_FIELDS,
    IDENTIFIABLE_ATTRIBUTES,
    ITEM_FIELDS,
    RENAMED_FIELDS,
    SIGNAL_TYPES,
    TIERS,
    Field,
    Kind,
    Tier,
    types_for_tier,
)
from signals_app.validation.values import (
    CURRENCY_CODES,
    SCALAR_CHECKS,
    Problem,
    describe,
    email_problem,
    is_blank,
    phone_problem,
    suggest,
)

_MISSING: Any = object()
_ALL_CONTENT_FIELDS = frozenset(f for t in SIGNAL_TYPES.values() for f in t.fields)
_ENVELOPE_NAMES = frozenset(ENVELOPE_FIELDS)
_IDENTITY_ORDER = tuple(IDENTIFIABLE_ATTRIBUTES)
_IDENTITY_NAMES = frozenset(IDENTIFIABLE_ATTRIBUTES)
_SIGNAL_TYPE_NAMES = frozenset(SIGNAL_TYPES)
_TIER_TYPES: dict[Tier, frozenset[str]] = {tier: types_for_tier(tier) for tier in TIERS}


@dataclass(slots=True)
class SignalCheck:
    """The verdict on one signal."""

    issues: list[Issue] = dataclass_field(default_factory=list)
    contact_key_only: bool = False
    signal_type: str | None = None

    @property
    def rejected(self) -> bool:
        return any(issue.severity == ERROR for issue in self.issues)


def unwrap(record: Any) -> tuple[Any, list[str]]:
    """The envelope inside the vendor's file-import wrapper `{"signal": {...}}`, and the
    names of any other keys beside it (ignored, reported as unknown)."""
    if isinstance(record, dict) and "signal" in record and "signalContent" not in record:
        return record["signal"], [key for key in record if key != "signal"]
    return record, []


def check_signal(
    record: Any, *, tier: Tier = "ultimate", default_app_key: str | None = None
) -> SignalCheck:
    """Every issue of one signal record (an envelope or a `{"signal": ...}` wrapper)."""
    check = SignalCheck()
    issues = check.issues
    if record.__class__ is RowWithDuplicates:  # what the CSV reader saw in the row's cells
        issues.extend(record.duplicates)
    envelope, outside = unwrap(record)
    for key in outside:
        issues.append(
            Issue(str(key), WARNING, Code.UNKNOWN_FIELD, f"{key} is outside the signal; ignored")
        )
    if not isinstance(envelope, dict):
        issues.append(
            Issue(
                "", ERROR, Code.TYPE, f"a signal must be a JSON object, found {describe(envelope)}"
            )
        )
        return check
    if "signalContent" not in envelope and _is_attentive_event(envelope):
        issues.append(
            Issue(
                "",
                ERROR,
                Code.WRONG_DESTINATION,
                "this is an Attentive custom event (type and user), not an Acoustic Connect "
                "signal: a signal is {appKey, identifiableAttributes, signalContent}; send the "
                "event to Attentive, not to Connect",
            )
        )
        return check

    app_key = envelope.get("appKey", _MISSING)
    if app_key is _MISSING or app_key is None:
        if not default_app_key:
            issues.append(
                Issue("appKey", ERROR, Code.REQUIRED, "appKey is required (the application key)")
            )
    else:
        _check_scalar(app_key, _ENVELOPE_SCALARS["appKey"], "appKey", "appKey", ERROR, issues)

    check.contact_key_only = _check_identities(
        envelope.get("identifiableAttributes", _MISSING), issues
    )

    for name in ("sessionId", "test"):
        value = envelope.get(name, _MISSING)
        if value is not _MISSING:
            _check_scalar(value, _ENVELOPE_SCALARS[name], name, name, WARNING, issues)

    for key in envelope:
        if key not in _ENVELOPE_NAMES:
            issues.append(_unknown(str(key), str(key), "a signal"))

    content = envelope.get("signalContent", _MISSING)
    if content is _MISSING or content is None:
        issues.append(Issue("signalContent", ERROR, Code.REQUIRED, "signalContent is required"))
    elif content.__class__ is TooLargeText:
        issues.append(_too_large("signalContent", content))
    elif not isinstance(content, dict):
        issues.append(
            Issue(
                "signalContent",
                ERROR,
                Code.TYPE,
                f"signalContent must be an object, found {describe(content)}",
            )
        )
    else:
        check.signal_type = _check_content(content, tier, issues)
    return check


def _is_attentive_event(envelope: dict[str, Any]) -> bool:
    """An Attentive custom event (SPEC §6): a type and a user (a CSV row's `user.<key>`
    columns land as such keys), no signalContent and no identifiableAttributes."""
    return (
        "type" in envelope
        and "identifiableAttributes" not in envelope
        and ("user" in envelope or any(str(key).startswith("user.") for key in envelope))
    )


def _check_identities(attributes: Any, issues: list[Issue]) -> bool:
    """Check identifiableAttributes; True when a contactKey is the only attribute."""
    path = "identifiableAttributes"
    if attributes is _MISSING or attributes is None:
        issues.append(
            Issue(
                path,
                ERROR,
                Code.REQUIRED,
                "identifiableAttributes is required: add one of contactKey, email, sms, whatsapp",
            )
        )
        return False
    if not isinstance(attributes, dict):
        issues.append(
            Issue(
                path,
                ERROR,
                Code.TYPE,
                f"identifiableAttributes must be an object, found {describe(attributes)}",
            )
        )
        return False
    present = [key for key in _IDENTITY_ORDER if key in attributes]
    for key in attributes:
        if key not in _IDENTITY_NAMES:
            issues.append(_unknown(f"{path}.{key}", str(key), "identifiableAttributes"))
    if not present:
        issues.append(
            Issue(
                path,
                ERROR,
                Code.REQUIRED,
                "identifiableAttributes needs one of contactKey, email, sms, whatsapp",
            )
        )
        return False
    for key in present:
        # The attribute maps the signal to a contact: a broken one loses the signal.
        value = attributes[key]
        if value is None:
            issues.append(Issue(f"{path}.{key}", ERROR, Code.TYPE, f"{key} is null"))
        else:
            _check_scalar(value, _IDENTITY_SCALARS[key], f"{path}.{key}", key, ERROR, issues)
    if len(present) > 1:
        issues.append(
            Issue(
                path,
                WARNING,
                Code.AMBIGUOUS,
                f"{len(present)} identifiable attributes ({', '.join(present)}): "
                "Connect maps the signal by one of them, which may not be the one you expect",
            )
        )
    return present == ["contactKey"]


def _check_content(content: dict[str, Any], tier: Tier, issues: list[Issue]) -> str | None:
    """Check signalContent; returns the signal type when it is a known one."""
    type_path = "signalContent.signalType"
    signal_type = content.get("signalType", _MISSING)
    if signal_type is _MISSING or signal_type is None:
        issues.append(Issue(type_path, ERROR, Code.REQUIRED, "signalType is required"))
        return None
    if not isinstance(signal_type, str):
        issues.append(
            Issue(
                type_path,
                ERROR,
                Code.TYPE,
                f"signalType must be a string, found {describe(signal_type)}",
            )
        )
        return None
    spec = SIGNAL_TYPES.get(signal_type)
    if spec is None:
        issues.append(
            Issue(
                type_path,
                ERROR,
                Code.ENUM,
                f'"{signal_type}" is not a behavior signal type'
                f"{suggest(signal_type, _SIGNAL_TYPE_NAMES)}; "
                f"known types: {', '.join(SIGNAL_TYPES)}",
            )
        )
        return None
    if signal_type not in _TIER_TYPES[tier]:
        issues.append(
            Issue(
                type_path,
                ERROR,
                Code.NOT_IN_SUBSCRIPTION,
                f"{signal_type} signals need a Premium or Ultimate subscription; "
                f"this app key is {tier.capitalize()}",
            )
        )

    _check_members(
        content, _CONTENT_PLANS[signal_type], "signalContent", f"{signal_type} signals", issues
    )
    if signal_type == "identification":
        _check_identifier_value(content, issues)

    return signal_type


def _check_identifier_value(content: dict[str, Any], issues: list[Issue]) -> None:
    """identifierValue must fit identifierName (SPEC §3)."""
    name, value = content.get("identifierName"), content.get("identifierValue")
    if not isinstance(name, str) or not isinstance(value, str) or is_blank(value):
        return  # already reported as missing or of the wrong type
    problem = None
    if name.lower() == "email":
        problem = email_problem(value)
    elif name.lower() == "sms":
        problem = phone_problem(value)
    if problem:
        issues.append(
            Issue(
                "signalContent.identifierValue",
                ERROR,
                Code.FORMAT,
                f"identifierValue {problem} (identifierName is {name})",
            )
        )


def _check_scalar(
    value: Any, checked: Scalar, path: str, name: str, severity: Severity, issues: list[Issue]
) -> None:
    check, field = checked
    problem = check(value, field)
    if problem is not None:
        _add_problem(problem, path, name, severity, issues)


def _add_problem(
    problem: Problem, path: str, name: str, severity: Severity, issues: list[Issue]
) -> None:
    """`name` is the last step of `path`: the member's name."""
    code, explanation = problem
    if code is Code.MAX_LENGTH:
        severity = WARNING  # a long name is cut, the signal still goes through (SPEC §4)
    dropped = "" if severity == ERROR or code is Code.MAX_LENGTH else "; Connect drops it"
    issues.append(Issue(path, severity, code, f"{name} {explanation}{dropped}"))


def _check_string_list(
    value: Any, path: str, name: str, severity: Severity, issues: list[Issue]
) -> None:
    if not isinstance(value, list):
        issues.append(
            Issue(
                path,
                severity,
                Code.TYPE,
                f"{name} must be an array of strings, found {describe(value)}; Connect drops it",
            )
        )
        return
    for index, element in enumerate(value):
        if not isinstance(element, str):
            issues.append(
                Issue(
                    f"{path}[{index}]",
                    severity,
                    Code.TYPE,
                    f"{name}[{index}] must be a string, found {describe(element)}",
                )
            )


def _check_items(value: Any, path: str, name: str, severity: Severity, issues: list[Issue]) -> None:
    """orderedItems / abandonedItems: optional, but an item that lacks or breaks a required
    field loses the whole signal (SPEC §4)."""
    if not isinstance(value, list):
        issues.append(
            Issue(
                path,
                WARNING,
                Code.TYPE,
                f"{name} must be an array of items, found {describe(value)}; Connect drops it",
            )
        )
        return
    where = f"an item of {name}"
    for index, item in enumerate(value):
        item_path = f"{path}[{index}]"
        if not isinstance(item, dict):
            issues.append(
                Issue(
                    item_path,
                    ERROR,
                    Code.TYPE,
                    f"{name}[{index}] must be an object with productId, productName and "
                    f"unitPrice, found {describe(item)}",
                )
            )
            continue
        _check_members(item, _ITEM_PLAN, item_path, where, issues)


def _check_custom_attributes(
    value: Any, path: str, name: str, severity: Severity, issues: list[Issue]
) -> None:
    """signalCustomAttributes is optional: whatever is wrong inside is a warning."""
    if not isinstance(value, list):
        issues.append(
            Issue(
                path,
                WARNING,
                Code.TYPE,
                "signalCustomAttributes must be an array of {name, value} objects, "
                f"found {describe(value)}; Connect drops it",
            )
        )
        return
    for index, entry in enumerate(value):
        entry_path = f"{path}[{index}]"
        if not isinstance(entry, dict):
            issues.append(
                Issue(
                    entry_path,
                    WARNING,
                    Code.TYPE,
                    f"signalCustomAttributes[{index}] must be an object with string name and "
                    f"value, found {describe(entry)}",
                )
            )
            continue
        _check_members(entry, _CUSTOM_ATTRIBUTE_PLAN, entry_path, "a custom attribute", issues)


# --- plans: what to do with each member of an object, worked out once ------------------
#
# A signal the fast path did not call clean usually has one or two problems among a dozen
# fine members, so the engine's time goes to members that are fine. A plan settles most of
# them without a call: `accepts` names a type every value of which the member's check
# passes (str for an optional string without a length limit, int for a number, ...). Any
# other value goes to the member's check: the kind's own check from values.SCALAR_CHECKS,
# or a shortcut in front of it that answers None only where that check answers None.

ArrayCheck = Callable[[Any, str, str, Severity, list[Issue]], None]
ScalarCheck = Callable[[Any, Field], Problem | None]
Scalar = tuple[ScalarCheck, Field]  # a field's check and the field, for _check_scalar


class _Member(NamedTuple):
    check: ScalarCheck | None  # None for an array kind
    walk: ArrayCheck | None  # for an array kind
    field: Field
    severity: Severity  # of a problem with the member's value (a null included)


class _Plan(NamedTuple):
    # Per name, a type every value of which is fine (only for such members): a look-up
    # and an `is` settle most members.
    accepts: dict[str, type]
    members: dict[str, _Member]
    required: tuple[str, ...]  # the names of required members, in the table's order
    required_names: frozenset[str]  # the same, for one subset test in C
    required_severity: Severity  # of a required member that is missing or null
    is_content: bool  # signalContent: its signalType is no unknown member


_ARRAY_CHECKS: dict[Kind, ArrayCheck] = {
    Kind.STRING_LIST: _check_string_list,
    Kind.ITEMS: _check_items,
    Kind.CUSTOM_ATTRIBUTES: _check_custom_attributes,
}


def _accept(field: Field) -> type | None:
    kind = field.kind
    if kind is Kind.STRING and not field.required and field.max_length is None:
        return str
    if kind is Kind.NUMBER or kind is Kind.INTEGER:
        return int  # exactly int: a bool is no number; a float may be fractional or infinite
    if kind is Kind.BOOLEAN:
        return bool
    return None


def _shortcut(field: Field) -> ScalarCheck | None:
    """The scalar check of a field, with a shortcut for the common good values."""
    kind = field.kind
    full = SCALAR_CHECKS.get(kind)
    if full is None:
        return None
    if kind is Kind.STRING and field.required and field.max_length is None:

        def check(value: Any, field: Field) -> Problem | None:
            if value.__class__ is str and value and not value.isspace():
                return None
            return full(value, field)

    elif kind is Kind.STRING and not field.required and field.max_length is not None:
        limit = field.max_length

        def check(value: Any, field: Field) -> Problem | None:
            if value.__class__ is str and len(value) <= limit:
                return None
            return full(value, field)

    elif kind is Kind.ENUM:
        folded = frozenset(choice.lower() for choice in field.choices)

        def check(value: Any, field: Field) -> Problem | None:
            if value.__class__ is str and value.lower() in folded:
                return None
            return full(value, field)

    elif kind is Kind.NUMBER:  # an int never gets here: `accepts` took it

        def check(value: Any, field: Field) -> Problem | None:
            if value.__class__ is float and isfinite(value):
                return None
            return full(value, field)

    elif kind is Kind.CURRENCY:

        def check(value: Any, field: Field) -> Problem | None:
            if value.__class__ is str and value in CURRENCY_CODES:
                return None
            return full(value, field)

    else:
        return full
    return check


def _plan(
    fields: Mapping[str, Field], required_severity: Severity, *, is_content: bool = False
) -> _Plan:
    accepts = {name: accept for name, field in fields.items() if (accept := _accept(field))}
    members = {
        name: _Member(
            _shortcut(field),
            _ARRAY_CHECKS.get(field.kind),
            field,
            required_severity if field.required else WARNING,
        )
        for name, field in fields.items()
    }
    required = tuple(name for name, field in fields.items() if field.required)
    return _Plan(accepts, members, required, frozenset(required), required_severity, is_content)


def _scalar(field: Field) -> Scalar:
    check = _shortcut(field)
    assert check is not None, f"{field.kind} is no scalar kind"
    return check, field


_ENVELOPE_SCALARS = {
    name: _scalar(ENVELOPE_FIELDS[name]) for name in ("appKey", "sessionId", "test")
}
# An identifiable attribute that is present must be valid: it maps the signal to a contact.
_IDENTITY_SCALARS = {
    key: _scalar(Field(field.kind, required=True)) for key, field in IDENTIFIABLE_ATTRIBUTES.items()
}
_CONTENT_PLANS: dict[str, _Plan] = {
    name: _plan(spec.fields, ERROR, is_content=True) for name, spec in SIGNAL_TYPES.items()
}
_ITEM_PLAN = _plan(ITEM_FIELDS, ERROR)
_CUSTOM_ATTRIBUTE_PLAN = _plan(CUSTOM_ATTRIBUTE_FIELDS, WARNING)


def _check_members(
    data: dict[str, Any], plan: _Plan, prefix: str, where: str, issues: list[Issue]
) -> None:
    """The members of an object (signalContent, an item, a custom attribute): required
    ones at the plan's severity, optional ones as warnings, unknown ones as warnings.
    Walks the members present, so a sparse record costs little; a member's path is only
    written out for a problem."""
    accepts = plan.accepts
    members = plan.members
    for key, value in data.items():
        if value.__class__ is accepts.get(key):  # never None's class: None is no type
            continue
        if value.__class__ is TooLargeText:
            issues.append(_too_large(f"{prefix}.{key}", value))
            continue
        member = members.get(key)
        if member is None:
            if key != "signalType" or not plan.is_content:
                issues.append(_unknown(f"{prefix}.{key}", str(key), where))
            continue
        check, walk, field, severity = member
        if value is None:
            if field.required:
                issues.append(
                    Issue(f"{prefix}.{key}", severity, Code.REQUIRED, f"{key} is null in {where}")
                )
            else:
                issues.append(
                    Issue(f"{prefix}.{key}", WARNING, Code.TYPE, f"{key} is null; Connect drops it")
                )
        elif check is not None:
            problem = check(value, field)
            if problem is not None:
                _add_problem(problem, f"{prefix}.{key}", key, severity, issues)
        elif walk is not None:
            walk(value, f"{prefix}.{key}", key, severity, issues)
    if not data.keys() >= plan.required_names:
        missing = [name for name in plan.required if name not in data]
        word = "for" if where.endswith("signals") else "in"
        for name in missing:
            issues.append(
                Issue(
                    f"{prefix}.{name}",
                    plan.required_severity,
                    Code.REQUIRED,
                    f"{name} is required {word} {where}",
                )
            )


def _too_large(path: str, cell: TooLargeText) -> Issue:
    return Issue(path, ERROR, Code.TOO_LARGE, f"the cell cannot be read: {cell.reason}")


def _unknown(path: str, name: str, where: str) -> Issue:
    renamed = RENAMED_FIELDS.get(name)
    if renamed:
        hint = f'; did you mean "{renamed}"?'
    elif name in _ALL_CONTENT_FIELDS and where.endswith("signals"):
        hint = f"; it belongs to other signal types, not {where}"
    else:
        hint = ""
    return Issue(
        path,
        WARNING,
        Code.UNKNOWN_FIELD,
        f"{name} is not a field of {where}; Connect ignores it{hint}",
    )
