"""Sending an import's valid signals to Connect through the durable batch ledger (SPEC §6).

`import_send` writes the ledger (one `ImportBatch` per ≤ 500 valid signals) and enqueues the
task; the task body `import_send_run` walks it. Each batch is marked IN_FLIGHT and committed
before its call, and its outcome committed after, so a run restarted after a crash knows
which batches Connect may already hold: those found IN_FLIGHT become UNKNOWN and are never
resent by themselves — ops resend them with `batch_resend` once they have looked.

The ledger is cut into lanes: contiguous runs of batches, each sent in file order by a task
of its own, so two workers send one import side by side (on PostgreSQL; SQLite, for
development, keeps one lane). A lane's run holds a PostgreSQL advisory lock for its whole
life; the server frees it when the worker's session ends, which is how a batch left
IN_FLIGHT is known to be orphaned (its lane's lock is free) rather than on its way. A
worker process that dies ends its session at once; a host that vanishes ends it only
when the server's TCP keepalive gives up (`tcp_keepalives_*`, two hours by default), so
production servers should shorten those. Session locks need a session per connection:
no PgBouncer in transaction mode in front of the app.

Settings (defaults in brackets; tests shrink them):
- SIGNALS_BATCH_SIZE [500]: signals per createSignals call, never above 500.
- SIGNALS_SEND_RETRY_BUDGET_SECONDS [1800]: how long a batch refused for a passing reason
  (connect errors, 429, 502, 503: Connect surely did not take it) is tried again, a time
  and not a count: six quick attempts would turn a one-minute hiccup into failed batches.
- SIGNALS_SEND_BACKOFF_SECONDS [0.5], SIGNALS_SEND_BACKOFF_CAP_SECONDS [120]: exponential
  backoff with full jitter between them.
- SIGNALS_SEND_RETRY_AFTER_MAX_SECONDS [300]: the longest `Retry-After` we wait for.
- SIGNALS_SEND_WINDOW [8]: createSignals calls of one import in flight at once, across its
  lanes and workers (services.window); each Connect account's `max_batches_in_flight`
  bounds all its imports together. A 429 or a Retry-After pauses the account's every run.
- SIGNALS_SEND_PREFETCH [4]: batches read and serialised ahead (at least the window).
- SIGNALS_SEND_LANES [2]: send runs per import at once (at most 8; 1 on SQLite).
- SIGNALS_SEND_REFRESH_SECONDS [0.5]: how often a run refreshes the import's counters
  while it sends (at least; one second per 4,000 batches of the ledger); always again when
  it stops.
- SIGNALS_SEND_LANE_HEARTBEAT_SECONDS [5]: how often a run shows life on its lane's row.
- SIGNALS_SEND_LANE_QUIET_SECONDS [30]: a lane without a live run, quiet for this long
  (no life shown, no task enqueued), is enqueued again by the sweep; on SQLite, a run's
  lease on its lane lapses after it.
- SIGNALS_SEND_LANE_WAIT_SECONDS [10]: how long a second run of a lane waits for the first
  to let go before leaving the lane to it.
- SIGNALS_TASK_MAX_STARTS [3]: runs of one lane that may die before the send gives up
  (services.deliveries).
- CONNECT_TIMEOUTS [{}]: keyword arguments of `connect_client.Timeouts`.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import itertools
import logging
import queue
import random
import sys
import threading
import time
import uuid
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent import futures
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

import msgspec
import orjson
from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.db import connection, transaction
from django.db.models import Count, F, Q, Sum
from django.utils import timezone

from connectadmin import alerts, files
from connectadmin.models import AppKey, AttentiveAccount, ConnectAccount
from connectadmin.roles import SEND_LIVE
from signals_app.connect_client import MAX_BATCH, ConnectClient, Outcome, SendResult, Timeouts
from signals_app.models import (
    BatchState,
    Destination,
    ImportBatch,
    ImportMode,
    ImportStatus,
    SendLane,
    SignalImport,
    audit,
)
from signals_app.services import attentive_events, attentive_sending, window
from signals_app.services.deliveries import SEND, GaveUp, clear_starts, counted_start
from signals_app.services.downloads import iter_valid_records
from signals_app.services.errors import ImportRefused
from signals_app.services.rejections import Rejections
from signals_app.services.upload import app_key_refusal, import_file_exists, import_file_name
from signals_app.validation.engine import unwrap
from signals_app.validation.readers import Record, open_signal_file
from signals_app.validation.schema import IDENTIFIABLE_ATTRIBUTES

log = logging.getLogger(__name__)

_IDENTITY_KEYS = frozenset(IDENTIFIABLE_ATTRIBUTES)
_FINAL_STATES = (BatchState.SENT, BatchState.FAILED, BatchState.UNKNOWN)
_LOCK_NAMESPACE = 0x5349  # pg advisory lock class for send runs ("SI"), plus the lane
MAX_LANES = 8
_LEDGER_CHUNK = 1000
_LEDGER_ROWS_PER_REFRESH_SECOND = 4000  # see _WindowRun.refresh_every
_STATE_OF_OUTCOME = {
    Outcome.SENT: BatchState.SENT,
    Outcome.FAILED: BatchState.FAILED,
    Outcome.UNKNOWN: BatchState.UNKNOWN,
    Outcome.RETRYABLE: BatchState.FAILED,  # only once the attempts are spent
}

# Replaced in unit tests so retries do not wait.
sleep = time.sleep
monotonic = time.monotonic  # the retry budget's clock (tests move it with `sleep`)


class SignalsClient(Protocol):
    def create_signals(
        self, signals: list[dict[str, Any]], *, body: bytes | None = None
    ) -> SendResult: ...

    def close(self) -> None: ...


# --- reading the valid signals ------------------------------------------------------------


def iter_valid_signals(
    signal_import: SignalImport, *, from_signal: int = 0
) -> Generator[tuple[int, dict[str, Any]], None, None]:
    """(index, signal as sent) for each valid signal of the import's file, in file order,
    streaming. `from_signal` skips the records before it without parsing them."""
    app_key = signal_import.connect_app_key.key
    test = not signal_import.is_live
    for record in iter_valid_records(signal_import):
        if record.index < from_signal:
            continue
        yield record.index, _sendable_record(record, app_key=app_key, test=test)


def _sendable_record(record: Record, *, app_key: str, test: bool) -> dict[str, Any]:
    if record.raw is not None:
        sent = _sendable_raw(record.raw, app_key=app_key, test=test)
        if sent is not None:
            return sent
    value = orjson.loads(record.raw) if record.raw is not None else record.value
    envelope, _outside = unwrap(value)
    return sendable(envelope, app_key=app_key, test=test)


class _RawEnvelope(msgspec.Struct):
    """What createSignals takes of a record's text, decoded in C: signalContent is kept as
    the file's own bytes (msgspec.Raw, written into the request as they are), the few
    envelope fields are decoded, everything else is skipped."""

    appKey: Any = None
    identifiableAttributes: Any = None
    sessionId: Any = None
    signalContent: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET
    signal: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET  # the file-import wrapper


_raw_envelope = msgspec.json.Decoder(_RawEnvelope)


def _sendable_raw(raw: bytes, *, app_key: str, test: bool) -> dict[str, Any] | None:
    """As sendable(), from a record's JSON text; None when the text is not an envelope
    (the caller then takes the general path — a valid signal always is one)."""
    try:
        envelope = _raw_envelope.decode(raw)
        if envelope.signalContent is msgspec.UNSET and envelope.signal is not msgspec.UNSET:
            envelope = _raw_envelope.decode(envelope.signal)  # as engine.unwrap does
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    content = envelope.signalContent
    return _signal(
        file_app_key=envelope.appKey,
        attributes=envelope.identifiableAttributes,
        session=envelope.sessionId,
        content=None if content is msgspec.UNSET else content,
        app_key=app_key,
        test=test,
    )


@dataclass(frozen=True, slots=True)
class _FileToSend:
    """What reading an import's valid signals needs, taken from the database up front so
    that a thread can read the file without a database connection of its own."""

    name: str  # in the imports storage
    max_inflated: int
    rejected: Rejections
    app_key: str
    test: bool

    @classmethod
    def of(cls, signal_import: SignalImport, *, from_signal: int) -> _FileToSend:
        source = signal_import.validation_source
        return cls(
            name=import_file_name(source),
            max_inflated=settings.SIGNALS_GZIP_MAX_INFLATED_BYTES,
            rejected=Rejections.of(source),
            app_key=signal_import.connect_app_key.key,
            test=not signal_import.is_live,
        )

    def signals(self, from_signal: int) -> Iterator[tuple[int, dict[str, Any]]]:
        """As iter_valid_signals, without touching the database."""
        rejected = self.rejected
        with (
            files.local_path(files.imports(), self.name) as path,
            open_signal_file(path, max_inflated_bytes=self.max_inflated) as signal_file,
        ):
            for record in signal_file:
                if record.index < from_signal or record.index in rejected:
                    continue
                yield record.index, _sendable_record(record, app_key=self.app_key, test=self.test)


def sendable(envelope: dict[str, Any], *, app_key: str, test: bool) -> dict[str, Any]:
    """The envelope as createSignals takes it. Connect's input types are strict, so what
    the validator only warned about (unknown fields, a sessionId that is no string) is
    left out here — Connect would drop it anyway, but GraphQL would refuse the whole batch.
    The import's mode decides `test` on every signal (SPEC §6)."""
    return _signal(
        file_app_key=envelope.get("appKey"),
        attributes=envelope.get("identifiableAttributes"),
        session=envelope.get("sessionId"),
        content=envelope.get("signalContent"),
        app_key=app_key,
        test=test,
    )


