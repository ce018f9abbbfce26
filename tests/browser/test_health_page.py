"""The Health page in Chromium at 1400, 1024 and 390 px, with problems to show: nothing
wider than the window, no serious or critical axe-core violation, no Content-Security-Policy
refusal, and the tasks running now asked for after the page loads (htmx). Screenshots go to
test-artifacts/pages/health-*.png."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from connectadmin.models import Heartbeat
from tests.browser.test_every_page import serious_violations, too_wide
from tests.browser.test_pages import ARTIFACTS, browser, sign_in  # noqa: F401  (fixtures)
from tests.factories import make_account
from tests.test_health import broker  # noqa: F401  (fixture: a broker folder of its own)
from tests.test_views import make_user

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


@pytest.fixture
def page(browser: Any, live_server: Any) -> Iterator[Any]:  # noqa: F811
    context = browser.new_context(viewport={"width": 1400, "height": 900}, base_url=live_server.url)
    context.set_default_timeout(10_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    yield page
    context.close()
    assert not errors, f"console errors: {errors[:3]}"


@pytest.mark.usefixtures("broker")
def test_the_health_page_says_what_is_wrong_at_three_widths(page: Any) -> None:
    now = timezone.now()
    Heartbeat.objects.create(
        kind="worker", name="celery@worker-1", started_at=now - timedelta(hours=2),
        seen_at=now - timedelta(seconds=12), ran_at=now - timedelta(seconds=12),
    )  # fmt: skip
    Heartbeat.objects.create(
        kind="worker", name="celery@worker-2-with-a-long-host-name.internal",
        started_at=now - timedelta(hours=3), seen_at=now - timedelta(minutes=7),
        ran_at=now - timedelta(minutes=7),
    )  # fmt: skip
    Heartbeat.objects.create(kind="scheduler", name="worker-1 (pid 42)", seen_at=now)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    make_account(name="Shop EU", graphql_endpoint=f"http://127.0.0.1:{closed}/graphql")
    make_user("otto", "ops")
    sign_in(page, "otto")

    page.get_by_role("link", name="Health").click()
    shots = ARTIFACTS / "pages"
    shots.mkdir(parents=True, exist_ok=True)
    problems: list[str] = []
    for width in (1400, 1024, 390):
        page.set_viewport_size({"width": width, "height": 900})
        page.goto("/health")
        page.wait_for_load_state("networkidle")
        summary = page.locator(".summary").inner_text()
        assert (
            "The worker celery@worker-2-with-a-long-host-name.internal has been silent" in summary
        )
        assert f"Connect at http://127.0.0.1:{closed}/graphql cannot be reached" in summary
        # Asked after the load; no worker runs in this test.
        assert "No worker answered within a second" in page.locator("#running").inner_text()
        if wide := too_wide(page):
            problems.append(f"@{width}px wider than the window: {wide}")
        if width in (1400, 390):
            problems += [f"@{width}px: {v}" for v in serious_violations(page)]
        page.screenshot(path=shots / f"health-{width}.png", full_page=True)
    assert not problems, "\n".join(problems)
