"""What /healthz and the Health page report: the database, the Celery broker and its queue,
the workers and the scheduler (their heartbeats, connectadmin.heartbeats), the free disk
under the data folders and whether each Connect endpoint answers; each problem found is
said in words with what to do.

Vital, so `down` and HTTP 503 from /healthz: the database and the broker. Without either the
web app cannot do its work (no page is read or saved; no import, send or export can be
queued), and a load balancer should stop sending it people. A silent worker or scheduler, a
Connect endpoint that does not answer, a disk nearly full: `degraded`, HTTP 200. Pages work
and the work waits; restarting the web process, which a failing probe may cause, fixes none
of them.

Every look outside the process has a timeout of CHECK_TIMEOUT_SECONDS; the Connect endpoints
are asked side by side, so a full check takes about that long at worst.
"""

from __future__ import annotations

import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import httpx
from django.conf import settings
from django.db import connection
from django.urls import reverse
from django.utils import timezone

Status = Literal["ok", "degraded", "down", "unknown"]

CHECK_TIMEOUT_SECONDS = 2
# Inspect waits for its replies; the file-system broker looks for them once a second.
INSPECT_TIMEOUT_SECONDS = 1.0
MAX_ENDPOINT_CHECKS = 8  # endpoints asked at once


@dataclass
class Problem:
    check: str
    status: Status
    what: str  # what is wrong, for a person
    todo: str  # what to do about it


@dataclass
class DatabaseCheck:
    status: Status
    engine: str
    ms: float | None = None
    error: str = ""


@dataclass
class BrokerCheck:
    status: Status
    transport: str
    url: str
    queue: str
    ms: float | None = None
    waiting: int | None = None  # messages in the default queue; None: cannot be told
    error: str = ""


@dataclass
class WorkerState:
    name: str
    # running, starting (no heartbeat task yet), busy (alive, takes no task), silent,
    # replaced (silent, a newer worker started on its host), stopped (warm shutdown)
    state: str
    seen_at: datetime
    ran_at: datetime | None
    started_at: datetime | None
    stopped_at: datetime | None
    seconds_since_seen: float

    @property
    def words(self) -> str:
        return WORKER_STATE_WORDS.get(self.state, self.state)

    @property
    def tone(self) -> str:
        return {"running": "ok", "starting": "ok", "busy": "degraded", "silent": "down"}.get(
            self.state, "muted"
        )


GONE = ("stopped", "replaced")  # workers that need nobody any more
WORKER_STATE_WORDS = {
    "running": "Takes tasks",
    "starting": "Starting",
    "busy": "Busy: takes no task",
    "silent": "Silent",
    "replaced": "Gone, replaced",
    "stopped": "Stopped",
}


@dataclass
class WorkersCheck:
    status: Status
    silent_after_seconds: int
    workers: list[WorkerState] = field(default_factory=list)
    last_ran_at: datetime | None = None  # the last time any worker took a task
    error: str = ""  # why the heartbeats could not be read

    @property
    def current(self) -> list[WorkerState]:
        return [worker for worker in self.workers if worker.state not in GONE]

    @property
    def gone(self) -> list[WorkerState]:
        return [worker for worker in self.workers if worker.state in GONE]


@dataclass
class SchedulerState:
    name: str
    seen_at: datetime
    started_at: datetime | None
    seconds_since_seen: float
    live: bool


@dataclass
class SchedulerCheck:
    status: Status
    silent_after_seconds: int
    last_beat_at: datetime | None = None
    schedulers: list[SchedulerState] = field(default_factory=list)
    error: str = ""


@dataclass
class Volume:
    folders: list[str]  # data, exports, imports
    paths: list[str]
    free_bytes: int
    total_bytes: int
    status: Status

    @property
    def free_percent(self) -> float:
        return round(100 * self.free_bytes / self.total_bytes, 1) if self.total_bytes else 0.0


@dataclass
class DiskCheck:
    status: Status
    min_free_bytes: int
    volumes: list[Volume] = field(default_factory=list)
    error: str = ""