def _signal(
    *, file_app_key: Any, attributes: Any, session: Any, content: Any, app_key: str, test: bool
) -> dict[str, Any]:
    signal: dict[str, Any] = {
        "appKey": file_app_key if file_app_key is not None else app_key,
        "identifiableAttributes": {
            key: value
            for key, value in (attributes.items() if isinstance(attributes, dict) else ())
            if key in _IDENTITY_KEYS and value is not None
        },
    }
    if isinstance(session, str):
        signal["sessionId"] = session
    signal["test"] = test
    signal["signalContent"] = content
    return signal


# --- starting a send -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Destinations:
    """Where an import goes: Connect (the app key's account) and/or an Attentive account,
    with the marketer's event type names (services.attentive_events)."""

    connect: bool = True
    attentive: AttentiveAccount | None = None
    event_types: dict[str, str] = field(default_factory=dict)


def import_send(
    *,
    signal_import: SignalImport,
    user: User,
    confirm_skip: int | None = None,
    destinations: Destinations | None = None,
) -> SignalImport:
    """Write the batch ledger and enqueue the send. A live import needs SEND_LIVE, and when
    its file has rejected signals, `confirm_skip` equal to how many will be skipped. An
    import whose app key was deactivated after its upload is not sent (a promotion, which
    sends through here, neither). `destinations`: Connect alone when not given."""
    if signal_import.mode == ImportMode.LIVE and not user.has_perm(SEND_LIVE):
        raise PermissionDenied("Sending live needs the “send live” permission.")
    from signals_app.tasks import send_import  # the tasks module imports this one

    with transaction.atomic():
        # The row lock makes a double-clicked send wait here and then see the first one.
        locked = (
            SignalImport.objects.select_for_update(of=("self",))
            .select_related("app_key")
            .get(pk=signal_import.pk)
        )
        _check_sendable(locked)
        if destinations is not None:
            _set_destinations(locked, destinations)
        if refusal := app_key_refusal(locked.app_key):
            raise ImportRefused(refusal)
        source = locked.validation_source
        skipped = source.rejected
        if locked.is_live and skipped and confirm_skip != skipped:
            raise ImportRefused(
                f"{skipped} rejected signal{'s' if skipped != 1 else ''} will be skipped and "
                f"{source.valid} sent live: confirm that {skipped} will be skipped to go on."
            )
        rejected = Rejections.of(source)
        if source.signals - len(rejected) != source.valid:
            raise ImportRefused(
                "The validation results of this file are incomplete; validate it again."
            )
        _check_destinations(locked)
        ranges: list[tuple[int, int, int]] = []
        lanes = 0
        if locked.send_to_connect:
            ranges = batch_ranges(
                signals=source.signals, rejected=rejected.indexes(), size=batch_size()
            )
            lanes = min(send_lanes(), len(ranges))
            _write_ledger(locked, ranges, lambda n: n * lanes // len(ranges))
        run_lanes = list(range(lanes))
        if locked.attentive_account_id is not None:
            events = batch_ranges(
                signals=source.signals,
                rejected=rejected.indexes(),
                size=attentive_sending.attentive_batch_size(),
            )
            _write_ledger(
                locked,
                events,
                lambda n: attentive_sending.ATTENTIVE_LANE,
                first_number=len(ranges),
                destination=Destination.ATTENTIVE,
            )
            ranges += events
            run_lanes.append(attentive_sending.ATTENTIVE_LANE)
        locked.batches_total = len(ranges)
        locked.status = ImportStatus.SENDING
        locked.confirmed_skip = skipped if locked.is_live else 0
        locked.cancel_requested = False
        locked.send_started_at = locked.heartbeat_at = timezone.now()
        locked.send_finished_at = None
        locked.sent = locked.accepted = locked.failed = locked.unknown = 0
        locked.attentive_sent = locked.attentive_failed = locked.attentive_unknown = 0
        locked.save(
            update_fields=[
                "batches_total",
                "status",
                "confirmed_skip",
                "cancel_requested",
                "send_started_at",
                "heartbeat_at",
                "send_finished_at",
                "sent",
                "accepted",
                "failed",
                "unknown",
                "attentive_sent",
                "attentive_failed",
                "attentive_unknown",
            ]
        )
        audit(
            action="import.send",
            actor=user,
            signal_import=locked,
            mode=locked.mode,
            signals=source.valid,
            batches=locked.batches_total,
            skipped=skipped,
            confirmed_skip=locked.confirmed_skip,
            lanes=lanes,
            connect=locked.send_to_connect,
            attentive=locked.attentive_account.name if locked.attentive_account else "",
            kind=locked.validation_source.kind,
        )
        enqueued = timezone.now()
        SendLane.objects.bulk_create(
            SendLane(signal_import=locked, lane=lane, enqueued_at=enqueued) for lane in run_lanes
        )
        for lane in run_lanes:
            transaction.on_commit(functools.partial(send_import.delay, locked.pk, lane))
    return locked


def _set_destinations(signal_import: SignalImport, destinations: Destinations) -> None:
    try:
        attentive_events.event_types(destinations.event_types)
    except ValueError as exc:
        raise ImportRefused(f"Attentive event types: {exc}") from None
    signal_import.send_to_connect = destinations.connect
    signal_import.attentive_account = destinations.attentive
    # Before the row is saved: its constraint holds a file of events to an account.
    _check_destinations(signal_import)
    signal_import.attentive_event_types = {
        key: value.strip() for key, value in destinations.event_types.items()
    }
    signal_import.save(
        update_fields=["send_to_connect", "attentive_account", "attentive_event_types"]
    )


def _check_destinations(signal_import: SignalImport) -> None:
    if signal_import.holds_events and (
        signal_import.send_to_connect or signal_import.attentive_account_id is None
    ):
        raise ImportRefused(
            "A file of Attentive custom events goes to an Attentive account only: choose one."
        )
    if not signal_import.send_to_connect and signal_import.attentive_account_id is None:
        raise ImportRefused("Choose where to send this file: Acoustic Connect, Attentive, or both.")
    if signal_import.attentive_account_id is not None and not signal_import.is_live:
        raise ImportRefused(
            "Attentive has no test mode: every event it receives is real and can start a "
            "journey. Send this file to Attentive live, or to Connect only as a test."
        )


def _write_ledger(
    signal_import: SignalImport,
    ranges: list[tuple[int, int, int]],
    lane_of: Callable[[int], int],
    *,
    first_number: int = 0,
    destination: str = Destination.CONNECT,
) -> None:
    """The batches of one destination. A thousand rows at a time: bulk_create would hold
    every instance at once (20,000 for 10 M signals, 25 MB more in the web process)."""
    for start in range(0, len(ranges), _LEDGER_CHUNK):
        ImportBatch.objects.bulk_create(
            ImportBatch(
                signal_import=signal_import,
                number=first_number + n,
                first_signal=first,
                last_signal=last,
                size=k,
                lane=lane_of(n),
                destination=destination,
            )
            for n, (first, last, k) in enumerate(ranges[start : start + _LEDGER_CHUNK], start=start)
        )


def _check_sendable(signal_import: SignalImport) -> None:
    status = signal_import.status
    if status == ImportStatus.SENDING or signal_import.batches.exists():
        raise ImportRefused("This import is already sending or was sent; it is sent only once.")
    if status == ImportStatus.UNREADABLE:
        raise ImportRefused("This file could not be read, so there is nothing to send.")
    if status in (ImportStatus.UPLOADED, ImportStatus.VALIDATING):
        raise ImportRefused("This file is still being checked; send it once its preview is ready.")
    if status != ImportStatus.VALIDATED:
        shown = signal_import.get_status_display().lower()
        raise ImportRefused(f"This import cannot be sent: it is {shown}.")
    if signal_import.validation_source.valid == 0:
        raise ImportRefused("This file has no valid signal to send.")


def batch_size() -> int:
    return max(1, min(int(getattr(settings, "SIGNALS_BATCH_SIZE", MAX_BATCH)), MAX_BATCH))


def send_lanes() -> int:
    """Send runs per import. Lanes need the advisory locks that tell a dead run from a
    live one, so SQLite (development, one worker) keeps one."""
    if connection.vendor != "postgresql":
        return 1
    return max(1, min(int(getattr(settings, "SIGNALS_SEND_LANES", 2)), MAX_LANES))


def batch_ranges(*, signals: int, rejected: Iterable[int], size: int) -> list[tuple[int, int, int]]:
    """(first index, last index, count) of each batch of `size` valid signals, in order;
    from the counts alone, so starting a send of a 1 GB file never re-reads it. `rejected`:
    the rejected indexes, ascending (a set is sorted here). One step per rejected signal
    and per batch, not per signal."""
    ascending = sorted(rejected) if isinstance(rejected, (set, frozenset)) else rejected
    ranges: list[tuple[int, int, int]] = []
    first = last = count = 0
    start = 0  # the first index not yet placed
    for stop in itertools.chain(ascending, (signals,)):
        while start < min(stop, signals):  # the valid run [start, stop)
            if count == 0:
                first = start
            take = min(size - count, stop - start)
            count += take
            start += take
            last = start - 1
            if count == size:
                ranges.append((first, last, count))
                count = 0
        start = max(start, stop + 1)
    if count:
        ranges.append((first, last, count))
    return ranges


# --- the task body -------------------------------------------------------------------------


def import_send_run(
    *, import_id: int, lane: int | None = None, client: SignalsClient | None = None
) -> None:
    """Send the PENDING batches of one lane of the import (every lane in turn when `lane`
    is None), in order. Safe to run again at any time: batches already final are never
    resent; one found IN_FLIGHT in a lane whose run is gone becomes UNKNOWN."""
    lanes = [lane] if lane is not None else _lanes_of(import_id)
    for each in lanes:
        _run_lane(import_id, each, client)


def _lanes_of(import_id: int) -> list[int]:
    lanes = ImportBatch.objects.filter(signal_import_id=import_id).values_list("lane", flat=True)
    return sorted(set(lanes)) or [0]


def _run_lane(import_id: int, lane: int, client: SignalsClient | None) -> None:
    with _lane_run(import_id, lane) as held:
        if not held:
            log.info("import %s lane %s: another run holds the lane; leaving it", import_id, lane)
            return
        signal_import = (
            SignalImport.objects.select_related("app_key__account", "promoted_from")
            .filter(pk=import_id)
            .first()
        )
        if signal_import is None:
            return
        # This lane's lock is ours: a batch of it still IN_FLIGHT lost its run, whatever
        # became of the import meanwhile (another lane may have given up).
        orphans = _settle_orphans(signal_import, lane)
        if orphans:
            update_counters(import_id=import_id)
        if signal_import.status != ImportStatus.SENDING:
            return  # finished, cancelled or failed: a late duplicate of the task
        try:
            with counted_start(job=SEND, import_id=import_id, lane=lane) as start:
                if orphans:
                    # The ledger moved on (the batch the dead run was sending is settled):
                    # runs killed one batch at a time never add up to a give-up.
                    start.progressed()
                if lane == attentive_sending.ATTENTIVE_LANE:
                    attentive_sending.send_lane(signal_import, on_progress=start.progressed)
                else:
                    _send_lane(signal_import, lane, client, on_progress=start.progressed)
        except GaveUp as exc:
            give_up(
                import_id,
                exc,
                message=f"Sending stopped: the worker sending lane {lane} of this import stopped "
                f"{exc.starts} times in a row before sending a batch (killed, or out of "
                "memory), so it is not sent further by itself; its batches still to send "
                "stay pending. Ask an administrator to look at the worker's log.",
            )


def _send_lane(
    signal_import: SignalImport,
    lane: int,
    client: SignalsClient | None,
    *,
    on_progress: Callable[[], None] | None = None,
) -> None:
    """Send the lane's PENDING batches until none is left (or the import stops)."""
    import_id = signal_import.pk
    update_counters(import_id=import_id)
    own_client = client is None
    sender: SignalsClient = client or connect_client_for(signal_import)
    lane_batches = ImportBatch.objects.filter(signal_import_id=import_id, lane=lane)
    try:
        while True:
            status, cancel = run_state(import_id)
            if status != ImportStatus.SENDING:
                return  # another lane's run gave up, or ops changed the import
            if cancel:
                finish(import_id, ImportStatus.CANCELLED)
                return
            pending = list(lane_batches.filter(state=BatchState.PENDING).order_by("number"))
            if pending:
                _send_batches(signal_import, pending, sender, on_progress=on_progress)
                continue
            if finish(import_id, ImportStatus.COMPLETED):
                return
            if not lane_batches.filter(state=BatchState.PENDING).exists():
                return  # the other lanes' runs finish the import
    except Exception as exc:
        give_up(import_id, exc)
        raise
    finally:
        if own_client:
            sender.close()


_ORPHAN_ERROR = (
    "The worker stopped during this call: Connect may have taken the batch. "
    "It is not resent by itself; check it, then resend it if it is missing."
)


def _settle_orphans(signal_import: SignalImport, lane: int) -> int:
    """Mark the lane's IN_FLIGHT batches UNKNOWN; the caller holds the lane's lock, so
    no run of this lane is sending them."""
    if lane == attentive_sending.ATTENTIVE_LANE:
        stale = attentive_sending.settle_orphans(signal_import.pk)
    else:
        stale = ImportBatch.objects.filter(
            signal_import_id=signal_import.pk, lane=lane, state=BatchState.IN_FLIGHT
        ).update(state=BatchState.UNKNOWN, finished_at=timezone.now(), error=_ORPHAN_ERROR)
    if stale:
        audit(
            action="batch.unknown_after_restart",
            signal_import=signal_import,
            batches=stale,
            lane=lane,
        )
    return stale


def _settle_dead_lanes(signal_import: SignalImport) -> None:
    """The other lanes' orphans: IN_FLIGHT batches of a lane whose run is gone (its lock
    free — taken here for the moment of the update, so no new run claims meanwhile)."""
    lanes = (
        ImportBatch.objects.filter(signal_import_id=signal_import.pk, state=BatchState.IN_FLIGHT)
        .values_list("lane", flat=True)
        .order_by()
        .distinct()
    )
    for lane in list(lanes):
        with _try_run_lock(signal_import.pk, lane) as acquired:
            if acquired:
                _settle_orphans(signal_import, lane)


def connect_client_for(signal_import: SignalImport) -> ConnectClient:
    account = signal_import.connect_app_key.account
    return ConnectClient(
        endpoint=account.graphql_endpoint,
        api_key=account.api_key,
        timeouts=Timeouts(**getattr(settings, "CONNECT_TIMEOUTS", {})),
    )


def _lock_key(import_id: int, lane: int) -> list[int]:
    return [_LOCK_NAMESPACE + lane, import_id]


@contextlib.contextmanager
def _lane_run(import_id: int, lane: int) -> Iterator[bool]:
    """Hold the lane for this run, one run per lane at a time (a redelivered task, a
    resend's extra task, the sweep's): True when held, False when another run held it for
    SIGNALS_SEND_LANE_WAIT_SECONDS (that run does the work; one finishing just then lets
    go within the wait). While held, a thread writes the lane's `alive_at` every few
    seconds, whatever the run is waiting for.

    On PostgreSQL the hold is a session advisory lock, freed by the server the moment the
    worker's session ends; elsewhere (SQLite, for development) a lease on the lane's row
    that lapses once `alive_at` is SIGNALS_SEND_LANE_QUIET_SECONDS old."""
    row, _ = SendLane.objects.get_or_create(signal_import_id=import_id, lane=lane)
    run_id = uuid.uuid4().hex
    deadline = time.monotonic() + float(getattr(settings, "SIGNALS_SEND_LANE_WAIT_SECONDS", 10))
    while not _take_lane(row, run_id):
        if time.monotonic() >= deadline:
            yield False
            return
        time.sleep(0.1)
    heartbeat = _LaneHeartbeat(row.pk, run_id)
    try:
        yield True
    finally:
        heartbeat.stop()
        SendLane.objects.filter(pk=row.pk, run_id=run_id).update(run_id="", alive_at=timezone.now())
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s, %s)", _lock_key(import_id, lane))


