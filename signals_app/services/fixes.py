"""Unambiguous fixes: found per record (`fixes_for`, used while validating), offered by the
preview (`import_fix_suggestions`), and applied as a new import: the request records the
choice (`import_apply_fixes`), a task writes the corrected copy of the file
(`import_write_fixed_file`) and queues its validation, as for any upload.
"""

from __future__ import annotations

import difflib
import importlib
import json
import logging
import os
import re
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction

from connectadmin import files
from connectadmin.models import AppKey
from signals_app.models import ImportStatus, SignalImport, audit
from signals_app.services.deliveries import WRITE_FIXED_FILE, GaveUp, counted_start
from signals_app.services.errors import ImportRefused
from signals_app.services.records import (
    NOT_PARSED,
    dumps,
    one_line,
    record_value,
    validation_tier,
)
from signals_app.services.upload import (
    import_file_exists,
    import_file_name,
    import_file_path,
    queue_validation,
    sanitize_file_name,
)
from signals_app.validation.engine import check_signal, unwrap
from signals_app.validation.fastpath import FastPath
from signals_app.validation.findings import Code, Finding, path_pattern
from signals_app.validation.readers import open_signal_file
from signals_app.validation.schema import (
    CUSTOM_ATTRIBUTE_FIELDS,
    ENVELOPE_FIELDS,
    ITEM_FIELDS,
    SIGNAL_TYPES,
    Field,
    Kind,
)
from signals_app.validation.values import CURRENCY_CODES

logger = logging.getLogger(__name__)

PROGRESS_EVERY_SECONDS = 0.5


@dataclass(frozen=True, slots=True)
class FixSuggestion:
    """An unambiguous fix the preview offers; `id` is what import_apply_fixes takes."""

    id: str
    kind: str  # enum_spelling | currency_case | item_quantity | number_string
    path: str  # path pattern, array positions as []
    before: str  # an example of the value as found ("positve", "usd", "quantity", "2")
    after: str  # ... and as fixed
    signals: int  # signals it fixes
    description: str


FIXABLE_CODES = frozenset({str(Code.ENUM), str(Code.TYPE), str(Code.UNKNOWN_FIELD)})
_SEGMENT = re.compile(r"\[(\d+)\]|([^.\[\]]+)")
_JSON_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?")
_SIGNAL_TYPE_FIELD = Field(Kind.ENUM, required=True, choices=tuple(SIGNAL_TYPES))


@dataclass(frozen=True, slots=True)
class _Fix:
    """One fix at one concrete path of one record."""

    id: str
    kind: str
    pattern: str
    segments: list[str | int] = field(hash=False)
    before: str
    after: Any  # the new value; for item_quantity the new key

    def suggestion(self) -> FixSuggestion:
        shown_after = self.after if isinstance(self.after, str) else json.dumps(self.after)
        return FixSuggestion(
            id=self.id,
            kind=self.kind,
            path=self.pattern,
            before=self.before,
            after=shown_after,
            signals=1,
            description=_describe_fix(self.kind, self.pattern, self.before, shown_after),
        )

    def apply(self, envelope: dict[str, Any]) -> None:
        parent = _parent(envelope, self.segments)
        key = self.segments[-1]
        if parent is None:
            return
        if self.kind == "item_quantity":
            if isinstance(parent, dict) and key in parent and self.after not in parent:
                parent[self.after] = parent.pop(key)
        elif isinstance(parent, list):
            if isinstance(key, int):
                parent[key] = self.after
        elif isinstance(parent, dict):
            parent[key] = self.after


def _describe_fix(kind: str, pattern: str, before: str, after: str) -> str:
    if kind == "enum_spelling":
        return f'{pattern}: write "{after}" instead of "{before}"'
    if kind == "currency_case":
        return f'{pattern}: write currency codes in capitals ("{before}" becomes "{after}")'
    if kind == "item_quantity":
        return f"{pattern}: rename quantity to itemQuantity"
    return f'{pattern}: write numbers as numbers, not text ("{before}" becomes {after})'


def _segments(path: str) -> list[str | int]:
    return [int(index) if index else name for index, name in _SEGMENT.findall(path)]