@dataclass
class Endpoint:
    url: str
    accounts: list[str]
    status: Status
    http_status: int | None = None
    ms: float | None = None
    error: str = ""


@dataclass
class VendorsCheck:
    status: Status
    endpoints: list[Endpoint] = field(default_factory=list)
    error: str = ""


@dataclass
class HealthReport:
    status: Literal["ok", "degraded", "down"]
    checked_at: datetime
    database: DatabaseCheck
    broker: BrokerCheck
    workers: WorkersCheck
    scheduler: SchedulerCheck
    disk: DiskCheck
    vendors: VendorsCheck
    problems: list[Problem]

    @property
    def http_status(self) -> int:
        return 503 if self.status == "down" else 200

    def as_json(self) -> dict[str, Any]:
        checks = {
            "database": asdict(self.database),
            "broker": asdict(self.broker),
            "workers": asdict(self.workers),
            "scheduler": asdict(self.scheduler),
            "disk": {
                **asdict(self.disk),
                "volumes": [
                    {**asdict(volume), "free_percent": volume.free_percent}
                    for volume in self.disk.volumes
                ],
            },
            "vendors": asdict(self.vendors),
        }
        return {
            "status": self.status,
            "checked_at": self.checked_at,
            "problems": [asdict(problem) for problem in self.problems],
            "checks": checks,
        }


def health_check() -> HealthReport:
    """Every check once; the Connect endpoints are asked while the rest runs."""
    now = timezone.now()
    silent_after = settings.HEALTH_SILENT_SECONDS
    database = _check_database()
    workers = WorkersCheck("unknown", silent_after, error="the database is down")
    scheduler = SchedulerCheck("unknown", silent_after, error="the database is down")
    vendors = VendorsCheck("unknown", error="the database is down")
    endpoints: dict[str, list[str]] | None = None
    if database.status == "ok":
        # Read here, not in the thread: a thread has a database connection of its own.
        try:
            endpoints = connect_endpoints()
        except Exception as exc:
            vendors = VendorsCheck("unknown", error=_error(exc))
    with ThreadPoolExecutor(max_workers=1) as pool:
        asked = pool.submit(check_endpoints, endpoints) if endpoints is not None else None
        broker = _check_broker()
        disk = _check_disk()
        if database.status == "ok":
            workers, scheduler = workers_check(now), scheduler_check(now)
        if asked is not None:
            vendors = asked.result()
    problems = [
        *_database_problems(database),
        *_broker_problems(broker),
        *_worker_problems(workers, now, broker),
        *scheduler_problems(scheduler, now),
        *_disk_problems(disk),
        *_vendor_problems(vendors),
        *(_unreadable_problems(workers, scheduler, vendors) if database.status == "ok" else []),
    ]
    statuses = {problem.status for problem in problems}
    overall: Literal["ok", "degraded", "down"] = (
        "down" if "down" in statuses else "degraded" if statuses else "ok"
    )
    return HealthReport(
        status=overall,
        checked_at=now,
        database=database,
        broker=broker,
        workers=workers,
        scheduler=scheduler,
        disk=disk,
        vendors=vendors,
        problems=problems,
    )


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)


def _error(exc: BaseException) -> str:
    return str(exc).strip() or type(exc).__name__


# --- database ------------------------------------------------------------------------


def _check_database() -> DatabaseCheck:
    engine = connection.vendor
    started = time.perf_counter()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:
        return DatabaseCheck("down", engine, _ms(started), _error(exc))
    return DatabaseCheck("ok", engine, _ms(started))


def _database_problems(check: DatabaseCheck) -> list[Problem]:
    if check.status == "ok":
        return []
    return [
        Problem(
            "database",
            "down",
            f"The database ({check.engine}) does not answer: {check.error}. No page can be "
            "read or saved, and no import, send or export can move on.",
            "Start the database, or correct DATABASE_URL and restart the web server and the "
            "workers.",
        )
    ]


