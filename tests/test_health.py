"""/healthz and the Health page: the checks against the real database, the real file-system
broker (and a Redis URL on a closed port), real sockets for the Connect endpoints, the
heartbeat task and beat's signal. The same against real worker and beat processes:
tests/test_devstack.py."""

from __future__ import annotations

import http.server
import socket
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from celery.signals import beat_init
from django.test import Client
from django.utils import timezone

from connectadmin import heartbeats
from connectadmin.celery import app as celery_app
from connectadmin.models import Heartbeat
from connectadmin.tasks import record_heartbeat
from signals_app.templatetags.signals_ui import when
from tests.factories import make_account
from tests.test_views import make_import, make_user

pytestmark = pytest.mark.django_db

CHECKS = {"database", "broker", "workers", "scheduler", "disk", "vendors"}


def closed_port() -> int:
    """A port nothing listens on: connections to it are refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Refuses(http.server.BaseHTTPRequestHandler):
    """Answers as a GraphQL endpoint does to a GET without a key."""

    def do_GET(self) -> None:
        self.send_response(405)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def connect_endpoint() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Refuses)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/graphql"
    server.shutdown()
    server.server_close()


@pytest.fixture(autouse=True, name="_own_broker_connections")
def _own_broker_connections_here(monkeypatch: pytest.MonkeyPatch) -> None:
    _own_broker_connections(monkeypatch)


def _own_broker_connections(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tests here point the app at other brokers: whatever connection or producer pool
    is made meanwhile is dropped afterwards (monkeypatch puts the app's own back), so a
    later test does not publish into this test's broker and lose its tasks (it did, in CI:
    the integration tests' tasks went to a file-system folder)."""
    monkeypatch.setattr(celery_app, "_pool", None)
    monkeypatch.setattr(celery_app.amqp, "_producer_pool", None)


@pytest.fixture
def broker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The embedded file-system broker, in a folder of the test's own (so the count of
    waiting messages is this test's); CI's CELERY_BROKER_URL would win over the app's conf."""
    monkeypatch.delenv("CELERY_BROKER_URL", raising=False)
    _own_broker_connections(monkeypatch)  # for the tests of other modules that use this
    folder = tmp_path / "broker"
    for sub in ("in", "processed", "control"):
        (folder / sub).mkdir(parents=True)
    monkeypatch.setitem(celery_app.conf, "broker_url", "filesystem://")
    monkeypatch.setitem(
        celery_app.conf,
        "broker_transport_options",
        {
            "data_folder_in": str(folder / "in"),
            "data_folder_out": str(folder / "in"),
            "processed_folder": str(folder / "processed"),
            "control_folder": str(folder / "control"),
        },
    )
    return folder


def publish_heartbeat() -> None:
    """Through a connection of the test's own: the app's pool may hold another broker."""
    with celery_app.connection_for_write() as conn, conn.Producer() as producer:
        record_heartbeat.apply_async(producer=producer)


def alive(kind: str, name: str, *, ago: timedelta = timedelta(0), **fields: Any) -> Heartbeat:
    moment = timezone.now() - ago
    values: dict[str, Any] = {"seen_at": moment, "started_at": moment - timedelta(hours=1)}
    if kind == Heartbeat.Kind.WORKER:
        values["ran_at"] = moment
    values.update(fields)
    return Heartbeat.objects.create(kind=kind, name=name, **values)


def healthy_processes() -> None:
    alive(Heartbeat.Kind.WORKER, "celery@web-1", ago=timedelta(seconds=20))
    alive(Heartbeat.Kind.SCHEDULER, "web-1 (pid 7)", ago=timedelta(seconds=5))


