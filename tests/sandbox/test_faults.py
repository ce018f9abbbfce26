"""Each fault switch shows its effect; faults are reproducible with a seed."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.sandbox.support import (
    ATTENTIVE_KEY,
    CREATE,
    ULTIMATE_KEY,
    Sandbox,
    running_sandbox,
    signal,
)

HEADERS = {"x-api-key": ULTIMATE_KEY}


def _send(sandbox: Sandbox, n: int = 0, timeout: float = 10.0) -> httpx.Response:
    # A fresh connection each time, so a dropped one never leaks into the next call.
    with httpx.Client(base_url=sandbox.url, timeout=timeout) as client:
        return client.post(
            "/graphql",
            json={"query": CREATE, "variables": {"signals": [signal("order", n=n)]}},
            headers=HEADERS,
        )


def test_added_latency_delays_the_answer(sandbox: Sandbox) -> None:
    sandbox.faults(latency_ms=400)
    started = time.monotonic()
    assert _send(sandbox).status_code == 200
    assert time.monotonic() - started >= 0.4


def test_the_requests_in_flight_are_counted_with_their_latency(sandbox: Sandbox) -> None:
    """The sandbox sees a client's window: the most calls it served at once."""
    sandbox.faults(latency_ms=500)
    assert sandbox.in_flight(reset=True) == {}
    with ThreadPoolExecutor(3) as pool:
        answers = list(pool.map(lambda n: _send(sandbox, n), range(3)))
    assert [answer.status_code for answer in answers] == [200] * 3
    assert sandbox.in_flight() == {"/graphql": {"now": 0, "peak": 3}}
    assert sandbox.in_flight(reset=True) == {"/graphql": {"now": 0, "peak": 0}}


def test_429_carries_retry_after_and_stores_nothing(sandbox: Sandbox) -> None:
    sandbox.faults(rate_http_429=1.0, retry_after=7)
    response = _send(sandbox)
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "7"
    record = sandbox.inspect()
    assert record["counts"]["signals"] == 0
    assert record["counts"]["requests_by_fault"] == {"http_429": 1}


@pytest.mark.parametrize(("fault", "status", "stored"), [
    ("http_502", 502, 0), ("http_503", 503, 0), ("http_500", 500, 1),
])  # fmt: skip
def test_5xx_faults(sandbox: Sandbox, fault: str, status: int, stored: int) -> None:
    """502/503 refuse the batch before processing it; 500 comes after it was stored,
    which is why the app must treat a 500 as "outcome unknown"."""
    sandbox.faults(**{f"rate_{fault}": 1.0})
    response = _send(sandbox)
    assert response.status_code == status
    assert response.json()["errors"]
    if status == 503:
        assert "Retry-After" in response.headers
    assert sandbox.inspect()["counts"]["signals"] == stored


def test_200_with_a_graphql_errors_array(sandbox: Sandbox) -> None:
    sandbox.faults(rate_graphql_error=1.0)
    response = _send(sandbox)
    assert response.status_code == 200
    body = response.json()
    assert body["data"] is None and body["errors"][0]["message"]
    assert sandbox.inspect()["counts"]["signals"] == 0


def test_a_hanging_answer_ends_in_a_client_read_timeout_yet_the_batch_is_stored(
    sandbox: Sandbox,
) -> None:
    sandbox.faults(rate_hang=1.0, hang_seconds=30)
    with pytest.raises(httpx.ReadTimeout):
        _send(sandbox, timeout=1.0)
    record = sandbox.inspect()
    assert record["counts"]["signals"] == 1
    assert record["requests"][0]["fault"] == "hang"
    assert record["requests"][0]["http_status"] == 0


def test_a_dropped_connection_tells_lost_from_duplicated(sandbox: Sandbox) -> None:
    sandbox.faults(rate_drop=1.0)
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        _send(sandbox, n=1)
    # The client saw nothing, but the sandbox took the batch ...
    record = sandbox.inspect()
    assert record["counts"]["signals"] == 1
    assert record["counts"]["duplicate_signals"] == 0
    # ... so a blind resend would duplicate it, and the record shows that.
    sandbox.control("faults/reset")
    assert _send(sandbox, n=1).status_code == 200
    counts = sandbox.inspect()["counts"]
    assert counts["signals"] == 2
    assert counts["duplicate_signals"] == 1


def test_a_seed_makes_faults_reproducible(sandbox: Sandbox) -> None:
    def statuses() -> list[int]:
        return [_send(sandbox, n=i).status_code for i in range(16)]

    sandbox.faults(rate_http_503=0.5, seed=42)
    first = statuses()
    sandbox.faults(seed=42)
    assert statuses() == first
    assert set(first) == {200, 503}


def test_a_budget_faults_only_the_next_requests(sandbox: Sandbox) -> None:
    sandbox.faults(rate_http_502=1.0, budget=2)
    assert [_send(sandbox, n=i).status_code for i in range(4)] == [502, 502, 200, 200]


def test_scope_limits_faults_to_one_vendor(sandbox: Sandbox) -> None:
    sandbox.faults(rate_http_503=1.0, scope="attentive")
    assert _send(sandbox).status_code == 200
    response = sandbox.http.post(
        "/v1/graphql",
        json={"query": "{ ping }"},
        headers={"Authorization": f"Bearer {ATTENTIVE_KEY}"},
    )
    assert response.status_code == 503


def test_the_control_endpoint_refuses_bad_settings(sandbox: Sandbox) -> None:
    for bad in ({"rate_http_500": 2}, {"no_such": 1}, {"rate_drop": 0.6, "rate_hang": 0.6},
                {"latency_ms": "slow"}, {"host_key_changed": 1}):  # fmt: skip
        assert sandbox.http.post("/_control/faults", json=bad).status_code == 400, bad
    assert sandbox.http.get("/_control/faults").json()["rate_http_500"] == 0.0


def test_faults_can_be_set_on_the_command_line(tmp_path: Path) -> None:
    with running_sandbox(
        tmp_path / "data", "--fault-503", "1", "--retry-after", "3", "--fault-budget", "1"
    ) as sandbox:
        first = _send(sandbox)
        assert (first.status_code, first.headers["Retry-After"]) == (503, "3")
        assert _send(sandbox).status_code == 200
