"""Celery entry points of exports: thin, by id, re-runnable."""

import contextlib

from celery import shared_task

import exports_app.services.fetching as fetching
import exports_app.services.schedules as schedules
import exports_app.services.watching as watching


@shared_task(acks_late=True, reject_on_worker_lost=True)
def watch_export(job_id: int) -> None:
    """Look at the job once, and schedule the next look."""
    delay = watching.job_watch(job_id=job_id)
    if delay is not None:
        watch_export.apply_async((job_id,), countdown=delay)


@shared_task(acks_late=True, reject_on_worker_lost=True)
def fetch_export(file_id: int) -> None:
    with contextlib.suppress(fetching.FetchFailed):  # said on the file and its job
        fetching.file_fetch(file_id=file_id)


@shared_task(acks_late=True, reject_on_worker_lost=True)
def resume_export_watches() -> None:
    """Every minute (celery beat): watches whose task was lost with a worker."""
    for job_id in watching.lost_watches():
        watch_export.delay(job_id)


@shared_task(acks_late=True, reject_on_worker_lost=True)
def run_export_schedule(schedule_id: int) -> None:
    """Fired by celery beat (django_celery_beat's periodic task of the schedule)."""
    schedules.schedule_run(schedule_id=schedule_id)


@shared_task(acks_late=True, reject_on_worker_lost=True)
def purge_export_archive() -> None:
    """Every hour (celery beat): fetched files past their retention leave the archive."""
    fetching.archive_purge()
