"""Alerts through the real parts: imports sent by a Celery worker process to the sandbox
with its fault switches on, then off. The subscribed people hear of the failure once and of
the recovery once, by e-mail (Django's file backend in the worker) and by webhook (a real
HTTP server in this test)."""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from email import message_from_bytes
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from connectadmin.models import Alert, AlertChannel, AlertDelivery, Heartbeat
from signals_app.models import ImportStatus, SignalImport
from signals_app.outcome import import_outcome
from signals_app.services import sending
from tests.integration.conftest import Workers
from tests.integration.test_sending_live import make_import, wait_done
from tests.sandbox.support import Sandbox
from tests.webhook import Receiver, receiving_webhooks

pytestmark = pytest.mark.django_db(transaction=True)


def same_file_again(imports_dir: Path, first: SignalImport) -> SignalImport:
    """Another validated import of the same file, on the same app key (the same account)."""
    name = f"{uuid.uuid4().hex}.ndjson"
    shutil.copy(imports_dir / first.stored_name, imports_dir / name)
    return SignalImport.objects.create(
        created_by=first.created_by,
        app_key=first.app_key,
        status=ImportStatus.VALIDATED,
        original_name=first.original_name,
        stored_name=name,
        signals=first.signals,
        valid=first.valid,
        rejected=first.rejected,
    )


def send(signal_import: SignalImport, workers: Workers) -> str:
    sending.import_send(signal_import=signal_import, user=signal_import.created_by)
    return import_outcome(wait_done(signal_import, workers, 90)).key


def mails(outbox: Path) -> list[tuple[str, str]]:
    """(To, Subject) of every message the worker's file backend wrote."""
    found = []
    files = sorted(outbox.glob("*.log"), key=lambda path: (path.stat().st_mtime_ns, path.name))
    for path in files if outbox.exists() else []:
        for chunk in path.read_bytes().split(b"-" * 79):
            if chunk.strip():
                message = message_from_bytes(chunk.strip())
                found.append((str(message["To"]), str(message["Subject"])))
    return found


def wait_for(what: str, check: Callable[[], bool], workers: Workers, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    deliveries = list(AlertDelivery.objects.values_list("message", "target", "state", "last_error"))
    pytest.fail(f"{what} not seen in {seconds:g} s; deliveries {deliveries}\n{workers.log_text()}")


def test_a_failing_import_alerts_once_and_the_good_run_after_it_recovers_once(
    workers: Workers, sandbox: Sandbox, imports_dir: Path, tmp_path: Path
) -> None:
    outbox = tmp_path / "outbox"
    workers.env.update(
        EMAIL_BACKEND="django.core.mail.backends.filebased.EmailBackend",
        EMAIL_FILE_PATH=str(outbox),
        SITE_URL="https://connectadmin.example.test",
        ALERT_WATCH_SECONDS="0",  # the deliver task alone sends them: that is under test
    )
    receiver: Receiver
    with receiving_webhooks() as receiver:
        ops = User.objects.create_user("ops-alerts", email="ops@example.test", password="x")
        AlertChannel.objects.create(kind="email", user=ops, topics=["import"])
        AlertChannel.objects.create(
            kind="webhook", name="Slack", url=receiver.url, url_host="127.0.0.1", topics=["import"]
        )
        workers.start()

        sandbox.faults(rate_graphql_error=1.0)  # Connect refuses every batch
        first = make_import(imports_dir, sandbox, total=1200, rejected=set())
        assert send(first, workers) == "refused"
        wait_for("the alert", lambda: len(receiver.received()) == 1 and len(mails(outbox)) == 1,
                 workers)  # fmt: skip
        second = same_file_again(imports_dir, first)
        assert send(second, workers) == "refused"  # counted on the open alert, not sent

        sandbox.faults(rate_graphql_error=0.0)
        third = same_file_again(imports_dir, first)
        assert send(third, workers) == "completed"
        wait_for("the recovery", lambda: len(receiver.received()) == 2 and len(mails(outbox)) == 2,
                 workers)  # fmt: skip
        time.sleep(1.0)  # nothing more comes
        bodies = receiver.received()

    account = first.connect_app_key.account
    alert = Alert.objects.get(topic="import", subject=f"account:{account.pk}")
    assert alert.state == "cleared" and alert.occurrences == 2
    assert [body["message"] for body in bodies] == ["alert", "recovery"]
    assert bodies[0]["title"] == f"Import #{first.pk} (signals.ndjson, test): refused"
    assert bodies[0]["url"] == f"https://connectadmin.example.test/imports/{first.public_id}"
    assert bodies[1]["text"].startswith(f"Recovered: Imports to {account.name}\n")
    assert mails(outbox) == [
        ("ops@example.test", f"Alert: Import #{first.pk} (signals.ndjson, test): refused"),
        ("ops@example.test", f"Recovered: Imports to {account.name}"),
    ]
    assert set(AlertDelivery.objects.values_list("state", flat=True)) == {"sent"}


def test_the_watchdog_in_a_worker_reports_a_silent_scheduler_and_its_return(
    workers: Workers,
) -> None:
    workers.env["ALERT_WATCH_SECONDS"] = "1"
    silent_since = timezone.now() - timedelta(hours=2)
    Heartbeat.objects.create(
        kind="scheduler", name="beat-host (pid 1)", seen_at=silent_since, started_at=silent_since
    )
    receiver: Receiver
    with receiving_webhooks() as receiver:
        AlertChannel.objects.create(
            kind="webhook", name="Ops", url=receiver.url, url_host="127.0.0.1", topics=["scheduler"]
        )
        workers.start()
        wait_for("the alert", lambda: len(receiver.received()) == 1, workers)
        Heartbeat.objects.filter(kind="scheduler").update(seen_at=timezone.now())
        wait_for("the recovery", lambda: len(receiver.received()) == 2, workers)
        bodies = receiver.received()
    assert [body["message"] for body in bodies] == ["alert", "recovery"]
    assert bodies[0]["title"] == "The scheduler (celery beat) has been silent for 2 hours"
    assert bodies[1]["text"].startswith("Recovered: The scheduler (celery beat)\n")
