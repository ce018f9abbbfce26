from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.templatetags.static import static

from signals_app.access import can_import, sees_all_imports
from signals_app.models import ImportStatus, SignalImport


@login_required
def home(request: HttpRequest) -> HttpResponse:
    """The dashboard: what the user can start, and their latest imports."""
    imports = SignalImport.objects.select_related("app_key", "created_by")
    if not sees_all_imports(request.user):
        imports = imports.filter(created_by_id=request.user.pk)
    context = {
        "recent": imports[:8],
        "can_import": can_import(request.user),
        "sees_all": sees_all_imports(request.user),
        "running": imports.filter(
            status__in=[ImportStatus.UPLOADED, ImportStatus.VALIDATING, ImportStatus.SENDING]
        ).count(),
    }
    return TemplateResponse(request, "home.html", context)


def healthz(request: HttpRequest) -> HttpResponse:
    """Liveness probe for `make run` and the tests: answers without touching the database."""
    return JsonResponse({"status": "ok"})


def favicon(request: HttpRequest) -> HttpResponse:
    """/favicon.ico, asked for by pages without the layout's icon (the admin, downloads)."""
    return redirect(static("favicon.svg"), permanent=True)
