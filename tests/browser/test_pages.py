"""The main pages in a real Chromium (Playwright), against pytest-django's live server.

Each test signs in through the login form, checks what a person would look for, and
screenshots the page into test-artifacts/ (git-ignored) for a human to look at.
Chromium is Debian's (/usr/bin/chromium); Playwright's own browser download is never used.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from connectadmin.celery import app as celery_app
from signals_app.models import AuditEvent, BatchState, ImportBatch, ImportStatus, SignalImport
from tests.conftest import require
from tests.factories import make_app_key
from tests.test_views import add_batches, add_rejected, make_import, make_user

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    require(os.path.exists(CHROMIUM), f"Chromium at {CHROMIUM} (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    # Playwright's sync API keeps an event loop on this thread; the tests' own ORM calls are
    # still synchronous, so Django's async-safety guard must not stop them.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            yield chromium
            chromium.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def strict_page(browser: Any, live_server: Any) -> Iterator[Any]:
    """Under the app's own Content-Security-Policy: anything it refuses fails the test."""
    context = browser.new_context(viewport={"width": 1400, "height": 900}, base_url=live_server.url)
    context.set_default_timeout(10_000)
    tab = context.new_page()
    refused: list[str] = []
    tab.on(
        "console",
        lambda message: (
            refused.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
    yield tab
    context.close()
    assert not refused, f"the policy refused: {refused[:3]}"


@pytest.fixture
def page(browser: Any, live_server: Any) -> Iterator[Any]:
    # bypass_csp: Playwright's wait_for_function evaluates its predicate with eval, which
    # the app's Content-Security-Policy refuses; test_every_page checks the policy itself.
    context = browser.new_context(
        viewport={"width": 1280, "height": 900}, base_url=live_server.url, bypass_csp=True
    )
    context.set_default_timeout(10_000)
    page = context.new_page()
    yield page
    context.close()


def sign_in(page: Any, username: str, *, shot: str | None = None) -> None:
    page.goto("/login/")
    page.get_by_label("User name").fill(username)
    page.get_by_label("Password").fill(f"{username}-pass")
    if shot:
        page.screenshot(path=ARTIFACTS / shot, full_page=True)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_selector("text=Sign out")


def test_login_and_upload_a_file_then_see_its_field_errors(
    page: Any, tmp_path: Path, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.IMPORTS_DIR = tmp_path / "imports"
    # Validation runs in the web process here: the test needs no worker.
    monkeypatch.setitem(celery_app.conf, "task_always_eager", True)
    make_user("mia", "marketer")
    app_key = make_app_key(key="shop-key", tier="premium")
    signals = [
        {
            "appKey": "shop-key",
            "identifiableAttributes": {"email": "ana@example.com"},
            "signalContent": {"signalType": "order", "currency": "EUR", "orderId": "o-1"},
        },
        {
            "appKey": "shop-key",
            "identifiableAttributes": {"email": "ben@example.com"},
            "signalContent": {"signalType": "order", "orderId": "o-2"},
        },
    ]
    upload = tmp_path / "orders.ndjson"
    upload.write_text("\n".join(json.dumps(s) for s in signals) + "\n")

    sign_in(page, "mia", shot="01-login.png")
    page.get_by_role("link", name="Imports", exact=True).click()
    page.get_by_role("link", name="New import").first.click()
    # Submitted empty, the form says what is missing where (it used to do nothing).
    page.get_by_role("button", name="Upload and check").click()
    missing = page.evaluate(
        "[document.activeElement.name, document.activeElement.validationMessage]"
    )
    assert missing[0] == "app_key" and missing[1]
    page.get_by_label("Application key").select_option(value=str(app_key.pk))
    page.get_by_role("button", name="Upload and check").click()
    assert page.evaluate("document.activeElement.type") == "file"
    page.get_by_label("File to check").set_input_files(upload)
    assert page.locator("input[value=live]").is_disabled()
    page.screenshot(path=ARTIFACTS / "02-upload.png", full_page=True)
    page.get_by_role("button", name="Upload and check").click()

    page.wait_for_selector("#preview")
    rejected = page.locator("article.signal")
    assert rejected.count() == 1
    assert not rejected.first.is_visible()  # folded under its heading, after the rest
    page.locator("#rejected summary").click()
    marked = page.locator('.jl-error[data-path="signalContent.currency"]')
    assert marked.is_visible()
    assert "missing" in marked.inner_text()
    assert page.get_by_role("button", name="Send as test").is_visible()
    page.screenshot(path=ARTIFACTS / "03-import-preview-uploaded.png", full_page=True)


def test_the_preview_of_a_checked_file(page: Any) -> None:
    user = make_user("mia", "marketer")
    signal_import = make_import(user, original_name="spring-campaign.csv", contact_key_only=3)
    for signal in (3, 7, 12):
        add_rejected(signal_import, signal=signal, line=signal + 2)
    sign_in(page, "mia")
    page.goto(f"/imports/{signal_import.public_id}")
    assert page.locator("#preview").get_by_text("Rejected", exact=True).is_visible()
    page.locator("#rejected summary").click()
    first_error = page.locator('.jl-error[data-path="identifiableAttributes.email"]').first
    assert first_error.is_visible()
    assert "Not an e-mail." in first_error.inner_text()
    page.screenshot(path=ARTIFACTS / "04-import-preview.png", full_page=True)

    # The filter swaps the list in place (htmx) and keeps the address bookmarkable.
    page.locator("#f-code").select_option("required")
    page.locator("#rejected").get_by_role("button", name="Filter").click()
    page.wait_for_url("**code=required**")
    assert page.locator("article.signal").count() == 3


def test_an_import_while_sending_updates_its_progress(page: Any) -> None:
    user = make_user("mia", "marketer")
    signal_import = make_import(
        user,
        original_name="black-friday.ndjson",
        status=ImportStatus.SENDING,
        signals=2000,
        valid=2000,
        rejected=0,
        errors=0,
        warnings=0,
        batches_total=4,
        accepted=500,
        failed=500,
        unknown=500,
        send_started_at=timezone.now() - timedelta(seconds=12),
    )
    add_batches(signal_import, [BatchState.SENT, BatchState.FAILED, BatchState.UNKNOWN, "pending"])
    AuditEvent.objects.create(signal_import=signal_import, actor=user, action="import.send")
    sign_in(page, "mia")
    page.goto(f"/imports/{signal_import.public_id}")
    progress = page.locator("#progress")
    assert "3 of 4" in progress.inner_text()
    assert page.locator(".ledger").get_by_text("HTTP 503 after 5 attempts").is_visible()
    page.screenshot(path=ARTIFACTS / "05-import-sending.png", full_page=True)

    # The last batch goes through: the polled progress shows it without a reload...
    ImportBatch.objects.filter(signal_import=signal_import, number=3).update(
        state=BatchState.SENT, finished_at=timezone.now(), duration_ms=700
    )
    SignalImport.objects.filter(pk=signal_import.pk).update(accepted=1000, sent=1000)
    page.wait_for_function(
        "document.querySelector('#progress').innerText.includes('4 of 4')", timeout=5000
    )
    # ...and when the import completes, the page says first what happened: a batch failed
    # and one has an unknown outcome, so it is not "Completed" in green.
    SignalImport.objects.filter(pk=signal_import.pk).update(
        status=ImportStatus.COMPLETED, send_finished_at=timezone.now()
    )
    page.wait_for_selector("#summary .status-attention", timeout=5000)
    assert page.locator("#progress").count() == 0
    summary = page.locator("#summary").inner_text()
    assert "Needs attention" in summary and "the outcome of 500 signals is unknown" in summary
    assert page.locator(".status-completed").count() == 0


def test_the_history_of_imports(page: Any) -> None:
    mia = make_user("mia", "marketer")
    make_user("otto", "ops")
    done = make_import(
        mia, original_name="newsletter-april.json", status=ImportStatus.COMPLETED,
        sent=1000, accepted=1000, unknown=500,
    )  # fmt: skip
    add_rejected(done)
    add_batches(done, [BatchState.SENT, BatchState.SENT, BatchState.UNKNOWN])
    make_import(mia, original_name="catalogue.csv")
    sign_in(page, "otto")
    page.get_by_role("link", name="History", exact=True).click()
    row = page.locator("tr", has_text="newsletter-april.json")
    assert row.is_visible()
    assert "Needs attention" in row.inner_text()
    assert page.locator("svg.chart").count() == 1
    assert page.locator("ol.hbars li").count() == 3
    page.screenshot(path=ARTIFACTS / "06-history.png", full_page=True)

    page.get_by_label("Status").select_option("validated")
    page.wait_for_url("**status=validated**")
    page.wait_for_function(
        "!document.querySelector('#history-results').innerText.includes('newsletter-april')"
    )
    assert page.locator("#history-results").get_by_text("catalogue.csv").is_visible()
