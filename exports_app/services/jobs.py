"""Asking Connect for an export (SPEC §7): the daily limits checked first, the job written
before the call (its name reserved), `exportSignals` called, and what Connect answered
kept: the job queued with its `dataJobId`, `path` and `fileFormat`, then watched
(`watching`) until its file is fetched (`fetching`).

A refusal (a limit, Connect's own) leaves no job behind when a person asked (the form
says why, field by field, and the name stays free); a scheduled run keeps its refused or
skipped job in the history, with the reason.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from connectadmin import alerts
from connectadmin.models import ConnectAccount
from exports_app import rules
from exports_app.models import ExportJob, ExportSchedule, JobStatus
from exports_app.services import limits
from exports_app.services.keys import connect_for
from signals_app.models import audit

log = logging.getLogger(__name__)

# Connect's extensions.field, as the form names it.
_FIELDS = {
    "jobName": "job_name",
    "export.signals.signalTypes": "signal_types",
    "export.signals.timestampStart": "timestamp_start",
    "export.signals.timestampEnd": "timestamp_end",
    "notifications": "notifications",
    "to.sftp.parentFolder": "parent_folder",
    "to.sftp.namingPrefix": "naming_prefix",
    "to.sftp.path": "target_path",
}


class ExportRefused(Exception):
    def __init__(self, message: str, field: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.field = field


@dataclass(frozen=True)
class ExportRequest:
    """A checked request (rules.*): what exportSignals is sent."""

    account: ConnectAccount
    job_name: str
    signal_types: list[str]
    start: datetime
    end: datetime
    window: str = ""
    notifications: list[str] = field(default_factory=list)
    placement: str = "default"
    target: rules.Placement = field(default_factory=rules.Placement)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def export_submit(
    *,
    request: ExportRequest,
    user: Any,
    schedule: ExportSchedule | None = None,
    scheduled_for: datetime | None = None,
) -> ExportJob:
    """Submit the export; the job, queued. ExportRefused when a limit or Connect says no
    (a scheduled run's job is then kept as skipped or refused, see the module docstring)."""
    account = request.account
    with connect_for(account) as connect:
        vendor = connect.usage()
        usage = limits.with_vendor_count(
            limits.usage_of(account), vendor.data if vendor.ok else None
        )
        over = limits.refusal(usage)
        if over is not None:
            if schedule is not None:
                _record(request, user, schedule, scheduled_for, JobStatus.SKIPPED, over)
            audit(action="export.refused_limit", actor=user, account=account.name, reason=over)
            raise ExportRefused(over)
        try:
            with transaction.atomic():
                job = _job(request, user, schedule, scheduled_for, JobStatus.SUBMITTING)
        except IntegrityError:
            raise ExportRefused(
                f"An export named {request.job_name!r} exists already for {account.name}; "
                "names must be unique.",
                "job_name",
            ) from None
        answer = connect.export_signals(
            job_name=request.job_name,
            signal_types=request.signal_types,
            start=iso(request.start),
            end=iso(request.end),
            notifications=request.notifications,
            to=request.target.as_sftp(),
        )
    now = timezone.now()
    if not answer.ok:
        if not answer.reached:
            # The call may have reached Connect: keep the job (its name is taken there
            # perhaps) and say so, rather than pretend nothing happened.
            ExportJob.objects.filter(pk=job.pk).update(
                status=JobStatus.FAILED,
                finished_at=now,
                error_message=f"{answer.error}: the job may exist at Connect all the same "
                "(check Data management → Job monitoring there).",
            )
            alerts.export_jobs_ended([job.pk])
            raise ExportRefused(f"{answer.error}. The job may exist at Connect all the same.")
        message = f"Connect refused the export: {answer.error}"
        if schedule is None:
            job.delete()  # the name stays free; the refusal is in the audit trail
        else:
            ExportJob.objects.filter(pk=job.pk).update(
                status=JobStatus.REFUSED, error_message=message, finished_at=now
            )
            alerts.export_jobs_ended([job.pk])
        audit(
            action="export.refused",
            actor=user,
            account=account.name,
            job_name=request.job_name,
            code=answer.code,
            error=answer.error,
        )
        raise ExportRefused(message, _FIELDS.get(answer.field.split("[")[0], ""))
    data = answer.data
    ExportJob.objects.filter(pk=job.pk).update(
        status=JobStatus.QUEUED,
        data_job_id=str(data.get("dataJobId") or ""),
        remote_path=str(data.get("path") or ""),
        file_format=str(data.get("fileFormat") or ""),
        submitted_at=now,
        next_poll_at=now,
    )
    job.refresh_from_db()
    audit(
        action="export.submitted",
        actor=user,
        account=account.name,
        job_name=job.job_name,
        data_job_id=job.data_job_id,
        path=job.remote_path,
    )
    from exports_app.tasks import watch_export  # the tasks module imports this one

    transaction.on_commit(functools.partial(watch_export.apply_async, (job.pk,), countdown=2))
    return job


def _job(
    request: ExportRequest,
    user: Any,
    schedule: ExportSchedule | None,
    scheduled_for: datetime | None,
    status: str,
) -> ExportJob:
    target = request.target
    return ExportJob.objects.create(
        account=request.account,
        created_by=user if getattr(user, "pk", None) else None,
        schedule=schedule,
        scheduled_for=scheduled_for,
        job_name=request.job_name,
        signal_types=request.signal_types,
        timestamp_start=request.start,
        timestamp_end=request.end,
        window=request.window,
        notifications=request.notifications,
        placement=request.placement,
        parent_folder=target.parent_folder,
        naming_prefix=target.naming_prefix,
        target_path=target.path,
        status=status,
    )


def _record(
    request: ExportRequest,
    user: Any,
    schedule: ExportSchedule,
    scheduled_for: datetime | None,
    status: str,
    reason: str,
) -> ExportJob:
    """A scheduled run that did not reach Connect, kept in the history with its reason."""
    job = _job(request, user, schedule, scheduled_for, status)
    ExportJob.objects.filter(pk=job.pk).update(error_message=reason, finished_at=timezone.now())
    alerts.export_jobs_ended([job.pk])
    return job
