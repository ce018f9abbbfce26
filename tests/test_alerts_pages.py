"""The alerts pages (connectadmin.alerts_views): /alerts says first what is failing now, then
every alert with what became of each message; a person subscribes themselves; admins manage
the subscribers and webhooks under Settings → Alerts, where a webhook's address is never
shown again (nor written to the audit trail) and a test message goes to a real HTTP server
on loopback."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from connectadmin import alerts
from connectadmin.models import Alert, AlertChannel, AlertDelivery, AlertTopic
from signals_app.models import AuditEvent
from tests.test_views import make_user
from tests.webhook import receiving_webhooks

pytestmark = pytest.mark.django_db

SECRET_PATH = "/services/T0001/B0002/s3cr3t-t0k3n-never-shown"


@pytest.fixture(autouse=True)
def _no_broker(monkeypatch: pytest.MonkeyPatch) -> None:
    """The deliver task is queued on commit; no broker here: nothing is queued."""
    monkeypatch.setattr(alerts, "_deliver_soon", lambda: None)


@pytest.fixture
def ops(client: Client) -> User:
    user = make_user("otto", "ops")
    user.email = "otto@example.test"
    user.save()
    client.force_login(user)
    return user


@pytest.fixture
def admin(client: Client) -> User:
    user = make_user("ada", "admin")
    user.email = "ada@example.test"
    user.save()
    client.force_login(user)
    return user


def page(client: Client, url: str = "/alerts") -> str:
    response = client.get(url)
    assert response.status_code == 200
    return response.content.decode()


def fail(
    topic: str = AlertTopic.IMPORT,
    subject: str = "account:1",
    label: str = "Imports to Acme EU",
    title: str = "Import #7 (spring.ndjson, live): refused",
) -> Alert:
    return alerts.raise_alert(
        topic=topic,
        subject=subject,
        subject_label=label,
        title=title,
        detail="Connect refused the API key.",
        link="/imports",
    )


def trail() -> Any:
    """The alerts' audit events (signing in is audited too)."""
    return AuditEvent.objects.filter(action__startswith="alerts.")


def subscribe(username: str, topics: list[str] | None = None) -> AlertChannel:
    user = User.objects.create_user(username, email=f"{username}@example.test")
    return AlertChannel.objects.create(kind="email", user=user, topics=topics or [])


def webhook(name: str = "Slack #ops", url: str = f"https://hooks.example.test{SECRET_PATH}",
            **fields: Any) -> AlertChannel:  # fmt: skip
    return AlertChannel.objects.create(
        kind="webhook", name=name, url=url, url_host=alerts.url_host(url), **fields
    )


# --- who may look --------------------------------------------------------------------------


def test_ops_and_admins_see_the_alerts_page_marketers_are_refused(client: Client) -> None:
    response = client.get("/alerts")
    assert response.status_code == 302 and "/login/" in response["Location"]
    client.force_login(make_user("mia", "marketer"))
    assert client.get("/alerts").status_code == 403
    assert 'href="/alerts"' not in page(client, "/")
    assert client.post("/alerts/subscription", {}).status_code == 403
    client.force_login(make_user("otto", "ops"))
    assert "Your alert e-mails" in page(client)
    assert client.get("/settings/alerts").status_code == 403
    client.force_login(make_user("ada", "admin"))
    assert "E-mail subscribers" in page(client, "/settings/alerts")


def test_the_top_bar_counts_the_open_alerts(client: Client, ops: User) -> None:
    assert '<span class="nav-count"' not in page(client, "/")
    fail()
    fail(subject="account:2", label="Imports to Acme US")
    alerts.clear_alert(topic=AlertTopic.IMPORT, subject="account:2", detail="It worked.")
    assert 'title="1 open alert">1<span class="sr"> open</span>' in page(client, "/")


# --- what is failing now -------------------------------------------------------------------


def test_before_any_alert_the_page_says_nothing_is_failing(client: Client, ops: User) -> None:
    subscribe("ops-person")
    body = page(client)
    assert "summary tone-good" in body
    assert '<span class="status is-good">Nothing is failing</span>' in body
    assert "No alert yet: nothing has failed since alerts began." in body


def test_with_nobody_subscribed_the_page_says_nobody_would_hear(client: Client, ops: User) -> None:
    body = page(client)
    assert "summary tone-warn" in body and "Nothing is failing" in body
    assert "Nobody gets alert messages" in body


def test_nobody_subscribed_is_said_first_and_under_the_alert(client: Client, ops: User) -> None:
    alert = fail()
    assert not alert.deliveries.exists()
    body = page(client)
    assert '<span class="status is-bad">1 open alert</span>' in body
    assert "Nobody is subscribed to imports that failed: no message went out" in body
    assert 'href="#subscription">Subscribe</a>' in body
    assert "Connect refused the API key." in body and 'href="/imports">Open the import' in body


