"""Sending with the real parts: the sandbox process, Celery worker processes, Redis and
PostgreSQL. The sandbox's record is compared with the ledger: every valid signal exactly
once, except in batches the ledger shows as outcome unknown."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from datetime import datetime, timedelta
from io import StringIO
from pathlib import Path
from typing import Any

import orjson
import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command

from connectadmin.models import ConnectAccount, Region
from signals_app.models import (
    BatchState,
    ImportBatch,
    ImportStatus,
    RejectedSignal,
    SignalImport,
)
from signals_app.services import sending
from tests.factories import make_app_key
from tests.integration.conftest import Workers
from tests.sandbox.support import ULTIMATE_KEY, Sandbox, signal

pytestmark = pytest.mark.django_db(transaction=True)

TYPES = ("order", "addToCart", "pageView", "productView", "identification", "error")


def make_import(
    imports_dir: Path, sandbox: Sandbox, *, total: int, rejected: set[int]
) -> SignalImport:
    """A validated import of `total` NDJSON signals (the `rejected` ones broken, stored as
    the validator stores them), on an app key of a sandbox account."""
    name = f"{uuid.uuid4().hex}.ndjson"
    with (imports_dir / name).open("wb") as out:
        for n in range(total):
            if n in rejected:
                out.write(b'{"broken\n')
                continue
            record = signal(TYPES[n % len(TYPES)], n=n)
            record["sessionId"] = f"S-{n}"
            del record["appKey"]  # filled from the import's app key
            out.write(orjson.dumps(record) + b"\n")
    account = ConnectAccount.objects.create(
        name=f"sandbox {name[:8]}",
        region=Region.SANDBOX,
        graphql_endpoint=f"{sandbox.url}/graphql",
        api_key=ULTIMATE_KEY,
        connect_user_email="ultimate.user@example.com",
    )
    user = User.objects.create_user(f"u{name[:8]}", password="x")
    signal_import = SignalImport.objects.create(
        created_by=user,
        app_key=make_app_key(account, tier="ultimate"),
        status=ImportStatus.VALIDATED,
        original_name="signals.ndjson",
        stored_name=name,
        signals=total,
        valid=total - len(rejected),
        rejected=len(rejected),
    )
    RejectedSignal.objects.bulk_create(
        RejectedSignal(signal_import=signal_import, signal=n, raw='{"broken') for n in rejected
    )
    return signal_import


def wait_done(signal_import: SignalImport, workers: Workers, seconds: float) -> SignalImport:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        signal_import.refresh_from_db()
        if signal_import.status not in (ImportStatus.SENDING, ImportStatus.VALIDATED):
            return signal_import
        time.sleep(0.2)
    ledger = Counter(signal_import.batches.values_list("state", flat=True))
    pytest.fail(f"import still {signal_import.status} after {seconds:g} s, ledger {ledger}:\n"
                f"{workers.log_text()}")  # fmt: skip


def received(sandbox: Sandbox) -> list[dict[str, Any]]:
    signals: list[dict[str, Any]] = sandbox.inspect(limit=100_000)["signals"]
    return signals


def check_against_ledger(signal_import: SignalImport, sandbox: Sandbox, valid: list[int]) -> None:
    """Every valid signal in the sandbox exactly once with the signalId the ledger holds,
    except those of UNKNOWN batches: there, all of the batch or none of it, never twice."""
    got = received(sandbox)
    by_session = Counter(s["session_id"] for s in got)
    ids = {s["session_id"]: s["signal_id"] for s in got}
    assert all(s["test"] is True for s in got)
    assert set(by_session) <= {f"S-{n}" for n in valid}
    assert max(by_session.values(), default=1) == 1, "a signal was sent twice"
    for batch in ImportBatch.objects.filter(signal_import=signal_import).order_by("number"):
        sessions = [f"S-{n}" for n in valid if batch.first_signal <= n <= batch.last_signal]
        assert len(sessions) == batch.size
        present = [s for s in sessions if s in by_session]
        if batch.state == BatchState.SENT:
            assert present == sessions, f"batch {batch.number} lost signals"
            assert batch.signal_ids == [ids[s] for s in sessions]
        else:
            assert batch.state == BatchState.UNKNOWN, f"batch {batch.number} is {batch.state}"
            assert present in ([], sessions), f"batch {batch.number} half taken"


def test_a_test_import_is_sent_completely(
    workers: Workers, sandbox: Sandbox, imports_dir: Path
) -> None:
    rejected = {5, 700, 2999}
    signal_import = make_import(imports_dir, sandbox, total=3000, rejected=rejected)
    workers.start()
    sending.import_send(signal_import=signal_import, user=signal_import.created_by)
    signal_import = wait_done(signal_import, workers, 60)
    assert signal_import.status == ImportStatus.COMPLETED
    assert (signal_import.batches_total, signal_import.accepted) == (6, 2997)
    valid = [n for n in range(3000) if n not in rejected]
    check_against_ledger(signal_import, sandbox, valid)
    assert len(received(sandbox)) == 2997
    assert sandbox.inspect(limit=1)["counts"]["by_test"] == {"true": 2997}


def test_an_import_completes_through_503s_and_429s(
    workers: Workers, sandbox: Sandbox, imports_dir: Path, settings: Any
) -> None:
    settings.SIGNALS_BATCH_SIZE = 100
    signal_import = make_import(imports_dir, sandbox, total=2000, rejected={1})
    sandbox.faults(rate_http_503=0.3, rate_http_429=0.1, retry_after=0, seed=7)
    workers.start()
    sending.import_send(signal_import=signal_import, user=signal_import.created_by)
    signal_import = wait_done(signal_import, workers, 90)
    counts = sandbox.inspect(limit=1)["counts"]
    assert counts["requests_by_status"].get("503", 0) > 0
    assert counts["requests_by_status"].get("429", 0) > 0
    assert signal_import.status == ImportStatus.COMPLETED
    assert (signal_import.accepted, signal_import.failed, signal_import.unknown) == (1999, 0, 0)
    check_against_ledger(signal_import, sandbox, [n for n in range(2000) if n != 1])
    assert max(ImportBatch.objects.values_list("attempts", flat=True)) > 1


def in_flight_and_received(signal_import: SignalImport, sandbox: Sandbox) -> set[int]:
    """The batches IN_FLIGHT right now whose call the sandbox has received and holds (it
    answers after its latency): provably on their way. Empty when that cannot be told
    (the ledger moved while the sandbox was asked)."""
    before = list(signal_import.batches.values_list("number", "state", "size"))
    stored = sandbox.inspect(limit=1)["counts"]["signals"]
    after = list(signal_import.batches.values_list("number", "state", "size"))
    if before != after:
        return set()
    flying = {number for number, state, _ in after if state == BatchState.IN_FLIGHT}
    # Every batch that reached the sandbox: sent, unknown (held when an earlier kill came:
    # see below) and in flight. Stored signals cover them all only once the calls of the
    # IN_FLIGHT batches have arrived.
    reached = sum(size for _, state, size in after if state != BatchState.PENDING)
    return flying if flying and stored == reached else set()


def first_batch_on_its_way(signal_import: SignalImport, sandbox: Sandbox) -> ImportBatch:
    """The first batch seen provably on its way (see in_flight_and_received), within 60 s."""
    deadline = time.monotonic() + 60
    flying: set[int] = set()
    while not flying and time.monotonic() < deadline:
        flying = in_flight_and_received(signal_import, sandbox)
        time.sleep(0.02)
    assert flying, "no batch was seen on its way"
    return signal_import.batches.get(number=min(flying))


@pytest.mark.broker  # CI runs it on RabbitMQ too
def test_killing_the_workers_while_batches_are_on_their_way_loses_nothing_and_doubles_nothing(
    workers: Workers, sandbox: Sandbox, imports_dir: Path, settings: Any
) -> None:
    """Ten times: while a batch of each lane is provably on its way (the sandbox has stored
    it and holds its answer), both workers are SIGKILLed; two new ones take over from the ledger.
    Each batch that was on its way ends outcome unknown, is never resent by itself, and
    the sandbox holds it once; every other batch is sent once."""
    settings.SIGNALS_BATCH_SIZE = 50
    settings.SIGNALS_SEND_LANES = 2
    # One call in flight per lane, as this test was made for: with the window of 8 the
    # lanes ran out of batches before ten kills on a slow day (the window's own kill test
    # is test_a_worker_killed_with_its_whole_window_in_flight_...).
    workers.env["SIGNALS_SEND_WINDOW"] = "2"
    total = 5000
    signal_import = make_import(imports_dir, sandbox, total=total, rejected=set())
    # The answer held a second after the call is stored: a wide window to catch it in.
    sandbox.faults(latency_ms=1000)
    workers.start(2)
    sending.import_send(signal_import=signal_import, user=signal_import.created_by)
    assert sorted(set(signal_import.batches.values_list("lane", flat=True))) == [0, 1]
    provably_sent: set[int] = set()  # on their way, stored by the sandbox, at a kill
    orphaned: set[int] = set()  # IN_FLIGHT once the workers were dead
    kills = 0
    deadline = time.monotonic() + 300
    while kills < 10 and time.monotonic() < deadline:
        flying = in_flight_and_received(signal_import, sandbox)
        # A batch the last kill caught stays IN_FLIGHT until the lane's next run settles it.
        # Both lanes must be on their way: a lane's run killed before it sends anything
        # counts towards giving the lane up (services.deliveries), as a poison file would.
        caught = signal_import.batches.filter(number__in=flying - orphaned)
        if set(caught.values_list("lane", flat=True)) == {0, 1}:
            workers.kill()
            kills += 1
            provably_sent |= flying
            orphaned |= set(
                signal_import.batches.filter(state=BatchState.IN_FLIGHT).values_list(
                    "number", flat=True
                )
            )
            workers.start(2)
        time.sleep(0.05)
    assert kills == 10, f"only {kills} kills caught a batch on its way"
    sandbox.faults(latency_ms=0)  # the rest at full speed
    signal_import = wait_done(signal_import, workers, 180)
    assert signal_import.status == ImportStatus.COMPLETED
    ledger = {b.number: b for b in signal_import.batches.all()}
    unknown = {number for number, b in ledger.items() if b.state == BatchState.UNKNOWN}
    assert provably_sent <= orphaned
    assert unknown == orphaned  # exactly the batches the kills left on their way
    assert all(ledger[number].attempts == 1 for number in unknown)  # never resent
    assert all(b.state == BatchState.SENT for n, b in ledger.items() if n not in unknown)
    check_against_ledger(signal_import, sandbox, list(range(total)))  # none twice, none half
    # The batches the sandbox held when the kills came reached it, once.
    sessions = Counter(s["session_id"] for s in received(sandbox))
    for number in provably_sent:
        batch = ledger[number]
        batch_sessions = [f"S-{n}" for n in range(batch.first_signal, batch.last_signal + 1)]
        assert all(sessions[s] == 1 for s in batch_sessions), f"batch {number} not held once"
    assert sandbox.inspect(limit=1)["counts"]["duplicate_signals"] == 0
    assert signal_import.unknown == 50 * len(unknown)
    assert signal_import.accepted + signal_import.unknown == total


@pytest.mark.broker  # CI runs it on RabbitMQ too
def test_a_worker_killed_mid_send_is_resumed_within_a_minute_by_the_sweep(
    workers: Workers, sandbox: Sandbox, imports_dir: Path, settings: Any
) -> None:
    """With the broker's visibility timeout of production (hours), the killed worker's task
    does not come back by itself: the sweep, run every 15 s by celery beat (called here on
    the same schedule), finds the lane without a run and enqueues it again."""
    settings.SIGNALS_BATCH_SIZE = 100
    workers.env["TEST_VISIBILITY_TIMEOUT"] = str(6 * 3600)
    signal_import = make_import(imports_dir, sandbox, total=1000, rejected=set())
    sandbox.faults(latency_ms=500)
    workers.start()
    sending.import_send(signal_import=signal_import, user=signal_import.created_by)
    caught = first_batch_on_its_way(signal_import, sandbox)
    workers.kill()
    killed_at = time.monotonic()
    workers.start()
    lane = signal_import.batches.filter(lane=caught.lane)
    resumed_after = None
    next_sweep = time.monotonic()
    while time.monotonic() - killed_at < 120:
        if time.monotonic() >= next_sweep:  # celery beat's schedule
            sending.resume_stalled_sends()
            next_sweep += 15
        if resumed_after is None and lane.filter(number__gt=caught.number, state="sent").exists():
            resumed_after = time.monotonic() - killed_at
        signal_import.refresh_from_db()
        if signal_import.status != ImportStatus.SENDING:
            break
        time.sleep(0.1)
    assert resumed_after is not None and resumed_after < 60, resumed_after
    assert signal_import.status == ImportStatus.COMPLETED
    caught.refresh_from_db()
    assert (caught.state, caught.attempts) == (BatchState.UNKNOWN, 1)
    check_against_ledger(signal_import, sandbox, list(range(1000)))
    assert sandbox.inspect(limit=1)["counts"]["duplicate_signals"] == 0


def test_a_dropped_connection_leaves_the_batch_unknown_until_ops_resend_it(
    workers: Workers, sandbox: Sandbox, imports_dir: Path, settings: Any
) -> None:
    settings.SIGNALS_BATCH_SIZE = 100
    signal_import = make_import(imports_dir, sandbox, total=500, rejected=set())
    sandbox.faults(rate_drop=1.0, budget=1)  # the first call only
    workers.start()
    sending.import_send(signal_import=signal_import, user=signal_import.created_by)
    signal_import = wait_done(signal_import, workers, 60)
    assert signal_import.status == ImportStatus.COMPLETED
    first = signal_import.batches.get(number=0)
    assert first.state == BatchState.UNKNOWN
    assert first.attempts == 1
    assert (signal_import.accepted, signal_import.unknown) == (400, 100)
    check_against_ledger(signal_import, sandbox, list(range(500)))
    # The sandbox stored the dropped call: it holds batch 0 once, and was never sent it again.
    assert len(received(sandbox)) == 500

    ops = User.objects.create_superuser("ops", password="x")
    sending.batch_resend(batch=first, user=ops, reason="checked with Connect support")
    signal_import = wait_done(signal_import, workers, 60)
    first.refresh_from_db()
    assert (first.state, first.attempts, len(first.signal_ids)) == (BatchState.SENT, 2, 100)
    assert (signal_import.status, signal_import.accepted) == (ImportStatus.COMPLETED, 500)
    # Ops chose to resend a batch Connect had in fact taken: now it is there twice.
    assert sandbox.inspect(limit=1)["counts"]["duplicate_signals"] == 100


# --- the sending window: W calls in flight against the sandbox -------------------------------

WINDOW = 8


def window_import(
    workers: Workers, sandbox: Sandbox, imports_dir: Path, settings: Any, *, total: int
) -> SignalImport:
    """An import of 50-signal batches in one lane, its worker keeping WINDOW calls going."""
    settings.SIGNALS_BATCH_SIZE = 50
    settings.SIGNALS_SEND_LANES = 1
    workers.env["SIGNALS_SEND_WINDOW"] = str(WINDOW)
    return make_import(imports_dir, sandbox, total=total, rejected=set())


def wait_for_full_window(signal_import: SignalImport, sandbox: Sandbox) -> set[int]:
    """The WINDOW batches IN_FLIGHT whose calls the sandbox holds, once they are."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        flying = in_flight_and_received(signal_import, sandbox)
        if len(flying) == WINDOW:
            return flying
        time.sleep(0.01)
    pytest.fail("the window never had all its calls on their way at once")


