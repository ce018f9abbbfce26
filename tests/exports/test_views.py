"""The export pages: who may see and do what."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client

from connectadmin.models import ConnectAccount, Region
from connectadmin.roles import Role
from exports_app.models import HostKey, HostKeyState, SshKey

pytestmark = pytest.mark.django_db


def signed_in(role: Role) -> Client:
    user = User.objects.create_user(f"u-{role}", password="x")
    user.groups.add(Group.objects.get_or_create(name=role)[0])
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def account() -> ConnectAccount:
    return ConnectAccount.objects.create(
        name="Brand A", region=Region.SANDBOX, api_key="k", connect_user_email="a@example.com"
    )


@pytest.mark.parametrize("role", [Role.MARKETER, Role.OPS])
def test_only_admins_manage_sftp_keys(role: Role, account: Any) -> None:
    client = signed_in(role)
    assert client.get("/settings/sftp").status_code == 403
    assert client.post(f"/settings/sftp/{account.pk}/keys/new").status_code == 403
    assert not SshKey.objects.exists()


def test_an_admin_generates_a_key_and_sees_what_to_do_next(account: Any) -> None:
    client = signed_in(Role.ADMIN)
    response = client.post(f"/settings/sftp/{account.pk}/keys/new", follow=True)
    key = SshKey.objects.get()
    page = response.content.decode()
    assert f"New key {key.fingerprint} for Brand A" in page
    assert "Register with Connect" in page
    assert "PRIVATE KEY" not in page  # never shown
    assert key.public_key in page


def test_a_pending_host_key_is_announced_and_approved(account: Any) -> None:
    host_key = HostKey.objects.create(
        host="127.0.0.1",
        port=2222,
        key_type="ssh-ed25519",
        key_base64="AAAA",
        fingerprint="SHA256:x",
    )
    client = signed_in(Role.ADMIN)
    page = client.get("/settings/sftp").content.decode()
    assert "1 SFTP host key waits for your approval" in page
    client.post(f"/settings/sftp/host-keys/{host_key.pk}/approve")
    host_key.refresh_from_db()
    assert host_key.state == HostKeyState.APPROVED


def test_a_pasted_key_that_is_no_key_is_said_so(account: Any) -> None:
    client = signed_in(Role.ADMIN)
    response = client.post(
        f"/settings/sftp/{account.pk}/keys/import",
        {f"a{account.pk}-private_key": "not a key"},
        follow=True,
    )
    assert "This is not an OpenSSH private key" in response.content.decode()
    assert not SshKey.objects.exists()
