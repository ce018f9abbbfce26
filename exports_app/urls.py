from django.urls import path

from exports_app import views

app_name = "exports"

urlpatterns = [
    path("exports", views.exports_list, name="list"),
    path("exports/new", views.export_new, name="export_new"),
    path("exports/jobs/<uuid:public_id>", views.job_detail, name="job_detail"),
    path("exports/jobs/<uuid:public_id>/refetch", views.job_refetch, name="job_refetch"),
    path("exports/schedules", views.schedules_list, name="schedules"),
    path("exports/schedules/new", views.schedule_new, name="schedule_new"),
    path("exports/schedules/<uuid:public_id>/edit", views.schedule_edit, name="schedule_edit"),
    path(
        "exports/schedules/<uuid:public_id>/<str:action>",
        views.schedule_action,
        name="schedule_action",
    ),
    path("exports/files/<int:file_id>", views.file_detail, name="file_detail"),
    path("exports/files/<int:file_id>/download", views.file_download, name="file_download"),
    path("exports/browse/<int:account_id>", views.browse, name="browse"),
    path("exports/browse/<int:account_id>/fetch", views.browse_fetch, name="browse_fetch"),
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
