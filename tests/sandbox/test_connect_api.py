"""createSignals limits and tiers, credentials, Attentive, bad input, and the record."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import httpx

from tests.sandbox.support import (
    ATTENTIVE_KEY,
    CREATE,
    PREMIUM_KEY,
    PRO_KEY,
    ROOT,
    ULTIMATE_KEY,
    Sandbox,
    signal,
)

ALL_TYPES = (
    "addToCart", "browseAbandonment", "cartAbandonment", "error", "identification",
    "onSiteSearch", "order", "pageView", "productConfiguration", "productView",
    "richMediaInteraction",
)  # fmt: skip


def test_it_takes_500_signals_and_returns_one_uuid_each(sandbox: Sandbox) -> None:
    response = sandbox.create_signals([signal("order", n=i) for i in range(500)])
    assert response.status_code == 200
    ids = response.json()["data"]["createSignals"]["signalIds"]
    assert len(ids) == 500 == len(set(ids))
    assert all(uuid.UUID(i).version == 4 for i in ids)
    stored = sandbox.inspect(limit=500)
    assert stored["counts"]["signals"] == 500
    assert {s["signal_id"] for s in stored["signals"]} == set(ids)


def test_it_refuses_501_signals_and_stores_none(sandbox: Sandbox) -> None:
    response = sandbox.create_signals([signal("order", n=i) for i in range(501)])
    assert response.status_code == 200
    body = response.json()
    assert body["data"] is None
    assert body["errors"][0]["extensions"]["code"] == "BATCH_TOO_LARGE"
    assert "at most 500" in body["errors"][0]["message"]
    assert sandbox.inspect()["counts"]["signals"] == 0


def test_a_pro_key_takes_only_the_pro_types(sandbox: Sandbox) -> None:
    for signal_type in ("addToCart", "identification", "order"):
        response = sandbox.create_signals([signal(signal_type)], api_key=PRO_KEY)
        assert "errors" not in response.json(), signal_type
    for signal_type in set(ALL_TYPES) - {"addToCart", "identification", "order"}:
        body = sandbox.create_signals([signal(signal_type)], api_key=PRO_KEY).json()
        assert body["errors"][0]["extensions"]["code"] == "NOT_IN_SUBSCRIPTION", signal_type


def test_premium_and_ultimate_take_all_eleven_types(sandbox: Sandbox) -> None:
    batch = [signal(t, n=i) for i, t in enumerate(ALL_TYPES)]
    for key in (PREMIUM_KEY, ULTIMATE_KEY):
        body = sandbox.create_signals(batch, api_key=key).json()
        assert len(body["data"]["createSignals"]["signalIds"]) == 11
    assert sandbox.inspect()["counts"]["by_api_key"] == {PREMIUM_KEY: 11, ULTIMATE_KEY: 11}


def test_one_refused_signal_fails_the_whole_batch_naming_its_index(sandbox: Sandbox) -> None:
    batch = [signal("order", n=0), signal("order", n=1), signal("pageView", n=2)]
    body = sandbox.create_signals(batch, api_key=PRO_KEY).json()
    error = body["errors"][0]
    assert error["extensions"]["signalIndex"] == 2
    assert error["extensions"]["field"] == "signals[2].signalContent.signalType"
    assert error["message"].startswith("signals[2].signalContent.signalType")
    assert error["path"] == ["createSignals"]
    assert sandbox.inspect()["counts"]["signals"] == 0


def test_it_refuses_signals_the_vendor_would_discard(sandbox: Sandbox) -> None:
    missing = signal("order")
    del missing["signalContent"]["orderId"]
    no_contact = signal("order") | {"identifiableAttributes": {}}
    fractional = signal("addToCart", itemQuantity=1.5)
    boolean = signal("addToCart", unitPrice=True)
    unknown = signal("order")
    unknown["signalContent"]["signalType"] = "checkout"
    not_object = signal("order") | {"signalContent": "order"}
    cases = {
        "signals[0].signalContent.orderId": missing,
        "signals[0].identifiableAttributes": no_contact,
        "signals[0].signalContent.itemQuantity": fractional,
        "signals[0].signalContent.unitPrice": boolean,
        "signals[0].signalContent.signalType": unknown,
        "signals[0].signalContent": not_object,
    }
    for field, bad in cases.items():
        body = sandbox.create_signals([bad]).json()
        assert body["errors"][0]["extensions"]["field"] == field, body


def test_the_test_flag_and_contact_attributes_are_recorded(sandbox: Sandbox) -> None:
    sms = signal("order") | {"identifiableAttributes": {"sms": "+13115552368"}, "test": True}
    sandbox.create_signals([sms, signal("order", n=1)])
    record = sandbox.inspect()
    assert record["counts"]["by_test"] == {"false": 1, "true": 1}
    stored = {s["test"]: s for s in record["signals"]}
    assert stored[True]["sms"] == "+13115552368"
    assert stored[True]["content"] == sms["signalContent"]


def test_missing_or_wrong_credentials_get_401_with_a_json_body(sandbox: Sandbox) -> None:
    for headers in ({}, {"x-api-key": "not-a-key"}, {"Authorization": f"Bearer {ATTENTIVE_KEY}"}):
        response = sandbox.http.post("/graphql", json={"query": CREATE}, headers=headers)
        assert response.status_code == 401
        assert response.json()["errors"][0]["message"].startswith("Unauthorized")
    for headers in ({}, {"Authorization": "Bearer nope"}, {"x-api-key": ULTIMATE_KEY}):
        response = sandbox.http.post("/v1/graphql", json={"query": "{ ping }"}, headers=headers)
        assert response.status_code == 401
    assert sandbox.inspect()["counts"]["requests_by_status"] == {"401": 6}


def test_accounts_can_be_added_at_run_time(sandbox: Sandbox) -> None:
    assert sandbox.create_signals([signal()], api_key="late-key").status_code == 401
    sandbox.control("accounts", {"api_key": "late-key", "tier": "Pro", "email": "late@example.com"})
    assert "errors" not in sandbox.create_signals([signal()], api_key="late-key").json()
    response = sandbox.http.post(
        "/_control/accounts", json={"api_key": "x", "tier": "gold", "email": "x@example.com"}
    )
    assert response.status_code == 400


def test_attentive_custom_events_are_checked_and_recorded(sandbox: Sandbox) -> None:
    mutation = (
        "mutation($e: CreateCustomEventInput!) { createCustomEvent(input: $e) "
        "{ externalEventId type properties } }"
    )
    headers = {"Authorization": f"Bearer {ATTENTIVE_KEY}"}
    good = {
        "type": "Order Shipped",
        "user": {"phone": "+13115552368"},
        "properties": {"orderId": "A-1", "items": [1, 2]},
        "externalEventId": str(uuid.uuid4()),
    }
    response = sandbox.http.post(
        "/v1/graphql", json={"query": mutation, "variables": {"e": good}}, headers=headers
    )
    assert response.json()["data"]["createCustomEvent"]["properties"] == good["properties"]
    bad_cases = {
        "input.user": good | {"user": {}},
        "input.type": good | {"type": "Order (shipped)"},
        "input.properties.a,b": good | {"properties": {"a,b": 1}},
        "input.user.phone": good | {"user": {"phone": "555"}},
    }
    for field, bad in bad_cases.items():
        body = sandbox.http.post(
            "/v1/graphql", json={"query": mutation, "variables": {"e": bad}}, headers=headers
        ).json()
        assert body["errors"][0]["extensions"]["field"] == field, body
    record = sandbox.inspect()
    events = record["attentive_events"]
    assert len(events) == 1 and events[0]["properties"] == good["properties"]
    # The same externalEventId again is recorded, and counted as a duplicate.
    sandbox.http.post(
        "/v1/graphql", json={"query": mutation, "variables": {"e": good}}, headers=headers
    )
    assert sandbox.inspect()["counts"]["attentive_duplicate_event_ids"] == 1


def test_attentive_rate_limit_answers_429(sandbox: Sandbox) -> None:
    sandbox.control("settings", {"attentive_rate_limit": 3})
    headers = {"Authorization": f"Bearer {ATTENTIVE_KEY}"}
    statuses = [
        sandbox.http.post("/v1/graphql", json={"query": "{ ping }"}, headers=headers).status_code
        for _ in range(20)
    ]
    assert 429 in statuses and statuses[0] == 200


def test_bad_input_gets_an_error_and_the_sandbox_keeps_serving(sandbox: Sandbox) -> None:
    headers = {"x-api-key": ULTIMATE_KEY, "Content-Type": "application/json"}
    post = sandbox.http.post
    cases: list[tuple[bytes, int]] = [
        (b"not json at all", 400),
        (b"[1, 2, 3]", 400),
        (b'{"variables": {}}', 400),
        (b'{"query": "mutation { createSignals(signals: [ }"}', 400),  # syntax
        (b'{"query": "mutation { noSuchField }"}', 400),  # validation
        (json.dumps({"query": CREATE, "variables": {"signals": [{"appKey": 5}]}}).encode(), 400),
        (json.dumps({"query": CREATE, "variables": {"signals": "many"}}).encode(), 400),
        (json.dumps({"query": CREATE, "variables": []}).encode(), 400),
        (b"\xff\xfe\x00garbage", 400),
    ]
    for body, status in cases:
        response = post("/graphql", content=body, headers=headers)
        assert response.status_code == status, (body, response.text)
        assert response.json()["errors"][0]["message"]
    assert sandbox.http.get("/graphql").status_code == 405
    assert sandbox.http.get("/nowhere").status_code == 404

    sandbox.control("settings", {"max_body_bytes": 2000})
    big = json.dumps({"query": CREATE, "variables": {"signals": [signal()] * 20}}).encode()
    with httpx.Client(base_url=sandbox.url) as fresh:
        response = fresh.post("/graphql", content=big, headers=headers)
    assert response.status_code == 413

    # Raw garbage on the socket: answered 400 and the connection closed, nothing else.
    with socket.create_connection(("127.0.0.1", sandbox.http_port), timeout=5) as raw:
        raw.sendall(b"HELLO\r\n\r\n")
        assert raw.recv(100).startswith(b"HTTP/1.1 400")
    with socket.create_connection(("127.0.0.1", sandbox.http_port), timeout=5) as raw:
        raw.sendall(b"POST /graphql HTTP/1.1\r\nContent-Length: 50\r\n\r\nshort")
    sandbox.control("settings", {"max_body_bytes": 1_000_000})
    assert sandbox.http.get("/_health").json() == {"ok": True}
    assert sandbox.create_signals([signal()]).status_code == 200
    assert sandbox.process.poll() is None


def test_literal_and_variable_batches_are_judged_alike(sandbox: Sandbox) -> None:
    """The fast path for `createSignals(signals: $v)` answers as graphql-core's own."""
    literal = (
        'mutation { createSignals(signals: [{appKey: "a", identifiableAttributes: '
        '{email: "jane@example.com"}, signalContent: {signalType: "order", currency: "USD", '
        'orderId: "1"}}, {appKey: "a", identifiableAttributes: {email: "jane@example.com"}, '
        'signalContent: {signalType: "pageView", url: "https://www.example.com/"}}]) '
        "{ signalIds } }"
    )
    by_literal = sandbox.graphql(literal, api_key=PRO_KEY).json()
    batch = [signal("order"), signal("pageView")]
    by_variable = sandbox.create_signals(batch, api_key=PRO_KEY).json()
    for body in (by_literal, by_variable):
        assert body["data"] is None
        error = body["errors"][0]
        assert error["path"] == ["createSignals"]
        assert error["extensions"] == {
            "code": "NOT_IN_SUBSCRIPTION",
            "field": "signals[1].signalContent.signalType",
            "signalIndex": 1,
        }
    fixed = literal.replace(
        'signalType: "pageView", url: "https://www.example.com/"',
        'signalType: "order", currency: "USD", orderId: "2"',
    )
    ok_literal = sandbox.graphql(fixed, api_key=PRO_KEY).json()
    assert len(ok_literal["data"]["createSignals"]["signalIds"]) == 2


