"""Shared fixtures. Tests that need a real component (PostgreSQL, Redis, a Celery worker,
the sandbox, sshd, Chromium) call `require(...)`: outside CI a missing component skips the
test with a loud reason; in CI (CI=true) it fails, and any skip fails the run."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def _share_keys_with_child_processes() -> None:
    """Workers, CLIs and servers the tests start read their keys from the environment:
    the test process's own (its data folder's keys file, made by `make test`), whatever
    data folder a child is given."""
    from django.conf import settings

    os.environ.setdefault("DJANGO_SECRET_KEY", settings.SECRET_KEY)
    os.environ.setdefault("FIELD_ENCRYPTION_KEYS", ",".join(settings.FIELD_ENCRYPTION_KEYS))


_share_keys_with_child_processes()


def require(ok: bool, reason: str) -> None:
    if ok:
        return
    if IN_CI:
        pytest.fail(f"CI must provide this component: {reason}")
    pytest.skip(f"COMPONENT MISSING, test skipped: {reason}")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "broker: depends on how the Celery broker delivers tasks; CI runs these on Redis, "
        "then again on RabbitMQ (make pytest-rabbitmq)",
    )


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not IN_CI:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = len(reporter.stats.get("skipped", [])) if reporter else 0
    if skipped:
        print(f"\nCI: {skipped} test(s) were skipped; CI runs every test.")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(autouse=True)
def _no_alerts_watchdog(settings: Any) -> Iterator[None]:
    """A test that fires Celery's beat_init or worker_ready (the heartbeat tests do) would
    start the alerts watchdog in this process, which would then raise alerts about the test
    database's workers in the middle of other tests. The watchdog's own tests turn it on."""
    settings.ALERT_WATCH_SECONDS = 0
    yield
    from connectadmin import alerts

    alerts.stop_watchdog()


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings: Any) -> None:
    """Tests create users often; the production hasher is deliberately slow."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
