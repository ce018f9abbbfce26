"""Who may do what in the web UI, by role (connectadmin.roles). Views check these; templates
only use them to decide what to show."""

from __future__ import annotations

from typing import Any

from connectadmin.roles import SEND_LIVE, Role


def user_roles(user: Any) -> frozenset[str]:
    """The user's roles; a superuser is an admin whatever their groups."""
    if not getattr(user, "is_authenticated", False):
        return frozenset()
    cached = getattr(user, "_connectadmin_roles", None)
    if cached is None:
        names = set(user.groups.values_list("name", flat=True))
        if user.is_superuser:
            names.add(Role.ADMIN.value)
        cached = frozenset(names & {role.value for role in Role})
        user._connectadmin_roles = cached
    return cached


def has_role(user: Any, *roles: Role) -> bool:
    return bool(user_roles(user) & {role.value for role in roles})


def can_import(user: Any) -> bool:
    """Marketers and admins upload and send imports."""
    return has_role(user, Role.MARKETER, Role.ADMIN)


def sees_all_imports(user: Any) -> bool:
    """Ops and admins review every import; marketers see their own."""
    return has_role(user, Role.OPS, Role.ADMIN)


def can_resend(user: Any) -> bool:
    """Resending a batch of unknown outcome may duplicate signals: an ops decision."""
    return has_role(user, Role.OPS, Role.ADMIN)


def can_send_live(user: Any) -> bool:
    return bool(user.has_perm(SEND_LIVE))


def can_export(user: Any) -> bool:
    """Marketers and admins ask for exports and schedule them."""
    return has_role(user, Role.MARKETER, Role.ADMIN)


def sees_all_exports(user: Any) -> bool:
    """Ops and admins review every export; marketers see their own."""
    return has_role(user, Role.OPS, Role.ADMIN)


def can_manage_sftp(user: Any) -> bool:
    """SSH keys and SFTP host keys open the accounts' export folders: admins only."""
    return has_role(user, Role.ADMIN)


def sees_health(user: Any) -> bool:
    """The Health page (workers, broker, disk, Connect endpoints): ops and admins."""
    return has_role(user, Role.OPS, Role.ADMIN)


def sees_alerts(user: Any) -> bool:
    """The Alerts page, and one's own alert e-mails: ops and admins (webhooks and other
    people's subscriptions are settings: admins only)."""
    return has_role(user, Role.OPS, Role.ADMIN)
