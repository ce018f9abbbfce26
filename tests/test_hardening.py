"""Sign-in throttling, the Content-Security-Policy, and `check --deploy` with production's
environment."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from cryptography.fernet import Fernet
from django.conf import settings
from django.test import Client

from tests.test_views import make_user

pytestmark = pytest.mark.django_db


def test_the_eleventh_wrong_password_in_a_minute_is_refused_even_with_the_right_one(
    client: Client,
) -> None:
    make_user("mia", "marketer")
    for _ in range(10):
        wrong = client.post("/login/", {"username": "mia", "password": "guess"})
        assert wrong.status_code == 200 and "Sign in" in wrong.content.decode()
    eleventh = client.post("/login/", {"username": "mia", "password": "guess"})
    assert eleventh.status_code == 429
    locked = client.post("/login/", {"username": "mia", "password": "mia-pass"})
    assert locked.status_code == 429
    assert "Sign-in is paused for this user" in locked.content.decode()
    assert "_auth_user_id" not in client.session
    # Another user from the same address is not locked out by mia's mistakes.
    make_user("otto", "ops")
    other = client.post("/login/", {"username": "otto", "password": "otto-pass"})
    assert other.status_code == 302


def test_a_right_password_resets_the_count(client: Client) -> None:
    make_user("mia", "marketer")
    for _ in range(9):
        client.post("/login/", {"username": "mia", "password": "guess"})
    assert client.post("/login/", {"username": "mia", "password": "mia-pass"}).status_code == 302
    client.logout()
    for _ in range(9):
        client.post("/login/", {"username": "mia", "password": "guess"})
    assert client.post("/login/", {"username": "mia", "password": "mia-pass"}).status_code == 302


def test_pages_carry_a_policy_that_allows_only_the_apps_own_assets(client: Client) -> None:
    policy = client.get("/login/")["Content-Security-Policy"]
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";") if part.strip())
    assert directives["default-src"] == "'self'" and directives["script-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'" and "unsafe" not in directives["script-src"]
    assert directives["style-src-elem"] == "'self'"


def test_check_deploy_is_clean_with_productions_environment() -> None:
    production = {
        "DJANGO_SECRET_KEY": "x" * 20 + Fernet.generate_key().decode(),
        "FIELD_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "DJANGO_ALLOWED_HOSTS": "connectadmin.example.com",
        "SECURE_SSL_REDIRECT": "1",
        "SECURE_HSTS_SECONDS": "31536000",
        "SECURE_HSTS_INCLUDE_SUBDOMAINS": "1",
        "SECURE_HSTS_PRELOAD": "1",
        "SESSION_COOKIE_SECURE": "1",
        "CSRF_COOKIE_SECURE": "1",
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=settings.BASE_DIR, env={**os.environ, **production},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout
