"""No uploaded file can take a worker down (issue 8): each poison input through a real
Celery worker (the prefork pool, as deployed), on the embedded default that `make run` has
(SQLite and the file-system broker) and on PostgreSQL and Redis (production, CI).

For every input: a clear verdict in bounded time (a finding, or the import unreadable with
a message that names the cause), the worker's processes the same before and after, the
task received once (no redelivery loop), and for the amplifying file, the database grown
by at most the import's storage budget."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pytest
from django.conf import settings as django_settings
from django.contrib.auth.models import User
from django.db import connection

from connectadmin.celery import app as celery_app
from connectadmin.models import AppKey, ConnectAccount, Region
from signals_app.models import ImportFinding, SignalImport
from signals_app.services import upload
from signals_app.services.validation import storage_budget
from tests.conftest import require
from tests.integration.conftest import Workers

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(django_settings.BASE_DIR)
TIMEOUT = 120.0
# Workers with tight limits, for files meant to pass them.
MEMORY_LIMITS = {"SIGNALS_VALIDATION_MEMORY_MB": "96", "SIGNALS_VALIDATION_CPU_SECONDS": "600"}
CPU_LIMITS = {"SIGNALS_VALIDATION_CPU_SECONDS": "1", "SIGNALS_VALIDATION_MAX_SECONDS": "600"}
SLOW_LIMITS = {"SIGNALS_VALIDATION_CPU_SECONDS": "600", "SIGNALS_VALIDATION_MAX_SECONDS": "1"}


def envelope(n: int, **content: Any) -> dict[str, Any]:
    return {
        "appKey": "poison-ultimate",
        "identifiableAttributes": {"email": f"c{n}@example.com"},
        "signalContent": {"signalType": "order", "currency": "USD", "orderId": f"o-{n}", **content},
    }


def line(value: Any) -> bytes:
    return json.dumps(value).encode() + b"\n"


# --- the inputs: (file name, bytes), written once per module ------------------------------

DEEP = 100_000


def _inputs() -> dict[str, tuple[str, Callable[[Path], Any]]]:
    deep_array = b"[" * DEEP + b"]" * DEEP
    deep_object = b'{"a":' * DEEP + b"1" + b"}" * DEEP
    nested_value = (
        b'{"appKey": "poison-ultimate", "identifiableAttributes": {"email": "a@b.co"}, '
        b'"signalContent": {"signalType": "order", "currency": "USD", "orderId": "1", "x": '
        + deep_array
        + b"}}\n"
    )
    long_number = line(envelope(0)).replace(b'"o-0"', b"9" * 4301)
    other_account = b"".join(line({**envelope(n), "appKey": "poison-pro"}) for n in range(20))
    return {
        "deep array": ("deep.json", written(b"[" + deep_array + b"]")),
        "deep object": ("deep-object.json", written(deep_object)),
        "deep value in one NDJSON signal": (
            "deep.ndjson",
            written(line(envelope(1)) + nested_value),
        ),
        "a 4,301-digit integer": ("long-number.ndjson", written(line(envelope(1)) + long_number)),
        "one line then 200 MB of newlines, gzipped": ("blank.ndjson.gz", _blank_gzip),
        "200,000 {} lines": ("empties.ndjson", written(b"{}\n" * 200_000)),
        "another account's app key": ("other-account.ndjson", written(other_account)),
        "a gzip of 1 GB of zeros": ("zeros.gz", _zero_gzip),
        "a CSV with only its header": ("header.csv", written(b"appKey,signalContent.url\r\n")),
    }


def written(data: bytes) -> Callable[[Path], Any]:
    return lambda path: path.write_bytes(data)


def _blank_gzip(path: Path) -> None:
    with gzip.open(path, "wb", compresslevel=9) as out:
        out.write(line(envelope(0)))
        for _ in range(20):
            out.write(b"\n" * 10_000_000)


def _zero_gzip(path: Path) -> None:
    with gzip.open(path, "wb", compresslevel=9) as out:
        for _ in range(100):
            out.write(bytes(10_000_000))


# What each input must end as: (status, what the import says).
EXPECTED: dict[str, tuple[str, str]] = {
    "deep array": ("validated", "too_large"),
    "deep object": ("validated", "too_large"),
    "deep value in one NDJSON signal": ("validated", "too_large"),
    "a 4,301-digit integer": ("validated", "too_large"),
    "one line then 200 MB of newlines, gzipped": (
        "unreadable",
        "the file holds more than 64 MB of blank space in a row",
    ),
    "200,000 {} lines": ("validated", "required"),
    "another account's app key": ("validated", "other_account"),
    "a gzip of 1 GB of zeros": (
        "unreadable",
        "the file is gzip data that inflates to about 1.0 GB of zero bytes",
    ),
    "a CSV with only its header": (
        "unreadable",
        "the CSV has its header row but no signals in the rows after it",
    ),
}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("poison")
    files = {}
    for name, (file_name, write) in _inputs().items():
        files[name] = folder / file_name
        write(files[name])
    return files


# --- two stacks behind one face ------------------------------------------------------------


@dataclass
class Verdict:
    status: str
    error_message: str
    signals: int
    rejected: int
    errors: int
    codes: list[str]
    findings_not_stored: int


class Stack(Protocol):
    def upload(self, path: Path, *, queue: str = "") -> int: ...

    def verdict(self, import_id: int) -> Verdict | None: ...

    def processes(self, queue: str = "") -> set[int]: ...

    def received(self, queue: str = "") -> int: ...

    def stored_bytes(self) -> int: ...


def wait_verdict(stack: Stack, import_id: int) -> Verdict:
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        verdict = stack.verdict(import_id)
        if verdict is not None:
            return verdict
        time.sleep(0.2)
    pytest.fail(f"import {import_id} has no verdict after {TIMEOUT:g} s")


def received_validations(log: str) -> int:
    return sum(
        1
        for text in log.splitlines()
        if "signals_app.tasks.validate_import[" in text and text.endswith("received")
    )


def pool_of(pid: int) -> set[int]:
    """A worker's main process and its pool's children."""
    found = {pid}
    for children in Path(f"/proc/{pid}/task").glob("*/children"):
        found.update(int(child) for child in children.read_text().split())
    return found


# The embedded default: its own var folder (SQLite, file-system broker), a driver script
# run through manage.py for what the test would do in the app.

DRIVER = textwrap.dedent(
    """
    import json, sys
    from django.contrib.auth.models import User
    from connectadmin.celery import app
    from connectadmin.models import AppKey, ConnectAccount, Region
    from signals_app.models import ImportFinding, SignalImport
    from signals_app.services import upload

    command, argument, queue = sys.argv[-3:]
    if command == "setup":
        user = User.objects.create_user("poison", password="x")
        for tier, key in (("ultimate", "poison-ultimate"), ("pro", "poison-pro")):
            account = ConnectAccount.objects.create(
                name=f"Poison {tier}", region=Region.SANDBOX, api_key=f"k-{tier}",
                connect_user_email=f"{tier}@example.com",
            )
            AppKey.objects.create(key=key, tier=tier, account=account)
        print(json.dumps(user.pk))
    elif command == "upload":
        app.conf.task_default_queue = queue
        with open(argument, "rb") as file:
            signal_import = upload.import_create(
                user=User.objects.get(username="poison"),
                app_key=AppKey.objects.get(key="poison-ultimate"), mode="test", upload=file,
                original_name=argument.rsplit("/", 1)[-1],
            )
        print(json.dumps(signal_import.pk))
    elif command == "verdict":
        s = SignalImport.objects.get(pk=int(argument))
        found = ImportFinding.objects.filter(signal_import=s).values_list("code", flat=True)
        codes = sorted(set(found))
        print(json.dumps([s.status, s.error_message, s.signals, s.rejected, s.errors, codes,
                          s.findings_not_stored]))
    """
)


class Embedded:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.var = root / "var"
        self.env = {
            key: value
            for key, value in os.environ.items()
            if key not in ("DATABASE_URL", "CELERY_BROKER_URL", "DJANGO_SETTINGS_MODULE")
        }
        self.env |= {"CONNECTADMIN_VAR_DIR": str(self.var), "PYTHONUNBUFFERED": "1"}
        self.driver = root / "driver.py"
        self.driver.write_text(DRIVER)
        self.workers: dict[str, subprocess.Popen[bytes]] = {}
        self.logs: dict[str, Path] = {}
        self._manage("migrate", "--noinput", "-v0")
        self._drive("setup")

    def _manage(self, *args: str) -> str:
        result = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    def _drive(self, command: str, argument: str = "-", queue: str = "") -> Any:
        script = f"import sys; sys.argv += {[command, argument, queue]!r}\n" + DRIVER
        out = self._manage("shell", "-c", script)
        return json.loads(out.strip().splitlines()[-1])

    def start_worker(self, queue: str, **env: str) -> None:
        log = self.root / f"worker-{queue}.log"
        with log.open("wb") as out:
            self.workers[queue] = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "connectadmin", "worker",
                 "--concurrency", "1", "-Q", queue or "celery", "--loglevel", "INFO",
                 "-n", f"{queue or 'default'}@%h",
                 "--without-gossip", "--without-mingle", "--without-heartbeat"],
                cwd=ROOT, env={**self.env, **env}, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        self.logs[queue] = log
        deadline = time.monotonic() + 60
        while b" ready." not in log.read_bytes():
            assert self.workers[queue].poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)

    def stop(self) -> None:
        for process in self.workers.values():
            os.killpg(process.pid, 9)
            process.wait(timeout=10)

    def upload(self, path: Path, *, queue: str = "") -> int:
        return int(self._drive("upload", str(path), queue or "celery"))

    def verdict(self, import_id: int) -> Verdict | None:
        status, message, signals, rejected, errors, codes, not_stored = self._drive(
            "verdict", str(import_id)
        )
        if status in ("uploaded", "validating"):
            return None
        return Verdict(status, message, signals, rejected, errors, codes, not_stored)

    def processes(self, queue: str = "") -> set[int]:
        return pool_of(self.workers[queue].pid)

    def received(self, queue: str = "") -> int:
        return received_validations(self.logs[queue].read_text())

    def stored_bytes(self) -> int:
        database = self.var / "connectadmin.sqlite3"
        return database.stat().st_size


class OnPostgres:
    """PostgreSQL and Redis: pytest-django's test database, a worker on queues of its own."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.pools: dict[str, Workers] = {}
        self.prefix = f"poison-{uuid.uuid4().hex[:8]}"

    def start_worker(self, queue: str, **env: str) -> None:
        from urllib.parse import urlsplit

        url = urlsplit(os.environ["DATABASE_URL"])
        logs = self.root / f"logs-{queue or 'default'}"
        logs.mkdir()
        worker_env = {
            **os.environ,
            "DATABASE_URL": url._replace(path=f"/{connection.settings_dict['NAME']}").geturl(),
            "DJANGO_SETTINGS_MODULE": "tests.integration.worker_settings",
            "IMPORTS_DIR": str(django_settings.IMPORTS_DIR),
            "CONNECTADMIN_VAR_DIR": str(self.root / "var"),
            "PYTHONUNBUFFERED": "1",
            # Production's: a task running longer than the test workers' 4 s is not
            # delivered again while it runs (counting deliveries is what is tested here).
            "TEST_VISIBILITY_TIMEOUT": str(6 * 3600),
            **env,
        }
        pool = Workers(worker_env, f"{self.prefix}-{queue or 'default'}", logs)
        pool.start()
        self.pools[queue] = pool

    def stop(self) -> None:
        for pool in self.pools.values():
            pool.stop()

    def setup(self) -> None:
        user = User.objects.create_user("poison", password="x")
        for tier, key in (("ultimate", "poison-ultimate"), ("pro", "poison-pro")):
            account = ConnectAccount.objects.create(
                name=f"Poison {tier}",
                region=Region.SANDBOX,
                api_key=f"k-{tier}",
                connect_user_email=f"{tier}@example.com",
            )
            AppKey.objects.create(key=key, tier=tier, account=account)
        self.user = user

    def upload(self, path: Path, *, queue: str = "") -> int:
        previous = celery_app.conf.task_default_queue
        celery_app.conf.task_default_queue = self.pools[queue].queue
        try:
            with path.open("rb") as file:
                signal_import = upload.import_create(
                    user=self.user,
                    app_key=AppKey.objects.get(key="poison-ultimate"),
                    mode="test",
                    upload=file,
                    original_name=path.name,
                )
        finally:
            celery_app.conf.task_default_queue = previous
        return signal_import.pk

    def verdict(self, import_id: int) -> Verdict | None:
        s = SignalImport.objects.get(pk=import_id)
        if s.status in ("uploaded", "validating"):
            return None
        codes = sorted(
            set(ImportFinding.objects.filter(signal_import=s).values_list("code", flat=True))
        )
        return Verdict(
            s.status, s.error_message, s.signals, s.rejected, s.errors, codes, s.findings_not_stored
        )

    def processes(self, queue: str = "") -> set[int]:
        return pool_of(self.pools[queue].running[0].pid)

    def received(self, queue: str = "") -> int:
        return sum(
            received_validations(path.read_text(errors="replace"))
            for path in self.pools[queue].logs.glob("worker-*.log")
        )

    def stored_bytes(self) -> int:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_total_relation_size('signals_app_importfinding') "
                "+ pg_total_relation_size('signals_app_rejectedsignal') "
                "+ pg_total_relation_size('signals_app_rejectedset')"
            )
            return int(cursor.fetchone()[0])


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Embedded]:
    stack = Embedded(tmp_path_factory.mktemp("embedded"))
    try:
        stack.start_worker("")
        stack.start_worker("memory", **MEMORY_LIMITS)
        stack.start_worker("cpu", **CPU_LIMITS)
        stack.start_worker("slow", **SLOW_LIMITS)
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="module")
def postgres_workers(
    django_db_setup: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OnPostgres]:
    broker = os.environ.get("CELERY_BROKER_URL", "")
    require(broker.startswith("redis"), "Redis (CELERY_BROKER_URL=redis://...)")
    require(connection.vendor == "postgresql", "PostgreSQL (DATABASE_URL=postgres://...)")
    stack = OnPostgres(tmp_path_factory.mktemp("postgres"))
    try:
        stack.start_worker("")
        stack.start_worker("memory", **MEMORY_LIMITS)
        stack.start_worker("cpu", **CPU_LIMITS)
        stack.start_worker("slow", **SLOW_LIMITS)
        yield stack
    finally:
        stack.stop()


