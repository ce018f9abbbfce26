"""`python manage.py validate_signals FILE [--tier ...] [--app-key KEY] [--report ndjson|text]`

Judges a file alone, never consulting the database (SPEC §2, §5). Exit status: 0 when no
signal is rejected, 1 when some are, 2 when the file cannot be read.
"""

from __future__ import annotations

import json
from argparse import ArgumentParser
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

from signals_app.validation.readers import UnreadableFile
from signals_app.validation.report import FindingBuffer, write_ndjson, write_text
from signals_app.validation.schema import TIERS
from signals_app.validation.validate import Options, validate_file

EXIT_REJECTED = 1
EXIT_UNREADABLE = 2


class Command(BaseCommand):
    help = "Check a file of behavioral signals against Acoustic Connect's rules."
    requires_system_checks: list[str] = []  # judges a file; needs no database or app check

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("file", help="JSON, NDJSON or CSV file of signals, or a .gz of one")
        parser.add_argument(
            "--tier",
            choices=TIERS,
            default="ultimate",
            help="subscription tier of the app key (default: ultimate)",
        )
        parser.add_argument("--app-key", help="fills the appKey of signals that lack one")
        parser.add_argument(
            "--report",
            choices=("ndjson", "text"),
            default="ndjson",
            help="ndjson: one JSON object per finding and a summary line (default); "
            "text: a report for people",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        path = Path(options["file"])
        buffer = FindingBuffer()
        try:
            summary = validate_file(
                path,
                Options(tier=options["tier"], default_app_key=options["app_key"]),
                buffer,  # takes the workers' NDJSON lines as they are
                max_inflated_bytes=settings.SIGNALS_GZIP_MAX_INFLATED_BYTES,
            )
        except (UnreadableFile, OSError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            message = f"{path}: cannot be read: {reason}"
            self.stderr.write(message)
            if options["report"] == "ndjson":
                self.stdout.write(json.dumps({"error": message}))
            buffer.close()
            raise SystemExit(EXIT_UNREADABLE) from None
        try:
            if options["report"] == "ndjson":
                write_ndjson(self.stdout, buffer, summary)  # type: ignore[arg-type]
            else:
                write_text(
                    self.stdout,  # type: ignore[arg-type]
                    buffer,
                    summary,
                    file_name=path.name,
                    tier=options["tier"],
                )
        finally:
            buffer.close()
        if summary.rejected:
            raise SystemExit(EXIT_REJECTED)
