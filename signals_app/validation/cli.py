"""`validate_signals`: check a file of signals and print the report (SPEC §5).

Pure code like the rest of this package: it judges the file alone and never consults the
database, so it runs without Django. `manage.py validate_signals` comes straight here
(see manage.py: starting Django would cost more than checking a small file does); the
Django management command of the same name delegates here too, for `call_command` and
`manage.py help`. Exit status: 0 when no signal is rejected, 1 when some are, 2 when the
file cannot be read.

`--destination attentive` judges Attentive custom events instead (SPEC §6), with the same
report and exit status; `--tier` and `--app-key` are Connect's and are ignored then.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from signals_app.validation.processes import ChildDied
from signals_app.validation.readers import UnreadableFile
from signals_app.validation.report import FindingBuffer, write_ndjson, write_text
from signals_app.validation.schema import TIERS
from signals_app.validation.validate import DEFAULT_MAX_INFLATED, Options, validate_file

HELP = (
    "Check a file of behavioral signals against Acoustic Connect's rules, or (--destination "
    "attentive) a file of custom events against Attentive's."
)
DESTINATIONS = ("connect", "attentive")
EXIT_CLEAN = 0
EXIT_REJECTED = 1
EXIT_UNREADABLE = 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "file", help="JSON, NDJSON or CSV file of signals (or events), or a .gz of one"
    )
    parser.add_argument(
        "--tier",
        choices=TIERS,
        default="ultimate",
        help="subscription tier of the app key (default: ultimate); Connect only, ignored "
        "with --destination attentive",
    )
    parser.add_argument(
        "--app-key",
        help="fills the appKey of signals that lack one; Connect only, ignored with "
        "--destination attentive",
    )
    parser.add_argument(
        "--destination",
        choices=DESTINATIONS,
        default="connect",
        help="connect: Acoustic Connect behavior signals (default); attentive: Attentive "
        "custom events {type, user, properties, externalEventId, occurredAt}, one per record "
        "(CSV columns type, user.email, user.phone, user.externalIdentifiers.clientUserId, "
        "properties or properties.<key>, externalEventId, occurredAt)",
    )
    parser.add_argument(
        "--report",
        choices=("ndjson", "text"),
        default="ndjson",
        help="ndjson: one JSON object per finding and a summary line (default); "
        "text: a report for people",
    )


def check_file(
    options: dict[str, Any],
    *,
    stdout: TextIO,
    stderr: TextIO,
    max_inflated_bytes: int = DEFAULT_MAX_INFLATED,
) -> int:
    """Validate options["file"] and write the report; the exit status."""
    path = Path(options["file"])
    destination = options.get("destination") or "connect"
    if destination == "attentive":
        run = Options(destination="attentive")  # --tier and --app-key are Connect's
    else:
        run = Options(tier=options["tier"], default_app_key=options["app_key"])
    buffer = FindingBuffer()
    try:
        summary = validate_file(
            path,
            run,
            buffer,  # takes the workers' NDJSON lines as they are
            max_inflated_bytes=max_inflated_bytes,
        )
    except (UnreadableFile, OSError, MemoryError, ChildDied) as exc:
        if isinstance(exc, MemoryError):
            reason = "reading it needs more memory than this machine has free"
        elif isinstance(exc, ChildDied):
            reason = f"a process reading part of it stopped ({exc})"
        else:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        message = f"{path}: cannot be read: {reason}"
        stderr.write(message + "\n")
        if options["report"] == "ndjson":
            stdout.write(json.dumps({"error": message}) + "\n")
        buffer.close()
        return EXIT_UNREADABLE
    try:
        if options["report"] == "ndjson":
            write_ndjson(stdout, buffer, summary)
        else:
            write_text(
                stdout,
                buffer,
                summary,
                file_name=path.name,
                tier=options["tier"],
                destination=destination,
            )
    finally:
        buffer.close()
    return EXIT_REJECTED if summary.rejected else EXIT_CLEAN


def main(argv: Sequence[str], *, max_inflated_bytes: int = DEFAULT_MAX_INFLATED) -> int:
    parser = argparse.ArgumentParser(prog="manage.py validate_signals", description=HELP)
    add_arguments(parser)
    options = vars(parser.parse_args(argv))
    return check_file(
        options, stdout=sys.stdout, stderr=sys.stderr, max_inflated_bytes=max_inflated_bytes
    )