def _take_lane(row: SendLane, run_id: str) -> bool:
    now = timezone.now()
    lane = SendLane.objects.filter(pk=row.pk)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_try_advisory_lock(%s, %s)", _lock_key(row.signal_import_id, row.lane)
            )
            if not cursor.fetchone()[0]:
                return False
    else:
        lapsed = now - timedelta(seconds=_lane_quiet_seconds())
        lane = lane.filter(Q(run_id="") | Q(alive_at__isnull=True) | Q(alive_at__lt=lapsed))
    return bool(lane.update(run_id=run_id, alive_at=now))


class _LaneHeartbeat:
    """Writes `alive_at` on the lane's row every SIGNALS_SEND_LANE_HEARTBEAT_SECONDS from a
    thread of its own (with its own database connection), so a run waiting on a slow call
    or a long Retry-After still shows life and a dead one stops showing it."""

    def __init__(self, lane_pk: int, run_id: str) -> None:
        self._lane_pk = lane_pk
        self._run_id = run_id
        self._stop = threading.Event()
        self._every = float(getattr(settings, "SIGNALS_SEND_LANE_HEARTBEAT_SECONDS", 5))
        self._thread = threading.Thread(target=self._beat, name="lane-heartbeat", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        try:
            while not self._stop.wait(self._every):
                SendLane.objects.filter(pk=self._lane_pk, run_id=self._run_id).update(
                    alive_at=timezone.now()
                )
        except Exception:  # a missed beat only makes the sweep look sooner
            log.warning("lane %s: heartbeat stopped", self._lane_pk, exc_info=True)
        finally:
            connection.close()  # this thread's own connection

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def _lane_quiet_seconds() -> float:
    return float(getattr(settings, "SIGNALS_SEND_LANE_QUIET_SECONDS", 30))


@contextlib.contextmanager
def _try_run_lock(import_id: int, lane: int) -> Iterator[bool]:
    """The lane's lock if no run holds it (True), else nothing (False). On SQLite, without
    locks, the lane's lease (see _lane_run), taken for the block when no run's lease is
    alive: a run cannot start on the lane meanwhile (a resend settling its IN_FLIGHT
    batches would otherwise call UNKNOWN the batch a run just started sending). Let go
    with the lane's last sign of life left as it was, so the sweep reads the lane's quiet
    as before."""
    if connection.vendor != "postgresql":
        row, _ = SendLane.objects.get_or_create(signal_import_id=import_id, lane=lane)
        last_alive = SendLane.objects.filter(pk=row.pk).values_list("alive_at", flat=True)[0]
        holder = f"check-{uuid.uuid4().hex[:26]}"  # run_id holds 32 characters
        taken = _take_lane(row, holder)
        try:
            yield taken
        finally:
            if taken:
                SendLane.objects.filter(pk=row.pk, run_id=holder).update(
                    run_id="", alive_at=last_alive
                )
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", _lock_key(import_id, lane))
        acquired = bool(cursor.fetchone()[0])
    try:
        yield acquired
    finally:
        if acquired:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s, %s)", _lock_key(import_id, lane))


