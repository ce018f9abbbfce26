"""Export schedules: saved as django-celery-beat periodic tasks (a crontab in the
schedule's time zone, or a one-off clocked moment), run by celery beat through
`tasks.run_export_schedule`; paused, resumed, edited, deleted; run by hand.

A run exports the schedule's window as of the moment it was due (a run that fires late,
after the scheduler was down, still covers the window of its moment), and becomes an
ExportJob marked with that moment: a moment runs at most once, however often beat fires
it (beat writes its own last-run times only every few minutes, so a restart can fire a
moment again). A run that would pass a daily limit is kept as skipped, with the reason.

Beat runs a moment missed while it was down once when it comes back (a crontab whose
last run is older than its latest moment is due). Resuming or editing a schedule starts
it afresh from now, so a pause does not end in a burst of catch-up runs.
"""

from __future__ import annotations

import calendar
import json
import logging
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from django.db import IntegrityError, transaction
from django.utils import timezone
from django_celery_beat.models import ClockedSchedule, CrontabSchedule, PeriodicTask

from connectadmin.models import ConnectAccount
from exports_app import rules
from exports_app.models import ExportJob, ExportSchedule, Recurrence
from exports_app.services import jobs
from signals_app.models import audit

log = logging.getLogger(__name__)

TASK = "exports_app.tasks.run_export_schedule"
# Beat fires on time or a little late; a moment this close ahead counts as due.
EARLY = timedelta(seconds=60)


@dataclass(frozen=True)
class ScheduleSpec:
    """A checked schedule, as the form gives it."""

    account: ConnectAccount
    name: str
    signal_types: list[str]
    window: str
    recurrence: str
    timezone: str
    run_at: datetime | None = None
    time_of_day: time | None = None
    weekday: int | None = None
    month_day: int | None = None
    notifications: tuple[str, ...] = ()
    placement: str = "default"
    parent_folder: str = ""
    naming_prefix: str = ""


def schedule_save(
    *, spec: ScheduleSpec, user: Any, schedule: ExportSchedule | None = None
) -> ExportSchedule:
    """Create (or edit) a schedule and its periodic task; it runs from now on."""
    with transaction.atomic():
        created = schedule is None
        if schedule is None:
            schedule = ExportSchedule(created_by=user)
        schedule.account = spec.account
        schedule.name = spec.name
        schedule.signal_types = spec.signal_types
        schedule.window = spec.window
        schedule.recurrence = spec.recurrence
        schedule.timezone = spec.timezone
        schedule.run_at = spec.run_at if spec.recurrence == Recurrence.ONCE else None
        recurring = spec.recurrence != Recurrence.ONCE
        schedule.time_of_day = spec.time_of_day if recurring else None
        schedule.weekday = spec.weekday if spec.recurrence == Recurrence.WEEKLY else None
        schedule.month_day = spec.month_day if spec.recurrence == Recurrence.MONTHLY else None
        schedule.notifications = list(spec.notifications)
        schedule.placement = spec.placement
        schedule.parent_folder = spec.parent_folder
        schedule.naming_prefix = spec.naming_prefix
        schedule.save()
        _sync_task(schedule)
        audit(
            action="export.schedule_created" if created else "export.schedule_changed",
            actor=user,
            account=schedule.account.name,
            schedule=schedule.name,
            runs=describe(schedule),
        )
    return schedule


