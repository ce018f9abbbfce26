"""Who hears of alerts (connectadmin.alerts): a person's own e-mail subscription, and the
webhooks admins add, with the test message that tells whether a webhook takes them.

Every change is written to the audit trail, never with a webhook's address: it is a secret
(Slack's and Teams' carry their token in the path), stored encrypted and shown only as its
host (`url_host`, set whenever the address is).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final, Literal

import httpx
from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from connectadmin import alerts
from connectadmin.models import AlertChannel, AlertDelivery, AlertTopic
from signals_app.models import audit

EMAIL: Final = AlertChannel.Kind.EMAIL
WEBHOOK: Final = AlertChannel.Kind.WEBHOOK


def topics_chosen(topics: Iterable[str]) -> list[str]:
    """The known topics among `topics`, in the order of AlertTopic; [] means every topic."""
    wanted = set(topics)
    return [topic.value for topic in AlertTopic if topic.value in wanted]


def topic_words(topic: str) -> str:
    """A topic within a sentence: "imports that failed", "SFTP host keys that changed"."""
    label = str(AlertTopic(topic).label)
    return label if label[:2].isupper() else label[0].lower() + label[1:]


def topics_words(topics: list[str]) -> str:
    if not topics:
        return "every topic"
    return "; ".join(topic_words(topic) for topic in topics_chosen(topics))


# --- a person's own e-mails ----------------------------------------------------------------


def subscription_of(user: Any) -> AlertChannel | None:
    return AlertChannel.objects.filter(kind=EMAIL, user_id=user.pk).first()


@dataclass(frozen=True, slots=True)
class SubscriptionChange:
    channel: AlertChannel
    made: bool  # subscribed now, rather than topics changed
    changed: bool  # False: it was so already (nothing audited)


def email_subscribe(*, user: User, topics: Iterable[str]) -> SubscriptionChange:
    """Subscribe `user` to alert e-mails on `topics` (none: every topic), or change the
    topics of their subscription."""
    chosen = topics_chosen(topics)
    with transaction.atomic():
        channel, made = AlertChannel.objects.select_for_update().get_or_create(
            kind=EMAIL, user=user, defaults={"topics": chosen}
        )
        before = list(channel.topics)
        changed = made or before != chosen or not channel.active
        if changed and not made:
            channel.topics = chosen
            channel.active = True
            channel.save(update_fields=["topics", "active"])
        if changed:
            audit(
                action="alerts.subscribed",
                actor=user,
                obj=channel,
                email=user.email,
                topics=chosen,
                **_unless(made, topics_before=before),
            )
    return SubscriptionChange(channel, made, changed)


def email_unsubscribe(*, user: User) -> bool:
    """`user` gets no more alert e-mails; False if they were not subscribed."""
    with transaction.atomic():
        channel = AlertChannel.objects.select_for_update().filter(kind=EMAIL, user=user).first()
        if channel is None:
            return False
        dropped = _remove(channel)
        audit(
            action="alerts.unsubscribed",
            actor=user,
            obj=channel,
            email=user.email,
            topics=channel.topics,
            **_unless(not dropped, unsent_dropped=dropped),
        )
    return True


def subscriber_remove(*, channel: AlertChannel, actor: Any) -> None:
    """An admin removes someone's alert e-mails (Settings → Alerts)."""
    with transaction.atomic():
        user = channel.user
        dropped = _remove(channel)
        audit(
            action="alerts.subscriber_removed",
            actor=actor,
            obj=channel,
            user=user.get_username() if user is not None else "",
            email=user.email if user is not None else "",
            topics=channel.topics,
            **_unless(not dropped, unsent_dropped=dropped),
        )


def _unless(skip: bool, **detail: Any) -> dict[str, Any]:
    """Audit details that say something only sometimes (kept out of the trail otherwise)."""
    return {} if skip else detail


def _remove(channel: AlertChannel) -> int:
    """Delete the channel; the messages still waiting for it are not sent (nobody would
    get them) and say so in the alerts' history, beside what was sent. How many."""
    dropped = AlertDelivery.objects.filter(
        channel=channel, state=AlertDelivery.State.PENDING
    ).update(
        state=AlertDelivery.State.CANCELLED, last_error="its channel was removed before it went"
    )
    pk = channel.pk
    channel.delete()
    channel.pk = pk  # for the audit trail's object id
    return dropped


# --- webhooks ------------------------------------------------------------------------------


def webhook_add(*, name: str, url: str, topics: Iterable[str], actor: Any) -> AlertChannel:
    channel = AlertChannel.objects.create(
        kind=WEBHOOK,
        name=name.strip(),
        url=url,
        url_host=alerts.url_host(url),
        topics=topics_chosen(topics),
        active=True,
    )
    audit(
        action="alerts.webhook_added",
        actor=actor,
        obj=channel,
        name=channel.name,
        url_host=channel.url_host,
        topics=channel.topics,
        active=channel.active,
    )
    return channel


