"""connectadmin.files: the storages of imports and exports, streamed copies to a local
path for what needs one, and files handed over whole."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.core.files.base import ContentFile

from connectadmin import files
from tests.object_store import ObjectStoreStandIn

STAND_IN = "tests.object_store.ObjectStoreStandIn"


@pytest.fixture
def folders(settings: Any, tmp_path: Path) -> Path:
    settings.IMPORTS_DIR = tmp_path / "imports"
    settings.EXPORTS_DIR = tmp_path / "exports"
    settings.VAR_DIR = tmp_path / "var"
    return tmp_path


@pytest.fixture
def object_store(settings: Any, tmp_path: Path) -> ObjectStoreStandIn:
    settings.STORAGES = {
        **settings.STORAGES,
        "imports": {"BACKEND": STAND_IN, "OPTIONS": {"root": str(tmp_path / "bucket")}},
    }
    storage = files.imports()
    assert isinstance(storage, ObjectStoreStandIn)
    return storage


def test_by_default_the_files_stay_in_the_folders_they_always_were_in(folders: Path) -> None:
    assert isinstance(files.imports(), files.FolderStorage)
    assert files.imports().path("abc") == str(folders / "imports" / "abc")
    assert files.exports().path("abc.csv.gz") == str(folders / "exports" / "abc.csv.gz")
    files.save(files.imports(), "abc", ContentFile(b"signals"))
    assert (folders / "imports" / "abc").read_bytes() == b"signals"
    assert (folders / "imports" / "abc").stat().st_mode & 0o777 == 0o600


def test_the_settings_keep_the_old_folders_unless_told_otherwise(tmp_path: Path) -> None:
    def storages(**env: str) -> Any:
        code = "from django.conf import settings; import json; print(json.dumps(settings.STORAGES))"
        environ = {
            key: value
            for key, value in os.environ.items()
            if key not in ("FILES_STORAGE", "FILES_STORAGE_OPTIONS")
        }
        result = subprocess.run(
            [sys.executable, "-c", code],
            env={**environ, "DJANGO_SETTINGS_MODULE": "connectadmin.settings", **env},
            capture_output=True,
            check=True,
        )
        return json.loads(result.stdout)

    default = storages()
    assert default["imports"] == {
        "BACKEND": "connectadmin.files.FolderStorage",
        "OPTIONS": {"setting": "IMPORTS_DIR"},
    }
    assert default["exports"]["OPTIONS"] == {"setting": "EXPORTS_DIR"}
    s3 = storages(
        FILES_STORAGE="storages.backends.s3.S3Storage",
        FILES_STORAGE_OPTIONS='{"bucket_name": "connectadmin"}',
    )
    # django-storages' S3 class named, connectadmin's streaming one used (connectadmin.s3).
    assert s3["imports"] == {
        "BACKEND": "connectadmin.s3.S3Storage",
        "OPTIONS": {"bucket_name": "connectadmin", "location": "imports"},
    }
    assert s3["exports"]["OPTIONS"]["location"] == "exports"
    other = storages(FILES_STORAGE="tests.object_store.ObjectStoreStandIn")
    assert other["imports"]["BACKEND"] == "tests.object_store.ObjectStoreStandIn"


def test_a_folder_storage_is_read_where_it_is(folders: Path) -> None:
    files.save(files.imports(), "abc", ContentFile(b"signals"))
    with files.local_path(files.imports(), "abc") as path:
        assert path == folders / "imports" / "abc"
    assert path.exists()  # the stored file itself, not a copy


def test_a_storage_without_paths_is_copied_streamed_and_the_copy_removed(
    object_store: ObjectStoreStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = os.urandom(10_000)
    files.save(object_store, "abc", ContentFile(data))
    assert not files.has_path(object_store)
    reads: list[int] = []
    opened = object_store.open

    class Counting:
        def __init__(self, file: Any) -> None:
            self.file = file

        def read(self, size: int = -1) -> bytes:
            reads.append(size)
            return bytes(self.file.read(size))

        def __enter__(self) -> Counting:
            return self

        def __exit__(self, *exc: object) -> None:
            self.file.close()

    def counting_open(name: str, mode: str = "rb") -> Counting:
        return Counting(opened(name, mode))

    monkeypatch.setattr(object_store, "open", counting_open)
    monkeypatch.setattr(files, "CHUNK_BYTES", 4096)
    with files.local_path(object_store, "abc") as path:
        assert path.read_bytes() == data
        folder = path.parent
        assert folder.name.startswith("connectadmin-files-")
    assert reads and all(0 < size <= 4096 for size in reads)  # never the whole file
    assert not path.exists() and not folder.exists()


def test_the_copy_is_removed_when_the_reading_fails(object_store: ObjectStoreStandIn) -> None:
    files.save(object_store, "abc", ContentFile(b"signals"))
    with pytest.raises(RuntimeError), files.local_path(object_store, "abc") as path:
        raise RuntimeError("the reader broke")
    assert not path.exists() and not path.parent.exists()


def test_a_copy_into_a_given_folder_leaves_the_folder(
    object_store: ObjectStoreStandIn, tmp_path: Path
) -> None:
    files.save(object_store, "abc", ContentFile(b"signals"))
    with files.local_path(object_store, "abc", folder=str(tmp_path)) as path:
        assert path.parent == tmp_path and path.read_bytes() == b"signals"
    assert not path.exists() and tmp_path.exists()


def test_a_missing_file_gives_a_path_where_nothing_is(
    object_store: ObjectStoreStandIn, folders: Path
) -> None:
    with files.local_path(object_store, "gone") as path:
        assert not path.exists()
    with files.local_path(files.exports(), "gone") as path:
        assert not path.exists()


def test_a_file_is_never_stored_under_another_name(folders: Path) -> None:
    files.save(files.imports(), "abc", ContentFile(b"first"))
    with pytest.raises(FileExistsError):
        files.save(files.imports(), "abc", ContentFile(b"second"))
    assert os.listdir(folders / "imports") == ["abc"]
    assert (folders / "imports" / "abc").read_bytes() == b"first"


def test_a_partial_file_beside_a_folder_storage_is_renamed_into_place(folders: Path) -> None:
    partial = files.partial_path(files.imports(), "abc")
    assert partial == folders / "imports" / "abc.part"
    partial.write_bytes(b"whole")
    files.put_whole(files.imports(), "abc", partial)
    assert not partial.exists()
    assert (folders / "imports" / "abc").read_bytes() == b"whole"


def test_a_partial_file_for_an_object_store_is_kept_here_then_uploaded(
    object_store: ObjectStoreStandIn, folders: Path
) -> None:
    partial = files.partial_path(object_store, "abc")
    assert partial == folders / "var" / "partial" / "abc.part"
    partial.write_bytes(b"whole")
    files.save(object_store, "abc", ContentFile(b"an older one"))
    files.put_whole(object_store, "abc", partial)
    assert not partial.exists()
    with object_store.open("abc") as stored:
        assert stored.read() == b"whole"
    assert files.where(object_store, "abc") == "abc"
    assert files.where(files.exports(), "abc") == str(folders / "exports" / "abc")
