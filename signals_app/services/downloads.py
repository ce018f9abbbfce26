"""What an import offers to download, streamed: the error report (CSV, safe to open in a
spreadsheet) and the valid signals (NDJSON). `iter_valid_records` is also what sending
reads."""

from __future__ import annotations

import csv
from collections.abc import Generator, Iterator

from django.conf import settings

from signals_app.models import ImportFinding, SignalImport
from signals_app.services.records import dumps, one_line
from signals_app.services.rejections import Rejections
from signals_app.services.upload import import_file_path
from signals_app.validation.readers import Record, open_signal_file

# Rows fetched per round trip while streaming from the database.
ROWS_CHUNK = 2000

_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(cell: str) -> str:
    """A cell a spreadsheet shows as text: one starting like a formula gets a leading '."""
    return "'" + cell if cell.startswith(_FORMULA_STARTS) else cell


class _Line:
    """csv.writer's file: hands back the line just written."""

    def write(self, value: str) -> str:
        return value


def error_report_csv(signal_import: SignalImport) -> Iterator[str]:
    """Every finding as CSV (index, line, path, severity, code, message), in file order,
    streamed from the database in chunks."""
    source = signal_import.validation_source
    writer = csv.writer(_Line())
    yield writer.writerow(["index", "line", "path", "severity", "code", "message"])
    rows = (
        ImportFinding.objects.filter(signal_import=source)
        .order_by("signal", "id")
        .values_list("signal", "line", "path", "severity", "code", "message")
        .iterator(chunk_size=ROWS_CHUNK)
    )
    for signal, line, f_path, f_severity, f_code, message in rows:
        yield writer.writerow(
            [
                signal,
                "" if line is None else line,
                spreadsheet_safe(f_path),
                f_severity,
                spreadsheet_safe(f_code),
                spreadsheet_safe(message),
            ]
        )
    if source.findings_not_stored:
        yield writer.writerow(
            [
                "",
                "",
                "",
                "",
                "not_stored",
                f"{source.findings_not_stored} more findings are not listed: the file has more "
                "problems than connectadmin keeps for one import (the preview's counts are "
                "exact)",
            ]
        )


def iter_valid_records(signal_import: SignalImport) -> Generator[Record, None, None]:
    """The records of the valid signals, in file order, as the reader gives them.

    The rejected set is held in memory: a byte per signal of the file.
    """
    source = signal_import.validation_source
    rejected = Rejections.of(source)
    with (
        import_file_path(source) as path,
        open_signal_file(
            path,
            max_inflated_bytes=settings.SIGNALS_GZIP_MAX_INFLATED_BYTES,
            destination=source.destination,
        ) as signal_file,
    ):
        for record in signal_file:
            if record.index not in rejected:
                yield record


def iter_valid_signals(signal_import: SignalImport) -> Iterator[tuple[int, bytes]]:
    """(index, JSON text) of each valid signal, in file order, as found in the file."""
    for record in iter_valid_records(signal_import):
        yield record.index, one_line(record.raw) if record.raw is not None else dumps(record.value)


def valid_signals_ndjson(signal_import: SignalImport) -> Iterator[bytes]:
    """Only the valid signals, one per line, in file order."""
    for _index, text in iter_valid_signals(signal_import):
        yield text + b"\n"


def batch_sample(
    signal_import: SignalImport, first: int, last: int, limit: int = 3
) -> list[tuple[int, int | None, str]]:
    """(signal number, line, JSON text) of the first `limit` valid signals numbered
    `first`..`last`: what a person looks for in Connect to tell whether a batch arrived.
    Reads the file from its start up to them."""
    sample: list[tuple[int, int | None, str]] = []
    for record in iter_valid_records(signal_import):
        if record.index > last or len(sample) >= limit:
            break
        if record.index >= first:
            text = one_line(record.raw) if record.raw is not None else dumps(record.value)
            sample.append((record.index, record.line, text.decode("utf-8", "replace")))
    return sample
