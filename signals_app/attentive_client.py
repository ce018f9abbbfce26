"""A small typed client for Attentive's `createCustomEvent` mutation (SPEC §6, Attentive).

One event per call (the API takes no batches), `Authorization: Bearer <API key>`, over
one kept-alive connection. Like the Connect client it never raises for what Attentive
(or the network) answers: every call ends in an `EventResult` whose `outcome` has the
same meaning as Connect's (signals_app.connect_client.Outcome):

- SENT: HTTP 200, `data.createCustomEvent` present, no `errors`.
- FAILED: certainly not taken: a 200 with a GraphQL `errors` array (a failure, never a
  success), 400, 401, 403, 404, 422 and other 4xx, an unusable endpoint.
- RETRYABLE: certainly not taken and worth trying again: the connection was never made,
  HTTP 429 (Attentive's rate limit), 502, 503; `retry_after` when the answer said how long
  to wait (seconds or an HTTP date).
- UNKNOWN: the event may have been taken without the answer reaching us: read timeout,
  connection dropped after sending, HTTP 500, 504, an unreadable 200. Never resent by
  itself; a resend with the same `externalEventId` (`event_id`) lets Attentive tell.

Pacing is not this client's business: callers take a permit from
connectadmin.ratelimit before each call, and pause the key on a 429 with Retry-After.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any, Final

import httpx
import msgspec

from signals_app.connect_client import GraphQLClient, NoAnswer, Outcome, Timeouts, read_answer

__all__ = [
    "CREATE_CUSTOM_EVENT",
    "EVENT_ID_NAMESPACE",
    "AttentiveClient",
    "EventResult",
    "Outcome",
    "Timeouts",
    "classify",
    "event_id",
]

# The vendor's own example mutation (seeds/004_7fb2253cbedae88d.txt), on one line: the
# operation, its variable and the fields asked back, as Attentive documents them.
CREATE_CUSTOM_EVENT: Final = (
    "mutation createCustom($customEventInput: CreateCustomEventInput!) { "
    "createCustomEvent(input: $customEventInput) { externalEventId occurredAt properties "
    "type user { email phone externalIdentifiers { clientUserId customIdentifiers "
    "{ name value } } } } }"
)

# The namespace of every externalEventId connectadmin makes (UUID v5, RFC 9562): a fixed
# constant, chosen once at random. Never change it: the ids of events already sent would
# change with it, and a resend would then double them at Attentive.
EVENT_ID_NAMESPACE: Final = uuid.UUID("5f0c5b7e-3d0a-4f8e-9c61-2a7d4b1e8c93")


def event_id(
    import_public_id: uuid.UUID | str, signal_index: int, destination_id: int | str
) -> str:
    """The externalEventId of one signal of one import sent to one Attentive account: the
    same inputs always give the same id, so a retry or a resend never doubles an event,
    while the same signal sent to two accounts (or imported twice) gets two ids."""
    name = f"{import_public_id}/{signal_index}/{destination_id}"
    return str(uuid.uuid5(EVENT_ID_NAMESPACE, name))


@dataclass(frozen=True, slots=True)
class EventResult:
    outcome: Outcome
    http_status: int | None = None
    external_event_id: str | None = None  # as Attentive echoed it back (SENT)
    error: str = ""
    retry_after: float | None = None  # seconds Attentive asked us to wait (429/503)


_encode = msgspec.json.Encoder().encode


class LeftTooLate(Exception):
    """The request would have left after its `send_by`: nothing was sent."""


class AttentiveClient(GraphQLClient):
    """One client per sender thread, so its calls reuse one keep-alive connection. Not
    shared between threads."""

    # One event is small and quick to store: 30 s without an answer is long enough to
    # call its outcome unknown.
    DEFAULT_TIMEOUTS = Timeouts(read=30.0)
    _send_by: float | None = None  # of the call being made (create_custom_event)

    @staticmethod
    def key_headers(api_key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {api_key}"}

    @staticmethod
    def body(event: dict[str, Any]) -> bytes:
        """The request for this CreateCustomEventInput, as posted (JSON bytes)."""
        return _encode({"query": CREATE_CUSTOM_EVENT, "variables": {"customEventInput": event}})

    def create_custom_event(
        self, event: dict[str, Any], *, body: bytes | None = None, send_by: float | None = None
    ) -> EventResult:
        """Post one event (`type`, `user`, `properties`, `externalEventId`, `occurredAt`);
        `body` is its request already serialised by `body()`, else it is built here.
        `send_by`, a time.monotonic() instant: raises LeftTooLate, nothing sent, when the
        request is ready to leave after it (the rate limit's permit is stale by then)."""
        if body is None:
            body = self.body(event)
        self._send_by = send_by
        try:
            response = self.post(body)
        finally:
            self._send_by = None
        if isinstance(response, NoAnswer):
            return EventResult(response.outcome, error=response.error)
        return classify(response)

    def _before_sending(self, request: httpx.Request) -> None:
        # httpx calls it before taking a connection: a request that opens one (a thread's
        # first, or after Attentive closed the kept-alive one) meets the handshake after
        # this check, a round trip or two more on the internet (none on loopback).
        if self._send_by is not None and time.monotonic() > self._send_by:
            raise LeftTooLate(f"ready {time.monotonic() - self._send_by:.3f} s after its moment")


def classify(response: httpx.Response) -> EventResult:
    """The outcome of one createCustomEvent answer."""
    answer = read_answer(response)
    if answer.outcome is not None:
        return EventResult(
            answer.outcome, answer.status, error=answer.error, retry_after=answer.retry_after
        )
    status, data = answer.status, answer.data
    created = data.get("createCustomEvent") if isinstance(data, dict) else None
    if not isinstance(created, dict):
        return EventResult(Outcome.UNKNOWN, status, error="HTTP 200 without createCustomEvent")
    echoed = created.get("externalEventId")
    return EventResult(
        Outcome.SENT, status, external_event_id=echoed if isinstance(echoed, str) else None
    )
