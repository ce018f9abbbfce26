"""Sending with the real parts: the sandbox process, Celery worker processes, Redis and
PostgreSQL. The sandbox's record is compared with the ledger: every valid signal exactly
once, except in batches the ledger shows as outcome unknown."""

from __future__ import annotations

import time
import uuid
from collections import Counter
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


def test_killing_the_workers_mid_import_ten_times_loses_nothing_and_sends_nothing_twice(
    workers: Workers, sandbox: Sandbox, imports_dir: Path, settings: Any
) -> None:
    """Two workers send the import's two lanes; ten times, both are SIGKILLed while a
    batch is on its way, and two new ones take over from the ledger."""
    settings.SIGNALS_BATCH_SIZE = 50
    settings.SIGNALS_SEND_LANES = 2
    total = 20000
    signal_import = make_import(imports_dir, sandbox, total=total, rejected=set())
    sandbox.faults(latency_ms=40)  # 400 batches × 40 ms over two lanes: room for ten kills
    workers.start(2)
    sending.import_send(signal_import=signal_import, user=signal_import.created_by)
    assert sorted(set(signal_import.batches.values_list("lane", flat=True))) == [0, 1]
    kills = 0
    deadline = time.monotonic() + 240
    while kills < 10 and time.monotonic() < deadline:
        before = Counter(signal_import.batches.values_list("state", flat=True))
        # Kill while a batch is being sent, once the tasks have made some progress.
        if before.get(BatchState.IN_FLIGHT) and before.get(BatchState.PENDING):
            time.sleep(0.2)
            workers.kill()
            kills += 1
            workers.start(2)
        signal_import.refresh_from_db()
        if signal_import.status != ImportStatus.SENDING:
            break
        time.sleep(0.05)
    assert kills == 10, f"the import ended after {kills} kills"
    signal_import = wait_done(signal_import, workers, 180)
    assert signal_import.status == ImportStatus.COMPLETED
    assert not signal_import.batches.filter(state__in=["pending", "in_flight"]).exists()
    check_against_ledger(signal_import, sandbox, list(range(total)))
    assert sandbox.inspect(limit=1)["counts"]["duplicate_signals"] == 0
    unknown = signal_import.batches.filter(state=BatchState.UNKNOWN).count()
    print(f"{kills} kills, {workers.started} workers, {unknown} batches of unknown outcome")
    assert signal_import.unknown == unknown * 50
    assert signal_import.accepted + signal_import.unknown == total


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
