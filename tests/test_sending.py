"""Sending: the Connect client's classification (against httpx.MockTransport) and the batch
ledger's rules (with a fake client). The real worker and sandbox: tests/integration/."""

from __future__ import annotations

import contextlib
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from django.contrib.auth.models import Permission, User
from django.core.exceptions import PermissionDenied
from django.db import connection
from django.utils import timezone

from signals_app.connect_client import (
    CREATE_SIGNALS,
    ConnectClient,
    Outcome,
    SendResult,
    parse_retry_after,
)
from signals_app.models import (
    AuditEvent,
    BatchState,
    ImportBatch,
    ImportMode,
    ImportStatus,
    RejectedSignal,
    SendLane,
    SignalImport,
)
from signals_app.services import downloads, sending, window
from signals_app.services.errors import ImportRefused
from signals_app.validation.readers import UnreadableFile
from tests.factories import make_app_key

# --- the client --------------------------------------------------------------------------

Handler = Callable[[httpx.Request], httpx.Response]


def client_with(handler: Handler) -> ConnectClient:
    return ConnectClient(
        endpoint="http://connect.test/graphql",
        api_key="secret-key",
        transport=httpx.MockTransport(handler),
    )


def ids_answer(request: httpx.Request) -> httpx.Response:
    signals = orjson.loads(request.content)["variables"]["signals"]
    ids = [str(uuid.uuid4()) for _ in signals]
    return httpx.Response(200, json={"data": {"createSignals": {"signalIds": ids}}})


def test_client_posts_the_mutation_with_variables_and_the_api_key() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return ids_answer(request)

    with client_with(handler) as client:
        result = client.create_signals([{"appKey": "a"}, {"appKey": "b"}])
    assert result.outcome == Outcome.SENT
    assert len(result.signal_ids) == 2
    request = seen[0]
    assert request.method == "POST"
    assert request.headers["x-api-key"] == "secret-key"
    assert request.headers["content-type"] == "application/json"
    body = orjson.loads(request.content)
    assert body == {
        "query": CREATE_SIGNALS,
        "variables": {"signals": [{"appKey": "a"}, {"appKey": "b"}]},
    }


