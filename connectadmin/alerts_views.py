"""The alerts pages: /alerts for ops and admins (what is failing now, every alert with what
became of each message, one's own alert e-mails) and Settings → Alerts for admins (the
e-mail subscribers, the webhooks and their test message). The work is done by
connectadmin.alert_channels; what raises and sends alerts is connectadmin.alerts."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import Max, OuterRef, Prefetch, Subquery
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from connectadmin import alert_channels
from connectadmin.alerts_forms import AlertFilterForm, SubscriptionForm, WebhookForm
from connectadmin.models import Alert, AlertChannel, AlertDelivery, AlertState, AlertTopic
from connectadmin.roles import Role
from connectadmin.settings_views import _settings_page, admin_required
from signals_app.access import has_role, sees_alerts
from signals_app.templatetags.signals_ui import when

# A message not picked up this long after it was due: nothing is sending (no worker, no
# scheduler: both run the watchdog that sends what waits).
STUCK_AFTER = timedelta(minutes=2)
# Failed messages count among "what is wrong now" for this long.
FAILED_RECENTLY = timedelta(hours=24)
SHOWN_IN_SUMMARY = 5

LINK_WORDS = {
    AlertTopic.IMPORT: "Open the import",
    AlertTopic.EXPORT: "Open the export run",
    AlertTopic.HOST_KEY: "Open the SFTP keys",
    AlertTopic.WORKER: "Open Health",
    AlertTopic.SCHEDULER: "Open Health",
}


def _ops_or_admin(request: HttpRequest) -> None:
    if not sees_alerts(request.user):
        raise PermissionDenied("Alerts are for ops and administrators.")


# --- what became of a message, in words ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeliveryState:
    tone: str  # good, bad, warn, working, muted: the colour (static/css/app.css)
    label: str  # the badge
    sentence: str
    stuck: bool = False  # nothing is sending: see Health


def delivery_state(delivery: AlertDelivery, now: datetime) -> DeliveryState:
    state = delivery.state
    if state == AlertDelivery.State.SENT:
        return DeliveryState("good", "Sent", f"Sent at {when(delivery.sent_at)}.")
    if state == AlertDelivery.State.SENDING:
        return DeliveryState(
            "working", "Sending", f"Being sent now (attempt {delivery.attempts + 1})."
        )
    if state == AlertDelivery.State.CANCELLED:
        return DeliveryState("muted", "Not sent", f"Not sent: {_ended(delivery.last_error)}")
    if state == AlertDelivery.State.FAILED:
        tries = f"{delivery.attempts} attempt{'s' if delivery.attempts != 1 else ''}"
        return DeliveryState(
            "bad", "Failed", f"Failed after {tries}: {_ended(delivery.last_error)}"
        )
    if delivery.attempts:
        return DeliveryState(
            "warn",
            "Retrying",
            f"Waiting to retry at {when(delivery.next_try_at)} after: "
            f"{delivery.last_error.rstrip('.')} ({delivery.attempts} of "
            f"{settings.ALERT_DELIVERY_ATTEMPTS} attempts made).",
        )
    if delivery.next_try_at < now - STUCK_AFTER:
        return DeliveryState(
            "warn",
            "Waiting",
            f"Waiting to be sent since {when(delivery.next_try_at)}: no worker or scheduler "
            "has sent it. Messages go out from the workers and the scheduler: is one running?",
            stuck=True,
        )
    return DeliveryState("working", "Waiting", "Waiting to be sent.")


def _ended(text: str) -> str:
    text = text.strip()
    return text if text.endswith((".", "!", "?", "”", ")")) else f"{text}."


# --- /alerts ---------------------------------------------------------------------------------


@dataclass
class AlertRow:
    alert: Alert
    deliveries: list[tuple[AlertDelivery, DeliveryState]]
    link_words: str
    topic_words: str
    held_since: datetime | None = None  # open, not told: the subject was told of then
    held_until: datetime | None = None
    nobody_subscribed: bool = False  # no message went out, and nobody would get one now
    nobody_then: bool = False  # no message went out, though someone would get one now


@dataclass
class Problem:
    what: str
    todo: str
    tone: str  # bad, warn
    anchor: str = ""  # a link within the page
    link: str = ""  # a page that helps
    link_words: str = ""


@dataclass
class Summary:
    open_total: int
    problems: list[Problem] = field(default_factory=list)

    @property
    def tone(self) -> str:
        if any(problem.tone == "bad" for problem in self.problems):
            return "bad"
        return "warn" if self.problems else "good"


def covered_topics() -> set[str]:
    """The topics at least one channel would get a message about now (as alerts._queue
    decides: active channels, e-mails only to active people)."""
    covered: set[str] = set()
    for channel in AlertChannel.objects.filter(active=True).select_related("user"):
        if channel.kind == AlertChannel.Kind.EMAIL and not (
            channel.user is not None and channel.user.is_active
        ):
            continue
        covered.update(channel.topics or AlertTopic.values)
    return covered


def _summary(now: datetime, covered: set[str]) -> Summary:
    open_alerts = Alert.objects.filter(state=AlertState.OPEN).order_by("-last_seen_at", "-id")
    open_total = open_alerts.count()
    summary = Summary(open_total)
    for alert in open_alerts[:SHOWN_IN_SUMMARY]:
        failures = f"{alert.occurrences:,} failure{'s' if alert.occurrences != 1 else ''}"
        summary.problems.append(
            Problem(
                what=alert.title,
                todo=f"{alert.subject_label} · open since {when(alert.opened_at)} · {failures}, "
                f"last seen {when(alert.last_seen_at)}",
                tone="bad",
                anchor=f"alert-{alert.pk}",
            )
        )
    if open_total > SHOWN_IN_SUMMARY:
        more = open_total - SHOWN_IN_SUMMARY
        summary.problems.append(
            Problem(
                what=f"and {more} more open alert{'s' if more != 1 else ''}",
                todo="They are listed below, the latest seen first.",
                tone="bad",
                anchor="alerts-list",
            )
        )
    deliveries = AlertDelivery.objects
    failed = deliveries.filter(
        state=AlertDelivery.State.FAILED, last_attempt_at__gte=now - FAILED_RECENTLY
    ).count()
    if failed:
        summary.problems.append(
            Problem(
                what=f"{_messages(failed)} could not be delivered in the last 24 hours",
                todo="The people or webhooks they were for did not hear of the alert. Check "
                "the address (an admin sees the webhooks under Settings → Alerts, the "
                "e-mail addresses under Settings → Users), then test it.",
                tone="bad",
            )
        )
    retrying = deliveries.filter(state=AlertDelivery.State.PENDING, attempts__gt=0).count()
    if retrying:
        summary.problems.append(
            Problem(
                what=f"{_messages(retrying)} could not be delivered yet and "
                f"{'wait' if retrying != 1 else 'waits'} to be tried again",
                todo="Each is tried again after 1, 5, 15, 60 and 180 minutes, up to "
                f"{settings.ALERT_DELIVERY_ATTEMPTS} attempts; the reason is under its alert.",
                tone="warn",
            )
        )
    stuck = deliveries.filter(
        state=AlertDelivery.State.PENDING, attempts=0, next_try_at__lt=now - STUCK_AFTER
    ).count()
    if stuck:
        summary.problems.append(
            Problem(
                what=f"{_messages(stuck)} {'have' if stuck != 1 else 'has'} waited more than "
                f"{STUCK_AFTER.seconds // 60} minutes to be sent",
                todo="Messages go out from the workers and the scheduler: is one running?",
                tone="warn",
                link=reverse("health"),
                link_words="See Health",
            )
        )
    unheard = [
        topic
        for topic in open_alerts.order_by().values_list("topic", flat=True).distinct()
        if topic not in covered
    ]
    for topic in sorted(set(unheard), key=AlertTopic.values.index):
        summary.problems.append(
            Problem(
                what=f"Nobody is subscribed to {alert_channels.topic_words(topic)}: "
                "no message went out",
                todo="Subscribe to it in “Your alert e-mails”, or ask an admin to add a "
                "webhook for it (Settings → Alerts).",
                tone="warn",
                anchor="subscription",
            )
        )
    if not covered and not unheard:
        summary.problems.append(
            Problem(
                what="Nobody gets alert messages",
                todo="Nobody is subscribed and no webhook is active: failures show only on "
                "this page. Subscribe in “Your alert e-mails”.",
                tone="warn",
                anchor="subscription",
            )
        )
    return summary


def _messages(count: int) -> str:
    return f"{count:,} alert message{'s' if count != 1 else ''}"


def _rows(alerts: list[Alert], now: datetime, covered: set[str]) -> list[AlertRow]:
    interval = timedelta(minutes=settings.ALERT_REPEAT_MINUTES)
    rows = []
    for alert in alerts:
        deliveries = list(alert.deliveries.all())
        link_words = LINK_WORDS.get(AlertTopic(alert.topic), "Open")
        row = AlertRow(
            alert=alert,
            deliveries=[(delivery, delivery_state(delivery, now)) for delivery in deliveries],
            link_words=link_words,
            topic_words=alert_channels.topic_words(alert.topic),
        )
        if alert.state == AlertState.OPEN and alert.notified_at is None:
            # Held back (connectadmin.alerts._notify_if_due): told of within the interval.
            row.held_since = (
                Alert.objects.filter(topic=alert.topic, subject=alert.subject)
                .exclude(pk=alert.pk)
                .aggregate(last=Max("notified_at"))["last"]
            )
            if row.held_since is not None:
                row.held_until = row.held_since + interval
        if not deliveries:
            row.nobody_subscribed = alert.topic not in covered
            row.nobody_then = not row.nobody_subscribed and row.held_since is None
        rows.append(row)
    return rows


def mail_transport() -> str:
    """Where alert e-mails really go, from the mail settings, truthfully."""
    backend = settings.EMAIL_BACKEND
    if backend == "django.core.mail.backends.filebased.EmailBackend":
        why = (
            "No mail server is configured (EMAIL_HOST is empty)"
            if not settings.EMAIL_HOST
            else "The mail backend is the file one (EMAIL_BACKEND)"
        )
        return (
            f"{why}: e-mails are not sent but written as files under "
            f"{settings.EMAIL_FILE_PATH} on the server."
        )
    if backend == "django.core.mail.backends.smtp.EmailBackend":
        return (
            f"E-mails go out through the mail server {settings.EMAIL_HOST}:{settings.EMAIL_PORT}."
        )
    if backend == "django.core.mail.backends.console.EmailBackend":
        return "E-mails are not sent: they are written to the server's console (EMAIL_BACKEND)."
    if backend == "django.core.mail.backends.locmem.EmailBackend":
        return "E-mails are not sent: they are kept in the server's memory (EMAIL_BACKEND)."
    if backend == "django.core.mail.backends.dummy.EmailBackend":
        return "E-mails are not sent: they are thrown away (EMAIL_BACKEND)."
    return f"E-mails go out through {backend}."


def mail_is_sent() -> bool:
    return settings.EMAIL_BACKEND not in {
        "django.core.mail.backends.filebased.EmailBackend",
        "django.core.mail.backends.console.EmailBackend",
        "django.core.mail.backends.locmem.EmailBackend",
        "django.core.mail.backends.dummy.EmailBackend",
    }


def _subscription_context(user: Any, form: SubscriptionForm | None = None) -> dict[str, Any]:
    mine = alert_channels.subscription_of(user)
    if form is None:
        form = SubscriptionForm(initial={"topics": mine.topics if mine else []})
    return {
        "subscription": mine,
        "subscription_form": form,
        "subscription_topics": alert_channels.topics_words(mine.topics) if mine else "",
        "my_email": user.email,
        "mail_transport": mail_transport(),
        "mail_is_sent": mail_is_sent(),
    }


@login_required
@require_GET
def alert_list(request: HttpRequest) -> HttpResponse:
    _ops_or_admin(request)
    now = timezone.now()
    form = AlertFilterForm(request.GET or None)
    alerts = form.alerts().prefetch_related(
        Prefetch(
            "deliveries",
            queryset=AlertDelivery.objects.select_related("channel").order_by("created_at", "id"),
        )
    )
    page = Paginator(alerts, 20).get_page(request.GET.get("page"))
    covered = covered_topics()
    query = request.GET.copy()
    query.pop("page", None)
    context = {
        "form": form,
        "page": page,
        "rows": _rows(list(page.object_list), now, covered),
        "query": query.urlencode(),
        "summary": _summary(now, covered),
        "ever": form.narrowed or Alert.objects.exists(),
        "is_admin": has_role(request.user, Role.ADMIN),
        "repeat_minutes": settings.ALERT_REPEAT_MINUTES,
        "webhooks_active": AlertChannel.objects.filter(
            kind=AlertChannel.Kind.WEBHOOK, active=True
        ).count(),
        **_subscription_context(request.user),
    }
    return TemplateResponse(request, "alerts/list.html", context)


@login_required
@require_POST
def subscription(request: HttpRequest) -> HttpResponse:
    """Subscribe or unsubscribe oneself (action "unsubscribe"), or change one's topics."""
    _ops_or_admin(request)
    user: User = request.user  # type: ignore[assignment]
    back = reverse("alerts") + "#subscription"
    if request.POST.get("action") == "unsubscribe":
        if alert_channels.email_unsubscribe(user=user):
            messages.success(request, "Unsubscribed: you get no more alert e-mails.")
        else:
            messages.success(request, "You were not subscribed.")
        return redirect(back)
    form = SubscriptionForm(request.POST)
    if not form.is_valid():  # only a forged topic can make it so
        messages.error(request, "Nothing was saved: choose topics from the list.")
        return redirect(back)
    change = alert_channels.email_subscribe(user=user, topics=form.cleaned_data["topics"])
    topics = alert_channels.topics_words(change.channel.topics)
    address = user.email or "your address (you have none yet: ask an admin to add one)"
    if change.made:
        messages.success(request, f"Subscribed: alert e-mails about {topics} go to {address}.")
    elif change.changed:
        messages.success(request, f"Saved: you get alert e-mails about {topics}.")
    else:
        messages.success(request, "Nothing was changed.")
    return redirect(back)


