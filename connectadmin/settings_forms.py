"""The Settings pages' forms: one per page, each with its own checks. The same form class
checks one field at a time as the admin types (htmx posts the form with `_check`, as on
the export form; see exports_app.forms)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth.models import User

from connectadmin.models import (
    ATTENTIVE_ENDPOINT,
    ATTENTIVE_MAX_RATE_LIMIT,
    MAX_BATCHES_IN_FLIGHT,
    AppKey,
    AttentiveAccount,
    ConnectAccount,
    default_endpoint,
)
from connectadmin.roles import Role
from connectadmin.team import active_admins, may_send_live, role_of, send_live_from_role

ROLE_CHOICES = [
    (Role.MARKETER.value, "Marketer: checks files and sends test imports, asks for exports"),
    (Role.OPS.value, "Ops: reviews every import and export, resends batches"),
    (Role.ADMIN.value, "Admin: everything, including these settings and sending live"),
]


class CheckedAsTyped(forms.BaseForm):
    """`check_only`: the form is checked as the admin types. Every check runs; a field not
    typed in yet is not called missing (the export form's rule)."""

    def __init__(self, *args: Any, check_only: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.check_only = check_only

    def full_clean(self) -> None:
        super().full_clean()  # for a ModelForm, with the model's checks (unique, validators)
        if self.check_only and self.is_bound:
            for name in list(self.errors):
                if name in self.fields and not self.data.get(self.add_prefix(name)):
                    del self.errors[name]


class AccountForm(CheckedAsTyped, forms.ModelForm[ConnectAccount]):
    """The API key is write-only: never rendered, never in the form's initial data; on an
    existing account an empty field keeps the stored key."""

    graphql_endpoint = forms.URLField(
        label="Custom GraphQL endpoint",
        required=False,
        max_length=300,
        assume_scheme="https",
        help_text="Leave empty to use the region's Connect host. Fill it in for another "
        "endpoint, such as a sandbox.",
    )
    api_key = forms.CharField(
        label="API key",
        required=False,
        strip=True,
        # hx-preserve: the live check's swap keeps what was typed (it is never sent back).
        widget=forms.PasswordInput(
            render_value=False, attrs={"autocomplete": "new-password", "hx-preserve": "true"}
        ),
        help_text="Connect shows the key once: paste it here. It is stored encrypted and never "
        "shown again.",
    )

    max_batches_in_flight = forms.IntegerField(
        label=ConnectAccount._meta.get_field("max_batches_in_flight").verbose_name.capitalize(),
        required=False,
        min_value=1,
        max_value=MAX_BATCHES_IN_FLIGHT,
        help_text=ConnectAccount._meta.get_field("max_batches_in_flight").help_text,
    )

    class Meta:
        model = ConnectAccount
        fields = [
            "name",
            "region",
            "graphql_endpoint",
            "api_key",
            "connect_user_email",
            "max_batches_in_flight",
        ]
        help_texts = {
            "region": "Decides the Connect API host and the SFTP host of the export files.",
            "connect_user_email": "The Connect user who owns the API key; also the SFTP user "
            "name: 3–100 letters, digits, _ - . or @ (no + and no quotes).",
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.initial.pop("api_key", None)
        self.fields["max_batches_in_flight"].initial = self.instance.max_batches_in_flight
        instance = self.instance
        # The region's own host shows as "empty", so a change of region moves it too.
        if (
            instance.pk is not None
            and instance.region
            and instance.graphql_endpoint == default_endpoint(instance.region)
        ):
            self.initial["graphql_endpoint"] = ""
        if self.has_stored_key:
            self.fields["api_key"].help_text = (
                "A key is stored (not shown). Leave empty to keep it, or paste a new key to "
                "replace it."
            )

    @property
    def has_stored_key(self) -> bool:
        return self.instance.pk is not None and bool(self.instance.api_key)

    def clean_name(self) -> str:
        name: str = self.cleaned_data["name"]
        others = ConnectAccount.objects.exclude(pk=self.instance.pk)
        if others.filter(name__iexact=name).exists():
            raise forms.ValidationError(f"An account named {name} exists already.")
        return name

    def clean_api_key(self) -> str:
        value: str = self.cleaned_data["api_key"]
        if not value and not self.has_stored_key:
            raise forms.ValidationError("Paste the key Connect showed you.")
        return value

    def clean(self) -> dict[str, Any] | None:
        cleaned = super().clean()
        if cleaned is not None and cleaned.get("api_key") == "":
            del cleaned["api_key"]  # absent: the model keeps the stored key
        return cleaned

    def clean_max_batches_in_flight(self) -> int:
        """Left empty: what the account had (a new one: the default)."""
        value = self.cleaned_data.get("max_batches_in_flight")
        return int(value) if value is not None else self.instance.max_batches_in_flight


class AttentiveAccountForm(CheckedAsTyped, forms.ModelForm[AttentiveAccount]):
    """As the Connect account's form: the API key is write-only (never rendered, never in
    the initial data; on an existing account an empty field keeps the stored key), and
    an empty endpoint is Attentive's own."""

    graphql_endpoint = forms.URLField(
        label="Custom GraphQL endpoint",
        required=False,
        max_length=300,
        assume_scheme="https",
        help_text=f"Leave empty for Attentive's own ({ATTENTIVE_ENDPOINT}). Fill it in for "
        "another, such as the local sandbox's (http://127.0.0.1:8765/v1/graphql by default).",
    )
    api_key = forms.CharField(
        label="API key",
        required=False,
        strip=True,
        # hx-preserve: the live check's swap keeps what was typed (it is never sent back).
        widget=forms.PasswordInput(
            render_value=False, attrs={"autocomplete": "new-password", "hx-preserve": "true"}
        ),
        help_text="The key of an Attentive app with the custom events permission: paste it "
        "here. It is stored encrypted and never shown again.",
    )
    rate_limit = forms.IntegerField(
        label=AttentiveAccount._meta.get_field("rate_limit").verbose_name.capitalize(),
        required=False,
        min_value=1,
        max_value=ATTENTIVE_MAX_RATE_LIMIT,
        help_text=AttentiveAccount._meta.get_field("rate_limit").help_text,
    )

    class Meta:
        model = AttentiveAccount
        fields = ["name", "graphql_endpoint", "api_key", "rate_limit"]
        help_texts = {"name": "A name people recognise, such as the Attentive company's."}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.initial.pop("api_key", None)
        self.fields["rate_limit"].initial = self.instance.rate_limit
        if self.instance.graphql_endpoint == ATTENTIVE_ENDPOINT:
            self.initial["graphql_endpoint"] = ""  # Attentive's own shows as "empty"
        if self.has_stored_key:
            self.fields["api_key"].help_text = (
                "A key is stored (not shown). Leave empty to keep it, or paste a new key to "
                "replace it."
            )

    @property
    def has_stored_key(self) -> bool:
        return self.instance.pk is not None and bool(self.instance.api_key)

    def clean_name(self) -> str:
        name: str = self.cleaned_data["name"]
        others = AttentiveAccount.objects.exclude(pk=self.instance.pk)
        if others.filter(name__iexact=name).exists():
            raise forms.ValidationError(f"An Attentive account named {name} exists already.")
        return name

    def clean_graphql_endpoint(self) -> str:
        value: str = self.cleaned_data["graphql_endpoint"]
        return value or ATTENTIVE_ENDPOINT

    def clean_api_key(self) -> str:
        value: str = self.cleaned_data["api_key"]
        if not value and not self.has_stored_key:
            raise forms.ValidationError("Paste the key Attentive showed you.")
        return value

    def clean_rate_limit(self) -> int:
        """Left empty: what the account had (a new one: ATTENTIVE_RATE_LIMIT)."""
        value = self.cleaned_data.get("rate_limit")
        return int(value) if value is not None else self.instance.rate_limit

    def clean(self) -> dict[str, Any] | None:
        cleaned = super().clean()
        if cleaned is not None and cleaned.get("api_key") == "":
            del cleaned["api_key"]  # absent: the model keeps the stored key
        return cleaned


class AppKeyForm(CheckedAsTyped, forms.ModelForm[AppKey]):
    class Meta:
        model = AppKey
        fields = ["key", "label", "tier", "account", "active"]
        labels = {"key": "App key", "account": "Connect account"}
        help_texts = {
            "key": "The application key as Connect shows it; every signal names it in appKey.",
            "label": "A name people recognise, shown next to the key in lists.",
            "tier": "The account's Connect tier: decides which signal types validate for this key.",
            "active": "A deactivated key can no longer be chosen for a new import, and an "
            "import made with it that is not sent yet cannot be sent (sends under way "
            "finish). Imports keep their key, and signals naming it still count as its "
            "account's.",
        }

    def clean_key(self) -> str:
        key: str = self.cleaned_data["key"]
        taken = (
            AppKey.objects.exclude(pk=self.instance.pk)
            .filter(key=key)
            .select_related("account")
            .first()
        )
        if taken is not None:
            state = "" if taken.active else ", deactivated"
            raise forms.ValidationError(
                f"{key} is registered already (for {taken.account.name}{state}); a key is "
                "registered once."
            )
        return key


class InviteForm(CheckedAsTyped, forms.Form):
    username = forms.CharField(label="User name", max_length=150)
    email = forms.EmailField(
        label="E-mail", help_text="The one-time link to set a password is sent here."
    )
    role = forms.ChoiceField(
        label="Role",
        choices=[(value, value.capitalize()) for value, _ in ROLE_CHOICES],
        initial=Role.MARKETER.value,
        help_text="Marketers check files, send test imports and ask for exports; ops review "
        "everything and resend batches; admins do everything, these settings included.",
    )
    send_live = forms.BooleanField(
        label="May send live imports",
        required=False,
        help_text="Admins always may; for a marketer it is a choice.",
    )

    def clean_username(self) -> str:
        username: str = self.cleaned_data["username"].strip()
        username_field = User._meta.get_field("username")
        for validator in username_field.validators:
            try:
                validator(username)
            except forms.ValidationError as exc:
                raise forms.ValidationError(" ".join(exc.messages)) from exc
        if User.objects.filter(username__iexact=username).exists():
            raise forms.ValidationError(f"“{username}” is taken; choose another.")
        return username

    def clean_email(self) -> str:
        email: str = self.cleaned_data["email"].strip()
        if User.objects.filter(email__iexact=email).exists():
            raise forms.ValidationError(
                f"A user with {email} exists already; change that user instead."
            )
        return email


class UserForm(forms.Form):
    """Role, send live and active for one user, with the two guards: the last active admin
    stays an active admin, and nobody removes their own admin role or account."""

    email = forms.EmailField(
        label="E-mail address",
        required=False,
        help_text="Where invitations and the alerts they subscribe to are sent.",
    )
    role = forms.ChoiceField(label="Role", choices=ROLE_CHOICES, widget=forms.RadioSelect)
    send_live = forms.BooleanField(label="May send live imports", required=False)
    active = forms.BooleanField(
        label="Active (may sign in)",
        required=False,
        help_text="A deactivated user cannot sign in; what they did stays in the history.",
    )

    def __init__(self, *args: Any, user: User, actor: User, **kwargs: Any) -> None:
        self.user = user
        self.actor = actor
        kwargs.setdefault(
            "initial",
            {
                "email": user.email,
                "role": role_of(user) or Role.MARKETER.value,
                "send_live": may_send_live(user),
                "active": user.is_active,
            },
        )
        super().__init__(*args, **kwargs)
        role = role_of(user)
        if role and send_live_from_role(role):
            self.fields[
                "send_live"
            ].help_text = (
                f"The {role} role may always send live; the box counts for another role only."
            )
        else:
            self.fields[
                "send_live"
            ].help_text = "A live import reaches real contacts; without this, test imports only."

    def clean_email(self) -> str:
        email: str = self.cleaned_data["email"].strip()
        others = User.objects.exclude(pk=self.user.pk)
        if email and others.filter(email__iexact=email).exists():
            raise forms.ValidationError(f"Another user has {email} already.")
        return email

    def clean(self) -> dict[str, Any] | None:
        cleaned = super().clean()
        if cleaned is None or "role" not in cleaned:
            return cleaned
        losing_admin = cleaned["role"] != Role.ADMIN.value and role_of(self.user) == "admin"
        deactivating = not cleaned.get("active") and self.user.is_active
        changing = losing_admin or deactivating
        admins = active_admins()
        if changing and admins.filter(pk=self.user.pk).exists() and admins.count() <= 1:
            self.add_error(
                "role" if losing_admin else "active",
                f"{self.user.get_username()} is the last active admin. Without one nobody can "
                "manage accounts, app keys and users: make another user admin first.",
            )
        elif changing and self.user.pk == self.actor.pk:
            raise forms.ValidationError(
                "You cannot take away your own admin role or deactivate your own account: you "
                "would lock yourself out of these settings. Ask another admin to do it."
            )
        if "role" in cleaned and send_live_from_role(cleaned["role"]):
            cleaned["send_live"] = True  # the role grants it; the box is not a choice then
        return cleaned
