"""A file of Attentive custom events imported and sent from the browser (issue 13): the
upload form's choice of file kind and Attentive account, the events checked by
Attentive's rules in the same preview, and the send that takes each valid event as
written (its own externalEventId kept, else one made from the import and its place) to
a real sandbox process, each event once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from connectadmin.models import AttentiveAccount
from signals_app.attentive_client import event_id
from signals_app.models import (
    BatchState,
    Destination,
    ImportFinding,
    ImportKind,
    ImportMode,
    ImportStatus,
    SignalImport,
)
from signals_app.services import sending, validation
from signals_app.services.errors import ImportRefused
from signals_app.services.sending import Destinations
from tests.factories import make_app_key
from tests.sandbox.support import Sandbox
from tests.test_attentive_sending import (  # noqa: F401 (fixtures)
    account,
    received,
    sandbox,
    sender,
    setup,
)
from tests.test_views import make_user

OWN_ID = "4efb3e85-26f5-5299-bf2d-b869844c0914"
EVENTS = [
    # 0: valid, its own externalEventId (kept), properties as a JSON-encoded string
    {
        "type": "Order Shipped",
        "user": {"email": "jane@example.com"},
        "properties": '{"orderId": "A-1"}',
        "externalEventId": OWN_ID,
    },
    # 1: no user: an error, never sent
    {"type": "Order Shipped", "properties": {"orderId": "A-2"}},
    # 2: valid, no externalEventId (one is made), a phone and an old occurredAt (warning)
    {
        "type": "Added to cart",
        "user": {"phone": "+13115552368"},
        "properties": {"productId": "P-1"},
        "occurredAt": "2021-03-30T14:38:29+00:00",
    },
    # 3: a forbidden character in the type: an error
    {"type": "Order (shipped)", "user": {"email": "joe@example.com"}},
]


def events_file(name: str = "events.ndjson") -> SimpleUploadedFile:
    content = b"".join(orjson.dumps(e, option=orjson.OPT_APPEND_NEWLINE) for e in EVENTS)
    return SimpleUploadedFile(name, content, content_type="application/x-ndjson")


def upload(client: Client, **fields: Any) -> Any:
    return client.post(
        reverse("signals:import_new"),
        {"kind": "events", "mode": "test", "idempotency_key": "t", "file": events_file(), **fields},
    )


@pytest.fixture
def browser(sender: User) -> Client:  # noqa: F811
    client = Client()
    client.force_login(sender)
    return client


@pytest.fixture
def target(setup: Path, sandbox: Sandbox) -> AttentiveAccount:  # noqa: F811
    """The Attentive account "Shop" on the sandbox, its files under the test's folder."""
    return account(sandbox)


def checked(browser: Client, target: Any) -> SignalImport:
    """EVENTS uploaded for `target` from the browser, then validated (the task's body)."""
    response = upload(browser, attentive_account=target.pk)
    assert response.status_code == 302, response.content.decode()[:2000]
    signal_import = SignalImport.objects.get()
    validation.import_validate(import_id=signal_import.pk)
    signal_import.refresh_from_db()
    return signal_import


def test_the_upload_form_offers_events_for_an_attentive_account(
    setup: Path,  # noqa: F811
    browser: Client,
    sandbox: Sandbox,  # noqa: F811
) -> None:
    page = browser.get(reverse("signals:import_new")).content.decode()
    assert 'name="kind" value="events"' not in page  # no Attentive account yet
    account(sandbox)
    page = browser.get(reverse("signals:import_new")).content.decode()
    assert 'name="kind" value="events"' in page and ">Shop</option>" in page


