"""Issue 13's browser test: in a real Chromium, a marketer uploads a small file of Connect
signals as a live import and sends it to Connect and to an Attentive account at once; the
sandbox then holds each valid signal once as a signal and once as an event (by its
externalEventId), and the history shows both destinations; and a file of Attentive
custom events sent to Attentive alone. Web: pytest-django's live
server; validation and sending: a real Celery worker process (Redis, PostgreSQL)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from connectadmin.models import AttentiveAccount, ConnectAccount, Region
from signals_app.attentive_client import event_id
from signals_app.models import Destination, ImportStatus, SignalImport
from tests.browser.test_pages import ARTIFACTS, browser, page, sign_in  # noqa: F401
from tests.factories import make_app_key
from tests.integration.conftest import Workers
from tests.sandbox.support import ATTENTIVE_KEY, ULTIMATE_EMAIL, ULTIMATE_KEY, Sandbox
from tests.test_views import make_user

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)

APP_KEY = "attentive-flow-appkey"
WAIT_MS = 60_000
SIGNALS = 30  # signal 4 lacks its currency: 29 valid


def shop_journeys(sandbox: Sandbox) -> AttentiveAccount:
    return AttentiveAccount.objects.create(
        name="Shop journeys",
        api_key=ATTENTIVE_KEY,
        graphql_endpoint=f"{sandbox.url}/v1/graphql",
        rate_limit=150,
    )


def write_file(folder: Path) -> Path:
    lines = []
    for index in range(SIGNALS):
        content: dict[str, Any] = {
            "signalType": "addToCart" if index % 2 else "order",
            "currency": "USD",
            "orderId": f"ORD-{index}",
            "productId": f"P-{index}",
            "productName": "Paint",
            "unitPrice": 9.5,
            "itemQuantity": 1,
        }
        if index == 4:
            del content["currency"]
        identities = {"email": f"shopper{index}@example.com"}
        lines.append(
            json.dumps(
                {"appKey": APP_KEY, "identifiableAttributes": identities, "signalContent": content}
            )
        )
    path = folder / "carts.ndjson"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_marketer_sends_one_file_to_connect_and_attentive_and_sees_both_in_history(
    page: Any,  # noqa: F811
    workers: Workers,
    sandbox: Sandbox,
    tmp_path: Path,
) -> None:
    workers.start()
    account = ConnectAccount.objects.create(
        name="Sandbox (attentive flow)",
        region=Region.SANDBOX,
        graphql_endpoint=f"{sandbox.url}/graphql",
        api_key=ULTIMATE_KEY,
        connect_user_email=ULTIMATE_EMAIL,
    )
    make_app_key(account=account, key=APP_KEY, label="Shop", tier="ultimate")
    attentive = shop_journeys(sandbox)
    make_user("mia", "marketer", send_live=True)
    upload = write_file(tmp_path)

    sign_in(page, "mia")

    page.goto("/imports/new")
    key_option = page.locator("select[name=app_key] option", has_text=APP_KEY).first
    page.get_by_label("Application key").select_option(value=key_option.get_attribute("value"))
    page.check("input[name=mode][value=live]")
    page.locator("input[type=file]").set_input_files(str(upload))
    page.locator("main").get_by_role("button", name=re.compile("Upload")).click()
    page.wait_for_selector("text=Ready to send", timeout=WAIT_MS)

    page.get_by_label("Attentive, as custom events").select_option(value=str(attentive.pk))
    page.get_by_text("Event names in Attentive").click()
    page.get_by_label("Order", exact=True).fill("Bought")
    page.locator("input[name=confirm_skip]").check()
    page.screenshot(path=ARTIFACTS / "attentive-1-send-form.png", full_page=True)
    page.get_by_role("button", name=re.compile("Send 29 signals live")).click()
    page.wait_for_selector(".meta .status-completed", timeout=WAIT_MS)
    page.screenshot(path=ARTIFACTS / "attentive-2-completed.png", full_page=True)
    assert page.get_by_text("Connect accepted 29 signals; Attentive accepted 29 events").count()

    signal_import = SignalImport.objects.get()
    assert signal_import.status == ImportStatus.COMPLETED
    assert (signal_import.accepted, signal_import.attentive_sent) == (29, 29)
    assert set(signal_import.batches.values_list("destination", flat=True)) == {
        Destination.CONNECT,
        Destination.ATTENTIVE,
    }
    valid = [i for i in range(SIGNALS) if i != 4]
    inspected = sandbox.inspect(limit=10_000)
    order_ids = sorted(
        (json.loads(s["content"]) if isinstance(s["content"], str) else s["content"])["orderId"]
        for s in inspected["signals"]
    )
    assert order_ids == sorted(f"ORD-{i}" for i in valid)
    events = inspected["attentive_events"]
    assert sorted(e["external_event_id"] for e in events) == sorted(
        event_id(signal_import.public_id, i, attentive.pk) for i in valid
    )
    assert {e["type"] for e in events} == {"Bought", "Added to cart"}
    assert inspected["counts"]["attentive_duplicate_event_ids"] == 0

    page.goto("/history")
    rows = page.locator("tbody tr")
    texts = rows.all_inner_texts()
    assert any("carts.ndjson" in t and "to Connect" in t and "Completed" in t for t in texts)
    assert any("Attentive “Shop journeys”" in t and "29" in t for t in texts)
    page.screenshot(path=ARTIFACTS / "attentive-3-history.png", full_page=True)


def test_a_marketer_sends_a_file_of_custom_events_to_attentive(
    page: Any,  # noqa: F811
    workers: Workers,
    sandbox: Sandbox,
    tmp_path: Path,
) -> None:
    workers.start()
    attentive = shop_journeys(sandbox)
    make_user("mia", "marketer", send_live=True)
    upload = tmp_path / "shipments.ndjson"
    events = [
        {
            "type": "Order Shipped",
            "user": {"email": f"shopper{n}@example.com"},
            "properties": {"orderId": f"ORD-{n}"},
            **({"externalEventId": f"ship-{n}"} if n % 2 else {}),
        }
        for n in range(12)
    ]
    events[3]["type"] = "Order (shipped)"  # a forbidden character: rejected
    upload.write_text("".join(json.dumps(e) + "\n" for e in events))

    sign_in(page, "mia")

    page.goto("/imports/new")
    page.check("input[name=kind][value=events]")
    # The app key and test/live choices are for signals: hidden for events, and what the
    # form asks for first is the account.
    assert not page.get_by_label("Application key").is_visible()
    page.locator("main").get_by_role("button", name=re.compile("Upload")).click()
    assert page.evaluate("document.activeElement.name") == "attentive_account"
    page.get_by_label("Attentive account").select_option(value=str(attentive.pk))
    page.locator("input[type=file]").set_input_files(str(upload))
    page.locator("main").get_by_role("button", name=re.compile("Upload")).click()
    page.wait_for_selector("text=Ready to send", timeout=WAIT_MS)
    assert page.get_by_text("11 valid events ready; 1 event rejected.").count()
    page.locator("input[name=confirm_skip]").check()
    page.screenshot(path=ARTIFACTS / "attentive-4-events-send-form.png", full_page=True)
    page.get_by_role("button", name="Send 11 events to Attentive").click()
    page.wait_for_selector(".meta .status-completed", timeout=WAIT_MS)
    page.screenshot(path=ARTIFACTS / "attentive-5-events-completed.png", full_page=True)
    assert page.get_by_text("Attentive accepted 11 events (1 rejected event skipped).").count()

    signal_import = SignalImport.objects.get()
    inspected = sandbox.inspect(limit=10_000)
    assert inspected["signals"] == []  # nothing went to Connect
    assert sorted(e["external_event_id"] for e in inspected["attentive_events"]) == sorted(
        f"ship-{n}" if n % 2 else event_id(signal_import.public_id, n, attentive.pk)
        for n in range(12)
        if n != 3
    )

    page.goto("/history")
    texts = page.locator("tbody tr").all_inner_texts()
    assert any("shipments.ndjson" in t and "custom events" in t and "Completed" in t for t in texts)