@pytest.fixture(params=["embedded", "postgres"])
def stack(request: pytest.FixtureRequest) -> Stack:
    if request.param == "embedded":
        return request.getfixturevalue("embedded")
    pg: OnPostgres = request.getfixturevalue("postgres_workers")
    pg.setup()
    return pg


# --- the tests -----------------------------------------------------------------------------


def judged(stack: Stack, path: Path, queue: str = "") -> tuple[Verdict, float]:
    """Upload `path`, wait for its verdict; check the worker lived through it and took the
    task once. Returns the verdict and the seconds it took."""
    before, received = stack.processes(queue), stack.received(queue)
    started = time.monotonic()
    verdict = wait_verdict(stack, stack.upload(path, queue=queue))
    took = time.monotonic() - started
    time.sleep(1)  # a redelivery would show by now
    assert stack.processes(queue) == before, "a worker process died"
    assert stack.received(queue) == received + 1, "the task was delivered again"
    return verdict, took


@pytest.mark.parametrize("name", list(EXPECTED))
def test_every_poison_input_gets_a_verdict_and_the_worker_stays_up(
    stack: Stack, inputs: dict[str, Path], name: str
) -> None:
    status, said = EXPECTED[name]
    stored_before = stack.stored_bytes()
    verdict, took = judged(stack, inputs[name])
    assert verdict.status == status, verdict
    if status == "unreadable":
        assert said.lower() in verdict.error_message.lower(), verdict.error_message
    else:
        assert said in verdict.codes, verdict
        assert verdict.rejected >= 1
    assert took < 60, f"{took:.1f} s"
    if name == "200,000 {} lines":
        # Counted exactly, stored within the budget of a 600 KB file.
        assert (verdict.signals, verdict.rejected) == (200_000, 200_000)
        assert verdict.errors == 400_000  # identifiableAttributes and signalContent
        assert verdict.findings_not_stored > 0
        grown = stack.stored_bytes() - stored_before
        assert grown <= storage_budget(inputs[name].stat().st_size), grown
    if name == "another account's app key":
        assert (verdict.signals, verdict.rejected) == (20, 20)