def _parent(envelope: Any, segments: list[str | int]) -> Any:
    node = envelope
    for segment in segments[:-1]:
        if isinstance(segment, int):
            if not isinstance(node, list) or segment >= len(node):
                return None
            node = node[segment]
        else:
            if not isinstance(node, dict) or segment not in node:
                return None
            node = node[segment]
    return node


def _value_at(envelope: Any, segments: list[str | int]) -> Any:
    parent = _parent(envelope, segments)
    key = segments[-1]
    if isinstance(parent, dict) and isinstance(key, str):
        return parent.get(key, NOT_PARSED)
    if isinstance(parent, list) and isinstance(key, int) and key < len(parent):
        return parent[key]
    return NOT_PARSED


def _field_at(envelope: dict[str, Any], segments: list[str | int]) -> Field | None:
    """The schema field a path points at, given the record's own signalType."""
    if len(segments) == 1 and isinstance(segments[0], str):
        return ENVELOPE_FIELDS.get(segments[0])
    if len(segments) < 2 or segments[0] != "signalContent":
        return None
    content = envelope.get("signalContent")
    if not isinstance(content, dict):
        return None
    if segments == ["signalContent", "signalType"]:
        return _SIGNAL_TYPE_FIELD
    signal_type = content.get("signalType")
    spec = SIGNAL_TYPES.get(signal_type) if isinstance(signal_type, str) else None
    name = segments[1]
    if spec is None or not isinstance(name, str):
        return None
    outer = spec.fields.get(name)
    if len(segments) == 2:
        return outer
    if len(segments) == 4 and outer is not None and isinstance(segments[2], int):
        inner = segments[3]
        if not isinstance(inner, str):
            return None
        if outer.kind is Kind.ITEMS:
            return ITEM_FIELDS.get(inner)
        if outer.kind is Kind.CUSTOM_ATTRIBUTES:
            return CUSTOM_ATTRIBUTE_FIELDS.get(inner)
    return None


def _number_from_text(text: str, *, integer: bool) -> int | float | None:
    """ "2" -> 2, "9.95" -> 9.95: only text that is exactly a JSON number."""
    match = _JSON_NUMBER.fullmatch(text)
    if match is None:
        return None
    if not match.group(1) and not match.group(2):
        return int(text)
    number = float(text)
    if number != number or number in (float("inf"), float("-inf")):
        return None
    if integer:
        return int(number) if number.is_integer() else None
    return number


def _one_close_choice(value: str, choices: tuple[str, ...]) -> str | None:
    if len(value) <= _CACHED_VALUE_MAX:  # a file's wrong values repeat: difflib is slow
        return _cached_close_choice(value, choices)
    return _close_choice(value, choices)


_CACHED_VALUE_MAX = 256


@lru_cache(maxsize=2048)
def _cached_close_choice(value: str, choices: tuple[str, ...]) -> str | None:
    return _close_choice(value, choices)


def _close_choice(value: str, choices: tuple[str, ...]) -> str | None:
    folded = {choice.lower(): choice for choice in choices}
    close = difflib.get_close_matches(value.strip().lower(), list(folded), n=2, cutoff=0.75)
    # Two candidates (or none) is a guess, not a fix.
    return folded[close[0]] if len(close) == 1 else None


def fixes_for(record: Any, findings: Iterable[Finding]) -> list[_Fix]:
    """The unambiguous fixes for one record's findings."""
    envelope, _ = unwrap(record)
    if not isinstance(envelope, dict):
        return []
    fixes: list[_Fix] = []
    for finding in findings:
        if finding.code not in FIXABLE_CODES:
            continue
        segments = _segments(finding.path)
        if not segments:
            continue
        pattern = path_pattern(finding.path)
        if finding.code == Code.UNKNOWN_FIELD:
            fix = _item_quantity_fix(envelope, segments, pattern)
        else:
            fix = _value_fix(envelope, segments, pattern, finding.code)
        if fix is not None:
            fixes.append(fix)
    return fixes