@dataclass(frozen=True, slots=True)
class _Prepared:
    batch: ImportBatch
    signals: list[dict[str, Any]]
    body: bytes  # the createSignals request, serialised


_DONE = object()
_NOT_READY = object()
_SWITCH_INTERVAL = 0.0005  # seconds; see _send_batches
_STATE_POLL_SECONDS = 0.25  # how often a waiting run reads the import's status and cancel
_FULL_RETRY_SECONDS = 0.1  # how soon a claim refused by a full window is tried again
_ACCOUNT_LOCK_NAMESPACE = 0x5341  # pg advisory xact lock class for claims ("SA")


class _Prefetch:
    """Batches read, turned into createSignals bodies and serialised by a thread, at most
    `depth` ahead of the sender: the next batches are prepared while others are in flight.
    The thread only reads the file; every ledger write stays with the sender."""

    def __init__(self, to_send: _FileToSend, pending: list[ImportBatch], depth: int) -> None:
        self._to_send = to_send
        self._pending = pending
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max(1, depth))
        self._stop = threading.Event()
        self._finished = False
        self._thread = threading.Thread(target=self._run, name="send-prefetch", daemon=True)
        self._thread.start()

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        try:
            signals = self._to_send.signals(self._pending[0].first_signal)
            with contextlib.closing(signals):  # type: ignore[type-var]
                for batch, found in group_into_batches(signals, self._pending):
                    body = ConnectClient.body(found) if len(found) <= MAX_BATCH else b""
                    if not self._put(_Prepared(batch, found, body)):
                        return
        except BaseException as exc:  # handed to the sender, which raises it
            self._put(exc)
            return
        self._put(_DONE)

    @property
    def finished(self) -> bool:
        """Every batch was handed out."""
        return self._finished

    def take(self, timeout: float) -> _Prepared | None:
        """The next batch prepared, waiting up to `timeout` seconds for it; None when none
        is ready yet or all were handed out (see `finished`)."""
        if self._finished:
            return None
        try:
            item = self._queue.get(timeout=timeout) if timeout > 0 else self._queue.get_nowait()
        except queue.Empty:
            return None
        if item is _DONE:
            self._finished = True
            return None
        if isinstance(item, BaseException):
            self._finished = True
            raise item
        assert isinstance(item, _Prepared)
        return item

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


def send_window() -> int:
    """Calls of one import in flight at once, across its lanes (SIGNALS_SEND_WINDOW)."""
    return max(1, int(getattr(settings, "SIGNALS_SEND_WINDOW", 8)))


