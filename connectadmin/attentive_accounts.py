"""What the Attentive accounts' settings page does beyond saving a form: test the
connection with the stored key. Recorded in the audit trail, never with the key."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, ClassVar, Final

import httpx

from connectadmin.models import AttentiveAccount
from connectadmin.team import ConnectionTest, tls_failure
from signals_app.models import audit

# `__typename` on the root query is part of the GraphQL specification: every GraphQL server
# answers it, and it creates no event and changes nothing. Attentive checks the Bearer
# token before it looks at the query, so the answer says whether the key is accepted.
PING_QUERY: Final = "query { __typename }"
CONNECT_TIMEOUT: Final = 5.0
READ_TIMEOUT: Final = 10.0
# Error codes and words by which a GraphQL server refuses the caller in an answer of 200
# (or 400), and those by which it refuses the query itself, which it reads only once the
# token has passed.
AUTH_CODES: Final = frozenset(
    {"UNAUTHENTICATED", "UNAUTHORIZED", "FORBIDDEN", "HTTP_401", "HTTP_403"}
)
AUTH_WORDS: Final = ("unauthori", "unauthenticated", "forbidden", "token", "api key")
QUERY_CODES: Final = frozenset(
    {"GRAPHQL_VALIDATION_FAILED", "GRAPHQL_PARSE_FAILED", "BAD_USER_INPUT", "VALIDATION_ERROR"}
)
QUERY_WORDS: Final = ("__typename", "cannot query", "syntax error", "introspection", "validation")

OUTCOME_WORDS: Final[dict[str, str]] = {
    "ok": "Key accepted",
    "wrong_key": "Key refused",
    "unreachable": "Unreachable",
    "rate_limited": "Rate limited",
    "tls": "TLS problem",
    "unexpected": "Unexpected answer",
}


@dataclass(frozen=True, slots=True)
class AttentiveConnectionTest(ConnectionTest):
    """As a Connect account's test, in the words of an Attentive key."""

    WORDS: ClassVar[dict[str, str]] = OUTCOME_WORDS


def _host_and_port(endpoint: str) -> str:
    url = httpx.URL(endpoint)
    port = url.port or (443 if url.scheme == "https" else 80)
    return f"{url.host}:{port}"


def attentive_account_test_connection(
    *, account: AttentiveAccount, actor: Any = None
) -> AttentiveConnectionTest:
    """One `query { __typename }` with the stored key (it creates no event)."""
    endpoint = account.graphql_endpoint
    started = time.perf_counter()

    def took() -> int:
        return round((time.perf_counter() - started) * 1000)

    where = _host_and_port(endpoint)
    result: AttentiveConnectionTest
    try:
        with httpx.Client(
            timeout=httpx.Timeout(READ_TIMEOUT, connect=CONNECT_TIMEOUT), follow_redirects=False
        ) as client:
            response = client.post(
                endpoint,
                json={"query": PING_QUERY},
                headers={
                    "Authorization": f"Bearer {account.api_key}",
                    "Content-Type": "application/json",
                },
            )
    except httpx.ConnectTimeout:
        result = AttentiveConnectionTest(
            "unreachable", f"No connection to {where} within {CONNECT_TIMEOUT:g} s.", took()
        )
    except httpx.TimeoutException:
        result = AttentiveConnectionTest(
            "unreachable",
            f"{where} took the connection but gave no answer within {READ_TIMEOUT:g} s.",
            took(),
        )
    except (httpx.HTTPError, OSError) as exc:
        if tls_failure(exc):
            result = AttentiveConnectionTest(
                "tls", f"The secure connection to {where} failed ({exc}).", took()
            )
        else:
            result = AttentiveConnectionTest(
                "unreachable",
                f"Nothing answers at {where} ({exc}): check the endpoint, or whether the "
                "sandbox is running.",
                took(),
            )
    else:
        result = _read_answer(response, took())
    audit(
        action="account.attentive_tested",
        actor=actor,
        obj=account,
        name=account.name,
        outcome=result.outcome,
        http_status=result.http_status,
        elapsed_ms=result.elapsed_ms,
    )
    return result


def _errors(payload: Any) -> list[dict[str, Any]]:
    errors = payload.get("errors") if isinstance(payload, dict) else None
    if not isinstance(errors, list):
        return []
    return [e if isinstance(e, dict) else {"message": str(e)} for e in errors]


def _is_about(error: dict[str, Any], codes: frozenset[str], words: tuple[str, ...]) -> bool:
    extensions = error.get("extensions")
    code = str(extensions.get("code", "")) if isinstance(extensions, dict) else ""
    message = str(error.get("message", "")).lower()
    return code.upper() in codes or any(word in message for word in words)


def _read_answer(response: httpx.Response, elapsed_ms: int) -> AttentiveConnectionTest:
    status = response.status_code
    if status in (401, 403):
        return AttentiveConnectionTest(
            "wrong_key",
            f"Attentive refused the API key (HTTP {status}): paste the key again, or make a "
            "new one in Attentive.",
            elapsed_ms,
            status,
        )
    if status == 429:
        wait = response.headers.get("Retry-After")
        return AttentiveConnectionTest(
            "rate_limited",
            "Attentive took the key but answered “too many requests” (HTTP 429): this key is "
            "at its rate limit right now, probably because a send is using it. "
            + (f"Try again in {wait} s." if wait else "Try again in a moment."),
            elapsed_ms,
            status,
        )
    try:
        payload = response.json()
    except ValueError:
        payload = None
    errors = _errors(payload)
    if status in (200, 400) and errors:
        message = str(errors[0].get("message", ""))[:200]
        if any(_is_about(error, AUTH_CODES, AUTH_WORDS) for error in errors):
            return AttentiveConnectionTest(
                "wrong_key", f"Attentive refused the API key: {message}", elapsed_ms, status
            )
        if all(_is_about(error, QUERY_CODES, QUERY_WORDS) for error in errors):
            # The token passed (it is checked before the query is read); only the test
            # query itself was refused, which says nothing against sending events.
            return AttentiveConnectionTest(
                "ok",
                "Attentive accepted the API key. It refused the test query itself, which does "
                f"not matter for sending events: {message}",
                elapsed_ms,
                status,
            )
        return AttentiveConnectionTest(
            "unexpected",
            f"The endpoint answered HTTP {status} with an error: {message}",
            elapsed_ms,
            status,
        )
    data = payload.get("data") if isinstance(payload, dict) else None
    if status == 200 and isinstance(data, dict) and "__typename" in data:
        return AttentiveConnectionTest(
            "ok",
            "Attentive answered and accepted the API key. No event was created.",
            elapsed_ms,
            status,
        )
    shown = response.text[:200].strip() or "an empty body"
    return AttentiveConnectionTest(
        "unexpected",
        f"The endpoint answered HTTP {status}, not as Attentive would: {shown}",
        elapsed_ms,
        status,
    )