def _item_quantity_fix(
    envelope: dict[str, Any], segments: list[str | int], pattern: str
) -> _Fix | None:
    if len(segments) != 4 or segments[3] != "quantity" or not isinstance(segments[2], int):
        return None
    outer = _field_at(envelope, segments[:2])
    item = _parent(envelope, segments)
    if outer is None or outer.kind is not Kind.ITEMS or not isinstance(item, dict):
        return None
    if "itemQuantity" in item:
        return None  # both present: which one is right is not ours to decide
    items_pattern = pattern.rsplit(".", 1)[0]
    return _Fix(
        f"item_quantity|{items_pattern}",
        "item_quantity",
        items_pattern,
        segments,
        "quantity",
        "itemQuantity",
    )


def _value_fix(
    envelope: dict[str, Any], segments: list[str | int], pattern: str, code: str
) -> _Fix | None:
    spec = _field_at(envelope, segments)
    value = _value_at(envelope, segments)
    if spec is None or not isinstance(value, str):
        return None
    if code == Code.ENUM and spec.kind is Kind.CURRENCY:
        upper = value.upper()
        if upper != value and upper in CURRENCY_CODES:
            return _Fix(
                f"currency_case|{pattern}", "currency_case", pattern, segments, value, upper
            )
    elif code == Code.ENUM and spec.kind is Kind.ENUM:
        choice = _one_close_choice(value, spec.choices)
        if choice is not None:
            return _Fix(
                f"enum_spelling|{pattern}|{value}",
                "enum_spelling",
                pattern,
                segments,
                value,
                choice,
            )
    elif code == Code.TYPE and spec.kind in (Kind.NUMBER, Kind.INTEGER):
        number = _number_from_text(value, integer=spec.kind is Kind.INTEGER)
        if number is not None:
            return _Fix(
                f"number_string|{pattern}", "number_string", pattern, segments, value, number
            )
    return None


def import_fix_suggestions(signal_import: SignalImport) -> list[FixSuggestion]:
    """The fixes the preview offers, most signals fixed first."""
    source = signal_import.validation_source
    return [FixSuggestion(**data) for data in source.fix_suggestions or []]


def import_apply_fixes(*, signal_import: SignalImport, user: Any, fixes: list[str]) -> SignalImport:
    """Record the chosen fixes as a new import and queue the task that writes its file (a
    corrected copy, see import_write_fixed_file) and then has it validated again.

    The request only writes rows: the file of a large import takes a while to rewrite.
    Until it is written the new import is UPLOADED without a file (import_preparing)."""
    source = signal_import.validation_source
    if source.status != ImportStatus.VALIDATED:
        raise ImportRefused("Fixes can be applied once the file has been checked.")
    offered = {fix.id for fix in import_fix_suggestions(source)}
    chosen = sorted(set(fixes))
    if not chosen:
        raise ImportRefused("Choose at least one fix to apply.")
    if not set(chosen) <= offered:
        raise ImportRefused("One of the chosen fixes is not offered for this file any more.")

    with transaction.atomic():
        fixed = SignalImport.objects.create(
            created_by=user,
            app_key=source.app_key,
            mode=signal_import.mode,
            original_name=_fixed_name(source.original_name),
            stored_name=uuid.uuid4().hex,
            # Until the corrected file is written: the bytes to read (writing progress).
            size_bytes=source.size_bytes,
            status=ImportStatus.UPLOADED,
        )
        audit(
            action="import.fixes_applied",
            actor=user,
            signal_import=fixed,
            source=str(source.public_id),
            source_name=source.original_name,
            fixes=chosen,
        )
        # Looked up at run time, as in upload.queue_validation. On commit: the worker must
        # find the row when it starts.
        tasks = importlib.import_module("signals_app.tasks")
        tasks.write_fixed_file.delay_on_commit(fixed.pk, source.pk, chosen)
    return fixed


def import_preparing(signal_import: SignalImport) -> bool:
    """Whether the import is a corrected copy whose file is still being written: its file
    only appears, whole, once written."""
    return signal_import.status == ImportStatus.UPLOADED and not import_file_exists(signal_import)


