"""What the Settings pages do (connectadmin.settings_views): test a Connect account's
connection; invite users and change their role, their permission to send live and whether
they may sign in. Every change is written to the audit trail, never with a secret."""

from __future__ import annotations

import logging
import ssl
import time
from dataclasses import dataclass
from typing import Any, ClassVar, Final, Literal

import httpx
from django.contrib.auth.models import Group, Permission, User
from django.contrib.auth.tokens import PasswordResetTokenGenerator
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from connectadmin.models import ConnectAccount
from connectadmin.roles import Role
from signals_app.access import user_roles
from signals_app.models import audit

logger = logging.getLogger(__name__)

# --- Connect accounts: the connection test ----------------------------------------------

# `__typename` on the root query is part of the GraphQL specification itself: every
# GraphQL server answers it, even with introspection switched off, and it reads nothing
# and changes nothing. Connect checks the x-api-key header before it looks at the query,
# so the answer also says whether the key is right. The sandbox's own `exportUsage` would
# be as harmless, but Connect has no such query: the test would fail on the real thing.
PING_QUERY: Final = "query ConnectadminConnectionTest { __typename }"
CONNECT_TIMEOUT: Final = 5.0
READ_TIMEOUT: Final = 10.0

# "rate_limited": Attentive's test only (connectadmin.attentive_accounts).
Outcome = Literal["ok", "wrong_key", "unreachable", "rate_limited", "tls", "unexpected"]
OUTCOME_WORDS: Final[dict[str, str]] = {
    "ok": "OK",
    "wrong_key": "Wrong key",
    "unreachable": "Unreachable",
    "tls": "TLS problem",
    "unexpected": "Unexpected answer",
    "rate_limited": "Rate limited",
}


@dataclass(frozen=True, slots=True)
class ConnectionTest:
    WORDS: ClassVar[dict[str, str]] = OUTCOME_WORDS

    outcome: Outcome
    detail: str  # for a person: what came back
    elapsed_ms: int
    http_status: int | None = None

    @property
    def ok(self) -> bool:
        return self.outcome == "ok"

    @property
    def words(self) -> str:
        return self.WORDS[self.outcome]


def tls_failure(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError | ssl.CertificateError):
            return True
        seen = seen.__cause__ or seen.__context__
    text = str(exc)
    return "SSL" in text or "CERTIFICATE" in text.upper()


def account_test_connection(*, account: ConnectAccount, actor: Any = None) -> ConnectionTest:
    """One harmless authenticated call to the account's GraphQL endpoint (PING_QUERY)."""
    endpoint = account.graphql_endpoint
    started = time.perf_counter()

    def took() -> int:
        return round((time.perf_counter() - started) * 1000)

    result: ConnectionTest
    try:
        with httpx.Client(
            timeout=httpx.Timeout(READ_TIMEOUT, connect=CONNECT_TIMEOUT), follow_redirects=False
        ) as client:
            response = client.post(
                endpoint,
                json={"query": PING_QUERY},
                headers={"x-api-key": account.api_key, "Content-Type": "application/json"},
            )
    except httpx.ConnectTimeout:
        result = ConnectionTest(
            "unreachable", f"no connection to {endpoint} within {CONNECT_TIMEOUT:g} s", took()
        )
    except httpx.TimeoutException:
        result = ConnectionTest(
            "unreachable", f"no answer from {endpoint} within {READ_TIMEOUT:g} s", took()
        )
    except (httpx.HTTPError, OSError) as exc:
        if tls_failure(exc):
            result = ConnectionTest(
                "tls", f"the secure connection to {endpoint} failed ({exc})", took()
            )
        else:
            result = ConnectionTest("unreachable", f"{endpoint} cannot be reached ({exc})", took())
    else:
        result = _read_answer(response, took())
    audit(
        action="account.connection_tested",
        actor=actor,
        obj=account,
        outcome=result.outcome,
        http_status=result.http_status,
        elapsed_ms=result.elapsed_ms,
    )
    return result


def _read_answer(response: httpx.Response, elapsed_ms: int) -> ConnectionTest:
    status = response.status_code
    if status in (401, 403):
        return ConnectionTest(
            "wrong_key",
            f"Connect refused the API key (HTTP {status}): paste the key again, or make a "
            "new one in Connect.",
            elapsed_ms,
            status,
        )
    try:
        payload = response.json()
    except ValueError:
        payload = None
    if isinstance(payload, dict) and payload.get("errors"):
        first = payload["errors"][0]
        message = first.get("message") if isinstance(first, dict) else str(first)
        return ConnectionTest(
            "unexpected", f"Connect answered with an error: {message}", elapsed_ms, status
        )
    data = payload.get("data") if isinstance(payload, dict) else None
    if status == 200 and isinstance(data, dict) and "__typename" in data:
        return ConnectionTest(
            "ok", "Connect answered and accepted the API key.", elapsed_ms, status
        )
    return ConnectionTest(
        "unexpected",
        f"the endpoint answered HTTP {status} but not as a GraphQL server: check the endpoint.",
        elapsed_ms,
        status,
    )


# --- Users: invitations, roles, send live, active ---------------------------------------


class InviteTokenGenerator(PasswordResetTokenGenerator):
    """The password-reset tokens, salted apart: an invitation link is good until the
    password is set (the token hashes the password), or PASSWORD_RESET_TIMEOUT passes."""

    key_salt = "connectadmin.team.InviteTokenGenerator"


