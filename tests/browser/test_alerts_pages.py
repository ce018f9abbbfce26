"""The alerts pages in a real Chromium, under the app's own Content-Security-Policy: an ops
person reads what is failing and subscribes; an admin adds a webhook (its address never
comes back into the page) and sends it a test message. At 1400, 1024 and 390 px nothing is
wider than the window, no table scrolls inside itself at 1400 px, and axe-core finds no
serious or critical violation. Screenshots go to test-artifacts/alerts/."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from connectadmin import alerts
from connectadmin.models import AlertChannel, AlertDelivery, AlertTopic
from tests.browser.test_every_page import inner_scroll, serious_violations, too_wide
from tests.browser.test_pages import ARTIFACTS, browser, sign_in, strict_page  # noqa: F401
from tests.test_alerts_pages import SECRET_PATH, http_server
from tests.test_views import make_user

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)

WIDTHS = (1400, 1024, 390)
SHOTS = ARTIFACTS / "alerts"


def look(tab: Any, path: str, name: str) -> list[str]:
    """Each width: the page fits, and axe has nothing serious (at 1400 and 390 px)."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    problems: list[str] = []
    for width in WIDTHS:
        tab.set_viewport_size({"width": width, "height": 900})
        tab.goto(path)
        if wide := too_wide(tab):
            problems.append(f"{name} @{width}px wider than the window: {wide}")
        if width == 1400 and (scrolls := inner_scroll(tab)):
            problems.append(f"{name} @1400px: a table scrolls inside itself by {scrolls} px")
        if width in (1400, 390):
            problems += [f"{name} @{width}px: {v}" for v in serious_violations(tab)]
        tab.screenshot(path=SHOTS / f"{name}-{width}.png", full_page=True)
    tab.set_viewport_size({"width": 1400, "height": 900})
    return problems


def failures(monkeypatch: pytest.MonkeyPatch) -> None:
    """Alerts as they come: an import refused three times (its e-mail sent, the Slack
    message retrying), a worker gone silent, an export schedule that failed and recovered
    (its Teams messages failed for good), an SFTP host key nobody is subscribed to."""
    monkeypatch.setattr(alerts, "_deliver_soon", lambda: None)
    olga = make_user("olga", "ops")
    olga.email = "olga.from.the.night.shift@example.test"
    olga.save()
    ops = AlertChannel.objects.create(
        kind="email", user=olga, topics=["import", "export", "worker"]
    )
    slack = AlertChannel.objects.create(
        kind="webhook", name="Slack #ops-alerts", url=f"https://hooks.slack.test{SECRET_PATH}",
        url_host="hooks.slack.test", topics=["import", "worker"],
    )  # fmt: skip
    teams = AlertChannel.objects.create(
        kind="webhook", name="Teams: Data ops", url="https://teams.example.test/hook/x",
        url_host="teams.example.test", topics=["export"],
    )  # fmt: skip
    for number in (42, 43, 44):
        imports = alerts.raise_alert(
            topic=AlertTopic.IMPORT, subject="account:1",
            subject_label="Imports to Demo Pro with a rather long account name (sandbox)",
            title=f"Import #{number} (spring-campaign-{number}.ndjson, live): refused",
            detail="Connect refused every batch: HTTP 401, the API key is not accepted. Check "
            "the account's API key (Settings → Connect accounts), then send again.",
            link="/imports",
        )  # fmt: skip
    now = timezone.now()
    imports.deliveries.filter(channel=ops).update(state="sent", attempts=1, sent_at=now)
    imports.deliveries.filter(channel=slack).update(
        attempts=1, next_try_at=now + timedelta(minutes=1),
        last_error="the webhook could not be reached: [Errno 111] Connection refused",
    )  # fmt: skip
    alerts.raise_alert(
        topic=AlertTopic.WORKER, subject="worker:celery@worker-2.internal.example.test",
        subject_label="Worker celery@worker-2.internal.example.test",
        title="The worker celery@worker-2.internal.example.test has been silent for 7 minutes",
        detail="It did not stop cleanly: it was killed, or its machine or its connection to "
        "the database is gone.", link="/health", continuing=True,
    )  # fmt: skip
    alerts.raise_alert(
        topic=AlertTopic.EXPORT, subject="schedule:3",
        subject_label="Scheduled export Daily orders (Demo Ultimate)",
        title="Export daily-orders-0412: failed", detail="Connect: the export job failed.",
        link="/exports",
    )  # fmt: skip
    alerts.clear_alert(
        topic=AlertTopic.EXPORT, subject="schedule:3",
        detail="Export daily-orders-0413 ran and its file was fetched.",
    )  # fmt: skip
    AlertDelivery.objects.filter(channel=ops, state="pending").update(
        state="sent", attempts=1, sent_at=now
    )
    AlertDelivery.objects.filter(channel=teams).update(
        state="failed", attempts=6, last_attempt_at=now,
        last_error="the webhook answered HTTP 404: Webhook Bad Request - Null or empty event",
    )  # fmt: skip
    alerts.raise_alert(
        topic=AlertTopic.HOST_KEY, subject="127.0.0.1:2222",
        subject_label="SFTP host 127.0.0.1:2222",
        title="The SFTP host 127.0.0.1:2222 offered a different key",
        detail="Nothing is downloaded from it until an administrator approves the new key.",
        link="/settings/sftp",
    )  # fmt: skip