def import_write_fixed_file(*, import_id: int, source_id: int, fixes: list[str]) -> None:
    """The fix task's body: write the corrected file of an import made by import_apply_fixes
    (NDJSON, every signal of the source in order, fixed or not), then queue its validation.

    Re-runnable: the file is written under a temporary name and handed to the imports
    storage whole (connectadmin.files.put_whole), so a run cut short leaves no file under
    the import's name and the next run writes it again from the start; a run that finds
    the file written only queues the validation.
    """
    fixed = SignalImport.objects.select_related("app_key").get(pk=import_id)
    if fixed.status != ImportStatus.UPLOADED:
        logger.info("import %s: corrected file not written (status %s)", import_id, fixed.status)
        return
    try:
        with counted_start(job=WRITE_FIXED_FILE, import_id=import_id):
            _write_and_queue(fixed, source_id, fixes)
    except GaveUp as exc:
        SignalImport.objects.filter(pk=import_id).update(
            status=ImportStatus.FAILED,
            error_message=f"Writing the corrected file stopped {exc.starts} times before it "
            "ended (its worker was killed), so it is not tried again; apply the fixes again "
            "or ask an administrator.",
        )
        audit(action="import.fixes_abandoned", signal_import=fixed, starts=exc.starts)


def _write_and_queue(fixed: SignalImport, source_id: int, fixes: list[str]) -> None:
    import_id = fixed.pk
    storage, name = files.imports(), import_file_name(fixed)
    if not storage.exists(name):
        partial = files.partial_path(storage, name)
        try:
            source = SignalImport.objects.get(pk=source_id)
            _write_fixed_file(source, partial, set(fixes), fixed.connect_app_key, import_id)
            files.put_whole(storage, name, partial)
        except BaseException as exc:
            partial.unlink(missing_ok=True)
            # A failure, not the worker stopping (then the task, redelivered, writes the
            # file again): say so on the import.
            if isinstance(exc, Exception):
                SignalImport.objects.filter(pk=import_id).update(
                    status=ImportStatus.FAILED,
                    error_message=f"Writing the corrected file stopped ({type(exc).__name__}); "
                    "apply the fixes again or ask an administrator.",
                )
            raise
    SignalImport.objects.filter(pk=import_id).update(
        size_bytes=storage.size(name), bytes_read=0, signals=0
    )
    queue_validation(fixed)


def _write_fixed_file(
    source: SignalImport, destination: Path, chosen: set[str], app_key: AppKey, import_id: int
) -> None:
    tier = validation_tier(app_key.tier)
    fast = FastPath(tier=tier, default_app_key=app_key.key)
    last = time.monotonic()
    with (
        import_file_path(source) as path,
        open_signal_file(
            path, max_inflated_bytes=settings.SIGNALS_GZIP_MAX_INFLATED_BYTES
        ) as signal_file,
        destination.open("wb") as out,  # "wb": what a run cut short left is written anew
    ):
        for record in signal_file:
            if record.index % 256 == 0 and time.monotonic() - last >= PROGRESS_EVERY_SECONDS:
                last = time.monotonic()
                SignalImport.objects.filter(pk=import_id).update(
                    bytes_read=signal_file.position(), signals=record.index
                )
            # Clean signals (the fast path says so) are copied as they are.
            if record.raw is not None and fast.check_json(record.raw) is not None:
                out.write(one_line(record.raw) + b"\n")
                continue
            value = record_value(record)
            if value is NOT_PARSED:  # kept, still broken: indexes hold
                out.write(one_line(record.raw or b"") + b"\n")
                continue
            if record.raw is None and fast.check_value(value) is not None:
                out.write(dumps(value) + b"\n")
                continue
            check = check_signal(value, tier=tier, default_app_key=app_key.key)
            findings = [Finding.at(record.index, record.line, issue) for issue in check.issues]
            envelope, _ = unwrap(value)
            for fix in fixes_for(value, findings):
                if fix.id in chosen:
                    fix.apply(envelope)
            out.write(dumps(value) + b"\n")
        out.flush()
        os.fsync(out.fileno())  # whole on disk before it becomes the import's file


_DATA_SUFFIXES = (".gz", ".json", ".ndjson", ".jsonl", ".csv", ".txt")


def _fixed_name(original: str) -> str:
    stem = original
    while stem.lower().endswith(_DATA_SUFFIXES):
        stem = stem.rsplit(".", 1)[0]
    stem = stem.removesuffix(".fixed")
    return sanitize_file_name(f"{stem[:200] or 'import'}.fixed.ndjson")
