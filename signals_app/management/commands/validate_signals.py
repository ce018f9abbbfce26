"""`python manage.py validate_signals FILE [--tier ...] [--app-key KEY]
[--destination connect|attentive] [--report ndjson|text]`

Judges a file alone, never consulting the database (SPEC §2, §5); the work is in
signals_app/validation/cli.py, which manage.py also runs without starting Django. Exit
status: 0 when no signal is rejected, 1 when some are, 2 when the file cannot be read.
`--destination attentive` judges Attentive custom events (SPEC §6) with the same report;
`--tier` and `--app-key` are then ignored.
"""

from __future__ import annotations

from argparse import SUPPRESS, ArgumentParser
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

from signals_app.validation import cli


class Command(BaseCommand):
    help = cli.HELP
    requires_system_checks: list[str] = []  # judges a file; needs no database or app check

    def add_arguments(self, parser: ArgumentParser) -> None:
        cli.add_arguments(parser)
        # Django offers --skip-checks only to commands that run checks. Taken (and
        # meaningless) here so that a habit of adding it does not end in argparse's exit
        # 2, which the contract reserves for an unreadable file.
        parser.add_argument("--skip-checks", action="store_true", help=SUPPRESS)

    def handle(self, *args: Any, **options: Any) -> None:
        status = cli.check_file(
            options,
            stdout=self.stdout,  # type: ignore[arg-type]
            stderr=self.stderr,  # type: ignore[arg-type]
            max_inflated_bytes=settings.SIGNALS_GZIP_MAX_INFLATED_BYTES,
        )
        if status:
            raise SystemExit(status)
