"""Imports start here: the uploaded file kept under a generated name, the import row, and
its validation queued (see `validation`).

The file is stored as it arrives, never held in memory: Django's temporary file is moved
into place when it can be, copied in chunks otherwise.
"""

from __future__ import annotations

import importlib
import os
import re
import shutil
import unicodedata
import uuid
from datetime import timedelta
from pathlib import Path
from typing import IO, Any

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.db import IntegrityError, transaction
from django.utils import timezone

from connectadmin.models import AppKey
from signals_app.models import AuditEvent, ImportMode, ImportStatus, SignalImport, audit
from signals_app.services.errors import ImportRefused

IDEMPOTENCY_WINDOW = timedelta(hours=1)


def import_create(
    *,
    user: Any,
    app_key: AppKey,
    mode: str,
    upload: IO[bytes] | UploadedFile,
    original_name: str,
    idempotency_key: str | None = None,
) -> SignalImport:
    """Keep the uploaded file under a generated name and queue its validation.

    The same user and `idempotency_key` within an hour returns the import the first
    request created: a double-clicked submit makes one import, not two. A deactivated app
    key is refused before anything is stored.
    """
    if mode not in ImportMode.values:
        raise ImportRefused("Choose whether the import is a test or a live one.")
    if refusal := app_key_refusal(app_key):
        raise ImportRefused(refusal)
    key = (idempotency_key or "").strip()[:64] or None
    if key is not None:
        existing = _recent_import_for_key(user, key)
        if existing is not None:
            return existing

    stored_name = uuid.uuid4().hex
    destination = imports_dir() / stored_name
    _store_upload(upload, destination)
    try:
        with transaction.atomic():
            signal_import = SignalImport.objects.create(
                created_by=user,
                app_key=app_key,
                mode=mode,
                original_name=sanitize_file_name(original_name),
                stored_name=stored_name,
                size_bytes=destination.stat().st_size,
                status=ImportStatus.UPLOADED,
                idempotency_key=key,
            )
            audit(
                action="import.uploaded",
                actor=user,
                signal_import=signal_import,
                original_name=signal_import.original_name,
                size_bytes=signal_import.size_bytes,
                app_key=app_key.key,
                mode=mode,
            )
    except IntegrityError:
        destination.unlink(missing_ok=True)
        if key is not None:
            # The other click of a double-click committed first: that import is the one.
            existing = SignalImport.objects.filter(created_by=user, idempotency_key=key).first()
            if existing is not None:
                return existing
        raise
    except BaseException:
        destination.unlink(missing_ok=True)
        raise
    queue_validation(signal_import)
    return signal_import


def app_key_refusal(app_key: AppKey) -> str:
    """Why a new import, or a new send of an import made before, may not use this key;
    empty when it may. The one wording for the upload form, the import page and the
    command line."""
    if app_key.active:
        return ""
    return (
        f"App key {app_key.key} was deactivated{_deactivated_by(app_key)}, so it cannot be "
        "used for a new import or send. An admin can reactivate it in Settings → App keys."
    )


def _deactivated_by(app_key: AppKey) -> str:
    """ " by ada on 2025-05-03" from the audit trail's latest change of the key's state;
    empty when the trail does not say (a key deactivated in Django's admin)."""
    events = AuditEvent.objects.filter(
        object_type="appkey",
        object_id=str(app_key.pk),
        action__in=["appkey.deactivated", "appkey.reactivated", "appkey.updated"],
    ).order_by("-created_at", "-id")
    for event in events[:20]:
        state = ((event.detail.get("changes") or {}).get("active") or {}).get("after")
        if event.action == "appkey.reactivated" or state == "True":
            return ""  # deactivated again since, where the trail does not see it
        if event.action == "appkey.deactivated" or state == "False":
            who = f" by {event.actor_name}" if event.actor_name else ""
            return f"{who} on {timezone.localdate(event.created_at):%Y-%m-%d}"
    return ""


def _recent_import_for_key(user: Any, key: str) -> SignalImport | None:
    existing = SignalImport.objects.filter(created_by=user, idempotency_key=key).first()
    if existing is None:
        return None
    if existing.created_at >= timezone.now() - IDEMPOTENCY_WINDOW:
        return existing
    # An old token seen again is a new upload; free the key for it.
    SignalImport.objects.filter(pk=existing.pk).update(idempotency_key=None)
    return None


def queue_validation(signal_import: SignalImport) -> None:
    # Looked up at run time: tasks imports the services, and a static import cycle makes
    # mypy lose track of the services modules in tasks.py.
    tasks = importlib.import_module("signals_app.tasks")
    # On commit: the worker must find the row (and the file) when it starts. Celery uses
    # its DjangoTask class under Django (5.4+), which provides delay_on_commit.
    tasks.validate_import.delay_on_commit(signal_import.pk)


def imports_dir() -> Path:
    directory = Path(settings.IMPORTS_DIR)
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def import_file_path(signal_import: SignalImport) -> Path:
    """Where the import's file is kept (a promoted import reads its source's file)."""
    return Path(settings.IMPORTS_DIR) / signal_import.validation_source.stored_name


def _store_upload(upload: IO[bytes] | UploadedFile, destination: Path) -> None:
    """Move Django's temporary file into place when possible (no copy of a 1 GB file);
    otherwise copy in chunks."""
    temporary_path = getattr(upload, "temporary_file_path", None)
    if callable(temporary_path):
        try:
            os.replace(temporary_path(), destination)
            return  # Django's clean-up of the temporary file then finds nothing to delete
        except OSError:
            pass  # another file system: copy below
    try:
        with destination.open("xb") as out:
            if isinstance(upload, UploadedFile):
                for chunk in upload.chunks():
                    out.write(chunk)
            else:
                shutil.copyfileobj(upload, out, 1024 * 1024)
    except BaseException:
        destination.unlink(missing_ok=True)
        raise


_UNSAFE_NAME_CHARS = re.compile(r"[\x00-\x1f\x7f/\\]+")


def sanitize_file_name(name: str) -> str:
    """The client's file name, for display only: no directories, control characters or
    surrounding blanks, at most 255 characters (keeping the extension)."""
    name = unicodedata.normalize("NFC", name or "")
    name = re.split(r"[/\\]", name)[-1]
    name = _UNSAFE_NAME_CHARS.sub("", name)
    name = " ".join(name.split()).strip(". ") or "upload"
    if len(name) > 255:
        stem, dot, extension = name.rpartition(".")
        if dot and len(extension) <= 16:
            name = stem[: 254 - len(extension)] + "." + extension
        else:
            name = name[:255]
    return name
