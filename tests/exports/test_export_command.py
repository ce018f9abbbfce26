"""`manage.py export_signals` against the sandbox: bad input named by its option (exit 2),
an export taken (exit 0), a daily limit or Connect's refusal (exit 1). --wait, which needs
a worker, is tested with a real one in tests/integration/test_exports_live.py."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.utils import timezone

from connectadmin.models import ConnectAccount
from exports_app.models import ExportJob, JobStatus
from tests.exports.test_jobs import ready_account
from tests.sandbox.support import Sandbox

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def no_queue(django_capture_on_commit_callbacks: Any) -> Any:
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        yield callbacks


@pytest.fixture
def account(sandbox: Sandbox) -> ConnectAccount:
    return ready_account(sandbox, User.objects.create_superuser("root", password="x"))


def run(*args: str) -> str:
    out = StringIO()
    call_command("export_signals", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def refused(*args: str) -> CommandError:
    with pytest.raises(CommandError) as caught:
        run(*args)
    return caught.value


BASE = ("--types", "order,addToCart", "--from", "2026-12-01", "--to", "2026-12-02T00:00:00Z")


def test_an_export_is_taken_and_printed(account: ConnectAccount) -> None:
    out = run("--account", account.name, *BASE, "--job-name", "From the shell")
    job = ExportJob.objects.get()
    assert job.job_name == "From the shell" and job.status == JobStatus.QUEUED
    assert sorted(job.signal_types) == ["addToCart", "order"]
    assert f"Connect's job {job.data_job_id}" in out
    assert f"file on SFTP: {job.remote_path} (CSV)" in out
    assert "range: 2026-12-01T00:00:00.000Z to 2026-12-02T00:00:00.000Z" in out
    assert job.created_by is not None and job.created_by.username == "root"


def test_the_range_is_read_in_the_time_zone_given(account: ConnectAccount) -> None:
    run("--account", account.name, "--types", "order", "--from", "2026-12-01",
        "--to", "2026-12-02", "--timezone", "Asia/Tokyo")  # fmt: skip
    job = ExportJob.objects.get()
    assert job.timestamp_start.isoformat() == "2026-11-30T15:00:00+00:00"


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (("--types", "order,bogus", "--window", "yesterday"), "--types: "),
        (("--types", "order", "--from", "2026-12-03", "--to", "2026-12-01"), "--to: "),
        (("--types", "order", "--from", "yesterday", "--to", "2026-12-01"), "--from 'yesterday'"),
        (("--types", "order", "--window", "yesterday", "--notify", "ann@"), "--notify: "),
        (
            (
                "--types",
                "order",
                "--window",
                "yesterday",
                "--path",
                "a.csv",
                "--parent-folder",
                "Export/Signals/x",
            ),
            "cannot be combined",
        ),
        (
            ("--types", "order", "--window", "yesterday", "--parent-folder", "Export/../etc"),
            "--parent-folder: ",
        ),
        (
            ("--types", "order", "--window", "yesterday", "--timezone", "Mars/Olympus"),
            "--timezone 'Mars/Olympus'",
        ),
        (("--types", "order"), "give --from and --to"),
    ],
)
def test_bad_input_is_named_by_its_option_and_nothing_is_asked(
    account: ConnectAccount, args: tuple[str, ...], said: str
) -> None:
    error = refused("--account", account.name, *args)
    assert error.returncode == 2 and said in str(error), str(error)
    assert not ExportJob.objects.exists()


def test_no_such_account_lists_the_accounts(account: ConnectAccount) -> None:
    error = refused("--account", "Nope", *BASE)
    assert error.returncode == 2 and account.name in str(error)


def test_a_used_name_is_bad_input(account: ConnectAccount) -> None:
    run("--account", account.name, *BASE, "--job-name", "Twice")
    error = refused("--account", account.name, *BASE, "--job-name", "Twice")
    assert error.returncode == 2 and "--job-name: " in str(error) and "exists already" in str(error)


def test_the_21st_job_of_the_day_exits_1_saying_when_it_resets(account: ConnectAccount) -> None:
    for n in range(20):
        ExportJob.objects.create(
            account=account,
            job_name=f"earlier {n}",
            timestamp_start=timezone.now(),
            timestamp_end=timezone.now(),
            submitted_at=timezone.now(),
            status=JobStatus.FETCHED,
        )
    error = refused("--account", account.name, *BASE)
    assert error.returncode == 1 and "20 export jobs a day" in str(error)
    assert "00:00 UTC" in str(error)