def test_liveness_answers_without_touching_anything(
    client: Client, django_assert_num_queries: Any
) -> None:
    with django_assert_num_queries(0):
        response = client.get("/healthz?live=1")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_healthz_reports_every_check_and_ok_when_all_answers(
    client: Client, broker: Path, connect_endpoint: str
) -> None:
    healthy_processes()
    make_account(name="Shop EU", graphql_endpoint=connect_endpoint)
    make_account(name="Shop US", graphql_endpoint=connect_endpoint)
    publish_heartbeat()  # two messages wait in the broker's folder
    publish_heartbeat()

    response = client.get("/healthz")

    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    body = response.json()
    assert body["status"] == "ok", body["problems"]
    assert body["problems"] == []
    checks = body["checks"]
    assert set(checks) == CHECKS
    assert {name: check["status"] for name, check in checks.items()} == dict.fromkeys(CHECKS, "ok")
    assert checks["database"]["ms"] >= 0
    assert checks["broker"]["transport"] == "filesystem"
    assert checks["broker"]["queue"] == "celery"
    assert checks["broker"]["waiting"] == 2
    assert len(list((broker / "in").glob("*.celery.msg"))) == 2
    [worker] = checks["workers"]["workers"]
    assert (worker["name"], worker["state"]) == ("celery@web-1", "running")
    assert worker["ran_at"] and 19 <= worker["seconds_since_seen"] < 60
    assert checks["scheduler"]["last_beat_at"]
    assert [s["live"] for s in checks["scheduler"]["schedulers"]] == [True]
    [endpoint] = checks["vendors"]["endpoints"]  # both accounts share one endpoint
    assert endpoint["url"] == connect_endpoint
    assert endpoint["accounts"] == ["Shop EU", "Shop US"]
    assert (endpoint["status"], endpoint["http_status"]) == ("ok", 405)


def test_disk_figures_are_given_and_too_little_room_is_degraded(
    client: Client, broker: Path, settings: Any, tmp_path: Path
) -> None:
    healthy_processes()
    settings.EXPORTS_DIR = tmp_path / "not-created-yet" / "exports"
    disk = client.get("/healthz").json()["checks"]["disk"]
    assert disk["status"] == "ok"
    folders = [name for volume in disk["volumes"] for name in volume["folders"]]
    assert sorted(folders) == ["data", "exports", "imports"]
    for volume in disk["volumes"]:
        assert 0 < volume["free_bytes"] <= volume["total_bytes"]
        assert 0 < volume["free_percent"] <= 100

    settings.HEALTH_DISK_MIN_FREE_MB = 1024**4  # an exabyte: more than any disk here
    response = client.get("/healthz")
    body = response.json()
    assert response.status_code == 200
    assert body["status"] == "degraded"
    assert body["checks"]["disk"]["status"] == "degraded"
    assert [p["check"] for p in body["problems"]] == ["disk"] * len(disk["volumes"])
    assert body["problems"][0]["what"].startswith("Only ")


