"""exports_app.sftp_client's reads against OpenSSH's sshd: the file whole whatever the read
size the server grants, and never more than the window of reads in flight or held, however
slowly the bytes are taken."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import time
from pathlib import Path

import pytest

from exports_app import sftp_client
from tests.exports.sshd import Sshd


def logged_on(sshd: Sshd, folder: Path) -> sftp_client.SftpTarget:
    key = folder / "client_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    sshd.authorize(Path(f"{key}.pub").read_text())
    return sftp_client.SftpTarget("127.0.0.1", sshd.port, sshd.user, key.read_text())


def put(sshd: Sshd, data: bytes) -> str:
    path = sshd.home / "Export" / "Signals" / "f.bin"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return "Export/Signals/f.bin"


@pytest.mark.parametrize("read_size", [32 * 1024, sftp_client.READ_SIZE, 1024 * 1024 + 17])
def test_the_file_arrives_whole_from_any_offset_whatever_the_server_grants(
    sshd: Sshd, tmp_path: Path, read_size: int
) -> None:
    """OpenSSH answers at most 255 KB per read: larger asks come back short and the rest is
    asked for before the reads behind them are taken."""
    data = os.urandom(3 * 1024 * 1024 + 12345)
    remote = put(sshd, data)
    target = logged_on(sshd, tmp_path)
    with sftp_client.session(target, lambda *_: None) as sftp:
        out = io.BytesIO()
        assert sftp.download(remote, out, read_size=read_size) == len(data)
        assert hashlib.sha256(out.getvalue()).digest() == hashlib.sha256(data).digest()
        rest = io.BytesIO()
        assert sftp.download(remote, rest, start=1_000_001, read_size=read_size) == (
            len(data) - 1_000_001
        )
        assert rest.getvalue() == data[1_000_001:]


def test_a_slow_reader_never_holds_more_than_the_window(sshd: Sshd, tmp_path: Path) -> None:
    """paramiko's prefetch keeps asking while the reader is slow and holds every answer;
    here the reads in flight plus the answers held never pass MAX_OUTSTANDING_READS."""
    data = os.urandom(12 * 1024 * 1024)
    remote = put(sshd, data)
    target = logged_on(sshd, tmp_path)
    seen: list[int] = []
    with sftp_client.session(target, lambda *_: None) as sftp:
        client = sftp.sftp

        def slowly(piece: bytes) -> None:
            time.sleep(0.01)  # a disk or a counter slower than the link
            waiting = client._expecting  # type: ignore[attr-defined]
            readers = set(waiting.values())  # answers held: ours, or paramiko's prefetch
            held = sum(
                len(getattr(r, "_answers", getattr(r, "_prefetch_data", ()))) for r in readers
            )
            seen.append(len(waiting) + held)

        out = io.BytesIO()
        sftp.download(remote, out, on_data=slowly)
    assert out.getvalue() == data
    assert max(seen) <= sftp_client.MAX_OUTSTANDING_READS
    assert len(seen) == len(data) // sftp_client.READ_SIZE + 1
    assert max(seen) >= sftp_client.MAX_OUTSTANDING_READS - 1  # the window was used
