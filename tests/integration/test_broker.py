"""The broker under real workers: what becomes of a killed worker's task, and countdowns.
The tests marked `broker` run on the broker CELERY_BROKER_URL names; CI runs them on Redis,
then again on RabbitMQ (the Makefile's pytest-rabbitmq, with TEST_RABBITMQ_URL).

RabbitMQ hands a dead worker's unacknowledged task to the next worker the moment the
worker's connection closes; Redis keeps it aside for the visibility timeout (6 h in
production), which is why celery beat sweeps stalled sends every 15 s."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.contrib.auth.models import User
from django.utils import timezone
from kombu import Connection, Queue

from connectadmin.celery import app as celery_app
from connectadmin.models import Heartbeat
from connectadmin.tasks import record_heartbeat
from exports_app.models import ExportJob, JobStatus
from exports_app.services import jobs, watching
from signals_app.models import AuditEvent, BatchState, ImportStatus
from signals_app.services import sending
from tests.conftest import require
from tests.exports.test_jobs import ready_account, request
from tests.integration.conftest import Workers, broker_kind
from tests.integration.test_sending_live import (
    check_against_ledger,
    first_batch_on_its_way,
    make_import,
    wait_done,
)
from tests.sandbox.support import Sandbox, running_sandbox
from tests.sandbox.support import signal as make_signal

PRODUCTION_VISIBILITY_TIMEOUT = 6 * 3600


def rabbitmq_url() -> str:
    """The RabbitMQ of this run: the broker itself, or the one the second run will use."""
    if broker_kind() == "rabbitmq":
        return os.environ["CELERY_BROKER_URL"]
    return os.environ.get("TEST_RABBITMQ_URL", "")


def test_rabbitmq_settings_use_quorum_queues_publisher_confirms_and_native_delays(
    tmp_path: Path,
) -> None:
    """Reading the settings connects to nothing: this runs without a RabbitMQ."""
    show = (
        "import json; from connectadmin.celery import app; c = app.conf; "
        "q = app.amqp.queues[c.task_default_queue]; "
        "print(json.dumps([c.task_default_queue_type, c.task_create_missing_queue_type, "
        "c.broker_transport_options, q.queue_arguments, q.exchange.type, "
        "app.amqp.queues['private'].queue_arguments, app.amqp.queues['private'].exchange.type, "
        "c.task_acks_late, c.task_reject_on_worker_lost, c.worker_prefetch_multiplier]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", f"import django; django.setup(); {show}"],
        cwd=django_settings.BASE_DIR, capture_output=True, text=True, timeout=60,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "connectadmin.settings",
             "CONNECTADMIN_VAR_DIR": str(tmp_path),
             "CELERY_BROKER_URL": "amqp://guest:guest@127.0.0.1:5672//"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    quorum = {"x-queue-type": "quorum"}
    assert json.loads(result.stdout) == [
        "quorum", "quorum", {"confirm_publish": True}, quorum, "topic", quorum, "topic",
        True, True, 1,
    ]  # fmt: skip


@pytest.mark.broker
def test_rabbitmq_answers_and_keeps_a_quorum_queue() -> None:
    """The RabbitMQ of the second run (CI) answers, and takes a quorum queue: a failure
    here says why every test of that run fails."""
    url = rabbitmq_url()
    require(bool(url), "RabbitMQ (TEST_RABBITMQ_URL=amqp://... or CELERY_BROKER_URL=amqp://...)")
    name = f"broker-test-{os.getpid()}-{time.monotonic_ns()}"
    with Connection(url, connect_timeout=5, transport_options={"confirm_publish": True}) as conn:
        channel = conn.channel()
        queue = Queue(name, queue_arguments={"x-queue-type": "quorum"}, channel=channel)
        try:
            queue.declare()
            conn.Producer(channel).publish({"n": 1}, routing_key=name, delivery_mode=2)
            message = queue.get(no_ack=False)
            assert message is not None and message.payload == {"n": 1}
            message.ack()
        finally:
            queue.delete()


@pytest.mark.broker
@pytest.mark.django_db(transaction=True)
def test_without_the_sweep_a_killed_workers_send_comes_back_at_once_on_rabbitmq_only(
    workers: Workers, sandbox: Sandbox, imports_dir: Path, settings: Any
) -> None:
    """SIGKILL mid-send with production's visibility timeout, and no sweep (celery beat
    is not running and the test does not call it). On RabbitMQ the task of the dead worker
    reaches the new worker at once and the send goes on; on Redis it waits in Redis's
    list of unacknowledged messages until the visibility timeout, hours away."""
    settings.SIGNALS_BATCH_SIZE = 100
    settings.SIGNALS_SEND_LANES = 1  # one task: no other lane's run to take over the lane
    workers.env["TEST_VISIBILITY_TIMEOUT"] = str(PRODUCTION_VISIBILITY_TIMEOUT)
    signal_import = make_import(imports_dir, sandbox, total=1000, rejected=set())
    sandbox.faults(latency_ms=500)
    workers.start()
    sending.import_send(signal_import=signal_import, user=signal_import.created_by)
    caught = first_batch_on_its_way(signal_import, sandbox)
    workers.kill()
    killed_at = time.monotonic()
    ledger = list(signal_import.batches.values_list("number", "state", "attempts"))
    waiting = signal_import.batches.filter(state=BatchState.PENDING)
    assert waiting.exists()
    pending_at_kill = set(waiting.values_list("number", flat=True))
    workers.start()
    restarted_after = time.monotonic() - killed_at

    if broker_kind() == "redis":
        time.sleep(10)
        assert list(signal_import.batches.values_list("number", "state", "attempts")) == ledger
        # The task is set aside, to be handed out again a visibility timeout after its
        # delivery: hours from now.
        with celery_app.connection_for_write() as conn:
            channel: Any = conn.default_channel  # kombu's Redis channel
            client = channel.client
            tags = [
                tag
                for tag, raw in client.hgetall(channel.unacked_key).items()
                if json.loads(raw)[2] == workers.queue
            ]
            assert len(tags) == 1
            delivered = float(client.zscore(channel.unacked_index_key, tags[0]))
        assert delivered + PRODUCTION_VISIBILITY_TIMEOUT - time.time() > 5 * 3600
        return

    resumed_after = None
    while time.monotonic() - killed_at < 60 and resumed_after is None:
        if signal_import.batches.filter(number__in=pending_at_kill, state="sent").exists():
            resumed_after = time.monotonic() - killed_at
        time.sleep(0.1)
    # Within seconds of the new worker being ready, not hours.
    assert resumed_after is not None, workers.log_text()
    assert resumed_after - restarted_after < 15, (restarted_after, resumed_after)
    signal_import = wait_done(signal_import, workers, 60)
    assert signal_import.status == ImportStatus.COMPLETED
    assert not AuditEvent.objects.filter(action="import.send_resumed").exists()  # no sweep
    caught.refresh_from_db()
    assert (caught.state, caught.attempts) == (BatchState.UNKNOWN, 1)
    check_against_ledger(signal_import, sandbox, list(range(1000)))
    assert sandbox.inspect(limit=1)["counts"]["duplicate_signals"] == 0


@pytest.mark.broker
@pytest.mark.django_db(transaction=True)
def test_a_countdown_holds_the_task_back_then_a_worker_runs_it(
    workers: Workers, caplog: pytest.LogCaptureFixture
) -> None:
    """On RabbitMQ through Celery's native delayed delivery (quorum queues), on Redis
    through the worker's own timer."""
    workers.start()
    sent_at = timezone.now()
    record_heartbeat.apply_async(countdown=3)
    ran = Heartbeat.objects.filter(kind=Heartbeat.Kind.WORKER, ran_at__isnull=False)
    deadline = time.monotonic() + 30
    while not ran.exists():
        assert time.monotonic() < deadline, workers.log_text()
        time.sleep(0.1)
    ran_at = ran.get().ran_at
    assert ran_at is not None and ran_at - sent_at >= timedelta(seconds=3)
    # No warning (publisher's or worker's) that the delay could not be native.
    assert "native delayed delivery" not in workers.log_text() + caplog.text