def _send_batches(
    signal_import: SignalImport,
    pending: list[ImportBatch],
    client: SignalsClient,
    *,
    on_progress: Callable[[], None] | None = None,
) -> None:
    """Send these batches, reading the file once from the first of them, with up to the
    sending window's calls in flight. Returns once every one is settled, or when the
    import stops (a cancel, another lane giving up): then no new call is made, and the
    calls already in flight are waited for and their outcomes written."""
    to_send = _FileToSend.of(signal_import, from_signal=pending[0].first_signal)
    # The import's window is shared by its lanes (each claim checks the whole); a lane's
    # run keeps its share of it going.
    lanes = len([n for n in _lanes_of(signal_import.pk) if n != attentive_sending.ATTENTIVE_LANE])
    size = -(-send_window() // max(lanes, 1))
    depth = max(int(getattr(settings, "SIGNALS_SEND_PREFETCH", 4)), size)
    # The prefetch thread is CPU-bound: with the default 5 ms switch interval the sender,
    # back from each socket or database wait, would queue that long for the GIL.
    switch_interval = sys.getswitchinterval()
    sys.setswitchinterval(min(switch_interval, _SWITCH_INTERVAL))
    prefetch = _Prefetch(to_send, pending, depth)
    calls = window.executor(size)
    run = _WindowRun(signal_import, client, size, on_progress=on_progress)
    try:
        run.send(prefetch, calls)
    finally:
        prefetch.close()
        calls.shutdown(wait=True)  # after an error: the calls in flight end by their timeouts
        sys.setswitchinterval(switch_interval)
    update_counters(import_id=signal_import.pk)


@dataclass(slots=True)
class _Attempt:
    """A batch on its way: its prepared request, and its attempts in this run."""

    prepared: _Prepared
    calls: int = 0
    started: float = 0.0  # `monotonic()` of the first call
    due: float = 0.0  # when it may be tried again, after a passing refusal

    @property
    def batch(self) -> ImportBatch:
        return self.prepared.batch


class _Claim(enum.Enum):
    TAKEN = "taken"
    STOPPED = "stopped"  # the import is no longer sending, or a cancel was asked
    GONE = "gone"  # the batch is no longer PENDING: another run took it, or ops changed it
    FULL = "full"  # the import's or the account's window is full, or Connect said wait


class _WindowRun:
    """One run of the window loop over a list of batches (see `_send_batches`)."""

    def __init__(
        self,
        signal_import: SignalImport,
        client: SignalsClient,
        size: int,
        *,
        on_progress: Callable[[], None] | None,
    ) -> None:
        self.import_id = signal_import.pk
        self.account_id = signal_import.connect_app_key.account_id
        self.client = client
        self.size = size
        self.pace = window.Pace(size)
        self.on_progress = on_progress
        self.budget = float(getattr(settings, "SIGNALS_SEND_RETRY_BUDGET_SECONDS", 1800))
        self.in_flight: dict[Future[SendResult], _Attempt] = {}
        self.waiting: list[_Attempt] = []  # refused for a passing reason, by due time
        self.held: _Attempt | None = None  # read but not claimed: the window was full
        self.held_until = 0.0
        self.stopping = False
        # The counters are an aggregate over the whole ledger: refreshed every 0.5 s for
        # 2,000 batches, less often for more (10 M signals: every 5 s), so their cost per
        # second stays the same whatever the import's size, instead of growing with it.
        self.refresh_every = max(
            float(getattr(settings, "SIGNALS_SEND_REFRESH_SECONDS", 0.5)),
            signal_import.batches_total / _LEDGER_ROWS_PER_REFRESH_SECOND,
        )
        self.refresh_at = monotonic() + self.refresh_every
        self.polled_at = monotonic()
        self.account_cap = _account_cap(self.account_id)

    def send(self, prefetch: _Prefetch, calls: Executor) -> None:
        try:
            while True:
                if not self.stopping:
                    self._start_calls(prefetch, calls)
                if not self.in_flight and (self.stopping or self._all_handed_out(prefetch)):
                    return
                slept = self._wait_a_little(prefetch)
                self._poll(now=slept)
        except BaseException:
            self._settle_the_rest()
            raise

    def _settle_the_rest(self) -> None:
        """The run broke (the file went bad while read ahead, the database): the calls
        already in flight still get their outcomes written, not left to be called
        unknown by the next run."""
        for future in futures.as_completed(list(self.in_flight)):
            attempt = self.in_flight.pop(future)
            try:
                self._settle(attempt, future.result())
            except Exception:
                log.exception("batch %s: its outcome could not be written", attempt.batch.pk)

    def _all_handed_out(self, prefetch: _Prefetch) -> bool:
        return prefetch.finished and not self.waiting and self.held is None

    def _start_calls(self, prefetch: _Prefetch, calls: Executor) -> None:
        """Claim and start calls while the window has room and nobody said wait."""
        while len(self.in_flight) < self.pace.size and not self.pace.paused(monotonic()):
            attempt = self._next(prefetch)
            if attempt is None:
                return
            claim = _claim(
                attempt.batch,
                first_attempt=attempt.calls == 0,
                account_id=self.account_id,
                window=send_window(),
                account_cap=self.account_cap,
            )
            if claim is _Claim.STOPPED:
                self._hold(attempt, 0.0)
                self.stopping = True
                return
            if claim is _Claim.GONE:
                continue
            if claim is _Claim.FULL:
                self._hold(attempt, monotonic() + _FULL_RETRY_SECONDS)
                return
            if attempt.calls == 0:
                attempt.started = monotonic()
            attempt.calls += 1
            prepared = attempt.prepared
            future = calls.submit(
                self.client.create_signals, prepared.signals, body=prepared.body or None
            )
            self.in_flight[future] = attempt

    def _next(self, prefetch: _Prefetch) -> _Attempt | None:
        """The batch to start next: the one held back, else the earliest retry that is
        due, else the next one read (waiting briefly for it only when nothing is in
        flight). None when there is nothing to start now."""
        now = monotonic()
        if self.held is not None:
            if now < self.held_until:
                return None
            attempt, self.held = self.held, None
            return attempt
        if self.waiting and self.waiting[0].due <= now:
            return self.waiting.pop(0)
        while True:
            prepared = prefetch.take(timeout=0.0 if self.in_flight else 0.05)
            if prepared is None:
                return None
            if len(prepared.signals) == prepared.batch.size:
                return _Attempt(prepared)
            _write_outcome(
                prepared.batch,
                BatchState.FAILED,
                from_states=(BatchState.PENDING,),
                error=f"The stored file no longer gives this batch's {prepared.batch.size} "
                f"signals (found {len(prepared.signals)}); nothing was sent.",
            )

    def _hold(self, attempt: _Attempt, until: float) -> None:
        self.held, self.held_until = attempt, until

    def _wait_a_little(self, prefetch: _Prefetch) -> bool:
        """Until a call ends, a retry is due, the pause ends, or it is time to poll; True
        when the run only waited (nothing in flight)."""
        now = monotonic()
        wake = [now + _STATE_POLL_SECONDS]
        if self.pace.paused(now):
            wake.append(self.pace.paused_until)
        elif len(self.in_flight) < self.pace.size:  # room: a retry or a held batch may go
            wake.extend(attempt.due for attempt in self.waiting[:1])
            if self.held is not None:
                wake.append(self.held_until)
        timeout = max(0.0, min(wake) - now)
        if self.in_flight:
            done, _ = futures.wait(
                self.in_flight, timeout=timeout, return_when=futures.FIRST_COMPLETED
            )
            for future in done:
                self._settle(self.in_flight.pop(future), future.result())
            return False
        # Nothing in flight: the next batch read is taken at once (the read waits for it),
        # unless the run is held back — then wait here, with the run's clock.
        if self.held is None and not self.pace.paused(now) and not prefetch.finished:
            return False
        if timeout > 0:
            sleep(timeout)
        return True

    def _settle(self, attempt: _Attempt, result: SendResult) -> None:
        batch = attempt.batch
        if result.outcome == Outcome.RETRYABLE:
            delay = retry_delay(attempt=attempt.calls, retry_after=result.retry_after)
            if monotonic() - attempt.started + delay <= self.budget:
                self._retry_later(attempt, result, delay)
                return
        spent = monotonic() - attempt.started
        error = result.error
        if result.outcome == Outcome.RETRYABLE:
            error = (
                f"Gave up after {attempt.calls} attempts in {spent:.0f} s (the retry budget "
                f"is {self.budget:.0f} s): {error}"
            )
        _write_outcome(
            batch,
            _STATE_OF_OUTCOME[result.outcome],
            http_status=result.http_status,
            error=error,
            signal_ids=result.signal_ids,
            duration_ms=int(spent * 1000),
        )
        if result.outcome == Outcome.SENT:
            self.pace.accepted()
        if self.on_progress is not None:
            self.on_progress()

    def _retry_later(self, attempt: _Attempt, result: SendResult, delay: float) -> None:
        """Back to PENDING until it is due (a crash meanwhile resends nothing twice)."""
        batch = attempt.batch
        ImportBatch.objects.filter(pk=batch.pk, state=BatchState.IN_FLIGHT).update(
            state=BatchState.PENDING,
            http_status=result.http_status,
            error=f"attempt {attempt.calls}: {result.error}; retrying in {delay:.1f} s",
        )
        log.info("batch %s: %s; retrying in %.1f s", batch.pk, result.error, delay)
        now = monotonic()
        attempt.due = now + delay
        self.waiting.append(attempt)
        self.waiting.sort(key=lambda waiting: (waiting.due, waiting.batch.number))
        if result.http_status == 429 or result.retry_after is not None:
            # Connect spoke to the client: the whole window waits, here and in every run
            # sending to this account.
            self.pace.slow_down(until=now + delay)
            _pause_account(self.account_id, delay)
        _heartbeat(self.import_id)

    def _poll(self, *, now: bool) -> None:
        """The import's status and cancel flag (one indexed row) every few tenths of a
        second, and its counters (an aggregate over the ledger, also the run's heartbeat)
        every SIGNALS_SEND_REFRESH_SECONDS; the status `now` too (after a wait). Every
        claim checks the status as well, so no call starts after a cancel; this notices it
        while the run only waits."""
        clock = monotonic()
        if clock >= self.refresh_at:
            self.refresh_at = clock + self.refresh_every
            update_counters(import_id=self.import_id)
            self.account_cap = _account_cap(self.account_id)  # an admin may change it
        if self.stopping or (not now and clock - self.polled_at < _STATE_POLL_SECONDS):
            return
        self.polled_at = clock
        status, cancel = run_state(self.import_id)
        if cancel or status != ImportStatus.SENDING:
            self.stopping = True


def group_into_batches(
    signals: Iterable[tuple[int, dict[str, Any]]], batches: list[ImportBatch]
) -> Iterator[tuple[ImportBatch, list[dict[str, Any]]]]:
    """Pair each batch (in order) with its signals, by index range; lazily."""
    items = iter(signals)
    item = next(items, None)
    for batch in batches:
        found: list[dict[str, Any]] = []
        while item is not None and item[0] <= batch.last_signal:
            if item[0] >= batch.first_signal:
                found.append(item[1])
            item = next(items, None)
        yield batch, found


def send_batch(
    *,
    batch: ImportBatch,
    signals: list[dict[str, Any]],
    client: SignalsClient,
    body: bytes | None = None,
) -> None:
    """One batch through its ledger states, as the window sends each (in this thread).
    `body`, when given, is these signals' request already serialised (ConnectClient.body)."""
    signal_import = SignalImport.objects.select_related("app_key").get(pk=batch.signal_import_id)
    prepared = _Prepared(batch, signals, body or b"")

    class _One:
        finished = False

        def take(self, timeout: float) -> _Prepared | None:
            if self.finished:
                return None
            self.finished = True
            return prepared

    run = _WindowRun(signal_import, client, 1, on_progress=None)
    run.send(_One(), window.InlineExecutor())  # type: ignore[arg-type]


def retry_delay(*, attempt: int, retry_after: float | None) -> float:
    """Seconds before the next attempt: Connect's Retry-After when it gave one (plus a
    little jitter so workers do not return together), else exponential backoff with full
    jitter (AWS architecture blog, "Exponential Backoff And Jitter")."""
    base = float(getattr(settings, "SIGNALS_SEND_BACKOFF_SECONDS", 0.5))
    cap = float(getattr(settings, "SIGNALS_SEND_BACKOFF_CAP_SECONDS", 30.0))
    if retry_after is not None:
        longest = float(getattr(settings, "SIGNALS_SEND_RETRY_AFTER_MAX_SECONDS", 300.0))
        return min(retry_after, longest) + random.uniform(0, base)
    return random.uniform(0, min(cap, base * 2 ** (attempt - 1)))


def _account_cap(account_id: int) -> int:
    cap = (
        ConnectAccount.objects.filter(pk=account_id)
        .values_list("max_batches_in_flight", flat=True)
        .first()
    )
    return max(1, cap or 1)


def _claim(
    batch: ImportBatch, *, first_attempt: bool, account_id: int, window: int, account_cap: int
) -> _Claim:
    """PENDING -> IN_FLIGHT, committed before the call, and only while the import is
    SENDING with no cancel asked, fewer than `window` of its batches and fewer than
    `account_cap` of its account's (`max_batches_in_flight`, read by the run) are
    IN_FLIGHT, and Connect did not ask the account to wait. The import's row is
    share-locked for the moment of the claim, so a claim and _finish (which locks the row
    to close the import) never cross: once an import reads
    CANCELLED, FAILED or COMPLETED no lane claims another batch of it, not even one that
    went back to PENDING to wait out a Retry-After. On PostgreSQL the claims of one
    account take turns (a transaction-level advisory lock), so two runs never both see
    the last free place; on SQLite the one UPDATE statement is atomic."""
    now = timezone.now()
    with transaction.atomic():
        if not still_sending_locked(batch.signal_import_id):
            return _Claim.STOPPED
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_advisory_xact_lock(%s, %s)", [_ACCOUNT_LOCK_NAMESPACE, account_id]
                )
        with connection.cursor() as cursor:
            cursor.execute(
                _claim_sql(first_attempt=first_attempt),
                _claim_params(
                    batch,
                    first_attempt=first_attempt,
                    now=now,
                    account_id=account_id,
                    window=window,
                    cap=account_cap,
                ),
            )
            taken = cursor.rowcount
        if taken:
            return _Claim.TAKEN
        state = ImportBatch.objects.filter(pk=batch.pk).values_list("state", flat=True).first()
        return _Claim.FULL if state == BatchState.PENDING else _Claim.GONE


