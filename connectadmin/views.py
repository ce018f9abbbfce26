from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.templatetags.static import static

from connectadmin import health
from signals_app.access import can_import, sees_all_imports, sees_health
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
    """The health of everything the app needs, as JSON (connectadmin.health): HTTP 503 when
    the database or the broker is down. `/healthz?live=1` is the liveness probe `make run`
    and the tests wait on: it answers without touching anything."""
    if "live" in request.GET:
        return JsonResponse({"status": "ok"})
    report = health.health_check()
    response = JsonResponse(report.as_json(), status=report.http_status)
    response["Cache-Control"] = "no-store"
    return response


@login_required
def health_page(request: HttpRequest) -> HttpResponse:
    """/healthz for people: what is wrong and what to do, the queue, the tasks running now.
    The workers are asked for their tasks in a second request (htmx; `?running=1` without
    script), since waiting for their answers takes a second."""
    if not sees_health(request.user):
        raise PermissionDenied("Only ops and admins see the health of the app.")
    ask_workers = request.GET.get("running") == "1"
    if ask_workers and getattr(request, "htmx", False):
        running = health.running_tasks(expected=health.workers_alive())
        return TemplateResponse(request, "health.html#running", {"running": running})
    report = health.health_check()
    broker_up = report.broker.status == "ok"
    context = {
        "report": report,
        "broker_up": broker_up,
        "running": (
            health.running_tasks(expected=health.workers_alive())
            if ask_workers and broker_up
            else None
        ),
    }
    return TemplateResponse(request, "health.html", context)


def favicon(request: HttpRequest) -> HttpResponse:
    """/favicon.ico, asked for by pages without the layout's icon (the admin, downloads)."""
    return redirect(static("favicon.svg"), permanent=True)
