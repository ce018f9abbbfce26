"""Object stores for the tests.

A stand-in for an object store (S3 and the like): files kept in a folder, but
reachable only through the storage API, as in a bucket: `path()` is not implemented (the
base Storage's), so code that opens a stored file by a path on this machine fails with it,
and what needs a local file must go through connectadmin.files' streamed copy.

Configured as FILES_STORAGE=tests.object_store.ObjectStoreStandIn with
FILES_STORAGE_OPTIONS={"root": "<shared folder>"}; each storage keeps its files in the
subfolder its "location" names (imports, exports), as S3Storage keeps them under a prefix.

And a real S3-compatible server, moto's, for django-storages' S3Storage (connectadmin.s3).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from django.core.files import File
from django.core.files.storage import FileSystemStorage, Storage


class ObjectStoreStandIn(Storage):
    def __init__(self, root: str, location: str = "") -> None:
        self._folder = FileSystemStorage(location=str(Path(root) / location))

    def _open(self, name: str, mode: str = "rb") -> File[Any]:
        return self._folder.open(name, mode)

    def _save(self, name: str, content: IO[bytes] | File[Any]) -> str:
        # Streamed in chunks, never moved: an object store cannot take a local file's place.
        source = content.file if isinstance(content, File) else content
        return self._folder.save(name, File(source, name=name))

    def delete(self, name: str) -> None:
        self._folder.delete(name)

    def exists(self, name: str) -> bool:
        return self._folder.exists(name)

    def size(self, name: str) -> int:
        return self._folder.size(name)

    def listdir(self, path: str) -> tuple[list[str], list[str]]:
        return self._folder.listdir(path)

    def get_modified_time(self, name: str) -> datetime:
        return self._folder.get_modified_time(name)

    def url(self, name: str | None) -> str:
        raise NotImplementedError("the stand-in object store serves no URLs")


# A real S3-compatible server for the tests: moto's, in a process of its own on a free
# loopback port (the role the sandbox plays for the vendors). It keeps the objects in its
# own memory and temporary folder, which go with it.
MOTO_ACCESS_KEY = "test-access-key"
MOTO_SECRET_KEY = "test-secret-key"
MOTO_REGION = "us-east-1"
_SERVE_MOTO = """
import sys
from moto.server import ThreadedMotoServer
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
print(server.get_host_and_port()[1], flush=True)
sys.stdin.read()  # until the test closes it
server.stop()
"""


def moto_installed() -> bool:
    return importlib.util.find_spec("moto") is not None


@dataclass
class MotoS3:
    process: subprocess.Popen[str]
    endpoint_url: str

    def client(self) -> Any:
        import boto3  # type: ignore[import-untyped]

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=MOTO_ACCESS_KEY,
            aws_secret_access_key=MOTO_SECRET_KEY,
            region_name=MOTO_REGION,
        )

    def new_bucket(self) -> str:
        name = f"connectadmin-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def options(self, bucket: str) -> dict[str, str]:
        """FILES_STORAGE_OPTIONS for django-storages' S3Storage on this server."""
        return {
            "bucket_name": bucket,
            "endpoint_url": self.endpoint_url,
            "access_key": MOTO_ACCESS_KEY,
            "secret_key": MOTO_SECRET_KEY,
            "region_name": MOTO_REGION,
        }

    def objects(self, bucket: str) -> dict[str, int]:
        """Every object in the bucket, listed by the server: key -> size."""
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket)
        return {entry["Key"]: entry["Size"] for page in pages for entry in page.get("Contents", ())}


@contextmanager
def running_moto_s3(folder: Path) -> Iterator[MotoS3]:
    """moto's S3 server started in its own process, its temporary files in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [sys.executable, "-c", _SERVE_MOTO],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "TMPDIR": str(folder)},
        text=True,
    )
    try:
        assert process.stdout is not None
        port = process.stdout.readline().strip()  # printed once it listens
        assert port.isdigit(), f"moto's S3 server did not start ({process.poll()})"
        yield MotoS3(process, f"http://127.0.0.1:{port}")
    finally:
        if process.stdin:
            process.stdin.close()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        if process.stdout:
            process.stdout.close()
