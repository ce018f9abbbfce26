"""Every page a role opens, in each state an import can be in, at 1400, 1024 and 390 px:
nothing wider than the window, no table scrolling inside itself at 1400 px, the status in
words and colour that the state calls for, and axe-core's accessibility rules with no
serious or critical violation. Screenshots go to test-artifacts/pages/ (kept by CI)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from axe_playwright_python.sync_playwright import Axe
from django.utils import timezone

from connectadmin.models import ATTENTIVE_ENDPOINT, AttentiveAccount
from signals_app.models import BatchState, ImportStatus
from tests.browser.test_pages import ARTIFACTS, browser, sign_in, strict_page  # noqa: F401
from tests.test_views import add_batches, add_rejected, make_import, make_user

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)

WIDTHS = (1400, 1024, 390)


@pytest.fixture
def page(strict_page: Any) -> Any:  # noqa: F811
    """A page under the app's own Content-Security-Policy (not bypassed)."""
    return strict_page


SHOTS = ARTIFACTS / "pages"
AXE = Axe()


def too_wide(page: Any) -> list[str]:
    """Elements that reach past the window (outside the tables' own scroll boxes)."""
    return list(
        page.evaluate(
            """() => {
              const w = window.innerWidth, found = [];
              for (const el of document.body.querySelectorAll('*')) {
                if (el.closest('.table-wrap')) continue;
                const r = el.getBoundingClientRect();
                if (r.width && r.right > w + 1) found.push(el.tagName.toLowerCase() +
                  (el.id ? '#' + el.id : '') + (el.className ? '.' + el.className : ''));
              }
              if (document.documentElement.scrollWidth > w) found.push('document');
              return found.slice(0, 5);
            }"""
        )
    )


def inner_scroll(page: Any) -> list[int]:
    return list(
        page.evaluate(
            "[...document.querySelectorAll('.table-wrap')]"
            ".map(e => e.scrollWidth - e.clientWidth).filter(d => d > 1)"
        )
    )


def serious_violations(page: Any) -> list[str]:
    results = AXE.run(page)
    return [
        f"{v['id']} ({v['impact']}): {v['help']} — "
        + "; ".join(n["target"][0] for n in v["nodes"][:3])
        for v in results.response["violations"]
        if v["impact"] in ("serious", "critical")
    ]


def look(page: Any, url: str, name: str, *, expect: Callable[[Any], None] | None = None) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    problems: list[str] = []
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 900})
        page.goto(url)
        page.wait_for_load_state("networkidle")
        if expect is not None:
            expect(page)
        if wide := too_wide(page):
            problems.append(f"{name} @{width}px wider than the window: {wide}")
        if width == 1400 and (scrolls := inner_scroll(page)):
            problems.append(f"{name} @1400px: a table scrolls inside itself by {scrolls} px")
        if width in (1400, 390):
            problems += [f"{name} @{width}px: {v}" for v in serious_violations(page)]
        page.screenshot(path=SHOTS / f"{name}-{width}.png", full_page=True)
    assert not problems, "\n".join(problems)


def status_is(label: str, key: str) -> Callable[[Any], None]:
    def check(page: Any) -> None:
        badge = page.locator("#imp-status")
        assert badge.inner_text() == label
        assert f"status-{key}" in (badge.get_attribute("class") or "")

    return check


def sent_import(user: Any, states: list[str], **counters: Any) -> Any:
    signal_import = make_import(
        user, status=ImportStatus.COMPLETED, batches_total=len(states),
        send_started_at=timezone.now(), send_finished_at=timezone.now(), **counters,
    )  # fmt: skip
    add_rejected(signal_import)
    add_batches(signal_import, states)
    return signal_import


def test_a_marketers_pages_at_three_widths(page: Any) -> None:
    mia = make_user("mia", "marketer")
    validating = make_import(
        mia, status=ImportStatus.VALIDATING, size_bytes=10_000, bytes_read=4_000,
        validation_started_at=timezone.now(), signals=400,
    )  # fmt: skip
    ready = make_import(mia, original_name="spring-campaign-with-a-long-file-name.ndjson")
    add_rejected(ready)
    sending = make_import(
        mia, status=ImportStatus.SENDING, batches_total=3, send_started_at=timezone.now()
    )
    add_batches(sending, [BatchState.SENT, BatchState.FAILED, "pending"])
    done = sent_import(mia, [BatchState.SENT, BatchState.SENT], sent=1000, accepted=1000)
    partial = sent_import(
        mia, [BatchState.SENT, BatchState.FAILED], sent=500, accepted=500, failed=500
    )
    unknown = sent_import(
        mia, [BatchState.FAILED, BatchState.UNKNOWN], failed=500, unknown=500
    )  # the case: nothing accepted, half failed, half unknown
    sign_in(page, "mia")
    look(page, "/", "marketer-home")
    look(page, "/imports", "imports")
    look(page, "/imports/new", "new-import")
    look(page, f"/imports/{validating.public_id}", "import-validating",
         expect=status_is("Checking the file", "validating"))  # fmt: skip
    look(page, f"/imports/{ready.public_id}", "import-ready",
         expect=status_is("Ready to send", "validated"))  # fmt: skip
    look(page, f"/imports/{sending.public_id}", "import-sending",
         expect=status_is("Sending", "sending"))  # fmt: skip
    look(page, f"/imports/{done.public_id}", "import-completed",
         expect=status_is("Completed", "completed"))  # fmt: skip
    look(page, f"/imports/{partial.public_id}", "import-with-failures",
         expect=status_is("Completed with failures", "partial"))  # fmt: skip
    look(page, f"/imports/{unknown.public_id}", "import-outcome-unknown",
         expect=status_is("Needs attention", "attention"))  # fmt: skip
    look(page, "/history", "history")
    look(page, "/exports", "exports")
    look(page, "/exports/new", "export-new")
    look(page, "/exports/schedules", "export-schedules")
    look(page, "/exports/schedules/new", "export-schedule-new")
    look(page, "/no/such/page", "not-found")
    look(page, "/settings/sftp", "forbidden")


def test_ops_and_admin_pages_at_three_widths(page: Any) -> None:
    mia = make_user("mia", "marketer")
    make_user("otto", "ops")
    unknown = sent_import(mia, [BatchState.SENT, BatchState.UNKNOWN], sent=500, accepted=500,
                          unknown=500)  # fmt: skip
    sign_in(page, "otto")
    look(page, "/", "ops-home")
    look(page, f"/imports/{unknown.public_id}", "ops-import-outcome-unknown",
         expect=status_is("Needs attention", "attention"))  # fmt: skip
    look(page, f"/imports/{unknown.public_id}/batches/1/resend", "ops-resend")
    look(page, "/history", "ops-history")
    look(page, "/audit", "ops-audit")
    page.get_by_role("button", name="Sign out").click()
    make_user("ada", "admin")
    sign_in(page, "ada")
    look(page, "/settings/sftp", "admin-sftp-settings")
    attentive = AttentiveAccount.objects.create(
        name="Demo Attentive (sandbox)", api_key="k", graphql_endpoint=ATTENTIVE_ENDPOINT
    )
    look(page, "/settings/attentive", "admin-attentive-accounts")
    look(page, "/settings/attentive/new", "admin-attentive-new")
    look(page, f"/settings/attentive/{attentive.pk}", "admin-attentive-edit")
