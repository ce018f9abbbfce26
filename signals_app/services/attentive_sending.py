"""Sending an import's valid signals to Attentive as custom events (SPEC §6, issue 13).

An import sent to an Attentive account has, beside its Connect batches (or instead of
them), a lane of Attentive batches (`ATTENTIVE_LANE`) in the same ledger: each a run of
ATTENTIVE_BATCH_SIZE valid signals, sent as one `createCustomEvent` call per event
(services.attentive_events maps each signal). The lane's run is one of `sending`'s lane
runs — the same lock, heartbeat, sweep, cancel and close — with this module's loop inside:

- A batch is marked IN_FLIGHT and committed before its first call, and its outcome after
  its last: `event_outcomes` holds one letter per event (S sent, F refused, U outcome
  unknown, - not sent). A run that dies leaves its batches IN_FLIGHT; the next run of the
  lane calls every event of them not known to be S or F unknown (U), never resent by
  itself. Ops' resend sends the batch's F and U events again, never its S ones.
- Every event has a deterministic externalEventId (attentive_client.event_id: import,
  signal, account), so an event resent by ops is recognisable at Attentive.
- The calls run on a pool of ATTENTIVE_CALLS_IN_FLIGHT threads, each with its own
  keep-alive client and no database connection, each call after a permit of the shared
  rate limiter (connectadmin.ratelimit: per API key, across every worker). A few batches
  are in flight at once, so the pool never drains at a batch's end.
- A call refused for a passing reason (connect error, 429, 502, 503) is tried again with
  backoff and jitter within the retry budget (SIGNALS_SEND_RETRY_BUDGET_SECONDS); a 429 or
  a Retry-After pauses the key for every worker. A 200 with `errors` is a failure.
- Cancel: no call starts once the run has seen it (it looks every few tenths of a second);
  a batch cut short goes back to PENDING with what was sent recorded.

Attentive has no test flag: only live imports are sent there (`sending.import_send`).
"""

from __future__ import annotations

import logging
import queue
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Generator, Iterator
from concurrent import futures
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from connectadmin.ratelimit import (
    LATE_SECONDS,
    MAX_GIVE_UPS,
    Cancelled,
    RateLimiter,
    RateLimitUnavailable,
    shared_rate_limiter,
)
from signals_app.attentive_client import AttentiveClient, EventResult, LeftTooLate, event_id
from signals_app.connect_client import Outcome
from signals_app.models import BatchState, ImportBatch, ImportStatus, SignalImport
from signals_app.services.attentive_events import event_types, map_signal, source_path
from signals_app.services.downloads import iter_valid_records
from signals_app.services.records import record_value
from signals_app.validation.attentive import KeyLimit, check_event
from signals_app.validation.engine import unwrap
from signals_app.validation.findings import ERROR
from signals_app.validation.readers import UnreadableFile

log = logging.getLogger(__name__)

ATTENTIVE_LANE = 100  # the lane number of an import's Attentive batches
BATCHES_IN_FLIGHT = 3
_POLL_SECONDS = 0.25

SENT, FAILED, UNKNOWN, NOT_SENT = "S", "F", "U", "-"


def attentive_batch_size() -> int:
    return max(1, int(getattr(settings, "ATTENTIVE_BATCH_SIZE", 50)))


def calls_in_flight() -> int:
    return max(1, int(getattr(settings, "ATTENTIVE_CALLS_IN_FLIGHT", 32)))


def retry_budget() -> float:
    return float(getattr(settings, "SIGNALS_SEND_RETRY_BUDGET_SECONDS", 1800))


# --- reading the events -------------------------------------------------------------------


