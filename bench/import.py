"""Benchmark of the whole import path (issue 4, "Performance"): a benchmark, never a test.

N valid signals (NDJSON, made by bench/validate.py's generator with the error rate set to
0; warnings kept, as real files have them) go through the real parts, each its own process
on this machine:

- PostgreSQL (database ``ca_bench_import``, dropped, created and migrated by this script)
  and Redis (``redis://127.0.0.1:6379/9``, on a queue of this run's own);
- the sandbox (``python -m sandbox serve``, storage on), an ultimate-tier account;
- ``--workers`` Celery worker processes (default 2), each ``--concurrency 1`` (prefork: a
  main process and one pool child);
- the web app under ``manage.py runserver --noreload`` (one process, threads), DEBUG off.

Then, as a user would, with httpx: log in, upload the file as multipart to ``/imports/new``
(the web process's RSS sampled every 10 ms during the upload), wait for the validation
task, press Send (``/imports/<id>/send``: ``import_send`` writes the ledger and queues the
task), and wait until the last of the 2,000 batches is stored with its signalIds. End to end
is from the start of the upload to the ``finished_at`` of the last batch.

In the same run the same batches (built with the app's own ``sendable``, serialized as
``connect_client`` does) are posted straight from httpx to the same sandbox: one client,
keep-alive, sequentially; then two clients (threads) at once. Finally the preview page
(``/imports/<id>``) is timed for that import and for a second one made of the 5 %-error
file of var/bench (first page, a page deep in the rejected list, a filtered page).

Usage (from the project root)::

    .venv/bin/python bench/import.py                     # N = 1,000,000
    .venv/bin/python bench/import.py --signals 20000     # smoke run, well under a minute
    .venv/bin/python bench/import.py --py-spy            # also profile the workers' send

Every process it starts is stopped in ``finally``; ``var/bench/import-run/`` (uploads,
sandbox record, logs) is removed unless ``--keep``. The report is also written to
``var/bench/import-<N>.txt``.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import logging
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import orjson

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.validate import (  # noqa: E402  (ROOT must be on sys.path first)
    APP_KEYS,
    GENERATOR_VERSION,
    Expected,
    Generator,
    _process_tree,
    machine,
)

PY = sys.executable
MB = 1_000_000
DB_NAME = "ca_bench_import"
DB_URL = f"postgres://postgres@127.0.0.1:5432/{DB_NAME}"
ADMIN_DB_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
BROKER_URL = "redis://127.0.0.1:6379/9"
SANDBOX_API_KEY = "bench-ultimate-api-key"
SANDBOX_EMAIL = "bench.ultimate@example.com"
USERNAME = "bench-marketer"
PASSWORD = "bench-marketer-password-9f3c"
ERRORS_FILE = ROOT / "var" / "bench" / "signals-1000000-s2025-v3.ndjson"
READY_TIMEOUT = 60.0

# --- targets (issue 4) ---------------------------------------------------------------------

HTTPX_MAX_SIGNALS = 2_000_000
TARGET_E2E_RATE = 20_000
TARGET_HTTPX_RATIO = 0.6  # issue 12, no latency: end to end ÷ httpx with one call at a time
TARGET_WINDOW_RATIO = 0.9  # issue 12, with latency: send phase ÷ window × 500 / latency
TARGET_E2E_WINDOW_RATIO = 0.85  # issue 12, with latency: ÷ httpx with the window in flight
TARGET_VALIDATION_RATIO = 2.0  # issue 12: the validation task ÷ validate_signals
TARGET_PREVIEW_MS = 300.0
TARGET_UPLOAD_RSS_MB = 200.0

# --- the report ------------------------------------------------------------------------------


class Report:
    """Printed as it goes, and written to a file at the end (whatever happened)."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def say(self, text: str = "") -> None:
        print(text, flush=True)
        self.lines.append(text)

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(self.lines) + "\n")


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def uptime() -> str:
    try:
        return subprocess.run(
            ["uptime"], capture_output=True, text=True, check=False
        ).stdout.strip()
    except OSError:
        return f"load average: {load_average()}"


# --- CPU and memory of processes -----------------------------------------------------------

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    # After the command: state(0) ... utime(11) stime(12)
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def tree_cpu(pid: int) -> float:
    """CPU seconds of a process and its living descendants."""
    return sum(_cpu_seconds(p) for p in _process_tree(pid))


def postgres_cpu() -> float:
    """CPU seconds of every postgres process on the machine (other users' included)."""
    total = 0.0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            comm = Path(entry.path, "comm").read_text().strip()
        except OSError:
            continue
        if comm.startswith("postgres"):
            total += _cpu_seconds(int(entry.name))
    return total


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs since boot, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    total = sum(values[:8])
    return (total - idle) / CLOCK_TICKS, total / CLOCK_TICKS