# --- Settings → Alerts -----------------------------------------------------------------------


def _webhook_rows() -> list[dict[str, Any]]:
    latest = AlertDelivery.objects.filter(channel=OuterRef("pk")).order_by("-id")
    webhooks = list(
        AlertChannel.objects.filter(kind=AlertChannel.Kind.WEBHOOK)
        .annotate(last_delivery_id=Subquery(latest.values("id")[:1]))
        .order_by("name", "id")
    )
    last = AlertDelivery.objects.in_bulk(
        [w.last_delivery_id for w in webhooks if w.last_delivery_id]
    )
    now = timezone.now()
    rows = []
    for webhook in webhooks:
        delivery = last.get(webhook.last_delivery_id)
        rows.append(
            {
                "channel": webhook,
                "topics": alert_channels.topics_words(webhook.topics),
                "last": delivery,
                "last_state": delivery_state(delivery, now) if delivery is not None else None,
            }
        )
    return rows


@login_required
@admin_required
def settings_alerts(request: HttpRequest) -> HttpResponse:
    """The page, and the form that adds a webhook."""
    form = WebhookForm(request.POST or None)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            channel = alert_channels.webhook_add(
                name=form.cleaned_data["name"],
                url=form.cleaned_data["url"],
                topics=form.cleaned_data["topics"],
                actor=request.user,
            )
            messages.success(
                request,
                f"Webhook {channel.name} added: it gets alerts about "
                f"{alert_channels.topics_words(channel.topics)}. Send it a test message to "
                "see that it takes them.",
            )
            return redirect(reverse("settings:alerts") + f"#webhook-{channel.pk}")
        status = 400
    subscribers = [
        {"channel": channel, "topics": alert_channels.topics_words(channel.topics)}
        for channel in AlertChannel.objects.filter(kind=AlertChannel.Kind.EMAIL)
        .select_related("user")
        .order_by("user__username")
    ]
    return _settings_page(
        request,
        "settings/alerts.html",
        "alerts",
        {
            "form": form,
            "subscribers": subscribers,
            "webhooks": _webhook_rows(),
            "last_test": request.session.pop("webhook-test", None),
            "mail_transport": mail_transport(),
            "mail_is_sent": mail_is_sent(),
            "subscribed": alert_channels.subscription_of(request.user) is not None,
        },
        status,
    )


