"""The export pages against the sandbox: the form checked as the user types, a job's page
as it goes, an archived file's preview and download, an account's SFTP folder, and
schedules made, paused, resumed, edited, run and deleted (their periodic tasks with
them); who sees and does what."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from connectadmin import files
from connectadmin.models import ConnectAccount
from connectadmin.roles import Role
from exports_app.models import ExportFile, ExportJob, ExportSchedule, JobStatus, Recurrence
from exports_app.services import browsing, fetching, jobs, schedules
from tests.exports.test_jobs import ready_account, request, watched_until_done
from tests.sandbox.support import Sandbox, signal

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def exports_dir(settings: Any, tmp_path: Path) -> Path:
    settings.EXPORTS_DIR = tmp_path / "archive"
    return Path(settings.EXPORTS_DIR)


@pytest.fixture(autouse=True)
def no_queue(django_capture_on_commit_callbacks: Any) -> Any:
    """Nothing is enqueued: the tests run the watch and the fetch themselves."""
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        yield callbacks


def person(role: Role, name: str = "") -> tuple[User, Client]:
    user = User.objects.create_user(name or f"u-{role}", password="x")
    user.groups.add(Group.objects.get_or_create(name=role)[0])
    client = Client()
    client.force_login(user)
    return user, client


@pytest.fixture
def admin() -> User:
    return User.objects.create_superuser("boss", password="x")


@pytest.fixture
def account(sandbox: Sandbox, admin: User) -> ConnectAccount:
    return ready_account(sandbox, admin)


def form(account: ConnectAccount, **changes: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "account": account.pk,
        "job_name": "Yesterday's orders",
        "signal_types": ["order", "addToCart"],
        "range_mode": "window",
        "window": "yesterday",
        "timezone": "Europe/Paris",
        "notifications": "",
        "placement": "default",
    }
    values.update(changes)
    return values


# --- the export form ------------------------------------------------------------------


def test_the_form_checked_as_the_user_types_names_each_problem_and_nothing_else(
    account: ConnectAccount,
) -> None:
    _, client = person(Role.MARKETER)
    answer = client.post(
        "/exports/new",
        {
            "_check": "1",
            "account": account.pk,
            "job_name": "",  # not typed yet: no "required" shouted at the user
            "range_mode": "dates",
            "start": "2026-12-03T10:00",
            "end": "2026-12-02T10:00",
            "timezone": "UTC",
            "notifications": "ann@example.com, not-an-address",
            "placement": "folder",
            "parent_folder": "Export/Other/../x",
        },
        HTTP_HX_REQUEST="true",
    )
    body = answer.content.decode()
    assert answer.status_code == 200
    assert body.lstrip().startswith('<form id="export-form"')  # the form only, for htmx
    assert "not-an-address" in body and "is not an e-mail address" in body
    assert "Export/Signals" in body  # the folder's rule, said on the folder
    assert "has-error" in body
    assert "Give a name" not in body and "This field is required" not in body
    assert not ExportJob.objects.exists()


def test_a_good_form_submits_and_the_job_page_follows_it(
    account: ConnectAccount, sandbox: Sandbox, admin: User
) -> None:
    sandbox.create_signals([signal("order", n=n) for n in range(5)])
    user, client = person(Role.MARKETER)
    answer = client.post("/exports/new", form(account, range_mode="dates",
                         start="2026-01-01T00:00", end="2030-01-01T00:00"))  # fmt: skip
    job = ExportJob.objects.get()
    assert answer.status_code == 302 and answer["Location"] == f"/exports/jobs/{job.public_id}"
    assert job.created_by == user and job.status == JobStatus.QUEUED
    assert job.timestamp_start == datetime(2025, 12, 31, 23, tzinfo=UTC)  # Paris midnight
    page = client.get(answer["Location"]).content.decode()
    assert job.data_job_id in page and job.remote_path in page and "CSV" in page
    assert 'hx-trigger="every 2s"' in page  # it follows the job live

    watched_until_done(job)
    job_file = ExportJob.objects.get().file
    assert job_file is not None
    fetching.file_fetch(file_id=job_file.pk)
    state = client.get(answer["Location"], HTTP_HX_REQUEST="true", HTTP_HX_TARGET="job-state")
    body = state.content.decode()
    assert body.lstrip().startswith('<div id="job-state"')
    assert "Fetched" in body and "every 2s" not in body  # done: it stops polling
    assert "Download" in body and "Rows per signal type" in body


def test_a_used_name_is_said_on_the_name_and_nothing_is_asked(account: ConnectAccount) -> None:
    _, client = person(Role.MARKETER)
    assert client.post("/exports/new", form(account)).status_code == 302
    again = client.post("/exports/new", form(account))
    assert again.status_code == 400
    assert "exists already" in again.content.decode()
    assert ExportJob.objects.count() == 1


def test_ops_review_exports_but_do_not_ask_for_them(account: ConnectAccount) -> None:
    _, client = person(Role.OPS)
    assert client.get("/exports/new").status_code == 403
    assert client.post("/exports/new", form(account)).status_code == 403
    assert client.get("/exports").status_code == 200


def test_a_refused_job_says_so_first(account: ConnectAccount, admin: User) -> None:
    job = ExportJob.objects.create(
        account=account,
        created_by=admin,
        job_name="r",
        timestamp_start=timezone.now(),
        timestamp_end=timezone.now(),
        status=JobStatus.SKIPPED,
        error_message="The account has used its 20 export jobs of today; resets 00:00 UTC.",
    )
    client = Client()
    client.force_login(admin)
    body = client.get(f"/exports/jobs/{job.public_id}").content.decode()
    assert body.index("This scheduled run was skipped") < body.index("Where the export is")
    assert "20 export jobs" in body and 'role="alert"' in body


# --- archived files -------------------------------------------------------------------


def fetched_job(account: ConnectAccount, sandbox: Sandbox, user: User) -> ExportJob:
    sandbox.create_signals(
        [signal("order", n=n) for n in range(7)] + [signal("addToCart", n=n) for n in range(3)]
    )
    job = jobs.export_submit(request=request(account), user=user)
    watched_until_done(job)
    job.refresh_from_db()
    assert job.file is not None
    fetching.file_fetch(file_id=job.file.pk)
    job.refresh_from_db()
    return job


def test_a_file_is_previewed_filtered_by_type_and_downloaded(
    account: ConnectAccount, sandbox: Sandbox
) -> None:
    user, client = person(Role.MARKETER)
    job = fetched_job(account, sandbox, user)
    assert job.file is not None
    url = f"/exports/files/{job.file.pk}"
    page = client.get(url).content.decode()
    assert "SIGNAL_CONTENT" in page and "&quot;signalType&quot;: &quot;order&quot;" in page
    assert "addToCart" in page  # in the chart and the filter

    only = client.get(url, {"type": "addToCart"}, HTTP_HX_REQUEST="true").content.decode()
    assert only.lstrip().startswith('<section class="card" id="rows"')
    assert "3 rows: all there are of this type" in only
    assert "&quot;signalType&quot;: &quot;order&quot;" not in only

    download = client.get(f"{url}/download")
    body = b"".join(download.streaming_content)  # type: ignore[attr-defined]
    assert download["Content-Disposition"].startswith("attachment")
    assert body == Path(files.exports().path(job.file.stored_name)).read_bytes()
    assert gzip.decompress(body).startswith(b"SIGNAL_TYPE") or gzip.decompress(body)

    _, stranger = person(Role.MARKETER, "someone-else")
    assert stranger.get(url).status_code == 404
    assert stranger.get(f"{url}/download").status_code == 404
    _, ops = person(Role.OPS)
    assert ops.get(f"{url}/download").status_code == 200


def test_a_file_page_follows_the_count_of_rows_per_type(
    account: ConnectAccount, sandbox: Sandbox
) -> None:
    """Rows per type are counted after the file is marked fetched: meanwhile its page says
    so and asks again; once counted, the chart and the type filter's choices arrive."""
    user, client = person(Role.MARKETER)
    job = fetched_job(account, sandbox, user)
    assert job.file is not None
    ExportFile.objects.filter(pk=job.file.pk).update(rows_by_type={}, types_counted=False)
    url = f"/exports/files/{job.file.pk}"
    page = client.get(url).content.decode()
    assert "Counting the rows of each signal type" in page
    assert 'hx-trigger="every 3s"' in page and '<option value="order"' not in page

    asked = {"HX-Request": "true", "HX-Target": "file-facts"}
    still = client.get(url, headers=asked).content.decode()
    assert still.lstrip().startswith('<section class="card" id="file-facts"')
    assert "Counting the rows" in still and "hx-swap-oob" not in still

    fetching.count_types(ExportFile.objects.get(pk=job.file.pk))
    done = client.get(url, headers=asked).content.decode()
    assert "Counting the rows" not in done and "every 3s" not in done
    assert 'id="f-type" hx-swap-oob="true"' in done
    assert '<option value="addToCart"' in done and '<option value="order"' in done


