"""Settings for admins (/settings/): Connect accounts, app keys, Attentive accounts, users
and roles. Everyone else is refused with a reason. SFTP keys have their page in
exports_app (/settings/sftp)."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, Concatenate, ParamSpec

from django import forms
from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Count, ProtectedError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import reverse, reverse_lazy
from django.views.decorators.http import require_GET, require_POST

from connectadmin import team
from connectadmin.attentive_accounts import attentive_account_test_connection
from connectadmin.models import AppKey, AttentiveAccount, ConnectAccount
from connectadmin.roles import Role
from connectadmin.settings_forms import (
    AccountForm,
    AppKeyForm,
    AttentiveAccountForm,
    InviteForm,
    UserForm,
)
from signals_app.access import has_role
from signals_app.models import audit

P = ParamSpec("P")
ADMINS_ONLY = (
    "Only administrators change the settings: Connect accounts, app keys, Attentive "
    "accounts, users and roles."
)


def admin_required(
    view: Callable[Concatenate[Any, P], HttpResponse],
) -> Callable[Concatenate[Any, P], HttpResponse]:
    @wraps(view)
    def wrapper(request: HttpRequest, *args: P.args, **kwargs: P.kwargs) -> HttpResponse:
        if not has_role(request.user, Role.ADMIN):
            raise PermissionDenied(ADMINS_ONLY)
        return view(request, *args, **kwargs)

    return wrapper


def _settings_page(
    request: HttpRequest, template: str, section: str, context: dict[str, Any], status: int = 200
) -> TemplateResponse:
    return TemplateResponse(
        request, template, {"settings_section": section, **context}, status=status
    )


def _checking(request: HttpRequest) -> bool:
    """htmx posts the form with `_check` as the admin types (as on the export form): it is
    checked, nothing is saved, and the form alone goes back (its partial)."""
    return request.method == "POST" and request.POST.get("_check") == "1"


def _checked_form(
    request: HttpRequest, template: str, form: forms.BaseForm, **context: Any
) -> HttpResponse:
    form.is_valid()
    return TemplateResponse(request, template, {"form": form, "checking": True, **context})


@require_GET
@login_required
@admin_required
def overview(request: HttpRequest) -> HttpResponse:
    return _settings_page(
        request,
        "settings/overview.html",
        "overview",
        {
            "accounts": ConnectAccount.objects.count(),
            "app_keys": AppKey.objects.filter(active=True).count(),
            "attentive_accounts": AttentiveAccount.objects.count(),
            "users": User.objects.filter(is_active=True).count(),
        },
    )


# --- Connect accounts --------------------------------------------------------------------


@require_GET
@login_required
@admin_required
def accounts(request: HttpRequest) -> HttpResponse:
    rows = ConnectAccount.objects.annotate(app_key_total=Count("app_keys")).order_by("name")
    return _settings_page(request, "settings/accounts.html", "accounts", {"accounts": rows})


def _account_changes(form: AccountForm) -> list[str]:
    return [name for name in form.changed_data if name != "api_key"]


def _changes(before: dict[str, str], after: Any, names: list[str]) -> dict[str, dict[str, str]]:
    """{field: {"before": ..., "after": ...}} for the audit trail (never the API key)."""
    return {
        name: {"before": before.get(name, ""), "after": str(getattr(after, name))} for name in names
    }


def _values(obj: Any, names: list[str]) -> dict[str, str]:
    return {name: str(getattr(obj, name)) for name in names}


def _and(items: list[str]) -> str:
    """ "a", "a and b", "a, b and c"."""
    return ", ".join(items[:-1]) + " and " + items[-1] if len(items) > 1 else "".join(items)


@login_required
@admin_required
def account_new(request: HttpRequest) -> HttpResponse:
    form = AccountForm(request.POST or None, check_only=_checking(request))
    if form.check_only:
        return _checked_form(request, "settings/account_form.html#account-form", form)
    if request.method == "POST":
        if form.is_valid():
            account = form.save()
            audit(
                action="account.created",
                actor=request.user,
                obj=account,
                name=account.name,
                region=account.region,
                endpoint=account.graphql_endpoint,
                connect_user_email=account.connect_user_email,
            )
            messages.success(
                request,
                f"Connect account {account.name} added, with its API key stored encrypted. "
                "Test the connection, then add its app keys.",
            )
            return redirect("settings:account_edit", account_id=account.pk)
        return _account_form(request, form, None, status=400)
    return _account_form(request, form, None)


@login_required
@admin_required
def account_edit(request: HttpRequest, account_id: int) -> HttpResponse:
    account = get_object_or_404(ConnectAccount, pk=account_id)
    before = _values(account, ["name", "region", "graphql_endpoint", "connect_user_email"])
    form = AccountForm(request.POST or None, instance=account, check_only=_checking(request))
    if form.check_only:
        return _checked_form(
            request, "settings/account_form.html#account-form", form, account=account
        )
    if request.method == "POST":
        if form.is_valid():
            key_replaced = bool(form.cleaned_data.get("api_key"))
            changed = _account_changes(form)
            account = form.save()
            if changed:
                audit(
                    action="account.updated",
                    actor=request.user,
                    obj=account,
                    changes=_changes(before, account, changed),
                )
            if key_replaced:
                audit(action="account.key_replaced", actor=request.user, obj=account)
            said = ", ".join(str(form[name].label) for name in changed)
            if key_replaced:
                said = f"{said} and the API key" if said else "the API key"
            messages.success(
                request, f"{account.name}: saved {said}." if said else "Nothing was changed."
            )
            return redirect("settings:account_edit", account_id=account.pk)
        return _account_form(request, form, account, status=400)
    return _account_form(request, form, account)


def _account_form(
    request: HttpRequest,
    form: AccountForm,
    account: ConnectAccount | None,
    status: int = 200,
) -> TemplateResponse:
    context: dict[str, Any] = {"form": form, "account": account}
    if account is not None:
        host, port = account.sftp_address
        context.update(
            sftp_host=host,
            sftp_port=port,
            app_keys=list(account.app_keys.all()),
            last_test=request.session.pop(f"connection-test-{account.pk}", None),
        )
    return _settings_page(request, "settings/account_form.html", "accounts", context, status)


@require_POST
@login_required
@admin_required
def account_test(request: HttpRequest, account_id: int) -> HttpResponse:
    account = get_object_or_404(ConnectAccount, pk=account_id)
    result = team.account_test_connection(account=account, actor=request.user)
    # Shown once on the account's page (the session, so a reload does not test again).
    request.session[f"connection-test-{account.pk}"] = {
        "outcome": result.outcome,
        "words": result.words,
        "detail": result.detail,
        "elapsed_ms": result.elapsed_ms,
        "http_status": result.http_status,
        "endpoint": account.graphql_endpoint,
    }
    return redirect(reverse("settings:account_edit", args=[account.pk]) + "#connection-test")


# --- App keys ----------------------------------------------------------------------------


@require_GET
@login_required
@admin_required
def app_keys(request: HttpRequest) -> HttpResponse:
    rows = AppKey.objects.select_related("account").order_by("account__name", "key")
    return _settings_page(
        request,
        "settings/app_keys.html",
        "app_keys",
        {"app_keys": rows, "has_accounts": ConnectAccount.objects.exists()},
    )


@login_required
@admin_required
def app_key_new(request: HttpRequest) -> HttpResponse:
    initial = {}
    if (account_id := request.GET.get("account", "").strip()).isdigit():
        initial["account"] = account_id
    form = AppKeyForm(request.POST or None, initial=initial, check_only=_checking(request))
    if form.check_only:
        return _checked_form(request, "settings/app_key_form.html#app-key-form", form)
    if request.method == "POST":
        if form.is_valid():
            app_key = form.save()
            audit(
                action="appkey.created",
                actor=request.user,
                obj=app_key,
                key=app_key.key,
                label=app_key.label,
                tier=app_key.tier,
                account=app_key.account.name,
                active=app_key.active,
            )
            messages.success(request, f"App key {app_key.key} added to {app_key.account.name}.")
            return redirect("settings:app_keys")
        return _app_key_form(request, form, None, status=400)
    return _app_key_form(request, form, None)


@login_required
@admin_required
def app_key_edit(request: HttpRequest, app_key_id: int) -> HttpResponse:
    app_key = get_object_or_404(AppKey.objects.select_related("account"), pk=app_key_id)
    before = _values(app_key, ["key", "label", "tier", "account", "active"])
    form = AppKeyForm(request.POST or None, instance=app_key, check_only=_checking(request))
    if form.check_only:
        return _checked_form(
            request, "settings/app_key_form.html#app-key-form", form, app_key=app_key
        )
    if request.method == "POST":
        if form.is_valid():
            changed = list(form.changed_data)
            app_key = form.save()
            if changed:
                action = "appkey.updated"
                if changed == ["active"]:
                    action = "appkey.reactivated" if app_key.active else "appkey.deactivated"
                audit(
                    action=action,
                    actor=request.user,
                    obj=app_key,
                    key=app_key.key,
                    changes=_changes(before, app_key, changed),
                )
                messages.success(
                    request,
                    f"App key {app_key.key}: saved "
                    + ", ".join(str(form[name].label).lower() for name in changed)
                    + "."
                    + (
                        ""
                        if app_key.active
                        else " It can no longer be chosen for a new import or send."
                    ),
                )
            else:
                messages.success(request, "Nothing was changed.")
            return redirect("settings:app_keys")
        return _app_key_form(request, form, app_key, status=400)
    return _app_key_form(request, form, app_key)


def _app_key_form(
    request: HttpRequest, form: AppKeyForm, app_key: AppKey | None, status: int = 200
) -> TemplateResponse:
    return _settings_page(
        request,
        "settings/app_key_form.html",
        "app_keys",
        {"form": form, "app_key": app_key, "has_accounts": ConnectAccount.objects.exists()},
        status,
    )


# --- Attentive accounts ------------------------------------------------------------------

ATTENTIVE_FIELDS = {
    "name": "the name",
    "graphql_endpoint": "the endpoint",
    "rate_limit": "the rate limit",
}


@require_GET
@login_required
@admin_required
def attentive_accounts(request: HttpRequest) -> HttpResponse:
    return _settings_page(
        request,
        "settings/attentive_accounts.html",
        "attentive",
        {"accounts": AttentiveAccount.objects.order_by("name")},
    )


@login_required
@admin_required
def attentive_account_new(request: HttpRequest) -> HttpResponse:
    form = AttentiveAccountForm(request.POST or None, check_only=_checking(request))
    if form.check_only:
        return _checked_form(request, "settings/attentive_account_form.html#attentive-form", form)
    if request.method == "POST":
        if form.is_valid():
            account = form.save()
            audit(
                action="account.attentive_created",
                actor=request.user,
                obj=account,
                name=account.name,
                endpoint=account.graphql_endpoint,
                rate_limit=account.rate_limit,
            )
            messages.success(
                request,
                f"Attentive account {account.name} added, with its API key stored encrypted. "
                "Test the connection below.",
            )
            return redirect("settings:attentive_account_edit", attentive_id=account.pk)
        return _attentive_form(request, form, None, status=400)
    return _attentive_form(request, form, None)


@login_required
@admin_required
def attentive_account_edit(request: HttpRequest, attentive_id: int) -> HttpResponse:
    account = get_object_or_404(AttentiveAccount, pk=attentive_id)
    before = _values(account, list(ATTENTIVE_FIELDS))
    form = AttentiveAccountForm(
        request.POST or None, instance=account, check_only=_checking(request)
    )
    if form.check_only:
        return _checked_form(
            request, "settings/attentive_account_form.html#attentive-form", form, account=account
        )
    if request.method == "POST":
        if form.is_valid():
            key_replaced = bool(form.cleaned_data.get("api_key"))
            account = form.save()
            # What really changed (an empty rate limit or endpoint keeps what it was).
            changed = [
                name for name in ATTENTIVE_FIELDS if before[name] != str(getattr(account, name))
            ]
            if changed:
                audit(
                    action="account.attentive_updated",
                    actor=request.user,
                    obj=account,
                    name=account.name,
                    changes=_changes(before, account, changed),
                )
            if key_replaced:
                audit(
                    action="account.attentive_key_replaced",
                    actor=request.user,
                    obj=account,
                    name=account.name,
                )
            said = [ATTENTIVE_FIELDS[name] for name in changed]
            said += ["the API key"] if key_replaced else []
            messages.success(
                request,
                f"{account.name}: saved {_and(said)}." if said else "Nothing was changed.",
            )
            return redirect("settings:attentive_account_edit", attentive_id=account.pk)
        return _attentive_form(request, form, account, status=400)
    return _attentive_form(request, form, account)


def _attentive_form(
    request: HttpRequest,
    form: AttentiveAccountForm,
    account: AttentiveAccount | None,
    status: int = 200,
) -> TemplateResponse:
    context: dict[str, Any] = {"form": form, "account": account}
    if account is not None:
        context["last_test"] = request.session.pop(f"attentive-test-{account.pk}", None)
    return _settings_page(
        request, "settings/attentive_account_form.html", "attentive", context, status
    )


@require_POST
@login_required
@admin_required
def attentive_account_test(request: HttpRequest, attentive_id: int) -> HttpResponse:
    account = get_object_or_404(AttentiveAccount, pk=attentive_id)
    result = attentive_account_test_connection(account=account, actor=request.user)
    # Shown once on the account's page (the session, so a reload does not test again).
    request.session[f"attentive-test-{account.pk}"] = {
        "outcome": result.outcome,
        "ok": result.ok,
        "words": result.words,
        "detail": result.detail,
        "elapsed_ms": result.elapsed_ms,
        "http_status": result.http_status,
        "endpoint": account.graphql_endpoint,
    }
    return redirect(
        reverse("settings:attentive_account_edit", args=[account.pk]) + "#connection-test"
    )


@require_POST
@login_required
@admin_required
def attentive_account_delete(request: HttpRequest, attentive_id: int) -> HttpResponse:
    account = get_object_or_404(AttentiveAccount, pk=attentive_id)
    edit_url = reverse("settings:attentive_account_edit", args=[account.pk])
    if request.POST.get("confirm") != "1":
        messages.error(request, f"Tick the box to confirm that {account.name} goes.")
        return redirect(edit_url + "#delete")
    name = account.name
    try:
        with transaction.atomic():  # refused: nothing deleted, nothing recorded
            audit(
                action="account.attentive_deleted",
                actor=request.user,
                obj=account,
                name=name,
                endpoint=account.graphql_endpoint,
            )
            account.delete()
    except ProtectedError as exc:
        used_by = sorted({str(obj._meta.verbose_name_plural) for obj in exc.protected_objects})
        messages.error(
            request,
            f"{name} is not deleted: {', '.join(used_by)} still use it, and their history "
            "must keep saying where they went.",
        )
        return redirect(edit_url + "#delete")
    messages.success(request, f"Attentive account {name} deleted, with its stored API key.")
    return redirect("settings:attentive_accounts")


# --- Users and roles ---------------------------------------------------------------------


@login_required
@admin_required
def users(request: HttpRequest) -> HttpResponse:
    form = InviteForm(request.POST or None, check_only=_checking(request))
    if form.check_only:
        return _checked_form(request, "settings/users.html#invite-form", form)
    invited: dict[str, str] | None = None
    status = 200
    if request.method == "POST":
        if form.is_valid():
            user = team.user_invite(
                username=form.cleaned_data["username"],
                email=form.cleaned_data["email"],
                role=form.cleaned_data["role"],
                send_live=form.cleaned_data["send_live"],
                actor=request.user,  # type: ignore[arg-type]
            )
            invited = _send_invitation(request, user)
            form = InviteForm()
        else:
            status = 400
    rows = []
    for user in User.objects.prefetch_related("groups").order_by("username"):
        rows.append(
            {
                "user": user,
                "role": team.role_of(user),
                "send_live": team.may_send_live(user),
                "invited": not user.has_usable_password(),
            }
        )
    return _settings_page(
        request,
        "settings/users.html",
        "users",
        {"rows": rows, "form": form, "invited": invited},
        status,
    )


def _send_invitation(request: HttpRequest, user: User) -> dict[str, str]:
    uidb64, token = team.invite_path(user)
    link = request.build_absolute_uri(
        reverse("invite_accept", kwargs={"uidb64": uidb64, "token": token})
    )
    mail_error = team.invite_send(user=user, link=link, actor=request.user)  # type: ignore[arg-type]
    return {
        "username": user.get_username(),
        "email": user.email,
        "link": link,
        "mail_error": mail_error,
    }


@require_POST
@login_required
@admin_required
def user_invite_again(request: HttpRequest, user_id: int) -> HttpResponse:
    """A new one-time link for an invitee who has not set a password (a lost e-mail)."""
    user = get_object_or_404(User, pk=user_id)
    if user.has_usable_password() or not user.is_active or not user.email:
        messages.error(
            request,
            f"{user.get_username()} is not waiting for an invitation: only an active user "
            "with an e-mail address and no password yet gets a new link.",
        )
        return redirect("settings:user_edit", user_id=user.pk)
    request.session[f"invitation-{user.pk}"] = _send_invitation(request, user)
    audit(action="user.invite_resent", actor=request.user, obj=user, email=user.email)
    return redirect("settings:user_edit", user_id=user.pk)


@login_required
@admin_required
def user_edit(request: HttpRequest, user_id: int) -> HttpResponse:
    user = get_object_or_404(User, pk=user_id)
    actor: User = request.user  # type: ignore[assignment]
    form = UserForm(request.POST or None, user=user, actor=actor)
    if _checking(request):  # no field to type in: the guards are said at once
        return _checked_form(request, "settings/user_form.html#user-form", form)
    if request.method == "POST":
        if form.is_valid():
            try:
                changes = team.user_update(
                    user=user,
                    email=form.cleaned_data["email"],
                    role=form.cleaned_data["role"],
                    send_live=form.cleaned_data["send_live"],
                    active=form.cleaned_data["active"],
                    actor=actor,
                )
            except team.LastAdminError as exc:
                form.add_error(None, str(exc))
                user.refresh_from_db()
            else:
                said = ", ".join(changes)
                messages.success(
                    request, f"{user.get_username()}: {said}." if said else "Nothing was changed."
                )
                return redirect("settings:users")
        status = 400
    else:
        status = 200
    return _settings_page(
        request,
        "settings/user_form.html",
        "users",
        {
            "form": form,
            "person": user,
            "is_self": user.pk == actor.pk,
            "invited": not user.has_usable_password(),
            "invitation": request.session.pop(f"invitation-{user.pk}", None),
        },
        status,
    )


class InviteAcceptView(auth_views.PasswordResetConfirmView):
    """The invitee's one-time link: Django's password-reset confirmation with the invite
    tokens; once the password is set the link is spent (the token hashes the password)."""

    template_name = "settings/invite_accept.html"
    token_generator = team.invite_tokens
    post_reset_login = True
    post_reset_login_backend = "django.contrib.auth.backends.ModelBackend"
    success_url = reverse_lazy("home")
    reset_url_token = "set-password"

    def get_user(self, uidb64: str) -> Any:
        user = super().get_user(uidb64)
        # A user deactivated since the invitation cannot use it.
        return user if user is not None and user.is_active else None

    def form_valid(self, form: Any) -> HttpResponse:
        response = super().form_valid(form)
        audit(action="user.password_set", actor=form.user, obj=form.user)
        messages.success(self.request, "Your password is set and you are signed in.")
        return response


invite_accept = InviteAcceptView.as_view()
