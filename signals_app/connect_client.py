"""A small typed client for Connect's `createSignals` mutation (SPEC §6).

It never raises for what Connect (or the network) answers: every call ends in a
`SendResult` whose `outcome` tells the ledger what to do with the batch:

- SENT: HTTP 200, no `errors`, one `signalId` per signal sent.
- FAILED: certainly not taken — a GraphQL `errors` array, a 4xx, an unusable endpoint.
- RETRYABLE: certainly not taken and worth trying again — the connection was never made
  (refused, connect timeout, no pooled connection), HTTP 429, 502, 503 (`retry_after` set
  when the answer said how long to wait).
- UNKNOWN: the request may have been taken without the answer reaching us — read timeout,
  connection dropped after sending, HTTP 500, 504, an unreadable 200. Never resent by
  itself: resending could duplicate every signal of the batch.
"""

from __future__ import annotations

import email.utils
import enum
import time
from dataclasses import dataclass, field
from datetime import UTC
from types import TracebackType
from typing import Any, Final, Self

import httpx
import msgspec
import orjson

CREATE_SIGNALS: Final = (
    "mutation CreateSignals($signals: [SignalInput!]!) "
    "{ createSignals(signals: $signals) { signalIds } }"
)
MAX_BATCH: Final = 500  # createSignals takes at most 500 signals per mutation
_RETRYABLE_STATUS: Final = frozenset({429, 502, 503})
_ERROR_TEXT_MAX: Final = 2000


class Outcome(enum.StrEnum):
    SENT = "sent"
    FAILED = "failed"
    RETRYABLE = "retryable"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class SendResult:
    outcome: Outcome
    http_status: int | None = None
    signal_ids: list[str] = field(default_factory=list)
    error: str = ""
    retry_after: float | None = None  # seconds Connect asked us to wait (429/503)


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds. `read` is generous: a 500-signal mutation may take a while to be stored,
    and a read timeout makes the batch's outcome unknown (ops must then decide)."""

    connect: float = 5.0
    read: float = 60.0
    write: float = 30.0
    pool: float = 5.0

    def as_httpx(self) -> httpx.Timeout:
        return httpx.Timeout(connect=self.connect, read=self.read, write=self.write, pool=self.pool)


_encode = msgspec.json.Encoder().encode


@dataclass(frozen=True, slots=True)
class NoAnswer:
    """A call that got no HTTP answer, and what that says of the mutation."""

    outcome: Outcome
    error: str