def iter_events(
    signal_import: SignalImport, *, from_signal: int = 0
) -> Generator[tuple[int, dict[str, Any]], None, None]:
    """(signal index, createCustomEvent input) of each valid signal from `from_signal`, in
    file order, streaming; the externalEventId included."""
    as_event = _event_maker(signal_import)
    public_id = signal_import.public_id
    account_id = signal_import.attentive_account_id
    assert account_id is not None
    for record in iter_valid_records(signal_import):
        if record.index < from_signal:
            continue
        event = as_event(record_value(record))
        if not event.get("externalEventId"):
            event["externalEventId"] = event_id(public_id, record.index, account_id)
        yield record.index, event


# The fields of a createCustomEvent input, as a file of events may hold them.
EVENT_FIELDS = ("type", "user", "properties", "externalEventId", "occurredAt")


def written_event(value: dict[str, Any]) -> dict[str, Any]:
    """A *valid* event of a file of custom events as Attentive receives it: its fields as
    written (properties an object or a JSON-encoded string alike, its own externalEventId
    kept), those it left out or null left out."""
    return {name: value[name] for name in EVENT_FIELDS if value.get(name) is not None}


def _event_maker(
    signal_import: SignalImport, types: dict[str, str] | None = None
) -> Callable[[Any], dict[str, Any]]:
    """What makes a valid record of the import's file an event: the event as written (a
    file of events), or the signal mapped with `types` (by default the import's event
    names). The externalEventId is left out unless the event has its own: it is made per
    account at sending."""
    if signal_import.validation_source.holds_events:
        return written_event
    names = types if types is not None else event_types(signal_import.attentive_event_types)
    return lambda value: map_signal(unwrap(value)[0], names).event


# Signals the send form maps and checks, at most: the first ones of the file, in a
# fraction of a second (a file of Attentive events was checked whole by its validation).
SCAN_SIGNALS = 1_000


@dataclass(slots=True)
class EventProblem:
    """What Attentive would make of some mapped signals: one field and problem."""

    severity: str
    path: str  # in the signal, [] for any index: where the marketer fixes it
    code: str
    message: str  # the first signal's
    signals: int = 0
    first_signal: int = 0


@dataclass(slots=True)
class EventsPreview:
    """The send form's look at the import as Attentive events: the first valid one as
    Attentive receives it, and what Attentive would refuse or warn about in the first
    `scanned` valid ones (all of them when `scanned` is the import's valid count)."""

    sample: dict[str, Any] | None = None
    scanned: int = 0
    refused: int = 0  # of the scanned: signals whose event Attentive would refuse
    problems: list[EventProblem] = field(default_factory=list)


def preview_events(
    signal_import: SignalImport, types: dict[str, str], *, limit: int | None = None
) -> EventsPreview:
    """The first `limit` valid signals of the import, mapped with `types` and checked by
    Attentive's rules (validation.attentive.check_event, property keys counted per type
    across them), each problem reported at the signal's field it comes from. For a file
    of events, its first event only: its validation checked them all. An unreadable file
    gives an empty preview."""
    source = signal_import.validation_source
    as_event = _event_maker(signal_import, types)
    preview = EventsPreview()
    # No further than the last valid signal it needs (a file with few valid signals is
    # not read to its end on every view of the page).
    limit = min(limit or SCAN_SIGNALS, source.valid)
    if limit <= 0:
        return preview
    keys, now = KeyLimit(), time.time()
    problems: dict[tuple[str, str, str], EventProblem] = {}
    records = iter_valid_records(signal_import)
    try:
        for record in records:
            value = record_value(record)
            event = as_event(value)
            if preview.sample is None:
                preview.sample = event
                if source.holds_events:
                    break
            preview.scanned += 1
            envelope = unwrap(value)[0]
            issues = check_event(event, keys=keys, now=now).issues
            preview.refused += any(issue.severity == ERROR for issue in issues)
            for issue in issues:
                at = _INDEX.sub("[]", source_path(issue.path, envelope))
                key = (str(issue.severity), at, str(issue.code))
                problem = problems.get(key)
                if problem is None:
                    problem = problems[key] = EventProblem(
                        *key, issue.message, first_signal=record.index
                    )
                problem.signals += 1
            if preview.scanned >= limit:
                break
    except (OSError, ValueError, UnreadableFile):
        return EventsPreview()
    finally:
        records.close()  # the file, when the loop stopped before its end
    preview.problems = sorted(
        problems.values(), key=lambda p: (p.severity != ERROR, -p.signals, p.path)
    )
    return preview


