"""Template filters of the Settings pages (connectadmin.settings_views)."""

from typing import Any

from django import template

from connectadmin.roles import Role
from signals_app.access import has_role

register = template.Library()


@register.filter
def may_change_settings(user: Any) -> bool:
    """Only shows or hides the Settings link: the views check the role themselves."""
    return has_role(user, Role.ADMIN)
