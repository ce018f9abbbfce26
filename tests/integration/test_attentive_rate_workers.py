"""Issue 13's rate test through the product itself: four live imports of 2,500 signals
each, 10,000 events, sent to one Attentive account by four Celery worker processes at once
(real Redis, PostgreSQL and sandbox, its Attentive rate limit on). The sandbox's own record
must show no sliding one-second window above the limit, none of its 429s for the limit, and
every event exactly once by externalEventId — also with 429s and dropped connections
switched on, where a dropped event is of unknown outcome and never sent twice.

The sandbox's limit here is 300 a second (twice Attentive's default), so each run takes
about 35 s of sending rather than 70: bench/attentive.py measures 150/s over 60 s. Measured
on this 2-core machine: at most 292 in a sliding second (paced at 288). With faults, a 429
with Retry-After 1 pauses the key for every worker for a second, so the 429s are few (0.4 %,
about 40 pauses) to keep the run within its deadline. (At 400 a second the machine, four
workers, the sandbox, PostgreSQL and Redis saturate and the sandbox, stalled, stamped a
backlog of requests as arriving together: 446 in one second was seen, at a pace of 388.)"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
from django.contrib.auth.models import User

from connectadmin.models import AttentiveAccount
from signals_app.attentive_client import event_id
from signals_app.models import ImportMode, ImportStatus, SignalImport
from signals_app.services import sending
from signals_app.services.sending import Destinations
from tests.factories import make_app_key
from tests.integration.conftest import Workers
from tests.sandbox.support import ATTENTIVE_KEY, Sandbox, running_sandbox
from tests.test_views import make_user

pytestmark = pytest.mark.django_db(transaction=True)

LIMIT = 300
IMPORTS = 4
SIGNALS = 2_500


@pytest.fixture
def limited_sandbox(real_parts: None, tmp_path: Path) -> Any:
    with running_sandbox(tmp_path / "sandbox", "--attentive-rate-limit", str(LIMIT)) as running:
        # The sandbox stands in for Attentive's servers, which our workers do not slow
        # down: on this 2-core machine it would otherwise wait for the CPU behind them and
        # stamp a backlog of requests as arriving together. (Raising a priority needs root,
        # as CI has; elsewhere the test runs without it.)
        with contextlib.suppress(PermissionError):
            os.setpriority(os.PRIO_PROCESS, running.process.pid, -10)
        yield running


def live_import(imports_dir: Path, user: User, app_key: Any, number: int) -> SignalImport:
    name = f"{uuid.uuid4().hex}.ndjson"
    lines = (
        orjson.dumps(
            {
                "appKey": app_key.key,
                "identifiableAttributes": {"email": f"c{number}-{n}@example.com"},
                "signalContent": {"signalType": "order", "currency": "USD", "orderId": f"O{n}"},
            }
        )
        for n in range(SIGNALS)
    )
    (imports_dir / name).write_bytes(b"\n".join(lines) + b"\n")
    return SignalImport.objects.create(
        created_by=user,
        app_key=app_key,
        mode=ImportMode.LIVE,
        status=ImportStatus.VALIDATED,
        original_name=f"orders-{number}.ndjson",
        stored_name=name,
        signals=SIGNALS,
        valid=SIGNALS,
    )


def send_four(
    workers: Workers, imports_dir: Path, sandbox: Sandbox
) -> tuple[list[SignalImport], AttentiveAccount]:
    for _ in range(IMPORTS):
        workers.start()
    account = AttentiveAccount.objects.create(
        name="Shop",
        api_key=ATTENTIVE_KEY,
        graphql_endpoint=f"{sandbox.url}/v1/graphql",
        rate_limit=LIMIT,
    )
    user = make_user("mia", "marketer", send_live=True)
    app_key = make_app_key(key="shop-key", tier="ultimate")
    imports = [
        sending.import_send(
            signal_import=live_import(imports_dir, user, app_key, n),
            user=user,
            destinations=Destinations(connect=False, attentive=account),
        )
        for n in range(IMPORTS)
    ]
    deadline = time.monotonic() + 150
    while time.monotonic() < deadline:
        done = SignalImport.objects.filter(
            pk__in=[i.pk for i in imports], status=ImportStatus.COMPLETED
        ).count()
        if done == IMPORTS:
            break
        time.sleep(0.5)
    else:
        pytest.fail("the four imports did not complete in time\n" + workers.log_text())
    return [SignalImport.objects.get(pk=i.pk) for i in imports], account


def rate(sandbox: Sandbox) -> dict[str, Any]:
    response = sandbox.http.get("/_inspect/attentive-rate")
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def test_four_workers_never_go_past_the_rate_limit_and_send_every_event_once(
    workers: Workers, imports_dir: Path, limited_sandbox: Sandbox
) -> None:
    imports, account = send_four(workers, imports_dir, limited_sandbox)
    seen = rate(limited_sandbox)
    shown = {k: v for k, v in seen.items() if k != "event_ids"}
    print("the sandbox saw", shown)
    assert seen["max_in_window"] <= LIMIT, shown
    assert seen["rate_limited"] == 0, shown
    assert seen["requests"] == IMPORTS * SIGNALS, shown
    expected = {event_id(i.public_id, n, account.pk) for i in imports for n in range(SIGNALS)}
    ids = seen["event_ids"]
    assert len(ids) == len(set(ids)) == IMPORTS * SIGNALS and set(ids) == expected
    assert all(i.attentive_sent == SIGNALS for i in imports)


def test_with_429s_and_dropped_connections_nothing_is_doubled_or_lost(
    workers: Workers, imports_dir: Path, limited_sandbox: Sandbox
) -> None:
    limited_sandbox.faults(
        scope="attentive", rate_http_429=0.004, rate_drop=0.002, retry_after=1, seed=13
    )
    imports, _ = send_four(workers, imports_dir, limited_sandbox)
    seen = rate(limited_sandbox)
    print("the sandbox saw", {k: v for k, v in seen.items() if k != "event_ids"})
    assert seen["max_in_window"] <= LIMIT, seen
    ids = seen["event_ids"]
    assert len(ids) == len(set(ids)), "an event was sent twice"
    sent = sum(i.attentive_sent for i in imports)
    unknown = sum(i.attentive_unknown for i in imports)
    # An event answered 429 past the retry budget (20 s in the workers' test settings,
    # behind pauses of a second each) is a failure: said, and never stored by the sandbox.
    failed = sum(i.attentive_failed for i in imports)
    assert sent + unknown + failed == IMPORTS * SIGNALS  # none lost: each one is accounted
    assert unknown > 0  # the drops happened, and were not resent
    assert sent <= len(ids) <= sent + unknown  # a dropped event may or may not have arrived
