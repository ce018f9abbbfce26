"""django-storages' S3 storage (S3, MinIO, Ceph, R2 and other S3-compatible stores), with
the memory a process spends on a file bounded, whatever the file's size.

django-storages' own S3Storage reads an object by downloading all of it into a
SpooledTemporaryFile before the first byte is returned, and its `max_memory_size` is 0 by
default, which means that file never spills to disk: a 1 GB upload opened for reading is
1 GB of memory (measured: +259 MB of peak RSS for 200 MB). Its uploads read up to 10
parts of 8 MiB ahead (+116 MB). Settings use this class in its place whenever
FILES_STORAGE names django-storages' (measured: +11 to +20 MB saving 200 MB, +2 MB more
reading it back; tests/integration/test_s3_storage.py):

- reading ("rb") streams the object's body: each read takes the next bytes of one GET,
  a seek starts a ranged GET from there on the next read (pinned to the object's ETag,
  so a replaced object is never read half old, half new);
- saving is a multipart upload of PART_BYTES parts, at most UPLOAD_PARTS_IN_MEMORY of
  them read and not yet sent;
- anything else django-storages' file does (writing through open("wb"), reading as
  text) spills to disk past PART_BYTES (`max_memory_size`);
- a name is never overwritten (`file_overwrite` False), as in the folder storage.

FILES_STORAGE_OPTIONS may still set `file_overwrite` and `max_memory_size`.
"""

from __future__ import annotations

import io
from typing import Any

from boto3.s3.transfer import TransferConfig  # type: ignore[import-untyped]
from botocore.exceptions import ClientError  # type: ignore[import-untyped]
from django.core.files import File
from storages.backends import s3  # type: ignore[import-untyped]
from storages.utils import clean_name  # type: ignore[import-untyped]

PART_BYTES = 8 * 1024 * 1024
UPLOAD_PARTS_IN_MEMORY = 2
READ_BUFFER_BYTES = 1024 * 1024


class S3Storage(s3.S3Storage):
    def __init__(self, **options: Any) -> None:
        if "transfer_config" not in options:
            options["transfer_config"] = bounded_transfers()
        super().__init__(**options)

    def get_default_settings(self) -> dict[str, Any]:
        return {
            **super().get_default_settings(),
            "file_overwrite": False,
            "max_memory_size": PART_BYTES,
        }

    def _open(self, name: str, mode: str = "rb") -> File[Any]:
        if mode != "rb":
            return super()._open(name, mode)
        key = self._normalize_name(clean_name(name))
        extra = s3._filter_download_params(self.get_object_parameters(name))
        client = self.connection.meta.client
        try:
            head = client.head_object(Bucket=self.bucket_name, Key=key, **extra)
        except ClientError as exc:
            if exc.response["ResponseMetadata"]["HTTPStatusCode"] == 404:
                raise FileNotFoundError(f"{name} is not in the storage") from None
            raise
        stream = ObjectStream(
            client,
            bucket=self.bucket_name,
            key=key,
            size=head["ContentLength"],
            etag=head["ETag"],
            extra=extra,
        )
        return File(io.BufferedReader(stream, READ_BUFFER_BYTES), name=name)


def bounded_transfers() -> TransferConfig:
    """Uploads of PART_BYTES parts, as many sent at once as may be in memory."""
    config = TransferConfig(
        multipart_threshold=PART_BYTES,
        multipart_chunksize=PART_BYTES,
        max_concurrency=UPLOAD_PARTS_IN_MEMORY,
    )
    # s3transfer reads each part of a file object into memory before sending it, ahead of
    # the uploads up to this many parts (its default, 10, is 80 MiB).
    config.max_in_memory_upload_chunks = UPLOAD_PARTS_IN_MEMORY
    return config


class ObjectStream(io.RawIOBase):
    """One object's bytes, read as they come off the network. Reading goes on along one
    GET from where the last read stopped; a seek drops that GET, and the next read asks
    for the bytes from the new position on (a ranged GET, If-Match the ETag seen at
    open, so a seek never lands in another version of the object)."""

    def __init__(
        self, client: Any, *, bucket: str, key: str, size: int, etag: str, extra: dict[str, Any]
    ) -> None:
        super().__init__()
        self._client = client
        self._bucket = bucket
        self._key = key
        self._size = size
        self._etag = etag
        self._extra = extra
        self._position = 0
        self._body: Any = None

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        start = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        position = start + offset
        if position < 0:
            raise ValueError(f"negative seek position {position}")
        if position != self._position:
            self._drop_body()
            self._position = position
        return position

    def readinto(self, buffer: Any) -> int:
        if self._position >= self._size or len(buffer) == 0:
            return 0
        if self._body is None:
            self._body = self._client.get_object(
                Bucket=self._bucket,
                Key=self._key,
                Range=f"bytes={self._position}-",
                IfMatch=self._etag,
                **self._extra,
            )["Body"]
        data = self._body.read(len(buffer))
        if not data:
            raise OSError(f"{self._key} ended at {self._position} of {self._size} bytes")
        buffer[: len(data)] = data
        self._position += len(data)
        return len(data)

    def close(self) -> None:
        self._drop_body()
        super().close()

    def _drop_body(self) -> None:
        if self._body is not None:
            self._body.close()
            self._body = None
