"""The forms of the alerts pages (connectadmin.alerts_views): the filter of /alerts, a
person's own subscription, and a webhook (Settings → Alerts)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from django import forms
from django.core.validators import URLValidator
from django.db.models import F, QuerySet

from connectadmin.models import Alert, AlertChannel, AlertState, AlertTopic


def topics_field(**kwargs: Any) -> forms.MultipleChoiceField:
    return forms.MultipleChoiceField(
        choices=AlertTopic.choices,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        **kwargs,
    )


class AlertFilterForm(forms.Form):
    topic = forms.ChoiceField(
        label="Topic", choices=[("", "Every topic"), *AlertTopic.choices], required=False
    )
    state = forms.ChoiceField(
        label="State",
        choices=[("", "Open and cleared"), *AlertState.choices],
        required=False,
    )

    def alerts(self) -> QuerySet[Alert]:
        """Open alerts first (the latest seen first), then cleared ones, the latest cleared
        first."""
        alerts = Alert.objects.order_by(
            F("cleared_at").desc(nulls_first=True), "-last_seen_at", "-id"
        )
        if not self.is_valid():
            return alerts
        if topic := self.cleaned_data["topic"]:
            alerts = alerts.filter(topic=topic)
        if state := self.cleaned_data["state"]:
            alerts = alerts.filter(state=state)
        return alerts

    @property
    def narrowed(self) -> bool:
        return self.is_valid() and any(self.cleaned_data.values())


class SubscriptionForm(forms.Form):
    topics = topics_field(
        label="Topics",
        help_text="None ticked: every topic, and any added later.",
    )


class WriteOnlyURLInput(forms.URLInput):
    """A webhook's address is a secret (Slack's and Teams' carry their token in the path):
    never written into a page, not even back into the field after a mistake elsewhere."""

    def format_value(self, value: Any) -> str | None:
        return None


class WebhookForm(forms.Form):
    """A new webhook (name, address, topics), or a change of one: the stored address is
    never shown; an empty address field keeps it."""

    name = forms.CharField(
        label="Name",
        max_length=100,
        help_text="Where the messages go, for people: “Slack #ops-alerts”, “Teams: Data ops”.",
    )
    url = forms.CharField(
        label="Address (URL)",
        max_length=2000,
        required=False,
        strip=True,
        widget=WriteOnlyURLInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
        help_text="The incoming webhook's address, as Slack or Teams shows it when you add "
        "one: http:// or https://. It is stored encrypted and never shown again, only its "
        "host.",
    )
    topics = topics_field(
        label="Topics",
        help_text="None ticked: every topic, and any added later.",
    )
    active = forms.BooleanField(
        label="Active: send it alerts",
        required=False,
        initial=True,
        help_text="Turned off, it gets no new alert; its history stays.",
    )

    def __init__(self, *args: Any, channel: AlertChannel | None = None, **kwargs: Any) -> None:
        self.channel = channel
        if channel is not None:
            kwargs.setdefault(
                "initial",
                {"name": channel.name, "topics": channel.topics, "active": channel.active},
            )
        super().__init__(*args, **kwargs)
        if channel is None:
            del self.fields["active"]  # a new webhook is active
            self.fields["url"].required = True
            self.fields["url"].error_messages["required"] = (
                "Paste the webhook's address: Slack and Teams show it when you add an "
                "incoming webhook."
            )
        else:
            self.fields["url"].label = "Replace the address"
            self.fields["url"].help_text = (
                f"An address at {channel.url_host} is stored (not shown). Leave this empty "
                "to keep it, or paste a new address to replace it: http:// or https://."
            )

    def clean_url(self) -> str:
        value: str = self.cleaned_data["url"]
        if not value:
            return ""  # a change that keeps the stored address (a new one requires it)
        scheme = urlsplit(value).scheme.lower()
        if scheme not in ("http", "https"):
            # The message never repeats the address: it may hold a token.
            raise forms.ValidationError(
                "Only http:// and https:// addresses can be called: the address must start "
                "with one of them."
            )
        try:
            URLValidator(schemes=["http", "https"])(value)
        except forms.ValidationError as exc:
            raise forms.ValidationError(
                "This is not a valid web address: check that it was pasted whole."
            ) from exc
        return value
