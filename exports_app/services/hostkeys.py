"""SFTP host keys, pinned (SPEC §8): the first key seen for a host waits for an admin's
approval and nothing is downloaded meanwhile; a different key later is refused, both
fingerprints named, until an admin approves it. Never trusted blindly."""

from __future__ import annotations

from django.db import IntegrityError, transaction
from django.utils import timezone

from connectadmin import alerts
from exports_app.models import HostKey, HostKeyState
from exports_app.sftp_client import HostKeyRefused, fingerprint
from signals_app.models import audit


def check_host_key(host: str, port: int, key_type: str, key_base64: str) -> None:
    """sftp_client's HostKeyCheck: return when the key is the approved one, else record
    it (pending) and raise HostKeyRefused saying what an admin must do."""
    approved = HostKey.objects.filter(host=host, port=port, state=HostKeyState.APPROVED).first()
    if approved is not None and (approved.key_type, approved.key_base64) == (key_type, key_base64):
        HostKey.objects.filter(pk=approved.pk).update(last_seen_at=timezone.now())
        return
    offered, created = _record(host, port, key_type, key_base64)
    if offered.state == HostKeyState.REJECTED:
        raise HostKeyRefused(
            f"the SFTP host {host}:{port} offered key {offered.fingerprint}, which an "
            "administrator rejected; nothing was downloaded"
        )
    if approved is None:
        raise HostKeyRefused(
            f"the SFTP host {host}:{port} is not approved yet: its key {offered.fingerprint} "
            "waits for an administrator's approval (Settings → SFTP); nothing was downloaded"
        )
    if created:
        audit(
            action="sftp.host_key_changed",
            host=host,
            port=port,
            approved=approved.fingerprint,
            offered=offered.fingerprint,
        )
        alerts.host_key_changed(
            host=host, port=port, approved=approved.fingerprint, offered=offered.fingerprint
        )
    raise HostKeyRefused(
        f"the SFTP host {host}:{port} offered a different key: {offered.fingerprint}, where "
        f"{approved.fingerprint} is approved. Refused: this may be another server. An "
        "administrator can approve the new key once the change is confirmed."
    )


def _record(host: str, port: int, key_type: str, key_base64: str) -> tuple[HostKey, bool]:
    fields = {"host": host, "port": port, "key_type": key_type, "key_base64": key_base64}
    try:
        with transaction.atomic():
            row, created = HostKey.objects.get_or_create(
                **fields, defaults={"fingerprint": fingerprint(key_base64)}
            )
    except IntegrityError:  # two first connections at once
        return HostKey.objects.get(**fields), False
    HostKey.objects.filter(pk=row.pk).update(last_seen_at=timezone.now())
    return row, created


def host_key_approve(*, host_key: HostKey, user: object) -> HostKey:
    """Make this the host's approved key; the one approved before is superseded."""
    with transaction.atomic():
        previous = list(
            HostKey.objects.select_for_update()
            .filter(host=host_key.host, port=host_key.port, state=HostKeyState.APPROVED)
            .exclude(pk=host_key.pk)
        )
        HostKey.objects.filter(pk__in=[p.pk for p in previous]).update(
            state=HostKeyState.SUPERSEDED
        )
        host_key.state = HostKeyState.APPROVED
        host_key.decided_by = user  # type: ignore[assignment]
        host_key.decided_at = timezone.now()
        host_key.save(update_fields=["state", "decided_by", "decided_at"])
        audit(
            action="sftp.host_key_approved",
            actor=user,
            host=host_key.host,
            port=host_key.port,
            fingerprint=host_key.fingerprint,
            replaces=[p.fingerprint for p in previous],
        )
        if previous:  # a change approved: the alert it raised clears
            transaction.on_commit(
                lambda: alerts.host_key_approved(
                    host=host_key.host, port=host_key.port, fingerprint=host_key.fingerprint
                )
            )
    return host_key


def host_key_reject(*, host_key: HostKey, user: object) -> HostKey:
    host_key.state = HostKeyState.REJECTED
    host_key.decided_by = user  # type: ignore[assignment]
    host_key.decided_at = timezone.now()
    host_key.save(update_fields=["state", "decided_by", "decided_at"])
    audit(
        action="sftp.host_key_rejected",
        actor=user,
        host=host_key.host,
        port=host_key.port,
        fingerprint=host_key.fingerprint,
    )
    return host_key
