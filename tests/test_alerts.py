"""Alerts (connectadmin.alerts): one alert per subject while it lasts, at most one message
per subject per interval, a recovery when it clears, deliveries by e-mail (Django's locmem
backend here) and webhook (a real HTTP server on loopback), and what raises and clears
them: imports, export runs, host keys, silent workers and scheduler. The whole path through
a real worker is in tests/integration/test_alerts_live.py."""

from __future__ import annotations

import base64
import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core import mail
from django.utils import timezone

from connectadmin import alerts
from connectadmin.models import (
    Alert,
    AlertChannel,
    AlertDelivery,
    AlertState,
    AlertTopic,
    Heartbeat,
)
from exports_app.models import ExportJob, ExportSchedule, HostKey, HostKeyState, JobStatus
from exports_app.services import hostkeys
from exports_app.sftp_client import HostKeyRefused
from signals_app.models import ImportStatus, SignalImport
from tests.factories import make_account, make_app_key
from tests.webhook import receiving_webhooks

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_broker(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The deliver task is queued on commit; here the test sends by calling deliver_due."""
    queued: list[int] = []
    monkeypatch.setattr(alerts, "_deliver_soon", lambda: queued.append(1))
    return queued


def subscriber(name: str = "ops", topics: list[str] | None = None, **fields: Any) -> AlertChannel:
    user = User.objects.create_user(name, email=f"{name}@example.test", password="x", **fields)
    return AlertChannel.objects.create(kind="email", user=user, topics=topics or [])


def webhook(url: str, topics: list[str] | None = None) -> AlertChannel:
    return AlertChannel.objects.create(
        kind="webhook", name="Slack", url=url, url_host=alerts.url_host(url), topics=topics or []
    )


def fail(subject: str = "account:1", title: str = "Import #1: refused") -> Alert:
    return alerts.raise_alert(
        topic=AlertTopic.IMPORT,
        subject=subject,
        subject_label="Imports to Acme",
        title=title,
        detail="Connect accepted none of the 10 signals.",
        link="/imports/x",
    )


def age(alert: Alert, minutes: int) -> None:
    """Move the alert's last message `minutes` into the past (the interval passing)."""
    Alert.objects.filter(pk=alert.pk).update(
        notified_at=timezone.now() - timedelta(minutes=minutes)
    )


# --- one alert per subject, one message per interval, one recovery ----------------------


def test_a_first_failure_opens_an_alert_and_tells_each_subscriber_once() -> None:
    ops = subscriber("ops")
    subscriber("exports-only", topics=[AlertTopic.EXPORT])
    subscriber("gone", is_active=False)
    alert = fail()
    deliveries = list(alert.deliveries.all())
    assert [d.channel for d in deliveries] == [ops]
    assert deliveries[0].message == "alert"
    assert deliveries[0].target == "ops@example.test"
    assert deliveries[0].subject == "Alert: Import #1: refused"
    assert "Connect accepted none of the 10 signals." in deliveries[0].body
    assert "http://" in deliveries[0].body and "/imports/x" in deliveries[0].body
    assert alert.state == AlertState.OPEN and alert.notified_at is not None


def test_more_failures_within_the_interval_are_counted_not_sent(settings: Any) -> None:
    settings.ALERT_REPEAT_MINUTES = 60
    subscriber()
    alert = fail()
    for n in range(2, 5):
        fail(title=f"Import #{n}: failed")
    alert.refresh_from_db()
    assert alert.occurrences == 4
    assert alert.title == "Import #4: failed"  # the latest
    assert Alert.objects.count() == 1
    assert AlertDelivery.objects.count() == 1
    assert alerts.remind_due() == 0  # the interval has not passed
    age(alert, 61)
    assert alerts.remind_due() == 1
    reminder = AlertDelivery.objects.get(message="reminder")
    assert reminder.subject == "Still failing: Import #4: failed"
    assert "3 more failures since the last message, 4 in all since" in reminder.body
    assert alerts.remind_due() == 0  # told: nothing new since


def test_a_reminder_comes_only_with_new_failures() -> None:
    subscriber()
    alert = fail()
    age(alert, 500)
    assert alerts.remind_due() == 0
    assert AlertDelivery.objects.count() == 1


def test_the_first_good_run_clears_it_with_one_recovery() -> None:
    subscriber()
    fail()
    cleared = alerts.clear_alert(
        topic=AlertTopic.IMPORT, subject="account:1", detail="Import #5 completed."
    )
    assert cleared is not None and cleared.state == AlertState.CLEARED
    recovery = AlertDelivery.objects.get(message="recovery")
    assert recovery.subject == "Recovered: Imports to Acme"
    assert recovery.body.startswith("Import #5 completed.")
    assert "1 failure since" in recovery.body
    assert "the last: Import #1: refused (http://127.0.0.1:" in recovery.body
    # A second good run: nothing open, nothing said.
    assert alerts.clear_alert(topic=AlertTopic.IMPORT, subject="account:1", detail="x") is None
    assert AlertDelivery.objects.count() == 2


def test_a_new_failure_soon_after_a_recovery_is_held_until_the_interval_is_over() -> None:
    subscriber()
    first = fail()
    alerts.clear_alert(topic=AlertTopic.IMPORT, subject="account:1", detail="good again")
    second = fail(title="Import #7: failed")
    assert second.pk != first.pk and second.notified_at is None
    assert AlertDelivery.objects.filter(alert=second).count() == 0
    assert alerts.remind_due() == 0
    age(first, 61)
    assert alerts.remind_due() == 1
    assert AlertDelivery.objects.get(alert=second).message == "alert"


def test_an_alert_nobody_was_told_of_clears_without_a_recovery() -> None:
    subscriber()
    first = fail()
    alerts.clear_alert(topic=AlertTopic.IMPORT, subject="account:1", detail="good")
    fail()  # held
    alerts.clear_alert(topic=AlertTopic.IMPORT, subject="account:1", detail="good")
    assert list(AlertDelivery.objects.values_list("alert", "message")) == [
        (first.pk, "alert"),
        (first.pk, "recovery"),
    ]


def test_subjects_are_apart() -> None:
    subscriber()
    fail("account:1")
    fail("account:2")
    assert Alert.objects.filter(state="open").count() == 2
    assert AlertDelivery.objects.count() == 2


def test_one_open_alert_per_subject_even_when_two_processes_open_it_at_once() -> None:
    fail()
    with pytest.raises(Exception):  # noqa: B017 (the database's own constraint)
        Alert.objects.create(
            topic="import",
            subject="account:1",
            subject_label="x",
            title="x",
            opened_at=timezone.now(),
            last_seen_at=timezone.now(),
        )


def test_a_process_losing_the_race_to_open_counts_on_the_winners_alert(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    winner = fail()
    real = alerts._open_alert
    calls = {"n": 0}

    def first_sees_nothing(topic: str, subject: str, *, lock: bool) -> Alert | None:
        calls["n"] += 1
        return None if calls["n"] == 1 else real(topic, subject, lock=lock)

    monkeypatch.setattr(alerts, "_open_alert", first_sees_nothing)
    again = fail()
    assert again.pk == winner.pk
    winner.refresh_from_db()
    assert winner.occurrences == 2


# --- delivering ------------------------------------------------------------------------


def test_an_email_goes_through_djangos_mail_backend() -> None:
    subscriber()
    fail()
    assert alerts.deliver_due() == 1
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["ops@example.test"]
    assert message.subject == "Alert: Import #1: refused"
    delivery = AlertDelivery.objects.get()
    assert delivery.state == "sent" and delivery.attempts == 1 and delivery.sent_at


def test_a_webhook_gets_a_json_body_slack_can_show() -> None:
    with receiving_webhooks() as receiver:
        webhook(receiver.url)
        fail()
        assert alerts.deliver_due() == 1
        [body] = receiver.received()
    assert body["text"].startswith("Alert: Import #1: refused\n")
    assert body["message"] == "alert"
    assert body["topic"] == "import" and body["subject"] == "account:1"
    assert body["state"] == "open" and body["occurrences"] == 1
    assert body["url"].endswith("/imports/x")


def test_a_refused_delivery_is_retried_later_then_given_up(settings: Any) -> None:
    settings.ALERT_DELIVERY_ATTEMPTS = 2
    with receiving_webhooks() as receiver:
        receiver.status = 500
        webhook(receiver.url)
        fail()
        assert alerts.deliver_due() == 0
        delivery = AlertDelivery.objects.get()
        assert delivery.state == "pending" and delivery.attempts == 1
        assert delivery.last_error == "the webhook answered HTTP 500: no thanks"
        assert delivery.next_try_at > timezone.now() + timedelta(seconds=50)
        assert alerts.deliver_due() == 0  # not due yet
        AlertDelivery.objects.update(next_try_at=timezone.now())
        alerts.deliver_due()
        delivery.refresh_from_db()
        assert delivery.state == "failed" and delivery.attempts == 2


def test_an_unreachable_webhook_is_named_without_its_secret_address() -> None:
    with receiving_webhooks() as receiver:
        url = receiver.url
    channel = webhook(url)  # the server is gone
    fail()
    alerts.deliver_due()
    delivery = AlertDelivery.objects.get()
    assert delivery.last_error.startswith("the webhook could not be reached")
    assert "secret-token" not in delivery.last_error
    assert delivery.target == f"Slack ({channel.url_host})"
    assert "secret-token" not in delivery.target


def test_a_person_without_an_address_is_a_failed_delivery_that_says_why() -> None:
    channel = subscriber()
    User.objects.filter(alert_channels=channel).update(email="")
    fail()
    alerts.deliver_due()
    delivery = AlertDelivery.objects.get()
    assert delivery.state == "pending" and "has no e-mail address" in delivery.last_error


def test_a_delivery_claimed_by_a_process_that_died_is_sent_again() -> None:
    subscriber()
    fail()
    AlertDelivery.objects.update(state="sending", claimed_at=timezone.now() - timedelta(hours=1))
    assert alerts.deliver_due() == 1
    assert AlertDelivery.objects.get().state == "sent"


def test_a_delivery_claimed_now_is_left_to_its_process() -> None:
    subscriber()
    fail()
    AlertDelivery.objects.update(state="sending", claimed_at=timezone.now())
    assert alerts.deliver_due() == 0
    assert mail.outbox == []


def test_messages_are_queued_for_the_worker_when_made(_no_broker: list[int]) -> None:
    subscriber()
    fail()
    fail()  # counted, no message
    assert _no_broker == [1]


# --- what raises and clears them ---------------------------------------------------------


def make_import(**fields: Any) -> SignalImport:
    user = User.objects.create_user(f"m{uuid.uuid4().hex[:8]}", password="x")
    if "app_key" not in fields:
        fields["app_key"] = make_app_key(make_account(name="Acme EU"))
    values: dict[str, Any] = {
        "created_by": user,
        "status": ImportStatus.COMPLETED,
        "original_name": "orders.ndjson",
        "stored_name": f"{uuid.uuid4().hex}.ndjson",
        "signals": 10,
        "valid": 10,
        "mode": "live",
    }
    values.update(fields)
    return SignalImport.objects.create(**values)


def test_an_import_refused_whole_raises_and_a_good_one_clears() -> None:
    subscriber()
    bad = make_import(failed=10)
    alerts.import_ended(bad.pk)
    alert = Alert.objects.get()
    assert alert.subject == f"account:{bad.connect_app_key.account_id}"
    assert alert.subject_label == "Imports to Acme EU"
    assert alert.title == f"Import #{bad.pk} (orders.ndjson, live): refused"
    assert alert.detail == (
        "Connect accepted none of the 10 signals: every batch failed. Read the batches' errors "
        "on the import's page; fix the cause, then resend them there."
    )
    assert alert.link == f"/imports/{bad.public_id}"
    good = make_import(app_key=bad.app_key, sent=10, accepted=10)
    alerts.import_ended(good.pk)
    alert.refresh_from_db()
    assert alert.state == "cleared"
    assert alert.cleared_detail.startswith(f"Import #{good.pk} (orders.ndjson, live) to Acme EU")


@pytest.mark.parametrize(
    ("fields", "label"),
    [
        ({"sent": 5, "accepted": 5, "failed": 5}, "completed with failures"),
        ({"sent": 5, "accepted": 5, "unknown": 5}, "needs attention"),
        ({"status": ImportStatus.FAILED, "error_message": "file gone"}, "failed"),
    ],
)
def test_failed_partly_failed_and_unknown_imports_raise(fields: dict[str, Any], label: str) -> None:
    signal_import = make_import(**fields)
    alerts.import_ended(signal_import.pk)
    assert Alert.objects.get().title.endswith(f": {label}")


def test_a_cancelled_import_neither_raises_nor_clears() -> None:
    bad = make_import(failed=10)
    alerts.import_ended(bad.pk)
    cancelled = make_import(app_key=bad.app_key, status=ImportStatus.CANCELLED, sent=2, accepted=2)
    alerts.import_ended(cancelled.pk)
    assert Alert.objects.get().state == "open"


def test_a_hook_that_breaks_never_breaks_the_work(caplog: pytest.LogCaptureFixture) -> None:
    alerts.import_ended(999_999)  # no such import
    assert "could not raise or clear the alert for import 999999" in caplog.text


def make_job(status: str, schedule: ExportSchedule | None = None, **fields: Any) -> ExportJob:
    now = timezone.now()
    return ExportJob.objects.create(
        account=schedule.account if schedule else make_account(name="Acme EU"),
        schedule=schedule,
        job_name=f"job {uuid.uuid4().hex[:6]}",
        timestamp_start=now - timedelta(days=1),
        timestamp_end=now,
        status=status,
        finished_at=now,
        **fields,
    )


def make_schedule() -> ExportSchedule:
    return ExportSchedule.objects.create(
        account=make_account(name="Acme EU"),
        name="Nightly orders",
        created_by=User.objects.create_user(f"s{uuid.uuid4().hex[:6]}"),
        window="yesterday",
        recurrence="daily",
    )


@pytest.mark.parametrize("status", [JobStatus.FAILED, JobStatus.REFUSED, JobStatus.SKIPPED])
def test_a_scheduled_run_that_failed_or_was_skipped_raises_and_a_fetched_one_clears(
    status: str,
) -> None:
    schedule = make_schedule()
    job = make_job(status, schedule, error_message="a daily limit would be passed")
    alerts.export_jobs_ended([job.pk])
    alert = Alert.objects.get()
    assert alert.topic == "export" and alert.subject == f"schedule:{schedule.pk}"
    assert alert.subject_label == "Scheduled export Nightly orders (Acme EU)"
    assert alert.detail == "a daily limit would be passed"
    alerts.export_jobs_ended([make_job(JobStatus.FETCHED, schedule).pk])
    alert.refresh_from_db()
    assert alert.state == "cleared"


def test_exports_by_hand_are_one_subject_per_account() -> None:
    job = make_job(JobStatus.FAILED, error_message="Connect unreachable")
    alerts.export_jobs_ended([job.pk])
    assert Alert.objects.get().subject == f"exports:{job.account_id}"


def test_the_watcher_of_an_export_raises_when_connect_says_it_failed() -> None:
    from exports_app.services import watching

    job = make_job(JobStatus.RUNNING)
    watching._finish(job, JobStatus.FAILED, "Connect says the export failed: disk full")
    assert Alert.objects.get().detail == "Connect says the export failed: disk full"


OLD_KEY = base64.b64encode(b"old host key" * 4).decode()
NEW_KEY = base64.b64encode(b"new host key" * 4).decode()


def test_a_changed_host_key_raises_and_approving_the_new_one_clears(
    admin_user: User, django_capture_on_commit_callbacks: Any
) -> None:
    subscriber()
    HostKey.objects.create(
        host="sftp.example.test",
        port=22,
        key_type="ssh-ed25519",
        key_base64=OLD_KEY,
        fingerprint="SHA256:old",
        state=HostKeyState.APPROVED,
    )
    for _ in range(2):  # refused each time; one alert, one occurrence (one change)
        with pytest.raises(HostKeyRefused):
            hostkeys.check_host_key("sftp.example.test", 22, "ssh-ed25519", NEW_KEY)
    alert = Alert.objects.get()
    assert alert.topic == "host_key" and alert.subject == "sftp.example.test:22"
    assert alert.occurrences == 1
    assert "SHA256:old is approved" in alert.detail
    new = HostKey.objects.get(key_base64=NEW_KEY)
    with django_capture_on_commit_callbacks(execute=True):
        hostkeys.host_key_approve(host_key=new, user=admin_user)
    alert.refresh_from_db()
    assert alert.state == "cleared"
    assert AlertDelivery.objects.filter(message="recovery").count() == 1


def beat(kind: str, name: str, *, seconds_ago: float, **fields: Any) -> None:
    moment = timezone.now() - timedelta(seconds=seconds_ago)
    Heartbeat.objects.update_or_create(
        kind=kind,
        name=name,
        defaults={"seen_at": moment, "started_at": moment, "ran_at": moment, **fields},
    )


def test_a_silent_worker_raises_once_and_clears_when_it_shows_life(settings: Any) -> None:
    settings.HEALTH_SILENT_SECONDS = 300
    subscriber()
    beat("scheduler", "host (pid 1)", seconds_ago=5)
    beat("worker", "celery@a", seconds_ago=10)
    beat("worker", "celery@b", seconds_ago=900)
    alerts.watch()
    alerts.watch()  # still silent: the same alert, not counted again
    alert = Alert.objects.get()
    assert alert.topic == "worker" and alert.subject == "worker:celery@b"
    assert alert.title == "The worker celery@b has been silent for 15 minutes"
    assert alert.occurrences == 1
    assert mail.outbox[0].subject == alert.title.join(["Alert: ", ""])
    beat("worker", "celery@b", seconds_ago=1)
    alerts.watch()
    alert.refresh_from_db()
    assert alert.state == "cleared"
    assert alert.cleared_detail == "The worker celery@b is no longer silent: takes tasks."
    assert mail.outbox[-1].subject == "Recovered: Worker celery@b"


def test_a_worker_that_stopped_cleanly_is_no_alert() -> None:
    beat("scheduler", "host (pid 1)", seconds_ago=5)
    beat("worker", "celery@a", seconds_ago=10)
    beat("worker", "celery@b", seconds_ago=900, stopped_at=timezone.now())
    alerts.watch()
    assert not Alert.objects.exists()


def test_a_silent_scheduler_raises_and_clears(settings: Any) -> None:
    settings.HEALTH_SILENT_SECONDS = 300
    beat("worker", "celery@a", seconds_ago=10)
    beat("scheduler", "host (pid 1)", seconds_ago=3600)
    alerts.watch()
    alert = Alert.objects.get()
    assert alert.topic == "scheduler"
    assert alert.title == "The scheduler (celery beat) has been silent for 1 hour"
    assert "scheduled exports do not start" in alert.detail
    beat("scheduler", "host (pid 1)", seconds_ago=1)
    alerts.watch()
    alert.refresh_from_db()
    assert alert.state == "cleared"


def test_the_watchdog_sends_what_waits() -> None:
    subscriber()
    fail()  # queued for the worker, which is not there
    beat("worker", "celery@a", seconds_ago=10)
    beat("scheduler", "host (pid 1)", seconds_ago=5)
    assert alerts.watch() == 1
    assert len(mail.outbox) == 1


def test_the_watchdog_thread_looks_and_stops(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    looked: list[int] = []
    monkeypatch.setattr(alerts, "WATCH_FIRST_DELAY_SECONDS", 0.0)
    monkeypatch.setattr(alerts, "watch", lambda: looked.append(1))
    settings.ALERT_WATCH_SECONDS = 1
    alerts.start_watchdog()
    thread = alerts._Watchdog.thread
    assert thread is not None
    deadline = timezone.now() + timedelta(seconds=10)
    while not looked and timezone.now() < deadline:
        thread.join(0.05)
    alerts.stop_watchdog()
    thread.join(5)
    assert looked and not thread.is_alive()


def test_no_watchdog_when_switched_off(settings: Any) -> None:
    settings.ALERT_WATCH_SECONDS = 0
    alerts.start_watchdog()
    assert alerts._Watchdog.thread is None


def test_a_message_for_a_channel_turned_off_meanwhile_is_not_sent() -> None:
    channel = subscriber()
    fail()
    AlertChannel.objects.filter(pk=channel.pk).update(active=False)
    assert alerts.deliver_due() == 0
    delivery = AlertDelivery.objects.get()
    assert delivery.state == "cancelled"
    assert delivery.last_error == "its channel was turned off before it went"
    assert mail.outbox == []


def test_the_beat_task_sends_held_alerts_and_retries_without_the_watchdog(settings: Any) -> None:
    from connectadmin.tasks import deliver_alerts

    settings.ALERT_WATCH_SECONDS = 0
    subscriber()
    first = fail()
    alerts.clear_alert(topic=AlertTopic.IMPORT, subject="account:1", detail="good")
    fail()  # held
    age(first, 61)
    deliver_alerts.apply()
    assert [m.subject.split(":")[0] for m in mail.outbox] == ["Alert", "Recovered", "Alert"]
