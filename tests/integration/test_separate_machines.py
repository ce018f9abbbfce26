"""Web and worker on separate machines: each with a private data folder of its own
(CONNECTADMIN_VAR_DIR, and its own temporary folder), sharing only the file storage,
PostgreSQL and Redis. The web side is the Django test client in this process; the worker
is a real Celery worker process. The shared storage is, in turn, tests.object_store's
stand-in for an object store, and a bucket of a real S3-compatible server (moto's, in a
process of its own) through django-storages' S3Storage, configured as a deployment is
(FILES_STORAGE, FILES_STORAGE_OPTIONS). Neither has a `path()`: nothing can open a stored
file by a path of another process's folder, and whatever needs a local file copies it,
streamed, into a scratch folder of its own and removes it.

A marketer uploads a file, the worker validates it, the marketer applies a fix (the worker
writes the corrected file), sends the corrected import to the sandbox, and downloads the
error report and the valid signals through the web; neither private folder ends up
holding any of the files."""

from __future__ import annotations

import json
import os
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import pytest
from django.db import connection
from django.test import Client
from django.urls import reverse

from connectadmin.celery import app as celery_app
from connectadmin.models import ConnectAccount, Region
from signals_app.models import ImportStatus, SignalImport
from tests.conftest import require
from tests.factories import make_app_key
from tests.integration.conftest import Workers, broker_kind, delete_queue
from tests.object_store import MotoS3, moto_installed, running_moto_s3
from tests.sandbox.support import ULTIMATE_EMAIL, ULTIMATE_KEY, Sandbox
from tests.test_views import make_user

pytestmark = pytest.mark.django_db(transaction=True)

STAND_IN = "tests.object_store.ObjectStoreStandIn"
APP_KEY = "separate-machines-appkey"
SIGNALS = 1200
WAIT_SECONDS = 90.0


class SharedStorage(Protocol):
    """The file storage both machines reach, as each is configured to reach it and as the
    test looks into it (not through the product's code)."""

    web_backend: str  # STORAGES' BACKEND in this process
    worker_backend: str  # FILES_STORAGE of the worker

    @property
    def options(self) -> dict[str, str]:
        """FILES_STORAGE_OPTIONS of both."""
        ...

    def stored(self) -> dict[str, int]:
        """Every file it holds, "imports/<name>" -> size."""
        ...

    def read(self, key: str) -> bytes: ...


@dataclass
class StandInFolder:
    root: Path
    web_backend: str = STAND_IN
    worker_backend: str = STAND_IN

    @property
    def options(self) -> dict[str, str]:
        return {"root": str(self.root)}

    def stored(self) -> dict[str, int]:
        return {
            path.relative_to(self.root).as_posix(): path.stat().st_size
            for path in self.root.rglob("*")
            if path.is_file()
        }

    def read(self, key: str) -> bytes:
        return (self.root / key).read_bytes()


@dataclass
class Bucket:
    server: MotoS3
    name: str
    web_backend: str = "connectadmin.s3.S3Storage"
    # The class an operator names, as django-storages' documentation does (settings use
    # connectadmin.s3's in its place).
    worker_backend: str = "storages.backends.s3.S3Storage"

    @property
    def options(self) -> dict[str, str]:
        return self.server.options(self.name)

    def stored(self) -> dict[str, int]:
        return self.server.objects(self.name)

    def read(self, key: str) -> bytes:
        body = self.server.client().get_object(Bucket=self.name, Key=key)["Body"]
        return bytes(body.read())


@dataclass
class Machines:
    web: Path  # the web process's private data folder (this process)
    worker: Path  # the worker's
    shared: SharedStorage  # the file storage both reach
    workers: Workers


def _private_storage_settings(settings: Any, shared: SharedStorage) -> None:
    backend, options = shared.web_backend, shared.options
    settings.STORAGES = {
        **settings.STORAGES,
        "imports": {"BACKEND": backend, "OPTIONS": {**options, "location": "imports"}},
        "exports": {"BACKEND": backend, "OPTIONS": {**options, "location": "exports"}},
    }