@pytest.mark.broker  # CI runs it on RabbitMQ too
def test_a_worker_killed_with_its_whole_window_in_flight_loses_nothing_and_doubles_nothing(
    workers: Workers, sandbox: Sandbox, imports_dir: Path, settings: Any
) -> None:
    """SIGKILL while WINDOW batches are provably on their way: each of them ends outcome
    unknown and is never resent by itself; every other batch is sent once."""
    signal_import = window_import(workers, sandbox, imports_dir, settings, total=2000)
    sandbox.faults(latency_ms=1500)
    sandbox.in_flight(reset=True)
    workers.start()
    sending.import_send(signal_import=signal_import, user=signal_import.created_by)
    caught = wait_for_full_window(signal_import, sandbox)
    workers.kill()
    assert sandbox.in_flight()["/graphql"]["peak"] == WINDOW  # never more than the window
    sandbox.faults(latency_ms=0)
    workers.start()
    signal_import = wait_done(signal_import, workers, 120)
    assert signal_import.status == ImportStatus.COMPLETED
    ledger = {b.number: b for b in signal_import.batches.all()}
    unknown = {number for number, b in ledger.items() if b.state == BatchState.UNKNOWN}
    assert unknown == caught
    assert all(ledger[number].attempts == 1 for number in unknown)
    assert all(b.state == BatchState.SENT for n, b in ledger.items() if n not in unknown)
    check_against_ledger(signal_import, sandbox, list(range(2000)))
    assert len(received(sandbox)) == 2000  # the caught calls reached Connect, once
    assert sandbox.inspect(limit=1)["counts"]["duplicate_signals"] == 0
    assert (signal_import.accepted, signal_import.unknown) == (2000 - 50 * WINDOW, 50 * WINDOW)


