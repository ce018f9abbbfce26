"""Start the real sandbox process and talk to it; helpers shared by the sandbox tests."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import paramiko
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

ROOT = Path(__file__).resolve().parents[2]
PRO_KEY = "test-pro-key"
PREMIUM_KEY = "test-premium-key"
ULTIMATE_KEY = "test-ultimate-key"
ATTENTIVE_KEY = "test-attentive-key"
PRO_EMAIL = "pro.user@example.com"
PREMIUM_EMAIL = "premium.user@example.com"
ULTIMATE_EMAIL = "ultimate.user@example.com"
DEFAULT_ARGS = (
    "--account", f"{PRO_KEY}:pro:{PRO_EMAIL}",
    "--account", f"{PREMIUM_KEY}:premium:{PREMIUM_EMAIL}",
    "--account", f"{ULTIMATE_KEY}:ultimate:{ULTIMATE_EMAIL}",
    "--attentive-key", ATTENTIVE_KEY,
    "--export-delay", "0.2",
    "--attentive-rate-limit", "0",
)  # fmt: skip
CREATE = (
    "mutation Send($signals: [SignalInput!]!) { createSignals(signals: $signals) { signalIds } }"
)


@dataclass
class Sandbox:
    process: subprocess.Popen[bytes]
    data: Path
    http_port: int
    sftp_port: int
    host_key: str
    http: httpx.Client

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def graphql(
        self,
        query: str,
        variables: dict[str, Any] | None = None,
        *,
        api_key: str | None = ULTIMATE_KEY,
        timeout: float = 10.0,
    ) -> httpx.Response:
        headers = {"x-api-key": api_key} if api_key is not None else {}
        body: dict[str, Any] = {"query": query}
        if variables is not None:
            body["variables"] = variables
        return self.http.post("/graphql", json=body, headers=headers, timeout=timeout)

    def create_signals(
        self, signals: list[dict[str, Any]], api_key: str = ULTIMATE_KEY
    ) -> httpx.Response:
        return self.graphql(CREATE, {"signals": signals}, api_key=api_key)

    def control(self, path: str, body: dict[str, Any] | None = None) -> Any:
        response = self.http.post(f"/_control/{path}", json=body or {})
        assert response.status_code == 200, response.text
        return response.json()

    def faults(self, **settings: Any) -> dict[str, Any]:
        result: dict[str, Any] = self.control("faults", settings)
        return result

    def in_flight(self, *, reset: bool = False) -> dict[str, dict[str, int]]:
        """Per API path, the calls being served now and the most at once (since a reset)."""
        method = "DELETE" if reset else "GET"
        response = self.http.request(method, "/_control/in-flight")
        assert response.status_code == 200, response.text
        result: dict[str, dict[str, int]] = response.json()
        return result

    def inspect(self, limit: int = 1000) -> dict[str, Any]:
        response = self.http.get("/_inspect", params={"limit": limit})
        assert response.status_code == 200
        result: dict[str, Any] = response.json()
        return result

    def wait_job(
        self, job_id: str, api_key: str = ULTIMATE_KEY, seconds: float = 20
    ) -> dict[str, Any]:
        """Poll the sandbox's own job-status query until the job is done (bounded)."""
        query = (
            "query($id: String!) { dataJob(dataJobId: $id) "
            "{ status path rows sizeBytes error expiresAt } }"
        )
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            job = self.graphql(query, {"id": job_id}, api_key=api_key).json()["data"]["dataJob"]
            if job["status"] in ("COMPLETED", "FAILED"):
                return dict(job)
            time.sleep(0.05)
        raise AssertionError(f"export {job_id} not done after {seconds} s")


def start_sandbox(data: Path, *args: str, defaults: bool = True) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "sandbox", "serve", "--http-port", "0", "--sftp-port", "0",
               "--data", str(data), *(DEFAULT_ARGS if defaults else ()), *args]  # fmt: skip
    return subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=os.environ.copy()
    )


def wait_ready(process: subprocess.Popen[bytes], data: Path, seconds: float = 30) -> dict[str, Any]:
    ports = data / "ports.json"
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            stderr = process.stderr.read().decode() if process.stderr else ""
            raise AssertionError(f"sandbox exited with {process.returncode}: {stderr}")
        if ports.exists():
            ready: dict[str, Any] = json.loads(ports.read_text())
            if ready.get("pid") == process.pid:
                return ready
        time.sleep(0.05)
    raise AssertionError(f"sandbox not ready after {seconds} s")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
    if process.stderr:
        process.stderr.close()


@contextmanager
def running_sandbox(data: Path, *args: str, defaults: bool = True) -> Iterator[Sandbox]:
    (data / "ports.json").unlink(missing_ok=True)
    process = start_sandbox(data, *args, defaults=defaults)
    try:
        ready = wait_ready(process, data)
        with httpx.Client(base_url=f"http://127.0.0.1:{ready['http_port']}", timeout=10) as http:
            yield Sandbox(
                process, data, ready["http_port"], ready["sftp_port"], ready["host_key"], http
            )
    finally:
        stop(process)