def webhook_change(
    *,
    channel: AlertChannel,
    name: str,
    url: str,
    topics: Iterable[str],
    active: bool,
    actor: Any,
) -> list[str]:
    """Save a webhook's name, topics and state, and its address if `url` is not empty.
    What changed, in words ([] if nothing)."""
    before: dict[str, Any] = {
        "name": channel.name,
        "topics": list(channel.topics),
        "active": channel.active,
        "url_host": channel.url_host,
    }
    channel.name = name.strip()
    channel.topics = topics_chosen(topics)
    channel.active = active
    if url:
        channel.url = url
        channel.url_host = alerts.url_host(url)
    after = {
        "name": channel.name,
        "topics": channel.topics,
        "active": channel.active,
        "url_host": channel.url_host,
    }
    changes = {
        field: {"before": before[field], "after": after[field]}
        for field in before
        if before[field] != after[field]
    }
    if not changes and not url:
        return []
    channel.save(update_fields=["name", "topics", "active", "url", "url_host"])
    audit(
        action="alerts.webhook_changed",
        actor=actor,
        obj=channel,
        name=channel.name,
        url_host=channel.url_host,
        changes=changes,
        url_replaced=bool(url),
    )
    words = {
        "name": "name",
        "topics": "topics",
        "active": "turned on" if channel.active else "turned off",
    }
    said = [words[field] for field in ("name", "topics", "active") if field in changes]
    if url:
        said.append("address replaced")
    return said


def webhook_remove(*, channel: AlertChannel, actor: Any) -> None:
    with transaction.atomic():
        dropped = _remove(channel)
        audit(
            action="alerts.webhook_removed",
            actor=actor,
            obj=channel,
            name=channel.name,
            url_host=channel.url_host,
            topics=channel.topics,
            **_unless(not dropped, unsent_dropped=dropped),
        )


TestOutcome = Literal["ok", "refused", "unreachable", "timeout"]


@dataclass(frozen=True, slots=True)
class WebhookTest:
    outcome: TestOutcome
    words: str  # the badge: "HTTP 200", "Timed out", ...
    detail: str  # for a person: what came back and what it means
    elapsed_ms: int
    http_status: int | None = None

    @property
    def ok(self) -> bool:
        return self.outcome == "ok"


def webhook_test_body(channel: AlertChannel, actor: Any = None) -> dict[str, Any]:
    """A test message in the shape of connectadmin.alerts.webhook_body: a receiver that
    shows `text` (Slack, Teams) shows it, one that reads fields finds `message` "test"."""
    now = timezone.now()
    title = "Test message from connectadmin"
    by = f" by {actor.get_username()}" if getattr(actor, "pk", None) else ""
    detail = (
        f"Sent{by} from Settings → Alerts to check that this webhook "
        f"({channel.name or channel.url_host}) receives alerts. It will get alerts about: "
        f"{topics_words(channel.topics)}."
    )
    return {
        "text": f"{title}\n{detail}\n\nAll alerts: {alerts.absolute(reverse('alerts'))}\n",
        "message": "test",
        "topic": "test",
        "subject": "test",
        "subject_label": "connectadmin",
        "title": title,
        "detail": detail,
        "state": "test",
        "occurrences": 0,
        "opened_at": now.isoformat(),
        "cleared_at": None,
        "url": alerts.absolute(reverse("alerts")),
        "alert_id": None,
        "delivery_id": None,
    }


def webhook_test(*, channel: AlertChannel, actor: Any) -> WebhookTest:
    """POST the test message to the webhook now, as a delivery would be sent (same timeout,
    no redirects followed), and say what came back."""
    timeout = settings.ALERT_WEBHOOK_TIMEOUT_SECONDS
    started = time.perf_counter()

    def took() -> int:
        return round((time.perf_counter() - started) * 1000)

    result: WebhookTest
    try:
        response = httpx.post(
            channel.url,
            json=webhook_test_body(channel, actor),
            timeout=timeout,
            follow_redirects=False,
        )
    except httpx.TimeoutException:
        result = WebhookTest(
            "timeout",
            "Timed out",
            f"{channel.url_host} did not answer within {timeout} s "
            "(ALERT_WEBHOOK_TIMEOUT_SECONDS): alerts to it would fail the same way.",
            took(),
        )
    except (httpx.HTTPError, OSError) as exc:
        reason = _hide_address(str(exc) or type(exc).__name__, channel)
        result = WebhookTest(
            "unreachable",
            "Could not be reached",
            f"Nothing answered at {channel.url_host} ({reason}): check the address, and "
            "that the service is up and reachable from this server.",
            took(),
        )
    else:
        result = _read_answer(response, channel, took())
    audit(
        action="alerts.webhook_tested",
        actor=actor,
        obj=channel,
        name=channel.name,
        url_host=channel.url_host,
        outcome=result.outcome,
        status=result.http_status,
        elapsed_ms=result.elapsed_ms,
    )
    return result


def _read_answer(response: httpx.Response, channel: AlertChannel, elapsed_ms: int) -> WebhookTest:
    status = response.status_code
    said = _hide_address(response.text[:200].strip(), channel)
    answer = f" It answered: “{said}”" if said else ""
    if response.is_success:
        return WebhookTest(
            "ok", f"HTTP {status}", f"The webhook took the message.{answer}", elapsed_ms, status
        )
    if response.is_redirect:
        where = alerts.url_host(response.headers.get("location", "")) or "elsewhere"
        detail = (
            f"The webhook sends it on to {where}; alerts do not follow redirects: "
            "paste the address it sends to."
        )
    elif status in (401, 403, 404, 410):
        detail = (
            "The webhook refused the message: its address is wrong, or the webhook was "
            f"removed or its token revoked.{answer}"
        )
    else:
        detail = f"The webhook did not take the message.{answer}"
    return WebhookTest("refused", f"HTTP {status}", detail, elapsed_ms, status)


def _hide_address(text: str, channel: AlertChannel) -> str:
    return text.replace(channel.url, channel.url_host) if channel.url else text