@functools.cache
def _claim_sql(*, first_attempt: bool) -> str:
    """The claim's UPDATE, written once: the ORM took over a millisecond of processor time
    to compile it, for every batch. `NOT EXISTS (… OFFSET n - 1)`: fewer than n rows."""
    batch, signal_import = ImportBatch._meta.db_table, SignalImport._meta.db_table
    app_key, account = AppKey._meta.db_table, ConnectAccount._meta.db_table
    started = "%s" if first_attempt else "started_at"
    return (
        f"UPDATE {batch} SET state = %s, attempts = attempts + 1, started_at = {started} "
        "WHERE id = %s AND state = %s "
        f"AND NOT EXISTS (SELECT 1 FROM {batch} WHERE signal_import_id = %s AND state = %s "
        "AND destination = %s LIMIT 1 OFFSET %s) "
        f"AND NOT EXISTS (SELECT 1 FROM {batch} AS f JOIN {signal_import} AS s "
        "ON s.id = f.signal_import_id JOIN " + app_key + " AS k ON k.id = s.app_key_id "
        "WHERE k.account_id = %s AND f.state = %s AND f.destination = %s LIMIT 1 OFFSET %s) "
        f"AND NOT EXISTS (SELECT 1 FROM {account} WHERE id = %s AND send_paused_until > %s)"
    )


def _claim_params(
    batch: ImportBatch,
    *,
    first_attempt: bool,
    now: datetime,
    account_id: int,
    window: int,
    cap: int,
) -> list[Any]:
    when = connection.ops.adapt_datetimefield_value(now)
    return [
        BatchState.IN_FLIGHT,
        *([when] if first_attempt else []),
        batch.pk,
        BatchState.PENDING,
        batch.signal_import_id,
        BatchState.IN_FLIGHT,
        Destination.CONNECT,
        window - 1,
        account_id,
        BatchState.IN_FLIGHT,
        Destination.CONNECT,
        cap - 1,
        account_id,
        when,
    ]


def _pause_account(account_id: int, seconds: float) -> None:
    """No batch of this account is claimed for `seconds` (the latest pause wins)."""
    until = timezone.now() + timedelta(seconds=seconds)
    ConnectAccount.objects.filter(pk=account_id).filter(
        Q(send_paused_until__isnull=True) | Q(send_paused_until__lt=until)
    ).update(send_paused_until=until)


