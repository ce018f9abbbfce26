"""Where the files the product keeps live: uploads and corrected files (the "imports"
storage) and the export archive (the "exports" storage).

Both are Django storages (settings.STORAGES), so the web process and workers on other
machines reach the same files. By default they are folders on this machine (IMPORTS_DIR,
EXPORTS_DIR: what `make run` has always used); a deployment on several machines points
them at a shared volume or at an object store (FILES_STORAGE, see settings and README:
django-storages' S3 storage, as connectadmin.s3 bounds its memory).

Files are written and read as streams, never whole in memory. What needs a path on this
machine (the forked validation reader, the gzip readers) asks `local_path`: the storage's
own path when it has one, else a copy streamed into a scratch folder of this process and
removed afterwards. A file written in several steps (a corrected file, an export resumed
after a dropped connection) is written at `partial_path` and handed over whole with
`put_whole`, so nobody ever sees half of it under its name.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from django.conf import settings
from django.core.files import File
from django.core.files.storage import FileSystemStorage, Storage, storages

from signals_app.validation import scratch

IMPORTS = "imports"
EXPORTS = "exports"
CHUNK_BYTES = 1024 * 1024


def imports() -> Storage:
    """Uploaded files and corrected files, under the import's stored_name."""
    return storages[IMPORTS]


def exports() -> Storage:
    """The export archive, under the export file's stored_name."""
    return storages[EXPORTS]


class FolderStorage(FileSystemStorage):
    """The folder a setting names (IMPORTS_DIR, EXPORTS_DIR), read each time it is used,
    so that a changed setting (the tests' `settings` fixture) moves the storage too. Files
    are readable by their owner only, as uploads always were (they hold shoppers' data)."""

    def __init__(self, setting: str, **kwargs: Any) -> None:
        self.setting = setting
        kwargs.setdefault("file_permissions_mode", 0o600)
        super().__init__(**kwargs)

    @property
    def base_location(self) -> str:
        return str(getattr(settings, self.setting))

    @property
    def location(self) -> str:
        return os.path.abspath(self.base_location)


def has_path(storage: Storage) -> bool:
    """Whether the storage's files are files on this machine (storage.path works)."""
    try:
        storage.path("probe")
    except NotImplementedError:
        return False
    return True


def where(storage: Storage, name: str) -> str:
    """Where a person finds the stored file: its path on this machine, else its name."""
    return storage.path(name) if has_path(storage) else name


def save(storage: Storage, name: str, content: IO[bytes] | File[Any]) -> None:
    """Store `content` under exactly `name`, streamed in chunks (an uploaded file's
    temporary file is moved into a folder storage rather than copied)."""
    wrapped = content if isinstance(content, File) else File(content, name=name)
    saved = storage.save(name, wrapped, max_length=100)
    if saved != name:  # the name was taken: never keep a file under a name nobody knows
        storage.delete(saved)
        raise FileExistsError(f"{name} is already in the storage")


@contextmanager
def local_path(storage: Storage, name: str, *, folder: str | None = None) -> Iterator[Path]:
    """A path on this machine to read the stored file at: the storage's own path, or a copy
    streamed into `folder` (a new scratch folder when None), removed when the block ends.
    When the storage does not hold the file, nothing is at the path, whatever the storage
    (the readers then say the file cannot be opened)."""
    if has_path(storage):
        yield Path(storage.path(name))
        return
    with _scratch(folder) as into:
        copy = Path(into) / f"{Path(name).name}.copy"
        try:
            if storage.exists(name):
                copy_to(storage, name, copy)
            yield copy
        finally:
            copy.unlink(missing_ok=True)


@contextmanager
def _scratch(folder: str | None) -> Iterator[str]:
    if folder is not None:
        yield folder
        return
    with scratch.folder("files") as made:
        yield made


def copy_to(storage: Storage, name: str, destination: Path) -> None:
    """Stream the stored file into `destination`, a chunk at a time."""
    if not storage.exists(name):
        raise FileNotFoundError(f"{name} is not in the storage")
    with storage.open(name, "rb") as source, destination.open("wb") as out:
        shutil.copyfileobj(source, out, CHUNK_BYTES)


def partial_path(storage: Storage, name: str) -> Path:
    """Where a file to be stored as `name` is written until it is whole: beside it when the
    storage is a folder here (then `put_whole` is a rename), else in this machine's data
    folder (kept there across tries, so an interrupted transfer can resume)."""
    if has_path(storage):
        path = Path(storage.path(name))
    else:
        path = Path(settings.VAR_DIR) / "partial" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.with_name(f"{path.name}.part")


def put_whole(storage: Storage, name: str, partial: Path) -> None:
    """Make the finished `partial` the stored file `name`, replacing one there: a rename in
    a folder storage, else a streamed upload (an object appears whole once uploaded), and
    the partial file goes."""
    if has_path(storage):
        os.replace(partial, storage.path(name))
        return
    if storage.exists(name):
        storage.delete(name)
    with partial.open("rb") as content:
        save(storage, name, content)
    partial.unlink()
