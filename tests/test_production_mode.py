"""What a visitor gets with DEBUG off, the default: the product's own error pages in its
layout (403 with the server's reason, 404, 400, 500, an expired form), one-line log
entries for refusals, the favicon, and static files served by WhiteNoise."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.core.exceptions import BadRequest, PermissionDenied
from django.core.management import call_command
from django.http import HttpRequest, HttpResponse
from django.test import Client
from django.urls import path

from connectadmin.urls import urlpatterns as project_urlpatterns
from tests.test_views import make_user

LAYOUT = 'href="/static/css/app.css"'  # every page of the product's layout links its CSS


def _fails(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("a bug in a view")


def _refuses_without_a_reason(request: HttpRequest) -> HttpResponse:
    raise PermissionDenied


def _cannot_read(request: HttpRequest) -> HttpResponse:
    raise BadRequest("the request body is not what this view reads")


# Used by the tests marked `@pytest.mark.urls(__name__)`: the project's URLs plus views
# that fail in the ways a real view can.
urlpatterns = [
    path("test/fails", _fails),
    path("test/refuses", _refuses_without_a_reason),
    path("test/unreadable", _cannot_read),
    *project_urlpatterns,
]


def signed_in(username: str, role: str) -> Client:
    client = Client()
    client.force_login(make_user(username, role))
    return client


def logged(caplog: pytest.LogCaptureFixture, message: str) -> logging.LogRecord:
    records = [r for r in caplog.records if r.getMessage().startswith(message)]
    assert len(records) == 1, [r.getMessage() for r in caplog.records]
    return records[0]


# --- DEBUG is off unless asked for ------------------------------------------------------


def debug_setting(tmp_path: Path, **env: str) -> str:
    environment = {name: value for name, value in os.environ.items() if name != "DJANGO_DEBUG"}
    environment.update(
        DJANGO_SETTINGS_MODULE="connectadmin.settings", CONNECTADMIN_VAR_DIR=str(tmp_path), **env
    )
    result = subprocess.run(
        [sys.executable, "-c", "from django.conf import settings; print(settings.DEBUG)"],
        cwd=django_settings.BASE_DIR,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_debug_is_off_unless_django_debug_asks_for_it(tmp_path: Path) -> None:
    assert debug_setting(tmp_path) == "False"
    assert debug_setting(tmp_path, DJANGO_DEBUG="1") == "True"
    assert debug_setting(tmp_path, DJANGO_DEBUG="0") == "False"


# --- 403 -------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_refusal_shows_the_servers_reason_in_the_layout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = signed_in("olivia", "ops")
    with caplog.at_level(logging.WARNING, logger="django.request"):
        response = client.get("/imports/new")

    assert response.status_code == 403
    body = response.content.decode()
    assert "Only marketers and admins upload and send imports." in body
    assert "You may not do this" in body
    assert LAYOUT in body and "Sign out" in body  # the layout, signed in
    assert 'href="/history"' in body and 'href="/exports"' in body  # where to go
    # A refusal is normal operation: one warning line, no traceback.
    record = logged(caplog, "Forbidden (Permission denied): /imports/new")
    assert record.levelno == logging.WARNING
    assert record.exc_info is None


@pytest.mark.django_db
def test_a_marketer_refused_sftp_settings_reads_why_and_is_offered_imports() -> None:
    response = signed_in("mara", "marketer").get("/settings/sftp")
    assert response.status_code == 403
    body = response.content.decode()
    assert "Only administrators manage SSH keys and SFTP host keys." in body
    assert 'class="button" href="/imports/new"' in body


@pytest.mark.django_db
@pytest.mark.urls(__name__)
def test_a_refusal_without_a_reason_still_says_what_happened() -> None:
    response = signed_in("mara", "marketer").get("/test/refuses")
    assert response.status_code == 403
    assert "does not have the role or permission" in response.content.decode()


@pytest.mark.django_db
def test_an_expired_form_gets_the_products_page() -> None:
    client = Client(enforce_csrf_checks=True)
    response = client.post("/login/", {"username": "mara", "password": "whatever"})
    assert response.status_code == 403
    body = response.content.decode()
    assert "This form could not be sent" in body
    assert LAYOUT in body
    assert "CSRF verification failed" not in body  # Django's own page


# --- 404 and 400 -----------------------------------------------------------------------


@pytest.mark.django_db
def test_a_missing_page_is_the_products_page_not_a_list_of_urls() -> None:
    response = Client().get("/no/such/page")
    assert response.status_code == 404
    body = response.content.decode()
    assert "There is nothing at this address" in body
    assert "<code>/no/such/page</code>" in body
    assert LAYOUT in body
    assert 'href="/login/"' in body  # signed out: the way in
    assert "Using the URLconf" not in body and "urlpatterns" not in body


@pytest.mark.django_db
def test_a_missing_import_offers_the_signed_in_user_the_way_back() -> None:
    response = signed_in("mara", "marketer").get("/imports/00000000-0000-0000-0000-000000000000")
    assert response.status_code == 404
    body = response.content.decode()
    assert "There is nothing at this address" in body
    assert "Sign out" in body and 'href="/imports/new"' in body


@pytest.mark.django_db
@pytest.mark.urls(__name__)
def test_an_unreadable_request_gets_the_products_page(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="django.request"):
        response = Client().get("/test/unreadable")

    assert response.status_code == 400
    body = response.content.decode()
    assert "The server could not read this request" in body
    assert LAYOUT in body
    record = logged(caplog, "the request body is not what this view reads: /test/unreadable")
    assert record.exc_info is None


# --- 500 -------------------------------------------------------------------------------


@pytest.mark.urls(__name__)
def test_a_server_error_page_renders_without_the_database(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # No django_db mark: any query while handling the error would fail this test.
    client = Client(raise_request_exception=False)
    with caplog.at_level(logging.ERROR, logger="django.request"):
        response = client.get("/test/fails")

    assert response.status_code == 500
    body = response.content.decode()
    assert "Something went wrong on our side" in body
    assert LAYOUT in body
    assert 'href="/exports"' in body
    assert "a bug in a view" not in body  # nothing of the failure is shown
    # A server error keeps its traceback in the log.
    assert logged(caplog, "Internal Server Error: /test/fails").exc_info is not None


# --- favicon and static files ------------------------------------------------------------


@pytest.fixture
def collected_static(settings: Any, tmp_path: Path) -> Path:
    """collectstatic into a folder of the test's own, as devstack (and a deployment) does."""
    settings.STATIC_ROOT = tmp_path
    call_command("collectstatic", interactive=False, verbosity=0)
    return tmp_path


def test_static_files_are_served_by_whitenoise_with_debug_off(collected_static: Path) -> None:
    assert django_settings.DEBUG is False
    response = Client().get("/static/css/app.css")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/css")
    served = b"".join(response.streaming_content)  # type: ignore[attr-defined]
    assert served == (django_settings.BASE_DIR / "static" / "css" / "app.css").read_bytes()
    assert Client().get("/static/no-such-file.css").status_code == 404


def test_the_favicon_is_served(collected_static: Path) -> None:
    response = Client().get("/favicon.ico")
    assert response.status_code == 301
    assert response["Location"] == "/static/favicon.svg"
    icon = Client().get(response["Location"])
    assert icon.status_code == 200
    assert icon["Content-Type"] == "image/svg+xml"
    assert b"<svg" in b"".join(icon.streaming_content)  # type: ignore[attr-defined]


@pytest.mark.django_db
def test_every_page_names_the_favicon() -> None:
    response = Client().get("/login/")
    assert '<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">' in (
        response.content.decode()
    )
