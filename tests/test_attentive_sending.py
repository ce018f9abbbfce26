"""Sending an import to Attentive as custom events (services.attentive_sending), against a
real sandbox process: the ledger's Attentive lane, exactly-once events by externalEventId,
retries, unknown outcomes and ops' resend, an orphaned batch, cancel; Connect beside it
(a fake Connect client: Connect's own sending has its tests in test_sending.py)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from django.contrib.auth.models import Group, Permission, User

from connectadmin.models import AttentiveAccount
from connectadmin.ratelimit import MAX_GIVE_UPS, FileRateLimiter, RateLimitUnavailable
from signals_app.attentive_client import event_id
from signals_app.connect_client import Outcome
from signals_app.models import (
    BatchState,
    Destination,
    ImportBatch,
    ImportMode,
    ImportStatus,
    RejectedSignal,
    SignalImport,
)
from signals_app.services import attentive_sending, sending
from signals_app.services.errors import ImportRefused
from signals_app.services.sending import Destinations
from tests.factories import make_app_key
from tests.sandbox.support import ATTENTIVE_KEY, Sandbox, running_sandbox
from tests.test_sending import FakeClient

TOTAL = 12
REJECTED = {4}


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[Sandbox]:
    with running_sandbox(tmp_path / "sandbox") as running:
        yield running


@pytest.fixture
def setup(tmp_path: Path, settings: Any) -> Path:
    settings.IMPORTS_DIR = tmp_path / "imports"
    settings.IMPORTS_DIR.mkdir()
    settings.ATTENTIVE_BATCH_SIZE = 4
    settings.ATTENTIVE_CALLS_IN_FLIGHT = 4
    settings.SIGNALS_BATCH_SIZE = 5
    settings.SIGNALS_SEND_WINDOW = 1
    settings.SIGNALS_SEND_BACKOFF_SECONDS = 0.01
    settings.SIGNALS_SEND_BACKOFF_CAP_SECONDS = 0.05
    # The rate limit's state in files of this test (tests/test_ratelimit.py covers Redis).
    settings.RATE_LIMIT_REDIS_URL = ""
    settings.VAR_DIR = tmp_path / "var"
    return tmp_path


@pytest.fixture
def sender(db: None) -> User:
    """A marketer who may send live."""
    user = User.objects.create_user("live", password="x")
    user.user_permissions.add(Permission.objects.get(codename="send_live"))
    user.groups.add(Group.objects.get_or_create(name="marketer")[0])
    return User.objects.get(pk=user.pk)


def account(sandbox: Sandbox, key: str = ATTENTIVE_KEY) -> AttentiveAccount:
    return AttentiveAccount.objects.create(
        name="Shop", api_key=key, graphql_endpoint=f"{sandbox.url}/v1/graphql", rate_limit=500
    )


def signal(n: int) -> dict[str, Any]:
    identities = {"email": f"c{n}@example.com"} if n % 3 else {"contactKey": f"K-{n}"}
    return {
        "appKey": "shop-key",
        "sessionId": f"S-{n}",
        "identifiableAttributes": identities,
        "signalContent": {
            "signalType": "addToCart" if n % 2 else "order",
            "currency": "USD",
            "orderId": f"O-{n}",
            "productId": f"P-{n}",
            "productName": "Paint",
            "unitPrice": 9.5,
            "itemQuantity": 1,
        },
    }


def validated(setup: Path, user: User, *, mode: str = ImportMode.LIVE) -> SignalImport:
    name = f"{uuid.uuid4().hex}.ndjson"
    lines = [orjson.dumps(signal(n)) if n not in REJECTED else b"{broken" for n in range(TOTAL)]
    (setup / "imports" / name).write_bytes(b"\n".join(lines) + b"\n")
    signal_import = SignalImport.objects.create(
        created_by=user,
        app_key=make_app_key(key="shop-key"),
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


def received(sandbox: Sandbox) -> list[dict[str, Any]]:
    return list(reversed(sandbox.inspect(limit=10_000)["attentive_events"]))


def attentive_batches(signal_import: SignalImport) -> list[ImportBatch]:
    return list(signal_import.batches.filter(destination=Destination.ATTENTIVE).order_by("number"))


VALID = [n for n in range(TOTAL) if n not in REJECTED]


def _signals_of(batch: ImportBatch) -> list[int]:
    return [n for n in VALID if batch.first_signal <= n <= batch.last_signal]


def account_id(signal_import: SignalImport) -> int:
    assert signal_import.attentive_account_id is not None
    return signal_import.attentive_account_id


def test_one_file_goes_to_connect_and_to_attentive_each_signal_once(
    setup: Path, sender: User, sandbox: Sandbox
) -> None:
    target = account(sandbox)
    signal_import = sending.import_send(
        confirm_skip=len(REJECTED),
        signal_import=validated(setup, sender),
        user=sender,
        destinations=Destinations(attentive=target, event_types={"order": "Bought"}),
    )
    ledger = list(signal_import.batches.order_by("number"))
    connect = [b for b in ledger if b.destination == Destination.CONNECT]
    attentive = [b for b in ledger if b.destination == Destination.ATTENTIVE]
    assert [b.size for b in connect] == [5, 5, 1]
    assert [(b.first_signal, b.last_signal, b.size) for b in attentive] == [
        (0, 3, 4), (5, 8, 4), (9, 11, 3)
    ]  # fmt: skip
    assert {b.lane for b in attentive} == {attentive_sending.ATTENTIVE_LANE}
    assert signal_import.batches_total == len(ledger)

    connect_client = FakeClient()
    sending.import_send_run(import_id=signal_import.pk, client=connect_client)

    signal_import.refresh_from_db()
    assert signal_import.status == ImportStatus.COMPLETED
    assert (signal_import.sent, signal_import.failed, signal_import.unknown) == (11, 0, 0)
    assert (
        signal_import.attentive_sent,
        signal_import.attentive_failed,
        signal_import.attentive_unknown,
    ) == (11, 0, 0)
    events = received(sandbox)
    assert sorted(e["external_event_id"] for e in events) == sorted(
        event_id(signal_import.public_id, n, target.pk) for n in VALID
    )
    by_id = {e["external_event_id"]: e for e in events}
    first = by_id[event_id(signal_import.public_id, 0, target.pk)]
    assert first["type"] == "Bought"  # the marketer's name for order
    assert first["user"] == {"externalIdentifiers": {"clientUserId": "K-0"}}
    assert first["properties"]["orderId"] == "O-0"
    assert by_id[event_id(signal_import.public_id, 1, target.pk)]["type"] == "Added to cart"
    assert {b.state for b in attentive_batches(signal_import)} == {BatchState.SENT}
    assert all(b.event_outcomes == "S" * b.size for b in attentive_batches(signal_import))
    audit = signal_import.audit.get(action="import.completed")
    assert audit.detail["attentive_sent"] == 11


def test_attentive_only(setup: Path, sender: User, sandbox: Sandbox) -> None:
    signal_import = sending.import_send(
        confirm_skip=len(REJECTED),
        signal_import=validated(setup, sender),
        user=sender,
        destinations=Destinations(connect=False, attentive=account(sandbox)),
    )
    assert {b.destination for b in signal_import.batches.all()} == {Destination.ATTENTIVE}
    sending.import_send_run(import_id=signal_import.pk)
    signal_import.refresh_from_db()
    assert signal_import.status == ImportStatus.COMPLETED
    assert signal_import.attentive_sent == 11 and signal_import.sent == 0
    assert len(received(sandbox)) == 11
    # Attentive's events have no signalId: the page offers no signalIds download.
    from django.test import Client
    from django.urls import reverse

    client = Client()
    client.force_login(sender)
    page = client.get(reverse("signals:import_detail", args=[signal_import.public_id]))
    html = page.content.decode()
    assert "Attentive accepted 11 events" in html and "signalIds (CSV)" not in html
    assert "Sending to Connect" not in html


def test_a_test_import_is_never_sent_to_attentive(
    setup: Path, sender: User, sandbox: Sandbox
) -> None:
    signal_import = validated(setup, sender, mode=ImportMode.TEST)
    with pytest.raises(ImportRefused, match="Attentive has no test mode"):
        sending.import_send(
            confirm_skip=len(REJECTED),
            signal_import=signal_import,
            user=sender,
            destinations=Destinations(attentive=account(sandbox)),
        )
    assert not signal_import.batches.exists()


@pytest.mark.parametrize(
    ("destinations", "message"),
    [
        (Destinations(connect=False), "Choose where to send this file"),
        (Destinations(event_types={"order": "Bought, twice"}), "must not contain ,"),
    ],
)
def test_unusable_destinations_are_refused(
    setup: Path, sender: User, destinations: Destinations, message: str
) -> None:
    signal_import = validated(setup, sender)
    with pytest.raises(ImportRefused, match=message):
        sending.import_send(
            signal_import=signal_import,
            user=sender,
            destinations=destinations,
            confirm_skip=len(REJECTED),
        )
    assert not signal_import.batches.exists()


def test_passing_refusals_are_retried_and_no_event_doubles(
    setup: Path, sender: User, sandbox: Sandbox
) -> None:
    sandbox.faults(scope="attentive", rate_http_503=0.3, rate_http_429=0.2, retry_after=0, seed=7)
    signal_import = sending.import_send(
        confirm_skip=len(REJECTED),
        signal_import=validated(setup, sender),
        user=sender,
        destinations=Destinations(connect=False, attentive=account(sandbox)),
    )
    sending.import_send_run(import_id=signal_import.pk)
    signal_import.refresh_from_db()
    assert signal_import.attentive_sent == 11
    ids = [e["external_event_id"] for e in received(sandbox)]
    assert len(ids) == len(set(ids)) == 11
    assert max(b.attempts for b in attentive_batches(signal_import)) == 1  # retried per event


def test_graphql_errors_fail_the_event_and_say_why(
    setup: Path, sender: User, sandbox: Sandbox
) -> None:
    sandbox.faults(scope="attentive", rate_graphql_error=1.0, budget=2)
    signal_import = sending.import_send(
        confirm_skip=len(REJECTED),
        signal_import=validated(setup, sender),
        user=sender,
        destinations=Destinations(connect=False, attentive=account(sandbox)),
    )
    sending.import_send_run(import_id=signal_import.pk)
    signal_import.refresh_from_db()
    assert signal_import.status == ImportStatus.COMPLETED
    assert (signal_import.attentive_sent, signal_import.attentive_failed) == (9, 2)
    failed = [b for b in attentive_batches(signal_import) if b.state == BatchState.FAILED]
    assert failed and all("refused" in b.error for b in failed)
    assert sum(b.event_outcomes.count("F") for b in failed) == 2


def test_an_unknown_outcome_is_not_resent_until_ops_resend_it(
    setup: Path, sender: User, sandbox: Sandbox
) -> None:
    sandbox.faults(scope="attentive", rate_drop=1.0, budget=1)
    signal_import = sending.import_send(
        confirm_skip=len(REJECTED),
        signal_import=validated(setup, sender),
        user=sender,
        destinations=Destinations(connect=False, attentive=account(sandbox)),
    )
    sending.import_send_run(import_id=signal_import.pk)
    signal_import.refresh_from_db()
    assert (signal_import.attentive_sent, signal_import.attentive_unknown) == (10, 1)
    unknown = [b for b in attentive_batches(signal_import) if b.state == BatchState.UNKNOWN]
    assert len(unknown) == 1 and unknown[0].event_outcomes.count("U") == 1
    # The sandbox took the event, then dropped the connection before its answer: exactly
    # the case that must not be resent by itself.
    position = unknown[0].event_outcomes.index("U")
    dropped = event_id(
        signal_import.public_id, _signals_of(unknown[0])[position], account_id(signal_import)
    )
    assert len(received(sandbox)) == 11
    sending.import_send_run(import_id=signal_import.pk)  # a redelivered task: nothing sent
    assert len(received(sandbox)) == 11

    # Ops resend it (having looked): that event alone goes again, with the same id, so
    # Attentive's record shows it as the same event.
    sending.batch_resend(batch=unknown[0], user=sender, reason="not found in Attentive")
    sending.import_send_run(import_id=signal_import.pk)
    signal_import.refresh_from_db()
    assert (signal_import.attentive_sent, signal_import.attentive_unknown) == (11, 0)
    ids = [e["external_event_id"] for e in received(sandbox)]
    assert len(ids) == 12 and len(set(ids)) == 11
    assert [i for i in ids if ids.count(i) == 2] == [dropped, dropped]


def test_a_batch_left_in_flight_by_a_dead_run_becomes_unknown(
    setup: Path, sender: User, sandbox: Sandbox
) -> None:
    signal_import = sending.import_send(
        confirm_skip=len(REJECTED),
        signal_import=validated(setup, sender),
        user=sender,
        destinations=Destinations(connect=False, attentive=account(sandbox)),
    )
    first = attentive_batches(signal_import)[0]
    # A run died after two of its events were sent and recorded (a resend in progress).
    ImportBatch.objects.filter(pk=first.pk).update(state=BatchState.IN_FLIGHT, event_outcomes="SS")
    sending.import_send_run(import_id=signal_import.pk)
    first.refresh_from_db()
    assert first.state == BatchState.UNKNOWN
    assert first.event_outcomes == "SS" + "U" * (first.size - 2)
    assert "worker stopped" in first.error
    signal_import.refresh_from_db()
    assert signal_import.attentive_unknown == first.size - 2
    assert len(received(sandbox)) == 11 - first.size  # none of its events sent by this run


def test_cancel_stops_new_calls_and_keeps_what_was_sent(
    setup: Path, sender: User, sandbox: Sandbox, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.ATTENTIVE_CALLS_IN_FLIGHT = 1
    sandbox.faults(scope="attentive", latency_ms=150)
    signal_import = sending.import_send(
        confirm_skip=len(REJECTED),
        signal_import=validated(setup, sender),
        user=sender,
        destinations=Destinations(connect=False, attentive=account(sandbox)),
    )
    real_run_state = sending.run_state
    polls = [0]

    def cancel_on_the_third_look(import_id: int) -> tuple[str, bool]:
        # The marketer presses Cancel while the run waits for its calls (this thread: the
        # run looks at the import every quarter of a second).
        polls[0] += 1
        if polls[0] == 3:
            SignalImport.objects.filter(pk=import_id).update(cancel_requested=True)
        return real_run_state(import_id)

    monkeypatch.setattr(sending, "run_state", cancel_on_the_third_look)
    sending.import_send_run(import_id=signal_import.pk)
    signal_import.refresh_from_db()
    assert signal_import.status == ImportStatus.CANCELLED
    sent = len(received(sandbox))
    assert 1 <= sent < 11
    assert signal_import.attentive_sent == sent
    assert not signal_import.batches.filter(state=BatchState.IN_FLIGHT).exists()


def test_without_its_rate_limit_nothing_more_is_sent_and_the_page_says_why(
    setup: Path, sender: User, sandbox: Sandbox, settings: Any
) -> None:
    settings.RATE_LIMIT_REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    signal_import = sending.import_send(
        confirm_skip=len(REJECTED),
        signal_import=validated(setup, sender),
        user=sender,
        destinations=Destinations(connect=False, attentive=account(sandbox)),
    )
    sending.import_send_run(import_id=signal_import.pk)
    signal_import.refresh_from_db()
    assert signal_import.status == ImportStatus.FAILED
    assert "rate limit cannot be reached" in signal_import.error_message
    assert received(sandbox) == []
    assert not signal_import.batches.filter(state=BatchState.IN_FLIGHT).exists()
    assert signal_import.batches.filter(state=BatchState.PENDING).count() == 3


def test_the_send_form_offers_attentive_and_sends_with_the_marketers_names(
    setup: Path, sender: User, sandbox: Sandbox
) -> None:
    from django.test import Client
    from django.urls import reverse

    target = account(sandbox)
    signal_import = validated(setup, sender)
    client = Client()
    client.force_login(sender)
    page = client.get(reverse("signals:import_detail", args=[signal_import.public_id]))
    html = page.content.decode()
    assert 'name="attentive_account"' in html and "Shop (at most 500 a second)" in html
    assert 'name="event_type_order" value="Placed order"' in html
    assert "&quot;type&quot;: &quot;Placed order&quot;" in html  # the first signal, mapped

    response = client.post(
        reverse("signals:import_send", args=[signal_import.public_id]),
        {
            "destinations": "1",
            "to_connect": "1",
            "attentive_account": str(target.pk),
            "event_type_order": "Bought",
            "event_type_addToCart": "Added to cart",  # the default: not stored
            "confirm_skip": str(len(REJECTED)),
        },
    )
    assert response.status_code == 302
    signal_import.refresh_from_db()
    assert signal_import.status == ImportStatus.SENDING
    assert signal_import.send_to_connect and signal_import.attentive_account == target
    assert signal_import.attentive_event_types == {"order": "Bought"}
    assert {b.destination for b in signal_import.batches.all()} == {
        Destination.CONNECT,
        Destination.ATTENTIVE,
    }


def test_the_send_form_of_a_test_import_says_attentive_waits_for_live(
    setup: Path, sender: User, sandbox: Sandbox
) -> None:
    from django.test import Client
    from django.urls import reverse

    target = account(sandbox)
    signal_import = validated(setup, sender, mode=ImportMode.TEST)
    client = Client()
    client.force_login(sender)
    page = client.get(reverse("signals:import_detail", args=[signal_import.public_id]))
    assert "Attentive has no test mode" in page.content.decode()
    response = client.post(
        reverse("signals:import_send", args=[signal_import.public_id]),
        {"destinations": "1", "to_connect": "1", "attentive_account": str(target.pk)},
        follow=True,
    )
    assert "Attentive has no test mode" in response.content.decode()
    assert not signal_import.batches.exists()


class _StalePermits(FileRateLimiter):
    """The file limiter's own permits, the first `stale` of them handed over a second
    after their moment: what a machine too busy to run the permits' thread does."""

    def __init__(self, folder: Path, *, stale: int) -> None:
        super().__init__(folder)
        self.stale = stale

    def permit(self, key: str, limit: float, **kwargs: Any) -> float:
        moment = super().permit(key, limit, **kwargs)
        if self.stale > 0:
            self.stale -= 1
            return moment - 1.0
        return moment


