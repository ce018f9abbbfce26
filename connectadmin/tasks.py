"""Celery entry points of the project itself: thin, re-runnable."""

from typing import Any

from celery import shared_task

import connectadmin.heartbeats as heartbeats


@shared_task(bind=True, ignore_result=True)
def record_heartbeat(self: Any) -> None:
    """Every 30 s (celery beat): the worker that runs it has taken a task from the queue, so
    broker, worker and database work together (connectadmin.heartbeats)."""
    heartbeats.heartbeat_record(kind="worker", name=str(self.request.hostname), ran=True)
    heartbeats.heartbeats_forget()


@shared_task(ignore_result=True)
def deliver_alerts() -> None:
    """Send the alert messages waiting: queued as soon as one is made, and every minute by
    beat for the reminders and held alerts that came due and the retries (the watchdog of
    connectadmin.alerts does the same from each worker and from beat itself)."""
    from connectadmin import alerts

    alerts.remind_due()
    alerts.deliver_due()
