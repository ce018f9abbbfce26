"""The marketer's whole flow in a real Chromium against the real parts: upload a file, see
a field error in the preview, send a test import, watch progress reach 100 %, find the
import in the history. The web side is pytest-django's live server; validation and
sending run in a real Celery worker process (Redis, PostgreSQL) and the signals go to the
sandbox process, which must end up holding every valid signal exactly once."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Error as PlaywrightError

from connectadmin.models import ConnectAccount, Region
from signals_app.models import ImportStatus, SignalImport
from tests.browser.test_pages import ARTIFACTS, browser, page  # noqa: F401  (fixtures)
from tests.factories import make_app_key
from tests.integration.conftest import Workers
from tests.sandbox.support import ULTIMATE_EMAIL, ULTIMATE_KEY, Sandbox
from tests.test_views import make_user

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)

APP_KEY = "browser-flow-appkey"
WAIT_MS = 60_000


SIGNALS = 2400  # five batches: enough to watch the progress move


def write_file(folder: Path) -> Path:
    """Order signals; signal 7 lacks its currency (a field error)."""
    lines = []
    for index in range(SIGNALS):
        content: dict[str, Any] = {
            "signalType": "order",
            "currency": "USD",
            "orderId": f"ORD-{index}",
            "orderValue": 10.5 + index,
        }
        if index == 7:
            del content["currency"]
        lines.append(
            json.dumps(
                {
                    "appKey": APP_KEY,
                    "identifiableAttributes": {"email": f"shopper{index}@example.com"},
                    "signalContent": content,
                }
            )
        )
    path = folder / "orders.ndjson"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_marketer_uploads_previews_sends_a_test_import_and_finds_it_in_history(
    page: Any,  # noqa: F811
    workers: Workers,
    sandbox: Sandbox,
    tmp_path: Path,
) -> None:
    workers.start()
    account = ConnectAccount.objects.create(
        name="Sandbox (browser flow)",
        region=Region.SANDBOX,
        graphql_endpoint=f"{sandbox.url}/graphql",
        api_key=ULTIMATE_KEY,
        connect_user_email=ULTIMATE_EMAIL,
    )
    make_app_key(account=account, key=APP_KEY, label="Shop", tier="ultimate")
    make_user("mia", "marketer")
    upload = write_file(tmp_path)

    page.goto("/login/")
    page.get_by_label("User name").fill("mia")
    page.get_by_label("Password").fill("mia-pass")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_selector("text=Sign out")

    page.goto("/imports/new")
    key_option = page.locator("select[name=app_key] option", has_text=APP_KEY).first
    page.get_by_label("Application key").select_option(value=key_option.get_attribute("value"))
    page.locator("input[type=file]").set_input_files(str(upload))
    page.locator("main").get_by_role("button", name=re.compile("Upload")).click()

    # The preview appears once the worker has validated the file.
    page.wait_for_selector("text=Ready to send", timeout=WAIT_MS)
    page.wait_for_selector("text=currency is required for order signals", timeout=WAIT_MS)
    page.screenshot(path=ARTIFACTS / "flow-1-preview.png", full_page=True)

    # Each createSignals call takes a while, so the polled progress can be seen moving.
    sandbox.faults(latency_ms=700)
    page.get_by_role("button", name="Send as test").click()
    seen: list[int] = []
    deadline = time.monotonic() + WAIT_MS / 1000
    while time.monotonic() < deadline:
        try:
            if page.locator(".meta .status-completed").count():
                break
            # All at once and without waiting: the bar may be swapped out between two calls.
            shown = page.locator(".pct").all_inner_texts()
        except PlaywrightError:
            # The page reloads itself when the phase changes (sending -> completed): a
            # look that falls on the reload looks again.
            time.sleep(0.3)
            continue
        if shown:
            seen.append(int(shown[0].strip(" %")))
            if len(seen) == 1:
                page.screenshot(path=ARTIFACTS / "flow-2-sending.png", full_page=True)
        time.sleep(0.3)
    page.wait_for_selector(".meta .status-completed", timeout=WAIT_MS)
    page.screenshot(path=ARTIFACTS / "flow-3-completed.png", full_page=True)
    assert any(0 <= p < 100 for p in seen), seen  # the bar was seen part-way
    assert seen == sorted(seen), seen  # and only ever moved forward
    signal_import = SignalImport.objects.get()
    assert signal_import.status == ImportStatus.COMPLETED
    valid = SIGNALS - 1
    assert (signal_import.sent, signal_import.accepted, signal_import.rejected) == (valid, valid, 1)
    assert signal_import.batches_total == 5

    # The sandbox holds each of the 39 valid signals once, as test signals.
    received = sandbox.inspect(limit=10_000)["signals"]
    contents = [
        json.loads(s["content"]) if isinstance(s["content"], str) else s["content"]
        for s in received
    ]
    order_ids = sorted(content["orderId"] for content in contents)
    assert order_ids == sorted(f"ORD-{i}" for i in range(SIGNALS) if i != 7)
    assert sandbox.inspect(limit=1)["counts"]["by_test"] == {"true": valid}

    page.goto("/history")
    row = page.locator("tr", has_text="orders.ndjson")
    assert row.count() == 1
    assert "Completed" in row.inner_text()
    page.screenshot(path=ARTIFACTS / "flow-4-history.png", full_page=True)