def test_a_cancel_mid_window_starts_no_call_and_settles_the_calls_in_flight(
    workers: Workers, sandbox: Sandbox, imports_dir: Path, settings: Any
) -> None:
    signal_import = window_import(workers, sandbox, imports_dir, settings, total=2000)
    sandbox.faults(latency_ms=1000)
    workers.start()
    sending.import_send(signal_import=signal_import, user=signal_import.created_by)
    wait_for_full_window(signal_import, sandbox)
    sending.import_cancel(signal_import=signal_import, user=signal_import.created_by)
    cancelled_at = time.monotonic()
    # No claim crosses a cancel (it share-locks the import's row): the batches started
    # by now are all the import will ever send.
    started = set(
        signal_import.batches.exclude(state=BatchState.PENDING).values_list("number", flat=True)
    )
    signal_import = wait_done(signal_import, workers, 30)
    assert time.monotonic() - cancelled_at < 1.0 + 2.0  # the calls in flight answer in 1 s
    assert signal_import.status == ImportStatus.CANCELLED
    ledger = {b.number: b.state for b in signal_import.batches.all()}
    assert {n for n, state in ledger.items() if state != BatchState.PENDING} == started
    assert {ledger[n] for n in started} == {BatchState.SENT}  # answered, none left in flight
    assert len(received(sandbox)) == 50 * len(started) == signal_import.sent


