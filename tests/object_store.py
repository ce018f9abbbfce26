"""A stand-in for an object store (S3 and the like) in tests: files kept in a folder, but
reachable only through the storage API, as in a bucket: `path()` is not implemented (the
base Storage's), so code that opens a stored file by a path on this machine fails with it,
and what needs a local file must go through connectadmin.files' streamed copy.

Configured as FILES_STORAGE=tests.object_store.ObjectStoreStandIn with
FILES_STORAGE_OPTIONS={"root": "<shared folder>"}; each storage keeps its files in the
subfolder its "location" names (imports, exports), as S3Storage keeps them under a prefix.
"""

from __future__ import annotations

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
