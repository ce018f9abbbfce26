"""What `make run` ends with: the static files collected for WhiteNoise, then the web
server, a Celery worker, Celery beat (the periodic tasks, with the worker) and, when it
exists, the local sandbox, as child processes whose output is shown prefixed with their name.
Ctrl-C or SIGTERM stops them all; if one dies, the others are stopped too."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from types import FrameType
from typing import IO, Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

from connectadmin.demo import DEMO_ACCOUNTS, DEMO_ATTENTIVE_KEY, DEMO_USERS

STOP_GRACE_SECONDS = 15  # a worker's warm shutdown finishes its current task first
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
LOCAL = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via a proxy


@dataclass
class Child:
    name: str
    argv: list[str]
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    reader: threading.Thread | None = field(default=None, repr=False)

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


class Command(BaseCommand):
    help = (
        "Run the web server, a Celery worker with its beat, and the sandbox (if "
        "sandbox/__main__.py exists) until Ctrl-C. Run `migrate` and `seed_demo` first "
        "(`make run` does)."
    )
    requires_system_checks = []  # runserver runs them in its own process

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, default=settings.WEB_PORT, help="web port")
        parser.add_argument("--no-worker", action="store_true", help="no Celery worker")
        parser.add_argument("--no-sandbox", action="store_true", help="no sandbox")
        parser.add_argument(
            "--no-beat", action="store_true", help="no Celery beat (periodic tasks)"
        )
        parser.add_argument(
            "--ready-timeout",
            type=float,
            default=60.0,
            help="seconds to wait for the web server's /healthz",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        port: int = options["port"]
        # Links in alert and invitation e-mails lead here unless SITE_URL says otherwise.
        os.environ.setdefault("SITE_URL", f"http://127.0.0.1:{port}")
        children = self._children(
            port,
            worker=not options["no_worker"],
            sandbox=not options["no_sandbox"],
            beat=not options["no_beat"],
        )
        self._output_lock = threading.Lock()
        self._collect_static()
        stop = threading.Event()

        def request_stop(signum: int, frame: FrameType | None) -> None:
            stop.set()

        previous = {signum: signal.signal(signum, request_stop) for signum in STOP_SIGNALS}
        dead: Child | None = None
        try:
            for child in children:
                self._start(child)
            base_url = f"http://127.0.0.1:{port}/"
            dead = self._wait_until_ready(base_url, children, stop, options["ready_timeout"])
            sandbox = next((c for c in children if c.name == "sandbox"), None)
            if dead is None and not stop.is_set() and sandbox is not None:
                self._demo_sftp(sandbox, stop)
            if dead is None and not stop.is_set():
                self._print_banner(base_url, children)
                dead = self._watch(children, stop)
        finally:
            if dead is not None and dead.process is not None:
                self._say(
                    self.style.ERROR(
                        f"!!! {dead.name} exited with code {dead.process.returncode}; "
                        "stopping everything else."
                    )
                )
            self._stop_all(children)
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        if dead is not None:
            raise CommandError(f"{dead.name} died; see its output above.")
        self._say("All stopped.")

    def _children(
        self, port: int, *, worker: bool, sandbox: bool, beat: bool = True
    ) -> list[Child]:
        python = sys.executable
        manage = str(settings.BASE_DIR / "manage.py")
        children = [Child("web", [python, manage, "runserver", f"127.0.0.1:{port}", "--noreload"])]
        if worker:
            # A node name of its own: another worker on this host must not clash with it.
            node = f"devstack-{os.getpid()}@%h"
            celery = ["-m", "celery", "-A", "connectadmin", "worker", "-n", node]
            options = ["-l", "info", "--concurrency", "2"]
            children.append(Child("worker", [python, *celery, *options]))
        if worker and beat:
            # The periodic tasks (resume_stalled_sends), scheduled from the database. No
            # pid file: a killed beat must not keep the next one from starting.
            scheduler = "django_celery_beat.schedulers:DatabaseScheduler"
            beat_command = ["-m", "celery", "-A", "connectadmin", "beat", "-l", "info"]
            beat_options = ["--scheduler", scheduler, "--pidfile="]
            children.append(Child("beat", [python, *beat_command, *beat_options]))
        if sandbox and (settings.BASE_DIR / "sandbox" / "__main__.py").exists():
            settings.SANDBOX_DATA_DIR.mkdir(parents=True, exist_ok=True)
            children.append(Child("sandbox", [python, "-m", "sandbox", *sandbox_arguments()]))
        return children

    def _collect_static(self) -> None:
        """With DEBUG off WhiteNoise serves STATIC_ROOT only, as in production: fill it (only
        files changed since the last run are copied)."""
        summary = io.StringIO()
        call_command("collectstatic", interactive=False, verbosity=1, stdout=summary)
        self._say(f"{'static':>7} | {summary.getvalue().strip()}")

    def _start(self, child: Child) -> None:
        child.process = subprocess.Popen(
            child.argv,
            cwd=settings.BASE_DIR,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            # Its own process group: Ctrl-C reaches only us, and stopping the group also
            # stops the child's own children (the worker's pool).
            start_new_session=True,
        )
        assert child.process.stdout is not None
        child.reader = threading.Thread(
            target=self._pump, args=(child.name, child.process.stdout), daemon=True
        )
        child.reader.start()
        self._say(f"started {child.name} (pid {child.process.pid}): {' '.join(child.argv[1:])}")

    def _pump(self, name: str, stream: IO[bytes]) -> None:
        for raw in iter(stream.readline, b""):
            self._say(f"{name:>7} | {raw.decode(errors='replace').rstrip()}")

    def _say(self, line: str) -> None:
        with self._output_lock:
            self.stdout.write(line)
            self.stdout.flush()

    def _wait_until_ready(
        self, base_url: str, children: list[Child], stop: threading.Event, timeout: float
    ) -> Child | None:
        deadline = time.monotonic() + timeout
        while not stop.is_set():
            for child in children:
                if not child.running():
                    return child
            try:
                # The liveness answer: the full check asks the broker and Connect too.
                with LOCAL.open(f"{base_url}healthz?live=1", timeout=2) as response:
                    if response.status == 200:
                        return None
            except OSError:  # refused, reset, timed out (URLError is an OSError)
                pass
            if time.monotonic() > deadline:
                raise CommandError(
                    f"The web server did not answer {base_url}healthz in {timeout:g} s."
                )
            stop.wait(0.25)
        return None

    def _demo_sftp(self, sandbox: Child, stop: threading.Event) -> None:
        """Once the sandbox is up: the demo accounts' SSH keys and its pinned host key."""
        from exports_app.services.demo import demo_sftp_ready  # needs the apps loaded

        ports = settings.SANDBOX_DATA_DIR / "ports.json"
        deadline = time.monotonic() + 30
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                ready = json.loads(ports.read_text())
            except (OSError, ValueError):
                ready = {}
            if sandbox.process is None or ready.get("pid") != sandbox.process.pid:
                stop.wait(0.25)  # not written yet, or left by an earlier sandbox
                continue
            try:
                for line in demo_sftp_ready(ready["host_key"]):
                    self._say(f"  demo | {line}")
            except Exception as exc:  # the demo runs without exports rather than not at all
                self._say(self.style.WARNING(f"  demo | SFTP keys not set up: {exc}"))
            return
        self._say(self.style.WARNING("  demo | the sandbox wrote no ports.json: no SFTP keys"))

    def _print_banner(self, base_url: str, children: list[Child]) -> None:
        lines = ["", f"connectadmin is running at {base_url} (admin: {base_url}admin/)"]
        if any(child.name == "sandbox" for child in children):
            lines.append(
                f"sandbox: Connect GraphQL http://127.0.0.1:{settings.SANDBOX_HTTP_PORT}/graphql, "
                f"SFTP 127.0.0.1:{settings.SANDBOX_SFTP_PORT}"
            )
        lines.append("Demo logins (created by `manage.py seed_demo`):")
        lines += [f"  {u.username:<10} {u.password:<20} {u.role}" for u in DEMO_USERS]
        lines += ["Press Ctrl-C to stop everything.", ""]
        self._say(self.style.SUCCESS("\n".join(lines)))

    def _watch(self, children: list[Child], stop: threading.Event) -> Child | None:
        while not stop.wait(0.5):
            for child in children:
                if not child.running():
                    return child
        return None

    def _stop_all(self, children: list[Child]) -> None:
        started = [child for child in children if child.process is not None]
        for child in started:
            if child.running():
                # The child itself only: the worker's warm shutdown stops its own pool.
                assert child.process is not None
                child.process.terminate()
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for child in started:
            assert child.process is not None
            try:
                child.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self._say(f"{child.name} did not stop in {STOP_GRACE_SECONDS} s; killing it.")
            # Whatever is left of its process group (grandchildren) goes too.
            self._signal_group(child, signal.SIGKILL)
            child.process.wait()
            if child.reader is not None:
                child.reader.join(timeout=2)  # its last lines come before ours

    @staticmethod
    def _signal_group(child: Child, signum: signal.Signals) -> None:
        assert child.process is not None
        with contextlib.suppress(ProcessLookupError, PermissionError):  # group already gone
            os.killpg(child.process.pid, signum)


def sandbox_arguments() -> list[str]:
    """`python -m sandbox` arguments matching what `seed_demo` puts in the database."""
    arguments = [
        "serve",
        "--host", "127.0.0.1",
        "--http-port", str(settings.SANDBOX_HTTP_PORT),
        "--sftp-port", str(settings.SANDBOX_SFTP_PORT),
        "--data", str(settings.SANDBOX_DATA_DIR),
    ]  # fmt: skip
    for account in DEMO_ACCOUNTS:
        arguments += ["--account", f"{account.api_key}:{account.tier}:{account.email}"]
    return [*arguments, "--attentive-key", DEMO_ATTENTIVE_KEY]