def test_open_alerts_come_first_with_each_message_in_words(client: Client, ops: User) -> None:
    subscribe("ops-person")
    slack = webhook()
    old = fail(subject="account:2", label="Imports to Acme US", title="Import #3: failed")
    alerts.clear_alert(
        topic=AlertTopic.IMPORT, subject="account:2", detail="Import #4 to Acme US completed."
    )
    now = timezone.now()
    alert = fail()
    fail(title="Import #8 (autumn.ndjson, live): refused")  # counted on the same alert
    email, hook = alert.deliveries.order_by("id")
    AlertDelivery.objects.filter(pk=email.pk).update(state="sent", attempts=1, sent_at=now)
    AlertDelivery.objects.filter(pk=hook.pk).update(
        attempts=2,
        last_error="the webhook answered HTTP 500: oops",
        next_try_at=now + timedelta(minutes=5),
    )
    AlertDelivery.objects.filter(alert=old, channel=slack).update(
        state="failed",
        attempts=6,
        last_error="the webhook answered HTTP 404: no_service",
        last_attempt_at=now,
    )
    body = page(client)
    assert body.index("Imports to Acme EU") < body.index("Imports to Acme US")
    assert '<span class="status is-bad">1 open alert</span>' in body
    assert "Import #8 (autumn.ndjson, live): refused" in body
    assert "<dt>Failures</dt><dd>2</dd>" in body
    assert '<span class="status is-good">Sent</span>' in body
    assert "Waiting to retry at" in body and "after: the webhook answered HTTP 500: oops" in body
    assert "(2 of 6 attempts made)" in body
    assert '<span class="status is-bad">Failed</span>' in body
    assert "Failed after 6 attempts: the webhook answered HTTP 404: no_service." in body
    assert "Import #4 to Acme US completed." in body  # how it cleared
    assert "Alert: Import #7 (spring.ndjson, live): refused" in body  # the subject line
    # the old alert's alert and recovery to Slack
    assert "2 alert messages could not be delivered in the last 24 hours" in body
    assert "waits to be tried again" in body
    assert SECRET_PATH not in body


def test_a_message_nobody_sent_points_at_the_workers(client: Client, ops: User) -> None:
    subscribe("ops-person")
    alert = fail()
    alert.deliveries.update(next_try_at=timezone.now() - timedelta(minutes=10))
    body = page(client)
    assert "no worker or scheduler has sent it" in body
    assert "1 alert message has waited more than 2 minutes to be sent" in body
    assert 'href="/health">See Health</a>' in body


def test_an_alert_held_back_by_the_interval_says_so(client: Client, ops: User) -> None:
    subscribe("ops-person")
    fail()
    alerts.clear_alert(topic=AlertTopic.IMPORT, subject="account:1", detail="It worked.")
    again = fail()  # within ALERT_REPEAT_MINUTES of the first message: held
    assert again.notified_at is None and not again.deliveries.exists()
    body = page(client)
    assert "Held back: people were last told of this at" in body
    assert "less than 60 minutes ago" in body
    assert "Nobody is subscribed" not in body


def test_the_list_filters_by_topic_and_state(client: Client, ops: User) -> None:
    fail()
    fail(topic=AlertTopic.WORKER, subject="worker:w1", label="Worker w1", title="w1 is silent")
    alerts.clear_alert(topic=AlertTopic.WORKER, subject="worker:w1", detail="w1 is back.")
    only_workers = page(client, "/alerts?topic=worker")
    assert "Worker w1" in only_workers and "Imports to Acme EU</h3>" not in only_workers
    open_ones = page(client, "/alerts?state=open")
    assert "Imports to Acme EU</h3>" in open_ones and "Worker w1</h3>" not in open_ones
    assert "No alert matches." in page(client, "/alerts?topic=scheduler")


# --- one's own e-mails ----------------------------------------------------------------------