@pytest.mark.parametrize(("stale", "given_up"), [(2, 2), (1_000, 3 * MAX_GIVE_UPS)])
def test_a_call_kept_from_its_permit_takes_a_new_one_and_leaves_once(
    setup: Path, sender: User, sandbox: Sandbox, stale: int, given_up: int
) -> None:
    # A stale permit would send the call bunched with the next ones: it takes a new
    # permit, nothing sent meanwhile; on a machine never on time, MAX_GIVE_UPS times at
    # most (then it goes late rather than never): each event arrives once either way.
    signal_import = validated(setup, sender)
    signal_import.attentive_account = account(sandbox)
    calls = attentive_sending._Calls(
        signal_import, limiter=_StalePermits(setup / "limits", stale=stale)
    )
    ids = [str(uuid.uuid4()) for _ in range(3)]
    try:
        futures = [
            calls.submit(
                {
                    "type": "Order",
                    "user": {"email": f"c{n}@example.com"},
                    "properties": {"n": n},
                    "externalEventId": external_id,
                }
            )
            for n, external_id in enumerate(ids)
        ]
        results = [future.result(timeout=30) for future in futures]
    finally:
        calls.close()
    assert [r.outcome if r else None for r in results] == [Outcome.SENT] * 3
    # (A thread's first call builds its client, which may itself make it late: more.)
    assert given_up <= calls.late_permits <= 3 * MAX_GIVE_UPS
    assert sorted(e["external_event_id"] for e in received(sandbox)) == sorted(ids)