def test_a_429_with_retry_after_holds_the_whole_window(
    workers: Workers, sandbox: Sandbox, imports_dir: Path, settings: Any
) -> None:
    """Connect answers one call 429 "retry after 2 s": no call of the window starts in
    those 2 seconds (the calls already on their way finish), then all are sent."""
    signal_import = window_import(workers, sandbox, imports_dir, settings, total=1500)
    sandbox.faults(latency_ms=200, rate_http_429=1.0, retry_after=2, budget=1)
    workers.start()
    sending.import_send(signal_import=signal_import, user=signal_import.created_by)
    signal_import = wait_done(signal_import, workers, 60)
    assert signal_import.status == ImportStatus.COMPLETED
    assert (signal_import.accepted, signal_import.failed) == (1500, 0)
    check_against_ledger(signal_import, sandbox, list(range(1500)))
    requests = sorted(
        sandbox.inspect(limit=1000)["requests"],
        key=lambda r: datetime.fromisoformat(r["received_at"]),
    )
    refused = [r for r in requests if r["http_status"] == 429]
    assert len(refused) == 1
    answered = datetime.fromisoformat(refused[0]["received_at"]) + timedelta(seconds=0.2)
    # Calls already on their way when the 429 came were received within its latency.
    during = [
        r for r in requests
        if answered + timedelta(seconds=0.2) < datetime.fromisoformat(r["received_at"])
        < answered + timedelta(seconds=2)
    ]  # fmt: skip
    assert during == []
    assert len(requests) == 30 + 1