def test_an_events_file_is_checked_by_attentives_rules_and_sent_as_written(
    browser: Client,
    target: AttentiveAccount,
    sandbox: Sandbox,  # noqa: F811
) -> None:
    signal_import = checked(browser, target)
    # Attentive has no test mode: the import is live, with no app key and no Connect.
    assert (signal_import.kind, signal_import.mode) == (ImportKind.EVENTS, ImportMode.LIVE)
    assert signal_import.app_key is None and signal_import.attentive_account == target
    assert not signal_import.send_to_connect
    assert signal_import.status == ImportStatus.VALIDATED
    assert (signal_import.signals, signal_import.valid, signal_import.rejected) == (4, 2, 2)
    findings = set(
        ImportFinding.objects.filter(signal_import=signal_import).values_list(
            "signal", "path", "severity"
        )
    )
    assert any(signal == 1 and path.startswith("user") for signal, path, _ in findings), findings
    assert any(signal == 3 and path == "type" for signal, path, _ in findings), findings
    assert any(signal == 2 and path == "occurredAt" for signal, path, _ in findings), findings

    page = browser.get(reverse("signals:import_detail", args=[signal_import.public_id]))
    html = page.content.decode()
    assert "custom events for Attentive “Shop”" in html
    assert "2 valid events ready; 2 events rejected." in html
    assert "Rejected events" in html and "Valid events only" in html
    assert "Send 2 events to Attentive" in html
    assert 'name="to_connect"' not in html and "Fixes we can make" not in html
    assert "The first event as Attentive receives it" in html and OWN_ID in html

    response = browser.post(
        reverse("signals:import_send", args=[signal_import.public_id]),
        {"destinations": "1", "attentive_account": str(target.pk), "confirm_skip": "2"},
    )
    assert response.status_code == 302
    signal_import.refresh_from_db()
    assert signal_import.status == ImportStatus.SENDING
    assert {b.destination for b in signal_import.batches.all()} == {Destination.ATTENTIVE}
    sending.import_send_run(import_id=signal_import.pk)

    signal_import.refresh_from_db()
    assert signal_import.status == ImportStatus.COMPLETED
    assert (
        signal_import.attentive_sent,
        signal_import.attentive_failed,
        signal_import.attentive_unknown,
    ) == (2, 0, 0)
    assert {b.state for b in signal_import.batches.all()} == {BatchState.SENT}
    events = {e["external_event_id"]: e for e in received(sandbox)}
    made = event_id(signal_import.public_id, 2, target.pk)
    assert sorted(events) == sorted([OWN_ID, made])
    assert events[OWN_ID]["type"] == "Order Shipped"
    assert events[OWN_ID]["properties"] == {"orderId": "A-1"}
    assert events[made]["user"] == {"phone": "+13115552368"}
    assert events[made]["occurred_at"] == "2021-03-30T14:38:29Z"

    page = browser.get(reverse("signals:import_detail", args=[signal_import.public_id]))
    html = page.content.decode()
    assert "Attentive accepted 2 events (2 rejected events skipped)." in html
    assert "Started sending 2 events live to the Attentive account “Shop”" in html
    assert "of custom events for the Attentive account “Shop”, to send live." in html
    history = browser.get(reverse("signals:history")).content.decode()
    assert "events.ndjson" in history and "custom events" in history

    # The command line's last word on it (import_signals --import ID --wait) counts events.
    from io import StringIO

    from django.core.management import CommandError

    from signals_app.management.commands.import_signals import Command

    out = StringIO()
    with pytest.raises(CommandError, match="not every event was accepted"):  # 2 rejected
        Command(stdout=out, stderr=StringIO())._final(signal_import)
    assert out.getvalue() == (
        "completed: 4 events, 2 valid, 2 rejected; Attentive: 2 accepted, 0 refused, 0 unknown\n"
    )


def test_events_go_to_attentive_only_and_live_only(
    browser: Client,
    target: AttentiveAccount,
    sender: User,  # noqa: F811
) -> None:
    # No account chosen: a form error naming it, nothing stored.
    response = upload(browser)
    assert response.status_code == 400
    assert "Choose the Attentive account these events are for." in response.content.decode()
    assert not SignalImport.objects.exists()

    # A marketer who may send test imports only cannot import events at all.
    tester = make_user("tess", "marketer")
    client = Client()
    client.force_login(tester)
    response = upload(client, attentive_account=target.pk)
    assert response.status_code == 400
    assert "Attentive has no test mode" in response.content.decode()
    assert not SignalImport.objects.exists()

    signal_import = checked(browser, target)
    with pytest.raises(ImportRefused, match="Attentive account only"):
        sending.import_send(
            signal_import=signal_import,
            user=sender,
            confirm_skip=2,
            destinations=Destinations(connect=True, attentive=target),
        )
    assert not signal_import.batches.exists()