def test_a_reader_past_its_memory_limit_makes_the_import_unreadable(
    stack: Stack, tmp_path: Path
) -> None:
    # One signal of 15 MB (under the 16 MiB a signal may have) holding five million
    # empty items: hundreds of MB once read, past the 96 MB this worker's reader may take.
    path = tmp_path / "huge.ndjson"
    items = b",".join([b"{}"] * 5_000_000)
    path.write_bytes(line(envelope(0))[:-3] + b', "orderedItems": [' + items + b"]}}\n")
    verdict, _ = judged(stack, path, "memory")
    assert verdict.status == "unreadable"
    assert "needed more than 0.1 GiB of memory" in verdict.error_message


def test_a_reader_past_its_processor_time_makes_the_import_unreadable(
    stack: Stack, tmp_path: Path
) -> None:
    path = tmp_path / "slow.ndjson"
    path.write_bytes(
        b"".join(line({**envelope(n), "identifiableAttributes": {}}) for n in range(300_000))
    )
    verdict, _ = judged(stack, path, "cpu")
    assert verdict.status == "unreadable"
    assert "took longer than 1 second of processor time" in verdict.error_message


def test_a_reader_past_its_time_makes_the_import_unreadable(stack: Stack, tmp_path: Path) -> None:
    path = tmp_path / "slow.ndjson"
    path.write_bytes(
        b"".join(line({**envelope(n), "identifiableAttributes": {}}) for n in range(300_000))
    )
    verdict, _ = judged(stack, path, "slow")
    assert verdict.status == "unreadable"
    assert "took longer than 1 second to read" in verdict.error_message
