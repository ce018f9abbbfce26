"""Forms of the import pages: the upload and the history filters."""

from __future__ import annotations

import secrets
from typing import Any

from django import forms
from django.contrib.auth import get_user_model
from django.db.models import QuerySet

from connectadmin.models import AppKey, AttentiveAccount
from signals_app.models import ImportKind, ImportMode, ImportStatus
from signals_app.services.upload import EVENTS_ARE_LIVE, app_key_refusal

LIVE_PERMISSION = "Ask an admin for the “send live” permission."

# A hint for the file chooser; the format itself is detected from the content (SPEC §5).
ACCEPTED_SUFFIXES = (".json", ".ndjson", ".jsonl", ".csv", ".gz")


class AppKeyChoiceField(forms.ModelChoiceField[AppKey]):
    def label_from_instance(self, obj: AppKey) -> str:
        """ "shop-web · Ultimate · Shop EU": the key, its tier, its account; the key's label
        only when it says something the account's name does not."""
        parts = [obj.key]
        if obj.label and obj.label.lower() not in obj.account.name.lower():
            parts.append(obj.label)
        return " · ".join([*parts, obj.get_tier_display(), obj.account.name])

    def to_python(self, value: Any) -> AppKey | None:
        """Active keys only are offered; one deactivated while the form was open is
        refused in the words the command line and the import page use."""
        try:
            return super().to_python(value)
        except forms.ValidationError as exc:
            if exc.code != "invalid_choice" or not str(value or "").isdigit():
                raise
            inactive = AppKey.objects.filter(pk=int(value), active=False).first()
            if inactive is None:
                raise
            raise forms.ValidationError(app_key_refusal(inactive), code="inactive") from None


def new_idempotency_key() -> str:
    return secrets.token_urlsafe(24)


class ImportUploadForm(forms.Form):
    file = forms.FileField(
        label="File to check",
        help_text="JSON, NDJSON / JSON Lines or CSV, optionally gzipped (.gz).",
        widget=forms.ClearableFileInput(attrs={"accept": ",".join(ACCEPTED_SUFFIXES)}),
        error_messages={
            "required": "Choose a file of signals to upload.",
            "empty": "The file is empty: there is nothing to import.",
        },
    )
    kind = forms.ChoiceField(
        label="The file holds",
        choices=ImportKind.choices,
        initial=ImportKind.SIGNALS,
        required=False,  # signals, unless events are chosen (the only kind without accounts)
        widget=forms.RadioSelect,
    )
    app_key = AppKeyChoiceField(
        label="Application key",
        queryset=AppKey.objects.none(),
        required=False,
        empty_label="Choose an application key",
        help_text="Fills a missing appKey in the file; its tier decides which signal types pass.",
    )
    attentive_account = forms.ModelChoiceField(
        label="Attentive account",
        queryset=AttentiveAccount.objects.none(),
        required=False,
        empty_label="Choose an Attentive account",
        help_text=(
            "Each line an event: type, user, properties, externalEventId, occurredAt. "
            "Checked against Attentive's rules; sent only when you press Send."
        ),
    )
    mode = forms.ChoiceField(
        label="Send as",
        choices=ImportMode.choices,
        initial=ImportMode.TEST,
        widget=forms.RadioSelect,
    )
    # One token per rendered form: a double-clicked submit creates one import, not two.
    idempotency_key = forms.CharField(widget=forms.HiddenInput, max_length=64)

    def __init__(self, *args: Any, can_send_live: bool, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.can_send_live = can_send_live
        field = self.fields["app_key"]
        assert isinstance(field, AppKeyChoiceField)
        field.queryset = AppKey.objects.filter(active=True).select_related("account")
        accounts = self.fields["attentive_account"]
        assert isinstance(accounts, forms.ModelChoiceField)
        accounts.queryset = AttentiveAccount.objects.order_by("name")
        if not self.is_bound:
            self.initial.setdefault("idempotency_key", new_idempotency_key())

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        data["kind"] = data.get("kind") or ImportKind.SIGNALS
        if data["kind"] == ImportKind.EVENTS:
            # Attentive has no test mode: a file of events is a live import.
            data["app_key"] = None
            data["mode"] = ImportMode.LIVE
            self.errors.pop("mode", None)
            if not self.can_send_live:
                self.add_error("kind", f"{EVENTS_ARE_LIVE} {LIVE_PERMISSION}")
            if not data.get("attentive_account") and "attentive_account" not in self.errors:
                self.add_error(
                    "attentive_account", "Choose the Attentive account these events are for."
                )
            return data
        data["attentive_account"] = None
        if not data.get("app_key") and "app_key" not in self.errors:
            self.add_error("app_key", "Choose the application key these signals belong to.")
        if data.get("mode") == ImportMode.LIVE and not self.can_send_live:
            self.add_error("mode", f"You may only send test imports. {LIVE_PERMISSION}")
        return data


SORTS = {
    "created": "created_at",
    "file": "original_name",
    "user": "created_by__username",
    "app_key": "app_key__key",
    "mode": "mode",
    "status": "status",
    "signals": "signals",
    "rejected": "rejected",
    "accepted": "accepted",
}


class HistoryFilterForm(forms.Form):
    user = forms.ModelChoiceField(
        label="User", queryset=get_user_model().objects.none(), required=False, empty_label="Anyone"
    )
    app_key = forms.ModelChoiceField(
        label="App key", queryset=AppKey.objects.all(), required=False, empty_label="Any key"
    )
    mode = forms.ChoiceField(
        label="Test / live", choices=[("", "Test and live"), *ImportMode.choices], required=False
    )
    status = forms.ChoiceField(
        label="Status", choices=[("", "Any status"), *ImportStatus.choices], required=False
    )
    since = forms.DateField(
        label="From", required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    until = forms.DateField(
        label="To", required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    sort = forms.ChoiceField(
        choices=[(f"{d}{k}", k) for k in SORTS for d in ("", "-")],
        required=False,
        widget=forms.HiddenInput,
    )

    def __init__(self, *args: Any, users: QuerySet[Any] | None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if users is None:  # a marketer sees only their own imports: no user filter
            del self.fields["user"]
        else:
            field = self.fields["user"]
            assert isinstance(field, forms.ModelChoiceField)
            field.queryset = users

    def clean(self) -> dict[str, Any] | None:
        data = super().clean() or {}
        since, until = data.get("since"), data.get("until")
        if since and until and since > until:
            self.add_error("until", "“To” must be on or after “From”.")
        return data
