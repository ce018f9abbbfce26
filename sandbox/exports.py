"""exportSignals: argument checks (SPEC §7), daily limits, the job runner and the files.

A job is QUEUED for `delay` seconds, RUNNING while its gzip CSV is written (in a worker
thread, to a temporary file renamed into the SFTP tree so a client never sees half a
file), then COMPLETED or FAILED. Files older than the retention period are swept away.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import gzip
import io
import math
import os
import random
import re
import sqlite3
import sys
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from sandbox.accounts import EMAIL_RE, Account
from sandbox.catalog import (
    ALL_MARKETING_TYPES,
    BEHAVIOR_TYPES,
    DAILY_EXPORT_BYTES,
    DAILY_EXPORT_JOBS,
    DAILY_EXPORT_ROWS,
    EXPORT_RETENTION_DAYS,
    EXPORTABLE_TYPES,
    SIGNAL_GROUP,
)
from sandbox.clock import Clock, iso, iso_ts, parse_iso
from sandbox.faults import Faults
from sandbox.store import Store, connect

# The columns listed in seeds/003, in the seed's order; contact data as EMAIL, SMS,
# WHATSAPP (addressable), their consents, and CONTACT_KEY (non-addressable).
COLUMNS: tuple[str, ...] = (
    "DATASET_ID", "SUBSCRIPTION_ID", "TEMPORARY_LINKING_ID",
    "ACOUSTIC_APP_KEY", "CATEGORY", "DESCRIPTION", "NAME", "OBSERVED_TIMESTAMP",
    "RECEIVED_TIMESTAMP", "SIGNAL_CONTENT", "SIGNAL_GROUP", "SIGNAL_TIMESTAMP",
    "SCREEN_VIEW_NAME", "TLTSID",
    "BOT_DETECTED", "BOT_DETECTION_REASON", "CLASSIFICATION", "CLASSIFICATION_CODE",
    "MESSAGE_SIGNAL_ID", "SIGNAL_ID", "SIGNAL_TYPE", "TIMESTAMP",
    "EMAIL", "SMS", "WHATSAPP", "CONSENT_EMAIL", "CONSENT_SMS", "CONSENT_WHATSAPP",
    "CONTACT_KEY",
    "CAMPAIGN_DESCRIPTION", "CAMPAIGN_ID", "CAMPAIGN_NAME", "CAMPAIGN_STATUS", "CAMPAIGN_TYPE",
    "COMPLETED_DATE", "CONSENT_GROUP_ID", "ENTRY_SIGNAL", "ENTRY_TYPE", "FREQUENCY",
    "SCHEDULED_DATE", "SEGMENT_DEFINITION_ID", "SEGMENT_ID", "TAGS",
    "MESSAGE_ID", "MESSAGE_NAME", "MESSAGE_TAGS", "LINK_ID",
    "AUDIENCE_VARIABLES", "PERSONALIZATION_VARIABLES", "PLACEHOLDER_VARIABLES",
    "PRODUCT_VARIABLES", "REFERENCE_SET_VARIABLES",
    "EMAIL_FROM_ADDRESS", "EMAIL_FROM_NAME", "EMAIL_PRE_HEADER", "EMAIL_REPLY_TO_ADDRESS",
    "EMAIL_SUBJECT", "EMAIL_TAGS", "EMAIL_TRACKING_LEVEL", "VMTA", "VMTA_POOL",
    "INCLUDES_MEDIA", "IS_MMS", "SMS_TAGS",
    "WHATSAPP_MESSAGE_BODY", "WHATSAPP_TAGS", "WHATSAPP_TEMPLATE_CATEGORY",
    "WHATSAPP_TEMPLATE_ID", "WHATSAPP_TEMPLATE_NAME", "WHATSAPP_TYPE",
)  # fmt: skip

PARENT_FOLDER_RE = re.compile(r"^Export/Signals(/[A-Za-z0-9 _/-]*)?$")
NAMING_PREFIX_RE = re.compile(r"^[A-Za-z0-9 _.-]{1,100}$")
PATH_RE = re.compile(r"^[A-Za-z0-9 _./-]+\.csv$")
MAX_MARKETING_DAYS = 366
_LINK_NS = uuid.UUID("0a4e1f8e-2b7c-4d8e-9a41-3f5b6c7d8e90")


class ExportError(Exception):
    """A refused exportSignals call; `field` names the argument at fault."""

    def __init__(self, field: str, message: str, code: str = "BAD_USER_INPUT") -> None:
        super().__init__(message)
        self.field = field
        self.message = message
        self.code = code


@dataclass(frozen=True)
class ExportRequest:
    job_name: str
    signal_types: tuple[str, ...]
    start: datetime
    end: datetime
    notifications: tuple[str, ...]
    parent_folder: str | None
    naming_prefix: str | None
    path: str | None

    def as_json(self) -> dict[str, Any]:
        return {
            "jobName": self.job_name,
            "signalTypes": list(self.signal_types),
            "timestampStart": iso(self.start),
            "timestampEnd": iso(self.end),
            "notifications": list(self.notifications),
            "parentFolder": self.parent_folder,
            "namingPrefix": self.naming_prefix,
            "path": self.path,
        }


@dataclass
class ExportSettings:
    delay: float = 2.0
    run_seconds: float = 0.0
    daily_jobs: int = DAILY_EXPORT_JOBS
    daily_bytes: int = DAILY_EXPORT_BYTES
    daily_rows: int = DAILY_EXPORT_ROWS
    retention_days: float = EXPORT_RETENTION_DAYS
    marketing_rows_per_day: int = 2
    sweep_interval: float = 3600.0


def _timestamp(value: Any, field: str) -> datetime:
    if not isinstance(value, str) or not value.strip():
        raise ExportError(field, f"{field} must be an ISO 8601 date-time")
    try:
        return parse_iso(value)
    except ValueError:
        raise ExportError(field, f"{field} is not an ISO 8601 date-time: {value!r}") from None


def check_export_args(
    job_name: str,
    export: dict[str, Any],
    notifications: Sequence[dict[str, Any]] | None,
    to: dict[str, Any] | None,
) -> ExportRequest:
    """SPEC §7's checks on the arguments alone (uniqueness and limits need the store)."""
    if not job_name.strip():
        raise ExportError("jobName", "jobName must not be empty")
    if len(job_name) > 256:
        raise ExportError("jobName", "jobName is longer than 256 characters")
    signals = export["signals"]
    types = signals["signalTypes"]
    if not types:
        raise ExportError("export.signals.signalTypes", "signalTypes must not be empty")
    for i, signal_type in enumerate(types):
        if signal_type not in EXPORTABLE_TYPES:
            raise ExportError(
                f"export.signals.signalTypes[{i}]", f"unknown signal type {signal_type!r}"
            )
    start = _timestamp(signals["timestampStart"], "export.signals.timestampStart")
    end = _timestamp(signals["timestampEnd"], "export.signals.timestampEnd")
    if start >= end:
        raise ExportError(
            "export.signals.timestampStart", "timestampStart must be before timestampEnd"
        )
    destinations: list[str] = []
    for i, notification in enumerate(notifications or ()):
        destination = notification["destination"]
        if not EMAIL_RE.match(destination):
            raise ExportError(
                f"notifications[{i}].destination", f"not an e-mail address: {destination!r}"
            )
        destinations.append(destination)
    parent_folder = naming_prefix = path = None
    if to is not None:
        sftp = to.get("sftp")
        if not sftp or all(sftp.get(k) is None for k in ("parentFolder", "namingPrefix", "path")):
            raise ExportError("to.sftp", "to.sftp needs parentFolder (and namingPrefix) or path")
        parent_folder, naming_prefix, path = (
            sftp.get("parentFolder"),
            sftp.get("namingPrefix"),
            sftp.get("path"),
        )
        if path is not None:
            if parent_folder is not None or naming_prefix is not None:
                raise ExportError(
                    "to.sftp.path", "path cannot be combined with parentFolder or namingPrefix"
                )
            if (
                not PATH_RE.match(path)
                or path.startswith("/")
                or "//" in path
                or any(part in (".", "..") for part in path.split("/"))
            ):
                raise ExportError(
                    "to.sftp.path",
                    "path must be a relative file path ending in .csv (letters, digits, "
                    "spaces, '-', '_', '.', '/'; no '..')",
                )
        else:
            if parent_folder is not None and not PARENT_FOLDER_RE.match(parent_folder):
                raise ExportError(
                    "to.sftp.parentFolder",
                    "parentFolder must start with Export/Signals and use only letters, "
                    "digits, spaces, '-', '_' and '/'",
                )
            if naming_prefix is not None and not NAMING_PREFIX_RE.match(naming_prefix):
                raise ExportError(
                    "to.sftp.namingPrefix",
                    "namingPrefix: 1-100 letters, digits, spaces, '-', '_' or '.'",
                )
    return ExportRequest(
        job_name=job_name,
        signal_types=tuple(dict.fromkeys(types)),
        start=start,
        end=end,
        notifications=tuple(destinations),
        parent_folder=parent_folder,
        naming_prefix=naming_prefix,
        path=path,
    )