_INDEX = re.compile(r"\[\d+\]")


# --- one lane's run ---------------------------------------------------------------------


@dataclass(slots=True)
class _InFlight:
    batch: ImportBatch
    outcomes: list[str]
    calls: dict[int, Future[EventResult | None]] = field(default_factory=dict)
    started: float = 0.0


@dataclass(slots=True)
class _Call:
    """One event on its way: its request, its outcome to come, its attempts so far."""

    body: bytes
    future: Future[EventResult | None]
    started: float
    attempts: int = 0
    permit_at: float = 0.0  # the monotonic() moment of its permit
    late: int = 0  # permits given up because the call was not ready to leave on time


class _Calls:
    """The calls of one run. One thread takes the permits (the shared rate limit's) one at
    a time and hands each event, at its permit's moment, to a free thread of the pool,
    which makes the call: few threads wait on the limit (a permit kept waiting for a busy
    thread would reach Attentive late, bunched with the next ones), and up to
    ATTENTIVE_CALLS_IN_FLIGHT calls wait on the vendor's answers at once."""

    def __init__(self, signal_import: SignalImport, limiter: RateLimiter | None = None) -> None:
        account = signal_import.attentive_account
        assert account is not None
        self.endpoint = account.graphql_endpoint
        self.api_key = account.api_key
        self.limit = float(account.rate_limit)
        self.limiter = limiter or shared_rate_limiter()
        self.stop = threading.Event()
        # Why the run must stop sending, when it is not the import's state: the rate
        # limit's store cannot be reached, so no call may go without its permit.
        self.broken: RateLimitUnavailable | None = None
        self.budget = retry_budget()
        self.late_permits = 0  # permits given up because a thread came to them late
        self.counter_lock = threading.Lock()
        self.local = threading.local()
        self.clients: list[AttentiveClient] = []
        self.clients_lock = threading.Lock()
        size = calls_in_flight()
        self.free = threading.Semaphore(size)  # pool threads free to call at once
        # Twice as many threads: a call waiting out its backoff keeps a thread, not a place.
        self.pool = ThreadPoolExecutor(2 * size, thread_name_prefix="attentive")
        self.waiting: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self.dispatcher = threading.Thread(
            target=self._dispatch, name="attentive-permits", daemon=True
        )
        self.dispatcher.start()

    def submit(self, event: dict[str, Any]) -> Future[EventResult | None]:
        """The event's outcome to come: None when the run stopped before its call."""
        call = _Call(AttentiveClient.body(event), Future(), time.monotonic())
        self.waiting.put(call)
        return call.future

    def close(self) -> None:
        self.stop.set()
        self.waiting.put(None)
        self.dispatcher.join()
        self.pool.shutdown(wait=True)
        for client in self.clients:
            client.close()

    def _dispatch(self) -> None:
        while (call := self.waiting.get()) is not None:
            try:
                self._hand_over(call)
            except BaseException as exc:  # never leave the run waiting for this event
                if not call.future.done():
                    call.future.set_exception(exc)

    def _hand_over(self, call: _Call) -> None:
        """A free thread first, then the permit: the call then leaves at its moment."""
        while not self.stop.is_set():
            if self.free.acquire(timeout=_POLL_SECONDS):
                break
        else:
            call.future.set_result(None)
            return
        submitted = False
        try:
            if self.stop.is_set():
                call.future.set_result(None)
                return
            try:
                call.permit_at = self.limiter.permit(
                    self.api_key, self.limit, cancelled=self.stop.is_set
                )
            except Cancelled:
                call.future.set_result(None)
                return
            except RateLimitUnavailable as exc:
                self._broken(exc)
                call.future.set_result(None)
                return
            self.pool.submit(self._call, call)
            submitted = True
        finally:
            if not submitted:
                self.free.release()

    def _broken(self, exc: RateLimitUnavailable) -> None:
        """The rate limit's store is out of reach: no call may go without its permit."""
        self.broken = exc
        self.stop.set()

    def _client(self) -> AttentiveClient:
        client = getattr(self.local, "client", None)
        if client is None:
            client = AttentiveClient(endpoint=self.endpoint, api_key=self.api_key)
            self.local.client = client
            with self.clients_lock:
                self.clients.append(client)
        return client

    def _call(self, call: _Call) -> None:
        """One attempt, its permit taken; a refusal for a passing reason goes back to the
        permits after its backoff, while the retry budget lasts. Every way out gives the
        call its outcome, or hands it back to the permits' thread, which will."""
        try:
            client = self._client()
            # Up to the moment the request leaves: were the machine to keep it later than
            # that from its permit's moment, it would reach Attentive bunched with the
            # next ones. It takes a new permit instead (a few times at most per attempt:
            # on a machine that is never on time, it goes late rather than never).
            send_by = call.permit_at + LATE_SECONDS if call.late < MAX_GIVE_UPS else None
            result = client.create_custom_event({}, body=call.body, send_by=send_by)
        except LeftTooLate:
            call.late += 1
            with self.counter_lock:
                self.late_permits += 1
            self.free.release()
            self.waiting.put(call)
            return
        except BaseException as exc:  # never leave the run waiting for this event
            self.free.release()
            call.future.set_exception(exc)
            return
        self.free.release()
        try:
            self._after(call, result)
        except RateLimitUnavailable as exc:
            # A 429's pause could not be set: Attentive did not take the event, and no
            # call may go on without the limit.
            self._broken(exc)
            call.future.set_result(None)
        except BaseException as exc:
            if not call.future.done():
                call.future.set_exception(exc)

    def _after(self, call: _Call, result: EventResult) -> None:
        from signals_app.services.sending import retry_delay

        call.attempts += 1
        call.late = 0  # each attempt may give up its permits again
        if result.outcome != Outcome.RETRYABLE:
            call.future.set_result(result)
            return
        delay = retry_delay(attempt=call.attempts, retry_after=result.retry_after)
        if result.http_status == 429 or result.retry_after is not None:
            # Attentive spoke to the key's holder: every worker sending with it waits.
            self.limiter.pause(self.api_key, delay)
        if time.monotonic() - call.started + delay > self.budget:
            call.future.set_result(result)
        elif self.stop.wait(delay):
            call.future.set_result(None)
        else:
            self.waiting.put(call)


