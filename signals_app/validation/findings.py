"""What the validator reports: one `Issue` per problem in a signal, located in the file as a
`Finding`, and a `Summary` of a whole file.

Severities mirror what Connect does with the signal (SPEC §4): an *error* means Connect
would discard the whole signal, a *warning* means the signal goes through but something
is lost. For Attentive custom events (SPEC §6, attentive.py) they mirror what Attentive does
with the event, in the same terms: the report contract is one for both destinations.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum
from functools import lru_cache
from typing import Any, Literal, NamedTuple

Severity = Literal["error", "warning"]
ERROR: Severity = "error"
WARNING: Severity = "warning"


class Code(StrEnum):
    """Finding codes. The first eight are SPEC §5's; the others are documented here. The
    same codes serve Acoustic Connect signals and Attentive custom events (SPEC §6): the
    report contract is one."""

    REQUIRED = "required"  # a required field is missing, null, empty or blank
    TYPE = "type"  # the JSON type is wrong (a string where a number belongs, ...)
    ENUM = "enum"  # not one of the allowed values (enumerations, ISO 4217, signal types)
    FORMAT = "format"  # right type, wrong shape (e-mail, E.164, date-time, ...)
    MAX_LENGTH = "max_length"  # longer than the vendor allows
    NOT_IN_SUBSCRIPTION = "not_in_subscription"  # the key's tier does not take this type
    UNKNOWN_FIELD = "unknown_field"  # Connect ignores the field
    AMBIGUOUS = "ambiguous"  # more than one identifiable attribute
    SYNTAX = "syntax"  # documented addition: the record itself is not valid JSON
    # Documented addition: the record passes a reading limit (SPEC §5: nested deeper than
    # 1,024 levels, a number of more than 4,300 digits), so it is not read further.
    TOO_LARGE = "too_large"
    # Documented addition: an object holds the same key twice (SPEC §5). The file's bytes
    # are what is sent and what Connect makes of them is undefined; the validator judged
    # the last value only.
    DUPLICATE_KEY = "duplicate_key"
    # Documented addition (SPEC §6, two destinations): the record belongs to the other
    # destination. An Acoustic Connect signal (signalContent or identifiableAttributes)
    # judged as an Attentive custom event, or an Attentive custom event (type and user, no
    # signalContent) judged as a Connect signal: one error at the record ("") instead of a
    # pile of unknown and missing fields.
    WRONG_DESTINATION = "wrong_destination"
    # Documented additions for Attentive custom events (SPEC §6), all warnings: the event
    # is taken but something in it will not work.
    # A property key beyond the first 200 keys of the event's type in the file (Attentive
    # stores it, but only 200 keys per event type can be used in segments and journeys);
    # reported at `properties`.
    KEY_LIMIT = "key_limit"
    # occurredAt more than 12 hours before the check: the event triggers no journey.
    TOO_OLD = "too_old"
    # A property holding a list or an object: usable in e-mail journeys only, not in SMS.
    EMAIL_ONLY = "email_only"
    # An externalEventId that a valid event before it in the file has already: Attentive
    # takes the two for one event (the id is "a unique identifier representing this
    # specific event"), so one of them may be dropped as a resend. Reported at the later.
    DUPLICATE_EVENT_ID = "duplicate_event_id"
    # (A URL value over 1,024 characters, which Attentive does not shorten, is reported
    # as `max_length`; a forbidden character in a type or property key as `format`.)


class TooLargeText(str):
    """A CSV cell meant as JSON whose JSON passes a reading limit (TOO_LARGE): kept as its
    text, with the reason, for the engine to report at the cell's field."""

    reason: str

    def __new__(cls, text: str, reason: str) -> TooLargeText:
        cell = super().__new__(cls, text)
        cell.reason = reason
        return cell


class RowWithDuplicates(dict[str, Any]):
    """A CSV row's envelope in which a field is given twice (a column twice in the header,
    both cells filled, or a key twice in a cell of JSON): the engine reports `duplicates`,
    issues made by the reader, which alone saw the row's cells."""

    duplicates: list[Issue]


# Issue and Finding are named tuples: as immutable as a frozen dataclass, and half as
# dear to make, which counts when a file holds many bad signals.
class Issue(NamedTuple):
    """One problem in one signal. `path` is relative to the envelope (SPEC §5)."""

    path: str
    severity: Severity
    code: Code
    message: str


class Finding(NamedTuple):
    """An issue located in a file: `signal` counts from 0, `line` from 1 (NDJSON, CSV)."""

    signal: int
    line: int | None
    path: str
    severity: Severity
    code: str
    message: str

    @classmethod
    def at(cls, signal: int, line: int | None, issue: Issue) -> Finding:
        return cls(signal, line, issue.path, issue.severity, str(issue.code), issue.message)

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"signal": self.signal}
        if self.line is not None:
            data["line"] = self.line
        data.update(path=self.path, severity=self.severity, code=self.code, message=self.message)
        return data


_INDEX = re.compile(r"\[\d+\]")


@lru_cache(maxsize=4096)  # a file's findings repeat a few hundred paths at most
def path_pattern(path: str) -> str:
    """`signalContent.orderedItems[3].unitPrice` -> `signalContent.orderedItems[].unitPrice`,
    so problems are counted per field, whatever the position in an array."""
    return _INDEX.sub("[]", path) if "[" in path else path


@dataclass
class Summary:
    """Totals for one file, plus counts per field and code for the report."""

    signals: int = 0
    valid: int = 0
    rejected: int = 0
    errors: int = 0
    warnings: int = 0
    # Signals whose only identifiable attribute is a contactKey: Connect discards them
    # when no such contact exists, which the preview says once (SPEC §2).
    contact_key_only: int = 0
    # Signals naming a non-blank appKey outside Options.app_keys, when given.
    other_app_keys: int = 0
    by_field: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    # The signals with each of them (a signal with the same problem twice counts once).
    signals_by_field: Counter[tuple[str, str, str]] = field(default_factory=Counter)

    def add(self, issues: list[Issue], *, contact_key_only: bool = False) -> None:
        """Count one signal and its issues."""
        self.signals += 1
        rejected = False
        by_field = self.by_field
        for path, severity, code, _ in issues:
            if severity == ERROR:
                self.errors += 1
                rejected = True
            else:
                self.warnings += 1
            by_field[(path_pattern(path), str(code), severity)] += 1
        if issues:
            self.signals_by_field.update(
                {(path_pattern(path), str(code), severity) for path, severity, code, _ in issues}
            )
        if rejected:
            self.rejected += 1
        else:
            self.valid += 1
        if contact_key_only:
            self.contact_key_only += 1

    def merge(self, other: Summary) -> None:
        self.signals += other.signals
        self.valid += other.valid
        self.rejected += other.rejected
        self.errors += other.errors
        self.warnings += other.warnings
        self.contact_key_only += other.contact_key_only
        self.other_app_keys += other.other_app_keys
        self.by_field.update(other.by_field)
        self.signals_by_field.update(other.signals_by_field)

    def as_dict(self) -> dict[str, int]:
        """The summary line of the report contract (SPEC §5)."""
        return {
            "signals": self.signals,
            "valid": self.valid,
            "rejected": self.rejected,
            "errors": self.errors,
            "warnings": self.warnings,
        }