def marketing_days(start: datetime, end: datetime) -> int:
    return min(MAX_MARKETING_DAYS, max(1, math.ceil((end - start).total_seconds() / 86400)))


def planned_marketing_rows(request: ExportRequest, per_day: int) -> int:
    marketing = [t for t in request.signal_types if t in ALL_MARKETING_TYPES]
    return len(marketing) * marketing_days(request.start, request.end) * per_day


class ExportService:
    def __init__(
        self,
        *,
        store: Store,
        clock: Clock,
        faults: Faults,
        settings: ExportSettings,
        sftp_root: Path,
        tmp_dir: Path,
        accounts: dict[str, Account],
    ) -> None:
        self.store = store
        self.clock = clock
        self.faults = faults
        self.settings = settings
        self.sftp_root = sftp_root
        self.tmp_dir = tmp_dir
        self.accounts = accounts
        self._tasks: set[asyncio.Task[None]] = set()

    def user_root(self, email: str) -> Path:
        root = self.sftp_root / email
        (root / "Export" / "Signals").mkdir(parents=True, exist_ok=True)
        return root

    def usage(self, account: Account) -> dict[str, Any]:
        day = self.clock.now().strftime("%Y-%m-%d")
        jobs, size, rows = self.store.day_usage(account.api_key, day)
        return {
            "day": day,
            "jobs": jobs,
            "bytes": size,
            "rows": rows,
            "jobLimit": self.settings.daily_jobs,
            "byteLimit": self.settings.daily_bytes,
            "rowLimit": self.settings.daily_rows,
        }

    def submit(self, account: Account, request: ExportRequest) -> dict[str, Any]:
        """Check uniqueness and the day's limits, then queue the job."""
        store, settings = self.store, self.settings
        if store.job_name_taken(account.api_key, request.job_name):
            raise ExportError("jobName", f"an export job named {request.job_name!r} exists")
        now = self.clock.now()
        day = now.strftime("%Y-%m-%d")
        jobs, size, rows = store.day_usage(account.api_key, day)
        if jobs >= settings.daily_jobs:
            raise ExportError(
                "jobName",
                f"daily limit reached: {settings.daily_jobs} export jobs per subscription "
                f"per UTC day ({jobs} used on {day})",
                code="DAILY_LIMIT_JOBS",
            )
        if size >= settings.daily_bytes:
            raise ExportError(
                "export",
                f"daily limit reached: {settings.daily_bytes} bytes of export output per "
                f"subscription per UTC day ({size} used on {day})",
                code="DAILY_LIMIT_BYTES",
            )
        behavior = [t for t in request.signal_types if t in BEHAVIOR_TYPES]
        planned = store.count_signals(
            account.api_key, behavior, request.start.timestamp(), request.end.timestamp()
        ) + planned_marketing_rows(request, settings.marketing_rows_per_day)
        if rows + planned > settings.daily_rows:
            raise ExportError(
                "export",
                f"daily limit: this job's {planned} rows would pass {settings.daily_rows} rows "
                f"per subscription per UTC day ({rows} used on {day})",
                code="DAILY_LIMIT_ROWS",
            )
        data_job_id = str(uuid.uuid4())
        path = self._path(account, request, data_job_id, now)
        job = {
            "data_job_id": data_job_id,
            "api_key": account.api_key,
            "job_name": request.job_name,
            "status": "QUEUED",
            "path": path,
            "file_format": "CSV",
            "day": day,
            "created_at": iso(now),
            "planned_rows": planned,
            "params": orjson.dumps(request.as_json()).decode(),
        }
        store.add_job(job)
        self._schedule(data_job_id)
        return job

    def _path(self, account: Account, request: ExportRequest, job_id: str, now: datetime) -> str:
        if request.path is not None:
            path = request.path + ".gz"
            if self.store.path_taken(account.email, path):
                raise ExportError("to.sftp.path", f"path {request.path!r} is already used")
            return path
        folder = (request.parent_folder or f"Export/Signals/{now:%Y-%m-%d}").rstrip("/")
        prefix = request.naming_prefix or ""
        return f"{folder}/{prefix}Signals_Export_{now:%Y%m%dT%H%M%S}_{job_id[:8]}.csv.gz"

    def resume(self) -> None:
        """Jobs a previous run left unfinished start again from the queue."""
        for job in self.store.unfinished_jobs():
            self.store.update_job(job["data_job_id"], status="QUEUED", started_at=None)
            self._schedule(job["data_job_id"])

    def _schedule(self, data_job_id: str) -> None:
        task = asyncio.get_running_loop().create_task(self._run(data_job_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, data_job_id: str) -> None:
        await asyncio.sleep(self.settings.delay)
        self.store.update_job(data_job_id, status="RUNNING", started_at=iso(self.clock.now()))
        try:
            await asyncio.sleep(self.settings.run_seconds)
            job = self.store.job(data_job_id)
            assert job is not None
            account = self.accounts[job["api_key"]]
            if self.faults.export_fails():
                raise RuntimeError("export failed (sandbox fault switch export_failure_rate)")
            target = self.user_root(account.email) / job["path"]
            rows, size = await asyncio.to_thread(
                write_export,
                db_path=self.store.path,
                target=target,
                tmp_dir=self.tmp_dir,
                job=dict(job),
                account=account,
                marketing_rows_per_day=self.settings.marketing_rows_per_day,
                now=self.clock.time(),
            )
        except Exception as exc:
            self.store.update_job(
                data_job_id, status="FAILED", completed_at=iso(self.clock.now()), error=str(exc)
            )
            print(f"sandbox: export {data_job_id} failed: {exc}", file=sys.stderr)
            return
        self.store.update_job(
            data_job_id,
            status="COMPLETED",
            completed_at=iso(self.clock.now()),
            rows=rows,
            size_bytes=size,
        )

    def sweep(self, now: float | None = None) -> list[str]:
        """Remove export files older than the retention period (by modification time)."""
        cutoff = (self.clock.time() if now is None else now) - self.settings.retention_days * 86400
        removed: list[str] = []
        if not self.sftp_root.exists():
            return removed
        for dirpath, _dirnames, filenames in os.walk(self.sftp_root, topdown=False):
            folder = Path(dirpath)
            for name in filenames:
                file = folder / name
                if file.stat().st_mtime < cutoff:
                    file.unlink()
                    removed.append(str(file.relative_to(self.sftp_root)))
            relative = folder.relative_to(self.sftp_root).parts
            # Keep each user's root and its reserved Export/Signals folder.
            if len(relative) > 3 and not any(folder.iterdir()):
                folder.rmdir()
        return removed

    async def sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.sweep_interval)
            try:
                self.sweep()
            except OSError as exc:
                print(f"sandbox: sweep failed: {exc}", file=sys.stderr)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task


