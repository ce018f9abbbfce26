"""The global rate limit held by four sender processes against the sandbox's own count
(issue 13, Tests): 10,000 Attentive events with distinct externalEventIds, split unevenly
between four OS processes, each with its own AttentiveClient (one kept-alive connection)
and all taking permits from the Redis limiter with one token.

What arrived is judged by the sandbox's record (GET /_inspect/attentive-rate): no
one-second window, sliding over its millisecond timestamps, saw more than the limit; its
limit never answered 429; every externalEventId arrived exactly once. Then again with
429s and dropped connections switched on: RETRYABLE answers are retried (a Retry-After
pauses the key for every process), UNKNOWN ones are never resent, so what arrived is
every SENT event plus some of the UNKNOWN ones, and no id twice.

The sandbox's limit is a parameter: LIMIT = 400/s keeps each run near 26 s (10,000 /
(400 x 0.96)); the issue's 150/s takes 69 s and is what bench/attentive.py measures.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from django.conf import settings

from bench.attentive import SenderPlan, SenderResult, make_event, run_senders
from sandbox.clock import iso_ts
from sandbox.store import RequestRecord, Store, attentive_rate
from tests.conftest import require
from tests.sandbox.support import Sandbox, running_sandbox

LIMIT = 400  # the sandbox's Attentive limit per second here (see the module's docstring)
EVENTS = 10_000
SHARES = (1_000, 2_000, 3_000, 4_000)  # uneven on purpose: the busiest process sends 40 %


@pytest.fixture
def redis_url() -> str:
    url = str(settings.RATE_LIMIT_REDIS_URL or "")
    reachable = False
    if url:
        try:
            reachable = bool(redis.Redis.from_url(url, socket_connect_timeout=2).ping())
        except redis.RedisError:
            reachable = False
    require(reachable, "Redis (RATE_LIMIT_REDIS_URL, REDIS_URL or CELERY_BROKER_URL=redis://...)")
    return url


@pytest.fixture
def token() -> str:
    return f"live-attentive-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def limited_sandbox(tmp_path: Path, token: str) -> Iterator[Sandbox]:
    args = ("--attentive-key", token, "--attentive-rate-limit", str(LIMIT))
    with running_sandbox(tmp_path / "sandbox", *args) as running:
        yield running


def send_all(sandbox: Sandbox, token: str, redis_url: str) -> list[SenderResult]:
    run = uuid.uuid4().hex
    start_at = time.time() + 3.0  # spawned interpreters are ready well before
    plans, first = [], 0
    for share in SHARES:
        plans.append(
            SenderPlan(
                endpoint=f"{sandbox.url}/v1/graphql",
                token=token,
                limit=LIMIT,
                run=run,
                first=first,
                count=share,
                redis_url=redis_url,
                start_at=start_at,
            )
        )
        first += share
    results = run_senders(plans)
    expected = {make_event(run, i, "")["externalEventId"] for i in range(EVENTS)}
    sent = [i for r in results for i in (*r.sent, *r.unknown, *r.failed)]
    assert sorted(sent) == sorted(expected)  # each process sent its share, no more
    return results


def arrivals(sandbox: Sandbox) -> dict[str, Any]:
    response = sandbox.http.get("/_inspect/attentive-rate", timeout=60)
    assert response.status_code == 200, response.text
    record: dict[str, Any] = response.json()
    return record


def assert_the_limit_held(record: dict[str, Any]) -> None:
    worst = record["max_in_window"]
    seconds = (record["last_ms"] - record["first_ms"]) / 1000
    print(
        f"\n{record['requests']} requests in {seconds:.1f} s ({record['requests'] / seconds:.0f}"
        f"/s); the most in any one-second window: {worst}, in a wall-clock second: "
        f"{record['max_in_second']} (limit {LIMIT})"
    )
    assert worst <= LIMIT, (
        f"{worst} requests arrived within one second (from {record['max_window_start_ms']} "
        f"ms), over the limit of {LIMIT}"
    )
    assert record["max_in_second"] <= LIMIT
    assert record["rate_limited"] == 0, "the sandbox's own limit answered 429"


def test_four_processes_never_pass_the_limit_and_send_each_event_once(
    redis_url: str, token: str, limited_sandbox: Sandbox
) -> None:
    results = send_all(limited_sandbox, token, redis_url)
    record = arrivals(limited_sandbox)
    assert_the_limit_held(record)
    assert [len(r.sent) for r in results] == list(SHARES)
    assert not any(r.unknown or r.failed or r.retryable for r in results)
    received = Counter(record["event_ids"])
    assert len(received) == EVENTS and set(received.values()) == {1}
    assert received.keys() == {i for r in results for i in r.sent}
    assert record["by_status"] == {"200": EVENTS}


def test_with_429s_and_dropped_connections_no_event_arrives_twice(
    redis_url: str, token: str, limited_sandbox: Sandbox
) -> None:
    # About 1 in 300 requests answered 429 (Retry-After: 1 s) and as many dropped after
    # the event was stored; 30 faults in all keep the pauses within the test's time.
    limited_sandbox.faults(
        rate_http_429=0.003, rate_drop=0.003, retry_after=1, seed=13, budget=30,
        scope="attentive",
    )  # fmt: skip
    results = send_all(limited_sandbox, token, redis_url)
    record = arrivals(limited_sandbox)
    assert_the_limit_held(record)

    sent = {i for r in results for i in r.sent}
    unknown = {i for r in results for i in r.unknown}
    faulted = arrivals_by_fault(limited_sandbox)
    print(
        f"\nsenders: {len(sent)} SENT, {len(unknown)} UNKNOWN (not resent), "
        f"{sum(r.retryable for r in results)} RETRYABLE answers retried, "
        f"{sum(r.seen_429 for r in results)} of them 429, {sum(r.paused for r in results)} "
        f"pauses; sandbox faults: {faulted}"
    )
    assert not any(r.failed for r in results), [r.errors for r in results]
    assert sum(r.seen_429 for r in results) == faulted.get("http_429", 0) > 0
    assert len(unknown) == faulted.get("drop", 0) > 0

    received = Counter(record["event_ids"])
    assert set(received.values()) == {1}, "an event arrived twice"
    assert sent <= received.keys() <= sent | unknown
    assert len(received) == len(sent) + len(received.keys() & unknown)


def arrivals_by_fault(sandbox: Sandbox) -> dict[str, int]:
    return dict(sandbox.inspect(limit=1)["counts"]["requests_by_fault"])


def test_the_judge_counts_any_window_of_one_second_at_the_records_resolution(
    tmp_path: Path,
) -> None:
    """The sandbox's count the tests above rely on: a sliding window, not whole seconds."""
    store = Store(tmp_path / "sandbox.sqlite3")
    start = 1_800_000_000.0  # a whole second
    arrivals_ms = [0, 400, 999, 1000, 1500, 1998]
    for n, at in enumerate(arrivals_ms, start=1):
        error = "rate limit" if n == 6 else None
        record = RequestRecord(n, iso_ts(start + at / 1000), "/v1/graphql", "createCustom",
                               "a-token" if n < 6 else None, 100, 0, 429 if error else 200,
                               None, error, 1.0)  # fmt: skip
        event = (
            None if error else (n, record.received_at, "a-token", "T", f"id-{n}", None, "{}", None)
        )
        store.record(record, (), event)
    judged = attentive_rate(store.conn)
    # [0, 1000) holds 3, [999, 1999) holds 4, each whole second 3: only the sliding
    # window sees the 4.
    assert (judged["max_in_window"], judged["max_window_start_ms"]) == (4, start * 1000 + 999)
    assert judged["max_in_second"] == 3
    assert judged["per_second"] == {"1800000000": 3, "1800000001": 3}
    assert judged["rate_limited"] == 1 and judged["by_status"] == {"200": 5, "429": 1}
    assert judged["event_ids"] == ["id-1", "id-2", "id-3", "id-4", "id-5"]
    assert attentive_rate(store.conn, token="a-token")["requests"] == 5
    store.close()