def test_a_file_past_its_retention_leaves_the_archive_and_its_pages_say_so(
    account: ConnectAccount, sandbox: Sandbox, settings: Any
) -> None:
    settings.EXPORT_ARCHIVE_DAYS = 30
    user, client = person(Role.MARKETER)
    job = fetched_job(account, sandbox, user)
    assert job.file is not None and job.file.keep_until is not None
    stored = Path(files.exports().path(job.file.stored_name))
    assert fetching.archive_purge(now=job.file.keep_until - timedelta(seconds=1)) == 0
    assert stored.exists()

    assert fetching.archive_purge(now=job.file.keep_until) == 1
    export_file = ExportFile.objects.get(pk=job.file.pk)
    assert not stored.exists() and not export_file.fetched and export_file.removed_at
    assert (export_file.rows, export_file.sha256) == (job.file.rows, job.file.sha256)
    page = client.get(f"/exports/jobs/{job.public_id}").content.decode()
    assert "removed from connectadmin's archive" in page and "fetch it again" in page
    assert "Download the file" not in page
    assert client.get(f"/exports/files/{export_file.pk}/download").status_code == 404
    assert fetching.archive_purge(now=timezone.now() + timedelta(days=400)) == 0  # once

    browsing.fetch_requested(account=account, remote_path=export_file.remote_path, user=user)
    fetching.file_fetch(file_id=export_file.pk)
    again = ExportFile.objects.get(pk=export_file.pk)
    assert again.fetched and again.removed_at is None and again.sha256 == job.file.sha256
    assert again.keep_until and again.keep_until > timezone.now() + timedelta(days=29)


