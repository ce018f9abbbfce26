from django.urls import path

from signals_app import audit_views, views

app_name = "signals"

urlpatterns = [
    path("imports", views.imports_list, name="imports"),
    path("imports/new", views.import_new, name="import_new"),
    path("imports/<uuid:public_id>", views.import_detail, name="import_detail"),
    path("imports/<uuid:public_id>/send", views.import_send, name="import_send"),
    path("imports/<uuid:public_id>/promote", views.import_promote, name="import_promote"),
    path("imports/<uuid:public_id>/cancel", views.import_cancel, name="import_cancel"),
    path("imports/<uuid:public_id>/fixes", views.import_fix, name="import_fix"),
    path(
        "imports/<uuid:public_id>/batches/<int:number>/resend",
        views.batch_resend,
        name="batch_resend",
    ),
    path("imports/<uuid:public_id>/errors.csv", views.download_errors, name="download_errors"),
    path("imports/<uuid:public_id>/valid.ndjson", views.download_valid, name="download_valid"),
    path(
        "imports/<uuid:public_id>/signal-ids.csv",
        views.download_signal_ids,
        name="download_signal_ids",
    ),
    path("history", views.history, name="history"),
    path("audit", audit_views.audit_list, name="audit"),
    path("audit.csv", audit_views.audit_csv, name="audit_csv"),
]
