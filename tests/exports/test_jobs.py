"""Export jobs with the real parts: submitted to the sandbox, watched until the file is on
SFTP, fetched into the archive (resumed after a cut, checked, never kept half), against
the sandbox's SFTP server and OpenSSH's sshd; limits and bad input refused with a reason."""

from __future__ import annotations

import gzip
import hashlib
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from connectadmin import files
from connectadmin.models import ConnectAccount, Region
from exports_app import rules
from exports_app.models import ExportFile, ExportJob, HostKey, JobStatus
from exports_app.services import fetching, hostkeys, jobs, keys, watching
from exports_app.sftp_client import load_private_key
from tests.exports.sshd import Sshd
from tests.sandbox.support import ULTIMATE_EMAIL, ULTIMATE_KEY, Sandbox, signal

pytestmark = pytest.mark.django_db


@pytest.fixture
def exports_dir(settings: Any, tmp_path: Path) -> Path:
    settings.EXPORTS_DIR = tmp_path / "archive"
    return Path(settings.EXPORTS_DIR)


@pytest.fixture
def admin() -> User:
    return User.objects.create_superuser("exporter", password="x")


@pytest.fixture(autouse=True)
def no_waiting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fetching, "sleep", lambda seconds: None)


def ready_account(sandbox: Sandbox, admin: Any) -> ConnectAccount:
    """A sandbox account with a current key and its host key approved."""
    account = ConnectAccount.objects.create(
        name="Sandbox ultimate",
        region=Region.SANDBOX,
        graphql_endpoint=f"{sandbox.url}/graphql",
        api_key=ULTIMATE_KEY,
        connect_user_email=ULTIMATE_EMAIL,
        sftp_host="127.0.0.1",
        sftp_port=sandbox.sftp_port,
    )
    kind, blob = sandbox.host_key.split()[:2]
    hostkeys.host_key_approve(
        host_key=HostKey.objects.create(
            host="127.0.0.1",
            port=sandbox.sftp_port,
            key_type=kind,
            key_base64=blob,
            fingerprint="x",
        ),
        user=admin,
    )
    key = keys.ssh_key_generate(account=account, user=admin)
    keys.ssh_key_register(key=key, user=admin)
    assert keys.ssh_key_test_logon(key=key, user=admin).ok
    return account


def request(account: ConnectAccount, name: str = "orders", **changes: Any) -> jobs.ExportRequest:
    now = timezone.now()
    values: dict[str, Any] = {
        "account": account,
        "job_name": name,
        "signal_types": ["order", "addToCart", "emailOpen"],
        "start": now - timedelta(days=1),
        "end": now + timedelta(minutes=1),
    }
    values.update(changes)
    return jobs.ExportRequest(**values)


def watched_until_done(job: ExportJob, seconds: float = 30) -> ExportJob:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if watching.job_watch(job_id=job.pk) is None:
            break
        time.sleep(0.2)
    job.refresh_from_db()
    return job


def test_an_export_is_submitted_watched_fetched_and_counted(
    sandbox: Sandbox, admin: Any, exports_dir: Path, django_capture_on_commit_callbacks: Any
) -> None:
    account = ready_account(sandbox, admin)
    sent = [signal("order", n=n) for n in range(30)] + [signal("addToCart", n=n) for n in range(12)]
    assert sandbox.create_signals(sent).status_code == 200
    with django_capture_on_commit_callbacks(execute=False):
        job = jobs.export_submit(request=request(account), user=admin)
    assert job.status == JobStatus.QUEUED
    assert job.data_job_id and job.file_format == "CSV"
    assert job.remote_path.startswith("Export/Signals/") and job.remote_path.endswith(".csv.gz")

    with django_capture_on_commit_callbacks(execute=False):
        job = watched_until_done(job)
    assert job.status == JobStatus.FETCHING and job.vendor_status == "COMPLETED"
    assert job.file is not None
    export_file = fetching.file_fetch(file_id=job.file.pk, user=admin)
    job.refresh_from_db()
    assert job.status == JobStatus.FETCHED
    remote = sandbox.data / "sftp" / ULTIMATE_EMAIL / job.remote_path
    assert export_file.fetched and export_file.size_bytes == remote.stat().st_size
    assert export_file.sha256 == hashlib.sha256(remote.read_bytes()).hexdigest()
    assert Path(files.exports().path(export_file.stored_name)).read_bytes() == remote.read_bytes()
    assert export_file.rows_by_type["order"] == 30
    assert export_file.rows_by_type["addToCart"] == 12
    assert export_file.rows == sum(export_file.rows_by_type.values())
    assert export_file.rows_by_type.get("emailOpen", 0) > 0  # the sandbox's marketing rows
    assert export_file.keep_until is not None
    assert not list(exports_dir.glob("*.part"))