def send_lane(signal_import: SignalImport, *, on_progress: Callable[[], None] | None) -> None:
    """Send the Attentive lane's PENDING batches until none is left or the import stops
    (called by sending._run_lane, holding the lane)."""
    from signals_app.services import sending

    import_id = signal_import.pk
    lane_batches = ImportBatch.objects.filter(signal_import_id=import_id, lane=ATTENTIVE_LANE)
    sending.update_counters(import_id=import_id)
    calls = _Calls(signal_import)
    try:
        while True:
            status, cancel = sending.run_state(import_id)
            if status != ImportStatus.SENDING:
                return
            if cancel:
                sending.finish(import_id, ImportStatus.CANCELLED)
                return
            pending = list(lane_batches.filter(state=BatchState.PENDING).order_by("number"))
            if pending:
                _Run(signal_import, calls, on_progress).send(pending)
                sending.update_counters(import_id=import_id)
                if calls.broken is not None:
                    sending.give_up(
                        import_id,
                        calls.broken,
                        message="Sending to Attentive stopped: the store of its rate limit "
                        f"cannot be reached ({calls.broken}), and no event goes without it. "
                        "The events not sent yet stay pending; ask an administrator to look "
                        "at Redis (RATE_LIMIT_REDIS_URL).",
                    )
                    return
                continue
            if sending.finish(import_id, ImportStatus.COMPLETED):
                return
            if not lane_batches.filter(state=BatchState.PENDING).exists():
                return
    except Exception as exc:
        sending.give_up(import_id, exc)
        raise
    finally:
        calls.close()