def write_export(
    *,
    db_path: Path,
    target: Path,
    tmp_dir: Path,
    job: dict[str, Any],
    account: Account,
    marketing_rows_per_day: int,
    now: float,
) -> tuple[int, int]:
    """Write the job's gzip CSV; returns (rows, bytes). Runs in a worker thread."""
    params = orjson.loads(job["params"])
    start = parse_iso(params["timestampStart"])
    end = parse_iso(params["timestampEnd"])
    types: list[str] = params["signalTypes"]
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir.mkdir(parents=True, exist_ok=True)
    tmp = tmp_dir / f"{job['data_job_id']}.csv.gz.part"
    rows = 0
    conn = connect(db_path, readonly=True)
    try:
        with gzip.open(tmp, "wb") as raw, io.TextIOWrapper(raw, "utf-8", newline="") as text:
            writer = csv.DictWriter(text, COLUMNS, extrasaction="raise")
            writer.writeheader()
            for record in _behavior_rows(conn, account, types, start, end):
                writer.writerow(record)
                rows += 1
            for record in _marketing_rows(
                account, types, start, end, marketing_rows_per_day, job["data_job_id"]
            ):
                writer.writerow(record)
                rows += 1
    finally:
        conn.close()
    # The file's time is the sandbox clock's, so a shifted clock ages files consistently.
    os.utime(tmp, (now, now))
    os.replace(tmp, target)
    return rows, target.stat().st_size


