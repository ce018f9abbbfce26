"""SSH keys generated, registered, tried, rotated and imported; host keys pinned — against
the sandbox's SFTP server (Connect's stand-in) and OpenSSH's sshd."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection

from connectadmin.models import ConnectAccount, Region
from exports_app.models import HostKey, HostKeyState, SshKey, SshKeyState
from exports_app.services import hostkeys, keys
from exports_app.sftp_client import (
    HostKeyRefused,
    SftpError,
    SftpTarget,
    fingerprint,
    session,
)
from signals_app.models import AuditEvent
from tests.exports.sshd import Sshd
from tests.sandbox.support import ULTIMATE_EMAIL, ULTIMATE_KEY, Sandbox, make_key

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin() -> User:
    return User.objects.create_superuser("root-admin", password="x")


def sandbox_account(sandbox: Sandbox) -> ConnectAccount:
    return ConnectAccount.objects.create(
        name="Sandbox ultimate",
        region=Region.SANDBOX,
        graphql_endpoint=f"{sandbox.url}/graphql",
        api_key=ULTIMATE_KEY,
        connect_user_email=ULTIMATE_EMAIL,
        sftp_host="127.0.0.1",
        sftp_port=sandbox.sftp_port,
    )


def test_a_generated_key_is_registered_pinned_and_logs_on(sandbox: Sandbox, admin: Any) -> None:
    account = sandbox_account(sandbox)
    key = keys.ssh_key_generate(account=account, user=admin)
    assert key.public_key.startswith("ssh-ed25519 ") and key.public_key.endswith(
        " Acoustic Connect key"
    )
    assert key.fingerprint == fingerprint(key.public_key.split()[1])
    assert "PRIVATE KEY" in key.private_key
    with connection.cursor() as cursor:  # encrypted at rest: the column holds no key text
        cursor.execute(f"SELECT private_key FROM {SshKey._meta.db_table} WHERE id = %s", [key.pk])
        assert "PRIVATE KEY" not in cursor.fetchone()[0]

    keys.ssh_key_register(key=key, user=admin)
    key.refresh_from_db()
    assert key.state == SshKeyState.REGISTERED and key.registered_at is not None
    assert key.connect_answer == "Connect registered this key."

    # The host is new: its key waits for approval and nothing is downloaded.
    logon = keys.ssh_key_test_logon(key=key, user=admin)
    assert not logon.ok
    assert "is not approved yet" in logon.message
    pending = HostKey.objects.get()
    assert (pending.host, pending.port, pending.state) == (
        "127.0.0.1",
        sandbox.sftp_port,
        HostKeyState.PENDING,
    )
    assert pending.fingerprint == fingerprint(sandbox.host_key.split()[1])
    key.refresh_from_db()
    assert key.state == SshKeyState.REGISTERED  # not current until it has logged on

    hostkeys.host_key_approve(host_key=pending, user=admin)
    logon = keys.ssh_key_test_logon(key=key, user=admin)
    assert logon.ok, logon.message
    assert logon.message.startswith(f"Logged on as {ULTIMATE_EMAIL}")
    key.refresh_from_db()
    assert key.state == SshKeyState.CURRENT and key.first_logon_at is not None


def test_rotation_makes_the_new_key_current_once_it_logged_on(sandbox: Sandbox, admin: Any) -> None:
    account = sandbox_account(sandbox)
    old = current_key_of(account, admin)
    new, logon = keys.ssh_key_rotate(account=account, user=admin)
    assert logon.ok, logon.message
    old.refresh_from_db()
    new.refresh_from_db()
    assert (new.state, old.state) == (SshKeyState.CURRENT, SshKeyState.RETIRED)
    assert old.private_key == "" and old.retired_at is not None  # wiped once retired
    # Connect holds the new key only: the old one is refused.
    with (
        pytest.raises(SftpError, match="refused the logon"),
        session(
            SftpTarget("127.0.0.1", sandbox.sftp_port, ULTIMATE_EMAIL, new_private(old)),
            hostkeys.check_host_key,
        ),
    ):
        pass
    assert AuditEvent.objects.filter(action="ssh_key.rotated").exists()


def new_private(key: SshKey) -> str:
    """A retired key's private part is gone; make one up of the same shape (never Connect's)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    return (
        ed25519.Ed25519PrivateKey.generate()
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
        .decode()
    )


