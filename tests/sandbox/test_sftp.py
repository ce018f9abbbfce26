"""The SFTP server: key-only logon with keys registered through the API, read-only,
downloads with paramiko and OpenSSH's sftp, and the SFTP fault switches."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paramiko
import pytest

from tests.conftest import require
from tests.sandbox.support import (
    PRO_EMAIL,
    PRO_KEY,
    ULTIMATE_EMAIL,
    Sandbox,
    make_key,
    openssh_sftp,
    register_key,
    running_sandbox,
    sftp_session,
    signal,
)

EXPORT = """
mutation($start: String!, $end: String!) {
  exportSignals(jobName: "nightly",
                export: {signals: {signalTypes: ["order", "emailSend"],
                                   timestampStart: $start, timestampEnd: $end}}) {
    dataJobId path
  }
}
"""


def _export(sandbox: Sandbox) -> str:
    """Send a few signals and export them; the path of the completed file."""
    sandbox.create_signals([signal("order", n=i) for i in range(20)])
    now = datetime.now(UTC)
    window = {"start": (now - timedelta(hours=1)).isoformat(),
              "end": (now + timedelta(hours=1)).isoformat()}  # fmt: skip
    created = sandbox.graphql(EXPORT, window).json()["data"]["exportSignals"]
    job = sandbox.wait_job(created["dataJobId"])
    assert job["status"] == "COMPLETED"
    return str(created["path"])


def _require_openssh() -> None:
    require(
        shutil.which("sftp") is not None, "OpenSSH sftp client (apt-get install openssh-client)"
    )


def test_an_export_downloads_with_paramiko(sandbox: Sandbox, tmp_path: Path) -> None:
    key = make_key(tmp_path)
    register_key(sandbox, key)
    path = _export(sandbox)
    on_disk = (sandbox.data / "sftp" / ULTIMATE_EMAIL / path).read_bytes()
    with sftp_session(sandbox, key) as sftp:
        assert sftp.listdir("/") == ["Export"]
        folder, name = path.rsplit("/", 1)
        assert name in sftp.listdir(folder)
        target = tmp_path / "download.csv.gz"
        sftp.get(path, str(target))
    assert target.read_bytes() == on_disk


def test_an_export_downloads_with_openssh_sftp_batch_mode(sandbox: Sandbox, tmp_path: Path) -> None:
    _require_openssh()
    key = make_key(tmp_path)
    register_key(sandbox, key)
    path = _export(sandbox)
    result = openssh_sftp(
        sandbox, key, tmp_path, f'ls -l Export/Signals\nget "/{path}" out.csv.gz\n'
    )
    assert result.returncode == 0, result.stderr
    on_disk = (sandbox.data / "sftp" / ULTIMATE_EMAIL / path).read_bytes()
    assert (tmp_path / "out.csv.gz").read_bytes() == on_disk


def test_clients_cannot_write_rename_or_delete(sandbox: Sandbox, tmp_path: Path) -> None:
    key = make_key(tmp_path)
    register_key(sandbox, key)
    path = _export(sandbox)
    with sftp_session(sandbox, key) as sftp:
        with pytest.raises(PermissionError):
            sftp.open("Export/Signals/new.csv", "w")
        with pytest.raises(PermissionError):
            sftp.open(path, "a")
        with pytest.raises(PermissionError):
            sftp.remove(path)
        with pytest.raises(PermissionError):
            sftp.rename(path, "Export/Signals/x.csv.gz")
        with pytest.raises(PermissionError):
            sftp.mkdir("Export/Signals/mine")
        with pytest.raises(PermissionError):
            sftp.rmdir("Export/Signals")
        with pytest.raises(PermissionError):
            sftp.chmod(path, 0o777)
    assert (sandbox.data / "sftp" / ULTIMATE_EMAIL / path).is_file()
    # The same refusals to OpenSSH's client (a missing client fails CI, skips loudly here).
    _require_openssh()
    (tmp_path / "local.txt").write_text("hello")
    result = openssh_sftp(sandbox, key, tmp_path, "put local.txt Export/Signals/local.txt\n")
    assert result.returncode != 0
    result = openssh_sftp(sandbox, key, tmp_path, f'rm "/{path}"\n')
    assert result.returncode != 0
    assert (sandbox.data / "sftp" / ULTIMATE_EMAIL / path).is_file()


def test_unknown_keys_and_users_are_refused(sandbox: Sandbox, tmp_path: Path) -> None:
    registered = make_key(tmp_path, "registered")
    stranger = make_key(tmp_path, "stranger")
    register_key(sandbox, registered)
    with pytest.raises(paramiko.AuthenticationException), sftp_session(sandbox, stranger):
        pass
    # The key is the ultimate user's, not the pro user's (who registered none).
    with (
        pytest.raises(paramiko.AuthenticationException),
        sftp_session(sandbox, registered, user=PRO_EMAIL),
    ):
        pass
    with (
        pytest.raises(paramiko.AuthenticationException),
        sftp_session(sandbox, registered, user="nobody@example.com"),
    ):
        pass
    _require_openssh()
    assert openssh_sftp(sandbox, stranger, tmp_path, "ls\n").returncode != 0


def test_registering_a_new_key_replaces_the_old_one(sandbox: Sandbox, tmp_path: Path) -> None:
    first, second = make_key(tmp_path, "first"), make_key(tmp_path, "second")
    register_key(sandbox, first)
    register_key(sandbox, second)
    with sftp_session(sandbox, second) as sftp:
        assert sftp.listdir("/") == ["Export"]
    with pytest.raises(paramiko.AuthenticationException), sftp_session(sandbox, first):
        pass


def test_a_bad_public_key_is_refused_by_the_mutation(sandbox: Sandbox) -> None:
    query = "mutation($k: String!) { updatePublicKeyForConnectUser(publicKey: $k) { publicKey } }"
    for bad in ("YOUR_PUBLIC_KEY", "ssh-ed25519 AAAAnotbase64", ""):
        body = sandbox.graphql(query, {"k": bad}).json()
        assert body["errors"][0]["extensions"]["field"] == "publicKey", bad


def test_each_user_sees_only_their_own_files(sandbox: Sandbox, tmp_path: Path) -> None:
    key = make_key(tmp_path)
    register_key(sandbox, key, api_key=PRO_KEY)
    _export(sandbox)  # the ultimate account's file
    with sftp_session(sandbox, key, user=PRO_EMAIL) as sftp:
        assert sftp.listdir("Export/Signals") == []
        with pytest.raises(FileNotFoundError):
            sftp.stat(f"../{ULTIMATE_EMAIL}/Export")


def test_the_host_key_survives_a_restart(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with running_sandbox(data) as first:
        host_key = first.host_key
    with running_sandbox(data) as second:
        assert second.host_key == host_key
    assert (data / "ssh_host_ed25519_key").is_file()


def test_a_session_cut_mid_transfer(sandbox: Sandbox, tmp_path: Path) -> None:
    key = make_key(tmp_path)
    register_key(sandbox, key)
    path = _export(sandbox)
    sandbox.faults(sftp_cut_after_bytes=64)
    with (
        pytest.raises((EOFError, OSError, paramiko.SSHException)),
        sftp_session(sandbox, key) as sftp,
    ):
        sftp.get(path, str(tmp_path / "partial.csv.gz"))
    sandbox.faults(sftp_cut_after_bytes=None)
    with sftp_session(sandbox, key) as sftp:
        sftp.get(path, str(tmp_path / "whole.csv.gz"))
    assert (tmp_path / "whole.csv.gz").stat().st_size > 64


def test_a_changed_host_key_is_refused_by_pinned_clients(sandbox: Sandbox, tmp_path: Path) -> None:
    key = make_key(tmp_path)
    register_key(sandbox, key)
    pinned = sandbox.host_key
    sandbox.faults(host_key_changed=True)
    changed = sandbox.http.get("/_control/status").json()["host_key"]
    assert changed != pinned
    with pytest.raises(paramiko.BadHostKeyException), sftp_session(sandbox, key, pinned=pinned):
        pass
    _require_openssh()
    result = openssh_sftp(sandbox, key, tmp_path, "ls\n", pinned=pinned)
    assert result.returncode != 0
    assert "Host key verification failed" in result.stderr
    # A client that pins the new key gets in; switching back restores the old key.
    with sftp_session(sandbox, key, pinned=changed) as sftp:
        assert sftp.listdir("/") == ["Export"]
    sandbox.faults(host_key_changed=False)
    with sftp_session(sandbox, key, pinned=pinned) as sftp:
        assert sftp.listdir("/") == ["Export"]
