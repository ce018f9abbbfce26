"""The Attentive client against the real sandbox process: every outcome (SENT, FAILED,
RETRYABLE, UNKNOWN) from a real answer, fault or network failure, the vendor's own
mutation with a Bearer token over one kept-alive connection, and the deterministic
externalEventId. What the sandbox cannot answer (403, 422, 504, an HTTP-date Retry-After,
a body that is not JSON) is answered by httpx's MockTransport, at the end."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from graphql import parse, print_ast

from signals_app.attentive_client import (
    CREATE_CUSTOM_EVENT,
    EVENT_ID_NAMESPACE,
    AttentiveClient,
    LeftTooLate,
    Outcome,
    Timeouts,
    event_id,
)
from tests.conftest import require
from tests.sandbox.support import ATTENTIVE_KEY, Sandbox, running_sandbox
from tests.sandbox.test_seed_mutations import SEEDS, seed_mutations


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """One sandbox process for the module (its Attentive rate limit off); each test
    starts from no faults and its own events (told apart by externalEventId)."""
    with running_sandbox(tmp_path_factory.mktemp("attentive") / "sandbox") as running:
        yield running


@pytest.fixture(autouse=True)
def _no_faults(sandbox: Sandbox) -> Iterator[None]:
    sandbox.control("faults/reset")
    sandbox.control("settings", {"attentive_rate_limit": 0})
    yield
    sandbox.control("faults/reset")


def attentive(
    sandbox: Sandbox, *, api_key: str = ATTENTIVE_KEY, **timeouts: float
) -> AttentiveClient:
    return AttentiveClient(
        endpoint=f"{sandbox.url}/v1/graphql",
        api_key=api_key,
        timeouts=Timeouts(**timeouts) if timeouts else None,
    )


def an_event(**changes: Any) -> dict[str, Any]:
    event = {
        "type": "Order Shipped",
        "user": {"email": "jane.doe@example.com", "phone": "+13115552368"},
        "properties": {"orderId": "A-1", "total": 98.44},
        "externalEventId": str(uuid.uuid4()),
        "occurredAt": "2021-03-30T14:38:29+00:00",
    }
    return event | changes


def stored(sandbox: Sandbox, external_id: str) -> list[dict[str, Any]]:
    events = sandbox.inspect(limit=10_000)["attentive_events"]
    return [e for e in events if e["external_event_id"] == external_id]


# --- the request --------------------------------------------------------------------------------


def test_the_mutation_is_the_vendors_own_example() -> None:
    require(SEEDS.is_dir(), f"the vendor seed documents at {SEEDS}")
    (example,) = [block for _, block, _ in seed_mutations() if "createCustomEvent" in block]
    assert print_ast(parse(CREATE_CUSTOM_EVENT)) == print_ast(parse(example))
    assert "createCustomEvent(input: $customEventInput)" in CREATE_CUSTOM_EVENT


def test_an_event_is_sent_with_the_bearer_token_and_stored_once(sandbox: Sandbox) -> None:
    event = an_event()
    with attentive(sandbox) as client:
        result = client.create_custom_event(event)
    assert (result.outcome, result.http_status, result.error) == (Outcome.SENT, 200, "")
    assert result.external_event_id == event["externalEventId"]
    (row,) = stored(sandbox, event["externalEventId"])
    assert row["token"] == ATTENTIVE_KEY
    assert (row["type"], row["user"], row["properties"]) == (
        "Order Shipped",
        event["user"],
        event["properties"],
    )
    assert row["occurred_at"] == "2021-03-30T14:38:29Z"


def test_a_request_ready_after_its_send_by_does_not_leave(sandbox: Sandbox) -> None:
    # The rate limit's permit of a call kept from it by a busy machine is stale: the
    # request would arrive bunched with the next ones. It must not leave at all.
    event = an_event()
    requests = sandbox.inspect(limit=1)["counts"]["requests"]
    with attentive(sandbox) as client:
        with pytest.raises(LeftTooLate):
            client.create_custom_event(event, send_by=time.monotonic() - 0.001)
        assert sandbox.inspect(limit=1)["counts"]["requests"] == requests
        # The same client sends the next one on time, over its connection.
        result = client.create_custom_event(event, send_by=time.monotonic() + 5.0)
    assert result.outcome == Outcome.SENT
    assert len(stored(sandbox, event["externalEventId"])) == 1


def test_properties_may_go_as_a_json_string_as_in_the_vendors_example(sandbox: Sandbox) -> None:
    event = an_event(properties='{ "customKey":"customValue" }')
    with attentive(sandbox) as client:
        assert client.create_custom_event(event).outcome == Outcome.SENT
    assert stored(sandbox, event["externalEventId"])[0]["properties"] == {
        "customKey": "customValue"
    }


def _connections_to(port: int) -> int:
    """Established TCP connections of this machine whose far end is `port`: the clients'
    side of connections to the sandbox."""
    count = 0
    with open("/proc/net/tcp") as table:
        next(table)
        for line in table:
            fields = line.split()
            if int(fields[2].split(":")[1], 16) == port and fields[3] == "01":
                count += 1
    return count


def test_calls_reuse_one_kept_alive_connection(sandbox: Sandbox) -> None:
    require(Path("/proc/net/tcp").is_file(), "Linux's /proc/net/tcp")
    before = _connections_to(sandbox.http_port)
    with attentive(sandbox) as client:
        results = [client.create_custom_event(an_event()) for _ in range(5)]
        assert _connections_to(sandbox.http_port) == before + 1
    assert [r.outcome for r in results] == [Outcome.SENT] * 5


# --- FAILED: certainly not taken, not worth trying again -------------------------------------


def test_a_200_with_errors_is_a_failure_never_a_success(sandbox: Sandbox) -> None:
    event = an_event(type="Order (shipped)")  # the sandbox refuses ( ) in a type, as Attentive
    with attentive(sandbox) as client:
        result = client.create_custom_event(event)
    assert (result.outcome, result.http_status) == (Outcome.FAILED, 200)
    assert "BAD_USER_INPUT input.type" in result.error
    assert stored(sandbox, event["externalEventId"]) == []


def test_a_graphql_error_of_the_server_is_a_failure(sandbox: Sandbox) -> None:
    sandbox.faults(rate_graphql_error=1.0, scope="attentive")
    with attentive(sandbox) as client:
        result = client.create_custom_event(an_event())
    assert (result.outcome, result.http_status) == (Outcome.FAILED, 200)
    assert "INTERNAL_SERVER_ERROR" in result.error


@pytest.mark.parametrize(
    ("case", "status"),
    [
        ("an event without its required type", 400),
        ("a wrong API key", 401),
        ("an endpoint that is not Attentive's", 404),
    ],
)
def test_refusals_over_http_are_failures(sandbox: Sandbox, case: str, status: int) -> None:
    event = an_event()
    client = attentive(sandbox, api_key="not-a-key" if status == 401 else ATTENTIVE_KEY)
    if status == 400:
        del event["type"]
    if status == 404:
        client.endpoint = f"{sandbox.url}/v1/graphql-nothing-here"
    with client:
        result = client.create_custom_event(event)
    assert (result.outcome, result.http_status) == (Outcome.FAILED, status)
    assert result.error.startswith(f"HTTP {status}")
    assert stored(sandbox, event["externalEventId"]) == []


# --- RETRYABLE: certainly not taken, worth trying again --------------------------------------


def test_the_rate_limit_429_is_retryable_with_its_retry_after(sandbox: Sandbox) -> None:
    sandbox.control("settings", {"attentive_rate_limit": 1})
    with attentive(sandbox) as client:
        results = [client.create_custom_event(an_event()) for _ in range(3)]
    limited = [r for r in results if r.http_status == 429]
    assert limited, "three calls within a second should meet a limit of 1 per second"
    assert all(r.outcome == Outcome.RETRYABLE and r.retry_after == 1.0 for r in limited)


@pytest.mark.parametrize(
    ("fault", "status", "retry_after"),
    [("http_429", 429, 7.0), ("http_503", 503, 7.0), ("http_502", 502, None)],
)
def test_refusals_before_processing_are_retryable(
    sandbox: Sandbox, fault: str, status: int, retry_after: float | None
) -> None:
    sandbox.faults(**{f"rate_{fault}": 1.0}, retry_after=7, scope="attentive")
    event = an_event()
    with attentive(sandbox) as client:
        result = client.create_custom_event(event)
    assert (result.outcome, result.http_status) == (Outcome.RETRYABLE, status)
    assert result.retry_after == retry_after
    assert stored(sandbox, event["externalEventId"]) == []


def test_no_connection_made_is_retryable() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]  # bound, never listening: the connection is refused
        client = AttentiveClient(endpoint=f"http://127.0.0.1:{port}/v1/graphql", api_key="k")
        with client:
            result = client.create_custom_event(an_event())
    assert (result.outcome, result.http_status) == (Outcome.RETRYABLE, None)
    assert result.error.startswith("ConnectError")


# --- UNKNOWN: may have been taken; never resent by itself ------------------------------------


@pytest.mark.parametrize(
    ("fault", "status", "error"),
    [
        ("http_500", 500, "HTTP 500"),
        ("drop", None, "RemoteProtocolError"),  # the connection dropped after sending
        ("hang", None, "ReadTimeout"),  # no answer within the read timeout
    ],
)
def test_failures_after_the_event_arrived_are_unknown(
    sandbox: Sandbox, fault: str, status: int | None, error: str
) -> None:
    sandbox.faults(**{f"rate_{fault}": 1.0}, hang_seconds=2.0, scope="attentive")
    event = an_event()
    with attentive(sandbox, read=0.5) as client:
        result = client.create_custom_event(event)
    assert (result.outcome, result.http_status) == (Outcome.UNKNOWN, status)
    assert result.error.startswith(error)
    # Why it must never be resent blindly: the sandbox did store it.
    assert len(stored(sandbox, event["externalEventId"])) == 1


# --- the deterministic externalEventId -------------------------------------------------------


def test_the_event_id_is_the_same_for_the_same_signal_and_destination() -> None:
    public_id = uuid.UUID("0d8f6c52-2b7e-4c1a-9f3e-5a6b7c8d9e0f")
    first = event_id(public_id, 7, 42)
    assert event_id(str(public_id), 7, 42) == first
    assert uuid.UUID(first).version == 5
    assert first == str(uuid.uuid5(EVENT_ID_NAMESPACE, f"{public_id}/7/42"))
    # Pinned: another namespace or another way of naming would re-key every event ever
    # sent, and a resend of an old import would then double its events at Attentive.
    assert first == "e7146623-2f71-5aff-84ad-2a8cc19f110b"


def test_the_event_id_differs_per_import_signal_and_destination() -> None:
    ids = {
        event_id(public_id, index, destination)
        for public_id in ("import-a", "import-b")
        for index in range(50)
        for destination in (1, 2, 12)
    }
    assert len(ids) == 2 * 50 * 3
    assert event_id("import-a", 1, 12) != event_id("import-a", 11, 2)  # no run-together


def test_a_resend_with_the_same_event_id_is_told_apart_by_attentive(sandbox: Sandbox) -> None:
    external_id = event_id("import-x", 3, 1)
    with attentive(sandbox) as client:
        client.create_custom_event(an_event(externalEventId=external_id))
        client.create_custom_event(an_event(externalEventId=external_id))
    assert len(stored(sandbox, external_id)) == 2
    assert sandbox.inspect()["counts"]["attentive_duplicate_event_ids"] >= 1


# --- answers the sandbox never gives ---------------------------------------------------------


def mocked(response: httpx.Response) -> AttentiveClient:
    return AttentiveClient(
        endpoint="http://attentive.test/v1/graphql",
        api_key="secret-key",
        transport=httpx.MockTransport(lambda request: response),
    )


@pytest.mark.parametrize(
    ("response", "outcome"),
    [
        (httpx.Response(403, json={"errors": [{"message": "forbidden"}]}), Outcome.FAILED),
        (httpx.Response(422, text="unprocessable"), Outcome.FAILED),
        (httpx.Response(301, headers={"Location": "http://elsewhere/"}), Outcome.FAILED),
        (httpx.Response(504, text="gateway timeout"), Outcome.UNKNOWN),
        (httpx.Response(200, text="<html>maintenance</html>"), Outcome.UNKNOWN),
        (httpx.Response(200, json={"data": None}), Outcome.UNKNOWN),
        (httpx.Response(200, json=[1, 2]), Outcome.UNKNOWN),
    ],
)
def test_other_answers_are_classified(response: httpx.Response, outcome: Outcome) -> None:
    with mocked(response) as client:
        result = client.create_custom_event(an_event())
    assert result.outcome == outcome
    assert result.error


def test_retry_after_may_be_an_http_date() -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    with mocked(httpx.Response(429, headers={"Retry-After": when})) as client:
        result = client.create_custom_event(an_event())
    assert result.outcome == Outcome.RETRYABLE
    assert result.retry_after == pytest.approx(30, abs=2)


def test_the_request_carries_the_bearer_token_and_the_event() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"data": {"createCustomEvent": {"type": "x"}}})

    event = an_event()
    client = AttentiveClient(
        endpoint="http://attentive.test/v1/graphql",
        api_key="secret-key",
        transport=httpx.MockTransport(answer),
    )
    with client:
        assert client.create_custom_event(event).outcome == Outcome.SENT
    (request,) = seen
    assert request.headers["Authorization"] == "Bearer secret-key"
    assert request.headers["Content-Type"] == "application/json"
    assert request.content == AttentiveClient.body(event)
    body = httpx.Response(200, content=request.content).json()
    assert body == {"query": CREATE_CUSTOM_EVENT, "variables": {"customEventInput": event}}