# Signals -------------------------------------------------------------------------------


def signal(signal_type: str = "order", *, n: int = 0, **content: Any) -> dict[str, Any]:
    """A valid envelope of each type (required fields filled)."""
    required: dict[str, dict[str, Any]] = {
        "addToCart": {"currency": "USD", "itemQuantity": 2, "productId": "P-1",
                      "productName": "Paint", "unitPrice": 39.99},
        "browseAbandonment": {"currency": "USD"},
        "cartAbandonment": {"abandonedCartValue": 159.97, "currency": "USD"},
        "error": {"errorText": "This promo code is invalid.", "errorType": "user"},
        "identification": {"identifierName": "email", "identifierValue": "jane@example.com"},
        "onSiteSearch": {"numberOfResults": 9, "searchTerm": "paint"},
        "order": {"currency": "USD", "orderId": f"ORD-{n}"},
        "pageView": {"url": "https://www.example.com/"},
        "productConfiguration": {"currency": "USD", "productId": "P-1", "productName": "Paint"},
        "productView": {"productId": "P-1", "productName": "Paint"},
        "richMediaInteraction": {"mediaId": "jhaf6r76a"},
    }  # fmt: skip
    return {
        "appKey": "test-app",
        "identifiableAttributes": {"email": f"contact{n}@example.com"},
        "sessionId": f"SESS-{n}",
        "signalContent": {"signalType": signal_type, **required[signal_type], **content},
    }


# SSH keys --------------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyPair:
    private_path: Path
    public_line: str

    def paramiko_key(self) -> paramiko.PKey:
        return paramiko.Ed25519Key.from_private_key_file(str(self.private_path))


def make_key(folder: Path, name: str = "key") -> KeyPair:
    """An ed25519 key pair in OpenSSH format, as `ssh-keygen -t ed25519` would write."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    path = folder / name
    path.write_bytes(private)
    path.chmod(0o600)
    line = public.decode() + " Acoustic Connect key"
    (folder / f"{name}.pub").write_text(line + "\n")
    return KeyPair(path, line)


def register_key(sandbox: Sandbox, key: KeyPair, api_key: str = ULTIMATE_KEY) -> None:
    query = "mutation($k: String!) { updatePublicKeyForConnectUser(publicKey: $k) { publicKey } }"
    response = sandbox.graphql(query, {"k": key.public_line}, api_key=api_key)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["data"]["updatePublicKeyForConnectUser"]["publicKey"] == key.public_line


def host_key_object(line: str) -> paramiko.PKey:
    kind, data = line.split()[:2]
    assert kind == "ssh-ed25519"
    return paramiko.Ed25519Key(data=base64.b64decode(data))


@contextmanager
def sftp_session(
    sandbox: Sandbox, key: KeyPair, user: str = ULTIMATE_EMAIL, pinned: str | None = None
) -> Iterator[paramiko.SFTPClient]:
    """paramiko with the host key pinned (a different key is refused, never accepted)."""
    client = paramiko.SSHClient()
    client.get_host_keys().add(
        f"[127.0.0.1]:{sandbox.sftp_port}",
        "ssh-ed25519",
        host_key_object(pinned or sandbox.host_key),
    )
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    try:
        client.connect(
            "127.0.0.1", sandbox.sftp_port, username=user, pkey=key.paramiko_key(),
            look_for_keys=False, allow_agent=False, timeout=10, banner_timeout=10,
            auth_timeout=10,
        )  # fmt: skip
        sftp = client.open_sftp()
        sftp.get_channel().settimeout(10)  # type: ignore[union-attr]
        yield sftp
    finally:
        client.close()


def openssh_sftp(
    sandbox: Sandbox, key: KeyPair, folder: Path, batch: str, user: str = ULTIMATE_EMAIL,
    pinned: str | None = None,
) -> subprocess.CompletedProcess[str]:  # fmt: skip
    """OpenSSH's `sftp -b` with only our key and our known_hosts (pinned host key)."""
    known_hosts = folder / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{sandbox.sftp_port} {pinned or sandbox.host_key}\n")
    batch_file = folder / "batch.txt"
    batch_file.write_text(batch)
    return subprocess.run(
        ["sftp", "-F", "/dev/null", "-b", str(batch_file), "-P", str(sandbox.sftp_port),
         "-i", str(key.private_path), "-o", f"User={user}", "-o", "IdentitiesOnly=yes",
         "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
         "-o", f"UserKnownHostsFile={known_hosts}", "-o", "GlobalKnownHostsFile=/dev/null",
         "-o", "ConnectTimeout=10", "127.0.0.1"],
        cwd=folder, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