def test_ops_subscribe_with_topics_change_them_and_unsubscribe(client: Client, ops: User) -> None:
    body = page(client)
    assert "Not subscribed" in body and "They would go to <strong" in body
    response = client.post("/alerts/subscription", {"topics": ["import", "worker"]})
    assert response.status_code == 302
    channel = AlertChannel.objects.get(kind="email", user=ops)
    assert channel.topics == ["import", "worker"] and channel.active
    body = page(client)
    assert "Subscribed: alert e-mails about imports that failed; workers gone silent go to " in (
        body
    )
    assert '<span class="status is-good">Subscribed</span>' in body
    assert 'value="import"' in body and "Unsubscribe me" in body
    client.post("/alerts/subscription", {})  # none ticked: every topic
    channel.refresh_from_db()
    assert channel.topics == []
    assert "Saved: you get alert e-mails about every topic." in page(client)
    client.post("/alerts/subscription", {"action": "unsubscribe"})
    assert not AlertChannel.objects.filter(user=ops).exists()
    assert "Unsubscribed: you get no more alert e-mails." in page(client)
    events = list(trail().order_by("id").values_list("action", "detail"))
    assert events == [
        ("alerts.subscribed", {"email": "otto@example.test", "topics": ["import", "worker"]}),
        ("alerts.subscribed", {"email": "otto@example.test", "topics": [],
                               "topics_before": ["import", "worker"]}),
        ("alerts.unsubscribed", {"email": "otto@example.test", "topics": []}),
    ]  # fmt: skip


def test_unsubscribing_cancels_the_messages_still_waiting(client: Client, ops: User) -> None:
    AlertChannel.objects.create(kind="email", user=ops)
    alert = fail()
    assert alert.deliveries.count() == 1
    client.post("/alerts/subscription", {"action": "unsubscribe"})
    delivery = alert.deliveries.get()
    assert delivery.state == "cancelled"
    assert delivery.last_error == "its channel was removed before it went"
    assert alerts.deliver_due() == 0  # never sent, never retried
    assert trail().get().detail["unsent_dropped"] == 1
    assert "Not sent: its channel was removed before it went." in page(client)


def test_it_warns_of_a_missing_address_and_says_where_mail_goes(
    client: Client, settings: Any
) -> None:
    client.force_login(make_user("otto", "ops"))  # no e-mail address
    settings.EMAIL_HOST = ""
    settings.EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
    settings.EMAIL_FILE_PATH = "/srv/connectadmin/outbox"
    body = page(client)
    assert "Your user has no e-mail address, so alert e-mails to you cannot be sent." in body
    assert (
        "No mail server is configured (EMAIL_HOST is empty): e-mails are not sent but written "
        "as files under /srv/connectadmin/outbox on the server." in body
    )
    settings.EMAIL_HOST = "smtp.example.test"
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    body = page(client)
    assert "E-mails go out through the mail server smtp.example.test:587." in body
    assert "written as files" not in body


# --- Settings → Alerts ----------------------------------------------------------------------


def test_adding_a_webhook_never_shows_its_address_again(client: Client, admin: User) -> None:
    url = f"https://hooks.slack.test{SECRET_PATH}"
    response = client.post(
        "/settings/alerts",
        {"name": "Slack #ops-alerts", "url": url, "topics": ["import", "host_key"]},
        follow=True,
    )
    body = response.content.decode()
    assert "Webhook Slack #ops-alerts added" in body
    channel = AlertChannel.objects.get(kind="webhook")
    assert (channel.url, channel.url_host) == (url, "hooks.slack.test")
    assert channel.topics == ["import", "host_key"] and channel.active
    assert "<code>hooks.slack.test</code>" in body
    assert SECRET_PATH not in body and "s3cr3t" not in body
    assert "s3cr3t" not in page(client, f"/settings/alerts/webhooks/{channel.pk}")
    event = trail().get()
    assert event.action == "alerts.webhook_added"
    assert event.detail == {
        "name": "Slack #ops-alerts",
        "url_host": "hooks.slack.test",
        "topics": ["import", "host_key"],
        "active": True,
    }
    assert "s3cr3t" not in json.dumps(list(AuditEvent.objects.values()), default=str)


@pytest.mark.parametrize(
    "url",
    ["ftp://files.example.test/s3cr3t-t0k3n", "javascript:alert(1)//s3cr3t-t0k3n",
     "https://s3cr3t-t0k3n", "hooks.example.test/s3cr3t-t0k3n"],
)  # fmt: skip
def test_only_an_http_or_https_address_is_taken_and_never_echoed(
    client: Client, admin: User, url: str
) -> None:
    response = client.post("/settings/alerts", {"name": "Chat", "url": url})
    assert response.status_code == 400
    body = response.content.decode()
    assert "Nothing was saved" in body and "s3cr3t" not in body
    assert not AlertChannel.objects.exists() and not trail().exists()


