"""A small HTTP/1.1 server on asyncio streams: keep-alive, Content-Length bodies.

Written by hand rather than taken from uvicorn/h11 because the fault switches need
control of the connection itself: answer nothing and hang, or drop the TCP connection
after the request was read and processed. It is also fast enough for the benchmark
(the body read is one readexactly; no chunked requests, answered 411).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import traceback
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import parse_qsl, urlsplit

import orjson

HEADER_LIMIT = 65536
REASONS = {
    100: "Continue", 200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found",
    405: "Method Not Allowed", 411: "Length Required", 413: "Content Too Large",
    429: "Too Many Requests", 431: "Request Header Fields Too Large",
    500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable",
}  # fmt: skip


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: list[tuple[str, str]] = field(default_factory=list)
    # Faults: wait before answering; or, instead of answering, hang / drop the connection.
    delay: float = 0.0
    action: Literal["hang", "drop"] | None = None
    hang_seconds: float = 0.0


def json_response(status: int, payload: object, **kwargs: object) -> Response:
    return Response(status, orjson.dumps(payload), **kwargs)  # type: ignore[arg-type]


def error_response(status: int, message: str, **kwargs: object) -> Response:
    """HTTP-level errors carry a GraphQL-shaped body, so a client reading either the
    status or the `errors` array sees the failure."""
    return json_response(
        status, {"errors": [{"message": message, "extensions": {"code": f"HTTP_{status}"}}]},
        **kwargs,
    )  # fmt: skip


Handler = Callable[[Request], Awaitable[Response]]


class InFlight:
    """Requests of each API path being served right now (from the whole request read to
    the answer written, latency and hangs included) and the most seen at once since the
    last reset: what a client's sending window looks like from the server's side."""

    def __init__(self) -> None:
        self.now: Counter[str] = Counter()
        self.peak: Counter[str] = Counter()

    def enter(self, path: str) -> None:
        self.now[path] += 1
        self.peak[path] = max(self.peak[path], self.now[path])

    def leave(self, path: str) -> None:
        self.now[path] -= 1

    def reset(self) -> None:
        self.peak = Counter({path: n for path, n in self.now.items() if n})

    def as_dict(self) -> dict[str, dict[str, int]]:
        paths = sorted(set(self.now) | set(self.peak))
        return {path: {"now": self.now[path], "peak": self.peak[path]} for path in paths}


class HTTPServer:
    def __init__(self, handler: Handler, *, max_body_bytes: int) -> None:
        self.handler = handler
        self.max_body_bytes = max_body_bytes
        self.in_flight = InFlight()
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    async def start(self, host: str, port: int) -> int:
        self._server = await asyncio.start_server(
            self._connection, host, port, limit=HEADER_LIMIT, backlog=512
        )
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        for task in list(self._connections):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            await self._serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._connections.discard(task)
            if not writer.transport.is_closing():
                writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                return  # the client closed between requests
            except asyncio.LimitOverrunError:
                await self._send(writer, error_response(431, "request head too large"), False)
                return
            parsed = _parse_head(head)
            if parsed is None:
                await self._send(writer, error_response(400, "malformed HTTP request"), False)
                return
            method, target, version, headers = parsed
            keep_alive = _keep_alive(version, headers)
            if "chunked" in headers.get("transfer-encoding", "").lower():
                await self._send(writer, error_response(411, "send a Content-Length"), False)
                return
            try:
                length = int(headers.get("content-length", "0"))
                if length < 0:
                    raise ValueError
            except ValueError:
                await self._send(writer, error_response(400, "bad Content-Length"), False)
                return
            if length > self.max_body_bytes:
                # The body is not read, so the connection cannot be reused.
                message = f"request body of {length} bytes is over the {self.max_body_bytes} cap"
                await self._send(writer, error_response(413, message), False)
                return
            if length and headers.get("expect", "").lower() == "100-continue":
                writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            body = await reader.readexactly(length) if length else b""
            split = urlsplit(target)
            request = Request(method, split.path, dict(parse_qsl(split.query)), headers, body)
            counted = "" if split.path.startswith("/_") else split.path.rstrip("/") or "/"
            if counted:
                self.in_flight.enter(counted)
            try:
                if not await self._answer(writer, request, keep_alive):
                    return
            finally:
                if counted:
                    self.in_flight.leave(counted)
            if not keep_alive:
                return

    async def _answer(
        self, writer: asyncio.StreamWriter, request: Request, keep_alive: bool
    ) -> bool:
        """Answer one request; False when the connection was dropped instead."""
        try:
            response = await self.handler(request)
        except Exception:
            traceback.print_exc(file=sys.stderr)
            response = error_response(500, "sandbox internal error (see its log)")
        if response.delay:
            await asyncio.sleep(response.delay)
        if response.action == "drop":
            writer.transport.abort()
            return False
        if response.action == "hang":
            await asyncio.sleep(response.hang_seconds)
            writer.transport.abort()
            return False
        await self._send(writer, response, keep_alive)
        return True

    @staticmethod
    async def _send(writer: asyncio.StreamWriter, response: Response, keep_alive: bool) -> None:
        reason = REASONS.get(response.status, "Status")
        lines = [
            f"HTTP/1.1 {response.status} {reason}",
            f"Content-Type: {response.content_type}",
            f"Content-Length: {len(response.body)}",
            f"Connection: {'keep-alive' if keep_alive else 'close'}",
        ]
        lines.extend(f"{name}: {value}" for name, value in response.headers)
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + response.body)
        await writer.drain()


def _parse_head(head: bytes) -> tuple[str, str, str, dict[str, str]] | None:
    try:
        text = head.decode("latin-1")
        request_line, *header_lines = text[:-4].split("\r\n")
        method, target, version = request_line.split(" ")
    except ValueError:
        return None
    if not version.startswith("HTTP/1.") or not target.startswith("/"):
        return None
    headers: dict[str, str] = {}
    for line in header_lines:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            return None
        headers[name.lower()] = value.strip()
    return method.upper(), target, version, headers


def _keep_alive(version: str, headers: dict[str, str]) -> bool:
    connection = headers.get("connection", "").lower()
    if version == "HTTP/1.0":
        return connection == "keep-alive"
    return connection != "close"