class GraphQLClient:
    """One kept-alive httpx client posting GraphQL mutations to one endpoint with one API
    key (Connect's, Attentive's): `post` gives the answer, or the verdict of a call that got
    none. A vendor's client says how its key is sent (`key_headers`) and how long a call
    may take (`DEFAULT_TIMEOUTS`)."""

    DEFAULT_TIMEOUTS: Timeouts = Timeouts()

    def __init__(
        self,
        *,
        endpoint: str,
        api_key: str,
        timeouts: Timeouts | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.endpoint = endpoint
        self._http = httpx.Client(
            headers={**self.key_headers(api_key), "Content-Type": "application/json"},
            timeout=(timeouts or self.DEFAULT_TIMEOUTS).as_httpx(),
            transport=transport,
            # A redirect would resend the body somewhere else: treat it as a refusal.
            follow_redirects=False,
            event_hooks={"request": [self._before_sending]},
        )

    @staticmethod
    def key_headers(api_key: str) -> dict[str, str]:
        raise NotImplementedError

    def _before_sending(self, request: httpx.Request) -> None:
        """Called with each request just before it leaves (built, before the connection is
        taken); an exception raised here leaves `post` as it is, nothing sent."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def post(self, body: bytes) -> httpx.Response | NoAnswer:
        try:
            return self._http.post(self.endpoint, content=body)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            # No connection was made, so nothing was sent.
            return NoAnswer(Outcome.RETRYABLE, _describe(exc))
        except (httpx.ReadTimeout, httpx.WriteTimeout, httpx.NetworkError) as exc:
            # ReadError, WriteError, CloseError and timeouts after the connection was
            # made: some or all of the body may have arrived.
            return NoAnswer(Outcome.UNKNOWN, _describe(exc))
        except httpx.RemoteProtocolError as exc:
            # Among others, the server closed the connection without an answer.
            return NoAnswer(Outcome.UNKNOWN, _describe(exc))
        except httpx.HTTPError as exc:
            # Unsupported protocol, invalid URL, proxy errors: nothing left us.
            return NoAnswer(Outcome.FAILED, _describe(exc))


class ConnectClient(GraphQLClient):
    """One client per send run, so batches reuse a keep-alive connection."""

    @staticmethod
    def key_headers(api_key: str) -> dict[str, str]:
        return {"x-api-key": api_key}

    @staticmethod
    def body(signals: list[dict[str, Any]]) -> bytes:
        """The createSignals request for these signals, as posted (JSON bytes). A value may
        be msgspec.Raw: JSON text taken from the file, written as it is."""
        return _encode({"query": CREATE_SIGNALS, "variables": {"signals": signals}})

    def create_signals(
        self, signals: list[dict[str, Any]], *, body: bytes | None = None
    ) -> SendResult:
        """Post the signals; `body` is their request already serialised by `body()` (a
        sender may prepare it ahead, off the critical path), else it is built here."""
        if len(signals) > MAX_BATCH:
            return SendResult(
                Outcome.FAILED, error=f"{len(signals)} signals: more than {MAX_BATCH} per call"
            )
        if body is None:
            body = self.body(signals)
        response = self.post(body)
        if isinstance(response, NoAnswer):
            return SendResult(response.outcome, error=response.error)
        return classify(response, expected=len(signals))


@dataclass(frozen=True, slots=True)
class Answer:
    """A GraphQL mutation's HTTP answer as far as any mutation reads it alike: a verdict
    (`outcome` set), or the `data` of a 200 without errors for the caller to read."""

    outcome: Outcome | None
    status: int
    error: str = ""
    retry_after: float | None = None
    data: Any = None


def read_answer(response: httpx.Response) -> Answer:
    """What the status and the body say, whatever the mutation (Connect's, Attentive's)."""
    status = response.status_code
    if status in _RETRYABLE_STATUS:
        return Answer(
            Outcome.RETRYABLE,
            status,
            error=_http_error(response),
            retry_after=parse_retry_after(response.headers.get("Retry-After")),
        )
    if status >= 500 and status not in (501, 505):
        # 500, 504 and other server or gateway failures: the mutation may have been
        # applied before it went wrong. (501 and 505 refuse the request itself.)
        return Answer(Outcome.UNKNOWN, status, error=_http_error(response))
    if status != 200:
        return Answer(Outcome.FAILED, status, error=_http_error(response))
    try:
        payload = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return Answer(Outcome.UNKNOWN, status, error="HTTP 200 with a body that is not JSON")
    if not isinstance(payload, dict):
        return Answer(Outcome.UNKNOWN, status, error="HTTP 200 with an unexpected body")
    errors = payload.get("errors")
    if errors:
        # SPEC §6: a 200 with an errors array is a failure, never success.
        return Answer(Outcome.FAILED, status, error=graphql_errors_text(errors))
    return Answer(None, status, data=payload.get("data"))


def classify(response: httpx.Response, *, expected: int) -> SendResult:
    """The outcome of one createSignals answer carrying `expected` signals."""
    answer = read_answer(response)
    if answer.outcome is not None:
        return SendResult(
            answer.outcome, answer.status, error=answer.error, retry_after=answer.retry_after
        )
    status, data = answer.status, answer.data
    created = data.get("createSignals") if isinstance(data, dict) else None
    ids = created.get("signalIds") if isinstance(created, dict) else None
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        return SendResult(Outcome.UNKNOWN, status, error="HTTP 200 without a list of signalIds")
    if len(ids) != expected:
        # Connect took something, but not what we can account for per signal: resending
        # could duplicate, so ops decide.
        return SendResult(
            Outcome.UNKNOWN,
            status,
            signal_ids=ids,
            error=f"Connect returned {len(ids)} signalIds for {expected} signals",
        )
    return SendResult(Outcome.SENT, status, signal_ids=ids)


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP-date."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        current = now if now is not None else time.time()
        return max(0.0, when.timestamp() - current)
    if seconds != seconds or seconds in (float("inf"), float("-inf")):  # NaN, inf
        return None
    return max(0.0, seconds)


def graphql_errors_text(errors: Any) -> str:
    """The GraphQL errors as one line per error: `CODE field: message`."""
    if not isinstance(errors, list):
        return _clip(f"GraphQL errors: {errors!r}")
    lines = []
    for error in errors:
        if not isinstance(error, dict):
            lines.append(repr(error))
            continue
        extensions = error.get("extensions")
        extensions = extensions if isinstance(extensions, dict) else {}
        prefix = " ".join(
            str(part) for part in (extensions.get("code"), extensions.get("field")) if part
        )
        message = str(error.get("message", "(no message)"))
        lines.append(f"{prefix}: {message}" if prefix else message)
    return _clip("\n".join(lines))


def _http_error(response: httpx.Response) -> str:
    text = f"HTTP {response.status_code} {response.reason_phrase}".rstrip()
    try:
        payload = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        body = response.content[:300].decode("utf-8", "replace").strip()
        return _clip(f"{text}: {body}" if body else text)
    if isinstance(payload, dict) and payload.get("errors"):
        return _clip(f"{text}: {graphql_errors_text(payload['errors'])}")
    return text


def _describe(exc: httpx.HTTPError) -> str:
    detail = str(exc) or "no detail"
    return _clip(f"{type(exc).__name__}: {detail}")


def _clip(text: str) -> str:
    return text if len(text) <= _ERROR_TEXT_MAX else text[: _ERROR_TEXT_MAX - 1] + "…"