def test_a_hung_call_holds_one_place_of_the_window_not_the_others(
    workers: Workers, sandbox: Sandbox, imports_dir: Path, settings: Any
) -> None:
    """The first call hangs past the read timeout (5 s for these workers): its batch ends
    outcome unknown, while the other places of the window sent everything else."""
    signal_import = window_import(workers, sandbox, imports_dir, settings, total=1000)
    sandbox.faults(rate_hang=1.0, hang_seconds=30, budget=1)
    workers.start()
    sending.import_send(signal_import=signal_import, user=signal_import.created_by)
    signal_import = wait_done(signal_import, workers, 60)
    assert signal_import.status == ImportStatus.COMPLETED
    hung = signal_import.batches.get(state=BatchState.UNKNOWN)
    others = signal_import.batches.exclude(pk=hung.pk)
    assert {b.state for b in others} == {BatchState.SENT}
    # Everything else was sent while the hung call waited for its answer.
    assert hung.finished_at is not None
    assert all(b.finished_at is not None and b.finished_at < hung.finished_at for b in others)
    assert (signal_import.accepted, signal_import.unknown) == (950, 50)
    check_against_ledger(signal_import, sandbox, list(range(1000)))


def test_the_cli_validates_sends_and_waits(
    workers: Workers, sandbox: Sandbox, imports_dir: Path, tmp_path: Path
) -> None:
    account = ConnectAccount.objects.create(
        name="cli sandbox",
        region=Region.SANDBOX,
        graphql_endpoint=f"{sandbox.url}/graphql",
        api_key=ULTIMATE_KEY,
        connect_user_email="ultimate.user@example.com",
    )
    app_key = make_app_key(account, key="cli-app-key", tier="ultimate")
    User.objects.create_superuser("ops", password="x")
    clean = tmp_path / "clean.json"
    clean.write_bytes(orjson.dumps([{**signal(n=n), "appKey": app_key.key} for n in range(700)]))
    workers.start()
    out = StringIO()
    call_command("import_signals", str(clean), "--app-key", app_key.key, "--wait",
                 "--poll", "0.2", "--timeout", "60", stdout=out)  # fmt: skip
    assert "completed: 700 signals, 700 valid, 0 rejected, 700 sent, 700 accepted" in out.getvalue()
    assert len(received(sandbox)) == 700

    broken = tmp_path / "broken.json"
    signals = [{**signal(n=n), "appKey": app_key.key} for n in range(1000, 1010)]
    del signals[3]["signalContent"]["currency"]
    broken.write_bytes(orjson.dumps(signals))
    with pytest.raises(CommandError) as refused:
        call_command("import_signals", str(broken), "--app-key", app_key.key, "--live",
                     "--poll", "0.2", "--timeout", "60", stdout=StringIO())  # fmt: skip
    assert refused.value.returncode == 2
    assert "1 rejected signal will be skipped" in str(refused.value)
    out = StringIO()
    with pytest.raises(CommandError) as incomplete:
        call_command("import_signals", str(broken), "--app-key", app_key.key, "--wait",
                     "--poll", "0.2", "--timeout", "60", stdout=out)  # fmt: skip
    assert incomplete.value.returncode == 1
    assert "9 accepted" in out.getvalue()
    assert len(received(sandbox)) == 709
