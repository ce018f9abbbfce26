"""The rule engine: judges one signal record against the table in `schema.py` and returns
every issue, never raising for bad data (any JSON value at all gives issues).

Severity follows SPEC §4: an *error* where Connect would discard the whole signal (a
missing or invalid required field, an unknown or unsubscribed type, a broken item of
orderedItems / abandonedItems), a *warning* where the signal goes through but something is
lost (an invalid optional field, an unknown field, a name over 256 characters).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from typing import Any

from signals_app.validation.findings import ERROR, WARNING, Code, Issue, Severity
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
# An identifiable attribute that is present must be valid: it maps the signal to a contact.
_REQUIRED_IDENTITY = {
    key: Field(field.kind, required=True) for key, field in IDENTIFIABLE_ATTRIBUTES.items()
}
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

    app_key = envelope.get("appKey", _MISSING)
    if app_key is _MISSING or app_key is None:
        if not default_app_key:
            issues.append(
                Issue("appKey", ERROR, Code.REQUIRED, "appKey is required (the application key)")
            )
    else:
        _check_scalar(app_key, ENVELOPE_FIELDS["appKey"], "appKey", ERROR, issues)

    check.contact_key_only = _check_identities(
        envelope.get("identifiableAttributes", _MISSING), issues
    )

    for name in ("sessionId", "test"):
        value = envelope.get(name, _MISSING)
        if value is not _MISSING:
            _check_scalar(value, ENVELOPE_FIELDS[name], name, WARNING, issues)

    for key in envelope:
        if key not in ENVELOPE_FIELDS:
            issues.append(_unknown(str(key), str(key), "a signal"))

    content = envelope.get("signalContent", _MISSING)
    if content is _MISSING or content is None:
        issues.append(Issue("signalContent", ERROR, Code.REQUIRED, "signalContent is required"))
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
    present = [key for key in IDENTIFIABLE_ATTRIBUTES if key in attributes]
    for key in attributes:
        if key not in IDENTIFIABLE_ATTRIBUTES:
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
            _check_scalar(value, _REQUIRED_IDENTITY[key], f"{path}.{key}", ERROR, issues)
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
                f"{suggest(signal_type, frozenset(SIGNAL_TYPES))}; "
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

    _check_members(content, spec.fields, "signalContent", ERROR, f"{signal_type} signals", issues)
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


def _check_field(
    value: Any, field: Field, path: str, severity: Severity, issues: list[Issue]
) -> None:
    if field.kind is Kind.STRING_LIST:
        _check_string_list(value, path, severity, issues)
    elif field.kind is Kind.ITEMS:
        _check_items(value, path, issues)
    elif field.kind is Kind.CUSTOM_ATTRIBUTES:
        _check_custom_attributes(value, path, issues)
    else:
        _check_scalar(value, field, path, severity, issues)


def _check_scalar(
    value: Any, field: Field, path: str, severity: Severity, issues: list[Issue]
) -> None:
    problem = SCALAR_CHECKS[field.kind](value, field)
    if problem is not None:
        _add_problem(problem, path, severity, issues)


def _add_problem(problem: Problem, path: str, severity: Severity, issues: list[Issue]) -> None:
    code, explanation = problem
    name = path.rsplit(".", 1)[-1]
    if code is Code.MAX_LENGTH:
        severity = WARNING  # a long name is cut, the signal still goes through (SPEC §4)
    dropped = "" if severity == ERROR or code is Code.MAX_LENGTH else "; Connect drops it"
    issues.append(Issue(path, severity, code, f"{name} {explanation}{dropped}"))


def _check_string_list(value: Any, path: str, severity: Severity, issues: list[Issue]) -> None:
    name = path.rsplit(".", 1)[-1]
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


def _check_items(value: Any, path: str, issues: list[Issue]) -> None:
    """orderedItems / abandonedItems: optional, but an item that lacks or breaks a required
    field loses the whole signal (SPEC §4)."""
    name = path.rsplit(".", 1)[-1]
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
        _check_members(item, ITEM_FIELDS, item_path, ERROR, f"an item of {name}", issues)


def _check_custom_attributes(value: Any, path: str, issues: list[Issue]) -> None:
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
        _check_members(
            entry, CUSTOM_ATTRIBUTE_FIELDS, entry_path, WARNING, "a custom attribute", issues
        )


_REQUIRED_NAMES: dict[int, tuple[str, ...]] = {}


def _required_names(fields: Mapping[str, Field]) -> tuple[str, ...]:
    names = _REQUIRED_NAMES.get(id(fields))
    if names is None:
        names = tuple(name for name, field in fields.items() if field.required)
        _REQUIRED_NAMES[id(fields)] = names
    return names


def _check_members(
    data: dict[str, Any],
    fields: Mapping[str, Field],
    prefix: str,
    required_severity: Severity,
    where: str,
    issues: list[Issue],
) -> None:
    """The members of an object (signalContent, an item, a custom attribute): required
    ones at `required_severity`, optional ones as warnings, unknown ones as warnings.
    Walks the members present, so a sparse record costs little."""
    for key, value in data.items():
        path = f"{prefix}.{key}"
        field = fields.get(key)
        if field is None:
            if key != "signalType" or prefix != "signalContent":
                issues.append(_unknown(path, str(key), where))
            continue
        severity = required_severity if field.required else WARNING
        scalar_check = SCALAR_CHECKS.get(field.kind)
        if scalar_check is not None and value is not None:
            # Most members are scalars: judge them here, without two more calls.
            problem = scalar_check(value, field)
            if problem is not None:
                _add_problem(problem, path, severity, issues)
            continue
        if value is None:
            if field.required:
                issues.append(Issue(path, severity, Code.REQUIRED, f"{key} is null in {where}"))
            else:
                issues.append(Issue(path, WARNING, Code.TYPE, f"{key} is null; Connect drops it"))
            continue
        _check_field(value, field, path, severity, issues)
    for name in _required_names(fields):
        if name not in data:
            issues.append(
                Issue(
                    f"{prefix}.{name}",
                    required_severity,
                    Code.REQUIRED,
                    f"{name} is required {'for' if where.endswith('signals') else 'in'} {where}",
                )
            )


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