def test_a_rotation_whose_key_cannot_log_on_keeps_the_old_key(
    sandbox: Sandbox, admin: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    account = sandbox_account(sandbox)
    old = current_key_of(account, admin)
    real = keys.ssh_key_test_logon

    def refused_first(*, key: SshKey, user: Any) -> Any:
        if key.pk != old.pk:  # the new key's logon: as if the server refused it
            return keys.Logon(False, "The SFTP server refused the logon.")
        return real(key=key, user=user)

    monkeypatch.setattr(keys, "ssh_key_test_logon", refused_first)
    new, logon = keys.ssh_key_rotate(account=account, user=admin)
    assert not logon.ok
    assert "previous key is registered again and stays current" in logon.message
    new.refresh_from_db()
    old.refresh_from_db()
    assert (new.state, old.state) == (SshKeyState.FAILED, SshKeyState.CURRENT)
    # Connect was given the old key back: it logs on.
    assert real(key=old, user=admin).ok


def test_a_changed_host_key_is_refused_naming_both(sandbox: Sandbox, admin: Any) -> None:
    account = sandbox_account(sandbox)
    key = current_key_of(account, admin)
    approved = HostKey.objects.get(state=HostKeyState.APPROVED)
    sandbox.faults(host_key_changed=True)
    logon = keys.ssh_key_test_logon(key=key, user=admin)
    assert not logon.ok
    changed = HostKey.objects.get(state=HostKeyState.PENDING)
    assert "offered a different key" in logon.message
    assert approved.fingerprint in logon.message and changed.fingerprint in logon.message
    event = AuditEvent.objects.get(action="sftp.host_key_changed")
    assert event.detail["offered"] == changed.fingerprint
    # An admin who confirmed the change approves it: the old key is superseded.
    hostkeys.host_key_approve(host_key=changed, user=admin)
    assert keys.ssh_key_test_logon(key=key, user=admin).ok
    approved.refresh_from_db()
    assert approved.state == HostKeyState.SUPERSEDED


def test_an_imported_key_already_registered_becomes_current_by_logging_on(
    sandbox: Sandbox, admin: Any, tmp_path: Any
) -> None:
    account = sandbox_account(sandbox)
    pair = make_key(tmp_path)
    with keys.connect_for(account) as connect:
        assert connect.update_public_key(pair.public_line).ok  # registered elsewhere before
    key = keys.ssh_key_import(
        account=account, user=admin, private_key=pair.private_path.read_text()
    )
    assert key.state == SshKeyState.REGISTERED and key.imported
    hostkeys.host_key_approve(host_key=pending_host_key(account, admin), user=admin)
    assert keys.ssh_key_test_logon(key=key, user=admin).ok
    key.refresh_from_db()
    assert key.state == SshKeyState.CURRENT


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("hello", "is not an OpenSSH private key"),
        ("-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----",
         "is not an OpenSSH private key"),
    ],
)  # fmt: skip
def test_a_pasted_key_that_is_no_key_is_refused(admin: Any, text: str, said: str) -> None:
    account = ConnectAccount.objects.create(
        name="a", region=Region.SANDBOX, api_key="k", connect_user_email="a@example.com"
    )
    with pytest.raises(keys.KeyRefused, match=said):
        keys.ssh_key_import(account=account, user=admin, private_key=text)
    assert not SshKey.objects.exists()


def test_an_unregistered_key_is_refused_by_the_server(sandbox: Sandbox, admin: Any) -> None:
    account = sandbox_account(sandbox)
    current_key_of(account, admin)
    stray = keys.ssh_key_generate(account=account, user=admin)
    logon = keys.ssh_key_test_logon(key=stray, user=admin)
    assert not logon.ok
    assert "refused the logon of" in logon.message and stray.fingerprint in logon.message


def current_key_of(account: ConnectAccount, admin: Any) -> SshKey:
    key = keys.ssh_key_generate(account=account, user=admin)
    keys.ssh_key_register(key=key, user=admin)
    hostkeys.host_key_approve(host_key=pending_host_key(account, admin), user=admin)
    assert keys.ssh_key_test_logon(key=key, user=admin).ok
    key.refresh_from_db()
    return key


def pending_host_key(account: ConnectAccount, admin: Any) -> HostKey:
    """Connect once so the host's key is recorded (pending), and return it."""
    host, port = account.sftp_address
    existing = HostKey.objects.filter(host=host, port=port).first()
    if existing is not None:
        return existing
    with (
        pytest.raises(HostKeyRefused),
        session(
            SftpTarget(host, port, account.connect_user_email, new_private(SshKey())),
            hostkeys.check_host_key,
        ),
    ):
        pass
    return HostKey.objects.get(host=host, port=port)


# --- the same client against OpenSSH's sshd -----------------------------------------------


def test_openssh_sshd_pending_host_key_then_logon_and_listing(sshd: Sshd, admin: Any) -> None:
    private = new_private(SshKey())
    from exports_app.sftp_client import load_private_key

    sshd.authorize(f"ssh-ed25519 {load_private_key(private).get_base64()}")
    folder = sshd.home / "Export" / "Signals" / "2026-12-04"
    folder.mkdir(parents=True)
    (folder / "a.csv.gz").write_bytes(b"x" * 10)
    target = SftpTarget("127.0.0.1", sshd.port, sshd.user, private)
    with (
        pytest.raises(HostKeyRefused, match="is not approved yet"),
        session(target, hostkeys.check_host_key),
    ):
        pass
    pending = HostKey.objects.get(port=sshd.port)
    assert pending.fingerprint == fingerprint(sshd.host_key.split()[1])
    hostkeys.host_key_approve(host_key=pending, user=admin)
    with session(target, hostkeys.check_host_key) as sftp:
        assert [(e.path, e.size) for e in sftp.tree()] == [
            ("Export/Signals/2026-12-04/a.csv.gz", 10)
        ]
    # A key sshd does not know is refused, saying which.
    stranger = SftpTarget("127.0.0.1", sshd.port, sshd.user, new_private(SshKey()))
    with (
        pytest.raises(SftpError, match="refused the logon"),
        session(stranger, hostkeys.check_host_key),
    ):
        pass