def still_sending_locked(import_id: int) -> bool:
    """SENDING and no cancel asked, the row locked FOR KEY SHARE until the transaction
    ends: closing the import, a cancel and a resend (FOR UPDATE) wait for the claim and it
    for them, while the counters' and heartbeats' plain updates of the row go on beside
    it (FOR SHARE made every claim wait for them). PostgreSQL; Django has no FOR KEY SHARE.
    SQLite locks the whole file for a write."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT 1 FROM {SignalImport._meta.db_table} "
                "WHERE id = %s AND status = %s AND NOT cancel_requested FOR KEY SHARE",
                [import_id, ImportStatus.SENDING],
            )
            return cursor.fetchone() is not None
    return SignalImport.objects.filter(
        pk=import_id, status=ImportStatus.SENDING, cancel_requested=False
    ).exists()


def _write_outcome(
    batch: ImportBatch,
    state: str,
    *,
    http_status: int | None = None,
    error: str = "",
    signal_ids: list[str] | None = None,
    duration_ms: int | None = None,
    from_states: tuple[str, ...] = (BatchState.IN_FLIGHT,),
) -> None:
    ImportBatch.objects.filter(pk=batch.pk, state__in=from_states).update(
        state=state,
        http_status=http_status,
        error=error,
        signal_ids=signal_ids or [],
        finished_at=timezone.now(),
        duration_ms=duration_ms,
    )


def update_counters(*, import_id: int) -> None:
    """The import's counters from the ledger (one aggregate over ≤ 2,000 rows). The row
    is locked before the aggregate, so two lanes never write counts older than the ones
    already there (an aggregate read before the other lane's last outcome, written after
    it closed the import)."""

    connect = Q(destination=Destination.CONNECT)
    attentive = Q(destination=Destination.ATTENTIVE)

    def total(state: str) -> Sum:
        return Sum("size", filter=connect & Q(state=state), default=0)

    def events(outcome: str) -> Sum:
        return Sum(outcome, filter=attentive, default=0)

    with transaction.atomic():
        # FOR NO KEY UPDATE: two lanes' counters take turns, while claims (FOR KEY SHARE)
        # go on; closing the import and a cancel (FOR UPDATE) wait for the claims.
        locked = SignalImport.objects.select_for_update(no_key=True).filter(pk=import_id)
        list(locked.values_list("pk"))
        counts = ImportBatch.objects.filter(signal_import_id=import_id).aggregate(
            sent=total(BatchState.SENT),
            failed=total(BatchState.FAILED),
            unknown=total(BatchState.UNKNOWN),
            attentive_sent=events("events_sent"),
            attentive_failed=events("events_failed"),
            attentive_unknown=events("events_unknown"),
        )
        # SENT means one signalId per signal (connect_client checks), so accepted == sent.
        # Called by the send loop every few batches: the run's heartbeat too.
        SignalImport.objects.filter(pk=import_id).update(
            accepted=counts["sent"], heartbeat_at=timezone.now(), **counts
        )


def _heartbeat(import_id: int) -> None:
    SignalImport.objects.filter(pk=import_id).update(heartbeat_at=timezone.now())


def run_state(import_id: int) -> tuple[str, bool]:
    """The import's status and whether a cancel was asked (one indexed row)."""
    status, cancel = SignalImport.objects.values_list("status", "cancel_requested").get(
        pk=import_id
    )
    return status, cancel


def finish(import_id: int, status: str) -> bool:
    """Close the send run; False (and nothing done) when a batch is still to be sent,
    for instance one that ops resent meanwhile."""
    _settle_dead_lanes(SignalImport(pk=import_id))
    with transaction.atomic():
        signal_import = SignalImport.objects.select_for_update().get(pk=import_id)
        if signal_import.status != ImportStatus.SENDING:
            return True
        open_states = [BatchState.IN_FLIGHT]
        if status == ImportStatus.COMPLETED:
            open_states.append(BatchState.PENDING)
        if signal_import.batches.filter(state__in=open_states).exists():
            return False
        update_counters(import_id=import_id)
        signal_import.refresh_from_db()
        signal_import.status = status
        signal_import.send_finished_at = timezone.now()
        signal_import.save(update_fields=["status", "send_finished_at"])
        audit(
            action=f"import.{status}",
            signal_import=signal_import,
            sent=signal_import.sent,
            accepted=signal_import.accepted,
            failed=signal_import.failed,
            unknown=signal_import.unknown,
            **(
                {
                    "connect": signal_import.send_to_connect,
                    "attentive_sent": signal_import.attentive_sent,
                    "attentive_failed": signal_import.attentive_failed,
                    "attentive_unknown": signal_import.attentive_unknown,
                }
                if signal_import.attentive_account_id is not None
                else {}
            ),
        )
        transaction.on_commit(functools.partial(alerts.import_ended, import_id))
    return True


def give_up(import_id: int, exc: Exception, *, message: str = "") -> None:
    """The run itself broke (file gone, database error): say so on the import."""
    try:
        SignalImport.objects.filter(pk=import_id, status=ImportStatus.SENDING).update(
            status=ImportStatus.FAILED,
            error_message=(message or f"Sending stopped: {type(exc).__name__}: {exc}")[:2000],
            send_finished_at=timezone.now(),
        )
        update_counters(import_id=import_id)
    except Exception:
        log.exception("import %s: could not record the failure", import_id)
        return
    alerts.import_ended(import_id)


# --- ops' and marketers' actions -----------------------------------------------------------


def import_cancel(*, signal_import: SignalImport, user: User) -> SignalImport:
    """Ask a sending import to stop: no new batch is sent; the batches already on their
    way get their outcomes."""
    with transaction.atomic():
        locked = SignalImport.objects.select_for_update().get(pk=signal_import.pk)
        if locked.status != ImportStatus.SENDING:
            raise ImportRefused(
                f"Only an import that is sending can be cancelled; this one is "
                f"{locked.get_status_display().lower()}."
            )
        if not locked.cancel_requested:
            locked.cancel_requested = True
            locked.save(update_fields=["cancel_requested"])
            audit(action="import.cancel", actor=user, signal_import=locked)
    return locked


def import_promote(
    *,
    signal_import: SignalImport,
    user: User,
    confirm_skip: int | None = None,
    confirm_incomplete: bool = False,
    destinations: Destinations | None = None,
) -> SignalImport:
    """Send a completed test import's validated signals again, live: a new import. A test
    that Connect did not accept whole (failed or unknown batches) needs `confirm_incomplete`.
    `destinations`: Connect alone when not given (Attentive may be chosen only now: a test
    never goes there)."""
    if not user.has_perm(SEND_LIVE):
        raise PermissionDenied("Sending live needs the “send live” permission.")
    with transaction.atomic():
        tested = SignalImport.objects.select_for_update().get(pk=signal_import.pk)
        if tested.is_live:
            raise ImportRefused("This import was already sent live.")
        if tested.status != ImportStatus.COMPLETED:
            raise ImportRefused("Only a test import that completed can be promoted to live.")
        if (tested.failed or tested.unknown) and not confirm_incomplete:
            missing = " and ".join(
                part
                for part in (
                    f"{tested.failed:,} failed" if tested.failed else "",
                    f"the outcome of {tested.unknown:,} is unknown" if tested.unknown else "",
                )
                if part
            )
            raise ImportRefused(
                f"The test was not accepted whole ({missing}): confirm that you want to send "
                "live anyway."
            )
        earlier = tested.promotions.first()
        if earlier is not None:
            raise ImportRefused(f"This test import was already promoted (import {earlier.pk}).")
        source = tested.validation_source
        live = SignalImport.objects.create(
            created_by=user,
            app_key=tested.app_key,
            mode=ImportMode.LIVE,
            promoted_from=tested,
            status=ImportStatus.VALIDATED,
            original_name=tested.original_name,
            # The file is the source's (see validation_source); the name must be unique.
            stored_name=f"{source.stored_name[:40]}.promoted-{uuid.uuid4().hex}",
            size_bytes=source.size_bytes,
            file_format=source.file_format,
            compressed=source.compressed,
            bytes_read=source.bytes_read,
            validation_started_at=source.validation_started_at,
            validation_finished_at=source.validation_finished_at,
            signals=source.signals,
            valid=source.valid,
            rejected=source.rejected,
            errors=source.errors,
            warnings=source.warnings,
            contact_key_only=source.contact_key_only,
            problem_counts=source.problem_counts,
        )
        audit(action="import.promote", actor=user, signal_import=live, promoted_from=tested.pk)
        # A refusal (e.g. no confirmation of the skipped signals) rolls the promotion back.
        return import_send(
            signal_import=live, user=user, confirm_skip=confirm_skip, destinations=destinations
        )