invite_tokens = InviteTokenGenerator()


def role_of(user: User) -> str:
    roles = user_roles(user)
    for role in (Role.ADMIN, Role.OPS, Role.MARKETER):
        if role.value in roles:
            return role.value
    return ""


def active_admins() -> QuerySet[User]:
    return User.objects.filter(
        Q(groups__name=Role.ADMIN.value) | Q(is_superuser=True), is_active=True
    ).distinct()


def send_live_from_role(role: str) -> bool:
    """Whether the role's group holds send_live (the admin group does by default)."""
    return Group.objects.filter(
        name=role,
        permissions__codename="send_live",
        permissions__content_type__app_label="connectadmin",
    ).exists()


def may_send_live(user: User) -> bool:
    """Granted to the user, to their role or as a superuser; unlike has_perm, also for a
    deactivated user (whose grants come back when reactivated)."""
    return (
        user.is_superuser
        or user.user_permissions.filter(
            codename="send_live", content_type__app_label="connectadmin"
        ).exists()
        or user.groups.filter(
            permissions__codename="send_live",
            permissions__content_type__app_label="connectadmin",
        ).exists()
    )


def _send_live_permission() -> Permission:
    return Permission.objects.get(codename="send_live", content_type__app_label="connectadmin")


def invite_path(user: User) -> tuple[str, str]:
    """(uidb64, token) for the user's one-time link."""
    return urlsafe_base64_encode(force_bytes(user.pk)), invite_tokens.make_token(user)


@transaction.atomic
def user_invite(*, username: str, email: str, role: str, send_live: bool, actor: User) -> User:
    user = User(username=username, email=email, is_active=True)
    user.set_unusable_password()  # no password until the invitee sets one from the link
    user.save()
    _apply_role(user, role)
    if send_live:
        user.user_permissions.add(_send_live_permission())
    audit(
        action="user.invited",
        actor=actor,
        obj=user,
        username=username,
        email=email,
        role=role,
        send_live=send_live,
    )
    return user


def invite_send(*, user: User, link: str, actor: User) -> str:
    """E-mail the invitation; an empty string when sent, else why not (the page then
    shows the link for the admin to pass on)."""
    try:
        send_mail(
            subject="Your connectadmin account",
            message=(
                f"{actor.get_username()} has made you a connectadmin account "
                f"(user name: {user.get_username()}).\n\n"
                f"Set your password here (the link works once):\n{link}\n"
            ),
            from_email=None,
            recipient_list=[user.email],
            fail_silently=False,
        )
    except Exception as exc:  # SMTP refused, no mail server: the admin passes the link on
        logger.warning("invitation e-mail to user %s not sent: %s", user.pk, exc)
        return f"{type(exc).__name__}: {exc}"
    return ""


def _apply_role(user: User, role: str) -> None:
    groups = Group.objects.filter(name__in=[r.value for r in Role])
    user.groups.remove(*groups)
    user.groups.add(Group.objects.get_or_create(name=role)[0])
    # Ops and admins use Django's admin (read-only for ops), as the demo users do.
    user.is_staff = role != Role.MARKETER.value
    if role != Role.ADMIN.value:
        # A superuser is an admin whatever their groups: the role change would not hold.
        user.is_superuser = False
    user.save(update_fields=["is_staff", "is_superuser"])


class LastAdminError(Exception):
    """The change would leave no active admin."""


@transaction.atomic
def user_update(
    *, user: User, role: str, send_live: bool, active: bool, actor: User, email: str | None = None
) -> list[str]:
    """Apply the user form's choices; returns what changed, in words. Raises
    LastAdminError (and changes nothing) when no active admin would be left: the form
    checks it first, this is for two admins demoting each other at the same moment."""
    # Serialises changes to admins (PostgreSQL; SQLite runs one writer at a time anyway).
    list(
        User.objects.select_for_update(of=("self",))
        .filter(Q(groups__name=Role.ADMIN.value) | Q(is_superuser=True), is_active=True)
        .values_list("pk", flat=True)
    )
    changes: list[str] = []
    if email is not None and email != user.email:
        audit(action="user.email_changed", actor=actor, obj=user, before=user.email, after=email)
        changes.append(f"e-mail {user.email or 'none'} → {email or 'none'}")
        user.email = email
        user.save(update_fields=["email"])
    before = role_of(user)
    if role != before:
        _apply_role(user, role)
        audit(action="user.role_changed", actor=actor, obj=user, before=before, after=role)
        changes.append(f"role {before or 'none'} → {role}")
    direct = user.user_permissions.filter(
        codename="send_live", content_type__app_label="connectadmin"
    ).exists()
    if send_live != direct and not send_live_from_role(role):
        if send_live:
            user.user_permissions.add(_send_live_permission())
            audit(action="user.send_live_granted", actor=actor, obj=user)
            changes.append("may now send live")
        else:
            user.user_permissions.remove(_send_live_permission())
            audit(action="user.send_live_revoked", actor=actor, obj=user)
            changes.append("may no longer send live")
    if active != user.is_active:
        user.is_active = active
        user.save(update_fields=["is_active"])
        audit(action="user.reactivated" if active else "user.deactivated", actor=actor, obj=user)
        changes.append("reactivated" if active else "deactivated")
    if not active_admins().exists():
        raise LastAdminError(
            f"{user.get_username()} is the last active admin. Without one nobody can manage "
            "accounts, app keys and users: make another user admin first."
        )
    return changes
