"""`make run`'s demo: each demo account gets an SSH key registered with the local sandbox
and the sandbox's host key pinned, so a newcomer can export and browse at once. Only for
the sandbox devstack itself started (its host key read from the sandbox's own ports.json,
never from the network)."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.models import User

from connectadmin.demo import DEMO_ACCOUNTS
from connectadmin.models import ConnectAccount
from exports_app.models import HostKey, HostKeyState
from exports_app.services import hostkeys, keys
from exports_app.sftp_client import fingerprint


def demo_sftp_ready(host_key_line: str) -> list[str]:
    """Pin the sandbox's host key and give each demo account a working key; what was done,
    a line each. Idempotent: a key that logs on is kept, a sandbox that forgot it (its data
    folder wiped) is given it again."""
    done: list[str] = []
    admin = User.objects.filter(is_superuser=True).order_by("pk").first()
    key_type, key_base64 = host_key_line.split()[:2]
    host, port = "127.0.0.1", int(settings.SANDBOX_SFTP_PORT)
    pinned = HostKey.objects.filter(host=host, port=port, state=HostKeyState.APPROVED).first()
    if pinned is None or pinned.key_base64 != key_base64:
        row, _ = HostKey.objects.get_or_create(
            host=host,
            port=port,
            key_type=key_type,
            key_base64=key_base64,
            defaults={"fingerprint": fingerprint(key_base64)},
        )
        hostkeys.host_key_approve(host_key=row, user=admin)
        done.append(f"pinned the sandbox's SFTP host key {row.fingerprint}")
    for demo in DEMO_ACCOUNTS:
        account = ConnectAccount.objects.filter(name=demo.name).first()
        if account is None:
            continue
        key = keys.current_key(account)
        if key is not None and keys.ssh_key_test_logon(key=key, user=admin).ok:
            continue
        if key is None:
            key = keys.ssh_key_generate(account=account, user=admin)
        keys.ssh_key_register(key=key, user=admin)
        logon = keys.ssh_key_test_logon(key=key, user=admin)
        done.append(f"{account.name}: SSH key {key.fingerprint} registered; {logon.message}")
    return done
