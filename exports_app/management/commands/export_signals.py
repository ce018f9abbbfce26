"""`python manage.py export_signals --account NAME --types addToCart,order --from ISO --to ISO
[--job-name N] [--wait]`: the export form for ops and scripts, through the same form (its
checks and messages) and services.

The range is `--from`/`--to` (ISO 8601; without an offset, in `--timezone`, UTC by default)
or a `--window` (yesterday, last_7_days, last_month, month_to_date). The job is submitted
to Connect and printed; the workers watch it and fetch its file. With --wait the command
follows the job until the file is in the archive and prints its local path, rows and
SHA-256 (the workers must be running, as for `import_signals --wait`).

Exit status: 0 when Connect took the export (with --wait: its file fetched), 1 when it did
not end so (a daily limit or Connect refused it, the job failed or expired, --wait ran out
of time), 2 for bad input (no such account or user, a bad type, date, address or
placement, a name already used), each named with the option at fault.
"""

from __future__ import annotations

import argparse
import time
from argparse import ArgumentParser
from datetime import datetime
from typing import Any, NoReturn
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.contrib.auth.models import User
from django.core.management.base import BaseCommand, CommandError
from django.db.models import Q
from django.http import QueryDict

from connectadmin import files
from connectadmin.models import ConnectAccount
from exports_app import rules
from exports_app.forms import ExportForm
from exports_app.models import ExportJob, JobStatus
from exports_app.services import jobs

EXIT_INCOMPLETE = 1
EXIT_BAD_INPUT = 2
_FINAL = (
    JobStatus.FETCHED, JobStatus.FAILED, JobStatus.EXPIRED, JobStatus.REFUSED, JobStatus.SKIPPED,
)  # fmt: skip
# The form's fields, as the command's options name them.
_OPTIONS = {
    "account": "--account",
    "job_name": "--job-name",
    "signal_types": "--types",
    "window": "--window",
    "start": "--from",
    "end": "--to",
    "timezone": "--timezone",
    "notifications": "--notify",
    "placement": "--parent-folder/--prefix/--path",
    "parent_folder": "--parent-folder",
    "naming_prefix": "--prefix",
    "target_path": "--path",
    "range_mode": "--from/--to or --window",
}


