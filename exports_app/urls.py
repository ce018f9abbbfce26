from django.urls import path

from exports_app import views

app_name = "exports"

urlpatterns = [
    path("settings/sftp", views.sftp_settings, name="sftp_settings"),
    path("settings/sftp/<int:account_id>/keys/new", views.key_generate, name="key_generate"),
    path("settings/sftp/<int:account_id>/keys/import", views.key_import, name="key_import"),
    path("settings/sftp/<int:account_id>/keys/rotate", views.key_rotate, name="key_rotate"),
    path("settings/sftp/keys/<int:key_id>/register", views.key_register, name="key_register"),
    path("settings/sftp/keys/<int:key_id>/test", views.key_test, name="key_test"),
    path(
        "settings/sftp/host-keys/<int:host_key_id>/<str:decision>",
        views.host_key_decide,
        name="host_key_decide",
    ),
]