def _linking_id(*parts: str | None) -> str:
    return str(uuid.uuid5(_LINK_NS, "|".join(p or "" for p in parts)))


def _behavior_rows(
    conn: sqlite3.Connection,
    account: Account,
    types: list[str],
    start: datetime,
    end: datetime,
) -> Iterator[dict[str, str]]:
    behavior = [t for t in types if t in BEHAVIOR_TYPES]
    if not behavior:
        return
    marks = ",".join("?" for _ in behavior)
    cursor = conn.execute(
        "SELECT * FROM signals WHERE api_key = ? AND received_ts >= ? AND received_ts <= ? "
        f"AND signal_type IN ({marks}) ORDER BY received_ts, id",
        (account.api_key, start.timestamp(), end.timestamp(), *behavior),
    )
    for row in cursor:
        content = orjson.loads(row["content"])
        signal_ts = row["received_at"]
        given = content.get("signalTimestamp")
        if isinstance(given, str):
            with contextlib.suppress(ValueError):
                signal_ts = iso(parse_iso(given))
        yield {
            "DATASET_ID": account.dataset_id,
            "SUBSCRIPTION_ID": account.subscription_id,
            "TEMPORARY_LINKING_ID": _linking_id(
                row["contact_key"], row["email"], row["sms"], row["whatsapp"]
            ),
            "ACOUSTIC_APP_KEY": row["app_key"],
            "CATEGORY": str(content.get("category") or "Behavior"),
            "DESCRIPTION": str(content.get("description") or ""),
            "NAME": str(content.get("name") or ""),
            "OBSERVED_TIMESTAMP": iso_ts(row["received_ts"] + 0.25),
            "RECEIVED_TIMESTAMP": row["received_at"],
            "SIGNAL_CONTENT": row["content"],
            "SIGNAL_GROUP": SIGNAL_GROUP.get(row["signal_type"], "session"),
            "SIGNAL_TIMESTAMP": signal_ts,
            "SCREEN_VIEW_NAME": str(content.get("url") or ""),
            "TLTSID": row["session_id"] or "",
            "SIGNAL_ID": row["signal_id"],
            "SIGNAL_TYPE": row["signal_type"],
            "TIMESTAMP": row["received_at"],
            "EMAIL": row["email"] or "",
            "SMS": row["sms"] or "",
            "WHATSAPP": row["whatsapp"] or "",
            "CONTACT_KEY": row["contact_key"] or "",
        }