class _Run:
    """One walk over a list of PENDING batches, a few in flight at once."""

    def __init__(
        self,
        signal_import: SignalImport,
        calls: _Calls,
        on_progress: Callable[[], None] | None,
    ) -> None:
        self.signal_import = signal_import
        self.import_id = signal_import.pk
        self.calls = calls
        self.on_progress = on_progress
        self.in_flight: deque[_InFlight] = deque()
        self.polled_at = time.monotonic()
        self.refreshed_at = time.monotonic()

    def send(self, pending: list[ImportBatch]) -> None:
        events = iter_events(self.signal_import, from_signal=pending[0].first_signal)
        try:
            for batch in pending:
                if self.calls.stop.is_set():
                    break
                taken = _take_events(events, batch)
                if len(taken) != batch.size:
                    _write(
                        batch,
                        [NOT_SENT] * batch.size,
                        from_states=(BatchState.PENDING,),
                        state=BatchState.FAILED,
                        error=f"The stored file no longer gives this batch's {batch.size} "
                        f"signals (found {len(taken)}); nothing was sent.",
                    )
                    continue
                if not self._start(batch, taken):
                    break
                while len(self.in_flight) >= BATCHES_IN_FLIGHT:
                    self._settle(self.in_flight.popleft())
        finally:
            events.close()
            while self.in_flight:
                self._settle(self.in_flight.popleft())

    def _start(self, batch: ImportBatch, events: list[dict[str, Any]]) -> bool:
        """Claim the batch and hand its unsent events to the pool; False when the import
        stopped (nothing claimed)."""
        from signals_app.services import sending

        with transaction.atomic():
            if not sending.still_sending_locked(self.import_id):
                self.calls.stop.set()
                return False
            claimed = ImportBatch.objects.filter(pk=batch.pk, state=BatchState.PENDING).update(
                state=BatchState.IN_FLIGHT,
                attempts=batch.attempts + 1,
                started_at=timezone.now(),
            )
        if not claimed:
            return True  # ops changed it meanwhile: not ours to send
        outcomes = list(batch.event_outcomes.ljust(batch.size, NOT_SENT))
        flight = _InFlight(batch, outcomes, started=time.monotonic())
        for position, event in enumerate(events):
            if outcomes[position] == NOT_SENT:
                flight.calls[position] = self.calls.submit(event)
        self.in_flight.append(flight)
        return True

    def _settle(self, flight: _InFlight) -> None:
        """Wait for the batch's calls (looking at the import meanwhile), then write its
        outcome."""
        waiting = set(flight.calls.values())
        while waiting:
            _, waiting = futures.wait(waiting, timeout=_POLL_SECONDS)
            self._poll()
        errors: dict[str, int] = {}
        statuses: list[int] = []
        for position, call in flight.calls.items():
            result = call.result()
            if result is None:
                continue  # not sent: the run stopped first
            letter = {Outcome.SENT: SENT, Outcome.UNKNOWN: UNKNOWN}.get(result.outcome, FAILED)
            flight.outcomes[position] = letter
            if result.http_status is not None:
                statuses.append(result.http_status)
            if letter != SENT:
                errors[result.error] = errors.get(result.error, 0) + 1
        outcomes = flight.outcomes
        if NOT_SENT in outcomes:
            state = BatchState.PENDING  # cut short by a cancel: the rest waits, recorded
        elif UNKNOWN in outcomes:
            state = BatchState.UNKNOWN
        elif FAILED in outcomes:
            state = BatchState.FAILED
        else:
            state = BatchState.SENT
        _write(
            flight.batch,
            outcomes,
            state=state,
            error=_describe(errors, outcomes),
            http_status=max(statuses) if statuses else None,
            duration_ms=int((time.monotonic() - flight.started) * 1000),
        )
        if self.on_progress is not None and SENT in outcomes:
            self.on_progress()

    def _poll(self) -> None:
        from signals_app.services import sending

        now = time.monotonic()
        if now - self.refreshed_at >= 1.0:
            self.refreshed_at = now
            sending.update_counters(import_id=self.import_id)  # also the run's heartbeat
        if now - self.polled_at < _POLL_SECONDS:
            return
        self.polled_at = now
        status, cancel = sending.run_state(self.import_id)
        if cancel or status != ImportStatus.SENDING:
            self.calls.stop.set()