def batch_resend(*, batch: ImportBatch, user: User, reason: str = "") -> ImportBatch:
    """Ops' one-click resend of a batch whose outcome is unknown or that failed."""
    from signals_app.tasks import send_import  # the tasks module imports this one

    with transaction.atomic():
        signal_import = SignalImport.objects.select_for_update().get(pk=batch.signal_import_id)
        locked = ImportBatch.objects.select_for_update().get(pk=batch.pk)
        if signal_import.is_live and not user.has_perm(SEND_LIVE):
            raise PermissionDenied("Resending a live batch needs the “send live” permission.")
        if locked.state not in (BatchState.UNKNOWN, BatchState.FAILED):
            raise ImportRefused(
                f"Only a batch whose outcome is unknown or that failed can be resent; "
                f"batch {locked.number} is {locked.get_state_display().lower()}."
            )
        if signal_import.status not in (
            ImportStatus.COMPLETED,
            ImportStatus.SENDING,
            ImportStatus.FAILED,
        ):
            raise ImportRefused(
                f"Batches of a {signal_import.get_status_display().lower()} import "
                "cannot be resent."
            )
        audit(
            action="batch.resend",
            actor=user,
            signal_import=signal_import,
            batch=locked.number,
            previous_state=locked.state,
            previous_error=locked.error,
            previous_http_status=locked.http_status,
            reason=reason,
        )
        locked.state = BatchState.PENDING
        locked.error = ""
        locked.http_status = None
        locked.signal_ids = []
        locked.finished_at = None
        locked.duration_ms = None
        if locked.destination == Destination.ATTENTIVE:
            attentive_sending.reopen_for_resend(locked)
        locked.save(
            update_fields=[
                "state",
                "error",
                "http_status",
                "signal_ids",
                "finished_at",
                "duration_ms",
                "event_outcomes",
                "events_failed",
                "events_unknown",
            ]
        )
        signal_import.status = ImportStatus.SENDING
        signal_import.send_finished_at = None
        signal_import.error_message = ""
        signal_import.save(update_fields=["status", "send_finished_at", "error_message"])
        update_counters(import_id=signal_import.pk)
        # Always enqueue: a run of its lane already going picks the batch up before it
        # finishes (see _run_lane); the extra task then waits on the lane's lock and finds
        # nothing to do.
        clear_starts(job=SEND, import_id=signal_import.pk, lane=locked.lane)
        SendLane.objects.update_or_create(
            signal_import=signal_import, lane=locked.lane, defaults={"enqueued_at": timezone.now()}
        )
        transaction.on_commit(functools.partial(send_import.delay, signal_import.pk, locked.lane))
    return locked


# --- stalled sends -------------------------------------------------------------------------


def resume_stalled_sends(*, now: datetime | None = None) -> list[tuple[int, int]]:
    """Enqueue again the lanes of SENDING imports whose run is gone: their worker died,
    and its unacknowledged task would only come back after the broker's visibility
    timeout. Run every 15 seconds (celery beat), so a dead lane is resumed within a
    minute; the ledger's guarantees are those of any run (a batch the dead run left
    IN_FLIGHT becomes UNKNOWN, never resent by itself).

    A lane with batches to send (or IN_FLIGHT) is resumed when no run holds it (the
    advisory lock on PostgreSQL, the lease elsewhere) and either a batch of it is
    IN_FLIGHT (PostgreSQL: then its run certainly died) or it showed no life — no run
    alive, no task enqueued — for SIGNALS_SEND_LANE_QUIET_SECONDS (a task may wait in the
    queue that long before it starts). An import with nothing left in any lane but still
    SENDING (its run died while closing) gets lane 0, which closes it. Each resume is
    claimed on the lane's row (`enqueued_at`), so two sweeps enqueue it once, and a task
    still waiting in the queue (enqueued after the lane's last run showed life) is not
    enqueued again before SIGNALS_SEND_LANE_QUIET_SECONDS. Returns the (import id, lane)
    pairs enqueued.
    """
    from signals_app.tasks import send_import  # the tasks module imports this one

    _settle_stopped_imports()
    now = now or timezone.now()
    quiet = now - timedelta(seconds=_lane_quiet_seconds())
    resumed: list[tuple[int, int]] = []
    sending = SignalImport.objects.filter(status=ImportStatus.SENDING)
    for import_id, started in sending.values_list("pk", "send_started_at"):
        open_lanes = dict(
            ImportBatch.objects.filter(
                signal_import_id=import_id, state__in=(BatchState.PENDING, BatchState.IN_FLIGHT)
            )
            .values_list("lane")
            .annotate(in_flight=Count("id", filter=Q(state=BatchState.IN_FLIGHT)))
            .order_by()
        )
        lanes = []
        for lane, in_flight in sorted((open_lanes or {0: 0}).items()):
            row, _ = SendLane.objects.get_or_create(signal_import_id=import_id, lane=lane)
            if _run_alive(import_id, lane):
                continue
            certainly_dead = bool(in_flight) and connection.vendor == "postgresql"
            # A lane row without times is a send started before lanes had rows.
            life = max((t for t in (row.alive_at, row.enqueued_at) if t), default=started)
            if not certainly_dead and life is not None and life > quiet:
                continue
            # Not enqueued already and still waiting to start: enqueued never, long ago,
            # or before the run that since started (and is gone).
            claimed = (
                SendLane.objects.filter(pk=row.pk)
                .filter(
                    Q(enqueued_at__isnull=True)
                    | Q(enqueued_at__lte=quiet)
                    | Q(alive_at__gte=F("enqueued_at"))
                )
                .update(enqueued_at=now)
            )
            if claimed:
                lanes.append(lane)
        if not lanes:
            continue
        with transaction.atomic():
            audit(
                action="import.send_resumed", signal_import=SignalImport(pk=import_id), lanes=lanes
            )
            for lane in lanes:
                transaction.on_commit(functools.partial(send_import.delay, import_id, lane))
        resumed.extend((import_id, lane) for lane in lanes)
        log.warning("import %s: lanes %s had no run; enqueued again", import_id, lanes)
    return resumed


def _settle_stopped_imports() -> None:
    """IN_FLIGHT batches of imports no longer SENDING (one lane gave up while another's
    worker then died mid-call, and its task was lost): UNKNOWN once their lane's lock is
    free (on SQLite: once the dead run's lease has lapsed)."""
    orphans = (
        ImportBatch.objects.filter(state=BatchState.IN_FLIGHT)
        .exclude(signal_import__status=ImportStatus.SENDING)
        .values_list("signal_import_id", "lane")
        .order_by()
        .distinct()
    )
    for import_id, lane in list(orphans):
        with _try_run_lock(import_id, lane) as acquired:
            if acquired and _settle_orphans(SignalImport(pk=import_id), lane):
                update_counters(import_id=import_id)


def _run_alive(import_id: int, lane: int) -> bool:
    """Whether a send run holds the lane: its advisory lock on PostgreSQL (a worker killed
    with SIGKILL loses its session, and with it the lock), its live lease elsewhere."""
    with _try_run_lock(import_id, lane) as acquired:
        return not acquired


# --- signalIds per signal ----------------------------------------------------------------


def import_signal_ids(signal_import: SignalImport) -> Iterator[tuple[int, str]]:
    """(signal index in the file, signalId) of every signal Connect acknowledged, in file
    order, streaming. The ledger keeps a batch's ids in the order of its valid signals:
    its index range minus the file's rejected signals, walked here side by side with the
    rejected indexes (neither is held in memory)."""
    rejected = Rejections.of(signal_import)
    batches = (
        signal_import.batches.filter(state=BatchState.SENT, destination=Destination.CONNECT)
        .order_by("number")
        .values_list("first_signal", "last_signal", "signal_ids")
        .iterator(chunk_size=20)
    )
    for first, last, signal_ids in batches:
        ids = iter(signal_ids)
        index = first
        while index <= last:
            if index not in rejected:
                signal_id = next(ids, None)
                if signal_id is None:
                    break  # fewer ids than signals: only what Connect gave
                yield index, str(signal_id)
            index += 1


def import_signal_ids_with_lines(
    signal_import: SignalImport,
) -> Iterator[tuple[int, int | None, str]]:
    """import_signal_ids with each signal's line in the file (NDJSON and CSV; None for
    JSON documents, and when the file is gone), reading the file once alongside."""
    ids = import_signal_ids(signal_import)
    source = signal_import.validation_source
    if source.file_format not in ("ndjson", "csv", "export-csv"):
        for index, signal_id in ids:
            yield index, None, signal_id
        return
    if not import_file_exists(source):
        for index, signal_id in ids:
            yield index, None, signal_id
        return
    records = iter_valid_records(source)
    record = next(records, None)
    for index, signal_id in ids:
        while record is not None and record.index < index:
            record = next(records, None)
        line = record.line if record is not None and record.index == index else None
        yield index, line, signal_id
