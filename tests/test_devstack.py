"""`manage.py devstack` end to end: real child processes, real ports, real signals."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from django.conf import settings
from django.db import connection
from django.test import override_settings

from connectadmin.management.commands.devstack import LOCAL, sandbox_arguments
from tests.conftest import require

START_TIMEOUT = 90.0
STOP_TIMEOUT = 45.0  # the command's own grace period for a child is 15 s


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Stack:
    process: subprocess.Popen[str]
    port: int
    lines: list[str] = field(default_factory=list)

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def child_pids(self) -> dict[str, int]:
        return {
            name: int(pid)
            for name, pid in re.findall(r"^started (\w+) \(pid (\d+)\)", self.output, re.M)
        }

    def wait_for(self, predicate: Callable[[], bool], what: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if self.process.poll() is not None:
                pytest.fail(
                    f"devstack exited ({self.process.returncode}) before {what}:\n{self.output}"
                )
            if time.monotonic() > deadline:
                pytest.fail(f"no {what} within {timeout:g} s:\n{self.output}")
            time.sleep(0.2)

    def get(self, path: str) -> tuple[int, bytes]:
        with LOCAL.open(f"http://127.0.0.1:{self.port}{path}", timeout=5) as response:
            return response.status, response.read()

    def answers(self, path: str) -> bool:
        try:
            return self.get(path)[0] == 200
        except OSError:
            return False


def group_alive(pid: int) -> bool:
    """Whether any process of the group this child leads is left (its pool included)."""
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def stack_env(tmp_path: Path, django_db_setup: None) -> dict[str, str]:
    """The environment of `make run`, private to this test: its own var/ folder and ports,
    and the test database (the default one may not exist; the stack only reads it)."""
    env = {
        **os.environ,
        "CONNECTADMIN_VAR_DIR": str(tmp_path),
        "SANDBOX_HTTP_PORT": str(free_port()),
        "SANDBOX_SFTP_PORT": str(free_port()),
    }
    database = connection.settings_dict
    if "DATABASE_URL" in os.environ and not database["ENGINE"].endswith("sqlite3"):
        url = urlsplit(os.environ["DATABASE_URL"])
        env["DATABASE_URL"] = url._replace(path=f"/{database['NAME']}").geturl()
    else:
        # SQLite: the stack's database is a file in its var/; beat reads its schedule
        # from tables there, so migrate it as `make run` does.
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "-v", "0"],
            cwd=settings.BASE_DIR,
            env=env,
            check=True,
            timeout=120,
        )
    return env


@contextlib.contextmanager
def devstack(env: dict[str, str], *options: str, port: int | None = None) -> Iterator[Stack]:
    port = port or free_port()
    process = subprocess.Popen(
        [sys.executable, "manage.py", "devstack", "--port", str(port), *options],
        cwd=settings.BASE_DIR,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    stack = Stack(process, port)
    assert process.stdout is not None
    reader = threading.Thread(
        target=lambda: stack.lines.extend(line.rstrip("\n") for line in process.stdout or []),
        daemon=True,
    )
    reader.start()
    try:
        yield stack
    finally:
        # Whatever happened, leave nothing behind.
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
        for pid in stack.child_pids().values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        reader.join(timeout=5)


def stop_and_check_everything_is_gone(stack: Stack) -> None:
    pids = stack.child_pids()
    stack.process.send_signal(signal.SIGTERM)
    try:
        returncode = stack.process.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"devstack did not stop within {STOP_TIMEOUT:g} s:\n{stack.output}")
    assert returncode == 0, stack.output
    assert [name for name, pid in pids.items() if group_alive(pid)] == []


def test_devstack_serves_the_app_with_a_worker_and_stops_everything_on_sigterm(
    stack_env: dict[str, str],
) -> None:
    with devstack(stack_env, "--no-sandbox") as stack:
        stack.wait_for(lambda: "Press Ctrl-C" in stack.output, "ready banner", START_TIMEOUT)
        assert set(stack.child_pids()) == {"web", "worker", "beat"}
        stack.wait_for(lambda: "ready." in stack.output, "worker ready", START_TIMEOUT)
        # Beat runs the sweep of stalled sends from the database schedule.
        stack.wait_for(
            lambda: "Sending due task resume-stalled-sends" in stack.output,
            "beat sending the stalled-sends sweep",
            START_TIMEOUT,
        )

        assert stack.get("/healthz?live=1") == (200, b'{"status": "ok"}')
        # The heartbeat goes from beat through the broker to the worker and into the
        # database, where /healthz reads it (connectadmin.heartbeats).
        stack.wait_for(
            lambda: re.search(r"record_heartbeat\[[-\w]+\] succeeded", stack.output) is not None,
            "the worker running the heartbeat task sent by beat",
            START_TIMEOUT,
        )
        status, body = stack.get("/healthz")
        assert status == 200, body
        checks = json.loads(body)["checks"]
        assert checks["database"]["status"] == checks["broker"]["status"] == "ok"
        worker = re.search(r"-n (devstack-\d+@)%h", stack.output)
        assert worker is not None
        assert [
            (w["name"].startswith(worker[1]), w["state"]) for w in checks["workers"]["workers"]
        ] == [(True, "running")]
        assert checks["scheduler"]["status"] == "ok", checks["scheduler"]
        status, body = stack.get("/")
        assert status == 200 and b"connectadmin" in body
        # DEBUG is off, as in production: devstack collected the static files first and
        # WhiteNoise serves them from the web process.
        assert re.search(r"^\s+static \| \d+ static files? copied to ", stack.output, re.M)
        status, body = stack.get("/static/css/app.css")
        assert status == 200 and b".topbar" in body
        assert "admin-demo-pass" in stack.output  # the demo logins are shown
        assert re.search(r"^\s+web \| ", stack.output, re.M)  # prefixed child output
        assert re.search(r"^\s+worker \| ", stack.output, re.M)
        assert re.search(r"^\s+beat \| ", stack.output, re.M)

        stop_and_check_everything_is_gone(stack)
        assert "All stopped." in stack.output


def test_devstack_stops_the_rest_loudly_when_a_child_dies(stack_env: dict[str, str]) -> None:
    with socket.socket() as taken:
        # The web server cannot bind a port that is already taken, so it exits at once.
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = int(taken.getsockname()[1])
        with devstack(stack_env, "--no-sandbox", port=port) as stack:
            try:
                returncode = stack.process.wait(timeout=START_TIMEOUT)
            except subprocess.TimeoutExpired:
                pytest.fail(f"devstack kept running without its web server:\n{stack.output}")
            assert returncode != 0
            assert "!!! web exited with code" in stack.output
            pids = stack.child_pids()
            assert set(pids) == {"web", "worker", "beat"}
            assert [name for name, pid in pids.items() if group_alive(pid)] == []


def sandbox_cli_works() -> bool:
    if not (settings.BASE_DIR / "sandbox" / "__main__.py").exists():
        return False
    result = subprocess.run(
        [sys.executable, "-m", "sandbox", "serve", "--help"],
        cwd=settings.BASE_DIR,
        capture_output=True,
        timeout=60,
    )
    return result.returncode == 0


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_devstack_also_runs_the_sandbox_when_there_is_one(stack_env: dict[str, str]) -> None:
    require(sandbox_cli_works(), "the sandbox (`python -m sandbox serve --help` fails)")
    with devstack(stack_env, "--no-worker") as stack:
        stack.wait_for(lambda: "Press Ctrl-C" in stack.output, "ready banner", START_TIMEOUT)
        assert set(stack.child_pids()) == {"web", "sandbox"}
        http_port, sftp_port = (
            int(stack_env["SANDBOX_HTTP_PORT"]),
            int(stack_env["SANDBOX_SFTP_PORT"]),
        )
        stack.wait_for(lambda: port_open(http_port), "sandbox HTTP port", START_TIMEOUT)
        stack.wait_for(lambda: port_open(sftp_port), "sandbox SFTP port", START_TIMEOUT)
        stop_and_check_everything_is_gone(stack)


def test_the_sandbox_is_started_with_the_demo_accounts_and_the_configured_ports(
    tmp_path: Path,
) -> None:
    with override_settings(
        SANDBOX_HTTP_PORT=18765, SANDBOX_SFTP_PORT=12222, SANDBOX_DATA_DIR=tmp_path
    ):
        arguments = sandbox_arguments()
    assert arguments == [
        "serve",
        "--host",
        "127.0.0.1",
        "--http-port",
        "18765",
        "--sftp-port",
        "12222",
        "--data",
        str(tmp_path),
        "--account",
        "demo-pro-api-key:pro:pro@demo.connectadmin.test",
        "--account",
        "demo-ultimate-api-key:ultimate:ultimate@demo.connectadmin.test",
        "--attentive-key",
        "demo-attentive-key",
    ]