def _take_events(
    events: Iterator[tuple[int, dict[str, Any]]], batch: ImportBatch
) -> list[dict[str, Any]]:
    taken: list[dict[str, Any]] = []
    for index, event in events:
        if index >= batch.first_signal:
            taken.append(event)
        if index >= batch.last_signal:
            break
    return taken


def _write(
    batch: ImportBatch,
    outcomes: list[str],
    *,
    state: str,
    error: str = "",
    http_status: int | None = None,
    duration_ms: int | None = None,
    from_states: tuple[str, ...] = (BatchState.IN_FLIGHT,),
) -> None:
    ImportBatch.objects.filter(pk=batch.pk, state__in=from_states).update(
        state=state,
        event_outcomes="".join(outcomes),
        events_sent=outcomes.count(SENT),
        events_failed=outcomes.count(FAILED),
        events_unknown=outcomes.count(UNKNOWN),
        error=error,
        http_status=http_status,
        finished_at=timezone.now(),
        duration_ms=duration_ms,
    )


def _describe(errors: dict[str, int], outcomes: list[str]) -> str:
    if not errors:
        return ""
    failed, unknown = outcomes.count(FAILED), outcomes.count(UNKNOWN)
    parts = []
    if failed:
        parts.append(f"{failed} of {len(outcomes)} events refused")
    if unknown:
        parts.append(f"{unknown} of unknown outcome (not resent by themselves)")
    shown = "; ".join(f"{text} ({n}×)" for text, n in sorted(errors.items(), key=lambda e: -e[1]))
    return f"{', '.join(parts)}: {shown}"[:2000]


_ORPHAN_ERROR = (
    "The worker stopped while these events were being sent: Attentive may hold some of "
    "them. They are not resent by themselves; check them, then resend the batch."
)


def settle_orphans(import_id: int) -> int:
    """The lane's IN_FLIGHT batches of a run that is gone (the caller holds the lane):
    every event not known to be sent or refused becomes of unknown outcome."""
    stale = list(
        ImportBatch.objects.filter(
            signal_import_id=import_id, lane=ATTENTIVE_LANE, state=BatchState.IN_FLIGHT
        )
    )
    for batch in stale:
        outcomes = [
            UNKNOWN if letter == NOT_SENT else letter
            for letter in batch.event_outcomes.ljust(batch.size, NOT_SENT)
        ]
        _write(batch, outcomes, state=BatchState.UNKNOWN, error=_ORPHAN_ERROR)
    return len(stale)


def reopen_for_resend(batch: ImportBatch) -> None:
    """Ops' resend: the batch's refused and unknown events go again, its sent ones never
    (the caller saves the batch)."""
    outcomes = batch.event_outcomes.ljust(batch.size, NOT_SENT)
    batch.event_outcomes = "".join(NOT_SENT if c in (FAILED, UNKNOWN) else c for c in outcomes)
    batch.events_failed = batch.events_unknown = 0
