"""SSH keys for each Connect account's SFTP logon (SPEC §8): generated here (ed25519, comment
"Acoustic Connect key", as `ssh-keygen -t ed25519 -C "Acoustic Connect key"` would) or
imported, the private key kept encrypted (the same MultiFernet as the API keys) and never
shown or logged; the public key registered with `updatePublicKeyForConnectUser`.

Rotation: a new key is generated and registered (Connect keeps one key per user, so the
old one stops working there at once), then tried on SFTP; only once it has logged on is it
made current and the old one retired (its private part wiped). If the new key cannot log
on, the old public key is registered again and stays current: the account is never left
without a working key by a rotation.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from connectadmin.models import ConnectAccount
from exports_app.connect_api import ConnectExports
from exports_app.models import SSH_KEY_COMMENT, SshKey, SshKeyState
from exports_app.services import hostkeys
from exports_app.sftp_client import Session, SftpError, SftpTarget, fingerprint, session
from signals_app.connect_client import Timeouts
from signals_app.models import audit


class KeyRefused(Exception):
    """What an admin asked of a key cannot be done; str() says why."""


@dataclass(frozen=True, slots=True)
class Logon:
    ok: bool
    message: str
    files: int = 0  # under Export/Signals, when it worked


def current_key(account: ConnectAccount) -> SshKey | None:
    return account.ssh_keys.filter(state=SshKeyState.CURRENT).first()


def ssh_key_generate(*, account: ConnectAccount, user: Any) -> SshKey:
    private = ed25519.Ed25519PrivateKey.generate()
    key = _store(account, user, private, imported=False)
    audit(action="ssh_key.generated", actor=user, account=account.name, key=key.fingerprint)
    return key


def ssh_key_import(*, account: ConnectAccount, user: Any, private_key: str) -> SshKey:
    """An existing key pasted by an admin (already registered with Connect, typically):
    kept as registered, made current by its first successful logon."""
    text = private_key.strip().encode()
    loaded: Any = None
    for load in (serialization.load_ssh_private_key, serialization.load_pem_private_key):
        try:
            loaded = load(text, password=None)
            break
        except TypeError:
            raise KeyRefused(
                "This private key is protected by a passphrase; paste it without."
            ) from None
        except (ValueError, IndexError):
            continue
    if not isinstance(
        loaded, ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
    ):
        raise KeyRefused(
            "This is not an OpenSSH private key (it starts with -----BEGIN OPENSSH PRIVATE "
            "KEY-----); paste the whole private key file."
        )
    key = _store(account, user, loaded, imported=True)
    key.state = SshKeyState.REGISTERED
    key.save(update_fields=["state"])
    audit(action="ssh_key.imported", actor=user, account=account.name, key=key.fingerprint)
    return key


def _store(account: ConnectAccount, user: Any, private: Any, *, imported: bool) -> SshKey:
    private_text = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    ).decode()
    public = private.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    line = f"{public.decode()} {SSH_KEY_COMMENT}"
    return SshKey.objects.create(
        account=account,
        private_key=private_text,
        public_key=line,
        fingerprint=fingerprint(line.split()[1]),
        imported=imported,
        created_by=user if getattr(user, "pk", None) else None,
    )


def connect_for(account: ConnectAccount) -> ConnectExports:
    return ConnectExports(
        endpoint=account.graphql_endpoint,
        api_key=account.api_key,
        timeouts=Timeouts(**getattr(settings, "CONNECT_TIMEOUTS", {})),
    )


def ssh_key_register(*, key: SshKey, user: Any) -> SshKey:
    """Send the public key to Connect; the key is then registered (Connect's answer kept),
    or failed with Connect's refusal."""
    if key.state in (SshKeyState.RETIRED,):
        raise KeyRefused("A retired key cannot be registered again; generate a new one.")
    with connect_for(key.account) as connect:
        answer = connect.update_public_key(key.public_key)
    now = timezone.now()
    if not answer.ok:
        key.error = f"Connect refused the key: {answer.error}"
        key.save(update_fields=["error"])
        audit(action="ssh_key.register_failed", actor=user, key=key.fingerprint, error=answer.error)
        raise KeyRefused(key.error)
    echoed = str(answer.data.get("publicKey") or "").strip()
    if not echoed or echoed.split()[:2] == key.public_key.split()[:2]:
        key.connect_answer = "Connect registered this key."
    else:  # worth a look: Connect says it holds another key
        key.connect_answer = f"Connect answered with another key: {echoed[:80]}"
    key.registered_at = now
    key.error = ""
    if key.state in (SshKeyState.NEW, SshKeyState.FAILED):
        key.state = SshKeyState.REGISTERED
    key.save(update_fields=["connect_answer", "registered_at", "error", "state"])
    audit(action="ssh_key.registered", actor=user, account=key.account.name, key=key.fingerprint)
    return key


def target(account: ConnectAccount, key: SshKey | None = None) -> SftpTarget:
    """Where and as whom to log on: the account's SFTP host, its Connect e-mail, and `key`
    (the current key when None)."""
    key = key or current_key(account)
    if key is None or not key.private_key:
        raise SftpError(
            f"the account {account.name} has no SSH key to log on with; an administrator "
            "generates one under Settings → SFTP"
        )
    host, port = account.sftp_address
    return SftpTarget(
        host=host, port=port, user=account.connect_user_email, private_key=key.private_key
    )


@contextmanager
def account_session(account: ConnectAccount, key: SshKey | None = None) -> Iterator[Session]:
    """An SFTP session of the account, host key pinned, logged on with `key` (or the
    current key); marks the key's logons."""
    chosen = key or current_key(account)
    with session(target(account, chosen), hostkeys.check_host_key) as sftp:
        if chosen is not None:
            _logged_on(chosen)
        yield sftp


def _logged_on(key: SshKey) -> None:
    now = timezone.now()
    updates: dict[str, Any] = {"last_logon_at": now}
    if key.first_logon_at is None:
        updates["first_logon_at"] = now
    SshKey.objects.filter(pk=key.pk).update(**updates)


def ssh_key_test_logon(*, key: SshKey, user: Any) -> Logon:
    """Log on with this key and list the export folder. A registered key that logs on is
    made current (the previous current key retired)."""
    try:
        with account_session(key.account, key) as sftp:
            files = len(sftp.tree())
    except SftpError as exc:
        SshKey.objects.filter(pk=key.pk).update(error=str(exc))
        audit(action="ssh_key.logon_failed", actor=user, key=key.fingerprint, error=str(exc))
        return Logon(False, _sentence(str(exc)))
    SshKey.objects.filter(pk=key.pk).update(error="")
    if key.state == SshKeyState.REGISTERED:
        _make_current(key)
    audit(action="ssh_key.logon_ok", actor=user, key=key.fingerprint, files=files)
    return Logon(
        True,
        f"Logged on as {key.account.connect_user_email}: {files} file(s) under Export/Signals.",
        files,
    )


def _make_current(key: SshKey) -> None:
    with transaction.atomic():
        old = list(
            SshKey.objects.select_for_update()
            .filter(account=key.account, state=SshKeyState.CURRENT)
            .exclude(pk=key.pk)
        )
        SshKey.objects.filter(pk__in=[k.pk for k in old]).update(
            state=SshKeyState.RETIRED, retired_at=timezone.now(), private_key=""
        )
        SshKey.objects.filter(pk=key.pk).update(state=SshKeyState.CURRENT)
    key.state = SshKeyState.CURRENT


def ssh_key_rotate(*, account: ConnectAccount, user: Any) -> tuple[SshKey, Logon]:
    """Generate, register and try a new key; current only once it logged on (see the
    module docstring). Returns the new key and how its logon went."""
    old = current_key(account)
    new = ssh_key_generate(account=account, user=user)
    try:
        ssh_key_register(key=new, user=user)
    except KeyRefused as exc:
        _fail(new, str(exc))
        return new, Logon(False, str(exc))
    logon = ssh_key_test_logon(key=new, user=user)
    if logon.ok:
        audit(action="ssh_key.rotated", actor=user, account=account.name, key=new.fingerprint)
        return new, logon
    _fail(new, logon.message)
    if old is not None:  # Connect now holds the new public key: give it back the old one
        try:
            ssh_key_register(key=old, user=user)
        except KeyRefused as exc:
            return new, Logon(
                False,
                f"{logon.message} Registering the previous key again failed too ({exc}): "
                "register it or a new key before the next export.",
            )
    return new, Logon(
        False, f"{logon.message} The previous key is registered again and stays current."
    )


def _fail(key: SshKey, reason: str) -> None:
    SshKey.objects.filter(pk=key.pk).update(state=SshKeyState.FAILED, error=reason, private_key="")


def _sentence(text: str) -> str:
    text = text[:1].upper() + text[1:]
    return text if text.endswith(".") else text + "."
