"""Celery entry points: thin, by id, re-runnable. The ledger makes re-running safe, which is
why these tasks acknowledge late and are re-queued when a worker dies (SPEC §6)."""

from celery import shared_task

import signals_app.services.imports as imports
import signals_app.services.sending as sending


@shared_task(acks_late=True, reject_on_worker_lost=True)
def validate_import(import_id: int) -> None:
    imports.import_validate(import_id=import_id)


@shared_task(acks_late=True, reject_on_worker_lost=True)
def send_import(import_id: int) -> None:
    sending.import_send_run(import_id=import_id)


@shared_task(acks_late=True, reject_on_worker_lost=True)
def resume_stalled_sends() -> None:
    """Every minute (celery beat): re-enqueue sends whose worker died."""
    sending.resume_stalled_sends()
