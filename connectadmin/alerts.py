"""Alerts: ops learn that something failed without watching a page.

What raises one, per subject, and what clears it (the first good run after it):

    import     a send that ended failed, refused, partly failed or with batches of unknown
               outcome; per Connect account ("Imports to Acme EU"); cleared by an import
               to that account that Connect accepted whole
    export     a run that failed, was refused, skipped or expired; per schedule (by-hand
               exports: per account); cleared by a run of it that fetched its file
    host_key   an SFTP host offered a key other than the approved one; per host; cleared
               when an admin approves a key for that host
    worker     a worker silent for HEALTH_SILENT_SECONDS that did not stop cleanly; per
               worker; cleared when it shows life, stops cleanly or is replaced
    scheduler  celery beat silent (or more than one running); cleared when one beats

An alert is one row per subject while it lasts (a unique open row per topic and subject,
so two processes cannot open two): every further failure is counted on it. People are
told (AlertDelivery: one per channel that wants the topic) at most once per subject per
ALERT_REPEAT_MINUTES: the first failure at once, further ones in one reminder once the
interval has passed, and the recovery once it clears (only if they were told of it).

Deliveries are sent by the `deliver_alerts` task (queued when a message is made) and by
the watchdog that runs in every worker and in the scheduler (`start_watchdog`): it looks
for silent processes, sends reminders that came due and retries failed deliveries, so an
alert that a worker died still goes out through the scheduler, and the other way round.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
from celery.signals import beat_embedded_init, beat_init, worker_ready, worker_shutdown
from django.conf import settings
from django.core.mail import EmailMessage
from django.db import IntegrityError, close_old_connections, connection, transaction
from django.db.models import F, Max, Q
from django.urls import reverse
from django.utils import timezone

from connectadmin.models import (
    Alert,
    AlertChannel,
    AlertDelivery,
    AlertState,
    AlertTopic,
)

log = logging.getLogger(__name__)

# After a failed delivery, the next try waits this long (then the last, again and again).
RETRY_MINUTES = (1, 5, 15, 60, 180)
# A delivery claimed by a process that died while sending it is taken up again after this.
CLAIM_EXPIRES = timedelta(minutes=5)
# The watchdog's first look waits for the process to settle (beat writes its schedule).
WATCH_FIRST_DELAY_SECONDS = 20.0


def repeat_interval() -> timedelta:
    return timedelta(minutes=settings.ALERT_REPEAT_MINUTES)


# --- raising and clearing --------------------------------------------------------------


def raise_alert(
    *,
    topic: str,
    subject: str,
    subject_label: str,
    title: str,
    detail: str = "",
    link: str = "",
    continuing: bool = False,
    deliver: bool = True,
) -> Alert:
    """Record a failure of `subject`: opens its alert, or counts one more on the open one.

    `continuing`: the same condition seen again (a worker still silent at the watchdog's
    next look), not a new failure: nothing is counted. `deliver`: queue the deliver task
    for the messages made (the watchdog sends them itself).
    """
    now = timezone.now()
    fields = {"title": title[:300], "detail": detail, "link": link[:500]}
    try:
        alert, made = _record_occurrence(topic, subject, subject_label, fields, continuing, now)
    except IntegrityError:  # another process opened it at this very moment: count on it
        alert, made = _record_occurrence(topic, subject, subject_label, fields, continuing, now)
    if made and deliver:
        _deliver_soon()
    return alert


def _record_occurrence(
    topic: str,
    subject: str,
    subject_label: str,
    fields: dict[str, str],
    continuing: bool,
    now: datetime,
) -> tuple[Alert, int]:
    with transaction.atomic():
        alert = _open_alert(topic, subject, lock=True)
        if alert is None:
            alert = Alert.objects.create(
                topic=topic,
                subject=subject[:255],
                subject_label=subject_label[:300],
                opened_at=now,
                last_seen_at=now,
                **fields,
            )
        else:
            for name, value in fields.items():
                setattr(alert, name, value)
            alert.last_seen_at = now
            if not continuing:
                alert.occurrences += 1
            alert.save(update_fields=[*fields, "last_seen_at", "occurrences"])
        return alert, _notify_if_due(alert, now)


def clear_alert(*, topic: str, subject: str, detail: str, deliver: bool = True) -> Alert | None:
    """The first good run of `subject`: close its open alert (None if none) and tell the
    people who were told of it."""
    now = timezone.now()
    with transaction.atomic():
        alert = _open_alert(topic, subject, lock=True)
        if alert is None:
            return None
        alert.state = AlertState.CLEARED
        alert.cleared_at = now
        alert.cleared_detail = detail
        alert.save(update_fields=["state", "cleared_at", "cleared_detail"])
        made = _queue(alert, AlertDelivery.Message.RECOVERY, now) if alert.notified_at else 0
    if made and deliver:
        _deliver_soon()
    return alert


def _open_alert(topic: str, subject: str, *, lock: bool) -> Alert | None:
    alerts = Alert.objects.filter(topic=topic, subject=subject[:255], state=AlertState.OPEN)
    return (alerts.select_for_update() if lock else alerts).first()


def _notify_if_due(alert: Alert, now: datetime) -> int:
    """Make the messages the open `alert` is owed now (its row locked): the alert itself
    unless this subject was told of within the interval; a reminder once the interval has
    passed with failures people have not heard of. How many deliveries were made."""
    interval = repeat_interval()
    if alert.notified_at is None:
        told = (
            Alert.objects.filter(topic=alert.topic, subject=alert.subject)
            .exclude(pk=alert.pk)
            .aggregate(last=Max("notified_at"))["last"]
        )
        if told is not None and told > now - interval:
            return 0  # held: the watchdog sends it once the interval is over, if still open
        message = AlertDelivery.Message.ALERT
    elif alert.occurrences > alert.notified_occurrences and alert.notified_at <= now - interval:
        message = AlertDelivery.Message.REMINDER
    else:
        return 0
    made = _queue(alert, message, now)
    alert.notified_at = now
    alert.notified_occurrences = alert.occurrences
    alert.save(update_fields=["notified_at", "notified_occurrences"])
    return made


def _queue(alert: Alert, message: str, now: datetime) -> int:
    subject, body = compose(alert, message)
    deliveries = []
    for channel in AlertChannel.objects.filter(active=True).select_related("user"):
        if not channel.wants(alert.topic):
            continue
        if channel.kind == AlertChannel.Kind.EMAIL and not (
            channel.user and channel.user.is_active
        ):
            continue  # a deactivated person hears nothing more
        deliveries.append(
            AlertDelivery(
                alert=alert,
                message=message,
                channel=channel,
                target=target_label(channel),
                subject=subject[:300],
                body=body,
                next_try_at=now,
            )
        )
    AlertDelivery.objects.bulk_create(deliveries)
    return len(deliveries)


def target_label(channel: AlertChannel) -> str:
    if channel.kind == AlertChannel.Kind.EMAIL:
        user = channel.user
        return (user.email if user is not None else "") or f"{user} (no e-mail address)"
    return f"{channel.name or 'webhook'} ({channel.url_host})"


# --- the words ---------------------------------------------------------------------------


def absolute(link: str) -> str:
    return f"{settings.SITE_URL}{link}" if link.startswith("/") else link


def compose(alert: Alert, message: str) -> tuple[str, str]:
    """The e-mail subject and body of a message about `alert` (a webhook's text too)."""
    link = f" ({absolute(alert.link)})" if alert.link else ""
    if message == AlertDelivery.Message.RECOVERY:
        subject = f"Recovered: {alert.subject_label}"
        lines = [
            alert.cleared_detail,
            "",
            f"{_failures(alert.occurrences)} since {_when(alert.opened_at)}; the last: "
            f"{alert.title}{link}.",
        ]
    else:
        prefix = "Still failing" if message == AlertDelivery.Message.REMINDER else "Alert"
        subject = f"{prefix}: {alert.title}"
        lines = [alert.detail]
        if message == AlertDelivery.Message.REMINDER:
            more = _failures(alert.occurrences - alert.notified_occurrences, "more ")
            lines += ["", f"{more} since the last message, {alert.occurrences:,} in all since "
                      f"{_when(alert.opened_at)}."]  # fmt: skip
        if link:
            lines += ["", f"See: {absolute(alert.link)}"]
    lines += [
        "",
        f"All alerts: {absolute(reverse('alerts'))}",
        f"You get this as a subscriber to: {AlertTopic(alert.topic).label}.",
    ]
    return subject, "\n".join(lines).strip() + "\n"


def _failures(count: int, more: str = "") -> str:
    return f"{count:,} {more}failure{'' if count == 1 else 's'}"


def _when(moment: datetime) -> str:
    return timezone.localtime(moment).strftime("%Y-%m-%d %H:%M %Z")


def webhook_body(delivery: AlertDelivery) -> dict[str, Any]:
    """The JSON a webhook receives: `text` for Slack's and Teams' incoming webhooks, the
    rest for anything that reads fields."""
    alert = delivery.alert
    return {
        "text": f"{delivery.subject}\n{delivery.body}",
        "message": delivery.message,  # alert, reminder, recovery
        "topic": alert.topic,
        "subject": alert.subject,
        "subject_label": alert.subject_label,
        "title": alert.title,
        "detail": alert.detail,
        "state": alert.state,
        "occurrences": alert.occurrences,
        "opened_at": alert.opened_at.isoformat(),
        "cleared_at": alert.cleared_at.isoformat() if alert.cleared_at else None,
        "url": absolute(alert.link) if alert.link else None,
        "alert_id": alert.pk,
        "delivery_id": delivery.pk,
    }


# --- delivering --------------------------------------------------------------------------


class DeliveryFailed(Exception):
    pass


def deliver_due(*, now: datetime | None = None, limit: int = 100) -> int:
    """Send the deliveries due now; how many went out. Safe from several processes at once:
    each delivery is claimed by one (an UPDATE that only one can win)."""
    now = now or timezone.now()
    AlertDelivery.objects.filter(
        state=AlertDelivery.State.SENDING, claimed_at__lt=now - CLAIM_EXPIRES
    ).update(state=AlertDelivery.State.PENDING)
    due = AlertDelivery.objects.filter(state=AlertDelivery.State.PENDING, next_try_at__lte=now)
    sent = 0
    for pk in list(due.order_by("next_try_at", "pk").values_list("pk", flat=True)[:limit]):
        claimed = AlertDelivery.objects.filter(pk=pk, state=AlertDelivery.State.PENDING).update(
            state=AlertDelivery.State.SENDING, claimed_at=timezone.now()
        )
        if claimed:
            delivery = AlertDelivery.objects.select_related("alert", "channel__user").get(pk=pk)
            sent += _deliver(delivery)
    return sent


def _deliver(delivery: AlertDelivery) -> int:
    channel = delivery.channel
    if channel is None or not channel.active:
        gone = "removed" if channel is None else "turned off"
        AlertDelivery.objects.filter(pk=delivery.pk).update(
            state=AlertDelivery.State.CANCELLED,
            last_error=f"its channel was {gone} before it went",
        )
        return 0
    attempts = delivery.attempts + 1
    tried_at = timezone.now()
    try:
        send(delivery)
    except Exception as exc:
        error = _error_words(exc, delivery.channel)
        final = attempts >= settings.ALERT_DELIVERY_ATTEMPTS
        wait = RETRY_MINUTES[min(attempts, len(RETRY_MINUTES)) - 1]
        AlertDelivery.objects.filter(pk=delivery.pk).update(
            state=AlertDelivery.State.FAILED if final else AlertDelivery.State.PENDING,
            attempts=attempts,
            last_error=error,
            last_attempt_at=tried_at,
            next_try_at=timezone.now() + timedelta(minutes=wait),
        )
        log.warning("alert %s to %s not delivered (attempt %s): %s",
                    delivery.alert_id, delivery.target, attempts, error)  # fmt: skip
        return 0
    AlertDelivery.objects.filter(pk=delivery.pk).update(
        state=AlertDelivery.State.SENT,
        attempts=attempts,
        last_attempt_at=tried_at,
        sent_at=timezone.now(),
        last_error="",
    )
    return 1


def send(delivery: AlertDelivery) -> None:
    """One message out, by e-mail or webhook; raises when it was not taken."""
    channel = delivery.channel
    if channel is None:
        raise DeliveryFailed("its channel was removed before it went")
    if channel.kind == AlertChannel.Kind.EMAIL:
        address = channel.user.email if channel.user is not None else ""
        if not address:
            raise DeliveryFailed(f"{channel.user} has no e-mail address")
        EmailMessage(delivery.subject, delivery.body, to=[address]).send()
        return
    response = httpx.post(
        channel.url,
        json=webhook_body(delivery),
        timeout=settings.ALERT_WEBHOOK_TIMEOUT_SECONDS,
        follow_redirects=False,
    )
    if not response.is_success:
        raise DeliveryFailed(f"the webhook answered HTTP {response.status_code}: "
                             f"{response.text[:200].strip()}")  # fmt: skip


def _error_words(exc: Exception, channel: AlertChannel | None) -> str:
    words = str(exc) or type(exc).__name__
    if isinstance(exc, httpx.TimeoutException):
        words = f"the webhook did not answer within {settings.ALERT_WEBHOOK_TIMEOUT_SECONDS} s"
    elif isinstance(exc, httpx.TransportError):
        words = f"the webhook could not be reached: {words}"
    elif not isinstance(exc, DeliveryFailed):
        words = f"{type(exc).__name__}: {words}"
    if channel is not None and channel.url:  # a webhook's address is a secret
        words = words.replace(channel.url, channel.url_host)
    return words[:2000]


def _deliver_soon() -> None:
    from connectadmin.tasks import deliver_alerts  # tasks import this module

    def enqueue() -> None:
        try:
            deliver_alerts.delay()
        except Exception as exc:  # no broker: the watchdog sends them at its next look
            log.warning("could not queue the alert deliveries: %s", exc)

    transaction.on_commit(enqueue)


def url_host(url: str) -> str:
    return urlsplit(url).netloc.rpartition("@")[2]


# --- what raises and clears them -----------------------------------------------------------


def _safely(what: str, function: Any, *args: Any) -> None:
    """A hook never breaks the work that called it: an alert not raised is logged."""
    try:
        function(*args)
    except Exception:
        log.exception("could not raise or clear the alert for %s", what)


def import_ended(import_id: int) -> None:
    """After a send run closed (connectadmin's sending calls this on commit)."""
    _safely(f"import {import_id}", _import_ended, import_id)


def _import_ended(import_id: int) -> None:
    from signals_app.models import SignalImport
    from signals_app.outcome import import_outcome

    signal_import = SignalImport.objects.select_related(
        "app_key__account", "attentive_account"
    ).get(pk=import_id)
    subject, account_name = _import_subject(signal_import)
    outcome = import_outcome(signal_import, can_resend=True)
    mode = "live" if signal_import.mode == "live" else "test"
    name = f"Import #{signal_import.pk} ({signal_import.original_name}, {mode})"
    if outcome.tone in ("bad", "warn"):
        raise_alert(
            topic=AlertTopic.IMPORT,
            subject=subject,
            subject_label=f"Imports to {account_name}",
            title=f"{name}: {outcome.label.lower()}",
            # The outcome speaks from the import's page ("resend them below").
            detail=f"{outcome.headline} {on_its_page(outcome.next_step)}".strip(),
            link=reverse("signals:import_detail", args=[signal_import.public_id]),
        )
    elif outcome.fully_accepted:
        clear_alert(
            topic=AlertTopic.IMPORT,
            subject=subject,
            detail=f"{name} to {account_name} completed: {outcome.headline}",
        )


def _import_subject(signal_import: Any) -> tuple[str, str]:
    """The alert subject of an import's sending, and the account it names: the Connect
    account of its app key, or the Attentive account of an import of events."""
    if signal_import.app_key is None:
        account = signal_import.attentive_account
        return f"attentive:{account.pk}", f"Attentive “{account.name}”"
    account = signal_import.app_key.account
    return f"account:{account.pk}", account.name


def live_send_refused(import_id: int, reason: str) -> None:
    """`import_signals` refused to send an import live (its error goes to whatever ran it,
    often a scheduler nobody watches)."""
    _safely(f"import {import_id}", _live_send_refused, import_id, reason)


def _live_send_refused(import_id: int, reason: str) -> None:
    from signals_app.models import SignalImport

    signal_import = SignalImport.objects.select_related(
        "app_key__account", "attentive_account"
    ).get(pk=import_id)
    subject, account_name = _import_subject(signal_import)
    raise_alert(
        topic=AlertTopic.IMPORT,
        subject=subject,
        subject_label=f"Imports to {account_name}",
        title=f"Import #{import_id} ({signal_import.original_name}, live): not sent, refused",
        detail=f"manage.py import_signals: {reason}",
        link=reverse("signals:import_detail", args=[signal_import.public_id]),
    )


def on_its_page(sentence: str) -> str:
    return sentence.replace(" below", " on the import's page", 1).replace(" below", " there")


def export_jobs_ended(job_ids: list[int]) -> None:
    """After export jobs reached their last state (failed, refused, skipped, fetched...)."""
    _safely(f"export jobs {job_ids}", _export_jobs_ended, job_ids)


def _export_jobs_ended(job_ids: list[int]) -> None:
    from exports_app.models import ExportJob, JobStatus

    bad = {JobStatus.FAILED, JobStatus.REFUSED, JobStatus.SKIPPED, JobStatus.EXPIRED}
    jobs = ExportJob.objects.filter(pk__in=job_ids).select_related("account", "schedule")
    for job in jobs.order_by("finished_at", "pk"):
        if job.schedule is not None:
            subject = f"schedule:{job.schedule.pk}"
            label = f"Scheduled export {job.schedule.name} ({job.account.name})"
        else:
            subject = f"exports:{job.account.pk}"
            label = f"Exports of {job.account.name}"
        if job.status in bad:
            raise_alert(
                topic=AlertTopic.EXPORT,
                subject=subject,
                subject_label=label,
                title=f"Export {job.job_name}: {job.get_status_display().lower()}",
                detail=job.error_message or job.get_status_display(),
                link=reverse("exports:job_detail", args=[job.public_id]),
            )
        elif job.status == JobStatus.FETCHED:
            clear_alert(
                topic=AlertTopic.EXPORT,
                subject=subject,
                detail=f"Export {job.job_name} ran and its file was fetched.",
            )


def host_key_changed(*, host: str, port: int, approved: str, offered: str) -> None:
    _safely(f"host {host}:{port}", _host_key_changed, host, port, approved, offered)


def _host_key_changed(host: str, port: int, approved: str, offered: str) -> None:
    raise_alert(
        topic=AlertTopic.HOST_KEY,
        subject=f"{host}:{port}",
        subject_label=f"SFTP host {host}:{port}",
        title=f"The SFTP host {host}:{port} offered a different key",
        detail=(
            f"It offered {offered}, where {approved} is approved. Nothing is downloaded from it "
            "until an administrator approves the new key (Settings → SFTP keys), which they "
            "should do only once the change is confirmed: it may be another server."
        ),
        link=reverse("exports:sftp_settings"),
    )


def host_key_approved(*, host: str, port: int, fingerprint: str) -> None:
    _safely(
        f"host {host}:{port}",
        lambda: clear_alert(
            topic=AlertTopic.HOST_KEY,
            subject=f"{host}:{port}",
            detail=f"The key {fingerprint} of {host}:{port} was approved; downloads go on.",
        ),
    )


# --- the watchdog ----------------------------------------------------------------------------


def watch(*, now: datetime | None = None) -> int:
    """One look: silent workers and scheduler raised or cleared, held messages and
    reminders made, due deliveries sent. How many deliveries went out."""
    from connectadmin import health

    now = now or timezone.now()
    health_link = reverse("health")
    workers = health.workers_check(now)
    if workers.status != "unknown":
        silent = {worker.name: worker for worker in workers.workers if worker.state == "silent"}
        for worker in silent.values():
            raise_alert(
                topic=AlertTopic.WORKER,
                subject=f"worker:{worker.name}",
                subject_label=f"Worker {worker.name}",
                title=f"The worker {worker.name} has been silent for "
                f"{health.duration(worker.seconds_since_seen)}",
                detail="It did not stop cleanly: it was killed, or its machine or its "
                f"connection to the database is gone. {health.START_WORKER}",
                link=health_link,
                continuing=True,
                deliver=False,
            )
        states = {worker.name: worker.words.lower() for worker in workers.workers}
        for alert in Alert.objects.filter(topic=AlertTopic.WORKER, state=AlertState.OPEN):
            name = alert.subject.removeprefix("worker:")
            if name not in silent:
                state = states.get(name, "no longer listed")
                clear_alert(
                    topic=AlertTopic.WORKER,
                    subject=alert.subject,
                    detail=f"The worker {name} is no longer silent: {state}.",
                    deliver=False,
                )
    scheduler = health.scheduler_check(now)
    if scheduler.status != "unknown":
        problems = health.scheduler_problems(scheduler, now)
        if problems:
            raise_alert(
                topic=AlertTopic.SCHEDULER,
                subject="scheduler",
                subject_label="The scheduler (celery beat)",
                title=problems[0].what.partition(":")[0],
                detail=f"{problems[0].what} {problems[0].todo}",
                link=health_link,
                continuing=True,
                deliver=False,
            )
        else:
            clear_alert(
                topic=AlertTopic.SCHEDULER,
                subject="scheduler",
                detail="The scheduler (celery beat) beats again: scheduled exports start.",
                deliver=False,
            )
    remind_due(now=now)
    return deliver_due()


def remind_due(*, now: datetime | None = None) -> int:
    """Messages of open alerts that came due: held ones whose interval is over, reminders."""
    now = now or timezone.now()
    due = Alert.objects.filter(state=AlertState.OPEN).filter(
        Q(notified_at__isnull=True)
        | Q(notified_at__lte=now - repeat_interval(), occurrences__gt=F("notified_occurrences"))
    )
    made = 0
    for pk in list(due.values_list("pk", flat=True)):
        with transaction.atomic():
            alert = Alert.objects.select_for_update().filter(pk=pk, state=AlertState.OPEN).first()
            if alert is not None:
                made += _notify_if_due(alert, now)
    return made


class _Watchdog:
    stop = threading.Event()
    thread: threading.Thread | None = None


def start_watchdog() -> None:
    """In a worker's main process, or in beat: a thread that calls `watch` every
    ALERT_WATCH_SECONDS (never when 0)."""
    if settings.ALERT_WATCH_SECONDS <= 0 or _Watchdog.thread is not None:
        return
    _Watchdog.stop.clear()
    _Watchdog.thread = threading.Thread(
        target=_watch_forever, name="connectadmin-alerts", daemon=True
    )
    _Watchdog.thread.start()


def stop_watchdog() -> None:
    _Watchdog.stop.set()
    _Watchdog.thread = None


def _watch_forever() -> None:
    stop = _Watchdog.stop
    if stop.wait(min(WATCH_FIRST_DELAY_SECONDS, settings.ALERT_WATCH_SECONDS)):
        return
    while True:
        started = time.monotonic()
        try:
            close_old_connections()
            watch()
        except Exception:
            log.exception("the alerts watchdog could not look")
        finally:
            connection.close()
        every = settings.ALERT_WATCH_SECONDS
        if every <= 0 or stop.wait(max(1.0, every - (time.monotonic() - started))):
            return


@worker_ready.connect
@beat_init.connect
@beat_embedded_init.connect
def _process_started(sender: Any = None, **kwargs: Any) -> None:
    start_watchdog()


@worker_shutdown.connect
def _process_stopping(sender: Any = None, **kwargs: Any) -> None:
    stop_watchdog()