def status_kib(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


class RssSampler(threading.Thread):
    """Peak RSS of one process, sampled every `interval` seconds (VmHWM read too)."""

    def __init__(self, pid: int, interval: float = 0.01) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.interval = interval
        self.start_kib = status_kib(pid, "VmRSS")
        self.peak_kib = self.start_kib
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.peak_kib = max(self.peak_kib, status_kib(self.pid, "VmRSS"))
            self._stop_event.wait(self.interval)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()
        self.peak_kib = max(self.peak_kib, status_kib(self.pid, "VmRSS"))


@dataclass
class Snapshot:
    """CPU seconds of each part at one moment."""

    at: float
    parts: dict[str, float]
    busy: float
    total: float


@dataclass
class Processes:
    """Every process this script starts, stopped in `stop_all`."""

    started: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)

    def start(self, name: str, command: list[str], env: dict[str, str], log: Path) -> Any:
        with log.open("wb") as out:
            process = subprocess.Popen(
                command,
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own group: a kill takes its children too
            )
        self.started.append((name, process))
        return process

    def pid(self, name: str) -> int:
        return next(p.pid for n, p in self.started if n == name)

    def names(self) -> list[str]:
        return [n for n, _ in self.started]

    def snapshot(self) -> Snapshot:
        parts = {name: tree_cpu(process.pid) for name, process in self.started}
        parts["postgres"] = postgres_cpu()
        busy, total = machine_busy()
        return Snapshot(time.time(), parts, busy, total)

    def stop_all(self) -> None:
        for _name, process in reversed(self.started):
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for _name, process in reversed(self.started):
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            # Whatever is left of the group (a pool child, a stuck server).
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=5)


