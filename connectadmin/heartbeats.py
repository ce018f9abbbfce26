"""Signs of life of the Celery processes, written by the processes themselves into the
Heartbeat table, so that the health checks (connectadmin.health) can say how long each has
been silent, on any broker (the embedded file-system one too), and after a process is gone.

- The scheduler (celery beat): every task it publishes marks it seen, from the beat process
  itself; the heartbeat task it sends every 30 s (CELERY_BEAT_SCHEDULE) keeps that regular.
  Recorded by beat and not by the worker that runs the task, so a dead worker does not make
  a live scheduler look silent.
- A worker: started (worker_ready); alive (Celery's own worker heartbeat, every 2 s in the
  main process, written every 20 s from a thread, off its event loop), which holds while
  every pool slot is busy with a long task; took a task from the queue (it ran the heartbeat task:
  broker, worker and database all work); stopped (worker_shutdown: a warm shutdown only, a
  killed worker says nothing).

Celery's inspect() answers only while a worker is up and needs a round trip over the broker
at every look; these rows stay when a process dies, which is what tells "silent for 7
minutes" from "never started". The Health page still asks inspect() for the tasks running.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from datetime import timedelta
from typing import Any

from celery.signals import (
    after_task_publish,
    beat_embedded_init,
    beat_init,
    heartbeat_sent,
    worker_ready,
    worker_shutdown,
)
from django.db import close_old_connections, connection
from django.db.models import Exists, Q
from django.utils import timezone

logger = logging.getLogger(__name__)

# How often a process writes a sign of life it gets more often (beat publishes every 15 s or
# so, Celery's worker heartbeat comes every 2 s): the rows stay fresh well inside
# HEALTH_SILENT_SECONDS (at least 60 s) without a write each time.
BEAT_RECORD_EVERY_SECONDS = 10.0
WORKER_RECORD_EVERY_SECONDS = 20.0
# Rows of processes gone this long are forgotten (devstack names its worker by pid); of
# those that stopped cleanly or were followed by another scheduler, sooner.
FORGET_AFTER = timedelta(days=7)
FORGET_SETTLED_AFTER = timedelta(days=1)


def heartbeat_record(
    *, kind: str, name: str, started: bool = False, ran: bool = False, stopped: bool = False
) -> None:
    """One sign of life of a worker or scheduler: an upsert, safe from several processes."""
    from connectadmin.models import Heartbeat  # the Celery signals import this module early

    now = timezone.now()
    row = Heartbeat(
        kind=kind,
        name=name[:255],
        seen_at=now,
        started_at=now if started else None,
        ran_at=now if ran else None,
        stopped_at=now if stopped else None,
    )
    fields = ["seen_at"]
    if started:
        fields += ["started_at", "stopped_at"]  # a start clears an earlier goodbye
    if ran:
        fields.append("ran_at")
    if stopped:
        fields.append("stopped_at")
    Heartbeat.objects.bulk_create(
        [row], update_conflicts=True, unique_fields=["kind", "name"], update_fields=fields
    )


def heartbeats_forget() -> int:
    """Forget the processes nobody needs to hear about: gone for a week, or for a day when
    they stopped cleanly or a newer scheduler beats (every `make run` leaves one of each).
    Returns how many rows went."""
    from connectadmin.models import Heartbeat

    now = timezone.now()
    day_ago = now - FORGET_SETTLED_AFTER
    beats_now = Heartbeat.objects.filter(kind=Heartbeat.Kind.SCHEDULER, seen_at__gte=day_ago)
    forget = (
        Q(seen_at__lt=now - FORGET_AFTER)
        | Q(kind=Heartbeat.Kind.WORKER, stopped_at__isnull=False, seen_at__lt=day_ago)
        | Q(kind=Heartbeat.Kind.SCHEDULER, seen_at__lt=day_ago) & Exists(beats_now)
    )
    deleted, _ = Heartbeat.objects.filter(forget).delete()
    return deleted


def scheduler_name() -> str:
    return f"{socket.gethostname()} (pid {os.getpid()})"


def _record_safely(**fields: Any) -> None:
    """A heartbeat that cannot be written is logged, never raised into Celery's machinery:
    the silence itself is what the health check reports."""
    try:
        if not connection.in_atomic_block:  # (inside one, closing would break the caller's)
            close_old_connections()  # a connection the database dropped is replaced
        heartbeat_record(**fields)
    except Exception as exc:
        logger.warning("Could not record a heartbeat of %s: %s", fields.get("name"), exc)


# --- celery beat ---------------------------------------------------------------------


class _Beat:
    """Set in the beat process only (beat_init): publishes elsewhere are not beats."""

    running = False
    recorded = 0.0  # time.monotonic() of the last write


@beat_init.connect
@beat_embedded_init.connect
def _beat_started(sender: Any = None, **kwargs: Any) -> None:
    _Beat.running = True
    _Beat.recorded = time.monotonic()
    _record_safely(kind="scheduler", name=scheduler_name(), started=True)


@after_task_publish.connect
def _beat_published(sender: Any = None, **kwargs: Any) -> None:
    # Beat is one thread: no lock needed.
    if not _Beat.running or time.monotonic() - _Beat.recorded < BEAT_RECORD_EVERY_SECONDS:
        return
    _Beat.recorded = time.monotonic()
    _record_safely(kind="scheduler", name=scheduler_name())


# --- workers -------------------------------------------------------------------------

# A worker's start is written a few seconds late: `make run` starts beat beside it, and on
# SQLite django_celery_beat's first writes of its schedule fail ("database is locked", the
# entry left out until beat restarts) when another process writes at that very moment.
START_RECORD_DELAY_SECONDS = 5.0

_alive_lock = threading.Lock()
_alive_recorded: dict[str, float] = {}  # worker name -> time.monotonic() of the last write
_start_timers: dict[str, threading.Timer] = {}


def _record_in_thread(**fields: Any) -> None:
    try:
        _record_safely(**fields)
    finally:
        connection.close()  # the thread's own connection


@worker_ready.connect
def _worker_started(sender: Any = None, **kwargs: Any) -> None:
    name = str(sender.hostname)
    with _alive_lock:
        _alive_recorded[name] = time.monotonic()  # Celery's heartbeats wait their turn
    timer = threading.Timer(
        START_RECORD_DELAY_SECONDS,
        _record_in_thread,
        kwargs={"kind": "worker", "name": name, "started": True},
    )
    timer.daemon = True
    _start_timers[name] = timer
    timer.start()


@worker_shutdown.connect
def _worker_stopped(sender: Any = None, **kwargs: Any) -> None:
    name = str(sender.hostname)
    timer = _start_timers.pop(name, None)
    if timer is not None:
        timer.cancel()
    _record_safely(kind="worker", name=name, stopped=True)


@heartbeat_sent.connect
def _worker_alive(sender: Any = None, **kwargs: Any) -> None:
    """Celery's worker heartbeat runs on the worker's event loop: the write goes to a thread
    of its own, so a database waiting on a lock never holds up the consumer."""
    name = str(sender.eventer.hostname)
    now = time.monotonic()
    with _alive_lock:
        last = _alive_recorded.get(name)
        if last is not None and now - last < WORKER_RECORD_EVERY_SECONDS:
            return
        _alive_recorded[name] = now
    if last is None:
        return  # the first comes as the worker starts: worker_ready records the start
    threading.Thread(
        target=_record_in_thread,
        kwargs={"kind": "worker", "name": name},
        name="connectadmin-heartbeat",
        daemon=True,
    ).start()