def test_inspect_command_reads_the_record(sandbox: Sandbox) -> None:
    sandbox.create_signals([signal("order", n=i) for i in range(3)])
    sandbox.create_signals([signal("addToCart")], api_key=PRO_KEY)
    command = [sys.executable, "-m", "sandbox", "inspect", "--data", str(sandbox.data)]
    as_json = subprocess.run(
        [*command, "--json"], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    )
    report = json.loads(as_json.stdout)
    assert report["counts"]["by_type"] == {"addToCart": 1, "order": 3}
    assert report["counts"]["by_api_key"] == {PRO_KEY: 1, ULTIMATE_KEY: 3}
    assert [r["signals"] for r in report["requests"]] == [1, 3]
    assert all(r["body_bytes"] > 0 and r["duration_ms"] >= 0 for r in report["requests"])
    text = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60, check=True)
    assert "signals: 4" in text.stdout and "createSignals" in text.stdout


def test_inspect_without_a_record_says_so(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "sandbox", "inspect", "--data", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2 and "no record" in result.stderr


def test_a_deeply_nested_document_is_refused_not_crashed_on(sandbox: Sandbox) -> None:
    deep = "query { " + "a { " * 5000 + "}" * 5001
    response = sandbox.graphql(deep)
    assert response.status_code == 400
    nested_json = b'{"query": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    response = sandbox.http.post(
        "/graphql", content=nested_json, headers={"x-api-key": ULTIMATE_KEY}
    )
    assert response.status_code == 400
    assert sandbox.create_signals([signal()]).status_code == 200