def test_the_send_form_says_what_attentive_would_refuse_where_the_signal_has_it(
    setup: Path, sender: User, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    from django.test import Client
    from django.urls import reverse

    account(sandbox)
    signal_import = validated(setup, sender)
    # Rewrite the file: signal 2 names a custom attribute Attentive refuses as a property
    # key; every signal happened long ago (no journey fires for an event 12 hours old).
    lines = []
    for n in range(TOTAL):
        if n in REJECTED:
            lines.append(b"{broken")
            continue
        value = signal(n)
        value["signalContent"]["signalTimestamp"] = "2021-03-30T14:38:29Z"
        if n == 2:
            value["signalContent"]["signalCustomAttributes"] = [
                {"name": "ok", "value": "1"},
                {"name": "gift's wrap", "value": "yes"},
            ]
        lines.append(orjson.dumps(value))
    (setup / "imports" / signal_import.stored_name).write_bytes(b"\n".join(lines) + b"\n")
    client = Client()
    client.force_login(sender)
    url = reverse("signals:import_detail", args=[signal_import.public_id])
    html = client.get(url).content.decode()
    assert "As Attentive events, these 11 signals would meet:" in html
    assert "<code>signalContent.signalCustomAttributes[]</code> · 1 signal:" in html
    assert "gift&#x27;s wrap" in html and "(signal 2)" in html
    assert "<code>signalContent.signalTimestamp</code> · 11 signals:" in html
    assert "Attentive would refuse the events of 1 signal:" in html

    # Only the first SCAN_SIGNALS are checked, and the form says so.
    monkeypatch.setattr(attentive_sending, "SCAN_SIGNALS", 2)
    html = client.get(url).content.decode()
    assert "As Attentive events, the first 2 of the 11 signals would meet:" in html
    assert "gift&#x27;s wrap" not in html  # signal 2 is the third valid one


class _PauseOutOfReach(FileRateLimiter):
    """The file limiter, whose store cannot be written when a 429 asks for a pause."""

    def _pause(self, name: str, seconds: float) -> float:
        if seconds > 0:
            raise RateLimitUnavailable("the rate limit's store cannot be written")
        return super()._pause(name, seconds)


def test_a_429_whose_pause_cannot_be_set_stops_the_run_and_leaves_no_call_waiting(
    setup: Path, sender: User, sandbox: Sandbox
) -> None:
    # Attentive answers 429 (it took nothing); the pause for every worker cannot be set:
    # the call ends as not sent, the run stops sending, nothing waits forever.
    sandbox.faults(scope="attentive", rate_http_429=1.0, retry_after=1)
    signal_import = validated(setup, sender)
    signal_import.attentive_account = account(sandbox)
    calls = attentive_sending._Calls(signal_import, limiter=_PauseOutOfReach(setup / "limits"))
    try:
        futures = [
            calls.submit({"type": "Order", "user": {"email": f"c{n}@example.com"}})
            for n in range(3)
        ]
        results = [future.result(timeout=30) for future in futures]
    finally:
        calls.close()
    assert results == [None, None, None]
    assert isinstance(calls.broken, RateLimitUnavailable)
    assert calls.stop.is_set()
    assert received(sandbox) == []