def test_a_cut_connection_is_resumed_and_the_file_is_whole(
    sandbox: Sandbox, admin: Any, exports_dir: Path, django_capture_on_commit_callbacks: Any
) -> None:
    account = ready_account(sandbox, admin)
    # Descriptions that do not compress away: a file of a few hundred kB.
    sent = [signal("order", n=n, description=os.urandom(1000).hex()) for n in range(150)]
    assert sandbox.create_signals(sent).status_code == 200
    with django_capture_on_commit_callbacks(execute=False):
        job = watched_until_done(jobs.export_submit(request=request(account), user=admin))
    remote = sandbox.data / "sftp" / ULTIMATE_EMAIL / job.remote_path
    size = remote.stat().st_size
    assert size > 100_000, size  # room to cut it several times
    sandbox.faults(sftp_cut_after_bytes=size // 4)
    assert job.file is not None
    export_file = fetching.file_fetch(file_id=job.file.pk)
    assert export_file.sha256 == hashlib.sha256(remote.read_bytes()).hexdigest()
    assert export_file.rows == 150 + export_file.rows_by_type.get("emailOpen", 0)


def test_a_file_cut_more_often_than_allowed_fails_and_keeps_nothing_as_fetched(
    sandbox: Sandbox, admin: Any, exports_dir: Path, django_capture_on_commit_callbacks: Any
) -> None:
    account = ready_account(sandbox, admin)
    assert (
        sandbox.create_signals(
            [signal("order", n=n, description="y" * 3000) for n in range(100)]
        ).status_code
        == 200
    )
    with django_capture_on_commit_callbacks(execute=False):
        job = watched_until_done(jobs.export_submit(request=request(account), user=admin))
    sandbox.faults(sftp_cut_after_bytes=1000)
    assert job.file is not None
    with pytest.raises(fetching.FetchFailed, match="gave up after 5 reconnects"):
        fetching.file_fetch(file_id=job.file.pk)
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert "Fetching the file failed" in job.error_message
    assert not ExportFile.objects.get().fetched
    assert not Path(files.exports().path(job.file.stored_name)).exists()
    # The bytes so far are kept to resume: once the connection holds, the fetch completes.
    sandbox.faults(sftp_cut_after_bytes=None)
    export_file = fetching.file_fetch(file_id=job.file.pk)
    remote = sandbox.data / "sftp" / ULTIMATE_EMAIL / job.remote_path
    assert export_file.sha256 == hashlib.sha256(remote.read_bytes()).hexdigest()


def test_the_21st_job_of_a_day_is_refused_saying_when_it_resets(
    sandbox: Sandbox, admin: Any
) -> None:
    account = ready_account(sandbox, admin)
    now = timezone.now()
    for n in range(rules.DAILY_JOBS):
        ExportJob.objects.create(
            account=account,
            job_name=f"earlier {n}",
            timestamp_start=now,
            timestamp_end=now,
            status=JobStatus.FETCHED,
            submitted_at=now,
        )
    with pytest.raises(jobs.ExportRefused) as refused:
        jobs.export_submit(request=request(account), user=admin)
    assert "Connect allows 20 export jobs a day and 20 ran today" in refused.value.message
    assert "exports open again at 00:00 UTC, in" in refused.value.message
    assert ExportJob.objects.count() == rules.DAILY_JOBS  # nothing left behind


@pytest.mark.parametrize(
    ("changes", "field", "said"),
    [
        ({"signal_types": ["noSuchType"]}, "signal_types", "signalTypes"),
        (
            {"target": rules.Placement(parent_folder="Other/Place")},
            "parent_folder",
            "Export/Signals",
        ),
    ],
)
def test_connect_refuses_what_it_refuses_and_the_name_stays_free(
    sandbox: Sandbox, admin: Any, changes: dict[str, Any], field: str, said: str
) -> None:
    account = ready_account(sandbox, admin)
    with pytest.raises(jobs.ExportRefused) as refused:
        jobs.export_submit(request=request(account, **changes), user=admin)
    assert refused.value.field == field
    assert said in refused.value.message
    assert not ExportJob.objects.exists()


def test_a_used_job_name_is_refused_before_connect_is_asked(
    sandbox: Sandbox, admin: Any, django_capture_on_commit_callbacks: Any
) -> None:
    account = ready_account(sandbox, admin)
    with django_capture_on_commit_callbacks(execute=False):
        jobs.export_submit(request=request(account, "twice"), user=admin)
    with pytest.raises(jobs.ExportRefused, match="exists already") as refused:
        jobs.export_submit(request=request(account, "twice"), user=admin)
    assert refused.value.field == "job_name"


@pytest.mark.parametrize(
    ("mode", "folder", "prefix", "path", "field", "said"),
    [
        ("path", "Export/Signals/x", "", "a.csv", "target_path", "cannot be combined"),
        ("folder", "Export/Signals/../etc", "", "", "parent_folder", "'..'"),
        ("folder", "Elsewhere", "", "", "parent_folder", "must start with Export/Signals"),
        ("path", "", "", "a/b.txt", "target_path", ".csv file"),
        ("path", "", "", "../a.csv", "target_path", "without '..'"),
        ("folder", "Export/Signals", "bad/prefix", "", "naming_prefix", "may use letters"),
    ],
)
def test_placement_rules_name_what_is_wrong(
    mode: str, folder: str, prefix: str, path: str, field: str, said: str
) -> None:
    with pytest.raises(rules.Problem) as problem:
        rules.check_placement(mode, folder, prefix, path)
    assert problem.value.field == field and said in problem.value.message


def test_windows_are_whole_days_of_the_time_zone() -> None:
    from zoneinfo import ZoneInfo

    zone = ZoneInfo("Europe/Berlin")
    now = datetime(2026, 3, 1, 0, 30, tzinfo=zone)  # just after midnight in Berlin
    start, end = rules.window_range("yesterday", now, zone)
    assert (start.isoformat(), end.isoformat()) == (
        "2026-02-28T00:00:00+01:00",
        "2026-03-01T00:00:00+01:00",
    )
    start, end = rules.window_range("last_month", now, zone)
    assert (start.date().isoformat(), end.date().isoformat()) == ("2026-02-01", "2026-03-01")
    start, _ = rules.window_range("last_7_days", now.astimezone(UTC), zone)
    assert start.date().isoformat() == "2026-02-22"


# --- the same fetching against OpenSSH's sshd ----------------------------------------------


def sshd_account(sshd: Sshd, admin: Any) -> ConnectAccount:
    account = ConnectAccount.objects.create(
        name="Own SFTP", region=Region.SANDBOX, api_key="k", connect_user_email="owner@example.com",
        sftp_host="127.0.0.1", sftp_port=sshd.port,
    )  # fmt: skip
    key = keys.ssh_key_generate(account=account, user=admin)
    sshd.authorize(f"ssh-ed25519 {load_private_key(key.private_key).get_base64()}")
    key.state = "registered"
    key.save()
    kind, blob = sshd.host_key.split()[:2]
    hostkeys.host_key_approve(
        host_key=HostKey.objects.create(
            host="127.0.0.1", port=sshd.port, key_type=kind, key_base64=blob, fingerprint="x"
        ),
        user=admin,
    )
    # sshd logs on as this machine's user: the account's user name is that here.
    ConnectAccount.objects.filter(pk=account.pk).update(connect_user_email=sshd.user)
    account.refresh_from_db()
    assert keys.ssh_key_test_logon(key=key, user=admin).ok
    return account


def remote_file(sshd: Sshd, name: str, data: bytes) -> str:
    path = sshd.home / "Export" / "Signals" / "2026-12-04" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return f"Export/Signals/2026-12-04/{name}"


def test_openssh_sshd_fetch_counts_rows_and_refuses_what_is_no_export(
    sshd: Sshd, admin: Any, exports_dir: Path, settings: Any
) -> None:
    account = sshd_account(sshd, admin)
    csv_text = "SIGNAL_TYPE,SIGNAL_CONTENT\n" + "".join(
        f'order,"{{""signalType"": ""order"", ""orderId"": ""{n}""}}"\n' for n in range(5000)
    )
    good = remote_file(sshd, "good.csv.gz", gzip.compress(csv_text.encode()))
    export_file = ExportFile.objects.create(
        account=account, remote_path=good, stored_name="g.csv.gz"
    )
    fetched = fetching.file_fetch(file_id=export_file.pk)
    assert (fetched.rows, fetched.rows_by_type) == (5000, {"order": 5000})

    plain = remote_file(sshd, "plain.csv.gz", csv_text.encode())
    bad = ExportFile.objects.create(account=account, remote_path=plain, stored_name="p.csv.gz")
    with pytest.raises(fetching.FetchFailed, match="not gzip data"):
        fetching.file_fetch(file_id=bad.pk)

    settings.EXPORT_MAX_INFLATED_BYTES = 10_000
    again = remote_file(sshd, "again.csv.gz", gzip.compress(csv_text.encode()))
    big = ExportFile.objects.create(account=account, remote_path=again, stored_name="b.csv.gz")
    with pytest.raises(fetching.FetchFailed, match="inflates past"):
        fetching.file_fetch(file_id=big.pk)

    for name in ("../outside.csv.gz", "/etc/passwd", "a/../../b"):
        stray = ExportFile.objects.create(
            account=account, remote_path=name, stored_name=name[-6:] + "x"
        )
        with pytest.raises(fetching.FetchFailed, match=r"not a relative path|leaves or skips"):
            fetching.file_fetch(file_id=stray.pk)
    # The archive holds the good file only: no partial or refused file is left in it.
    assert sorted(p.name for p in exports_dir.iterdir()) == ["g.csv.gz"]
