"""The SFTP server holding export results (asyncssh).

Key-only logon: the user is the Connect e-mail, the key the one registered through
`updatePublicKeyForConnectUser` (looked up at each logon, so a rotation takes effect at
once). Each user sees only their own tree, read-only. The host key is persisted under
the data folder; the `host_key_changed` fault restarts the listener with another one.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncssh
from asyncssh import SFTPAttrs, SFTPPermissionDenied

from sandbox.faults import Faults

WRITE_FLAGS = asyncssh.FXF_WRITE | asyncssh.FXF_CREAT | asyncssh.FXF_TRUNC | asyncssh.FXF_APPEND
WRITE_ACCESS = asyncssh.ACE4_WRITE_DATA | asyncssh.ACE4_APPEND_DATA | asyncssh.ACE4_WRITE_ATTRIBUTES
READ_ONLY = "the sandbox's SFTP tree is read-only for clients"


def check_public_key(text: str) -> str:
    """The OpenSSH one-line public key, normalised; ValueError when it is not one."""
    line = text.strip()
    if not line or "\n" in line:
        raise ValueError("expected one OpenSSH public key line, e.g. 'ssh-ed25519 AAAA... comment'")
    try:
        asyncssh.import_public_key(line)
    except (asyncssh.KeyImportError, ValueError) as exc:
        raise ValueError(f"not an OpenSSH public key ({exc})") from None
    return line


def load_host_key(path: Path) -> asyncssh.SSHKey:
    """Read the host key, creating it on first start so clients can pin it."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        key = asyncssh.generate_private_key("ssh-ed25519", comment="connectadmin sandbox")
        tmp = path.with_suffix(".tmp")
        key.write_private_key(str(tmp))
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    return asyncssh.read_private_key(str(path))


class _ReadOnlySFTP(asyncssh.SFTPServer):
    def __init__(self, chan: asyncssh.SSHServerChannel, root: Path, faults: Faults) -> None:
        super().__init__(chan, chroot=str(root).encode())
        self._faults = faults
        self._served = 0

    def open(self, path: bytes, pflags: int, attrs: SFTPAttrs) -> object:
        if pflags & WRITE_FLAGS:
            raise SFTPPermissionDenied(READ_ONLY)
        return super().open(path, pflags, attrs)

    def open56(self, path: bytes, desired_access: int, flags: int, attrs: SFTPAttrs) -> object:
        if desired_access & WRITE_ACCESS or flags & asyncssh.FXF_APPEND_DATA:
            raise SFTPPermissionDenied(READ_ONLY)
        if flags & 0x7 not in (asyncssh.FXF_OPEN_EXISTING,):
            raise SFTPPermissionDenied(READ_ONLY)
        return super().open56(path, desired_access, flags, attrs)

    def read(self, file_obj: object, offset: int, size: int) -> Any:
        data = super().read(file_obj, offset, size)
        cut = self._faults.config.sftp_cut_after_bytes
        if cut is not None and isinstance(data, bytes):
            self._served += len(data)
            if self._served > cut:
                # The fault: the TCP connection goes, mid-file, without an SSH goodbye.
                self.connection.abort()
        return data

    def _refuse(self, *_args: object) -> None:
        raise SFTPPermissionDenied(READ_ONLY)

    write = remove = mkdir = rmdir = rename = posix_rename = _refuse  # type: ignore[assignment]
    setstat = lsetstat = fsetstat = symlink = link = _refuse  # type: ignore[assignment]


class _SSHServer(asyncssh.SSHServer):
    def __init__(self, lookup_key: Callable[[str], str | None]) -> None:
        self._lookup_key = lookup_key

    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return False

    def kbdint_auth_supported(self) -> bool:
        return False

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        registered = self._lookup_key(username)
        if registered is None:
            return False
        try:
            known = asyncssh.import_public_key(registered)
        except (asyncssh.KeyImportError, ValueError):
            return False
        return bool(known.public_data == key.public_data)


class SFTPService:
    def __init__(
        self,
        *,
        host: str,
        port: int,
        root: Path,
        host_key_path: Path,
        faults: Faults,
        lookup_key: Callable[[str], str | None],
    ) -> None:
        self.host = host
        self.port = port
        self.root = root
        self.faults = faults
        self.lookup_key = lookup_key
        self.host_key = load_host_key(host_key_path)
        # A second persisted key for the "changed host key" fault, stable across restarts.
        self.changed_host_key = load_host_key(
            host_key_path.with_name(host_key_path.name + "_changed")
        )
        self._server: asyncssh.SSHAcceptor | None = None
        self._serving_changed = False

    @property
    def current_host_key(self) -> asyncssh.SSHKey:
        return self.changed_host_key if self._serving_changed else self.host_key

    def host_key_info(self) -> dict[str, str]:
        key = self.current_host_key
        return {
            "host_key": key.export_public_key().decode().strip(),
            "host_key_fingerprint": key.get_fingerprint("sha256"),
        }

    def _user_root(self, username: str) -> Path:
        root = self.root / username
        (root / "Export" / "Signals").mkdir(parents=True, exist_ok=True)
        return root

    def _sftp_factory(self, chan: asyncssh.SSHServerChannel) -> asyncssh.SFTPServer:
        username = chan.get_extra_info("username")
        return _ReadOnlySFTP(chan, self._user_root(username), self.faults)

    async def start(self) -> None:
        self._serving_changed = self.faults.config.host_key_changed
        self._server = await asyncssh.create_server(
            lambda: _SSHServer(self.lookup_key),
            self.host,
            self.port,
            server_host_keys=[self.current_host_key],
            sftp_factory=self._sftp_factory,
            allow_scp=False,
            # No shells or commands: a session that is not SFTP is refused.
            process_factory=None,
            session_factory=None,
            encoding=None,
            login_timeout=30,
        )
        self.port = self._server.get_port()

    async def apply_faults(self) -> None:
        """Restart the listener when the host-key switch changed (live sessions go on)."""
        if self.faults.config.host_key_changed == self._serving_changed:
            return
        await self.close()
        await self.start()
        print(f"sandbox: SFTP host key now {self.host_key_info()['host_key_fingerprint']}",
              file=sys.stderr)  # fmt: skip

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