class Command(BaseCommand):
    help = "Ask Connect for an export of signals; with --wait, fetch its file into the archive."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--account", required=True, help="Connect account name (or id)")
        parser.add_argument(
            "--types", required=True, help="signal types, comma-separated: addToCart,order"
        )
        parser.add_argument("--from", dest="start", help="start of the range, ISO 8601")
        parser.add_argument("--to", dest="end", help="end of the range, ISO 8601")
        parser.add_argument(
            "--window", choices=list(rules.WINDOWS), help="a window instead of --from/--to"
        )
        parser.add_argument(
            "--timezone", default="UTC", help="zone of the range (default UTC), e.g. Europe/Paris"
        )
        parser.add_argument("--job-name", help="unique for the account (default: suggested)")
        parser.add_argument("--notify", default="", help="e-mail addresses, comma-separated")
        parser.add_argument("--parent-folder", default="", help="a folder under Export/Signals")
        parser.add_argument("--prefix", default="", help="file name prefix (with --parent-folder)")
        parser.add_argument("--path", default="", help="exact path and file name, ending .csv")
        parser.add_argument("--user", help="who asks (default: the first superuser)")
        parser.add_argument(
            "--wait", action="store_true", help="follow the job until its file is fetched"
        )
        parser.add_argument(
            "--timeout", type=float, default=3600.0, help="seconds --wait waits (default 3600)"
        )
        parser.add_argument("--poll", type=float, default=1.0, help=argparse.SUPPRESS)

    def handle(self, *args: Any, **options: Any) -> None:
        user = self._user(options["user"])
        form = ExportForm(self._form_data(options))
        if not form.is_valid():
            problems = [
                f"{_OPTIONS.get(name, name) if name != '__all__' else 'export'}: {message}"
                for name, messages in form.errors.items()
                for message in messages
            ]
            self._fail("; ".join(problems), EXIT_BAD_INPUT)
        request = form.export_request()
        try:
            job = jobs.export_submit(request=request, user=user)
        except jobs.ExportRefused as refused:
            code = EXIT_BAD_INPUT if refused.field else EXIT_INCOMPLETE
            where = f"{_OPTIONS.get(refused.field, refused.field)}: " if refused.field else ""
            self._fail(f"{where}{refused.message}", code)
        self.stdout.write(
            f"job {job.job_name!r} ({job.public_id}): {job.get_status_display().lower()}, "
            f"Connect's job {job.data_job_id}\n"
            f"range: {jobs.iso(job.timestamp_start)} to {jobs.iso(job.timestamp_end)}\n"
            f"file on SFTP: {job.remote_path} ({job.file_format})"
        )
        if options["wait"]:
            self._wait(job, options)

    def _form_data(self, options: dict[str, Any]) -> QueryDict:
        account = self._account(options["account"])
        zone = self._zone(options["timezone"])
        data = QueryDict(mutable=True)
        types = [t.strip() for t in options["types"].split(",") if t.strip()]
        data.setlist("signal_types", types)
        data["account"] = str(account.pk)
        if options["window"]:
            if options["start"] or options["end"]:
                self._fail("give --window or --from/--to, not both", EXIT_BAD_INPUT)
            data["range_mode"], data["window"] = "window", options["window"]
        else:
            if not options["start"] or not options["end"]:
                self._fail("give --from and --to (ISO 8601), or --window", EXIT_BAD_INPUT)
            data["range_mode"] = "dates"
            data["start"] = self._moment("--from", options["start"], zone)
            data["end"] = self._moment("--to", options["end"], zone)
        data["timezone"] = options["timezone"]
        data["notifications"] = options["notify"]
        if options["path"]:
            data["placement"], data["target_path"] = "path", options["path"]
            if options["parent_folder"] or options["prefix"]:
                data["parent_folder"] = options["parent_folder"]  # the form says why not
        elif options["parent_folder"] or options["prefix"]:
            data["placement"] = "folder"
            data["parent_folder"] = options["parent_folder"]
            data["naming_prefix"] = options["prefix"]
        else:
            data["placement"] = "default"
        data["job_name"] = options["job_name"] or rules.suggested_job_name(
            types, options["window"] or "", datetime.now(zone)
        )
        return data

    def _account(self, name: str) -> ConnectAccount:
        match = Q(name=name) | (Q(pk=int(name)) if name.isdigit() else Q())
        account = ConnectAccount.objects.filter(match).first()
        if account is None:
            known = ", ".join(ConnectAccount.objects.values_list("name", flat=True)) or "none"
            self._fail(
                f"--account {name!r}: no such Connect account (there are: {known})",
                EXIT_BAD_INPUT,
            )
        return account

    def _zone(self, name: str) -> ZoneInfo:
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            self._fail(f"--timezone {name!r}: no such time zone", EXIT_BAD_INPUT)

    def _moment(self, option: str, text: str, zone: ZoneInfo) -> str:
        """As the form's datetime-local field takes it: the wall-clock time in `zone`."""
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            self._fail(
                f"{option} {text!r}: not an ISO 8601 date and time "
                "(e.g. 2026-12-01 or 2026-12-01T06:00:00Z)",
                EXIT_BAD_INPUT,
            )
        if moment.tzinfo is not None:
            moment = moment.astimezone(zone)
        return f"{moment:%Y-%m-%dT%H:%M:%S}"

    def _user(self, username: str | None) -> User:
        users = User.objects.filter(is_active=True)
        user = (
            users.filter(username=username).first()
            if username
            else users.filter(is_superuser=True).order_by("pk").first()
        )
        if user is None:
            self._fail(
                f"--user {username!r}: no such active user"
                if username
                else "no --user given and no superuser exists",
                EXIT_BAD_INPUT,
            )
        return user

    def _wait(self, job: ExportJob, options: dict[str, Any]) -> None:
        deadline = time.monotonic() + options["timeout"]
        last = ""
        while True:
            job.refresh_from_db()
            line = job.get_status_display().lower()
            if line != last:
                self.stdout.write(line)
                last = line
            if job.status in _FINAL:
                break
            if time.monotonic() > deadline:
                self._fail(
                    f"job {job.public_id}: still {last} after {options['timeout']:g} s; "
                    "is a worker running? The job goes on without this command.",
                    EXIT_INCOMPLETE,
                )
            time.sleep(options["poll"])
        export_file = job.file
        if job.status != JobStatus.FETCHED or export_file is None:
            self._fail(f"job {job.public_id}: {job.error_message or last}", EXIT_INCOMPLETE)
        while not export_file.types_counted and time.monotonic() < deadline:
            time.sleep(options["poll"])  # its rows per type are counted just after
            export_file.refresh_from_db()
        by_type = ", ".join(f"{t} {n}" for t, n in export_file.rows_by_type.items())
        self.stdout.write(
            f"file: {files.where(files.exports(), export_file.stored_name)}\n"
            f"rows: {export_file.rows}{f' ({by_type})' if by_type else ''}\n"
            f"bytes: {export_file.size_bytes}\n"
            f"sha256: {export_file.sha256}"
        )

    def _fail(self, message: str, code: int) -> NoReturn:
        raise CommandError(message, returncode=code)