def test_a_webhook_is_changed_its_address_replaced_turned_off_and_removed(
    client: Client, admin: User
) -> None:
    channel = webhook()
    edit = f"/settings/alerts/webhooks/{channel.pk}"
    assert "An address at hooks.example.test is stored (not shown)" in page(client, edit)
    client.post(edit, {"name": "Slack #ops", "url": "", "topics": ["export"], "active": "on"})
    channel.refresh_from_db()
    assert channel.url == f"https://hooks.example.test{SECRET_PATH}"  # empty: kept
    assert channel.topics == ["export"]
    client.post(edit, {"name": "Ops chat", "url": "http://chat.example.test/hook/n3w-s3cr3t",
                       "topics": [], "active": "on"})  # fmt: skip
    channel.refresh_from_db()
    assert (channel.name, channel.url_host) == ("Ops chat", "chat.example.test")
    assert channel.url == "http://chat.example.test/hook/n3w-s3cr3t"
    client.post(f"{edit}/active", {"active": "0"})
    channel.refresh_from_db()
    assert not channel.active
    assert '<span class="status">Off</span>' in page(client, "/settings/alerts")
    client.post(f"{edit}/remove")
    assert not AlertChannel.objects.exists()
    actions = list(trail().order_by("id").values_list("action", flat=True))
    assert actions == ["alerts.webhook_changed"] * 3 + ["alerts.webhook_removed"]
    replaced = trail().filter(action="alerts.webhook_changed")[1]
    assert replaced.detail["url_replaced"] is True
    assert replaced.detail["changes"]["url_host"] == {
        "before": "hooks.example.test",
        "after": "chat.example.test",
    }
    assert "s3cr3t" not in json.dumps(list(AuditEvent.objects.values()), default=str)


def test_an_admin_removes_a_subscriber(client: Client, admin: User) -> None:
    channel = subscribe("ops-person", topics=["worker"])
    body = page(client, "/settings/alerts")
    assert "ops-person@example.test" in body and "Workers gone silent" in body
    client.post(f"/settings/alerts/subscribers/{channel.pk}/remove")
    assert not AlertChannel.objects.exists()
    event = trail().get()
    assert event.action == "alerts.subscriber_removed" and event.actor == admin
    assert event.detail["user"] == "ops-person"


# --- the test message, against a real HTTP server -----------------------------------------


@contextmanager
def http_server(status: int = 200, delay: float = 0.0) -> Iterator[tuple[str, list[Any]]]:
    """A webhook receiver on 127.0.0.1 (tests.webhook) at the secret path: answers `status`
    after `delay` seconds; what it was sent."""
    with receiving_webhooks(SECRET_PATH, status=status, delay=delay) as receiver:
        receiver.refusal = b"invalid_token"
        yield receiver.url, receiver.requests


def press_test(client: Client, channel: AlertChannel) -> str:
    response = client.post(f"/settings/alerts/webhooks/{channel.pk}/test", follow=True)
    assert response.status_code == 200
    body = response.content.decode()
    assert "Test message to" in body and SECRET_PATH not in body
    return body


def test_the_test_message_reaches_a_webhook_that_takes_it(client: Client, admin: User) -> None:
    with http_server(200) as (url, received):
        channel = webhook(url=url, topics=["import"])
        body = press_test(client, channel)
    assert '<span class="status is-good">HTTP 200</span>' in body
    assert "The webhook took the message. It answered: “ok”" in body
    assert " ms)</span>" in body
    [(path, sent)] = received
    assert path == SECRET_PATH
    assert sent["message"] == "test" and sent["text"].startswith("Test message from connectadmin")
    assert set(sent) >= {"text", "topic", "title", "detail", "url", "alert_id"}
    event = trail().get()
    assert event.action == "alerts.webhook_tested"
    assert (event.detail["outcome"], event.detail["status"]) == ("ok", 200)
    assert "s3cr3t" not in json.dumps(event.detail)
    assert "Test message to" not in page(client, "/settings/alerts")  # shown once


def test_the_test_message_says_what_a_refusing_webhook_answered(
    client: Client, admin: User
) -> None:
    with http_server(500) as (url, _):
        body = press_test(client, webhook(url=url))
    assert '<span class="status is-bad">HTTP 500</span>' in body
    assert "The webhook did not take the message. It answered: “invalid_token”" in body
    assert trail().get().detail["status"] == 500


def test_the_test_message_says_when_nothing_answers(client: Client, admin: User) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    body = press_test(client, webhook(url=f"http://127.0.0.1:{closed}{SECRET_PATH}"))
    assert '<span class="status is-bad">Could not be reached</span>' in body
    assert f"Nothing answered at 127.0.0.1:{closed}" in body
    assert trail().get().detail["outcome"] == "unreachable"


def test_the_test_message_gives_up_after_the_timeout(
    client: Client, admin: User, settings: Any
) -> None:
    settings.ALERT_WEBHOOK_TIMEOUT_SECONDS = 1
    with http_server(200, delay=2.5) as (url, _):
        body = press_test(client, webhook(url=url))
    assert '<span class="status is-bad">Timed out</span>' in body
    assert "did not answer within 1 s" in body
