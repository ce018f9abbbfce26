"""Exports with every real part: celery beat with django_celery_beat's database scheduler
fires schedules into a real worker (Redis, PostgreSQL), which submits to the sandbox,
watches the job and fetches its file over SFTP. A one-off schedule fires at its moment; a
daily one whose moment passed while beat was down runs once when beat is back, and only
once. `manage.py export_signals --wait` follows a job the worker fetches."""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, timedelta
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.contrib.auth.models import User
from django.core.management import call_command
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from connectadmin import files
from exports_app.models import ExportJob, JobStatus, Recurrence
from exports_app.services import schedules
from tests.exports.test_jobs import ready_account
from tests.integration.conftest import Workers
from tests.sandbox.support import ULTIMATE_EMAIL, Sandbox
from tests.sandbox.support import signal as make_signal

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def exports_dir(settings: Any, tmp_path: Path) -> Path:
    """Where the workers (CONNECTADMIN_VAR_DIR=tmp/var) keep fetched files."""
    settings.EXPORTS_DIR = tmp_path / "var" / "exports"
    return Path(settings.EXPORTS_DIR)


@contextlib.contextmanager
def running_beat(workers: Workers, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`celery beat` with the database scheduler, as `make run` starts it."""
    command = [
        sys.executable, "-m", "celery", "-A", "connectadmin", "beat", "--loglevel", "INFO",
        "--scheduler", "django_celery_beat.schedulers:DatabaseScheduler",
        "--max-interval", "1", "--pidfile=",
    ]  # fmt: skip
    with log.open("wb") as out:
        beat = subprocess.Popen(
            command,
            cwd=django_settings.BASE_DIR,
            env=workers.env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield beat
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(beat.pid, signal.SIGTERM)
        try:
            beat.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(beat.pid, signal.SIGKILL)
            beat.wait(timeout=5)


def wait_for(condition: Any, seconds: float, what: str, logs: str = "") -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} not within {seconds:g} s\n{logs}")
        time.sleep(0.25)


def test_beat_fires_a_one_off_schedule_and_a_missed_daily_run_once_and_the_worker_fetches(
    sandbox: Sandbox, workers: Workers, exports_dir: Path, tmp_path: Path
) -> None:
    admin = User.objects.create_superuser("scheduler", password="x")
    account = ready_account(sandbox, admin)
    assert sandbox.create_signals([make_signal("order", n=n) for n in range(9)]).status_code == 200
    now = timezone.now()
    once = schedules.schedule_save(
        spec=schedules.ScheduleSpec(
            account=account,
            name="Soon",
            signal_types=["order"],
            window="month_to_date",
            recurrence=Recurrence.ONCE,
            timezone="UTC",
            run_at=now + timedelta(seconds=6),
        ),
        user=admin,
    )
    moment = (now - timedelta(minutes=2)).astimezone(UTC).replace(second=0, microsecond=0)
    daily = schedules.schedule_save(
        spec=schedules.ScheduleSpec(
            account=account,
            name="Every morning",
            signal_types=["order"],
            window="last_7_days",
            recurrence=Recurrence.DAILY,
            timezone="UTC",
            time_of_day=moment.time(),
        ),
        user=admin,
    )
    # Beat last ran this task yesterday and was down at today's moment.
    PeriodicTask.objects.filter(pk=daily.periodic_task_id or 0).update(
        last_run_at=now - timedelta(days=1)
    )

    workers.start(1)
    with running_beat(workers, tmp_path / "beat.log") as beat:
        logs = lambda: workers.log_text() + (tmp_path / "beat.log").read_text()  # noqa: E731

        def fetched(schedule: Any) -> bool:
            return ExportJob.objects.filter(
                schedule=schedule, status=JobStatus.FETCHED, file__types_counted=True
            ).exists()

        wait_for(lambda: fetched(daily), 60, "the missed daily run fetched", logs())
        wait_for(lambda: fetched(once), 60, "the one-off run fetched", logs())
        time.sleep(4)  # beat goes on ticking: neither runs again
        assert beat.poll() is None, logs()

    missed = ExportJob.objects.get(schedule=daily)
    assert missed.scheduled_for == moment
    assert missed.timestamp_end == moment.replace(hour=0, minute=0)  # the window of its moment
    assert missed.timestamp_end - missed.timestamp_start == timedelta(days=7)
    one_off = ExportJob.objects.get(schedule=once)
    assert one_off.scheduled_for == once.run_at
    assert one_off.file is not None and one_off.file.rows_by_type.get("order") == 9
    remote = sandbox.data / "sftp" / ULTIMATE_EMAIL / one_off.remote_path
    assert one_off.file.sha256 == hashlib.sha256(remote.read_bytes()).hexdigest()
    assert not PeriodicTask.objects.get(pk=once.periodic_task_id or 0).enabled  # one-off: done
    assert schedules.next_moment(once, timezone.now()) is None


def test_the_command_waits_for_the_file_the_worker_fetches(
    sandbox: Sandbox, workers: Workers, exports_dir: Path
) -> None:
    admin = User.objects.create_superuser("shell", password="x")
    account = ready_account(sandbox, admin)
    assert sandbox.create_signals([make_signal("addToCart", n=n) for n in range(4)]).status_code
    workers.start(1)
    out = StringIO()
    call_command(
        "export_signals", "--account", account.name, "--types", "addToCart,order",
        "--window", "month_to_date", "--wait", "--timeout", "90", "--poll", "0.3",
        stdout=out, stderr=StringIO(),
    )  # fmt: skip
    text = out.getvalue()
    job = ExportJob.objects.get()
    assert job.status == JobStatus.FETCHED and job.file is not None
    path = Path(files.exports().path(job.file.stored_name))
    assert f"file: {path}" in text and path.exists()
    assert f"sha256: {hashlib.sha256(path.read_bytes()).hexdigest()}" in text
    assert f"rows: {job.file.rows} (" in text and "addToCart 4" in text
    assert "\nfetched\n" in text