def wait_for_text(log: Path, text: bytes, process: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while text not in log.read_bytes():
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited ({process.returncode}):\n{tail(log)}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not ready after {READY_TIMEOUT:g} s:\n{tail(log)}")
        time.sleep(0.05)


def tail(path: Path, size: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-size:]
    except OSError:
        return ""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# --- the files -------------------------------------------------------------------------------


def valid_file(n: int, seed: int, out: Path, report: Report, *, distinct: bool = False) -> Path:
    """N signals without errors (about 3 % with a warning, which are valid), generated once;
    `distinct`: every contact, session and product new (see Generator)."""
    kind = "-distinct" if distinct else ""
    path = out / f"import-valid{kind}-{n}-s{seed}-v{GENERATOR_VERSION}.ndjson"
    if path.exists():
        report.say(f"Reusing {path.relative_to(ROOT)}")
        return path
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    generator = Generator(
        seed, contacts=50_000, error_rate=0.0, warning_rate=0.03, distinct=distinct
    )
    expected = Expected()
    part = path.with_name(path.name + ".part")
    with part.open("wb", buffering=4 * MB) as f:
        for index in range(n):
            f.write(orjson.dumps(generator.signal(index, n, expected)))
            f.write(b"\n")
    assert expected.rejected == 0, expected.rejected
    part.replace(path)
    report.say(
        f"Generated {path.relative_to(ROOT)}: {n:,} valid signals ({expected.warnings:,} "
        f"with a warning) in {time.perf_counter() - started:.1f} s"
    )
    return path


def errors_file(n: int, run_dir: Path) -> Path:
    """The 1M file with ~5 % rejected signals of var/bench, or its first N lines."""
    if not ERRORS_FILE.exists():
        raise SystemExit(f"{ERRORS_FILE} is missing: run bench/validate.py --generate-only")
    if n >= 1_000_000:
        return ERRORS_FILE
    path = run_dir / f"errors-first-{n}.ndjson"
    with ERRORS_FILE.open("rb") as source, path.open("wb") as out:
        for _ in range(n):
            line = source.readline()
            if not line:
                break
            out.write(line)
    return path


# --- set-up ------------------------------------------------------------------------------------


def create_database() -> None:
    import psycopg

    with psycopg.connect(ADMIN_DB_URL, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DB_NAME}")


def child_env(run_dir: Path, window: int) -> dict[str, str]:
    return {
        "SIGNALS_SEND_WINDOW": str(window),
        # 1 GiB by default (a deliberate cap): the 10 M-signal file is 5.6 GB.
        "IMPORT_MAX_UPLOAD_BYTES": str(16 * 1024**3),
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "connectadmin.settings",
        "DATABASE_URL": DB_URL,
        "CELERY_BROKER_URL": BROKER_URL,
        "CONNECTADMIN_VAR_DIR": str(run_dir / "var"),
        "IMPORTS_DIR": str(run_dir / "var" / "imports"),
        "DJANGO_DEBUG": "0",
        "PYTHONUNBUFFERED": "1",
    }


# The web process: runserver without the reloader (one process), whose Celery app sends to
# this run's private queue, as the worker processes read only that one.
WEB_LAUNCHER = """\
import sys
import django
django.setup()
from connectadmin.celery import app
app.conf.task_default_queue = sys.argv[1]
from django.core.management import call_command
call_command("runserver", sys.argv[2], use_reloader=False, skip_checks=True)
"""


@dataclass
class Setup:
    app_key_pk: int
    app_key: str
    sandbox_url: str


def setup_django(env: dict[str, str], sandbox_url: str) -> Setup:
    """Django in this process (same database and folders as the others): the user, the
    Connect account pointing at the sandbox, and the app keys the files name."""
    for key in ("DJANGO_SETTINGS_MODULE", "DATABASE_URL", "CELERY_BROKER_URL"):
        os.environ[key] = env[key]
    for key in ("CONNECTADMIN_VAR_DIR", "IMPORTS_DIR", "DJANGO_DEBUG"):
        os.environ[key] = env[key]
    import django

    django.setup()
    logging.getLogger("httpx").setLevel(logging.WARNING)  # no line per request
    from django.contrib.auth.models import Group, User

    from connectadmin.models import AppKey, ConnectAccount, Region
    from connectadmin.roles import Role

    user = User.objects.create_user(USERNAME, f"{USERNAME}@example.com", PASSWORD)
    user.groups.add(Group.objects.get(name=Role.MARKETER.value))
    account = ConnectAccount.objects.create(
        name="Bench sandbox (ultimate)",
        region=Region.SANDBOX,
        graphql_endpoint=sandbox_url,
        api_key=SANDBOX_API_KEY,
        connect_user_email=SANDBOX_EMAIL,
    )
    keys = [
        AppKey.objects.create(key=key, label=f"bench {i}", tier="ultimate", account=account)
        for i, key in enumerate(APP_KEYS)
    ]
    return Setup(keys[0].pk, keys[0].key, sandbox_url)


# --- the web client ------------------------------------------------------------------------

_HIDDEN = re.compile(r'name="(csrfmiddlewaretoken|idempotency_key)" value="([^"]+)"')


class Web:
    """A logged-in user's browser, as far as the benchmark needs one."""

    def __init__(self, base_url: str) -> None:
        self.http = httpx.Client(
            base_url=base_url,
            timeout=httpx.Timeout(600.0, connect=10.0),
            follow_redirects=False,
        )

    def close(self) -> None:
        self.http.close()

    def hidden(self, path: str) -> dict[str, str]:
        response = self.http.get(path)
        response.raise_for_status()
        return dict(_HIDDEN.findall(response.text))

    def login(self) -> None:
        fields = self.hidden("/login/")
        response = self.http.post(
            "/login/",
            data={**fields, "username": USERNAME, "password": PASSWORD},
            headers={"Referer": str(self.http.base_url)},
        )
        if response.status_code != 302:
            raise RuntimeError(f"login failed: HTTP {response.status_code}")

    def upload(self, path: Path, app_key_pk: int) -> str:
        """Post the file as the upload form does; the new import's public id."""
        fields = self.hidden("/imports/new")
        with path.open("rb") as f:
            response = self.http.post(
                "/imports/new",
                data={**fields, "app_key": str(app_key_pk), "mode": "test"},
                files={"file": (path.name, f, "application/x-ndjson")},
            )
        location = response.headers.get("Location", "")
        found = re.search(r"/imports/([0-9a-f-]{36})", location)
        if response.status_code != 302 or not found:
            raise RuntimeError(
                f"upload refused: HTTP {response.status_code}\n{response.text[:2000]}"
            )
        return found.group(1)

    def send(self, public_id: str) -> None:
        token = self.http.cookies.get("csrftoken") or ""
        response = self.http.post(f"/imports/{public_id}/send", data={"csrfmiddlewaretoken": token})
        if response.status_code != 302:
            raise RuntimeError(f"send refused: HTTP {response.status_code}")

    def time_get(self, path: str, repeat: int) -> tuple[list[float], int]:
        """Milliseconds of `repeat` GETs after one warm-up; the page size."""
        warm = self.http.get(path)
        if warm.status_code != 200:
            raise RuntimeError(f"GET {path}: HTTP {warm.status_code}")
        times = []
        for _ in range(repeat):
            started = time.perf_counter()
            response = self.http.get(path)
            times.append((time.perf_counter() - started) * 1000)
            if response.status_code != 200:
                raise RuntimeError(f"GET {path}: HTTP {response.status_code}")
        return times, len(warm.content)


# --- waiting on the database -----------------------------------------------------------------


def wait_status(
    public_id: str, wanted: set[str], timeout: float, interval: float = 0.05
) -> dict[str, Any]:
    from signals_app.models import ImportStatus, SignalImport

    final_bad = {ImportStatus.UNREADABLE, ImportStatus.FAILED, ImportStatus.CANCELLED}
    deadline = time.monotonic() + timeout
    while True:
        row = SignalImport.objects.filter(public_id=public_id).values().first()
        if row is not None and row["status"] in wanted:
            return dict(row)
        if row is not None and row["status"] in final_bad:
            raise RuntimeError(f"import {public_id} ended {row['status']}: {row['error_message']}")
        if time.monotonic() > deadline:
            status = row["status"] if row else "missing"
            raise RuntimeError(f"import {public_id} still {status} after {timeout:.0f} s")
        time.sleep(interval)


def ts(value: datetime | None) -> float:
    return value.timestamp() if value is not None else float("nan")


# --- posting straight from httpx ---------------------------------------------------------------


def import_disk(import_pk: int, run_dir: Path) -> str:
    """What one import takes on disk: its stored file, and its rows in PostgreSQL (the
    rows' own bytes, `pg_column_size`; indexes and page overhead come on top)."""
    from django.db import connection

    from signals_app.models import ImportBatch, ImportFinding, RejectedSignal, SignalImport

    stored = SignalImport.objects.get(pk=import_pk).stored_name
    files = list((run_dir / "var").rglob(stored))
    file_bytes = sum(f.stat().st_size for f in files if f.is_file())
    parts = [f"stored file {file_bytes / MB:,.0f} MB"]
    with connection.cursor() as cursor:
        for label, model in (
            ("ledger", ImportBatch),
            ("findings", ImportFinding),
            ("rejected signals", RejectedSignal),
        ):
            table = model._meta.db_table
            cursor.execute(
                f"SELECT count(*), coalesce(sum(pg_column_size(t.*)), 0) FROM {table} AS t "
                "WHERE signal_import_id = %s",
                [import_pk],
            )
            rows, size = cursor.fetchone()
            if rows:
                parts.append(f"{label} {rows:,} rows, {size / MB:,.1f} MB")
    return "; ".join(parts)


def build_bodies(path: Path, app_key: str) -> list[bytes]:
    """The createSignals bodies the app sends for this file: the same `sendable` signals,
    500 per batch, serialized as connect_client does."""
    from signals_app.connect_client import CREATE_SIGNALS, MAX_BATCH
    from signals_app.services.sending import sendable
    from signals_app.validation.engine import unwrap

    bodies: list[bytes] = []
    batch: list[dict[str, Any]] = []
    with path.open("rb") as f:
        for line in f:
            envelope, _ = unwrap(orjson.loads(line))
            batch.append(sendable(envelope, app_key=app_key, test=True))
            if len(batch) == MAX_BATCH:
                bodies.append(
                    orjson.dumps({"query": CREATE_SIGNALS, "variables": {"signals": batch}})
                )
                batch = []
    if batch:
        bodies.append(orjson.dumps({"query": CREATE_SIGNALS, "variables": {"signals": batch}}))
    return bodies


def post_bodies(url: str, bodies: Sequence[bytes]) -> int:
    """Post each body on one keep-alive client; the signals stored."""
    stored = 0
    with httpx.Client(
        headers={"x-api-key": SANDBOX_API_KEY, "Content-Type": "application/json"},
        timeout=httpx.Timeout(60.0, connect=5.0),
    ) as client:
        for body in bodies:
            response = client.post(url, content=body)
            payload = orjson.loads(response.content)
            if response.status_code != 200 or payload.get("errors"):
                raise RuntimeError(f"sandbox: HTTP {response.status_code} {response.text[:500]}")
            stored += len(payload["data"]["createSignals"]["signalIds"])
    return stored


def post_concurrently(url: str, bodies: Sequence[bytes], clients: int) -> tuple[float, int]:
    """Seconds and signals stored with `clients` clients (threads) sharing the batches."""
    results = [0] * clients
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            results[i] = post_bodies(url, bodies[i::clients])
        except BaseException as exc:  # reported by the caller
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    if errors:
        raise errors[0]
    return seconds, sum(results)


# --- profiling (optional) ----------------------------------------------------------------------


def start_profilers(procs: Processes, names: list[str], out_dir: Path) -> list[tuple[str, Any]]:
    """py-spy (installed in .venv, not in requirements.txt) on each worker and the sandbox,
    recording collapsed stacks until stopped."""
    py_spy = shutil.which("py-spy", path=str(Path(PY).parent)) or shutil.which("py-spy")
    if py_spy is None:
        raise RuntimeError("--py-spy: py-spy is not installed (.venv/bin/pip install py-spy)")
    started = []
    for name in names:
        if name.startswith("worker") or name == "sandbox":
            out = out_dir / f"import-pyspy-{name}.txt"
            command = [
                *(py_spy, "record", "--pid", str(procs.pid(name)), "--subprocesses"),
                *("--rate", "100", "--nonblocking", "--format", "raw", "--output", str(out)),
            ]
            process = subprocess.Popen(
                command,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            started.append((name, process))
    return started


def stop_profilers(profilers: list[tuple[str, Any]], out_dir: Path, report: Report) -> None:
    for _name, process in profilers:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGINT)  # py-spy writes its file on Ctrl-C
    for name, process in profilers:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        path = out_dir / f"import-pyspy-{name}.txt"
        if path.exists():
            summarize_profile(name, path, report)


def summarize_profile(name: str, path: Path, report: Report, top: int = 12) -> None:
    """Where the samples were: the project's own functions (inclusive) and the leaf
    functions (self), idle waits left out."""
    inclusive: dict[str, int] = {}
    leaves: dict[str, int] = {}
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        leaf = frames[-1]
        if any(word in leaf for word in ("(idle)", "select (selectors", "poll (selectors")):
            continue  # waiting for work, not working
        if "_run_once (asyncio" in leaf:
            continue
        total += count
        leaves[leaf] = leaves.get(leaf, 0) + count
        for frame in set(frames):
            if "signals_app/" in frame or re.search(r"\(sandbox/(?!cli|http\.py)", frame):
                inclusive[frame] = inclusive.get(frame, 0) + count
    if not total:
        return
    report.say(f"py-spy {name}: {total / 100:.1f} s of samples (busy or waiting on a call)")
    for title, table in (("project functions, inclusive", inclusive), ("leaf (self)", leaves)):
        report.say(f"  {title}:")
        for frame, count in sorted(table.items(), key=lambda kv: -kv[1])[:top]:
            report.say(f"    {100 * count / total:5.1f} %  {frame[:120]}")


# --- the run -----------------------------------------------------------------------------------


@dataclass
class Verdict:
    name: str
    value: str
    target: str
    ok: bool


@dataclass
class Figures:
    verdicts: list[Verdict] = field(default_factory=list)

    def check(self, name: str, value: str, target: str, ok: bool) -> None:
        self.verdicts.append(Verdict(name, value, target, ok))


def fmt_ms(times: Sequence[float]) -> str:
    return f"median {statistics.median(times):.0f} ms (min {min(times):.0f}, max {max(times):.0f})"


def cpu_table(report: Report, snaps: list[tuple[str, Snapshot]], names: list[str]) -> None:
    """CPU seconds used by each part during each phase, and busy cores of the machine."""
    columns = [*names, "postgres"]
    head = f"{'phase':<26}{'wall s':>8}" + "".join(f"{c:>11}" for c in columns)
    report.say(head + f"{'machine':>11}")
    report.say("-" * (len(head) + 11))
    for (label, before), (_next_label, after) in itertools.pairwise(snaps):
        wall = after.at - before.at
        cells = "".join(
            f"{after.parts.get(c, 0.0) - before.parts.get(c, 0.0):>11.1f}" for c in columns
        )
        busy = (after.busy - before.busy) / wall if wall > 0 else 0.0
        report.say(f"{label:<26}{wall:>8.1f}{cells}{busy:>8.2f} cores")
    report.say(
        "(CPU seconds per process tree — a worker is its main process and pool child; "
        "postgres = every postgres process on the machine; machine = busy cores of all "
        f"{os.cpu_count()}, other users' jobs included)"
    )


def run(args: argparse.Namespace, report: Report, procs: Processes, run_dir: Path) -> bool:
    n: int = args.signals
    figures = Figures()
    out_dir = ROOT / "var" / "bench"
    valid_path = valid_file(n, args.seed, out_dir, report, distinct=args.distinct)
    error_path = errors_file(n, run_dir)
    env = child_env(run_dir, args.window)
    latency = args.latency_ms / 1000
    (run_dir / "var").mkdir(parents=True, exist_ok=True)
    logs = run_dir / "logs"
    logs.mkdir(exist_ok=True)
    queue = f"bench-import-{uuid.uuid4().hex[:10]}"

    started = time.perf_counter()
    create_database()
    for step in (["-m", "connectadmin.keyfile"], ["manage.py", "migrate", "--noinput"]):
        done = subprocess.run([PY, *step], cwd=ROOT, env=env, capture_output=True)
        if done.returncode:
            output = (done.stdout + done.stderr).decode()[-3000:]
            raise RuntimeError(f"{' '.join(step)} failed:\n{output}")
    report.say(f"Database {DB_NAME} created and migrated in {time.perf_counter() - started:.1f} s")

    # The sandbox.
    sandbox_dir = run_dir / "sandbox"
    sandbox_dir.mkdir()
    sandbox = procs.start(
        "sandbox",
        [PY, "-m", "sandbox", "serve", "--host", "127.0.0.1", "--http-port", "0",
         "--sftp-port", "0", "--data", str(sandbox_dir),
         "--account", f"{SANDBOX_API_KEY}:ultimate:{SANDBOX_EMAIL}",
         "--attentive-rate-limit", "0", "--latency-ms", str(args.latency_ms)],
        env, logs / "sandbox.log",
    )  # fmt: skip
    wait_for_text(logs / "sandbox.log", b'"sandbox":"ready"', sandbox, "sandbox")
    ports = orjson.loads((sandbox_dir / "ports.json").read_bytes())
    graphql_url = f"http://127.0.0.1:{ports['http_port']}/graphql"

    setup = setup_django(env, graphql_url)
    from django.db import connection

    from signals_app.models import ImportBatch, ImportStatus, RejectedSignal, SignalImport

    # The workers.
    for i in range(1, args.workers + 1):
        log = logs / f"worker-{i}.log"
        worker = procs.start(
            f"worker{i}",
            [PY, "-m", "celery", "-A", "connectadmin", "worker", "--concurrency", "1",
             "-Q", queue, "-n", f"{queue}-{i}@%h", "--without-gossip", "--without-mingle",
             "--without-heartbeat", "--loglevel", "INFO"],
            env, log,
        )  # fmt: skip
        wait_for_text(log, b" ready.", worker, f"worker {i}")

    # The web process.
    port = free_port()
    web_process = procs.start(
        "web", [PY, "-c", WEB_LAUNCHER, queue, f"127.0.0.1:{port}"], env, logs / "web.log"
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(base + "/healthz?live=1", timeout=2).status_code == 200:
                break
        if web_process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"web server not ready:\n{tail(logs / 'web.log')}")
        time.sleep(0.1)
    report.say(
        f"Started: sandbox (pid {sandbox.pid}, {graphql_url}, latency {args.latency_ms:g} ms), "
        f"{args.workers} Celery worker processes × concurrency 1 on queue {queue} (sending "
        f"window {args.window}), web (runserver --noreload, pid {web_process.pid}, {base})"
    )
    names = procs.names()

    web = Web(base)
    try:
        web.login()
        size = valid_path.stat().st_size
        report.say(f"\n== Import A: {n:,} valid signals, {size / MB:,.1f} MB NDJSON ==")

        # 1. Upload.
        snaps: list[tuple[str, Snapshot]] = []
        web_pid = procs.pid("web")
        sampler = RssSampler(web_pid)
        sampler.start()
        snaps.append(("upload (POST, web view)", procs.snapshot()))
        t0 = time.time()
        public_id = web.upload(valid_path, setup.app_key_pk)
        t_uploaded = time.time()
        sampler.stop()
        snaps.append(("queue + validation task", procs.snapshot()))
        upload_rss_mb = sampler.peak_kib * 1024 / MB
        report.say(
            f"upload: {t_uploaded - t0:.2f} s ({size / MB / (t_uploaded - t0):,.0f} MB/s); web "
            f"process RSS {sampler.start_kib * 1024 / MB:.1f} MB before, peak "
            f"{upload_rss_mb:.1f} MB during the upload"
        )

        # 2. Validation task.
        row = wait_status(public_id, {ImportStatus.VALIDATED}, timeout=max(120.0, n / 2000))
        snaps.append(("press Send (import_send)", procs.snapshot()))
        report.say(
            "validation: started "
            f"{ts(row['validation_started_at']) - t_uploaded:+.2f} s after the upload's answer "
            "(on commit: it may start before the redirect reaches the client), "
            f"ran {ts(row['validation_finished_at']) - ts(row['validation_started_at']):.2f} s "
            f"({row['signals']:,} signals, {row['valid']:,} valid, {row['rejected']:,} rejected, "
            f"{row['warnings']:,} warnings)"
        )
        if row["valid"] != n:
            raise RuntimeError(f"expected {n:,} valid signals, the import has {row['valid']:,}")

        # 3. Send: the ledger is written by the request, the batches by a worker.
        t_send = time.time()
        web.send(public_id)
        t_send_done = time.time()
        snaps.append(("send task", procs.snapshot()))
        profilers = start_profilers(procs, names, out_dir) if args.py_spy else []
        row = wait_status(public_id, {ImportStatus.COMPLETED}, timeout=max(120.0, n / 1000))
        t_completed = time.time()
        snaps.append(("end", procs.snapshot()))
        profiles_pending = profilers
        import_pk = row["id"]
        batches = ImportBatch.objects.filter(signal_import_id=import_pk)
        states: dict[str, int] = {}
        for state in batches.values_list("state", flat=True):
            states[state] = states.get(state, 0) + 1
        durations = sorted(d or 0 for d in batches.values_list("duration_ms", flat=True))
        first_started = min(ts(v) for v in batches.values_list("started_at", flat=True))
        last_finished = max(ts(v) for v in batches.values_list("finished_at", flat=True))
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT coalesce(sum(jsonb_array_length(signal_ids)), 0), "
                "count(DISTINCT signal_ids->>0) FROM signals_app_importbatch "
                "WHERE signal_import_id = %s",
                [import_pk],
            )
            ids_stored, distinct_first = cursor.fetchone()
        n_batches = len(durations)
        e2e = last_finished - t0
        e2e_rate = n / e2e
        report.say(
            f"send: request (import_send writes {n_batches:,} ledger rows, queues the task) "
            f"{t_send_done - t_send:.2f} s; queued→first batch "
            f"{first_started - t_send_done:.2f} s; batches {last_finished - first_started:.2f} s "
            f"({n / (last_finished - first_started):,.0f} signals/s, "
            f"{(last_finished - first_started) / max(n_batches, 1) * 1000:.1f} ms per batch)"
        )
        report.say(
            f"  batches: {states}; createSignals call (duration_ms) median "
            f"{statistics.median(durations):.0f} ms, p95 {durations[int(0.95 * (n_batches - 1))]} "
            f"ms; signalIds stored {ids_stored:,} ({distinct_first:,} distinct first ids); "
            f"import counters sent={row['sent']:,} accepted={row['accepted']:,} "
            f"failed={row['failed']:,} unknown={row['unknown']:,}"
        )
        report.say(
            f"  status seen COMPLETED {t_completed - last_finished:.2f} s after the last batch "
            "(the task's closing queries and this script's 50 ms polling)"
        )
        stored_ok = ids_stored == n and states == {"sent": n_batches}
        report.say(
            f"END TO END: {e2e:.2f} s from upload start to the last batch stored = "
            f"{e2e_rate:,.0f} signals/s"
        )
        phases = [
            ("upload", t_uploaded - t0),
            ("answer → validation start", ts(row["validation_started_at"]) - t_uploaded),
            (
                "validation task",
                ts(row["validation_finished_at"]) - ts(row["validation_started_at"]),
            ),
            ("validated → Send pressed", t_send - ts(row["validation_finished_at"])),
            ("Send request (ledger)", t_send_done - t_send),
            ("wait for a worker", first_started - t_send_done),
            ("batches sent and stored", last_finished - first_started),
        ]
        report.say("  phases: " + "; ".join(f"{name} {sec:.2f} s" for name, sec in phases))
        report.say()
        cpu_table(report, snaps, names)
        if profiles_pending:
            report.say()
            stop_profilers(profiles_pending, out_dir, report)

        report.say("  disk: " + import_disk(import_pk, run_dir))

        # 4. The same batches straight from httpx.
        report.say("\n== The same batches straight from httpx to the same sandbox ==")
        par_rate = seq_rate = 0.0
        if n > HTTPX_MAX_SIGNALS:
            report.say(
                f"skipped above {HTTPX_MAX_SIGNALS:,} signals (the reference holds every body "
                "in this process's memory); compare a run of 1,000,000"
            )
        started = time.perf_counter()
        bodies = build_bodies(valid_path, setup.app_key) if n <= HTTPX_MAX_SIGNALS else []
        body_mb = sum(len(b) for b in bodies) / MB
        report.say(
            f"built {len(bodies):,} bodies ({body_mb:,.0f} MB) with the app's sendable() in "
            f"{time.perf_counter() - started:.1f} s (not timed below)"
        )
        if bodies and not latency:  # 2,000 calls one after the other: minutes at 200 ms
            httpx_snap = procs.snapshot()
            seq_seconds, stored = post_concurrently(graphql_url, bodies, 1)
            seq_snap = procs.snapshot()
            seq_rate = stored / seq_seconds
            report.say(
                f"1 client, sequential, keep-alive: {seq_seconds:.2f} s, "
                f"{len(bodies) / seq_seconds:,.1f} mutations/s, {seq_rate:,.0f} signals/s "
                f"(sandbox CPU {seq_snap.parts['sandbox'] - httpx_snap.parts['sandbox']:.1f} s)"
            )
        if bodies:
            par_seconds, stored2 = post_concurrently(graphql_url, bodies, args.window)
            par_rate = stored2 / par_seconds
            report.say(
                f"{args.window} clients at once (threads, as many calls in flight as the "
                f"window): {par_seconds:.2f} s, {len(bodies) / par_seconds:,.1f} mutations/s, "
                f"{par_rate:,.0f} signals/s"
            )
        del bodies

        # 5. Import B: the 5 %-error file, validated only, for the rejected list.
        report.say(f"\n== Import B: {error_path.name} (about 5 % rejected), validated only ==")
        sampler_b = RssSampler(web_pid)
        sampler_b.start()
        tb = time.time()
        public_b = web.upload(error_path, setup.app_key_pk)
        tb_uploaded = time.time()
        sampler_b.stop()
        upload_b_rss_mb = sampler_b.peak_kib * 1024 / MB
        row_b = wait_status(public_b, {ImportStatus.VALIDATED}, timeout=max(120.0, n / 2000))
        report.say(
            f"upload {tb_uploaded - tb:.2f} s (web peak RSS {upload_b_rss_mb:.1f} MB); validation "
            f"{ts(row_b['validation_finished_at']) - ts(row_b['validation_started_at']):.2f} s: "
            f"{row_b['signals']:,} signals, {row_b['valid']:,} valid, {row_b['rejected']:,} "
            f"rejected, {row_b['errors']:,} errors, {row_b['warnings']:,} warnings"
        )
        report.say("  disk: " + import_disk(row_b["id"], run_dir))

        # The command line on the same file, for the validation task's target.
        cli_started = time.perf_counter()
        subprocess.run(
            [PY, "manage.py", "validate_signals", str(error_path)],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, check=False,
        )  # fmt: skip
        cli_seconds = time.perf_counter() - cli_started
        task_b_seconds = ts(row_b["validation_finished_at"]) - ts(row_b["validation_started_at"])
        report.say(
            f"validate_signals (the command line) on the same file: {cli_seconds:.2f} s; the "
            f"validation task took {task_b_seconds / cli_seconds:.2f} × that"
        )

        # 6. The preview page.
        report.say(f"\n== Preview page (/imports/<id>), {args.repeat} requests after a warm-up ==")
        rejected_b = list(
            RejectedSignal.objects.filter(signal_import__public_id=public_b)
            .order_by("signal")
            .values_list("signal", flat=True)
        )
        deep_after = rejected_b[int(len(rejected_b) * 0.9)] if rejected_b else 0
        top_code = ""
        problems = SignalImport.objects.get(public_id=public_b).problem_counts or []
        if problems:
            top_code = problems[0]["code"]
        pages: list[tuple[str, str, str]] = [
            (
                f"A (valid, {n_batches:,} batches sent): first page",
                f"/imports/{public_id}",
                "preview A, first page",
            ),
            ("B: first page", f"/imports/{public_b}", "preview B, first page"),
            (
                f"B: deep page (after signal {deep_after:,}, 90 % into {len(rejected_b):,} "
                "rejected)",
                f"/imports/{public_b}?after={deep_after}",
                "preview B, deep page",
            ),
        ]
        if top_code:
            pages.append(
                (
                    f"B: filtered code={top_code}, deep",
                    f"/imports/{public_b}?code={top_code}&after={deep_after}",
                    "",
                )
            )
        for label, path, judged in pages:
            times, page_bytes = web.time_get(path, args.repeat)
            median = statistics.median(times)
            report.say(f"{label}: {fmt_ms(times)}, {page_bytes / 1000:,.0f} kB")
            if judged:
                figures.check(
                    judged, f"{median:.0f} ms", f"< {TARGET_PREVIEW_MS:.0f} ms",
                    median < TARGET_PREVIEW_MS,
                )  # fmt: skip

        send_rate = n / (last_finished - first_started)
        speed: list[Verdict] = []
        if latency:
            ideal = args.window * 500 / latency
            speed = [
                Verdict(
                    f"send phase ÷ ideal {args.window} × 500 / {latency:g} s",
                    f"{send_rate / ideal:.2f} × ({send_rate:,.0f}/s)",
                    f"≥ {TARGET_WINDOW_RATIO}",
                    send_rate / ideal >= TARGET_WINDOW_RATIO,
                ),
                Verdict(
                    f"end to end ÷ httpx {args.window} in flight",
                    f"{e2e_rate / (par_rate or 1):.2f} × ({par_rate:,.0f}/s)",
                    f"≥ {TARGET_E2E_WINDOW_RATIO}",
                    e2e_rate / (par_rate or 1) >= TARGET_E2E_WINDOW_RATIO,
                ),
            ]
        else:
            speed = [
                Verdict(
                    "end to end (upload → last batch stored)",
                    f"{e2e_rate:,.0f} signals/s",
                    f"≥ {TARGET_E2E_RATE:,}/s",
                    e2e_rate >= TARGET_E2E_RATE,
                ),
                Verdict(
                    "end to end ÷ httpx 1 client",
                    f"{e2e_rate / (seq_rate or 1):.2f} × ({seq_rate:,.0f}/s)",
                    f"≥ {TARGET_HTTPX_RATIO}",
                    e2e_rate / (seq_rate or 1) >= TARGET_HTTPX_RATIO,
                ),
                Verdict(
                    f"end to end ÷ httpx {args.window} in flight",
                    f"{e2e_rate / (par_rate or 1):.2f} × ({par_rate:,.0f}/s)",
                    "(for scale)",
                    True,
                ),
            ]
        if not par_rate:  # no reference this run: only what stands without one
            speed = [v for v in speed if "httpx" not in v.name]
            speed.append(Verdict("end to end", f"{e2e_rate:,.0f} signals/s", "(for scale)", True))
        figures.verdicts[:0] = [
            *speed,
            Verdict(
                "validation task ÷ validate_signals (5 % errors)",
                f"{task_b_seconds / cli_seconds:.2f} × ({task_b_seconds:.1f} s)",
                f"≤ {TARGET_VALIDATION_RATIO}",
                task_b_seconds / cli_seconds <= TARGET_VALIDATION_RATIO,
            ),
            Verdict(
                "web peak RSS during upload A / B",
                f"{upload_rss_mb:.0f} / {upload_b_rss_mb:.0f} MB",
                f"< {TARGET_UPLOAD_RSS_MB:.0f} MB",
                max(upload_rss_mb, upload_b_rss_mb) < TARGET_UPLOAD_RSS_MB,
            ),
            Verdict(
                "every batch sent, signalIds stored",
                f"{ids_stored:,} of {n:,}",
                "all",
                stored_ok,
            ),
        ]
        # Peak memory of the other processes over the whole run (VmHWM).
        report.say(
            "\nPeak RSS over the run (VmHWM, main process of each): "
            + ", ".join(
                f"{name} {status_kib(procs.pid(name), 'VmHWM') * 1024 / MB:.0f} MB"
                for name in names
            )
        )
        workers_hwm = []
        for name in names:
            if name.startswith("worker"):
                for pid in _process_tree(procs.pid(name))[1:]:
                    workers_hwm.append(
                        f"{name} pool child {status_kib(pid, 'VmHWM') * 1024 / MB:.0f} MB"
                    )
        if workers_hwm:
            report.say("  " + ", ".join(workers_hwm))
    finally:
        web.close()

    # The verdicts.
    report.say()
    report.say(f"{'target':<42}{'measured':>26}  {'target':<14}verdict")
    report.say("-" * 92)
    for v in figures.verdicts:
        verdict = "PASS" if v.ok else "FAIL"
        if v.target.startswith("("):
            verdict = ""
        report.say(f"{v.name:<42}{v.value:>26}  {v.target:<14}{verdict}")
    return all(v.ok for v in figures.verdicts)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--signals", type=int, default=1_000_000, help="N (default 1,000,000)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (concurrency 1)")
    parser.add_argument("--seed", type=int, default=2025, help="generator seed (default 2025)")
    parser.add_argument("--repeat", type=int, default=5, help="timed requests per preview page")
    parser.add_argument(
        "--py-spy", action="store_true", help="profile workers and sandbox during the send"
    )
    parser.add_argument("--keep", action="store_true", help="keep var/bench/import-run/")
    parser.add_argument(
        "--latency-ms", type=float, default=0.0, help="the sandbox's answer latency (default 0)"
    )
    parser.add_argument(
        "--window", type=int, default=8, help="SIGNALS_SEND_WINDOW of the workers (default 8)"
    )
    parser.add_argument(
        "--distinct",
        action="store_true",
        help="every contact, session and product new (no validator cache hits)",
    )
    args = parser.parse_args(argv)
    if args.signals < 1 or args.workers < 1 or args.repeat < 1:
        parser.error("--signals, --workers and --repeat must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    report = Report()
    for line in machine():
        report.say(line)
    report.say(f"Before: {uptime()}")
    load_before = float(load_average().split()[0] or 0)
    run_dir = ROOT / "var" / "bench" / "import-run"
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    procs = Processes()
    ok = False
    try:
        ok = run(args, report, procs, run_dir)
    except Exception as exc:
        report.say(f"\nThe benchmark stopped: {type(exc).__name__}: {exc}")
        for log in sorted((run_dir / "logs").glob("*.log")):
            report.say(f"--- {log.name}\n{tail(log, 1500)}")
    finally:
        procs.stop_all()
        with contextlib.suppress(Exception):
            import redis

            client = redis.Redis.from_url(BROKER_URL)
            for key in client.scan_iter(match="bench-import-*"):
                client.delete(key)
            client.close()
        with contextlib.suppress(Exception):
            from django.db import connections

            connections.close_all()
        if not args.keep:
            shutil.rmtree(run_dir, ignore_errors=True)
        report.say(f"After: {uptime()}")
        load_after = float(load_average().split()[0] or 0)
        cpus = os.cpu_count() or 1
        if max(load_before, load_after) > 0.5 * cpus:
            report.say(
                f"Note: the machine was shared (load {max(load_before, load_after):.1f} on "
                f"{cpus} CPUs): rates are pessimistic."
            )
        left = [name for name, p in procs.started if p.poll() is None]
        report.say(f"Processes started: {len(procs.started)}, still running: {left or 'none'}")
        report.write(ROOT / "var" / "bench" / f"import-{args.signals}.txt")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
