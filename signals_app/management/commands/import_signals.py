"""`python manage.py import_signals FILE --app-key KEY [--live] [--confirm-skip N] [--wait]
[--user USERNAME]`: the browser's import flow for ops and scripts, through the same services.
`python manage.py import_signals --import ID [--confirm-skip N] [--wait]` sends an import
made before (validated, not sent yet) instead of uploading a file again.

The file is stored and validated by the validation task; once validated it is sent (test
unless --live) by the send task. Without --wait the command returns once the send is
enqueued (or at once, when validation is still running, printing the import's id); with
--wait it prints progress until every batch has a final state.

A live import with rejected signals is sent only with --confirm-skip N, N the number of
rejected signals the validation found, as the browser asks for it: a confirmation of
"however many" would let a file far worse than expected go live. When it is refused the
import stays validated and unsent (history: "Ready to send", audit: import.send_refused),
and the error says how to send it with --import.

Exit status: 0 when every valid signal was accepted, 1 otherwise (rejected signals skipped,
failed or unknown batches, a refusal), 2 for bad input (no such file, app key, user or
import; an unreadable file; a live send without permission or confirmation; an app key
that was deactivated, for a new import and for a send with --import alike).
"""

from __future__ import annotations

import time
import uuid
from argparse import ArgumentParser
from pathlib import Path
from typing import Any, NoReturn

from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.core.management.base import BaseCommand, CommandError

from connectadmin import alerts
from connectadmin.models import AppKey
from connectadmin.roles import SEND_LIVE
from signals_app.models import ImportMode, ImportStatus, SignalImport, audit
from signals_app.services import sending
from signals_app.services.errors import ImportRefused

EXIT_INCOMPLETE = 1
EXIT_BAD_INPUT = 2
_VALIDATING = (ImportStatus.UPLOADED, ImportStatus.VALIDATING)
_DONE = (ImportStatus.COMPLETED, ImportStatus.CANCELLED, ImportStatus.FAILED)


