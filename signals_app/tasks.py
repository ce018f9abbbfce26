"""Celery entry points: thin, by id, re-runnable. The ledger makes re-running safe, which is
why these tasks acknowledge late and are re-queued when a worker dies (SPEC §6); validation
starts over, and the corrected file of applied fixes is renamed into place only once whole.
Work that keeps killing its worker is given up after a few starts (services.deliveries), and
validation reads the file in a child process whose death is the import's verdict, not the
worker's (services.validation)."""

import logging
import threading
from typing import Any

from celery import shared_task
from celery.signals import worker_ready, worker_shutdown

import signals_app.services.fixes as fixes
import signals_app.services.sending as sending
import signals_app.services.validation as validation
from signals_app.validation import scratch

log = logging.getLogger(__name__)


@shared_task(acks_late=True, reject_on_worker_lost=True)
def validate_import(import_id: int) -> None:
    validation.import_validate(import_id=import_id)


@shared_task(acks_late=True, reject_on_worker_lost=True)
def write_fixed_file(import_id: int, source_id: int, fix_ids: list[str]) -> None:
    """Write the corrected file of an import made by applying fixes, then queue its validation."""
    fixes.import_write_fixed_file(import_id=import_id, source_id=source_id, fixes=fix_ids)


@shared_task(acks_late=True, reject_on_worker_lost=True)
def send_import(import_id: int, lane: int | None = None) -> None:
    """One lane of the import's send (every lane in turn when None)."""
    sending.import_send_run(import_id=import_id, lane=lane)


@shared_task(acks_late=True, reject_on_worker_lost=True)
def resume_stalled_sends() -> None:
    """Every minute (celery beat): re-enqueue sends whose worker died."""
    sending.resume_stalled_sends()


# --- scratch folders of validation runs whose process died ---------------------------------

SCRATCH_SWEEP_SECONDS = 600.0
_sweeping = threading.Event()  # set: stop


def _sweep_scratch_forever() -> None:
    """Each worker sweeps its machine's temp directory (scratch.sweep) as it starts, then
    every SCRATCH_SWEEP_SECONDS: a pool child killed mid-validation leaves its folders."""
    while True:
        try:
            for path in scratch.sweep():
                log.info("removed %s: its validation run's process is gone", path)
        except Exception:
            log.exception("could not sweep the validation runs' scratch folders")
        if _sweeping.wait(SCRATCH_SWEEP_SECONDS):
            return


@worker_ready.connect
def _worker_ready(sender: Any = None, **kwargs: Any) -> None:
    _sweeping.clear()
    threading.Thread(
        target=_sweep_scratch_forever, name="connectadmin-scratch-sweep", daemon=True
    ).start()


@worker_shutdown.connect
def _worker_shutdown(sender: Any = None, **kwargs: Any) -> None:
    _sweeping.set()
