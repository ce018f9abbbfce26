"""django-storages' S3 storage as connectadmin uses it (connectadmin.s3), against a real
S3-compatible server: moto's, in a process of its own on a loopback port.

The memory test stores and reads back a 200 MB file in a child process configured as a
deployment is (FILES_STORAGE=storages.backends.s3.S3Storage, FILES_STORAGE_OPTIONS) and
asserts its peak RSS grows far less than the file (django-storages' own S3Storage grows
by the whole file reading it: +259 MB measured, and by ~116 MB saving it), and that the
first megabyte is read without the whole object coming over first."""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError  # type: ignore[import-untyped]
from django.conf import settings
from django.core.files.base import ContentFile
from django.http import FileResponse

from connectadmin import files, s3
from tests.conftest import require
from tests.object_store import MotoS3, moto_installed, running_moto_s3

BIG_BYTES = 200 * 1024 * 1024
# Far below the file: what a few parts of 8 MiB in flight cost, with room for noise.
MAX_GROWTH_MB = 64

MEASURE = """
import json, resource, sys
from pathlib import Path
import django
django.setup()
from connectadmin import files

def peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

storage = files.imports()
storage.exists("warm-up")  # the client and its connections, before measuring
before = peak_mb()
with open(sys.argv[1], "rb") as source:
    files.save(storage, "big.bin", source)
saved = peak_mb()
files.copy_to(storage, "big.bin", Path(sys.argv[2]))
read = peak_mb()

import socket  # count what comes over the network (http.client reads with recv_into)
received = 0
recv_into = socket.socket.recv_into

def counted(self, buffer, *args):
    global received
    got = recv_into(self, buffer, *args)
    received += got
    return got

socket.socket.recv_into = counted
with storage.open("big.bin", "rb") as file:
    file.read(1024 * 1024)
print(json.dumps({
    "backend": f"{type(storage).__module__}.{type(storage).__name__}",
    "save": saved - before,
    "read": read - before,
    "first_megabyte_read": received,
}))
"""


@pytest.fixture
def moto_s3(tmp_path: Path) -> Iterator[MotoS3]:
    require(moto_installed(), "moto (pip install -r requirements.txt): the S3 server tests")
    with running_moto_s3(tmp_path / "moto") as server:
        yield server


@pytest.fixture
def bucket(moto_s3: MotoS3) -> str:
    return moto_s3.new_bucket()


def storage_on(moto_s3: MotoS3, bucket: str) -> s3.S3Storage:
    return s3.S3Storage(**moto_s3.options(bucket), location="imports")


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