def _sync_task(schedule: ExportSchedule) -> None:
    """Make the schedule's periodic task say what the schedule says, from now on."""
    task = schedule.periodic_task or PeriodicTask(
        name=f"export schedule {schedule.public_id}", task=TASK
    )
    old_clocked = task.clocked if task.clocked_id else None
    task.args = json.dumps([schedule.pk])
    task.description = f"{schedule.name} ({schedule.account.name})"
    task.enabled = schedule.enabled and not _once_done(schedule)
    task.last_run_at = timezone.now()  # no catch-up run for moments before now
    if schedule.recurrence == Recurrence.ONCE:
        assert schedule.run_at is not None
        task.clocked = ClockedSchedule.objects.create(clocked_time=schedule.run_at)
        task.crontab = None
        task.one_off = True
    else:
        assert schedule.time_of_day is not None
        at = schedule.time_of_day
        task.crontab, _ = CrontabSchedule.objects.get_or_create(
            minute=str(at.minute),
            hour=str(at.hour),
            # cron counts days of the week from Sunday (0); the schedule from Monday.
            day_of_week="*" if schedule.weekday is None else str((schedule.weekday + 1) % 7),
            day_of_month="*" if schedule.month_day is None else str(schedule.month_day),
            month_of_year="*",
            timezone=ZoneInfo(schedule.timezone),
        )
        task.clocked = None
        task.one_off = False
    task.save()
    if old_clocked is not None and old_clocked.pk != getattr(task.clocked, "pk", None):
        old_clocked.delete()
    if schedule.periodic_task_id != task.pk:
        ExportSchedule.objects.filter(pk=schedule.pk).update(periodic_task=task)
        schedule.periodic_task = task


def _once_done(schedule: ExportSchedule) -> bool:
    return (
        schedule.recurrence == Recurrence.ONCE
        and schedule.jobs.exclude(scheduled_for=None).exists()
    )


def schedule_pause(*, schedule: ExportSchedule, user: Any) -> None:
    _set_enabled(schedule, False, user)


def schedule_resume(*, schedule: ExportSchedule, user: Any) -> None:
    _set_enabled(schedule, True, user)


def _set_enabled(schedule: ExportSchedule, enabled: bool, user: Any) -> None:
    with transaction.atomic():
        ExportSchedule.objects.filter(pk=schedule.pk).update(enabled=enabled)
        schedule.enabled = enabled
        _sync_task(schedule)
        audit(
            action="export.schedule_resumed" if enabled else "export.schedule_paused",
            actor=user,
            account=schedule.account.name,
            schedule=schedule.name,
        )


def schedule_delete(*, schedule: ExportSchedule, user: Any) -> None:
    """The schedule and its periodic task go; its jobs stay in the history."""
    with transaction.atomic():
        task = schedule.periodic_task
        audit(
            action="export.schedule_deleted",
            actor=user,
            account=schedule.account.name,
            schedule=schedule.name,
        )
        schedule.delete()
        if task is not None:
            clocked = task.clocked
            task.delete()
            if clocked is not None:
                clocked.delete()


def due_moment(schedule: ExportSchedule, now: datetime) -> datetime | None:
    """The schedule's latest moment at or before `now` (a little ahead counts), or None
    when it has none yet."""
    if schedule.recurrence == Recurrence.ONCE:
        return schedule.run_at if schedule.run_at and schedule.run_at <= now + EARLY else None
    zone = ZoneInfo(schedule.timezone)
    at = schedule.time_of_day
    assert at is not None
    local = (now + EARLY).astimezone(zone)
    day = local.date()
    for _ in range(400):  # a monthly schedule's moment is at most a month back
        moment = datetime.combine(day, at, tzinfo=zone)
        if moment <= local and _runs_on(schedule, day.weekday(), day.day):
            return moment
        day -= timedelta(days=1)
    return None


def _runs_on(schedule: ExportSchedule, weekday: int, month_day: int) -> bool:
    if schedule.recurrence == Recurrence.WEEKLY:
        return weekday == schedule.weekday
    if schedule.recurrence == Recurrence.MONTHLY:
        return month_day == schedule.month_day
    return True


def next_moment(schedule: ExportSchedule, now: datetime) -> datetime | None:
    """When the schedule runs next (None: paused, or a one-off already run or past)."""
    if not schedule.enabled:
        return None
    if schedule.recurrence == Recurrence.ONCE:
        if _once_done(schedule) or schedule.run_at is None:
            return None
        return schedule.run_at
    zone = ZoneInfo(schedule.timezone)
    at = schedule.time_of_day
    assert at is not None
    day = now.astimezone(zone).date()
    for _ in range(400):
        moment = datetime.combine(day, at, tzinfo=zone)
        if moment > now and _runs_on(schedule, day.weekday(), day.day):
            return moment
        day += timedelta(days=1)
    return None


