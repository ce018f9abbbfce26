from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.response import TemplateResponse


def home(request: HttpRequest) -> HttpResponse:
    return TemplateResponse(request, "home.html", {})


def healthz(request: HttpRequest) -> HttpResponse:
    """Liveness probe for `make run` and the tests: answers without touching the database."""
    return JsonResponse({"status": "ok"})