@pytest.fixture
def big_file(tmp_path: Path) -> Iterator[Path]:
    """BIG_BYTES of random bytes; it and its copy removed after the test (pytest keeps the
    temporary folders of its last runs)."""
    big = tmp_path / "big.bin"
    with big.open("wb") as out:
        for _ in range(BIG_BYTES // (1024 * 1024)):
            out.write(os.urandom(1024 * 1024))
    yield big
    big.unlink()
    (tmp_path / "copy.bin").unlink(missing_ok=True)


def test_a_large_file_is_stored_and_read_back_with_memory_far_below_its_size(
    moto_s3: MotoS3, bucket: str, big_file: Path, tmp_path: Path
) -> None:
    big, copy = big_file, tmp_path / "copy.bin"
    (tmp_path / "tmp").mkdir()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "connectadmin.settings",
        "CONNECTADMIN_VAR_DIR": str(tmp_path / "var"),
        "TMPDIR": str(tmp_path / "tmp"),
        "FILES_STORAGE": "storages.backends.s3.S3Storage",
        "FILES_STORAGE_OPTIONS": json.dumps(moto_s3.options(bucket)),
    }
    result = subprocess.run(
        [sys.executable, "-c", MEASURE, str(big), str(copy)],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    measured = json.loads(result.stdout)
    print(measured)  # shown with -s, and when an assertion fails

    # Naming django-storages' class gives connectadmin's, which streams.
    assert measured["backend"] == "connectadmin.s3.S3Storage"
    assert moto_s3.objects(bucket) == {"imports/big.bin": BIG_BYTES}
    head = moto_s3.client().head_object(Bucket=bucket, Key="imports/big.bin")
    assert head["ETag"].strip('"').endswith(f"-{math.ceil(BIG_BYTES / s3.PART_BYTES)}")
    assert sha256(copy) == sha256(big)
    assert measured["save"] < MAX_GROWTH_MB, measured
    assert measured["read"] < MAX_GROWTH_MB, measured
    # Streamed: the first megabyte is had without the object coming over whole first.
    assert measured["first_megabyte_read"] < BIG_BYTES / 10, measured


def test_reading_streams_the_object_and_a_seek_reads_from_there(
    moto_s3: MotoS3, bucket: str
) -> None:
    storage = storage_on(moto_s3, bucket)
    data = os.urandom(3 * 1024 * 1024 + 5)
    files.save(storage, "abc", ContentFile(data))
    assert moto_s3.objects(bucket) == {"imports/abc": len(data)}
    with storage.open("abc", "rb") as file:
        assert file.size == len(data)
        assert file.read(10) == data[:10]
        file.seek(2_000_000)
        assert file.read(100) == data[2_000_000:2_000_100]
        file.seek(-5, os.SEEK_END)
        assert file.read() == data[-5:]
        file.seek(0)
        assert file.read() == data
    # As the export archive is downloaded: its length known, its bytes streamed.
    response = FileResponse(storage.open("abc", "rb"), as_attachment=True, filename="abc")
    assert response["Content-Length"] == str(len(data))
    streamed: Any = response.streaming_content
    assert b"".join(streamed) == data


def test_an_export_file_comes_back_as_it_was_stored(moto_s3: MotoS3, bucket: str) -> None:
    """A .csv.gz name makes django-storages store the object with Content-Encoding gzip;
    it is read back compressed, as the export readers expect it."""
    storage = s3.S3Storage(**moto_s3.options(bucket), location="exports")
    data = gzip.compress(b"SIGNAL_TYPE,SIGNAL_CONTENT\norder,{}\n" * 1000)
    files.save(storage, "abc.csv.gz", ContentFile(data))
    with storage.open("abc.csv.gz", "rb") as raw, gzip.open(raw, "rt") as text:
        assert text.readline() == "SIGNAL_TYPE,SIGNAL_CONTENT\n"
    with storage.open("abc.csv.gz", "rb") as file:
        assert file.read() == data


def test_an_object_replaced_while_open_is_never_read_on_from_the_new_one(
    moto_s3: MotoS3, bucket: str
) -> None:
    storage = storage_on(moto_s3, bucket)
    size = 3 * s3.READ_BUFFER_BYTES
    files.save(storage, "abc", ContentFile(b"a" * size))
    with storage.open("abc", "rb") as file:
        assert file.read(10) == b"a" * 10
        moto_s3.client().put_object(Bucket=bucket, Key="imports/abc", Body=b"b" * size)
        file.seek(2 * s3.READ_BUFFER_BYTES)  # past what was read: a new GET
        with pytest.raises(ClientError) as raised:
            file.read(10)
    assert raised.value.response["Error"]["Code"] == "PreconditionFailed"


def test_a_stored_name_is_never_overwritten(moto_s3: MotoS3, bucket: str) -> None:
    storage = storage_on(moto_s3, bucket)
    files.save(storage, "abc", ContentFile(b"first"))
    with pytest.raises(FileExistsError):
        files.save(storage, "abc", ContentFile(b"second"))
    assert moto_s3.objects(bucket) == {"imports/abc": 5}
    with storage.open("abc", "rb") as file:
        assert file.read() == b"first"


def test_an_object_not_in_the_bucket_is_not_found(
    moto_s3: MotoS3, bucket: str, tmp_path: Path
) -> None:
    storage = storage_on(moto_s3, bucket)
    with pytest.raises(FileNotFoundError):
        storage.open("missing", "rb")
    with files.local_path(storage, "missing", folder=str(tmp_path)) as path:
        assert not path.exists()


def test_options_may_still_set_what_connectadmin_bounds(moto_s3: MotoS3, bucket: str) -> None:
    storage: Any = s3.S3Storage(**moto_s3.options(bucket), file_overwrite=True)
    assert storage.file_overwrite is True
    assert storage.max_memory_size == s3.PART_BYTES
    assert storage.transfer_config.max_in_memory_upload_chunks == s3.UPLOAD_PARTS_IN_MEMORY