def _unreadable_problems(*checks: WorkersCheck | SchedulerCheck | VendorsCheck) -> list[Problem]:
    """The database answers, but a table the checks read does not (a deploy without
    `migrate`): say so rather than fail."""
    errors = sorted({check.error for check in checks if check.status == "unknown"})
    return [
        Problem(
            "database",
            "degraded",
            f"The database answers but some of its tables cannot be read ({error}): the "
            "workers, the scheduler or the Connect endpoints cannot be checked.",
            "Run manage.py migrate (make run does), then restart the web server.",
        )
        for error in errors
    ]


# --- broker --------------------------------------------------------------------------


def _check_broker() -> BrokerCheck:
    """Connect through the app's own Celery app, as a task's publish does, then count the
    messages waiting in the default queue."""
    from connectadmin.celery import app

    queue = str(app.conf.task_default_queue)
    url = str(app.conf.broker_url or "")
    transport = url.partition("://")[0] or "unknown"
    options: dict[str, Any] = {}
    if transport.startswith("redis"):
        # Neither a connection nor an answer may take longer than the check.
        options = {
            "socket_timeout": CHECK_TIMEOUT_SECONDS,
            "socket_connect_timeout": CHECK_TIMEOUT_SECONDS,
        }
    folder = Path(str((app.conf.broker_transport_options or {}).get("data_folder_in", ".")))
    shown = f"filesystem:// ({folder.parent})" if transport == "filesystem" else _mask(url)
    started = time.perf_counter()
    try:
        with app.connection_for_write(
            connect_timeout=CHECK_TIMEOUT_SECONDS, transport_options=options
        ) as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, timeout=CHECK_TIMEOUT_SECONDS)
            if transport == "filesystem":
                _check_broker_folders(conn.transport_options or {})
            waiting = _queue_depth(conn, queue)
    except Exception as exc:
        return BrokerCheck("down", transport, shown, queue, _ms(started), None, _error(exc))
    return BrokerCheck("ok", transport, shown, queue, _ms(started), waiting)


def _check_broker_folders(options: dict[str, Any]) -> None:
    """The file-system transport "connects" without touching a file: its folders are the
    broker, so they must be there and writable."""
    for key in ("data_folder_in", "data_folder_out", "control_folder"):
        folder = options.get(key)
        if folder and not os.access(folder, os.W_OK | os.X_OK):
            raise OSError(f"the broker's folder {folder} is missing or not writable")


def _queue_depth(conn: Any, queue: str) -> int | None:
    """Messages waiting in `queue`: files named `<ms>_<uuid>.<queue>.msg` in the file-system
    broker's folder, LLEN of the queue's list (and its priority lists) in Redis. Kombu's own
    count (Channel._size) does both; for any other transport it cannot be told."""
    if conn.transport.driver_name not in ("filesystem", "redis"):
        return None
    return int(conn.default_channel._size(queue))


def _mask(url: str) -> str:
    """The broker URL with its password, if any, as `**`."""
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if at and ":" in credentials:
        rest = f"{credentials.partition(':')[0]}:**@{host}"
    return f"{scheme}{sep}{rest}"


def _broker_problems(check: BrokerCheck) -> list[Problem]:
    if check.status == "ok":
        return []
    if check.transport == "filesystem":
        todo = (
            "The embedded broker is a folder under the data folder (CONNECTADMIN_VAR_DIR): "
            "check that it exists and that the web server's user may write there."
        )
    else:
        todo = f"Start the broker ({check.url}), or correct CELERY_BROKER_URL."
    return [
        Problem(
            "broker",
            "down",
            f"The Celery broker does not answer: {check.error}. New imports, sends and "
            "exports cannot be queued.",
            todo,
        )
    ]


# --- workers and scheduler -----------------------------------------------------------


def _silent_for(moment: datetime, now: datetime) -> float:
    return max(0.0, (now - moment).total_seconds())


