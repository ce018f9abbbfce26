"""The real parts for sending: the sandbox process and Celery worker processes, against
PostgreSQL and Redis or RabbitMQ (CI sets DATABASE_URL and CELERY_BROKER_URL; elsewhere
these tests skip loudly). The worker uses pytest-django's test database, so tests that
enqueue work use `django_db(transaction=True)`: what the test writes is committed and
visible. The tests marked `broker` run on Redis and again on RabbitMQ in CI (see the
Makefile's pytest-rabbitmq)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.conf import settings as django_settings
from django.db import connection
from kombu import Exchange, Queue

from connectadmin.celery import app as celery_app
from tests.conftest import require
from tests.sandbox.support import Sandbox, running_sandbox

READY_TIMEOUT = 60.0


class Workers:
    """Celery worker processes on one private queue; each in its own process group so a
    kill takes its pool child too."""

    def __init__(self, env: dict[str, str], queue: str, logs: Path) -> None:
        self.env = env
        self.queue = queue
        self.logs = logs
        self.running: list[subprocess.Popen[bytes]] = []
        self.started = 0

    def start(self, count: int = 1) -> None:
        """Start `count` more worker processes together and wait until each is ready. Together:
        on RabbitMQ a killed worker's tasks go to the first worker ready, so workers started
        one after the other would take them up seconds apart."""
        starting = [self._spawn() for _ in range(count)]
        deadline = time.monotonic() + READY_TIMEOUT
        for process, log in starting:
            while b" ready." not in log.read_bytes():
                if process.poll() is not None:
                    pytest.fail(f"worker exited ({process.returncode}):\n{self.log_text()}")
                if time.monotonic() > deadline:
                    pytest.fail(f"worker not ready after {READY_TIMEOUT:g} s:\n{self.log_text()}")
                time.sleep(0.1)

    def _spawn(self) -> tuple[subprocess.Popen[bytes], Path]:
        self.started += 1
        log = self.logs / f"worker-{self.started}.log"
        command = [
            sys.executable, "-m", "celery", "-A", "connectadmin", "worker",
            "--concurrency", "1", "-Q", self.queue, "-n", f"{self.queue}-{self.started}@%h",
            "--without-gossip", "--without-mingle", "--without-heartbeat", "--loglevel", "INFO",
        ]  # fmt: skip
        with log.open("wb") as out:
            process = subprocess.Popen(
                command,
                cwd=django_settings.BASE_DIR,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.running.append(process)
        return process, log

    def kill(self) -> None:
        """SIGKILL every worker and its pool: no clean-up, no acknowledgement."""
        for process in self.running:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        self.running = []

    def stop(self) -> None:
        for process in self.running:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
        for process in self.running:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=15)
        self.kill()  # whatever is left of the groups

    def log_text(self) -> str:
        return "\n".join(
            f"--- {path.name}\n{path.read_text(errors='replace')[-4000:]}"
            for path in sorted(self.logs.glob("worker-*.log"))
        )


def broker_kind() -> str:
    """The broker the test process and its workers use: "redis", "rabbitmq" or "" (the
    file-system one, which no test of the real parts runs on)."""
    scheme = os.environ.get("CELERY_BROKER_URL", "").partition("://")[0]
    if scheme in ("redis", "rediss"):
        return "redis"
    if scheme in ("amqp", "amqps", "pyamqp"):
        return "rabbitmq"
    return ""


@pytest.fixture
def real_parts(django_db_setup: None) -> None:
    require(
        broker_kind() != "",
        "Redis or RabbitMQ (CELERY_BROKER_URL=redis://... or amqp://...)",
    )
    require(connection.vendor == "postgresql", "PostgreSQL (DATABASE_URL=postgres://...)")


def delete_queue(queue: str) -> None:
    """RabbitMQ keeps a quorum queue (durable) and its exchange after the workers are gone:
    delete this test's own, so that nothing of it is left on the broker."""
    with celery_app.connection_for_write() as conn:
        Queue(queue, channel=conn.default_channel).delete()
        Exchange(queue, channel=conn.default_channel).delete()


@pytest.fixture
def imports_dir(tmp_path: Path, settings: Any) -> Path:
    folder = tmp_path / "imports"
    folder.mkdir()
    settings.IMPORTS_DIR = folder
    return folder


@pytest.fixture
def workers(real_parts: None, imports_dir: Path, tmp_path: Path) -> Iterator[Workers]:
    """A worker factory on a queue of this test's own; the test process enqueues there."""
    queue = f"sending-test-{uuid.uuid4().hex[:12]}"
    url = urlsplit(os.environ["DATABASE_URL"])
    env = {
        **os.environ,
        "DATABASE_URL": url._replace(path=f"/{connection.settings_dict['NAME']}").geturl(),
        "DJANGO_SETTINGS_MODULE": "tests.integration.worker_settings",
        "IMPORTS_DIR": str(imports_dir),
        "CONNECTADMIN_VAR_DIR": str(tmp_path / "var"),
        "TEST_CELERY_QUEUE": queue,
        "PYTHONUNBUFFERED": "1",
    }
    logs = tmp_path / "worker-logs"
    logs.mkdir()
    pool = Workers(env, queue, logs)
    previous = celery_app.conf.task_default_queue
    celery_app.conf.task_default_queue = queue
    try:
        yield pool
    finally:
        celery_app.conf.task_default_queue = previous
        pool.stop()
        if broker_kind() == "rabbitmq":
            delete_queue(queue)


@pytest.fixture
def sandbox(real_parts: None, tmp_path: Path) -> Iterator[Sandbox]:
    with running_sandbox(tmp_path / "sandbox") as running:
        yield running
