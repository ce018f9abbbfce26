#!/usr/bin/env python
"""Django's command-line utility for administrative tasks."""

import os
import sys

# Django's own options: with any of them, validate_signals goes through Django too (the
# short way's parser knows none of them, and its exit 2 would say the file is unreadable).
_DJANGO_OPTIONS = (
    "--settings",
    "--pythonpath",
    "--traceback",
    "--verbosity",
    "-v",
    "--no-color",
    "--force-color",
    "--skip-checks",
)


def main() -> None:
    if sys.argv[1:2] == ["validate_signals"] and not any(
        arg.startswith(_DJANGO_OPTIONS) for arg in sys.argv[2:]
    ):
        # The validator judges a file alone and never consults the database (SPEC §2), so
        # it runs without starting Django, which would cost more than checking a small
        # file does. The Django command of the same name gives the same results.
        from connectadmin.env import SettingError, gzip_max_inflated_bytes
        from signals_app.validation import cli

        try:
            cap = gzip_max_inflated_bytes()
        except SettingError as exc:
            sys.exit(f"connectadmin: {exc}")
        status = cli.main(sys.argv[2:], max_inflated_bytes=cap)
        sys.stdout.flush()
        sys.stderr.flush()
        # The report is out and the temporary files are gone: leave without tearing the
        # interpreter down (as mypy's fast exit does), a few hundredths of a second.
        os._exit(status)

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "connectadmin.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
