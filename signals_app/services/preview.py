"""The preview's queries: the problem table (problems by field and code, with examples)
and the pages of rejected signals, with the result objects the views render.

Both read only the database (findings and rejected signals stored while validating), never
the file; the rejected list pages by keyset on the signal index, never by OFFSET.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from django.db.models import Count, F, Window
from django.db.models.functions import RowNumber

from signals_app.models import ImportFinding, RejectedSignal, SignalImport
from signals_app.services.records import NOT_PARSED, loads
from signals_app.services.rejections import Rejections
from signals_app.validation.findings import ERROR

PROBLEM_EXAMPLES = 3
MAX_PROBLEM_ROWS = 200


@dataclass(frozen=True, slots=True)
class ProblemExample:
    signal: int
    line: int | None
    message: str


@dataclass(frozen=True, slots=True)
class ProblemRow:
    """One line of the preview's problem table: a field (array positions as []) and code."""

    path: str
    code: str
    severity: str
    count: int  # findings
    signals: int  # distinct signals with this problem
    share: float  # signals / all signals of the import, 0..1
    examples: list[ProblemExample]


@dataclass(frozen=True, slots=True)
class EntryFinding:
    path: str
    severity: str
    code: str
    message: str


@dataclass(frozen=True, slots=True)
class RejectedEntry:
    signal: int
    line: int | None
    rejected: bool
    record: Any  # the signal as in the file, keys in file order; None when `raw` holds it
    raw: str  # the record's text when it is not JSON
    findings: list[EntryFinding]

    @property
    def failing_paths(self) -> set[str]:
        return {f.path for f in self.findings}

    @property
    def record_json(self) -> str:
        """The record pretty-printed for display."""
        if self.record is None:
            return self.raw
        return json.dumps(self.record, indent=2, ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class RejectedPage:
    entries: list[RejectedEntry]
    next_after: int | None  # pass as `after` for the next page; None on the last page


def import_problem_table(signal_import: SignalImport) -> list[ProblemRow]:
    """Problems by field pattern and code, errors first then by count, with the first
    examples of each: two queries, both walking one index without sorting."""
    source = signal_import.validation_source
    counted = source.problem_counts or []
    if counted and all("signals" in row for row in counted):
        # Exact, from the validator: the stored findings may be fewer (services.reading).
        groups = [
            {
                "path_pattern": row["path"],
                "code": row["code"],
                "severity": row["severity"],
                "count": row["count"],
                "signals": row["signals"],
            }
            for row in counted
        ]
    else:  # an import validated before the counts of signals were kept
        groups = list(
            ImportFinding.objects.filter(signal_import=source)
            .values("path_pattern", "code", "severity")
            .annotate(count=Count("id"), signals=Count("signal", distinct=True))
            .order_by()
        )
    # Impact: what loses signals first, then how many signals, then how many findings.
    groups.sort(
        key=lambda g: (
            g["severity"] != ERROR,
            -g["signals"],
            -g["count"],
            g["path_pattern"],
            g["code"],
        )
    )
    total = max(source.signals, 1)
    shown = groups[:MAX_PROBLEM_ROWS]
    examples = _problem_examples(
        source, {(g["path_pattern"], g["code"], g["severity"]) for g in shown}
    )
    return [
        ProblemRow(
            path=group["path_pattern"],
            code=group["code"],
            severity=group["severity"],
            count=group["count"],
            signals=group["signals"],
            share=group["signals"] / total,
            examples=examples.get((group["path_pattern"], group["code"], group["severity"]), []),
        )
        for group in shown
    ]


def _problem_examples(
    source: SignalImport, wanted: set[tuple[str, str, str]]
) -> dict[tuple[str, str, str], list[ProblemExample]]:
    """The first PROBLEM_EXAMPLES findings (by signal) of every problem group, in one
    query: ROW_NUMBER() over each group, read in the order of the index on
    (import, path_pattern, code, severity, signal, id), so nothing is sorted."""
    if not wanted:
        return {}
    numbered = (
        ImportFinding.objects.filter(signal_import=source)
        .annotate(
            nth=Window(
                RowNumber(),
                partition_by=[F("path_pattern"), F("code"), F("severity")],
                order_by=[F("signal").asc(), F("id").asc()],
            )
        )
        .filter(nth__lte=PROBLEM_EXAMPLES)
        .order_by("path_pattern", "code", "severity", "signal", "id")
        .values_list("path_pattern", "code", "severity", "signal", "line", "message")
    )
    examples: dict[tuple[str, str, str], list[ProblemExample]] = {}
    for path, code, severity, signal, line, message in numbered:
        key = (path, code, severity)
        if key in wanted:
            examples.setdefault(key, []).append(ProblemExample(signal, line, message))
    return examples


def import_rejected_page(
    signal_import: SignalImport,
    *,
    after: int | None = None,
    limit: int = 50,
    path: str | None = None,
    code: str | None = None,
    severity: str | None = None,
    rejected_only: bool = True,
) -> RejectedPage:
    """One page of rejected signals in file order, after signal index `after`.

    The filters keep signals with at least one finding at `path` (a path pattern, as in
    the problem table), of `code` and of `severity`. With `rejected_only=False` signals
    that only have warnings are listed too (their record is not stored: `record` is None
    and `raw` empty). Keyset pagination: `next_after` is the last signal of this page.
    """
    source = signal_import.validation_source
    limit = max(1, min(limit, 500))
    filtered = path is not None or code is not None or severity is not None
    records: dict[int, RejectedSignal] = {}
    if not filtered and rejected_only:
        rejected_rows = RejectedSignal.objects.filter(signal_import=source)
        if after is not None:
            rejected_rows = rejected_rows.filter(signal__gt=after)
        page_rows = list(rejected_rows.order_by("signal")[: limit + 1])
        signals = [row.signal for row in page_rows]
        records = {row.signal: row for row in page_rows[:limit]}
    else:
        matching = ImportFinding.objects.filter(signal_import=source)
        if path is not None:
            matching = matching.filter(path_pattern=path)
        if code is not None:
            matching = matching.filter(code=code)
        if severity is not None:
            matching = matching.filter(severity=severity)
        if after is not None:
            matching = matching.filter(signal__gt=after)
        if rejected_only and severity != ERROR:
            # Rejected means "has an error finding" (unregistered app keys included).
            matching = matching.filter(
                signal__in=ImportFinding.objects.filter(
                    signal_import=source, severity=ERROR
                ).values("signal")
            )
        signals = list(
            matching.order_by("signal").values_list("signal", flat=True).distinct()[: limit + 1]
        )
    has_more = len(signals) > limit
    signals = signals[:limit]
    if not signals:
        return RejectedPage(entries=[], next_after=None)
    if not records:
        records = {
            row.signal: row
            for row in RejectedSignal.objects.filter(signal_import=source, signal__in=signals)
        }
    by_signal: dict[int, list[EntryFinding]] = {signal: [] for signal in signals}
    lines: dict[int, int | None] = {}
    for signal, line, f_path, f_severity, f_code, message in (
        ImportFinding.objects.filter(signal_import=source, signal__in=signals)
        .order_by("signal", "id")
        .values_list("signal", "line", "path", "severity", "code", "message")
    ):
        by_signal[signal].append(EntryFinding(f_path, f_severity, f_code, message))
        lines.setdefault(signal, line)
    rejected = Rejections.of(source)
    entries = []
    for signal in signals:
        row = records.get(signal)
        record, raw = _record_of(row)
        entries.append(
            RejectedEntry(
                signal=signal,
                line=row.line if row is not None else lines.get(signal),
                rejected=signal in rejected,
                record=record,
                raw=raw,
                findings=by_signal[signal],
            )
        )
    return RejectedPage(entries=entries, next_after=signals[-1] if has_more else None)


def _record_of(row: RejectedSignal | None) -> tuple[Any, str]:
    """(the record with its keys in the file's order, or None; its text when it is not
    JSON) from the stored row: `raw` holds the text as in the file. Rows stored before
    that have `record` (jsonb, which puts shorter keys first) and `raw` for non-JSON only.
    No row: the record is not stored (a valid signal, or past the storage policy)."""
    if row is None:
        return None, ""
    if not row.raw:
        return row.record, ""
    value = loads(row.raw)
    if value is NOT_PARSED:
        return None, row.raw
    return value, ""
