"""A marketer's export in a real Chromium against every real part: schedule an export for
the coming minute, see celery beat (database scheduler) fire it into a real worker, watch
the job's page follow it live until its file is fetched from the sandbox's SFTP server,
preview its rows, filter them by type, and download the file, byte for byte."""

from __future__ import annotations

import hashlib
import time
from datetime import UTC, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from connectadmin import files
from exports_app.models import ExportJob, JobStatus
from tests.browser.test_pages import ARTIFACTS, browser, page  # noqa: F401  (fixtures)
from tests.exports.test_jobs import ready_account
from tests.integration.conftest import Workers
from tests.integration.test_exports_live import running_beat
from tests.sandbox.support import Sandbox, signal
from tests.test_views import make_user

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)

WAIT_MS = 120_000


@pytest.fixture
def exports_dir(settings: Any, tmp_path: Path) -> Path:
    settings.EXPORTS_DIR = tmp_path / "var" / "exports"  # the workers' (see workers)
    return Path(settings.EXPORTS_DIR)


def test_a_marketer_schedules_an_export_watches_it_complete_previews_and_downloads_it(
    page: Any,  # noqa: F811
    workers: Workers,
    sandbox: Sandbox,
    exports_dir: Path,
    tmp_path: Path,
) -> None:
    account = ready_account(sandbox, User.objects.create_superuser("root", password="x"))
    sent = [signal("order", n=n) for n in range(12)] + [signal("addToCart", n=n) for n in range(5)]
    assert sandbox.create_signals(sent).status_code == 200
    make_user("mia", "marketer")
    workers.start()

    page.goto("/login/")
    page.get_by_label("User name").fill("mia")
    page.get_by_label("Password").fill("mia-pass")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_selector("text=Sign out")

    # Once, at the next whole minute at least 15 s away (the field has minutes only).
    run_at = (timezone.now() + timedelta(seconds=75)).astimezone(UTC)
    run_at = run_at.replace(second=0, microsecond=0)
    page.goto("/exports/schedules/new")
    page.get_by_label("Account").select_option(label=account.name)
    page.get_by_label("Name", exact=True).fill("Orders, once")
    page.get_by_label("order", exact=True).check()
    page.get_by_label("addToCart", exact=True).check()
    page.get_by_label("Once, at a date and time").check()
    page.get_by_label("Date and time", exact=True).fill(f"{run_at:%Y-%m-%dT%H:%M}")  # htmx shows it
    page.get_by_label("Each run exports").select_option("month_to_date")
    page.screenshot(path=ARTIFACTS / "export-1-schedule.png", full_page=True)
    page.get_by_role("button", name="Create the schedule").click()
    page.wait_for_selector("text=Schedule 'Orders, once' saved")
    assert "Once, on" in page.locator(".schedule").inner_text()

    with running_beat(workers, tmp_path / "beat.log"):
        deadline = time.monotonic() + WAIT_MS / 1000
        while not page.locator(".schedule dd a").count():  # "Last run": not yet
            if time.monotonic() > deadline:
                pytest.fail(workers.log_text() + (tmp_path / "beat.log").read_text())
            time.sleep(2)
            page.reload()
        page.locator(".schedule dd a").first.click()

        # The job's page follows the job by itself until the file is in the archive.
        page.wait_for_selector("#job-state .status", timeout=WAIT_MS)
        page.screenshot(path=ARTIFACTS / "export-2-job.png", full_page=True)
        page.wait_for_selector("#job-state .status:text('Fetched')", timeout=WAIT_MS)
        page.wait_for_selector("text=Rows per signal type", timeout=WAIT_MS)  # counted next
    page.screenshot(path=ARTIFACTS / "export-3-fetched.png", full_page=True)
    job = ExportJob.objects.get()
    assert job.status == JobStatus.FETCHED and job.scheduled_for == run_at
    assert job.file is not None and job.file.rows_by_type == {"order": 12, "addToCart": 5}

    with page.expect_download() as download_info:
        page.get_by_role("link", name="Download the file").click()
    saved = tmp_path / "downloaded.csv.gz"
    download_info.value.save_as(saved)
    assert hashlib.sha256(saved.read_bytes()).hexdigest() == job.file.sha256
    assert saved.read_bytes() == Path(files.exports().path(job.file.stored_name)).read_bytes()

    page.get_by_role("link", name="Preview the rows").click()
    page.wait_for_selector("table.preview")
    assert page.locator("table.preview tbody tr").count() == 17
    page.get_by_label("Signal type", exact=True).select_option("addToCart")
    page.wait_for_selector("text=5 rows: all there are of this type")
    assert page.locator("table.preview tbody tr").count() == 5
    assert "type=addToCart" in page.url  # the filtered view can be shared
    assert '"signalType": "addToCart"' in page.locator("table.preview pre").first.inner_text()
    page.screenshot(path=ARTIFACTS / "export-4-preview.png", full_page=True)
