"""/settings/: the admins' settings pages (connectadmin.settings_views; Alerts:
connectadmin.alerts_views)."""

from django.urls import path

from connectadmin import alerts_views
from connectadmin import settings_views as views

app_name = "settings"

urlpatterns = [
    path("", views.overview, name="overview"),
    path("accounts", views.accounts, name="accounts"),
    path("accounts/new", views.account_new, name="account_new"),
    path("accounts/<int:account_id>", views.account_edit, name="account_edit"),
    path("accounts/<int:account_id>/test", views.account_test, name="account_test"),
    path("app-keys", views.app_keys, name="app_keys"),
    path("app-keys/new", views.app_key_new, name="app_key_new"),
    path("app-keys/<int:app_key_id>", views.app_key_edit, name="app_key_edit"),
    path("attentive", views.attentive_accounts, name="attentive_accounts"),
    path("attentive/new", views.attentive_account_new, name="attentive_account_new"),
    path(
        "attentive/<int:attentive_id>",
        views.attentive_account_edit,
        name="attentive_account_edit",
    ),
    path(
        "attentive/<int:attentive_id>/test",
        views.attentive_account_test,
        name="attentive_account_test",
    ),
    path(
        "attentive/<int:attentive_id>/delete",
        views.attentive_account_delete,
        name="attentive_account_delete",
    ),
    path("users", views.users, name="users"),
    path("users/<int:user_id>", views.user_edit, name="user_edit"),
    path("users/<int:user_id>/invite", views.user_invite_again, name="user_invite_again"),
    path("alerts", alerts_views.settings_alerts, name="alerts"),
    path("alerts/webhooks/<int:webhook_id>", alerts_views.webhook_edit, name="webhook_edit"),
    path("alerts/webhooks/<int:webhook_id>/test", alerts_views.webhook_test, name="webhook_test"),
    path(
        "alerts/webhooks/<int:webhook_id>/active",
        alerts_views.webhook_active,
        name="webhook_active",
    ),
    path(
        "alerts/webhooks/<int:webhook_id>/remove",
        alerts_views.webhook_remove,
        name="webhook_remove",
    ),
    path(
        "alerts/subscribers/<int:subscriber_id>/remove",
        alerts_views.subscriber_remove,
        name="subscriber_remove",
    ),
]