@pytest.mark.broker
@pytest.mark.django_db(transaction=True)
def test_an_export_is_watched_again_after_its_countdown_then_fetched(
    workers: Workers, tmp_path: Path, settings: Any
) -> None:
    """The submit enqueues the first look with a countdown (2 s); the job still RUNNING
    then, the worker enqueues the next look with a countdown of its own (5 s), which
    sees it COMPLETED and fetches the file."""
    settings.EXPORTS_DIR = tmp_path / "var" / "exports"  # the workers' (CONNECTADMIN_VAR_DIR)
    with running_sandbox(tmp_path / "sandbox", "--export-run-seconds", "4") as sandbox:
        admin = User.objects.create_superuser("exports", password="x")
        account = ready_account(sandbox, admin)
        assert sandbox.create_signals([make_signal("order", n=n) for n in range(3)]).status_code
        workers.start()
        submitted = time.monotonic()
        job = jobs.export_submit(request=request(account, signal_types=["order"]), user=admin)
        deadline = time.monotonic() + 60
        while job.status != JobStatus.FETCHED:
            assert time.monotonic() < deadline, f"{job.status}\n{workers.log_text()}"
            time.sleep(0.25)
            job.refresh_from_db()
        fetched_after = time.monotonic() - submitted
    assert job.polls == 2 and job.file is not None
    assert fetched_after >= 2 + watching.next_delay(0), fetched_after
    assert ExportJob.objects.count() == 1
