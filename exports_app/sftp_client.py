"""The only place that speaks SFTP (paramiko): log on to an account's SFTP folder with its
key, the server's host key checked before anything else is sent, list the export tree and
download a file, resumable, with paramiko's read-ahead bounded.

Nothing here touches the database: what to do with a host key is the caller's `HostKeyCheck`,
which raises HostKeyRefused to stop the logon (services.hostkeys pins them).
"""

from __future__ import annotations

import base64
import collections
import contextlib
import hashlib
import io
import posixpath
import socket
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, Any, Final, cast

import paramiko
from paramiko.sftp import CMD_DATA, CMD_READ, CMD_STATUS, int64

EXPORT_ROOT: Final = "Export/Signals"
# Read requests in flight (and answers held): paramiko's default prefetch asks for the whole
# file at once, which hangs some servers, and holds answers without bound (paramiko #1788,
# #2455, PR #2519); see _Reads.
MAX_OUTSTANDING_READS: Final = 16
# Larger reads than paramiko's 32 KB: per request and per packet, paramiko's Python costs
# more than the bytes do. 255 KB is OpenSSH's largest read (SFTP_MAX_READ_LENGTH); a server
# answering less is still read whole (_Reads asks for the rest).
READ_SIZE: Final = 255 * 1024
MIN_READ_SIZE: Final = 32 * 1024  # after a connection broke before a read came whole
CHANNEL_WINDOW: Final = 16 * 1024 * 1024  # bytes the server may send before we say "more"
CHANNEL_MAX_PACKET: Final = 256 * 1024
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
            sftp = paramiko.SFTPClient.from_transport(
                transport, window_size=CHANNEL_WINDOW, max_packet_size=CHANNEL_MAX_PACKET
            )
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
        read_size: int = READ_SIZE,
    ) -> int:
        """Append the remote file's bytes from `start` to `out` (each piece also to
        `on_data`); the number of bytes written. See _Reads: at most MAX_OUTSTANDING_READS
        reads of `read_size` in flight, and as many answers held: fast on a long link,
        bounded in memory however slowly `out` takes them."""
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
                reads = _Reads(self.sftp, cast(bytes, handle.handle), MAX_OUTSTANDING_READS)
                for data in reads.pieces(start, size, read_size):
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


class _Reads:
    """A sliding window of read requests on one open file, answered in order.

    paramiko's own read-ahead (`prefetch`, `readv`) bounds the requests in flight but not
    the answers it holds: a prefetch thread keeps asking while the reader is slower (a
    disk, the counting child), and a race takes the reader off the prefetch altogether
    (paramiko PR #2519), so the answers pile up in memory (180 MB measured here) and the
    file is read again, one synchronous read at a time. Here one thread asks and takes:
    a new request goes out only when the oldest answer has been handed on, so at most
    `depth` requests or answers exist at once. It uses the two calls paramiko's own
    SFTPFile uses for this (`_async_request`, `_read_response`).

    A read answered short (a server with a smaller cap than ours) is followed by a read of
    the rest, taken before the answers behind it; end of file before `size` ends the
    pieces early (the caller compares sizes)."""

    def __init__(self, sftp: paramiko.SFTPClient, handle: bytes, depth: int) -> None:
        self._sftp: Any = sftp  # the private calls are not in paramiko's stubs
        self._handle = handle
        self._depth = depth
        self._answers: dict[int, tuple[int, paramiko.Message]] = {}

    def _async_response(self, kind: int, msg: paramiko.Message, num: int) -> None:
        """paramiko hands us the answer to a request of ours that came while waiting for
        another one."""
        self._answers[num] = (kind, msg)

    def _ask(self, offset: int, length: int) -> tuple[int, int, int]:
        num = self._sftp._async_request(self, CMD_READ, self._handle, int64(offset), length)
        return num, offset, length

    def _answer(self, num: int) -> bytes | None:
        """The data of request `num` (waiting for it); None at the end of the file."""
        if num in self._answers:
            kind, msg = self._answers.pop(num)
        else:
            kind, msg = self._sftp._read_response(num)
        if kind == CMD_STATUS:
            try:
                self._sftp._convert_status(msg)
            except EOFError:
                return None
            raise paramiko.SSHException("the server answered a read with no data")
        if kind != CMD_DATA:
            raise paramiko.SSHException(f"the server answered a read with message {kind}")
        return bytes(msg.get_binary())

    def pieces(self, start: int, size: int, read_size: int) -> Iterator[bytes]:
        waiting: collections.deque[tuple[int, int, int]] = collections.deque()
        offset = start
        while waiting or offset < size:
            while len(waiting) < self._depth and offset < size:
                length = min(read_size, size - offset)
                waiting.append(self._ask(offset, length))
                offset += length
            num, at, length = waiting.popleft()
            data = self._answer(num)
            if not data:
                return  # the file ended early (it changed): the caller sees the size
            if len(data) < length:  # a short read: the rest next, before the others
                waiting.appendleft(self._ask(at + len(data), length - len(data)))
            yield data


class ConnectionBroke(SftpError):
    """The transfer stopped part-way; `written` bytes of it arrived first."""

    def __init__(self, message: str, written: int) -> None:
        super().__init__(message)
        self.written = written