def _webhook(webhook_id: int) -> AlertChannel:
    return get_object_or_404(AlertChannel, pk=webhook_id, kind=AlertChannel.Kind.WEBHOOK)


@login_required
@admin_required
def webhook_edit(request: HttpRequest, webhook_id: int) -> HttpResponse:
    channel = _webhook(webhook_id)
    form = WebhookForm(request.POST or None, channel=channel)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            said = alert_channels.webhook_change(
                channel=channel,
                name=form.cleaned_data["name"],
                url=form.cleaned_data["url"],
                topics=form.cleaned_data["topics"],
                active=form.cleaned_data["active"],
                actor=request.user,
            )
            messages.success(
                request,
                f"Webhook {channel.name}: saved {', '.join(said)}."
                if said
                else "Nothing was changed.",
            )
            return redirect(reverse("settings:alerts") + f"#webhook-{channel.pk}")
        status = 400
    return _settings_page(
        request,
        "settings/webhook_form.html",
        "alerts",
        {"form": form, "webhook": channel},
        status,
    )


@require_POST
@login_required
@admin_required
def webhook_test(request: HttpRequest, webhook_id: int) -> HttpResponse:
    channel = _webhook(webhook_id)
    result = alert_channels.webhook_test(channel=channel, actor=request.user)
    # Shown once (the session, so a reload does not send again).
    request.session["webhook-test"] = {
        "webhook_id": channel.pk,
        "name": channel.name,
        "url_host": channel.url_host,
        "outcome": result.outcome,
        "ok": result.ok,
        "words": result.words,
        "detail": result.detail,
        "elapsed_ms": result.elapsed_ms,
    }
    return redirect(reverse("settings:alerts") + "#webhook-test")