def test_a_broker_that_refuses_connections_is_down_with_503_naming_it(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    healthy_processes()
    monkeypatch.delenv("CELERY_BROKER_URL", raising=False)
    port = closed_port()
    monkeypatch.setitem(celery_app.conf, "broker_url", f"redis://:s3cret@127.0.0.1:{port}/15")
    url = f"redis://:**@127.0.0.1:{port}/15"  # as shown: the password never is

    response = client.get("/healthz")

    assert response.status_code == 503
    assert b"s3cret" not in response.content
    body = response.json()
    assert body["status"] == "down"
    broker = body["checks"]["broker"]
    assert (broker["status"], broker["transport"], broker["url"]) == ("down", "redis", url)
    assert "refused" in broker["error"].lower()
    assert broker["waiting"] is None
    [problem] = body["problems"]
    assert problem["check"] == "broker" and problem["status"] == "down"
    assert "The Celery broker does not answer" in problem["what"]
    assert url in problem["todo"]
    assert body["checks"]["database"]["status"] == "ok"  # the rest is still checked


def test_a_missing_file_system_broker_folder_is_down(
    client: Client, broker: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    healthy_processes()
    (broker / "in").rmdir()
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["checks"]["broker"]["status"] == "down"
    assert str(broker / "in") in response.json()["checks"]["broker"]["error"]


def test_a_connect_endpoint_that_refuses_connections_is_degraded_not_503(
    client: Client, broker: Path, connect_endpoint: str
) -> None:
    healthy_processes()
    refused = f"http://127.0.0.1:{closed_port()}/graphql"
    make_account(name="Shop refused", graphql_endpoint=refused)
    make_account(name="Shop fine", graphql_endpoint=connect_endpoint)

    response = client.get("/healthz")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "degraded"
    endpoints = {e["url"]: e for e in body["checks"]["vendors"]["endpoints"]}
    assert endpoints[connect_endpoint]["status"] == "ok"
    assert endpoints[refused]["status"] == "degraded"
    assert endpoints[refused]["http_status"] is None
    assert "refused" in endpoints[refused]["error"].lower()
    [problem] = body["problems"]
    assert problem["check"] == "vendors"
    assert refused in problem["what"] and "Shop refused" in problem["what"]
    assert "Shop fine" not in problem["what"]


def test_a_silent_worker_and_scheduler_are_reported_with_how_long(
    client: Client, broker: Path, settings: Any
) -> None:
    settings.HEALTH_SILENT_SECONDS = 300
    alive(Heartbeat.Kind.WORKER, "celery@web-1", ago=timedelta(minutes=7, seconds=5))
    alive(Heartbeat.Kind.SCHEDULER, "web-1 (pid 7)", ago=timedelta(minutes=9, seconds=1))

    response = client.get("/healthz")

    assert response.status_code == 200  # work waits; the web app itself works
    body = response.json()
    assert body["status"] == "degraded"
    assert body["checks"]["workers"]["status"] == "degraded"
    assert body["checks"]["workers"]["workers"][0]["state"] == "silent"
    assert body["checks"]["scheduler"]["status"] == "degraded"
    words = [p["what"] for p in body["problems"]]
    assert words[0].startswith("No worker has shown life for 7 minutes: imports, sends and")
    assert "The worker celery@web-1 has been silent for 7 minutes" in words[1]
    assert words[2].startswith("The scheduler (celery beat) has been silent for 9 minutes")
    assert "make run" in body["problems"][0]["todo"]

    # Within the allowed silence, the same rows are fine.
    settings.HEALTH_SILENT_SECONDS = 600
    assert client.get("/healthz").json()["status"] == "ok"


def test_worker_states_stopped_replaced_busy_and_never_seen(client: Client, broker: Path) -> None:
    alive(Heartbeat.Kind.SCHEDULER, "web-1 (pid 7)")
    body = client.get("/healthz").json()
    assert body["problems"][0]["what"].startswith("No worker has ever shown life")

    hour = timedelta(hours=1)
    alive(Heartbeat.Kind.WORKER, "old@web-1", ago=hour, stopped_at=timezone.now() - hour)
    alive(Heartbeat.Kind.WORKER, "killed@web-1", ago=hour)  # replaced by the next one
    alive(
        Heartbeat.Kind.WORKER,
        "busy@web-1",
        ran_at=timezone.now() - hour,  # alive, but has taken no task for an hour
        started_at=timezone.now() - timedelta(minutes=30),
    )
    body = client.get("/healthz").json()
    states = {w["name"]: w["state"] for w in body["checks"]["workers"]["workers"]}
    assert states == {"old@web-1": "stopped", "killed@web-1": "replaced", "busy@web-1": "busy"}
    [problem] = body["problems"]
    assert problem["what"].startswith(
        "The workers are up but none has taken a task from the queue for 1 hour"
    )

    alive(Heartbeat.Kind.WORKER, "fine@web-2", ago=timedelta(seconds=3))
    assert client.get("/healthz").json()["status"] == "ok"


def test_two_schedulers_beating_at_once_are_reported(client: Client, broker: Path) -> None:
    alive(Heartbeat.Kind.WORKER, "celery@web-1")
    alive(Heartbeat.Kind.SCHEDULER, "web-1 (pid 7)", ago=timedelta(seconds=4))
    alive(Heartbeat.Kind.SCHEDULER, "web-2 (pid 9)", ago=timedelta(seconds=8))
    body = client.get("/healthz").json()
    [problem] = body["problems"]
    assert problem["what"].startswith("2 schedulers (celery beat) are running")

    # A scheduler started after the other was last seen replaced it: one is running.
    Heartbeat.objects.filter(name="web-1 (pid 7)").update(started_at=timezone.now())
    assert client.get("/healthz").json()["status"] == "ok"


def test_the_heartbeat_task_records_the_worker_that_ran_it_and_forgets_old_rows() -> None:
    days = timedelta(days=2)
    alive(Heartbeat.Kind.WORKER, "gone@web-9", ago=timedelta(days=8))
    alive(Heartbeat.Kind.WORKER, "stopped@web-9", ago=days, stopped_at=timezone.now() - days)
    alive(Heartbeat.Kind.WORKER, "killed@web-9", ago=days)  # still worth saying
    alive(Heartbeat.Kind.SCHEDULER, "web-9 (pid 1)", ago=days)  # a newer one beats
    alive(Heartbeat.Kind.SCHEDULER, "web-9 (pid 2)")
    before = timezone.now()

    record_heartbeat.apply()  # in this process: the request's hostname is this host's

    row = Heartbeat.objects.get(kind=Heartbeat.Kind.WORKER, name=socket.gethostname())
    assert row.ran_at is not None and row.ran_at >= before
    assert row.seen_at == row.ran_at
    assert row.stopped_at is None
    assert sorted(Heartbeat.objects.values_list("name", flat=True)) == sorted(
        ["killed@web-9", "web-9 (pid 2)", socket.gethostname()]
    )
    # The last scheduler is kept however long it has been silent: it says since when.
    Heartbeat.objects.filter(name="web-9 (pid 2)").update(seen_at=timezone.now() - days)
    record_heartbeat.apply()
    assert Heartbeat.objects.filter(name="web-9 (pid 2)").exists()

    row.stopped_at = timezone.now()  # a stopped worker running it again keeps its goodbye
    row.save()
    record_heartbeat.apply()
    row.refresh_from_db()
    assert row.ran_at is not None and row.ran_at > before
    assert row.stopped_at is not None


def test_beat_records_its_start_and_its_publishes_and_other_processes_do_not(
    broker: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(heartbeats._Beat, "running", False)
    monkeypatch.setattr(heartbeats._Beat, "recorded", 0.0)
    publish_heartbeat()  # published by a process that is not beat
    assert not Heartbeat.objects.filter(kind=Heartbeat.Kind.SCHEDULER).exists()

    beat_init.send(sender=None)
    row = Heartbeat.objects.get(kind=Heartbeat.Kind.SCHEDULER)
    assert row.name == heartbeats.scheduler_name()
    assert row.started_at == row.seen_at

    monkeypatch.setattr(heartbeats._Beat, "recorded", 0.0)  # as if 10 s had passed
    publish_heartbeat()
    row.refresh_from_db()
    assert row.seen_at > row.started_at


def test_the_health_page_is_for_ops_and_admins(client: Client, broker: Path) -> None:
    alive(Heartbeat.Kind.WORKER, "celery@web-1", ago=timedelta(minutes=7))
    assert client.get("/health")["Location"] == "/login/?next=/health"

    client.force_login(make_user("mia", "marketer"))
    assert client.get("/health").status_code == 403
    assert b'href="/health"' not in client.get("/").content  # not in her navigation

    client.force_login(make_user("otto", "ops"))
    response = client.get("/health")
    assert response.status_code == 200
    page = response.content.decode()
    assert 'href="/health" aria-current="page">Health</a>' in page
    assert "The app works, but not everything it needs does." in page
    assert "No worker has shown life for 7 minutes" in page
    assert "Start a worker (make run starts one" in page
    assert "celery@web-1" in page and "Silent" in page
    assert "Waiting in “celery”" in page
    # The tasks running now come in a second request.
    assert 'hx-get="/health?running=1"' in page

    client.force_login(make_user("ada", "admin"))
    assert client.get("/health").status_code == 200


def test_the_tasks_running_now_say_when_no_worker_answered(client: Client, broker: Path) -> None:
    client.force_login(make_user("otto", "ops"))
    response = client.get("/health?running=1", headers={"HX-Request": "true"})
    assert response.status_code == 200
    page = response.content.decode()
    assert page.lstrip().startswith('<section class="card" id="running"')  # the part only
    assert "No worker answered within a second" in page
    assert "hx-get" not in page  # asked once, not again and again

    # Without script, the link asks them while rendering the whole page.
    page = client.get("/health?running=1").content.decode()
    assert "<h1>Health</h1>" in page
    assert "No worker answered within a second" in page
    assert 'hx-get="/health?running=1"' not in page


def test_the_tasks_running_now_are_named_in_words_with_a_link(
    client: Client, broker: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reply is shaped as Celery's Request.info() is; asking real workers is what
    tests/test_devstack.py does."""
    ops = make_user("otto", "ops")
    signal_import = make_import(ops)
    started = timezone.now() - timedelta(minutes=3)
    reply = {
        "celery@web-1": [
            {
                "id": "b6a1",
                "name": "signals_app.tasks.validate_import",
                "args": [signal_import.pk],
                "kwargs": {},
                "time_start": started.timestamp(),
                "hostname": "celery@web-1",
            }
        ],
        "celery@web-2": [],
    }
    asked: dict[str, Any] = {}

    class Inspect:
        def active(self) -> dict[str, Any]:
            return reply

    def inspect(**options: Any) -> Inspect:
        asked.update(options)
        return Inspect()

    monkeypatch.setattr(celery_app.control, "inspect", inspect)
    client.force_login(ops)
    page = client.get("/health?running=1", headers={"HX-Request": "true"}).content.decode()
    assert "Answered: celery@web-1, celery@web-2." in page
    assert (
        f'<a href="/imports/{signal_import.public_id}">Checking an import&#x27;s file</a>' in page
    )
    assert "signals_app.tasks.validate_import" in page
    assert f'<td class="nowrap">{when(started)}</td>' in page  # since when it runs
    assert asked["timeout"] == 1.0 and asked["connection"] is not None