def test_ops_read_what_is_failing_and_subscribe(
    strict_page: Any,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    failures(monkeypatch)
    otto = make_user("otto", "ops")
    otto.email = "otto@example.test"
    otto.save()
    sign_in(strict_page, "otto")
    strict_page.get_by_role("navigation", name="Main").get_by_role("link", name="Alerts").click()
    strict_page.wait_for_url("**/alerts")  # not the summary of the page it came from
    summary = strict_page.locator(".summary").inner_text()
    assert "3 open alerts" in summary
    assert "2 alert messages could not be delivered in the last 24 hours" in summary
    assert "Nobody is subscribed to SFTP host keys that changed: no message went out" in summary
    assert "summary tone-bad" in strict_page.content()
    card = strict_page.locator("article", has_text="Imports to Demo Pro")
    assert "Waiting to retry at" in card.inner_text()
    assert SECRET_PATH not in strict_page.content()
    problems = look(strict_page, "/alerts", "01-alerts-ops")

    strict_page.get_by_label("Imports that failed").check()
    strict_page.get_by_label("SFTP host keys that changed").check()
    strict_page.get_by_role("button", name="Subscribe me").click()
    strict_page.wait_for_selector("text=Subscribed: alert e-mails about imports that failed")
    assert AlertChannel.objects.get(user__username="otto").topics == ["import", "host_key"]
    assert "Nobody is subscribed to SFTP" not in strict_page.content()
    problems += look(strict_page, "/alerts#subscription", "02-alerts-subscribed")
    assert not problems, "\n".join(problems)


def test_an_admin_adds_a_webhook_and_tests_it(
    strict_page: Any,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    failures(monkeypatch)
    make_user("ada", "admin")
    sign_in(strict_page, "ada")
    problems = look(strict_page, "/settings/alerts", "03-settings-alerts")
    with http_server(200) as (url, received):
        strict_page.get_by_label("Name").fill("Ops chat")
        strict_page.get_by_label("Address (URL)").fill(url)
        strict_page.get_by_label("Workers gone silent").check()
        strict_page.get_by_role("button", name="Add the webhook").click()
        strict_page.wait_for_selector("text=Webhook Ops chat added")
        assert SECRET_PATH not in strict_page.content()
        strict_page.get_by_role("button", name="Send a test message to Ops chat").click()
        result = strict_page.locator("#webhook-test").inner_text()
    assert "HTTP 200" in result and "The webhook took the message" in result
    assert received and received[0][1]["message"] == "test"
    assert SECRET_PATH not in strict_page.content()
    SHOTS.mkdir(parents=True, exist_ok=True)
    strict_page.screenshot(path=SHOTS / "04-settings-alerts-tested.png", full_page=True)
    webhook = AlertChannel.objects.get(name="Ops chat")
    problems += look(strict_page, f"/settings/alerts/webhooks/{webhook.pk}", "05-webhook-edit")
    problems += look(strict_page, "/alerts", "06-alerts-admin")
    assert not problems, "\n".join(problems)