@require_POST
@login_required
@admin_required
def webhook_active(request: HttpRequest, webhook_id: int) -> HttpResponse:
    """Turn a webhook on or off ("active": "1" or "0") without touching the rest."""
    channel = _webhook(webhook_id)
    active = request.POST.get("active") == "1"
    if alert_channels.webhook_change(
        channel=channel,
        name=channel.name,
        url="",
        topics=channel.topics,
        active=active,
        actor=request.user,
    ):
        messages.success(
            request,
            f"Webhook {channel.name} turned on: it gets new alerts."
            if active
            else f"Webhook {channel.name} turned off: it gets no new alert.",
        )
    return redirect(reverse("settings:alerts") + f"#webhook-{channel.pk}")


@require_POST
@login_required
@admin_required
def webhook_remove(request: HttpRequest, webhook_id: int) -> HttpResponse:
    channel = _webhook(webhook_id)
    name = channel.name
    alert_channels.webhook_remove(channel=channel, actor=request.user)
    messages.success(
        request, f"Webhook {name} removed. The messages it was sent stay in the alerts' history."
    )
    return redirect("settings:alerts")


@require_POST
@login_required
@admin_required
def subscriber_remove(request: HttpRequest, subscriber_id: int) -> HttpResponse:
    channel = get_object_or_404(
        AlertChannel.objects.select_related("user"),
        pk=subscriber_id,
        kind=AlertChannel.Kind.EMAIL,
    )
    who = channel.user.get_username() if channel.user is not None else "The subscriber"
    alert_channels.subscriber_remove(channel=channel, actor=request.user)
    messages.success(request, f"{who} gets no more alert e-mails.")
    return redirect(reverse("settings:alerts") + "#subscribers")