_CONSENT = ("OPT_IN", "OPT_IN", "OPT_IN", "OPT_OUT", "OPT_IN_UNVERIFIED")
_BOT_REASONS = ("APPLE_MPP", "OPEN_COUNT_THRESHOLD", "CLICK_TIME_THRESHOLD", "USER_AGENT")


def _marketing_rows(
    account: Account,
    types: list[str],
    start: datetime,
    end: datetime,
    per_day: int,
    seed: str,
) -> Iterator[dict[str, str]]:
    """Plausible generated rows: the sandbox sends no campaigns, so it makes them up,
    deterministically per job."""
    marketing = [t for t in types if t in ALL_MARKETING_TYPES]
    if not marketing or per_day <= 0:
        return
    rng = random.Random(seed)
    days = marketing_days(start, end)
    count = days * per_day
    span = (end - start).total_seconds()

    def rid() -> str:
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))

    for signal_type in marketing:
        channel = "email" if signal_type.startswith("email") else (
            "sms" if signal_type.startswith("sms") else "whatsapp"
        )  # fmt: skip
        for n in range(count):
            moment = start + timedelta(seconds=span * (n + rng.random()) / count)
            if moment > end:
                moment = end
            contact = rng.randrange(1, 500)
            email = f"contact{contact}@example.com"
            phone = f"+1311555{contact:04d}"
            campaign = rng.randrange(1, 9)
            timestamp = iso(moment.astimezone(UTC))
            record: dict[str, str] = {
                "DATASET_ID": account.dataset_id,
                "SUBSCRIPTION_ID": account.subscription_id,
                "TEMPORARY_LINKING_ID": _linking_id(email),
                "CATEGORY": "Marketing",
                "SIGNAL_ID": rid(),
                "SIGNAL_TYPE": signal_type,
                "TIMESTAMP": timestamp,
                "RECEIVED_TIMESTAMP": timestamp,
                "SIGNAL_TIMESTAMP": timestamp,
                "EMAIL": email if channel == "email" else "",
                "SMS": phone if channel == "sms" else "",
                "WHATSAPP": phone if channel == "whatsapp" else "",
                "CONSENT_EMAIL": rng.choice(_CONSENT) if channel == "email" else "",
                "CONSENT_SMS": rng.choice(_CONSENT) if channel == "sms" else "",
                "CONSENT_WHATSAPP": rng.choice(_CONSENT) if channel == "whatsapp" else "",
                "CONTACT_KEY": f"CK-{contact:06d}",
                "CAMPAIGN_ID": _linking_id("campaign", str(campaign)),
                "CAMPAIGN_NAME": f"Sandbox campaign {campaign}",
                "CAMPAIGN_DESCRIPTION": "Generated by the sandbox",
                "CAMPAIGN_STATUS": rng.choice(("RUNNING", "COMPLETED")),
                "CAMPAIGN_TYPE": rng.choice(("SCHEDULED", "TRIGGERED", "MULTISTEP")),
                "ENTRY_TYPE": rng.choice(("SEGMENT", "SIGNAL")),
                "FREQUENCY": rng.choice(("ALWAYS ON", "ONE TIME")),
                "SCHEDULED_DATE": iso(start),
                "TAGS": '["sandbox"]',
                "MESSAGE_ID": _linking_id("message", str(campaign), channel),
                "MESSAGE_NAME": f"Sandbox {channel} message {campaign}",
                "MESSAGE_TAGS": "[]",
                "AUDIENCE_VARIABLES": '["firstName"]',
                "PERSONALIZATION_VARIABLES": '["firstName"]',
                "PLACEHOLDER_VARIABLES": "[]",
                "PRODUCT_VARIABLES": "[]",
                "REFERENCE_SET_VARIABLES": "[]",
            }
            if signal_type.endswith(("Click", "Open")):
                bot = rng.random() < 0.1
                record["BOT_DETECTED"] = "true" if bot else "false"
                record["BOT_DETECTION_REASON"] = rng.choice(_BOT_REASONS) if bot else ""
            if signal_type.endswith("Click"):
                record["LINK_ID"] = _linking_id("link", str(campaign))
                record["MESSAGE_SIGNAL_ID"] = rid()
            if signal_type.endswith("Failure"):
                record["CLASSIFICATION"] = rng.choice(("PERMANENT", "TEMPORARY"))
                record["CLASSIFICATION_CODE"] = rng.choice(("BAD_RECIPIENT", "SYSTEM"))
            if signal_type.endswith("Inbound"):
                record["CLASSIFICATION"] = rng.choice(("UNSUBSCRIBE", "OTHER"))
            if channel == "email":
                record |= {
                    "EMAIL_FROM_ADDRESS": "news@example.com",
                    "EMAIL_FROM_NAME": "Sandbox Store",
                    "EMAIL_SUBJECT": f"Offer {campaign}",
                    "EMAIL_PRE_HEADER": "This week only",
                    "EMAIL_REPLY_TO_ADDRESS": "support@example.com",
                    "EMAIL_TAGS": "[]",
                    "EMAIL_TRACKING_LEVEL": "unique",
                    "VMTA": "vmta-1",
                    "VMTA_POOL": "pool-a",
                }
            elif channel == "sms":
                record |= {"INCLUDES_MEDIA": "false", "IS_MMS": "false", "SMS_TAGS": "[]"}
            else:
                record |= {
                    "INCLUDES_MEDIA": "false",
                    "WHATSAPP_MESSAGE_BODY": "Your cart is waiting",
                    "WHATSAPP_TAGS": "[]",
                    "WHATSAPP_TEMPLATE_CATEGORY": "Marketing",
                    "WHATSAPP_TEMPLATE_ID": f"tmpl-{campaign}",
                    "WHATSAPP_TEMPLATE_NAME": f"cart_reminder_{campaign}",
                    "WHATSAPP_TYPE": "Templated",
                }
            yield record
