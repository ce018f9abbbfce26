from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.admin.widgets import AdminURLFieldWidget
from django.db.models import Count, QuerySet
from django.http import HttpRequest

from connectadmin.models import AppKey, AttentiveAccount, ConnectAccount
from connectadmin.settings_forms import AttentiveAccountForm

STORED_KEY_HELP = "A key is stored. Leave blank to keep it, or paste a new key to replace it."


class ConnectAccountForm(forms.ModelForm[ConnectAccount]):
    """The API key is write-only: Connect shows it once, and so do we — never again.

    The field never renders a value; on an existing account a blank field keeps the
    stored key, and the form says only that a key is stored.
    """

    graphql_endpoint = forms.URLField(
        label="GraphQL endpoint",
        required=False,
        max_length=300,
        assume_scheme="https",  # Django 6's default; saying so silences its warning
        widget=AdminURLFieldWidget,
        help_text="Leave blank to use the region's endpoint.",
    )
    api_key = forms.CharField(
        label="API key",
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Connect shows the key once: paste it here. It is stored encrypted and "
        "never displayed again.",
    )

    class Meta:
        model = ConnectAccount
        fields = ["name", "region", "graphql_endpoint", "api_key", "connect_user_email"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The plaintext must not sit in the form's initial data (nor make a blank field
        # look "changed" in the admin history).
        self.initial.pop("api_key", None)
        if self._has_stored_key():
            self.fields["api_key"].help_text = STORED_KEY_HELP

    def _has_stored_key(self) -> bool:
        return self.instance.pk is not None and bool(self.instance.api_key)

    def clean_api_key(self) -> str:
        value: str = self.cleaned_data["api_key"]
        if not value and not self._has_stored_key():
            raise forms.ValidationError("Paste the API key Connect showed you.")
        return value

    def clean(self) -> dict[str, Any] | None:
        cleaned = super().clean()
        if cleaned is not None and cleaned.get("api_key") == "":
            # Absent from cleaned_data, the model field is left as it is (the stored key).
            del cleaned["api_key"]
        return cleaned


class AppKeyInline(admin.TabularInline[AppKey, ConnectAccount]):
    model = AppKey
    fields = ["key", "label", "tier", "active", "created"]
    readonly_fields = ["created"]
    extra = 0


@admin.register(ConnectAccount)
class ConnectAccountAdmin(admin.ModelAdmin[ConnectAccount]):
    form = ConnectAccountForm
    list_display = ["name", "region", "graphql_endpoint", "connect_user_email", "app_key_count"]
    list_filter = ["region"]
    search_fields = ["name", "connect_user_email", "app_keys__key", "app_keys__label"]
    readonly_fields = ["created", "updated"]
    fieldsets = [
        (None, {"fields": ["name", "region", "graphql_endpoint"]}),
        ("Credentials", {"fields": ["api_key", "connect_user_email"]}),
        ("History", {"fields": ["created", "updated"]}),
    ]
    inlines = [AppKeyInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet[ConnectAccount]:
        return super().get_queryset(request).annotate(app_key_total=Count("app_keys"))

    @admin.display(description="app keys", ordering="app_key_total")
    def app_key_count(self, account: ConnectAccount) -> int:
        return account.app_key_total  # type: ignore[attr-defined]


@admin.register(AppKey)
class AppKeyAdmin(admin.ModelAdmin[AppKey]):
    list_display = ["key", "label", "tier", "account", "active", "created"]
    list_filter = ["tier", "active", "account__region", "account"]
    list_select_related = ["account"]
    search_fields = ["key", "label", "account__name"]
    autocomplete_fields = ["account"]
    readonly_fields = ["created"]


@admin.register(AttentiveAccount)
class AttentiveAccountAdmin(admin.ModelAdmin[AttentiveAccount]):
    # The Settings page's form: the API key write-only, an empty endpoint Attentive's own.
    form = AttentiveAccountForm
    list_display = ["name", "graphql_endpoint", "rate_limit", "updated"]
    search_fields = ["name"]
    readonly_fields = ["created", "updated"]
    fieldsets = [
        (None, {"fields": ["name", "graphql_endpoint", "rate_limit"]}),
        ("Credentials", {"fields": ["api_key"]}),
        ("History", {"fields": ["created", "updated"]}),
    ]
