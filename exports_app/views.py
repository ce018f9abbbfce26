"""Web pages of exports: the SFTP settings (SSH keys, host keys) for admins. HTTP only:
every workflow is a service call."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, Concatenate, ParamSpec

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.views.decorators.http import require_POST

from connectadmin.models import ConnectAccount
from exports_app.forms import KeyImportForm
from exports_app.models import HostKey, HostKeyState, SshKey, SshKeyState
from exports_app.services import hostkeys, keys
from signals_app.access import can_manage_sftp

P = ParamSpec("P")


def admin_required(
    view: Callable[Concatenate[Any, P], HttpResponse],
) -> Callable[Concatenate[Any, P], HttpResponse]:
    @wraps(view)
    def wrapper(request: HttpRequest, *args: P.args, **kwargs: P.kwargs) -> HttpResponse:
        if not can_manage_sftp(request.user):
            raise PermissionDenied("Only administrators manage SSH keys and SFTP host keys.")
        return view(request, *args, **kwargs)

    return wrapper


def _settings_url(account: ConnectAccount | None = None) -> str:
    url = reverse("exports:sftp_settings")
    return f"{url}#account-{account.pk}" if account is not None else url


@login_required
@admin_required
def sftp_settings(request: HttpRequest) -> HttpResponse:
    accounts = []
    for account in ConnectAccount.objects.order_by("name"):
        account_keys = list(account.ssh_keys.exclude(state=SshKeyState.RETIRED)[:10])
        host, port = account.sftp_address
        accounts.append(
            {
                "account": account,
                "host": host,
                "port": port,
                "current": next((k for k in account_keys if k.state == SshKeyState.CURRENT), None),
                "keys": account_keys,
                "retired": account.ssh_keys.filter(state=SshKeyState.RETIRED).count(),
                "host_keys": list(HostKey.objects.filter(host=host, port=port)),
                "import_form": KeyImportForm(prefix=f"a{account.pk}"),
            }
        )
    pending = HostKey.objects.filter(state=HostKeyState.PENDING).count()
    return TemplateResponse(
        request, "exports/sftp_settings.html", {"accounts": accounts, "pending": pending}
    )


@require_POST
@login_required
@admin_required
def key_generate(request: HttpRequest, account_id: int) -> HttpResponse:
    account = get_object_or_404(ConnectAccount, pk=account_id)
    key = keys.ssh_key_generate(account=account, user=request.user)
    messages.success(
        request,
        f"New key {key.fingerprint} for {account.name}. Register it with Connect, then test "
        "the SFTP logon.",
    )
    return redirect(_settings_url(account))


@require_POST
@login_required
@admin_required
def key_import(request: HttpRequest, account_id: int) -> HttpResponse:
    account = get_object_or_404(ConnectAccount, pk=account_id)
    form = KeyImportForm(request.POST, prefix=f"a{account.pk}")
    if form.is_valid():
        try:
            key = keys.ssh_key_import(
                account=account, user=request.user, private_key=form.cleaned_data["private_key"]
            )
        except keys.KeyRefused as refused:
            messages.error(request, str(refused))
        else:
            messages.success(
                request,
                f"Key {key.fingerprint} imported for {account.name}. Test the SFTP logon to "
                "make it current.",
            )
    else:
        messages.error(request, "Paste the private key to import.")
    return redirect(_settings_url(account))


@require_POST
@login_required
@admin_required
def key_register(request: HttpRequest, key_id: int) -> HttpResponse:
    key = get_object_or_404(SshKey.objects.select_related("account"), pk=key_id)
    try:
        keys.ssh_key_register(key=key, user=request.user)
    except keys.KeyRefused as refused:
        messages.error(request, str(refused))
    else:
        messages.success(
            request, f"Connect registered {key.fingerprint}. Test the SFTP logon next."
        )
    return redirect(_settings_url(key.account))


@require_POST
@login_required
@admin_required
def key_test(request: HttpRequest, key_id: int) -> HttpResponse:
    key = get_object_or_404(SshKey.objects.select_related("account"), pk=key_id)
    logon = keys.ssh_key_test_logon(key=key, user=request.user)
    (messages.success if logon.ok else messages.error)(request, logon.message)
    return redirect(_settings_url(key.account))


@require_POST
@login_required
@admin_required
def key_rotate(request: HttpRequest, account_id: int) -> HttpResponse:
    account = get_object_or_404(ConnectAccount, pk=account_id)
    new, logon = keys.ssh_key_rotate(account=account, user=request.user)
    if logon.ok:
        messages.success(
            request, f"Rotated: {new.fingerprint} is current; the previous key is retired."
        )
    else:
        messages.error(request, f"The rotation did not complete. {logon.message}")
    return redirect(_settings_url(account))


@require_POST
@login_required
@admin_required
def host_key_decide(request: HttpRequest, host_key_id: int, decision: str) -> HttpResponse:
    host_key = get_object_or_404(HostKey, pk=host_key_id)
    if decision == "approve":
        hostkeys.host_key_approve(host_key=host_key, user=request.user)
        messages.success(
            request, f"{host_key.host}:{host_key.port} approved: {host_key.fingerprint}."
        )
    elif decision == "reject":
        hostkeys.host_key_reject(host_key=host_key, user=request.user)
        messages.success(request, f"{host_key.fingerprint} rejected for {host_key.host}.")
    else:
        raise PermissionDenied("Approve or reject.")
    return redirect(reverse("exports:sftp_settings"))
