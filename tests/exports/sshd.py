"""OpenSSH's sshd for the SFTP tests: started on a free loopback port with a temporary
config (`internal-sftp` in a folder of the test's own, a fresh host key, the test's
`authorized_keys`), stopped afterwards. Needs Debian's openssh-server (/usr/sbin/sshd);
outside CI a missing one skips the test loudly (tests.conftest.require)."""

from __future__ import annotations

import getpass
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import require

SSHD = "/usr/sbin/sshd"


@dataclass
class Sshd:
    process: subprocess.Popen[bytes]
    folder: Path
    port: int
    user: str
    home: Path  # the SFTP session starts here: paths are relative to it
    host_key: str  # "ssh-ed25519 AAAA..."
    authorized_keys: Path

    def authorize(self, public_line: str) -> None:
        with self.authorized_keys.open("a") as out:
            out.write(public_line.strip() + "\n")

    def log(self) -> str:
        path = self.folder / "sshd.log"
        return path.read_text(errors="replace") if path.exists() else ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def running_sshd(folder: Path, *, host_key_file: Path | None = None) -> Iterator[Sshd]:
    require(os.path.exists(SSHD), f"OpenSSH's sshd at {SSHD} (apt-get install openssh-server)")
    folder.mkdir(parents=True, exist_ok=True)
    os.makedirs("/run/sshd", exist_ok=True)  # sshd's privilege separation directory
    key = host_key_file or folder / "host_ed25519"
    if not key.exists():
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    home = folder / "home"
    home.mkdir(exist_ok=True)
    authorized = folder / "authorized_keys"
    authorized.touch()
    port = free_port()
    config = folder / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {key}\nPidFile {folder}/sshd.pid\n"
        f"AuthorizedKeysFile {authorized}\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nPubkeyAuthentication yes\n"
        "PermitRootLogin prohibit-password\nUsePAM no\nStrictModes no\n"
        f"Subsystem sftp internal-sftp -d {home}\nForceCommand internal-sftp -d {home}\n"
        "LogLevel VERBOSE\n"
    )
    with (folder / "sshd.log").open("wb") as log:
        process = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(config)], stdout=log, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert process.poll() is None, (folder / "sshd.log").read_text()
                assert time.monotonic() < deadline, "sshd did not listen"
                time.sleep(0.05)
        yield Sshd(
            process,
            folder,
            port,
            getpass.getuser(),
            home,
            " ".join(Path(f"{key}.pub").read_text().split()[:2]),
            authorized,
        )
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
