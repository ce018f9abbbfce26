"""Poison work ends. The tasks that a dead worker leaves behind (validation, the corrected
file of fixes, each lane of a send) acknowledge late and are put back when their worker
dies, which is right once (the worker was killed for another reason) and wrong forever (the
work itself kills the worker). Each start is counted durably before the work begins and the
count cleared when it ends, however it ends, or when it moves on (a send's lane settled a
batch: restarts of a long send by deploys or reboots never add up); a start that finds the
count past SIGNALS_TASK_MAX_STARTS (default 3) gives up instead: the caller marks the work
failed, saying why, and the message is acknowledged.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from signals_app.models import TaskStart

VALIDATE = "validate"
WRITE_FIXED_FILE = "write_fixed_file"
SEND = "send"


class GaveUp(Exception):
    """The work started `starts` times already without finishing: not again."""

    def __init__(self, starts: int) -> None:
        super().__init__(f"started {starts} times without finishing")
        self.starts = starts


def max_starts() -> int:
    return max(1, int(getattr(settings, "SIGNALS_TASK_MAX_STARTS", 3)))


class Start:
    """This start of the work, counted."""

    def __init__(self, row: TaskStart) -> None:
        self._row = row
        self.number = row.starts
        self._progressed = False

    def progressed(self) -> None:
        """The work moved on (a batch of a lane was settled): the runs that died before
        did not die of it, so they no longer count. Written once per start."""
        if not self._progressed:
            self._progressed = True
            TaskStart.objects.filter(pk=self._row.pk).update(starts=1)


@contextlib.contextmanager
def counted_start(*, job: str, import_id: int, lane: int = 0) -> Iterator[Start]:
    """Count this start (committed before the work), clear the count when the work ends;
    GaveUp, before the work, when it already started max_starts() times without ending
    (or moving on, see Start.progressed)."""
    with transaction.atomic():
        row, _ = TaskStart.objects.select_for_update().get_or_create(
            job=job, signal_import_id=import_id, lane=lane
        )
        row.starts += 1
        row.last_started_at = timezone.now()
        row.save(update_fields=["starts", "last_started_at"])
    if row.starts > max_starts():
        raise GaveUp(row.starts - 1)
    try:
        yield Start(row)
    except Exception:
        _finished(row)  # it ended, if badly: the caller says how
        raise
    else:
        _finished(row)
    # SystemExit and KeyboardInterrupt pass by: the process is going (a pool child ended by
    # a signal), the work did not end, and this start still counts.


def _finished(row: TaskStart) -> None:
    TaskStart.objects.filter(pk=row.pk).update(starts=0, last_finished_at=timezone.now())


def clear_starts(*, job: str, import_id: int, lane: int | None = None) -> None:
    """A person asked for the work again (a resend, a new send): count from zero."""
    rows = TaskStart.objects.filter(job=job, signal_import_id=import_id)
    if lane is not None:
        rows = rows.filter(lane=lane)
    rows.update(starts=0)
