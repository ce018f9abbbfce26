"""Template helpers of the alerts pages (connectadmin.alerts_views) and the top bar."""

from typing import Any

from django import template

from connectadmin.models import Alert, AlertState
from signals_app.access import sees_alerts

register = template.Library()


@register.filter
def may_see_alerts(user: Any) -> bool:
    """Only shows or hides the Alerts link: the views check the role themselves."""
    return sees_alerts(user)


@register.simple_tag
def open_alert_count(user: Any) -> int:
    """The open alerts, for the top bar's link (one COUNT; nothing for other roles)."""
    if not sees_alerts(user):
        return 0
    return Alert.objects.filter(state=AlertState.OPEN).count()