@pytest.fixture(params=["stand-in", "s3"])
def shared_storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SharedStorage]:
    if request.param == "stand-in":
        (tmp_path / "shared-storage").mkdir()
        yield StandInFolder(tmp_path / "shared-storage")
        return
    require(moto_installed(), "moto (pip install -r requirements.txt): the S3 server tests")
    with running_moto_s3(tmp_path / "s3-server") as server:
        yield Bucket(server, server.new_bucket())


@pytest.fixture
def machines(
    real_parts: None,
    shared_storage: SharedStorage,
    tmp_path: Path,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Machines]:
    web, worker, shared = tmp_path / "web", tmp_path / "worker", shared_storage
    for folder in (web / "tmp", web / "uploads-in-progress", worker / "tmp"):
        folder.mkdir(parents=True)
    # The web process: its data folder, its uploads in progress, its scratch copies.
    settings.VAR_DIR = web
    settings.IMPORTS_DIR = web / "imports"
    settings.EXPORTS_DIR = web / "exports"
    settings.FILE_UPLOAD_TEMP_DIR = str(web / "uploads-in-progress")
    monkeypatch.setattr(tempfile, "tempdir", str(web / "tmp"))
    _private_storage_settings(settings, shared)

    queue = f"machines-test-{uuid.uuid4().hex[:12]}"
    url = urlsplit(os.environ["DATABASE_URL"])
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("IMPORTS_DIR", "EXPORTS_DIR", "TMPDIR", "FILES_STORAGE")
    }
    env |= {
        "DATABASE_URL": url._replace(path=f"/{connection.settings_dict['NAME']}").geturl(),
        "DJANGO_SETTINGS_MODULE": "tests.integration.worker_settings",
        "CONNECTADMIN_VAR_DIR": str(worker),
        "TMPDIR": str(worker / "tmp"),
        "DJANGO_SECRET_KEY": settings.SECRET_KEY,
        "FIELD_ENCRYPTION_KEYS": ",".join(settings.FIELD_ENCRYPTION_KEYS),
        "FILES_STORAGE": shared.worker_backend,
        "FILES_STORAGE_OPTIONS": json.dumps(shared.options),
        "TEST_CELERY_QUEUE": queue,
        "PYTHONUNBUFFERED": "1",
    }
    logs = tmp_path / "worker-logs"
    logs.mkdir()
    pool = Workers(env, queue, logs)
    previous = celery_app.conf.task_default_queue
    celery_app.conf.task_default_queue = queue
    try:
        yield Machines(web=web, worker=worker, shared=shared, workers=pool)
    finally:
        celery_app.conf.task_default_queue = previous
        pool.stop()
        if broker_kind() == "rabbitmq":
            delete_queue(queue)


def write_file(folder: Path) -> bytes:
    """Order signals: signal 3's currency is lower case (a fix corrects it), signal 7 has
    none (no fix)."""
    lines = []
    for index in range(SIGNALS):
        content: dict[str, Any] = {
            "signalType": "order",
            "currency": "usd" if index == 3 else "USD",
            "orderId": f"ORD-{index}",
            "orderValue": 10.5 + index,
        }
        if index == 7:
            del content["currency"]
        envelope = {
            "appKey": APP_KEY,
            "identifiableAttributes": {"email": f"shopper{index}@example.com"},
            "signalContent": content,
        }
        lines.append(json.dumps(envelope))
    data = ("\n".join(lines) + "\n").encode()
    (folder / "orders.ndjson").write_bytes(data)
    return data


def wait_for(
    signal_import: SignalImport, done: Callable[[SignalImport], bool], workers: Workers
) -> SignalImport:
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        signal_import.refresh_from_db()
        if done(signal_import):
            return signal_import
        if signal_import.status in (ImportStatus.FAILED, ImportStatus.UNREADABLE):
            break
        time.sleep(0.2)
    pytest.fail(
        f"import {signal_import.pk}: {signal_import.status} {signal_import.error_message}\n"
        f"{workers.log_text()}"
    )