def test_a_file_is_for_an_app_key_or_an_attentive_account_not_both(
    setup: Path,  # noqa: F811
    sender: User,  # noqa: F811
    sandbox: Sandbox,  # noqa: F811
) -> None:
    from signals_app.services.upload import import_create

    with pytest.raises(ImportRefused, match="not both"):
        import_create(
            user=sender,
            app_key=make_app_key(),
            attentive_account=account(sandbox),
            mode=ImportMode.LIVE,
            upload=events_file(),
            original_name="events.ndjson",
        )
    assert not SignalImport.objects.exists()


def test_events_refused_whole_raise_an_alert_for_the_attentive_account(
    setup: Path,  # noqa: F811
    sender: User,  # noqa: F811
    browser: Client,
    sandbox: Sandbox,  # noqa: F811
) -> None:
    from connectadmin import alerts
    from connectadmin.models import Alert

    # A key Attentive does not know: every event refused (401).
    target = account(sandbox, key="not-a-known-key")
    signal_import = checked(browser, target)
    sending.import_send(signal_import=signal_import, user=sender, confirm_skip=2)
    sending.import_send_run(import_id=signal_import.pk)
    signal_import.refresh_from_db()
    assert (signal_import.attentive_sent, signal_import.attentive_failed) == (0, 2)
    assert signal_import.outcome.key == "refused"
    assert received(sandbox) == []

    alerts.import_ended(signal_import.pk)
    alert = Alert.objects.get()
    assert alert.subject == f"attentive:{target.pk}"
    assert alert.subject_label == "Imports to Attentive “Shop”"
    assert alert.title == f"Import #{signal_import.pk} (events.ndjson, live): refused by attentive"
    assert alert.detail.startswith("Attentive refused all 2 events.")


def test_an_events_csv_is_read_as_events_and_sent_with_its_columns_nested(
    browser: Client,
    target: AttentiveAccount,
    sender: User,  # noqa: F811
    sandbox: Sandbox,  # noqa: F811
) -> None:
    csv_text = (
        "type,externalEventId,user.email,properties.orderId,properties.total\n"
        f"Order Shipped,{OWN_ID},jane@example.com,A-1,98.44\n"
        "Order Shipped,,,A-2,1\n"  # no user: rejected
    )
    response = browser.post(
        reverse("signals:import_new"),
        {
            "kind": "events",
            "attentive_account": target.pk,
            "idempotency_key": "csv",
            "file": SimpleUploadedFile("events.csv", csv_text.encode(), content_type="text/csv"),
        },
    )
    assert response.status_code == 302
    signal_import = SignalImport.objects.get()
    validation.import_validate(import_id=signal_import.pk)
    signal_import.refresh_from_db()
    assert signal_import.file_format == "events-csv"
    assert (signal_import.valid, signal_import.rejected) == (1, 1)
    sending.import_send(signal_import=signal_import, user=sender, confirm_skip=1)
    sending.import_send_run(import_id=signal_import.pk)
    (event,) = received(sandbox)
    assert event["external_event_id"] == OWN_ID
    assert event["user"] == {"email": "jane@example.com"}
    assert event["properties"] == {"orderId": "A-1", "total": "98.44"}  # CSV cells are text


def test_a_send_of_events_without_an_account_is_refused_in_words(
    browser: Client,
    target: AttentiveAccount,
    sender: User,  # noqa: F811
) -> None:
    signal_import = checked(browser, target)
    response = browser.post(
        reverse("signals:import_send", args=[signal_import.public_id]),
        {"destinations": "1", "attentive_account": "", "confirm_skip": "2"},
        follow=True,
    )
    assert response.status_code == 200
    assert "goes to an Attentive account only: choose one" in response.content.decode()
    signal_import.refresh_from_db()
    assert signal_import.attentive_account == target and not signal_import.batches.exists()