def workers_check(now: datetime) -> WorkersCheck:
    from connectadmin.models import Heartbeat

    window = timedelta(seconds=settings.HEALTH_SILENT_SECONDS)
    try:
        rows = list(Heartbeat.objects.filter(kind=Heartbeat.Kind.WORKER).order_by("name"))
    except Exception as exc:  # the table is missing: `migrate` has not run
        return WorkersCheck("unknown", settings.HEALTH_SILENT_SECONDS, error=_error(exc))
    workers = []
    for row in rows:
        host = row.name.partition("@")[2]
        if row.stopped_at is not None:
            state = "stopped"
        elif row.seen_at < now - window:
            replaced = any(
                other is not row
                and other.started_at is not None
                and other.started_at > row.seen_at
                and other.name.partition("@")[2] == host
                for other in rows
            )
            state = "replaced" if replaced else "silent"
        elif row.ran_at is not None and row.ran_at >= now - window:
            state = "running"
        elif row.started_at is not None and row.started_at >= now - window:
            state = "starting"
        else:
            state = "busy"
        workers.append(
            WorkerState(
                name=row.name,
                state=state,
                seen_at=row.seen_at,
                ran_at=row.ran_at,
                started_at=row.started_at,
                stopped_at=row.stopped_at,
                seconds_since_seen=_silent_for(row.seen_at, now),
            )
        )
    ran = [row.ran_at for row in rows if row.ran_at is not None]
    # Fine while some worker takes tasks and none vanished without a word.
    states = {worker.state for worker in workers}
    fine = bool(states & {"running", "starting"}) and "silent" not in states
    return WorkersCheck(
        "ok" if fine else "degraded",
        settings.HEALTH_SILENT_SECONDS,
        workers,
        max(ran, default=None),
    )


def scheduler_check(now: datetime) -> SchedulerCheck:
    from connectadmin.models import Heartbeat

    window = timedelta(seconds=settings.HEALTH_SILENT_SECONDS)
    try:
        rows = list(Heartbeat.objects.filter(kind=Heartbeat.Kind.SCHEDULER).order_by("-seen_at"))
    except Exception as exc:
        return SchedulerCheck("unknown", settings.HEALTH_SILENT_SECONDS, error=_error(exc))
    schedulers = [
        SchedulerState(
            name=row.name,
            seen_at=row.seen_at,
            started_at=row.started_at,
            seconds_since_seen=_silent_for(row.seen_at, now),
            # A scheduler another one started after is gone, even if seen a moment ago.
            live=row.seen_at >= now - window
            and not any(
                other is not row and other.started_at is not None and other.started_at > row.seen_at
                for other in rows
            ),
        )
        for row in rows
    ]
    last = rows[0].seen_at if rows else None
    live = [scheduler for scheduler in schedulers if scheduler.live]
    status: Status = "ok" if len(live) == 1 else "degraded"
    return SchedulerCheck(status, settings.HEALTH_SILENT_SECONDS, last, schedulers)


