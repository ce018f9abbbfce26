"""Watching an export job until its file is on SFTP (SPEC §6: no job-status query is
published, so the file's arrival decides where the endpoint has none). Each look is one
task run that schedules the next, with backoff (5 s doubling to 2 min) and a deadline
(EXPORT_WATCH_HOURS); a sweep (celery beat, every minute) picks up a watch whose task was
lost. A job whose file is there moves on to fetching.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from connectadmin import alerts
from exports_app.models import ExportFile, ExportJob, JobStatus
from exports_app.services import fetching
from exports_app.services.keys import account_session, connect_for
from exports_app.sftp_client import SftpError
from signals_app.models import audit

log = logging.getLogger(__name__)

WATCHED = (JobStatus.QUEUED, JobStatus.RUNNING)
_VENDOR_STATES = {"QUEUED": JobStatus.QUEUED, "RUNNING": JobStatus.RUNNING}


def next_delay(polls: int) -> float:
    return float(min(5 * 2**polls, 120))


def job_watch(*, job_id: int, now: datetime | None = None) -> float | None:
    """Look at the job once; the seconds until the next look, or None when done watching."""
    now = now or timezone.now()
    job = ExportJob.objects.select_related("account").filter(pk=job_id).first()
    if job is None or job.status not in WATCHED:
        return None
    deadline = (job.submitted_at or job.created_at) + timedelta(hours=settings.EXPORT_WATCH_HOURS)
    with connect_for(job.account) as connect:
        answer = connect.data_job(job.data_job_id) if job.data_job_id else None
    status = job.status
    updates: dict[str, object] = {"polls": job.polls + 1}
    ready = False
    if answer is not None and answer.ok:
        data = answer.data
        vendor = str(data.get("status") or "")
        updates["vendor_status"] = vendor
        if isinstance(data.get("rows"), int):
            updates["vendor_rows"] = data["rows"]
        if isinstance(data.get("sizeBytes"), int):
            updates["vendor_bytes"] = data["sizeBytes"]
        if vendor == "FAILED":
            _finish(
                job,
                JobStatus.FAILED,
                f"Connect says the export failed: {data.get('error') or 'no reason given'}",
            )
            return None
        if vendor == "COMPLETED":
            ready = True
        status = _VENDOR_STATES.get(vendor, status)
    elif job.remote_path:
        # No status from the endpoint (Connect has none): the file's arrival decides.
        try:
            with account_session(job.account) as sftp:
                ready = sftp.size(job.remote_path) is not None
        except SftpError as exc:
            updates["error_message"] = f"Watching the SFTP folder: {exc}"
    if ready:
        ExportJob.objects.filter(pk=job.pk).update(**updates)
        _ready(job, now)
        return None
    if now >= deadline:
        _finish(
            job,
            JobStatus.FAILED,
            f"No file appeared in {settings.EXPORT_WATCH_HOURS} hours; Connect's Job monitoring "
            "may say why.",
        )
        return None
    delay = next_delay(job.polls)
    updates["status"] = status
    updates["next_poll_at"] = now + timedelta(seconds=delay)
    ExportJob.objects.filter(pk=job.pk, status__in=WATCHED).update(**updates)
    return delay


def _ready(job: ExportJob, now: datetime) -> None:
    """The file is on SFTP: the job moves to fetching it into the archive."""
    with transaction.atomic():
        export_file, _ = ExportFile.objects.get_or_create(
            account=job.account,
            remote_path=job.remote_path,
            defaults={"stored_name": fetching.new_stored_name()},
        )
        ExportJob.objects.filter(pk=job.pk).update(
            status=JobStatus.FETCHING, ready_at=now, file=export_file, error_message=""
        )
    audit(action="export.ready", job_name=job.job_name, path=job.remote_path)
    fetching.queue_fetch(export_file)


def _finish(job: ExportJob, status: str, message: str) -> None:
    ExportJob.objects.filter(pk=job.pk).update(
        status=status, error_message=message, finished_at=timezone.now()
    )
    audit(action=f"export.{status}", job_name=job.job_name, reason=message)
    alerts.export_jobs_ended([job.pk])


def lost_watches(*, now: datetime | None = None) -> list[int]:
    """Jobs whose next look is more than two minutes overdue (their task was lost with a
    worker): the ids to enqueue again."""
    now = now or timezone.now()
    overdue = now - timedelta(minutes=2)
    return list(
        ExportJob.objects.filter(status__in=WATCHED, next_poll_at__lt=overdue).values_list(
            "pk", flat=True
        )
    )