def test_the_sftp_folder_is_browsed_by_day_and_any_file_fetched(
    account: ConnectAccount, sandbox: Sandbox, admin: User
) -> None:
    folder = sandbox.data / "sftp" / account.connect_user_email / "Export/Signals/2026-11-30"
    folder.mkdir(parents=True)
    (folder / "someone elses.csv.gz").write_bytes(
        gzip.compress(b"SIGNAL_TYPE,SIGNAL_CONTENT\norder,{}\n")
    )
    _, client = person(Role.MARKETER)
    page = client.get(f"/exports/browse/{account.pk}").content.decode()
    assert "Monday, Nov 30, 2026" in page and "someone elses.csv.gz" in page
    assert ">Fetch</button>" in page

    answer = client.post(
        f"/exports/browse/{account.pk}/fetch",
        {"path": "Export/Signals/2026-11-30/someone elses.csv.gz"},
    )
    assert answer.status_code == 302
    export_file = ExportFile.objects.get()
    fetching.file_fetch(file_id=export_file.pk)
    page = client.get(f"/exports/browse/{account.pk}").content.decode()
    assert "Fetched</a> · 1 row" in page and "1 rows" not in page

    refused = client.post(f"/exports/browse/{account.pk}/fetch", {"path": "../../etc/passwd"})
    assert refused.status_code == 302 and ExportFile.objects.count() == 1


# --- schedules ------------------------------------------------------------------------


def schedule_form(account: ConnectAccount, **changes: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "account": account.pk,
        "name": "Morning orders",
        "signal_types": ["order"],
        "recurrence": "weekly",
        "weekday": "0",
        "time_of_day": "06:30",
        "timezone": "America/New_York",
        "window": "last_7_days",
        "notifications": "ops@example.com",
        "placement": "default",
    }
    values.update(changes)
    return values


def test_a_schedule_is_made_paused_resumed_edited_and_deleted_with_its_periodic_task(
    account: ConnectAccount,
) -> None:
    user, client = person(Role.MARKETER)
    answer = client.post("/exports/schedules/new", schedule_form(account))
    assert answer.status_code == 302
    schedule = ExportSchedule.objects.get()
    task = schedule.periodic_task
    assert task is not None
    assert task.task == schedules.TASK and json.loads(task.args) == [schedule.pk]
    assert task.crontab is not None and task.enabled
    assert (task.crontab.minute, task.crontab.hour, task.crontab.day_of_week) == ("30", "6", "1")
    assert str(task.crontab.timezone) == "America/New_York"
    page = client.get("/exports/schedules").content.decode()
    assert "Every Monday at 06:30 (America/New_York), exporting the last 7 days" in page

    client.post(f"/exports/schedules/{schedule.public_id}/pause")
    task.refresh_from_db()
    assert not task.enabled
    assert "none while paused" in client.get("/exports/schedules").content.decode()
    client.post(f"/exports/schedules/{schedule.public_id}/resume")
    task.refresh_from_db()
    assert task.enabled

    edit = client.get(f"/exports/schedules/{schedule.public_id}/edit").content.decode()
    assert 'value="06:30"' in edit and "Morning orders" in edit
    client.post(
        f"/exports/schedules/{schedule.public_id}/edit",
        schedule_form(account, recurrence="monthly", month_day="3", time_of_day="23:00"),
    )
    task.refresh_from_db()
    assert (task.crontab.hour, task.crontab.day_of_month, task.crontab.day_of_week) == (
        "23", "3", "*",
    )  # fmt: skip

    _, other = person(Role.MARKETER, "not-the-owner")
    assert other.post(f"/exports/schedules/{schedule.public_id}/pause").status_code == 404
    client.post(f"/exports/schedules/{schedule.public_id}/delete")
    assert (
        not ExportSchedule.objects.exists() and not PeriodicTask.objects.filter(pk=task.pk).exists()
    )
    assert user.pk