@pytest.mark.parametrize(
    ("status", "body", "headers", "outcome"),
    [
        (200, {"data": {"createSignals": {"signalIds": ["x"]}}}, {}, Outcome.UNKNOWN),  # 1 of 2
        (200, {"data": None, "errors": [{"message": "bad"}]}, {}, Outcome.FAILED),
        (200, {"data": {}}, {}, Outcome.UNKNOWN),
        (400, {"errors": [{"message": "syntax"}]}, {}, Outcome.FAILED),
        (401, {"errors": [{"message": "Unauthorized"}]}, {}, Outcome.FAILED),
        (403, None, {}, Outcome.FAILED),
        (413, None, {}, Outcome.FAILED),
        (429, None, {"Retry-After": "3"}, Outcome.RETRYABLE),
        (502, None, {}, Outcome.RETRYABLE),
        (503, None, {"Retry-After": "1"}, Outcome.RETRYABLE),
        (500, None, {}, Outcome.UNKNOWN),
        (504, None, {}, Outcome.UNKNOWN),
    ],
)  # fmt: skip
def test_client_classifies_each_answer(
    status: int, body: Any, headers: dict[str, str], outcome: Outcome
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if body is None:
            return httpx.Response(status, text="nope", headers=headers)
        return httpx.Response(status, json=body, headers=headers)

    with client_with(handler) as client:
        result = client.create_signals([{"n": 1}, {"n": 2}])
    assert result.outcome == outcome
    assert result.http_status == status
    if outcome != Outcome.SENT:
        assert result.error


def test_client_reads_graphql_errors_into_the_message() -> None:
    answer = {
        "data": None,
        "errors": [{"message": "signalType is not in the subscription",
                    "extensions": {"code": "NOT_IN_SUBSCRIPTION", "field": "signals[3]"}}],
    }  # fmt: skip
    with client_with(lambda r: httpx.Response(200, json=answer)) as client:
        result = client.create_signals([{}])
    assert result.outcome == Outcome.FAILED
    assert "NOT_IN_SUBSCRIPTION signals[3]: signalType is not in the subscription" in result.error


def test_client_honours_retry_after_seconds() -> None:
    with client_with(lambda r: httpx.Response(429, headers={"Retry-After": "7"})) as client:
        assert client.create_signals([{}]).retry_after == 7.0


@pytest.mark.parametrize(
    ("exception", "outcome"),
    [
        (httpx.ConnectError("refused"), Outcome.RETRYABLE),
        (httpx.ConnectTimeout("slow"), Outcome.RETRYABLE),
        (httpx.PoolTimeout("busy"), Outcome.RETRYABLE),
        (httpx.ReadTimeout("no answer"), Outcome.UNKNOWN),
        (httpx.ReadError("reset"), Outcome.UNKNOWN),
        (httpx.RemoteProtocolError("Server disconnected"), Outcome.UNKNOWN),
        (httpx.WriteError("broken pipe"), Outcome.UNKNOWN),
        (httpx.UnsupportedProtocol("ftp"), Outcome.FAILED),
    ],
)
def test_client_classifies_transport_errors(exception: Exception, outcome: Outcome) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exception

    with client_with(handler) as client:
        result = client.create_signals([{}])
    assert result.outcome == outcome
    assert result.http_status is None
    assert type(exception).__name__ in result.error


def test_retry_after_reads_seconds_and_http_dates() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    later = format_datetime(now + timedelta(seconds=30), usegmt=True)
    assert parse_retry_after(later, now=now.timestamp()) == pytest.approx(30)
    assert parse_retry_after("2.5") == 2.5
    assert parse_retry_after("-4") == 0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


# --- the ledger --------------------------------------------------------------------------

TOTAL = 23
REJECTED = (3, 10, 11)


class FakeClient:
    """Answers from a script of outcomes (then SENT); records every batch it was given."""

    def __init__(self, *script: SendResult | Outcome) -> None:
        self.script = list(script)
        self.calls: list[list[dict[str, Any]]] = []
        self.closed = False
        self.on_call: Callable[[int], None] | None = None

    def create_signals(
        self, signals: list[dict[str, Any]], *, body: bytes | None = None
    ) -> SendResult:
        if body is not None:  # a body prepared ahead must be exactly these signals'
            assert body == ConnectClient.body(signals)
        self.calls.append(signals)
        if self.on_call:
            self.on_call(len(self.calls))
        step = self.script.pop(0) if self.script else Outcome.SENT
        if isinstance(step, SendResult):
            return step
        if step == Outcome.SENT:
            return SendResult(Outcome.SENT, 200, [f"id-{s['sessionId']}" for s in signals])
        return SendResult(step, {Outcome.RETRYABLE: 503, Outcome.UNKNOWN: 500}.get(step, 400),
                          error=f"scripted {step}")  # fmt: skip

    def close(self) -> None:
        self.closed = True

    def sent_sessions(self) -> list[str]:
        return [s["sessionId"] for call in self.calls for s in call]


def envelope(n: int) -> dict[str, Any]:
    return {
        "identifiableAttributes": {"email": f"c{n}@example.com", "nonsense": 1},
        "sessionId": f"S-{n}",
        "test": False,
        "signalContent": {"signalType": "order", "currency": "USD", "orderId": f"O-{n}"},
        "extraField": "ignored by Connect",
    }


@pytest.fixture
def imports_dir(tmp_path: Path, settings: Any) -> Path:
    settings.IMPORTS_DIR = tmp_path
    settings.SIGNALS_BATCH_SIZE = 5
    settings.SIGNALS_SEND_BACKOFF_SECONDS = 0.01
    # One call at a time, in the run's own thread: the ledger's rules one batch after the
    # other (and FakeClient hooks may use the test's database connection). The window of
    # several calls: the tests under "the sending window".
    settings.SIGNALS_SEND_WINDOW = 1
    return tmp_path


@pytest.fixture(autouse=True)
def _no_waiting(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The waits asked for, none waited: the retry budget's clock moves by each instead."""
    waits: list[float] = []
    clock = [time.monotonic()]

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        clock[0] += seconds

    monkeypatch.setattr(sending, "sleep", sleep)
    monkeypatch.setattr(sending, "monotonic", lambda: clock[0])
    # The account-wide pause is in wall-clock time, which this clock does not move; it
    # has tests of its own (test_a_429_pauses_every_run_of_the_account).
    monkeypatch.setattr(sending, "_pause_account", lambda account_id, seconds: None)
    return waits


@pytest.fixture
def marketer(db: None) -> User:
    return User.objects.create_user("marketer", password="x")


@pytest.fixture
def sender_live(db: None) -> User:
    user = User.objects.create_user("live", password="x")
    user.user_permissions.add(Permission.objects.get(codename="send_live"))
    return User.objects.get(pk=user.pk)  # fresh permission cache


def validated_import(
    imports_dir: Path, user: User, *, mode: str = ImportMode.TEST, wrapped: bool = False
) -> SignalImport:
    """An NDJSON file of TOTAL signals, REJECTED as the validator would have stored them."""
    name = f"{uuid.uuid4().hex}.ndjson"
    lines = []
    for n in range(TOTAL):
        record: Any = envelope(n)
        if n == 0:
            record["appKey"] = "own-app-key"
        if wrapped:
            record = {"signal": record}
        lines.append(orjson.dumps(record) if n not in REJECTED else b"{broken")
    (imports_dir / name).write_bytes(b"\n".join(lines) + b"\n")
    signal_import = SignalImport.objects.create(
        created_by=user,
        app_key=make_app_key(key="file-app-key"),
        mode=mode,
        status=ImportStatus.VALIDATED,
        original_name="signals.ndjson",
        stored_name=name,
        signals=TOTAL,
        valid=TOTAL - len(REJECTED),
        rejected=len(REJECTED),
    )
    RejectedSignal.objects.bulk_create(
        RejectedSignal(signal_import=signal_import, signal=n, raw="{broken") for n in REJECTED
    )
    return signal_import


def batches(signal_import: SignalImport) -> list[ImportBatch]:
    return list(signal_import.batches.order_by("number"))


def as_sent(signal: dict[str, Any]) -> Any:
    """The signal as the createSignals request carries it (its content may be raw text)."""
    return orjson.loads(ConnectClient.body([signal]))["variables"]["signals"][0]


@pytest.mark.parametrize(
    "text",
    [
        b'{"appKey": "a", "identifiableAttributes": {"email": "x@example.com", "odd": 1,'
        b' "cookieId": null}, "sessionId": "S", "test": false, "extra": [1, {"b": 2}],'
        b' "signalContent": {"signalType": "order", "orderValue": 1.50,'
        b' "name": "\\u00e9t\\u00e9"}}',
        b'{"signal": {"sessionId": 7, "signalContent": {"signalType": "pageView"}}, "note": 1}',
        b'{"appKey": null, "identifiableAttributes": "nope", "signalContent": null}',
        b'{"signalContent": {"signalType": "order"}, "signal": {"appKey": "ignored"}}',
        b'  {"identifiableAttributes": {"email": "y@example.com"}, "signalContent": {}}  ',
    ],
)
def test_a_record_read_as_text_is_sent_as_its_parsed_value_would_be(text: bytes) -> None:
    from signals_app.validation.readers import Record

    record = Record(index=0, line=1, raw=text, value=None)
    from_text = sending._sendable_record(record, app_key="own", test=True)
    from_value = sending.sendable(sending.unwrap(orjson.loads(text))[0], app_key="own", test=True)
    assert as_sent(from_text) == as_sent(from_value)


def test_valid_signals_are_read_with_the_imports_mode_and_app_key(
    imports_dir: Path, marketer: User
) -> None:
    signal_import = validated_import(imports_dir, marketer, wrapped=True)
    signals = list(sending.iter_valid_signals(signal_import))
    assert [i for i, _ in signals] == [n for n in range(TOTAL) if n not in REJECTED]
    first = as_sent(signals[0][1])
    assert first == {
        "appKey": "own-app-key",
        "identifiableAttributes": {"email": "c0@example.com"},
        "sessionId": "S-0",
        "test": True,
        "signalContent": {"signalType": "order", "currency": "USD", "orderId": "O-0"},
    }
    assert {s["appKey"] for _, s in signals[1:]} == {"file-app-key"}


def test_it_writes_the_ledger_and_sends_every_valid_signal_once(
    imports_dir: Path, marketer: User, django_capture_on_commit_callbacks: Any
) -> None:
    signal_import = validated_import(imports_dir, marketer)
    with django_capture_on_commit_callbacks() as callbacks:
        signal_import = sending.import_send(signal_import=signal_import, user=marketer)
    lanes = sending.send_lanes()  # 2 on PostgreSQL, 1 on SQLite
    assert len(callbacks) == lanes  # a task per lane, enqueued once the ledger is committed
    assert signal_import.status == ImportStatus.SENDING
    ledger = batches(signal_import)
    assert [(b.number, b.first_signal, b.last_signal, b.size) for b in ledger] == [
        (0, 0, 5, 5), (1, 6, 12, 5), (2, 13, 17, 5), (3, 18, 22, 5)
    ]  # fmt: skip
    assert [b.lane for b in ledger] == ([0, 0, 1, 1] if lanes == 2 else [0, 0, 0, 0])
    client = FakeClient()
    sending.import_send_run(import_id=signal_import.pk, client=client)
    assert client.sent_sessions() == [f"S-{n}" for n in range(TOTAL) if n not in REJECTED]
    assert all(s["test"] is True for call in client.calls for s in call)
    signal_import.refresh_from_db()
    assert signal_import.status == ImportStatus.COMPLETED
    assert signal_import.send_finished_at is not None
    assert (signal_import.sent, signal_import.accepted, signal_import.failed) == (20, 20, 0)
    ledger = batches(signal_import)
    assert {b.state for b in ledger} == {BatchState.SENT}
    assert ledger[1].signal_ids == [f"id-S-{n}" for n in (6, 7, 8, 9, 12)]
    assert ledger[0].attempts == 1 and ledger[0].http_status == 200
    assert list(signal_import.audit.values_list("action", flat=True)) == [
        "import.send", "import.completed"
    ]  # fmt: skip
    # A second run (a redelivered task) sends nothing.
    again = FakeClient()
    signal_import.status = ImportStatus.SENDING
    signal_import.save()
    sending.import_send_run(import_id=signal_import.pk, client=again)
    assert again.calls == []


def test_it_refuses_a_second_send_of_the_same_import(imports_dir: Path, marketer: User) -> None:
    signal_import = validated_import(imports_dir, marketer)
    sending.import_send(signal_import=signal_import, user=marketer)
    with pytest.raises(ImportRefused, match="already sending"):
        sending.import_send(signal_import=signal_import, user=marketer)
    assert signal_import.batches.count() == 4


def test_it_refuses_an_import_that_is_not_validated(imports_dir: Path, marketer: User) -> None:
    signal_import = validated_import(imports_dir, marketer)
    signal_import.status = ImportStatus.UNREADABLE
    signal_import.save()
    with pytest.raises(ImportRefused, match="could not be read"):
        sending.import_send(signal_import=signal_import, user=marketer)


def test_it_rejects_live_import_without_permission(imports_dir: Path, marketer: User) -> None:
    signal_import = validated_import(imports_dir, marketer, mode=ImportMode.LIVE)
    with pytest.raises(PermissionDenied):
        sending.import_send(signal_import=signal_import, user=marketer, confirm_skip=3)
    assert not signal_import.batches.exists()


def test_live_import_with_rejected_signals_needs_the_count_confirmed(
    imports_dir: Path, sender_live: User
) -> None:
    signal_import = validated_import(imports_dir, sender_live, mode=ImportMode.LIVE)
    with pytest.raises(ImportRefused, match="3 rejected signals will be skipped"):
        sending.import_send(signal_import=signal_import, user=sender_live)
    with pytest.raises(ImportRefused):
        sending.import_send(signal_import=signal_import, user=sender_live, confirm_skip=2)
    signal_import = sending.import_send(
        signal_import=signal_import, user=sender_live, confirm_skip=3
    )
    assert signal_import.confirmed_skip == 3
    client = FakeClient()
    sending.import_send_run(import_id=signal_import.pk, client=client)
    assert all(s["test"] is False for call in client.calls for s in call)


def test_retryable_failures_are_retried_with_backoff_then_sent(
    imports_dir: Path, marketer: User
) -> None:
    """A batch refused for a passing reason waits its backoff while the next batches go;
    a 429 with Retry-After holds the whole window until then (Connect spoke to the
    client, not to the batch)."""
    signal_import = sending.import_send(
        signal_import=validated_import(imports_dir, marketer), user=marketer
    )
    retry_after = SendResult(Outcome.RETRYABLE, 429, error="slow down", retry_after=2.0)
    client = FakeClient(Outcome.RETRYABLE, retry_after)
    called_at: list[float] = []
    client.on_call = lambda calls: called_at.append(sending.monotonic())
    sending.import_send_run(import_id=signal_import.pk, client=client)
    first, second, *_ = batches(signal_import)
    assert (first.state, first.attempts) == (BatchState.SENT, 2)
    assert (second.state, second.attempts) == (BatchState.SENT, 2)
    # Retry-After honoured (plus a little jitter): no call at all before it passed.
    assert called_at[2:] and all(at >= called_at[1] + 2.0 for at in called_at[2:])
    # Every valid signal exactly once in what Connect took.
    taken = [s["sessionId"] for call in client.calls[2:] for s in call]  # the first 2 refused
    assert sorted(taken) == sorted(f"S-{n}" for n in range(TOTAL) if n not in REJECTED)


def test_retryable_failures_are_retried_for_a_time_not_a_count(
    imports_dir: Path, marketer: User, settings: Any
) -> None:
    """A vendor refusing for longer than the budget fails each batch, after as many
    attempts as fit in the budget (not six)."""
    settings.SIGNALS_SEND_RETRY_BUDGET_SECONDS = 120
    settings.SIGNALS_SEND_BACKOFF_CAP_SECONDS = 10
    signal_import = sending.import_send(
        signal_import=validated_import(imports_dir, marketer), user=marketer
    )

    class Refusing(FakeClient):
        def create_signals(
            self, signals: list[dict[str, Any]], *, body: bytes | None = None
        ) -> SendResult:
            self.calls.append(signals)
            return SendResult(Outcome.RETRYABLE, 503, error="Service Unavailable")

    started = sending.monotonic()
    client = Refusing()
    sending.import_send_run(import_id=signal_import.pk, client=client)
    ledger = batches(signal_import)
    assert len(client.calls) == sum(batch.attempts for batch in ledger)
    for batch in ledger:
        assert (batch.state, batch.http_status) == (BatchState.FAILED, 503)
        assert batch.attempts > 6
        spent = re.search(rf"Gave up after {batch.attempts} attempts in (\d+) s", batch.error)
        assert spent is not None and int(spent[1]) <= 120
        assert "(the retry budget is 120 s)" in batch.error
    # The batches of a lane waited side by side (lanes run one after the other here).
    assert sending.monotonic() - started <= (120 + 10) * sending.send_lanes()
    signal_import.refresh_from_db()
    assert signal_import.status == ImportStatus.COMPLETED and signal_import.failed == 20


def test_a_one_minute_hiccup_is_waited_out(
    imports_dir: Path, marketer: User, _no_waiting: list[float]
) -> None:
    """Connect answering 503 for a minute, with the default budget: every batch is sent
    once it answers again; none failed."""
    signal_import = sending.import_send(
        signal_import=validated_import(imports_dir, marketer), user=marketer
    )
    back_at = sending.monotonic() + 60

    class Hiccup(FakeClient):
        def create_signals(
            self, signals: list[dict[str, Any]], *, body: bytes | None = None
        ) -> SendResult:
            if sending.monotonic() < back_at:
                self.calls.append(signals)
                return SendResult(Outcome.RETRYABLE, 503, error="Service Unavailable")
            return super().create_signals(signals, body=body)

    client = Hiccup()
    sending.import_send_run(import_id=signal_import.pk, client=client)
    ledger = batches(signal_import)
    assert {batch.state for batch in ledger} == {BatchState.SENT}
    assert ledger[0].attempts > 6  # six quick attempts would have failed it
    signal_import.refresh_from_db()
    assert (signal_import.failed, signal_import.sent) == (0, 20)


def test_graphql_errors_fail_the_batch_with_their_message(
    imports_dir: Path, marketer: User
) -> None:
    signal_import = sending.import_send(
        signal_import=validated_import(imports_dir, marketer), user=marketer
    )
    refused = SendResult(Outcome.FAILED, 200, error="BATCH_TOO_LARGE: too many")
    sending.import_send_run(import_id=signal_import.pk, client=FakeClient(Outcome.SENT, refused))
    second = batches(signal_import)[1]
    assert (second.state, second.error, second.attempts) == (
        BatchState.FAILED, "BATCH_TOO_LARGE: too many", 1
    )  # fmt: skip


def test_unknown_outcome_is_never_resent_until_ops_resend_it(
    imports_dir: Path, marketer: User
) -> None:
    signal_import = sending.import_send(
        signal_import=validated_import(imports_dir, marketer), user=marketer
    )
    client = FakeClient(Outcome.SENT, Outcome.UNKNOWN)
    sending.import_send_run(import_id=signal_import.pk, client=client)
    assert len(client.calls) == 4
    signal_import.refresh_from_db()
    assert (signal_import.status, signal_import.unknown) == (ImportStatus.COMPLETED, 5)
    unknown = batches(signal_import)[1]
    assert unknown.state == BatchState.UNKNOWN

    again = FakeClient()
    sending.import_send_run(import_id=signal_import.pk, client=again)
    assert again.calls == []  # not SENDING any more; and an unknown batch is never picked

    sending.batch_resend(batch=unknown, user=marketer, reason="not in Connect")
    signal_import.refresh_from_db()
    assert signal_import.status == ImportStatus.SENDING
    sending.import_send_run(import_id=signal_import.pk, client=again)
    assert again.sent_sessions() == ["S-6", "S-7", "S-8", "S-9", "S-12"]
    signal_import.refresh_from_db()
    assert (signal_import.status, signal_import.accepted, signal_import.unknown) == (
        ImportStatus.COMPLETED, 20, 0
    )  # fmt: skip
    event = AuditEvent.objects.get(action="batch.resend")
    assert event.actor == marketer
    assert event.detail["previous_state"] == "unknown"
    assert event.detail["reason"] == "not in Connect"


def test_a_batch_in_flight_when_a_run_starts_becomes_unknown(
    imports_dir: Path, marketer: User
) -> None:
    signal_import = sending.import_send(
        signal_import=validated_import(imports_dir, marketer), user=marketer
    )
    ImportBatch.objects.filter(signal_import=signal_import, number=0).update(
        state=BatchState.IN_FLIGHT, attempts=1
    )
    ImportBatch.objects.filter(signal_import=signal_import, number=1).update(state=BatchState.SENT)
    client = FakeClient()
    sending.import_send_run(import_id=signal_import.pk, client=client)
    assert client.sent_sessions() == [f"S-{n}" for n in range(13, 23)]
    states = [b.state for b in batches(signal_import)]
    assert states == [BatchState.UNKNOWN, BatchState.SENT, BatchState.SENT, BatchState.SENT]
    assert "may have taken" in batches(signal_import)[0].error


def test_cancel_stops_after_the_current_batch(imports_dir: Path, marketer: User) -> None:
    signal_import = sending.import_send(
        signal_import=validated_import(imports_dir, marketer), user=marketer
    )
    client = FakeClient()

    def cancel_during_second_call(calls: int) -> None:
        if calls == 2:
            sending.import_cancel(signal_import=signal_import, user=marketer)

    client.on_call = cancel_during_second_call
    sending.import_send_run(import_id=signal_import.pk, client=client)
    assert len(client.calls) == 2
    states = [b.state for b in batches(signal_import)]
    assert states == [BatchState.SENT, BatchState.SENT, BatchState.PENDING, BatchState.PENDING]
    signal_import.refresh_from_db()
    assert signal_import.status == ImportStatus.CANCELLED
    with pytest.raises(ImportRefused, match="Only an import that is sending"):
        sending.import_cancel(signal_import=signal_import, user=marketer)


def test_a_completed_test_import_is_promoted_to_live(
    imports_dir: Path, marketer: User, sender_live: User
) -> None:
    tested = sending.import_send(
        signal_import=validated_import(imports_dir, marketer), user=marketer
    )
    sending.import_send_run(import_id=tested.pk, client=FakeClient())
    tested.refresh_from_db()
    with pytest.raises(PermissionDenied):
        sending.import_promote(signal_import=tested, user=marketer, confirm_skip=3)
    with pytest.raises(ImportRefused, match="3 rejected"):
        sending.import_promote(signal_import=tested, user=sender_live)
    assert not tested.promotions.exists()  # the refusal rolled the promotion back
    live = sending.import_promote(signal_import=tested, user=sender_live, confirm_skip=3)
    assert (live.mode, live.promoted_from, live.app_key) == (
        ImportMode.LIVE, tested, tested.app_key
    )  # fmt: skip
    assert (live.signals, live.valid, live.rejected) == (23, 20, 3)
    assert live.validation_source == tested
    client = FakeClient()
    sending.import_send_run(import_id=live.pk, client=client)
    assert client.sent_sessions() == [f"S-{n}" for n in range(TOTAL) if n not in REJECTED]
    assert all(s["test"] is False for call in client.calls for s in call)
    with pytest.raises(ImportRefused, match="already promoted"):
        sending.import_promote(signal_import=tested, user=sender_live, confirm_skip=3)


def test_a_test_not_accepted_whole_is_promoted_only_when_the_sender_confirms(
    imports_dir: Path, marketer: User, sender_live: User
) -> None:
    tested = sending.import_send(
        signal_import=validated_import(imports_dir, marketer), user=marketer
    )
    sending.import_send_run(import_id=tested.pk, client=FakeClient(Outcome.FAILED))
    tested.refresh_from_db()
    assert (tested.status, tested.failed, tested.outcome.key) == (
        ImportStatus.COMPLETED, 5, "partial"
    )  # fmt: skip
    with pytest.raises(ImportRefused, match=r"not accepted whole \(5 failed\)"):
        sending.import_promote(signal_import=tested, user=sender_live, confirm_skip=3)
    assert not tested.promotions.exists()
    live = sending.import_promote(
        signal_import=tested, user=sender_live, confirm_skip=3, confirm_incomplete=True
    )
    assert live.promoted_from == tested and live.status == ImportStatus.SENDING


def test_a_batch_sample_shows_its_first_valid_signals_as_in_the_file(
    imports_dir: Path, marketer: User
) -> None:
    signal_import = sending.import_send(
        signal_import=validated_import(imports_dir, marketer), user=marketer
    )
    second = batches(signal_import)[1]
    sample = downloads.batch_sample(signal_import, second.first_signal, second.last_signal)
    valid = [n for n in range(second.first_signal, second.last_signal + 1) if n not in REJECTED]
    assert [index for index, _, _ in sample] == valid[:3]
    assert all(f'"S-{index}"' in text for index, _, text in sample)
    assert [line for _, line, _ in sample] == [index + 1 for index in valid[:3]]


def test_a_sent_batch_cannot_be_resent(imports_dir: Path, marketer: User) -> None:
    signal_import = sending.import_send(
        signal_import=validated_import(imports_dir, marketer), user=marketer
    )
    sending.import_send_run(import_id=signal_import.pk, client=FakeClient())
    with pytest.raises(ImportRefused, match="Only a batch whose outcome is unknown"):
        sending.batch_resend(batch=batches(signal_import)[0], user=marketer)


def test_batch_ranges_skip_rejected_signals() -> None:
    assert sending.batch_ranges(signals=7, rejected={0, 3}, size=2) == [
        (1, 2, 2), (4, 5, 2), (6, 6, 1)
    ]  # fmt: skip
    assert sending.batch_ranges(signals=3, rejected={0, 1, 2}, size=2) == []


# --- signalIds per signal --------------------------------------------------------------------


def test_signal_ids_map_back_to_their_signals_past_rejected_ones(
    imports_dir: Path, marketer: User
) -> None:
    signal_import = validated_import(imports_dir, marketer)
    SignalImport.objects.filter(pk=signal_import.pk).update(file_format="ndjson")
    signal_import = sending.import_send(signal_import=signal_import, user=marketer)
    # Batch 1 holds signals 6..12 but 10 and 11 are rejected; batch 2 fails.
    client = FakeClient(Outcome.SENT, Outcome.SENT, Outcome.FAILED)
    sending.import_send_run(import_id=signal_import.pk, client=client)
    signal_import.refresh_from_db()

    sent = [n for n in range(TOTAL) if n not in REJECTED and not 13 <= n <= 17]
    assert list(sending.import_signal_ids(signal_import)) == [(n, f"id-S-{n}") for n in sent]
    # Lines come from the file (NDJSON: line n + 1 for signal n here).
    assert list(sending.import_signal_ids_with_lines(signal_import)) == [
        (n, n + 1, f"id-S-{n}") for n in sent
    ]


def test_signal_ids_skip_rejected_signals_inside_a_batch_range(
    imports_dir: Path, marketer: User
) -> None:
    tested = validated_import(imports_dir, marketer)
    ImportBatch.objects.create(
        signal_import=tested,
        number=0,
        first_signal=8,
        last_signal=13,
        size=4,
        state=BatchState.SENT,
        signal_ids=["a", "b", "c"],  # fewer ids than signals: only those are listed
    )
    assert list(sending.import_signal_ids(tested)) == [(8, "a"), (9, "b"), (12, "c")]
    assert list(sending.import_signal_ids_with_lines(tested)) == [
        (8, None, "a"), (9, None, "b"), (12, None, "c")
    ]  # fmt: skip


# --- stalled sends ---------------------------------------------------------------------------


def copy_of(signal_import: SignalImport) -> SignalImport:
    copy = SignalImport.objects.get(pk=signal_import.pk)
    copy.pk = None
    copy.public_id = uuid.uuid4()
    copy.stored_name = uuid.uuid4().hex
    copy.save()
    return copy


def test_the_sweep_resumes_only_lanes_without_a_run_quiet_past_the_limit(
    imports_dir: Path,
    marketer: User,
    settings: Any,
    django_capture_on_commit_callbacks: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from signals_app import tasks

    settings.SIGNALS_SEND_LANE_QUIET_SECONDS = 30
    enqueued: list[tuple[int, int]] = []
    monkeypatch.setattr(
        tasks.send_import, "delay", lambda import_id, lane: enqueued.append((import_id, lane))
    )
    now = timezone.now()
    seconds_ago = lambda n: now - timedelta(seconds=n)  # noqa: E731
    dead = validated_import(imports_dir, marketer)
    alive, leased, queued, older, done = (copy_of(dead) for _ in range(5))
    for signal_import in (dead, alive, leased, queued, older):
        SignalImport.objects.filter(pk=signal_import.pk).update(
            status=ImportStatus.SENDING, send_started_at=seconds_ago(3600)
        )
    SignalImport.objects.filter(pk=done.pk).update(status=ImportStatus.COMPLETED)
    lane = SendLane.objects.create
    lane(signal_import=dead, lane=0, enqueued_at=seconds_ago(600), alive_at=seconds_ago(40))
    lane(signal_import=alive, lane=0, enqueued_at=seconds_ago(600), alive_at=seconds_ago(10))
    # A run's lease, alive (SQLite has no advisory locks): left alone, whatever the times.
    lane(signal_import=leased, lane=0, run_id="r", alive_at=timezone.now())
    lane(signal_import=queued, lane=0, enqueued_at=seconds_ago(10))  # its task not started
    # `older` has no lane row: a send started before lanes had rows.

    with django_capture_on_commit_callbacks(execute=True):
        resumed = sending.resume_stalled_sends(now=now)
    # No batch written yet: lane 0, which closes the import (or sends what appears).
    assert sorted(resumed) == sorted([(dead.pk, 0), (older.pk, 0)])
    assert sorted(enqueued) == sorted(resumed)
    assert SendLane.objects.get(signal_import=dead).enqueued_at == now
    assert AuditEvent.objects.filter(action="import.send_resumed").count() == 2

    # The next sweep, 15 s later, leaves them alone: the resumed runs have their time.
    enqueued.clear()
    with django_capture_on_commit_callbacks(execute=True):
        assert sending.resume_stalled_sends(now=now + timedelta(seconds=15)) == []
    assert enqueued == []


def test_the_send_loop_beats_after_every_batch(imports_dir: Path, marketer: User) -> None:
    signal_import = sending.import_send(
        signal_import=validated_import(imports_dir, marketer), user=marketer
    )
    started = SignalImport.objects.get(pk=signal_import.pk).heartbeat_at
    assert started is not None
    beats: list[Any] = []
    client = FakeClient()
    client.on_call = lambda n: beats.append(
        SignalImport.objects.get(pk=signal_import.pk).heartbeat_at
    )
    sending.import_send_run(import_id=signal_import.pk, client=client)
    assert len(beats) == 4
    assert beats == sorted(beats) and beats[-1] > started


def test_a_resumed_run_after_a_dead_one_sends_nothing_twice(
    imports_dir: Path, marketer: User
) -> None:
    """The sweep's task meets the ledger a killed worker left: the batch it was sending is
    outcome unknown, the rest is sent once."""
    signal_import = sending.import_send(
        signal_import=validated_import(imports_dir, marketer), user=marketer
    )
    first = FakeClient()
    sending.send_batch(
        batch=batches(signal_import)[0],
        signals=[{"sessionId": f"S-{n}"} for n in range(5)],
        client=first,
    )
    ImportBatch.objects.filter(signal_import=signal_import, number=1).update(
        state=BatchState.IN_FLIGHT
    )  # the worker died during this call
    resumed = FakeClient()
    sending.import_send_run(import_id=signal_import.pk, client=resumed)
    sending.import_send_run(import_id=signal_import.pk, client=resumed)  # twice: no harm
    states = [b.state for b in batches(signal_import)]
    assert states == [BatchState.SENT, BatchState.UNKNOWN, BatchState.SENT, BatchState.SENT]
    assert len(resumed.calls) == 2


def test_the_counters_are_refreshed_on_a_timer_and_right_at_the_end(
    imports_dir: Path, marketer: User, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ledger aggregate runs every SIGNALS_SEND_REFRESH_SECONDS, not after each batch;
    the ledger is still written per batch and the counters are exact once the run ends."""
    settings.SIGNALS_SEND_REFRESH_SECONDS = 3600
    refreshes: list[int] = []
    real_update = sending.update_counters

    def counting(*, import_id: int) -> None:
        refreshes.append(import_id)
        real_update(import_id=import_id)

    monkeypatch.setattr(sending, "update_counters", counting)
    signal_import = sending.import_send(
        signal_import=validated_import(imports_dir, marketer), user=marketer
    )
    states_seen: list[str] = []
    client = FakeClient()
    client.on_call = lambda calls: states_seen.append(batches(signal_import)[calls - 1].state)
    sending.import_send_run(import_id=signal_import.pk, client=client)
    assert len(client.calls) == 4
    assert states_seen == [BatchState.IN_FLIGHT] * 4  # written before each call
    # At each lane's start and when its batches stop, and when the import closes: not per
    # batch.
    assert len(refreshes) == 2 * sending.send_lanes() + 1
    signal_import.refresh_from_db()
    assert signal_import.status == ImportStatus.COMPLETED
    assert (signal_import.sent, signal_import.accepted, signal_import.failed) == (20, 20, 0)


def test_batches_are_prepared_ahead_by_a_thread_that_never_writes_the_ledger(
    imports_dir: Path, marketer: User, settings: Any
) -> None:
    """The prefetch thread prepares the next batches (read, sendable, serialised) while
    one is in flight; the ledger still moves one batch at a time, in order."""
    settings.SIGNALS_SEND_PREFETCH = 2
    signal_import = sending.import_send(
        signal_import=validated_import(imports_dir, marketer), user=marketer
    )
    ledger_at_call: list[list[str]] = []
    client = FakeClient()
    client.on_call = lambda calls: ledger_at_call.append([b.state for b in batches(signal_import)])
    sending.import_send_run(import_id=signal_import.pk, client=client)
    P, F, S = BatchState.PENDING, BatchState.IN_FLIGHT, BatchState.SENT
    assert ledger_at_call == [[F, P, P, P], [S, F, P, P], [S, S, F, P], [S, S, S, F]]
    assert client.sent_sessions() == [f"S-{n}" for n in range(TOTAL) if n not in REJECTED]


def test_a_file_that_breaks_while_prepared_ahead_stops_the_run_without_sending_more(
    imports_dir: Path, marketer: User
) -> None:
    signal_import = sending.import_send(
        signal_import=validated_import(imports_dir, marketer), user=marketer
    )
    path = imports_dir / signal_import.stored_name
    lines = path.read_bytes().splitlines()
    path.write_bytes(b"\n".join(lines[:8]) + b"\n")  # the file lost its end: 2 batches short
    client = FakeClient()
    sending.import_send_run(import_id=signal_import.pk, client=client)
    states = [b.state for b in batches(signal_import)]
    # Batch 0 is whole; batch 1 lacks signals and fails unsent; 2 and 3 find none.
    assert states == [BatchState.SENT, BatchState.FAILED, BatchState.FAILED, BatchState.FAILED]
    assert len(client.calls) == 1
    signal_import.refresh_from_db()
    assert signal_import.status == ImportStatus.COMPLETED
    assert (signal_import.sent, signal_import.failed) == (5, 15)


def test_an_error_in_the_prefetch_thread_fails_the_run_with_its_message(
    imports_dir: Path, marketer: User
) -> None:
    signal_import = sending.import_send(
        signal_import=validated_import(imports_dir, marketer), user=marketer
    )
    (imports_dir / signal_import.stored_name).unlink()
    client = FakeClient()
    with pytest.raises(UnreadableFile):
        sending.import_send_run(import_id=signal_import.pk, client=client)
    assert client.calls == []
    signal_import.refresh_from_db()
    assert signal_import.status == ImportStatus.FAILED
    assert "UnreadableFile" in signal_import.error_message
    assert {b.state for b in batches(signal_import)} == {BatchState.PENDING}


# --- lanes: two runs send one import side by side (PostgreSQL) ---------------------------


def _needs_postgresql() -> None:
    from django.db import connection

    from tests.conftest import require

    require(connection.vendor == "postgresql", "PostgreSQL (send lanes need advisory locks)")


@contextlib.contextmanager
def lane_lock_held(import_id: int, lane: int) -> Iterator[None]:
    """A live run of the lane, as other sessions see it: its advisory lock, held from a
    connection of its own."""
    import psycopg
    from django.db import connection

    params = connection.get_connection_params()
    with psycopg.connect(**params, autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(%s, %s)", sending._lock_key(import_id, lane))
        yield


def two_lane_import(imports_dir: Path, user: User, settings: Any) -> SignalImport:
    _needs_postgresql()
    settings.SIGNALS_SEND_LANES = 2
    settings.SIGNALS_SEND_WINDOW = 2  # one call at a time in each lane
    signal_import = sending.import_send(
        signal_import=validated_import(imports_dir, user), user=user
    )
    assert [b.lane for b in batches(signal_import)] == [0, 0, 1, 1]
    return signal_import


@pytest.mark.django_db(transaction=True)
def test_two_lanes_send_at_once_and_every_signal_goes_once(
    imports_dir: Path, marketer: User, settings: Any
) -> None:
    from django.db import connection

    signal_import = two_lane_import(imports_dir, marketer, settings)
    together = threading.Barrier(2, timeout=20)
    clients = [FakeClient(), FakeClient()]
    errors: list[BaseException] = []

    def run(lane: int) -> None:
        client = clients[lane]

        # Each lane's first call waits for the other's: both are in flight at once.
        def meet_the_other_lane(calls: int) -> None:
            if calls == 1:
                together.wait()

        client.on_call = meet_the_other_lane
        try:
            sending.import_send_run(import_id=signal_import.pk, lane=lane, client=client)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(lane,)) for lane in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert not together.broken
    sent = clients[0].sent_sessions() + clients[1].sent_sessions()
    assert sorted(sent) == sorted(f"S-{n}" for n in range(TOTAL) if n not in REJECTED)
    assert clients[0].sent_sessions()[0] == "S-0" and clients[1].sent_sessions()[0] == "S-13"
    signal_import.refresh_from_db()
    assert signal_import.status == ImportStatus.COMPLETED
    assert (signal_import.sent, signal_import.failed, signal_import.unknown) == (20, 0, 0)
    assert list(signal_import.audit.values_list("action", flat=True)) == [
        "import.send", "import.completed"
    ]  # fmt: skip


def test_a_batch_in_flight_in_a_dead_lane_becomes_unknown_and_is_not_resent(
    imports_dir: Path, marketer: User, settings: Any
) -> None:
    signal_import = two_lane_import(imports_dir, marketer, settings)
    ImportBatch.objects.filter(signal_import=signal_import, number=2).update(
        state=BatchState.IN_FLIGHT
    )  # lane 1's worker died during this call: its lock went with it
    lane_0 = FakeClient()
    sending.import_send_run(import_id=signal_import.pk, lane=0, client=lane_0)
    assert len(lane_0.calls) == 2
    states = [b.state for b in batches(signal_import)]
    assert states == [BatchState.SENT, BatchState.SENT, BatchState.UNKNOWN, BatchState.PENDING]
    assert SignalImport.objects.get(pk=signal_import.pk).status == ImportStatus.SENDING
    lane_1 = FakeClient()  # its task, redelivered
    sending.import_send_run(import_id=signal_import.pk, lane=1, client=lane_1)
    assert lane_1.sent_sessions() == ["S-18", "S-19", "S-20", "S-21", "S-22"]
    assert SignalImport.objects.get(pk=signal_import.pk).status == ImportStatus.COMPLETED


def test_a_batch_in_flight_in_a_live_lane_is_left_to_its_run(
    imports_dir: Path, marketer: User, settings: Any
) -> None:
    signal_import = two_lane_import(imports_dir, marketer, settings)
    ImportBatch.objects.filter(signal_import=signal_import, number=2).update(
        state=BatchState.IN_FLIGHT
    )
    with lane_lock_held(signal_import.pk, 1):
        sending.import_send_run(import_id=signal_import.pk, lane=0, client=FakeClient())
        assert batches(signal_import)[2].state == BatchState.IN_FLIGHT
        assert SignalImport.objects.get(pk=signal_import.pk).status == ImportStatus.SENDING


def test_the_sweep_resumes_only_the_lanes_left_without_a_run(
    imports_dir: Path,
    marketer: User,
    settings: Any,
    django_capture_on_commit_callbacks: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from signals_app import tasks

    signal_import = two_lane_import(imports_dir, marketer, settings)
    sending.import_send_run(import_id=signal_import.pk, lane=0, client=FakeClient())
    enqueued: list[tuple[int, int]] = []
    monkeypatch.setattr(
        tasks.send_import, "delay", lambda import_id, lane: enqueued.append((import_id, lane))
    )
    now = timezone.now()
    # Lane 1's task was enqueued a minute ago and never showed life.
    SendLane.objects.filter(signal_import=signal_import, lane=1).update(
        enqueued_at=now - timedelta(minutes=1), alive_at=None
    )
    with lane_lock_held(signal_import.pk, 1):
        assert sending.resume_stalled_sends(now=now) == []  # lane 1's run is alive
    with django_capture_on_commit_callbacks(execute=True):
        assert sending.resume_stalled_sends(now=now) == [(signal_import.pk, 1)]
    assert enqueued == [(signal_import.pk, 1)]


@pytest.mark.postgres
def test_a_lane_whose_run_died_mid_call_is_resumed_at_the_next_sweep(
    imports_dir: Path,
    marketer: User,
    settings: Any,
    django_capture_on_commit_callbacks: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """PostgreSQL: a batch IN_FLIGHT in a lane whose lock is free has lost its run for
    sure: resumed at once, however recently the run showed life."""
    from signals_app import tasks

    signal_import = two_lane_import(imports_dir, marketer, settings)
    enqueued: list[tuple[int, int]] = []
    monkeypatch.setattr(
        tasks.send_import, "delay", lambda import_id, lane: enqueued.append((import_id, lane))
    )
    now = timezone.now()
    SendLane.objects.filter(signal_import=signal_import).update(
        enqueued_at=now - timedelta(minutes=1), alive_at=now - timedelta(seconds=2)
    )
    ImportBatch.objects.filter(signal_import=signal_import, number=2).update(
        state=BatchState.IN_FLIGHT
    )
    with django_capture_on_commit_callbacks(execute=True):
        assert sending.resume_stalled_sends(now=now) == [(signal_import.pk, 1)]
    assert enqueued == [(signal_import.pk, 1)]


# --- stopping: a cancel or another lane giving up ends every lane ---------------------------


def test_a_batch_waiting_out_a_retry_is_not_sent_once_the_import_is_cancelled(
    imports_dir: Path, marketer: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While a run waits to retry (its batch back to PENDING), ops cancel and the import
    closes as CANCELLED (in two lanes, the other lane's run closes it): the waiting run
    must not claim the batch again afterwards."""
    signal_import = sending.import_send(
        signal_import=validated_import(imports_dir, marketer), user=marketer
    )

    def cancel_and_close_meanwhile(delay: float) -> None:
        if SignalImport.objects.get(pk=signal_import.pk).status == ImportStatus.SENDING:
            sending.import_cancel(signal_import=signal_import, user=marketer)
            assert sending.finish(signal_import.pk, ImportStatus.CANCELLED)

    monkeypatch.setattr(sending, "sleep", cancel_and_close_meanwhile)
    client = FakeClient(Outcome.RETRYABLE)
    sending.import_send_run(import_id=signal_import.pk, client=client)
    # The refused attempt, then the lane's other batches while the first waited; the run
    # waits only once nothing else is left, and then the cancel comes.
    in_lane = sum(1 for batch in batches(signal_import) if batch.lane == 0)
    assert len(client.calls) == in_lane
    signal_import.refresh_from_db()
    assert signal_import.status == ImportStatus.CANCELLED
    assert batches(signal_import)[0].state == BatchState.PENDING
    assert signal_import.sent == 5 * (in_lane - 1)


def test_a_lane_stops_after_its_batch_when_another_lane_gave_up(
    imports_dir: Path, marketer: User, settings: Any
) -> None:
    signal_import = two_lane_import(imports_dir, marketer, settings)
    client = FakeClient()
    # Lane 1's run breaks (its file gone, say) while lane 0's first batch is on its way.
    client.on_call = lambda calls: sending.give_up(signal_import.pk, RuntimeError("lane 1"))
    sending.import_send_run(import_id=signal_import.pk, lane=0, client=client)
    assert len(client.calls) == 1
    signal_import.refresh_from_db()
    assert signal_import.status == ImportStatus.FAILED
    assert [b.state for b in batches(signal_import)] == [
        BatchState.SENT, BatchState.PENDING, BatchState.PENDING, BatchState.PENDING
    ]  # fmt: skip
    assert signal_import.sent == 5  # counted after the give-up too


def test_an_orphan_in_an_import_that_stopped_is_settled_by_its_lane_or_the_sweep(
    imports_dir: Path, marketer: User, settings: Any
) -> None:
    """Lane 1 gave up; lane 0's worker then died mid-call. Its redelivered task, or the
    sweep once the lane's lock is free, settles the batch as UNKNOWN."""
    signal_import = two_lane_import(imports_dir, marketer, settings)
    ImportBatch.objects.filter(signal_import=signal_import, number=0).update(
        state=BatchState.IN_FLIGHT
    )
    ImportBatch.objects.filter(signal_import=signal_import, number=2).update(
        state=BatchState.IN_FLIGHT
    )
    sending.give_up(signal_import.pk, RuntimeError("lane 1 broke"))
    sending.import_send_run(import_id=signal_import.pk, lane=0, client=FakeClient())
    assert batches(signal_import)[0].state == BatchState.UNKNOWN
    with lane_lock_held(signal_import.pk, 1):
        sending.resume_stalled_sends()
        assert batches(signal_import)[2].state == BatchState.IN_FLIGHT  # its run is alive
    sending.resume_stalled_sends()
    assert batches(signal_import)[2].state == BatchState.UNKNOWN
    signal_import.refresh_from_db()
    assert signal_import.status == ImportStatus.FAILED
    assert signal_import.unknown == 10


# --- the lane's lease where there are no advisory locks (SQLite) ---------------------------


@pytest.fixture
def leases(monkeypatch: pytest.MonkeyPatch) -> None:
    """The lease code path whatever the test database (CI runs PostgreSQL): it only asks
    the connection's vendor."""
    monkeypatch.setattr(connection, "vendor", "sqlite")


def test_a_check_of_the_lane_holds_its_lease_so_no_run_starts_meanwhile(
    imports_dir: Path, marketer: User, leases: None, settings: Any
) -> None:
    settings.SIGNALS_SEND_LANE_WAIT_SECONDS = 0
    signal_import = validated_import(imports_dir, marketer)
    quiet_since = timezone.now() - timedelta(seconds=40)
    SendLane.objects.create(signal_import=signal_import, lane=0, alive_at=quiet_since)
    with sending._try_run_lock(signal_import.pk, 0) as acquired:
        assert acquired
        # A run (a resend's task, the sweep's) trying to start now waits: the check holds it.
        with sending._lane_run(signal_import.pk, 0) as running:
            assert not running
    # Let go as it found it: the lane's quiet, which the sweep reads, is unchanged.
    lane = SendLane.objects.get(signal_import=signal_import, lane=0)
    assert (lane.run_id, lane.alive_at) == ("", quiet_since)
    with sending._lane_run(signal_import.pk, 0) as running:
        assert running
        with sending._try_run_lock(signal_import.pk, 0) as acquired:
            assert not acquired  # a live run's lease: its IN_FLIGHT batches are its own
        assert sending._run_alive(signal_import.pk, 0)
    assert not sending._run_alive(signal_import.pk, 0)


def test_a_dead_runs_lapsed_lease_lets_its_batches_be_settled(
    imports_dir: Path, marketer: User, leases: None, settings: Any
) -> None:
    settings.SIGNALS_SEND_LANE_QUIET_SECONDS = 30
    signal_import = validated_import(imports_dir, marketer)
    SendLane.objects.create(
        signal_import=signal_import,
        lane=0,
        run_id="killed-run",
        alive_at=timezone.now() - timedelta(seconds=31),
    )
    with sending._try_run_lock(signal_import.pk, 0) as acquired:
        assert acquired


# --- the sending window: several calls in flight -------------------------------------------

_real_pause_account = sending._pause_account  # the fixture above stands one in


class WindowClient(FakeClient):
    """Answers after `seconds` (real time) from the pool's threads, counting the calls in
    flight at once; `answers` maps a call number (1-based) to its answer."""

    def __init__(self, seconds: float = 0.02, answers: dict[int, SendResult] | None = None):
        super().__init__()
        self.seconds = seconds
        self.answers = answers or {}
        self.lock = threading.Lock()
        self.now = self.peak = 0
        self.started_at: list[float] = []

    def create_signals(
        self, signals: list[dict[str, Any]], *, body: bytes | None = None
    ) -> SendResult:
        with self.lock:
            self.now += 1
            self.peak = max(self.peak, self.now)
            self.calls.append(signals)
            number = len(self.calls)
            self.started_at.append(sending.monotonic())
        try:
            time.sleep(self.seconds)
            if number in self.answers:
                return self.answers[number]
            return SendResult(Outcome.SENT, 200, [f"id-{s['sessionId']}" for s in signals])
        finally:
            with self.lock:
                self.now -= 1


@pytest.fixture
def one_batch_per_signal(imports_dir: Path, settings: Any) -> None:
    settings.SIGNALS_BATCH_SIZE = 1
    settings.SIGNALS_SEND_LANES = 1


def test_a_window_keeps_its_calls_in_flight_and_sends_every_signal_once(
    imports_dir: Path, marketer: User, settings: Any, one_batch_per_signal: None
) -> None:
    settings.SIGNALS_SEND_WINDOW = 3
    signal_import = sending.import_send(
        signal_import=validated_import(imports_dir, marketer), user=marketer
    )
    client = WindowClient()
    sending.import_send_run(import_id=signal_import.pk, client=client)
    assert client.peak == 3
    assert sorted(client.sent_sessions()) == sorted(
        f"S-{n}" for n in range(TOTAL) if n not in REJECTED
    )
    ledger = batches(signal_import)
    assert {batch.state for batch in ledger} == {BatchState.SENT}
    assert all(batch.signal_ids == [f"id-S-{batch.first_signal}"] for batch in ledger)
    signal_import.refresh_from_db()
    assert (signal_import.status, signal_import.sent) == (ImportStatus.COMPLETED, 20)


def other_import_in_flight(signal_import: SignalImport, user: User, batches: int) -> None:
    """Another import of the same Connect account with `batches` calls in flight."""
    other = SignalImport.objects.create(
        created_by=user,
        app_key=make_app_key(account=signal_import.connect_app_key.account),
        status=ImportStatus.SENDING,
        original_name="other.ndjson",
        stored_name=f"{uuid.uuid4().hex}.ndjson",
    )
    ImportBatch.objects.bulk_create(
        ImportBatch(signal_import=other, number=n, first_signal=n, last_signal=n, size=1,
                    state=BatchState.IN_FLIGHT)
        for n in range(batches)
    )  # fmt: skip


def test_the_accounts_cap_holds_across_its_imports(
    imports_dir: Path, marketer: User, settings: Any, one_batch_per_signal: None
) -> None:
    """Another import of the account has 2 calls in flight and the account takes 3 at
    once: this import's window of 8 sends one at a time."""
    settings.SIGNALS_SEND_WINDOW = 8
    signal_import = sending.import_send(
        signal_import=validated_import(imports_dir, marketer), user=marketer
    )
    account = signal_import.connect_app_key.account
    account.max_batches_in_flight = 3
    account.save()
    other_import_in_flight(signal_import, marketer, 2)
    client = WindowClient()
    sending.import_send_run(import_id=signal_import.pk, client=client)
    assert client.peak == 1
    assert len(client.sent_sessions()) == 20
    signal_import.refresh_from_db()
    assert (signal_import.status, signal_import.sent) == (ImportStatus.COMPLETED, 20)


def test_a_claim_keeps_to_the_import_window_the_account_cap_and_a_pause(
    imports_dir: Path, marketer: User, settings: Any
) -> None:
    settings.SIGNALS_SEND_WINDOW = 2
    signal_import = sending.import_send(
        signal_import=validated_import(imports_dir, marketer), user=marketer
    )
    account = signal_import.connect_app_key.account
    first, second, third, fourth = batches(signal_import)

    def claim(batch: ImportBatch) -> Any:
        return sending._claim(
            batch,
            first_attempt=True,
            account_id=account.pk,
            window=2,
            account_cap=sending._account_cap(account.pk),
        )

    assert claim(first) is sending._Claim.TAKEN
    assert claim(first) is sending._Claim.GONE  # already IN_FLIGHT
    assert claim(second) is sending._Claim.TAKEN
    assert claim(third) is sending._Claim.FULL  # the import's window of 2
    sending._write_outcome(first, BatchState.SENT)
    account.max_batches_in_flight = 2
    account.save()
    other_import_in_flight(signal_import, marketer, 1)
    assert claim(third) is sending._Claim.FULL  # the account's 2: one here, one elsewhere
    account.max_batches_in_flight = 3
    account.save()
    _real_pause_account(account.pk, 30)
    assert claim(third) is sending._Claim.FULL  # Connect asked this account to wait
    account.refresh_from_db()
    assert account.send_paused_until is not None
    assert 29 < (account.send_paused_until - timezone.now()).total_seconds() <= 30
    _real_pause_account(account.pk, 5)  # a shorter pause never cuts a longer one short
    account.refresh_from_db()
    assert (account.send_paused_until - timezone.now()).total_seconds() > 29
    account.send_paused_until = timezone.now() - timedelta(seconds=1)
    account.save()
    assert claim(third) is sending._Claim.TAKEN
    sending.import_cancel(signal_import=signal_import, user=marketer)
    assert claim(fourth) is sending._Claim.STOPPED


def test_a_429_holds_the_whole_window_and_pauses_the_account(
    imports_dir: Path,
    marketer: User,
    settings: Any,
    one_batch_per_signal: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings.SIGNALS_SEND_WINDOW = 4
    signal_import = sending.import_send(
        signal_import=validated_import(imports_dir, marketer), user=marketer
    )
    paused: list[tuple[int, float]] = []
    monkeypatch.setattr(sending, "_pause_account", lambda *args: paused.append(args))
    slow_down = SendResult(Outcome.RETRYABLE, 429, error="Too Many Requests", retry_after=5.0)
    client = WindowClient(answers={3: slow_down})
    sending.import_send_run(import_id=signal_import.pk, client=client)
    refused_at = client.started_at[2]
    # The calls already on their way when the 429 came (at most the window) go on;
    # no call starts afterwards until the 5 seconds have passed.
    later = client.started_at[3:]
    early = [at for at in later if at < refused_at + 5.0]
    assert len(early) <= 3 and all(at == refused_at for at in early)
    assert [account for account, _ in paused] == [signal_import.connect_app_key.account_id]
    assert 5.0 <= paused[0][1] <= 5.01
    assert len(client.sent_sessions()) == 21  # 20, one of them twice: refused, then sent
    signal_import.refresh_from_db()
    assert (signal_import.status, signal_import.sent) == (ImportStatus.COMPLETED, 20)


def test_pace_halves_on_a_slow_down_and_grows_back_one_by_one() -> None:
    pace = window.Pace(8)
    pace.slow_down(until=10.0)
    assert (pace.size, pace.paused(9.9), pace.paused(10.0)) == (4, True, False)
    pace.slow_down(until=5.0)  # an earlier end never shortens the pause
    assert (pace.size, pace.paused_until) == (2, 10.0)
    for _ in range(2):
        pace.accepted()
    assert pace.size == 3
    for _ in range(3 + 4 + 5 + 6 + 7):
        pace.accepted()
    assert pace.size == 8
    pace.accepted()
    assert pace.size == 8


def test_a_cancel_stops_the_window_at_once_while_it_waits_out_a_retry(
    imports_dir: Path,
    marketer: User,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
    _no_waiting: list[float],
) -> None:
    """Connect said wait a minute; the marketer cancels meanwhile: the run notices within
    a poll (not after the minute) and starts no call."""
    settings.SIGNALS_SEND_WINDOW = 2
    settings.SIGNALS_SEND_LANES = 1
    signal_import = sending.import_send(
        signal_import=validated_import(imports_dir, marketer), user=marketer
    )
    real_sleep = sending.sleep

    def cancel_while_waiting(seconds: float) -> None:
        if not SignalImport.objects.get(pk=signal_import.pk).cancel_requested:
            sending.import_cancel(signal_import=signal_import, user=marketer)
        real_sleep(seconds)

    monkeypatch.setattr(sending, "sleep", cancel_while_waiting)
    wait = SendResult(Outcome.RETRYABLE, 429, error="Too Many Requests", retry_after=60.0)
    client = WindowClient(answers={1: wait})
    started = sending.monotonic()
    sending.import_send_run(import_id=signal_import.pk, client=client)
    assert sending.monotonic() - started < 1.0
    assert len(client.calls) == 2  # the window's two, before the 429 came back
    signal_import.refresh_from_db()
    assert signal_import.status == ImportStatus.CANCELLED
    states = sorted(batch.state for batch in batches(signal_import))
    assert states == [BatchState.PENDING] * 3 + [BatchState.SENT]


def test_the_calls_in_flight_when_a_run_breaks_keep_their_outcomes(
    imports_dir: Path,
    marketer: User,
    settings: Any,
    one_batch_per_signal: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The file goes bad while read ahead with the window full: the run fails, and each
    call already on its way still gets its outcome written (not left IN_FLIGHT, to be
    called unknown by the next run)."""
    settings.SIGNALS_SEND_WINDOW = 4
    signal_import = sending.import_send(
        signal_import=validated_import(imports_dir, marketer), user=marketer
    )
    reading = sending._FileToSend.signals

    def breaking(self: Any, from_signal: int) -> Iterator[tuple[int, dict[str, Any]]]:
        for n, item in enumerate(reading(self, from_signal)):
            if n == 6:
                raise OSError("the disk went away")
            yield item

    monkeypatch.setattr(sending._FileToSend, "signals", breaking)
    client = WindowClient(seconds=0.2)
    with pytest.raises(OSError, match="the disk went away"):
        sending.import_send_run(import_id=signal_import.pk, client=client)
    states = [batch.state for batch in batches(signal_import)]
    assert BatchState.IN_FLIGHT not in states
    assert states.count(BatchState.SENT) == len(client.calls) >= 4
    signal_import.refresh_from_db()
    assert signal_import.status == ImportStatus.FAILED
    assert signal_import.sent == len(client.calls)


def test_the_ledger_is_written_in_chunks_with_every_number_and_lane(
    imports_dir: Path,
    marketer: User,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings.SIGNALS_BATCH_SIZE = 1
    monkeypatch.setattr(sending, "_LEDGER_CHUNK", 7)
    signal_import = sending.import_send(
        signal_import=validated_import(imports_dir, marketer), user=marketer
    )
    ledger = batches(signal_import)
    valid = [n for n in range(TOTAL) if n not in REJECTED]
    assert [b.number for b in ledger] == list(range(20))
    assert [b.first_signal for b in ledger] == valid
    lanes = sending.send_lanes()
    assert [b.lane for b in ledger] == [n * lanes // 20 for n in range(20)]


def test_the_counters_of_a_large_ledger_are_refreshed_less_often(
    imports_dir: Path, marketer: User, settings: Any
) -> None:
    """The counters aggregate the whole ledger: for 20,000 batches (10 M signals) every
    5 s, not every 0.5 s, so their cost per second does not grow with the import."""
    settings.SIGNALS_SEND_REFRESH_SECONDS = 0.5
    signal_import = sending.import_send(
        signal_import=validated_import(imports_dir, marketer), user=marketer
    )
    assert sending._WindowRun(signal_import, FakeClient(), 1, on_progress=None).refresh_every == 0.5
    signal_import.batches_total = 20_000
    assert sending._WindowRun(signal_import, FakeClient(), 1, on_progress=None).refresh_every == 5.0