class Command(BaseCommand):
    help = "Validate a file of signals and send its valid signals to Connect (test or live)."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "file", nargs="?", help="JSON, NDJSON or CSV file of signals, or a .gz of one"
        )
        parser.add_argument("--app-key", help="a registered application key (with FILE)")
        parser.add_argument("--live", action="store_true", help="send live (default: test)")
        parser.add_argument(
            "--import",
            dest="import_id",
            metavar="ID",
            help="send this import, made before, instead of uploading a file",
        )
        parser.add_argument("--wait", action="store_true", help="wait until the send ends")
        parser.add_argument("--user", help="who sends (default: the first superuser)")
        parser.add_argument(
            "--confirm-skip",
            type=int,
            metavar="N",
            help="confirm that the N rejected signals are skipped (a live send of a file with "
            "rejected signals needs it; a refusal says N and the command to run)",
        )
        parser.add_argument(
            "--timeout", type=float, default=24 * 3600, help="most seconds --wait waits"
        )
        parser.add_argument(
            "--poll", type=float, default=1.0, help="seconds between progress lines"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["import_id"] is not None:
            signal_import, user = self._existing_import(options)
        else:
            signal_import, user = self._new_import(options)
        deadline = time.monotonic() + options["timeout"]
        signal_import = self._wait_validation(signal_import, options, deadline)

        confirm = options["confirm_skip"]
        try:
            signal_import = sending.import_send(
                signal_import=signal_import, user=user, confirm_skip=confirm
            )
        except (PermissionDenied, ImportRefused) as exc:
            self._refused(signal_import, user, str(exc) or "permission denied", confirm)
        self.stdout.write(
            f"sending {signal_import.valid} {signal_import.unit + 's'} in "
            f"{signal_import.batches_total} batches"
        )
        if not options["wait"]:
            self.stdout.write(f"enqueued; follow it with the import's page (id {signal_import.pk})")
            return
        signal_import = self._wait_send(signal_import, options, deadline)
        self._final(signal_import)

    def _new_import(self, options: dict[str, Any]) -> tuple[SignalImport, User]:
        if not options["file"]:
            self._fail("give a FILE to import, or --import ID to send an import", EXIT_BAD_INPUT)
        path = Path(options["file"])
        if not path.is_file():
            self._fail(f"{path}: no such file", EXIT_BAD_INPUT)
        if not options["app_key"]:
            self._fail("--app-key is required with a FILE", EXIT_BAD_INPUT)
        app_key = AppKey.objects.filter(key=options["app_key"]).first()
        if app_key is None:
            self._fail(f"--app-key {options['app_key']!r} is not registered", EXIT_BAD_INPUT)
        user = self._user(options["user"])
        mode = ImportMode.LIVE if options["live"] else ImportMode.TEST

        from signals_app.services.upload import import_create  # written beside this one

        try:
            with path.open("rb") as upload:
                signal_import = import_create(
                    user=user, app_key=app_key, mode=mode, upload=upload, original_name=path.name
                )
        except ImportRefused as exc:  # a deactivated app key: nothing was stored
            self._fail(str(exc), EXIT_BAD_INPUT)
        self.stdout.write(f"import {signal_import.pk}: {path.name}, {mode} import, validating")
        return signal_import, user

    def _existing_import(self, options: dict[str, Any]) -> tuple[SignalImport, User]:
        """--import ID: the id this command prints, or the import's public id (its page)."""
        if options["file"] or options["app_key"] or options["live"]:
            self._fail(
                "--import sends an import as it was made: give no FILE, --app-key or --live",
                EXIT_BAD_INPUT,
            )
        wanted = str(options["import_id"]).strip()
        found = SignalImport.objects.select_related("app_key")
        if wanted.isdigit():
            signal_import = found.filter(pk=int(wanted)).first()
        else:
            try:
                signal_import = found.filter(public_id=uuid.UUID(wanted)).first()
            except ValueError:
                signal_import = None
        if signal_import is None:
            self._fail(f"--import {wanted}: no such import", EXIT_BAD_INPUT)
        user = self._user(options["user"])
        self.stdout.write(
            f"import {signal_import.pk}: {signal_import.original_name}, "
            f"{signal_import.mode} import, {signal_import.get_status_display().lower()}"
        )
        return signal_import, user

    def _refused(
        self, signal_import: SignalImport, user: User, reason: str, confirm: int | None
    ) -> NoReturn:
        """The send was refused: say so on the import (its audit trail; it stays unsent) and
        in the error, with the command that sends it."""
        signal_import.refresh_from_db()
        audit(
            action="import.send_refused",
            actor=user,
            signal_import=signal_import,
            reason=reason,
            via="import_signals",
        )
        name = signal_import.original_name
        message = f"import {signal_import.pk} ({name}) was not sent: {reason}"
        if signal_import.status == ImportStatus.VALIDATED and signal_import.is_live:
            rejected = signal_import.validation_source.rejected
            again = f"python manage.py import_signals --import {signal_import.pk}"
            skip = f" --confirm-skip {rejected}" if rejected else ""
            if not user.has_perm(SEND_LIVE):
                message += (
                    "\nIt is kept, validated and unsent. To send it, a user who may send live "
                    f"runs: {again} --user USERNAME{skip}"
                )
            elif rejected and confirm != rejected:
                message += (
                    f"\nIt is kept, validated and unsent. To send it live, skipping the "
                    f"{rejected} rejected signal{'s' if rejected != 1 else ''}: {again}{skip}"
                )
        if signal_import.is_live:  # a command run by a scheduler, where nobody reads its error
            alerts.live_send_refused(signal_import.pk, message)
        self._fail(message, EXIT_BAD_INPUT)

    def _user(self, username: str | None) -> User:
        if username:
            user = User.objects.filter(username=username, is_active=True).first()
            if user is None:
                self._fail(f"--user {username!r}: no such active user", EXIT_BAD_INPUT)
            return user
        user = User.objects.filter(is_superuser=True, is_active=True).order_by("pk").first()
        if user is None:
            self._fail("no --user given and no superuser exists", EXIT_BAD_INPUT)
        return user

    def _wait_validation(
        self, signal_import: SignalImport, options: dict[str, Any], deadline: float
    ) -> SignalImport:
        last = ""
        while signal_import.status in _VALIDATING:
            if time.monotonic() > deadline:
                self._fail(f"import {signal_import.pk}: still validating", EXIT_INCOMPLETE)
            line = f"validating: {signal_import.signals} signals read"
            if line != last:
                self.stdout.write(line)
                last = line
            time.sleep(options["poll"])
            signal_import.refresh_from_db()
        if signal_import.status == ImportStatus.UNREADABLE:
            self._fail(
                f"{signal_import.original_name}: cannot be read: {signal_import.error_message}",
                EXIT_BAD_INPUT,
            )
        self.stdout.write(
            f"validated: {signal_import.signals} signals, {signal_import.valid} valid, "
            f"{signal_import.rejected} rejected, {signal_import.warnings} warnings"
        )
        return signal_import

    def _wait_send(
        self, signal_import: SignalImport, options: dict[str, Any], deadline: float
    ) -> SignalImport:
        last = ""
        while True:
            signal_import.refresh_from_db()
            done = signal_import.batches.exclude(state__in=["pending", "in_flight"]).count()
            line = f"batches {done}/{signal_import.batches_total}, " + _counts(signal_import)
            if line != last:
                self.stdout.write(line)
                last = line
            if signal_import.status in _DONE:
                return signal_import
            if time.monotonic() > deadline:
                self._fail(f"import {signal_import.pk}: still sending", EXIT_INCOMPLETE)
            time.sleep(options["poll"])

    def _final(self, signal_import: SignalImport) -> None:
        units = signal_import.unit + "s"
        self.stdout.write(
            f"{signal_import.get_status_display().lower()}: {signal_import.signals} {units}, "
            f"{signal_import.valid} valid, {signal_import.rejected} rejected"
            + _final_counts(signal_import)
        )
        if signal_import.error_message:
            self.stderr.write(signal_import.error_message)
        everything = (
            signal_import.status == ImportStatus.COMPLETED
            and signal_import.rejected == 0
            and (not signal_import.send_to_connect or signal_import.accepted == signal_import.valid)
            and (
                signal_import.attentive_account_id is None
                or signal_import.attentive_sent == signal_import.valid
            )
        )
        if not everything:
            raise CommandError(
                f"not every {signal_import.unit} was accepted", returncode=EXIT_INCOMPLETE
            )

    def _fail(self, message: str, code: int) -> NoReturn:
        raise CommandError(message, returncode=code)


def _counts(signal_import: SignalImport) -> str:
    """What each destination took so far: Connect's signals, Attentive's events."""
    said = []
    if signal_import.send_to_connect:
        said.append(
            f"accepted {signal_import.accepted}, failed {signal_import.failed}, "
            f"unknown {signal_import.unknown}"
        )
    if signal_import.attentive_account_id is not None:
        said.append(
            f"Attentive accepted {signal_import.attentive_sent}, refused "
            f"{signal_import.attentive_failed}, unknown {signal_import.attentive_unknown}"
        )
    return "; ".join(said)


def _final_counts(signal_import: SignalImport) -> str:
    """The last line's figures: Connect's as they always read, then Attentive's."""
    said = ""
    if signal_import.send_to_connect:
        said += (
            f", {signal_import.sent} sent, {signal_import.accepted} accepted, "
            f"{signal_import.failed} failed, {signal_import.unknown} unknown"
        )
    if signal_import.attentive_account_id is not None:
        said += (
            f"; Attentive: {signal_import.attentive_sent} accepted, "
            f"{signal_import.attentive_failed} refused, {signal_import.attentive_unknown} unknown"
        )
    return said
