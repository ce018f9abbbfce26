"""The only place that speaks SFTP (paramiko): log on to an account's SFTP folder with its
key, the server's host key checked before anything else is sent, list the export tree and
download a file, resumable, with paramiko's read-ahead bounded.

Nothing here touches the database: what to do with a host key is the caller's `HostKeyCheck`,
which raises HostKeyRefused to stop the logon (services.hostkeys pins them).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import posixpath
import socket
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, Final

import paramiko

EXPORT_ROOT: Final = "Export/Signals"
# Outstanding read requests: paramiko's default prefetch asks for the whole file at once,
# which hangs some servers and holds the file in memory (paramiko #1788, #2455, PR #2519).
MAX_OUTSTANDING_READS: Final = 64
READ_SIZE: Final = 32 * 1024  # paramiko's own request size (its MAX_REQUEST_SIZE)
MAX_TREE_ENTRIES: Final = 10_000  # a listing stops there rather than walk forever


class SftpError(Exception):
    """The SFTP server could not be used; str() says why, for a person."""


class HostKeyRefused(SftpError):
    """The server's host key is not (or no longer) the approved one."""


HostKeyCheck = Callable[[str, int, str, str], None]  # host, port, key type, base64: raises


@dataclass(frozen=True, slots=True)
class SftpTarget:
    host: str
    port: int
    user: str
    private_key: str  # OpenSSH format text; decrypted in memory only
    timeout: float = 20.0


@dataclass(frozen=True, slots=True)
class RemoteEntry:
    path: str  # relative to the user's root, "/"-separated
    size: int
    mtime: datetime


def fingerprint(key_base64: str) -> str:
    """OpenSSH's SHA256 fingerprint of a public key blob (as `ssh-keygen -lf` shows it)."""
    digest = hashlib.sha256(base64.b64decode(key_base64)).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def load_private_key(text: str) -> paramiko.PKey:
    """An OpenSSH private key (ed25519, ECDSA or RSA) from its text; SftpError if unusable."""
    last: Exception | None = None
    for kind in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
        try:
            return kind.from_private_key(io.StringIO(text))
        except paramiko.PasswordRequiredException:
            raise SftpError("the private key is protected by a passphrase") from None
        except (paramiko.SSHException, ValueError, IndexError) as exc:
            last = exc
    raise SftpError(f"the private key cannot be read ({last})")


@contextlib.contextmanager
def session(target: SftpTarget, check_host_key: HostKeyCheck) -> Iterator[Session]:
    """A logged-on SFTP session. The host key is checked right after the key exchange,
    before the user's key is offered."""
    try:
        sock = socket.create_connection((target.host, target.port), timeout=target.timeout)
    except OSError as exc:
        raise SftpError(
            f"cannot reach {target.host}:{target.port} ({exc.strerror or exc})"
        ) from None
    transport = paramiko.Transport(sock)
    transport.banner_timeout = transport.auth_timeout = target.timeout
    try:
        try:
            transport.start_client(timeout=target.timeout)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise SftpError(
                f"{target.host}:{target.port} does not speak SSH as expected ({exc})"
            ) from None
        server_key = transport.get_remote_server_key()
        check_host_key(target.host, target.port, server_key.get_name(), server_key.get_base64())
        pkey = load_private_key(target.private_key)
        try:
            transport.auth_publickey(target.user, pkey)
        except paramiko.AuthenticationException:
            raise SftpError(
                f"the SFTP server refused the logon of {target.user} with key "
                f"{fingerprint(pkey.get_base64())}: is this key registered with Connect?"
            ) from None
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise SftpError(f"the logon of {target.user} failed ({exc})") from None
        try:
            sftp = paramiko.SFTPClient.from_transport(transport)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise SftpError(f"the server opened no SFTP session ({exc})") from None
        if sftp is None:
            raise SftpError("the server opened no SFTP session")
        channel = sftp.get_channel()
        if channel is not None:
            channel.settimeout(target.timeout)
        yield Session(sftp)
    finally:
        transport.close()


def safe_remote_path(path: str) -> str:
    """`path` as a relative path inside the user's tree, or SftpError: no absolute path,
    no "..", no empty or odd segment (the file lands under a folder of ours by this name)."""
    if not path or path.startswith(("/", "\\")) or "\\" in path or "\x00" in path:
        raise SftpError(f"the remote name {path!r} is not a relative path of the export folder")
    parts = path.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise SftpError(f"the remote name {path!r} leaves or skips a folder; refused")
    return posixpath.normpath(path)


class Session:
    def __init__(self, sftp: paramiko.SFTPClient) -> None:
        self.sftp = sftp

    def tree(self, root: str = EXPORT_ROOT) -> list[RemoteEntry]:
        """Every file under `root` (relative to the user's home), newest first; at most
        MAX_TREE_ENTRIES, folders followed breadth first, symbolic links not followed."""
        found: list[RemoteEntry] = []
        folders = [safe_remote_path(root)]
        seen = 0
        while folders and seen < MAX_TREE_ENTRIES:
            folder = folders.pop(0)
            try:
                entries = self.sftp.listdir_attr(folder)
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise SftpError(f"cannot list {folder} ({exc})") from None
            for entry in sorted(entries, key=lambda e: e.filename):
                seen += 1
                name = entry.filename
                if name in (".", "..") or "/" in name:
                    continue
                path = f"{folder}/{name}"
                mode = entry.st_mode or 0
                if stat.S_ISDIR(mode):
                    folders.append(path)
                elif stat.S_ISREG(mode):
                    found.append(
                        RemoteEntry(
                            path,
                            entry.st_size or 0,
                            datetime.fromtimestamp(entry.st_mtime or 0, tz=UTC),
                        )
                    )
        found.sort(key=lambda e: (e.mtime, e.path), reverse=True)
        return found

    def size(self, path: str) -> int | None:
        try:
            return self.sftp.stat(safe_remote_path(path)).st_size
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise SftpError(f"cannot look at {path} ({exc})") from None

    def download(
        self,
        path: str,
        out: IO[bytes],
        *,
        start: int = 0,
        on_data: Callable[[bytes], None] | None = None,
    ) -> int:
        """Append the remote file's bytes from `start` to `out` (each piece also to
        `on_data`); the number of bytes written. At most MAX_OUTSTANDING_READS reads of
        READ_SIZE are in flight: fast on a long link, bounded in memory."""
        remote = safe_remote_path(path)
        try:
            size = self.sftp.stat(remote).st_size or 0
            handle = self.sftp.open(remote, "rb")
        except FileNotFoundError:
            raise SftpError(f"{path} is not on the SFTP server (expired?)") from None
        except OSError as exc:
            raise SftpError(f"cannot open {path} ({exc})") from None
        written = 0
        try:
            with handle:
                chunks = [
                    (offset, min(READ_SIZE, size - offset))
                    for offset in range(start, size, READ_SIZE)
                ]
                for data in handle.readv(chunks, MAX_OUTSTANDING_READS):
                    out.write(data)
                    if on_data is not None:
                        on_data(data)
                    written += len(data)
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise ConnectionBroke(
                f"the connection broke after {start + written} of {size} bytes of {path} ({exc})",
                written,
            ) from None
        return written


class ConnectionBroke(SftpError):
    """The transfer stopped part-way; `written` bytes of it arrived first."""

    def __init__(self, message: str, written: int) -> None:
        super().__init__(message)
        self.written = written