def test_a_schedule_in_the_past_or_without_its_day_is_refused_by_field(
    account: ConnectAccount,
) -> None:
    _, client = person(Role.MARKETER)
    past = client.post(
        "/exports/schedules/new",
        schedule_form(account, recurrence="once", run_at="2020-01-01T10:00"),
    )
    assert past.status_code == 400 and "That moment has passed" in past.content.decode()
    no_day = client.post("/exports/schedules/new", schedule_form(account, weekday=""))
    assert no_day.status_code == 400 and "Choose the day of the week" in no_day.content.decode()
    assert (
        not ExportSchedule.objects.exists()
        and not PeriodicTask.objects.filter(task=schedules.TASK).exists()
    )


def test_run_now_makes_a_job_over_the_window_and_a_moment_runs_once(
    account: ConnectAccount, admin: User
) -> None:
    schedule = schedules.schedule_save(
        spec=schedules.ScheduleSpec(
            account=account,
            name="Daily",
            signal_types=["order"],
            window="yesterday",
            recurrence=Recurrence.DAILY,
            timezone="Asia/Tokyo",
            time_of_day=time(6, 0),
        ),
        user=admin,
    )
    client = Client()
    client.force_login(admin)
    answer = client.post(f"/exports/schedules/{schedule.public_id}/run")
    job = ExportJob.objects.get()
    assert answer["Location"] == f"/exports/jobs/{job.public_id}"
    assert job.schedule == schedule and job.scheduled_for is None and job.window == "yesterday"
    tokyo = ZoneInfo("Asia/Tokyo")
    assert job.timestamp_start.astimezone(tokyo).time() == time(0)
    assert job.timestamp_end - job.timestamp_start == timedelta(days=1)

    # Beat fires the 06:00 moment at 06:00:02, then again after a restart: one job.
    fired = datetime(2026, 12, 4, 6, 0, 2, tzinfo=tokyo)
    first = schedules.schedule_run(schedule_id=schedule.pk, now=fired)
    assert first is not None and first.scheduled_for == datetime(2026, 12, 4, 6, tzinfo=tokyo)
    assert first.timestamp_start == datetime(2026, 12, 3, tzinfo=tokyo)
    assert schedules.schedule_run(schedule_id=schedule.pk, now=fired + timedelta(hours=3)) is None
    assert schedule.jobs.count() == 2


def test_a_run_over_the_daily_limit_is_kept_as_skipped_with_the_reason(
    account: ConnectAccount, admin: User, settings: Any
) -> None:
    for n in range(20):
        ExportJob.objects.create(
            account=account,
            job_name=f"earlier {n}",
            timestamp_start=timezone.now(),
            timestamp_end=timezone.now(),
            submitted_at=timezone.now(),
            status=JobStatus.FETCHED,
        )
    schedule = schedules.schedule_save(
        spec=schedules.ScheduleSpec(
            account=account,
            name="Hourly-ish",
            signal_types=["order"],
            window="yesterday",
            recurrence=Recurrence.DAILY,
            timezone="UTC",
            time_of_day=time(0, 5),
        ),
        user=admin,
    )
    job = schedules.schedule_run(schedule_id=schedule.pk, now=timezone.now())
    assert job is not None and job.status == JobStatus.SKIPPED
    assert "20" in job.error_message and "00:00 UTC" in job.error_message
    page = Client()
    page.force_login(admin)
    body = page.get("/exports/schedules").content.decode()
    assert "Skipped" in body and job.error_message[:40] in body


def test_a_file_whose_bytes_are_gone_says_so_instead_of_failing(
    account: ConnectAccount, sandbox: Sandbox
) -> None:
    user, client = person(Role.MARKETER)
    job = fetched_job(account, sandbox, user)
    assert job.file is not None
    Path(files.exports().path(job.file.stored_name)).unlink()
    response = client.get(f"/exports/files/{job.file.pk}")
    page = response.content.decode()
    assert response.status_code == 200 and "The file is missing from the archive" in page
    assert "Fetch it again" in page and "/download" not in page