def duration(seconds: float) -> str:
    """45 -> "45 seconds", 420 -> "7 minutes", 7300 -> "2 hours"."""
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            count = int(seconds // size)
            return f"{count} {unit}{'s' if count != 1 else ''}"
    count = int(seconds)
    return f"{count} second{'s' if count != 1 else ''}"


START_WORKER = (
    "Start a worker (make run starts one; by hand: celery -A connectadmin worker), "
    "or look at its log for why it stopped."
)


def _worker_problems(check: WorkersCheck, now: datetime, broker: BrokerCheck) -> list[Problem]:
    if check.status == "unknown":
        return []
    states = {worker.state for worker in check.workers}
    waiting = f" ({broker.waiting} waiting in the queue)" if broker.waiting else ""
    problems = []
    if not states & {"running", "starting", "busy"}:
        if not check.workers:
            what = "No worker has ever shown life"
        else:
            last = max(worker.seen_at for worker in check.workers)
            what = f"No worker has shown life for {duration(_silent_for(last, now))}"
        problems.append(
            Problem(
                "workers",
                "degraded",
                f"{what}: imports, sends and exports are not processed{waiting}.",
                START_WORKER,
            )
        )
    elif not states & {"running", "starting"}:
        idle = duration(_silent_for(check.last_ran_at, now)) if check.last_ran_at else ""
        problems.append(
            Problem(
                "workers",
                "degraded",
                "The workers are up but none has taken a task from the queue"
                + (f" for {idle}" if idle else "")
                + f": every one of them is busy or stuck, and new work waits{waiting}.",
                "See the tasks running now on the Health page. If one runs far longer than "
                "it should, look at its page and at the worker's log; if they are only busy, "
                "add a worker or raise its concurrency.",
            )
        )
    for worker in check.workers:
        if worker.state == "silent":
            problems.append(
                Problem(
                    "workers",
                    "degraded",
                    f"The worker {worker.name} has been silent for "
                    f"{duration(worker.seconds_since_seen)} and did not stop cleanly: it was "
                    "killed, or its machine or its connection to the database is gone.",
                    START_WORKER,
                )
            )
    return problems


START_SCHEDULER = (
    "Start celery beat (make run starts it; by hand: celery -A connectadmin beat "
    "--scheduler django_celery_beat.schedulers:DatabaseScheduler)."
)


def scheduler_problems(check: SchedulerCheck, now: datetime) -> list[Problem]:
    if check.status in ("ok", "unknown"):
        return []
    live = [scheduler for scheduler in check.schedulers if scheduler.live]
    if len(live) > 1:
        names = ", ".join(scheduler.name for scheduler in live)
        return [
            Problem(
                "scheduler",
                "degraded",
                f"{len(live)} schedulers (celery beat) are running ({names}): every periodic "
                "task, scheduled exports included, is sent more than once.",
                "Stop all but one of them.",
            )
        ]
    if check.last_beat_at is None:
        what = "The scheduler (celery beat) has never shown life"
    else:
        silent = duration(_silent_for(check.last_beat_at, now))
        what = f"The scheduler (celery beat) has been silent for {silent}"
    return [
        Problem(
            "scheduler",
            "degraded",
            f"{what}: scheduled exports do not start, and sends whose worker died are not resumed.",
            START_SCHEDULER,
        )
    ]


# --- disk ----------------------------------------------------------------------------


def _existing(path: Path) -> Path:
    """The folder itself or, when it is not created yet, the nearest parent that is."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return path


def _data_folders() -> list[tuple[str, Path]]:
    return [
        ("data", Path(settings.VAR_DIR)),
        ("exports", Path(settings.EXPORTS_DIR)),
        ("imports", Path(settings.IMPORTS_DIR)),
    ]


def _check_disk() -> DiskCheck:
    """Free space per file system under the data folders (one entry when they share one)."""
    minimum = settings.HEALTH_DISK_MIN_FREE_MB * 1024**2
    by_device: dict[int, Volume] = {}
    try:
        for name, path in _data_folders():
            where = _existing(path)
            device = os.stat(where).st_dev
            if device in by_device:
                by_device[device].folders.append(name)
                by_device[device].paths.append(str(path))
                continue
            usage = shutil.disk_usage(where)
            status: Status = "ok" if usage.free >= minimum else "degraded"
            by_device[device] = Volume([name], [str(path)], usage.free, usage.total, status)
    except OSError as exc:
        return DiskCheck("degraded", minimum, list(by_device.values()), _error(exc))
    volumes = list(by_device.values())
    worst: Status = "degraded" if any(v.status != "ok" for v in volumes) else "ok"
    return DiskCheck(worst, minimum, volumes)


def _size(count: int) -> str:
    for unit, step in (("TB", 1024**4), ("GB", 1024**3), ("MB", 1024**2)):
        if count >= step:
            return f"{count / step:.1f} {unit}"
    return f"{count / 1024:.0f} KB"


def _disk_problems(check: DiskCheck) -> list[Problem]:
    problems = []
    if check.error:
        problems.append(
            Problem(
                "disk",
                "degraded",
                f"The free space of the data folders cannot be read: {check.error}.",
                "Check that the data folders exist and are readable by the web server.",
            )
        )
    for volume in check.volumes:
        if volume.status == "ok":
            continue
        folders = ", ".join(volume.paths)
        problems.append(
            Problem(
                "disk",
                "degraded",
                f"Only {_size(volume.free_bytes)} free ({volume.free_percent} %) on the disk of "
                f"{folders}: uploads, checked files and fetched exports may fail.",
                "Free some space (old exports leave the archive after EXPORT_ARCHIVE_DAYS) or "
                "give the disk more room.",
            )
        )
    return problems


# --- Connect endpoints ---------------------------------------------------------------


def connect_endpoints() -> dict[str, list[str]]:
    """The distinct GraphQL endpoints of the Connect accounts, with the accounts of each."""
    from connectadmin.models import ConnectAccount, default_endpoint

    endpoints: dict[str, list[str]] = {}
    for name, url, region in ConnectAccount.objects.order_by("name").values_list(
        "name", "graphql_endpoint", "region"
    ):
        try:
            url = url or default_endpoint(region)
        except (KeyError, ValueError):  # an unknown region and no endpoint: nothing to ask
            continue
        endpoints.setdefault(url, []).append(name)
    return endpoints


def check_endpoints(endpoints: dict[str, list[str]]) -> VendorsCheck:
    """Ask every endpoint at once; one that has not answered after the timeout is
    unreachable, whatever its thread is still waiting for (a slow DNS, say)."""
    if not endpoints:
        return VendorsCheck("ok")
    pool = ThreadPoolExecutor(max_workers=min(MAX_ENDPOINT_CHECKS, len(endpoints)))
    futures = {url: pool.submit(_probe, url, accounts) for url, accounts in endpoints.items()}
    wait(futures.values(), timeout=CHECK_TIMEOUT_SECONDS + 0.5)
    pool.shutdown(wait=False, cancel_futures=True)
    results = []
    for url, future in futures.items():
        if future.done() and not future.cancelled():
            results.append(future.result())
        else:
            results.append(
                Endpoint(
                    url,
                    endpoints[url],
                    "degraded",
                    error=f"no answer within {CHECK_TIMEOUT_SECONDS:g} s",
                )
            )
    status: Status = "ok" if all(r.status == "ok" for r in results) else "degraded"
    return VendorsCheck(status, results)


def _probe(url: str, accounts: list[str]) -> Endpoint:
    """Any HTTP answer, a 401 or 405 to a request without a key included, means Connect is
    there; a 5xx means it is there and failing; no answer means it cannot be reached."""
    started = time.perf_counter()
    try:
        # No key is sent: this only asks whether the endpoint answers. Proxies from the
        # environment apply as they do to the real client (signals_app.connect_client).
        with httpx.Client(timeout=CHECK_TIMEOUT_SECONDS, follow_redirects=False) as client:
            response = client.get(url, headers={"Accept": "application/json"})
    except httpx.TimeoutException:
        error = f"no answer within {CHECK_TIMEOUT_SECONDS:g} s"
        return Endpoint(url, accounts, "degraded", None, _ms(started), error)
    except (httpx.HTTPError, OSError) as exc:
        return Endpoint(url, accounts, "degraded", None, _ms(started), _error(exc))
    if response.status_code >= 500:
        error = f"it answers HTTP {response.status_code}"
        return Endpoint(url, accounts, "degraded", response.status_code, _ms(started), error)
    return Endpoint(url, accounts, "ok", response.status_code, _ms(started))


def _vendor_problems(check: VendorsCheck) -> list[Problem]:
    from connectadmin.models import Region, default_endpoint

    problems = []
    for endpoint in check.endpoints:
        if endpoint.status == "ok":
            continue
        accounts = ", ".join(endpoint.accounts)
        todo = (
            "It is the local sandbox: start it (make run starts it)."
            if endpoint.url == default_endpoint(Region.SANDBOX)
            else "Check this server's network and proxy, the account's endpoint, and "
            "Connect's status page; sends that fail this way are retried or left for you "
            "to resend."
        )
        problems.append(
            Problem(
                "vendors",
                "degraded",
                f"Connect at {endpoint.url} cannot be reached ({endpoint.error}): sends and "
                f"exports of {accounts} fail until it answers.",
                todo,
            )
        )
    return problems


# --- tasks running now (the Health page) ---------------------------------------------

TASK_WORDS = {
    "signals_app.tasks.validate_import": "Checking an import's file",
    "signals_app.tasks.write_fixed_file": "Writing a corrected file",
    "signals_app.tasks.send_import": "Sending an import",
    "signals_app.tasks.resume_stalled_sends": "Looking for stalled sends",
    "exports_app.tasks.watch_export": "Watching an export job",
    "exports_app.tasks.fetch_export": "Fetching an export file",
    "exports_app.tasks.resume_export_watches": "Looking for lost export watches",
    "exports_app.tasks.run_export_schedule": "Starting a scheduled export",
    "exports_app.tasks.purge_export_archive": "Cleaning the export archive",
    "connectadmin.tasks.record_heartbeat": "Heartbeat",
}


@dataclass
class RunningTask:
    worker: str
    name: str
    words: str
    started_at: datetime | None
    link: str = ""


@dataclass
class RunningTasks:
    answered: list[str] = field(default_factory=list)  # the workers that answered
    tasks: list[RunningTask] = field(default_factory=list)
    error: str = ""  # the workers could not be asked


def workers_alive() -> int:
    """How many workers showed life lately (so many answers to wait for)."""
    workers = workers_check(timezone.now()).workers
    return sum(1 for worker in workers if worker.state in ("running", "starting", "busy"))


def running_tasks(*, expected: int = 0) -> RunningTasks:
    """Celery's inspect().active(): what each worker that answers within the timeout is
    running. `expected`, the workers believed alive, lets it return once they all have."""
    from connectadmin.celery import app

    try:
        # A connection of its own, not the app's pool: the same broker the check looked at.
        with app.connection_for_write(connect_timeout=CHECK_TIMEOUT_SECONDS) as conn:
            inspector = app.control.inspect(
                timeout=INSPECT_TIMEOUT_SECONDS, limit=expected or None, connection=conn
            )
            replies = inspector.active() or {}
    except Exception as exc:
        return RunningTasks(error=_error(exc))
    tasks = []
    for worker, active in sorted(replies.items()):
        for task in active:
            name = str(task.get("name", ""))
            tasks.append(
                RunningTask(
                    worker=worker,
                    name=name,
                    words=TASK_WORDS.get(name, name),
                    started_at=_started(task.get("time_start")),
                    link=_task_link(name, task.get("args")),
                )
            )
    return RunningTasks(sorted(replies), tasks)


def _started(value: Any) -> datetime | None:
    if not isinstance(value, int | float):
        return None
    return datetime.fromtimestamp(value, tz=timezone.get_current_timezone())


IMPORT_TASKS = {
    "signals_app.tasks.validate_import",
    "signals_app.tasks.write_fixed_file",
    "signals_app.tasks.send_import",
}


def _task_link(name: str, args: Any) -> str:
    """The page of what the task works on: its import, export job or file."""
    if not isinstance(args, list | tuple) or not args or not isinstance(args[0], int):
        return ""
    from exports_app.models import ExportJob
    from signals_app.models import SignalImport

    if name in IMPORT_TASKS:
        signal_import = SignalImport.objects.filter(pk=args[0]).first()
        return (
            reverse("signals:import_detail", args=[signal_import.public_id])
            if signal_import
            else ""
        )
    if name == "exports_app.tasks.watch_export":
        job = ExportJob.objects.filter(pk=args[0]).first()
        return reverse("exports:job_detail", args=[job.public_id]) if job else ""
    if name == "exports_app.tasks.fetch_export":
        return reverse("exports:file_detail", args=[args[0]])
    return ""
