"""The sandbox process: wires the store, the GraphQL endpoints, exports, SFTP, faults and
the control/inspect endpoints behind one HTTP handler."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import orjson

from sandbox.accounts import Account, AccountError, make_account
from sandbox.clock import Clock, iso_ts, parse_iso
from sandbox.exports import ExportService, ExportSettings
from sandbox.faults import AFTER_STORE, REJECTING, FaultConfig, FaultConfigError, Faults
from sandbox.graphql_api import (
    AttentiveContext,
    ConnectContext,
    DocumentCache,
    attentive_schema,
    connect_schema,
    execute,
)
from sandbox.http import HTTPServer, Request, Response, error_response, json_response
from sandbox.sftp import SFTPService, check_public_key
from sandbox.store import RequestRecord, SignalRow, Store, attentive_rate, summary

Endpoint = Literal["connect", "attentive"]


@dataclass
class Settings:
    data: Path
    host: str = "127.0.0.1"
    http_port: int = 8765
    sftp_port: int = 2222
    max_body_bytes: int = 16 * 1024 * 1024
    attentive_rate_limit: int = 150
    accounts: list[Account] = field(default_factory=list)
    attentive_keys: list[str] = field(default_factory=list)
    faults: FaultConfig = field(default_factory=FaultConfig)
    exports: ExportSettings = field(default_factory=ExportSettings)
    clock_offset: float = 0.0


class BadControlRequest(ValueError):
    pass


class Sandbox:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        data = settings.data
        data.mkdir(parents=True, exist_ok=True)
        self.store = Store(data / "sandbox.sqlite3")
        self.clock = Clock(settings.clock_offset)
        self.faults = Faults(settings.faults)
        now = iso_ts(self.clock.time())
        for account in settings.accounts:
            self._save_account(account)
        self.accounts: dict[str, Account] = {
            row["api_key"]: Account(row["api_key"], row["tier"], row["email"])
            for row in self.store.accounts()
        }
        for key in settings.attentive_keys:
            self.store.add_attentive_key(key, now)
        self.attentive_keys = set(self.store.attentive_keys())
        self.exports = ExportService(
            store=self.store,
            clock=self.clock,
            faults=self.faults,
            settings=settings.exports,
            sftp_root=data / "sftp",
            tmp_dir=data / "tmp",
            accounts=self.accounts,
        )
        self.sftp = SFTPService(
            host=settings.host,
            port=settings.sftp_port,
            root=data / "sftp",
            host_key_path=data / "ssh_host_ed25519_key",
            faults=self.faults,
            lookup_key=self.store.public_key,
        )
        self.connect_schema = connect_schema()
        self.attentive_schema = attentive_schema()
        self.connect_documents = DocumentCache(self.connect_schema)
        self.attentive_documents = DocumentCache(self.attentive_schema)
        self.http = HTTPServer(self.handle, max_body_bytes=settings.max_body_bytes)
        self._rate: dict[str, tuple[int, int]] = {}
        self._background: list[asyncio.Task[None]] = []

    def _save_account(self, account: Account) -> None:
        self.store.upsert_account(
            account.api_key,
            account.tier,
            account.email,
            account.subscription_id,
            account.dataset_id,
            iso_ts(self.clock.time()),
        )

    # Life cycle ----------------------------------------------------------------------
    async def start(self) -> dict[str, Any]:
        self.settings.http_port = await self.http.start(self.settings.host, self.settings.http_port)
        await self.sftp.start()
        self.settings.sftp_port = self.sftp.port
        self.exports.resume()
        self._background.append(asyncio.create_task(self.exports.sweep_forever()))
        self.exports.sweep()
        ready = self.status()
        tmp = self.settings.data / "ports.json.tmp"
        tmp.write_bytes(orjson.dumps(ready, option=orjson.OPT_INDENT_2))
        os.replace(tmp, self.settings.data / "ports.json")
        return ready

    async def stop(self) -> None:
        for task in self._background:
            task.cancel()
        await self.http.close()
        await self.sftp.close()
        await self.exports.close()
        self.store.close()

    def status(self) -> dict[str, Any]:
        host = self.settings.host
        return {
            "sandbox": "ready",
            "pid": os.getpid(),
            "host": host,
            "http_port": self.settings.http_port,
            "sftp_port": self.settings.sftp_port,
            "connect_url": f"http://{host}:{self.settings.http_port}/graphql",
            "attentive_url": f"http://{host}:{self.settings.http_port}/v1/graphql",
            "data": str(self.settings.data),
            **self.sftp.host_key_info(),
        }

    # HTTP entry point ----------------------------------------------------------------
    async def handle(self, request: Request) -> Response:
        path, method = request.path.rstrip("/") or "/", request.method
        if path in ("/graphql", "/v1/graphql"):
            if method != "POST":
                return error_response(405, "use POST", headers=[("Allow", "POST")])
            return await self.graphql(request, "connect" if path == "/graphql" else "attentive")
        try:
            return await self.control(method, path, request)
        except BadControlRequest as exc:
            return error_response(400, str(exc))

    # GraphQL -------------------------------------------------------------------------
    async def graphql(self, request: Request, endpoint: Endpoint) -> Response:
        started = time.perf_counter()
        request_id = self.store.new_request_id()
        received_ts = self.clock.time()
        config = self.faults.config
        fault = self.faults.draw(endpoint)
        api_key: str | None = None
        operation: str | None = None
        rows: list[SignalRow] = []
        event: tuple[Any, ...] | None = None

        def finish(response: Response, error: str | None = None) -> Response:
            rec = RequestRecord(
                id=request_id,
                received_at=iso_ts(received_ts),
                endpoint="/graphql" if endpoint == "connect" else "/v1/graphql",
                operation=operation,
                api_key=api_key,
                body_bytes=len(request.body),
                signals=len(rows),
                http_status=response.status if response.action is None else 0,
                fault=fault,
                error=error,
                duration_ms=round((time.perf_counter() - started) * 1000, 3),
            )
            self.store.record(rec, rows, event)
            response.delay += config.latency_ms / 1000
            return response

        if fault in REJECTING:
            return finish(self._fault_response(fault), f"fault {fault}")

        context: ConnectContext | AttentiveContext
        if endpoint == "connect":
            api_key = request.headers.get("x-api-key")
            account = self.accounts.get(api_key or "")
            if account is None:
                message = "missing x-api-key header" if not api_key else "invalid API key"
                return finish(_unauthorized(message), message)
            context = ConnectContext(
                account=account,
                request_id=request_id,
                received_ts=received_ts,
                store=self.store,
                clock=self.clock,
                exports=self.exports,
                check_public_key=check_public_key,
            )
            schema, documents = self.connect_schema, self.connect_documents
        else:
            scheme, _, token = request.headers.get("authorization", "").partition(" ")
            token = token.strip()
            api_key = token or None
            if scheme.lower() != "bearer" or token not in self.attentive_keys:
                return finish(_unauthorized("missing or invalid bearer token"), "unauthorized")
            if self._over_rate_limit(token, received_ts):
                response = error_response(
                    429, "rate limit exceeded", headers=[("Retry-After", "1")]
                )
                return finish(response, "rate limit")
            context = AttentiveContext(token, request_id, iso_ts(received_ts))
            schema, documents = self.attentive_schema, self.attentive_documents

        try:
            payload = orjson.loads(request.body)
        except orjson.JSONDecodeError:
            return finish(error_response(400, "the body is not JSON"), "body is not JSON")
        query = payload.get("query") if isinstance(payload, dict) else None
        variables = payload.get("variables") if isinstance(payload, dict) else None
        operation_name = payload.get("operationName") if isinstance(payload, dict) else None
        if (
            not isinstance(query, str)
            or not isinstance(variables, dict | None)
            or not isinstance(operation_name, str | None)
        ):
            message = (
                'the body must be a JSON object {"query": string, "variables": object?, '
                '"operationName": string?}'
            )
            return finish(error_response(400, message), "bad GraphQL request")
        prepared = documents.get(query)
        if prepared.errors:
            body = {"errors": [e.formatted for e in prepared.errors]}
            return finish(json_response(400, body), prepared.errors[0].message)
        operation = prepared.operation(operation_name)
        result, request_error = execute(schema, prepared, context, variables, operation_name)
        if isinstance(context, ConnectContext):
            rows = context.signal_rows
        elif context.event_rows:
            event = context.event_rows[0]
        errors = result.get("errors")
        error = errors[0]["message"] if errors else None
        if fault in AFTER_STORE:
            return finish(self._fault_response(fault), error or f"fault {fault}")
        return finish(json_response(400 if request_error else 200, result), error)

    def _fault_response(self, fault: str) -> Response:
        config = self.faults.config
        retry = [("Retry-After", str(config.retry_after))]
        if fault == "http_429":
            return error_response(429, "Too Many Requests (sandbox fault)", headers=retry)
        if fault == "http_503":
            return error_response(503, "Service Unavailable (sandbox fault)", headers=retry)
        if fault == "http_502":
            return error_response(502, "Bad Gateway (sandbox fault)")
        if fault == "http_500":
            return error_response(500, "Internal Server Error (sandbox fault)")
        if fault == "graphql_error":
            body = {
                "data": None,
                "errors": [
                    {
                        "message": "Internal server error (sandbox fault)",
                        "extensions": {"code": "INTERNAL_SERVER_ERROR"},
                    }
                ],
            }
            return json_response(200, body)
        if fault == "hang":
            return Response(0, action="hang", hang_seconds=config.hang_seconds)
        return Response(0, action="drop")

    def _over_rate_limit(self, token: str, now: float) -> bool:
        limit = self.settings.attentive_rate_limit
        if limit <= 0:
            return False
        second = int(now)
        window, count = self._rate.get(token, (second, 0))
        count = count + 1 if window == second else 1
        self._rate[token] = (second, count)
        return count > limit

    # Control and inspection ----------------------------------------------------------
    async def control(self, method: str, path: str, request: Request) -> Response:
        if method == "GET" and path == "/_health":
            return json_response(200, {"ok": True})
        if method == "GET" and path == "/_inspect":
            limit = _int(request.query.get("limit", "100"), "limit")
            with_signals = request.query.get("signals", "1") not in ("0", "false")
            return json_response(200, summary(self.store.conn, limit, with_signals))
        if method == "GET" and path == "/_inspect/attentive-rate":
            token = request.query.get("token")
            window_ms = _int(request.query.get("window_ms", "1000"), "window_ms") or 1000
            return json_response(
                200, attentive_rate(self.store.conn, token=token, window_ms=window_ms)
            )
        if method == "GET" and path == "/_control/status":
            return json_response(200, self._full_status())
        if path == "/_control/in-flight" and method in ("GET", "DELETE"):
            if method == "DELETE":  # the peaks start again from the requests being served
                self.http.in_flight.reset()
            return json_response(200, self.http.in_flight.as_dict())
        if path == "/_control/faults":
            if method == "POST":
                await self._update_faults(_body(request), reset=False)
            elif method == "DELETE":
                await self._update_faults({}, reset=True)
            return json_response(200, self.faults.as_dict())
        if path == "/_control/faults/reset" and method == "POST":
            await self._update_faults(_body(request) if request.body else {}, reset=True)
            return json_response(200, self.faults.as_dict())
        if path == "/_control/accounts":
            if method == "POST":
                body = _body(request)
                try:
                    account = make_account(
                        str(body.get("api_key", "")), str(body.get("tier", "")),
                        str(body.get("email", "")),
                    )  # fmt: skip
                except AccountError as exc:
                    raise BadControlRequest(str(exc)) from None
                self._save_account(account)
                self.accounts[account.api_key] = account
            return json_response(200, [asdict(a) for a in self.accounts.values()])
        if path == "/_control/attentive-keys" and method == "POST":
            key = _body(request).get("key")
            if not isinstance(key, str) or not key.strip():
                raise BadControlRequest('want {"key": "..."}')
            self.store.add_attentive_key(key, iso_ts(self.clock.time()))
            self.attentive_keys.add(key)
            return json_response(200, {"attentive_keys": len(self.attentive_keys)})
        if path == "/_control/clock":
            if method == "POST":
                offset = _body(request).get("offset_seconds")
                if not isinstance(offset, int | float) or isinstance(offset, bool):
                    raise BadControlRequest('want {"offset_seconds": number}')
                self.clock.offset_seconds = float(offset)
            return json_response(
                200, {"offset_seconds": self.clock.offset_seconds, "now": iso_ts(self.clock.time())}
            )
        if path == "/_control/sweep" and method == "POST":
            body = _body(request) if request.body else {}
            now = None
            if body.get("now") is not None:
                try:
                    now = parse_iso(str(body["now"])).timestamp()
                except ValueError:
                    raise BadControlRequest("now: not an ISO 8601 date-time") from None
            return json_response(200, {"removed": self.exports.sweep(now)})
        if path == "/_control/settings":
            if method == "POST":
                self._update_settings(_body(request))
            return json_response(200, self._settings_view())
        return error_response(404, f"no such endpoint: {method} {path}")

    async def _update_faults(self, changes: dict[str, Any], *, reset: bool) -> None:
        try:
            self.faults.update(changes, reset=reset)
        except FaultConfigError as exc:
            raise BadControlRequest(str(exc)) from None
        await self.sftp.apply_faults()

    def _settings_view(self) -> dict[str, Any]:
        return {
            "max_body_bytes": self.http.max_body_bytes,
            "attentive_rate_limit": self.settings.attentive_rate_limit,
            **{f"export_{k}": v for k, v in asdict(self.exports.settings).items()},
        }

    def _update_settings(self, changes: dict[str, Any]) -> None:
        current = self._settings_view()
        unknown = sorted(set(changes) - set(current))
        if unknown:
            raise BadControlRequest(f"unknown setting(s): {', '.join(unknown)}")
        for name, value in changes.items():
            if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
                raise BadControlRequest(f"{name}: want a number >= 0")
        for name, value in changes.items():
            if name == "max_body_bytes":
                self.http.max_body_bytes = int(value)
            elif name == "attentive_rate_limit":
                self.settings.attentive_rate_limit = int(value)
            else:
                attribute = name.removeprefix("export_")
                kind = type(getattr(self.exports.settings, attribute))
                setattr(self.exports.settings, attribute, kind(value))

    def _full_status(self) -> dict[str, Any]:
        return {
            **self.status(),
            "accounts": [asdict(a) for a in self.accounts.values()],
            "faults": self.faults.as_dict(),
            "in_flight": self.http.in_flight.as_dict(),
            "settings": self._settings_view(),
            "clock": {
                "offset_seconds": self.clock.offset_seconds,
                "now": iso_ts(self.clock.time()),
            },
        }


def _unauthorized(message: str) -> Response:
    return error_response(401, f"Unauthorized: {message}")


def _body(request: Request) -> dict[str, Any]:
    try:
        body = orjson.loads(request.body)
    except orjson.JSONDecodeError:
        raise BadControlRequest("the body is not JSON") from None
    if not isinstance(body, dict):
        raise BadControlRequest("the body must be a JSON object")
    return body


def _int(text: str, name: str) -> int:
    try:
        return max(0, int(text))
    except ValueError:
        raise BadControlRequest(f"{name}: want an integer") from None


async def run(settings: Settings) -> None:
    """Serve until SIGINT/SIGTERM."""
    import signal

    sandbox = Sandbox(settings)
    ready = await sandbox.start()
    print(orjson.dumps(ready).decode(), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        await sandbox.stop()
        print("sandbox: stopped", file=sys.stderr, flush=True)