def files_under(folder: Path) -> list[Path]:
    return [path for path in folder.rglob("*") if path.is_file()]


def streamed(response: Any) -> bytes:
    return b"".join(response.streaming_content)


def test_web_and_worker_with_private_folders_share_only_the_storage(
    machines: Machines, sandbox: Sandbox, client: Client
) -> None:
    machines.workers.start()
    account = ConnectAccount.objects.create(
        name="Sandbox (separate machines)",
        region=Region.SANDBOX,
        graphql_endpoint=f"{sandbox.url}/graphql",
        api_key=ULTIMATE_KEY,
        connect_user_email=ULTIMATE_EMAIL,
    )
    app_key = make_app_key(account=account, key=APP_KEY, label="Shop", tier="ultimate")
    client.force_login(make_user("mia", "marketer"))
    outside = machines.web.parent / "outside"
    outside.mkdir()
    uploaded = write_file(outside)

    # Upload through the web; the worker validates from the shared storage.
    with (outside / "orders.ndjson").open("rb") as file:
        response = client.post(
            "/imports/new",
            {"app_key": app_key.pk, "mode": "test", "idempotency_key": "one", "file": file},
        )
    assert response.status_code == 302, response.context["form"].errors
    source = SignalImport.objects.get()
    assert machines.shared.read(f"imports/{source.stored_name}") == uploaded
    source = wait_for(source, lambda i: i.status == ImportStatus.VALIDATED, machines.workers)
    assert (source.signals, source.rejected) == (SIGNALS, 2)

    report = streamed(client.get(reverse("signals:download_errors", args=[source.public_id])))
    assert b"currency" in report and b"\n3," in report and b"\n7," in report

    # The worker writes the corrected file into the shared storage, then validates it.
    response = client.post(
        reverse("signals:import_fix", args=[source.public_id]),
        {"fix": "currency_case|signalContent.currency"},
    )
    assert response.status_code == 302
    fixed = SignalImport.objects.exclude(pk=source.pk).get()
    fixed = wait_for(fixed, lambda i: i.status == ImportStatus.VALIDATED, machines.workers)
    assert (fixed.signals, fixed.rejected) == (SIGNALS, 1)
    assert f"imports/{fixed.stored_name}" in machines.shared.stored()

    # The corrected file's valid signals, downloaded through the web.
    valid = streamed(client.get(reverse("signals:download_valid", args=[fixed.public_id])))
    records = [json.loads(line) for line in valid.splitlines()]
    assert len(records) == SIGNALS - 1
    assert records[3]["signalContent"]["currency"] == "USD"

    # Sent by the worker, reading the corrected file from the shared storage.
    response = client.post(reverse("signals:import_send", args=[fixed.public_id]))
    assert response.status_code == 302
    wait_for(fixed, lambda i: i.status == ImportStatus.COMPLETED, machines.workers)
    received = sandbox.inspect(limit=10_000)["signals"]
    contents = [
        json.loads(s["content"]) if isinstance(s["content"], str) else s["content"]
        for s in received
    ]
    assert sorted(c["orderId"] for c in contents) == sorted(
        f"ORD-{i}" for i in range(SIGNALS) if i != 7
    )

    # Neither private folder holds the files (nor a copy left behind): only the storage.
    for private in (machines.web, machines.worker):
        left = files_under(private)
        named = [p for p in left if source.stored_name in p.name or fixed.stored_name in p.name]
        assert named == [], f"{private.name} holds {named}"
        same_size = [p for p in left if p.stat().st_size in (len(uploaded), fixed.size_bytes)]
        assert same_size == [], f"{private.name} holds {same_size}"
    assert machines.shared.stored() == {
        f"imports/{source.stored_name}": len(uploaded),
        f"imports/{fixed.stored_name}": fixed.size_bytes,
    }
