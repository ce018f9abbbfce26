"""Imports start here: the uploaded file kept under a generated name, the import row, and
its validation queued (see `validation`).

The file goes into the imports storage (connectadmin.files) as it arrives, never held in
memory: Django's temporary file is moved into a folder storage, streamed in chunks to any
other.
"""

from __future__ import annotations

import importlib
import re
import unicodedata
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import IO, Any

from django.core.files.uploadedfile import UploadedFile
from django.db import IntegrityError, transaction
from django.utils import timezone

from connectadmin import files
from connectadmin.models import AppKey, AttentiveAccount
from signals_app.models import (
    AuditEvent,
    ImportKind,
    ImportMode,
    ImportStatus,
    SignalImport,
    audit,
)
from signals_app.services.errors import ImportRefused

IDEMPOTENCY_WINDOW = timedelta(hours=1)
EVENTS_ARE_LIVE = (
    "Attentive has no test mode: every event it receives is real and can start a journey, "
    "so a file of custom events is imported live. It is only sent when you press Send, "
    "after its preview."
)


def import_create(
    *,
    user: Any,
    app_key: AppKey | None,
    mode: str,
    upload: IO[bytes] | UploadedFile,
    original_name: str,
    idempotency_key: str | None = None,
    attentive_account: AttentiveAccount | None = None,
) -> SignalImport:
    """Keep the uploaded file under a generated name and queue its validation.

    A file of Connect signals goes with `app_key`; a file of Attentive custom events with
    `attentive_account` instead (no app key), and is live: Attentive has no test mode.
    The same user and `idempotency_key` within an hour returns the import the first
    request created: a double-clicked submit makes one import, not two. A deactivated app
    key is refused before anything is stored.
    """
    if mode not in ImportMode.values:
        raise ImportRefused("Choose whether the import is a test or a live one.")
    kind = ImportKind.SIGNALS
    if attentive_account is not None and app_key is None:
        kind = ImportKind.EVENTS
        if mode != ImportMode.LIVE:
            raise ImportRefused(EVENTS_ARE_LIVE)
    elif app_key is None:
        raise ImportRefused("Choose the application key these signals belong to.")
    elif attentive_account is not None:
        raise ImportRefused(
            "A file goes with an app key (Connect signals) or an Attentive account (custom "
            "events), not both: signals are sent to Attentive too from their import's page."
        )
    elif refusal := app_key_refusal(app_key):
        raise ImportRefused(refusal)
    key = (idempotency_key or "").strip()[:64] or None
    if key is not None:
        existing = _recent_import_for_key(user, key)
        if existing is not None:
            return existing

    stored_name = uuid.uuid4().hex
    storage = files.imports()
    try:
        files.save(storage, stored_name, upload)
    except BaseException:
        storage.delete(stored_name)  # what a save cut short left (a new name: only ours)
        raise
    try:
        with transaction.atomic():
            signal_import = SignalImport.objects.create(
                created_by=user,
                kind=kind,
                app_key=app_key,
                attentive_account=attentive_account,
                send_to_connect=kind == ImportKind.SIGNALS,
                mode=mode,
                original_name=sanitize_file_name(original_name),
                stored_name=stored_name,
                size_bytes=storage.size(stored_name),
                status=ImportStatus.UPLOADED,
                idempotency_key=key,
            )
            audit(
                action="import.uploaded",
                actor=user,
                signal_import=signal_import,
                original_name=signal_import.original_name,
                size_bytes=signal_import.size_bytes,
                **(
                    {"app_key": app_key.key}
                    if app_key is not None
                    else {"attentive_account": attentive_account.name if attentive_account else ""}
                ),
                mode=mode,
            )
    except IntegrityError:
        storage.delete(stored_name)
        if key is not None:
            # The other click of a double-click committed first: that import is the one.
            existing = SignalImport.objects.filter(created_by=user, idempotency_key=key).first()
            if existing is not None:
                return existing
        raise
    except BaseException:
        storage.delete(stored_name)
        raise
    queue_validation(signal_import)
    return signal_import


def app_key_refusal(app_key: AppKey | None) -> str:
    """Why a new import, or a new send of an import made before, may not use this key;
    empty when it may (and for an import of Attentive events, which has none). The one
    wording for the upload form, the import page and the command line."""
    if app_key is None or app_key.active:
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


def import_file_name(signal_import: SignalImport) -> str:
    """The import's file's name in the imports storage (a promoted import reads its
    source's file)."""
    return signal_import.validation_source.stored_name


def import_file_exists(signal_import: SignalImport) -> bool:
    return files.imports().exists(import_file_name(signal_import))


@contextmanager
def import_file_path(signal_import: SignalImport, *, folder: str | None = None) -> Iterator[Path]:
    """A path on this machine to read the import's file at, while the block runs (a copy
    streamed into a scratch folder, `folder` when given, when the storage is not a folder
    here: see connectadmin.files.local_path)."""
    with files.local_path(files.imports(), import_file_name(signal_import), folder=folder) as path:
        yield path


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