def describe(schedule: ExportSchedule) -> str:
    """ "Every Monday at 06:00 (Europe/Paris), exporting the last 7 days"."""
    window = rules.WINDOWS.get(schedule.window, schedule.window).lower()
    if schedule.recurrence == Recurrence.ONCE and schedule.run_at is not None:
        local = schedule.run_at.astimezone(ZoneInfo(schedule.timezone))
        return f"Once, on {local:%a %b %-d %Y at %H:%M} ({schedule.timezone}), exporting {window}"
    at = f"{schedule.time_of_day:%H:%M}" if schedule.time_of_day else "?"
    if schedule.recurrence == Recurrence.WEEKLY and schedule.weekday is not None:
        when = f"Every {calendar.day_name[schedule.weekday]}"
    elif schedule.recurrence == Recurrence.MONTHLY:
        when = f"On day {schedule.month_day} of every month"
    else:
        when = "Every day"
    return f"{when} at {at} ({schedule.timezone}), exporting {window}"


def schedule_run(
    *, schedule_id: int, now: datetime | None = None, by_hand: bool = False, user: Any = None
) -> ExportJob | None:
    """Run the schedule: for its due moment (beat), or now (by hand). The job it made,
    also when skipped or refused; None when the moment has run already, or the schedule
    is gone, paused or has no moment due."""
    now = now or timezone.now()
    schedule = (
        ExportSchedule.objects.select_related("account", "created_by", "periodic_task")
        .filter(pk=schedule_id)
        .first()
    )
    if schedule is None or (not schedule.enabled and not by_hand):
        return None
    moment = None if by_hand else due_moment(schedule, now)
    if not by_hand and moment is None:
        log.warning("schedule %s fired with no moment due at %s", schedule_id, now)
        return None
    if moment is not None and schedule.jobs.filter(scheduled_for=moment).exists():
        log.info("schedule %s: the moment %s has run already", schedule_id, moment)
        return None
    zone = ZoneInfo(schedule.timezone)
    start, end = rules.window_range(schedule.window, moment or now, zone)
    request = jobs.ExportRequest(
        account=schedule.account,
        job_name=_job_name(schedule, moment or now),
        signal_types=list(schedule.signal_types),
        start=start,
        end=end,
        window=schedule.window,
        notifications=list(schedule.notifications),
        placement=schedule.placement,
        target=rules.Placement(
            parent_folder=schedule.parent_folder, naming_prefix=schedule.naming_prefix
        ),
    )
    ExportSchedule.objects.filter(pk=schedule.pk).update(last_run_at=now)
    task = schedule.periodic_task
    if moment is not None and schedule.recurrence == Recurrence.ONCE and task is not None:
        task.enabled = False  # its one moment has come (saving tells beat)
        task.save(update_fields=["enabled"])
    try:
        return jobs.export_submit(
            request=request,
            user=user or schedule.created_by,
            schedule=schedule,
            scheduled_for=moment,
        )
    except jobs.ExportRefused as refused:
        log.info("schedule %s: %s", schedule_id, refused.message)
        return schedule.jobs.filter(job_name=request.job_name).first()
    except IntegrityError:  # another worker ran this moment at the same time
        return None


def _job_name(schedule: ExportSchedule, moment: datetime) -> str:
    local = moment.astimezone(ZoneInfo(schedule.timezone))
    base = f"{schedule.name} — {local:%Y-%m-%d %H:%M}"
    taken = set(
        ExportJob.objects.filter(account=schedule.account, job_name__startswith=base).values_list(
            "job_name", flat=True
        )
    )
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{base} ({n})"
    return name[:200]
