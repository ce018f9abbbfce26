"""The record of everything the sandbox received, in SQLite under the data folder.

One connection, used from the event loop thread; writes are one transaction per request
(one executemany for a mutation's signals), WAL mode so readers (export jobs in a worker
thread, `python -m sandbox inspect`) never block the writer.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (
    api_key TEXT PRIMARY KEY, tier TEXT NOT NULL, email TEXT NOT NULL,
    subscription_id TEXT NOT NULL, dataset_id TEXT NOT NULL, created_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS attentive_keys (key TEXT PRIMARY KEY, created_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS public_keys (
    email TEXT PRIMARY KEY, public_key TEXT NOT NULL, updated_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS requests (
    id INTEGER PRIMARY KEY, received_at TEXT NOT NULL, endpoint TEXT NOT NULL,
    operation TEXT, api_key TEXT, body_bytes INTEGER NOT NULL, signals INTEGER NOT NULL,
    http_status INTEGER NOT NULL, fault TEXT, error TEXT, duration_ms REAL NOT NULL);
CREATE TABLE IF NOT EXISTS signals (
    id INTEGER PRIMARY KEY, signal_id TEXT NOT NULL, request_id INTEGER NOT NULL,
    received_at TEXT NOT NULL, received_ts REAL NOT NULL, api_key TEXT NOT NULL,
    app_key TEXT NOT NULL, signal_type TEXT NOT NULL, test INTEGER NOT NULL,
    session_id TEXT, contact_key TEXT, email TEXT, sms TEXT, whatsapp TEXT,
    content TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS signals_by_key_time ON signals (api_key, received_ts);
CREATE TABLE IF NOT EXISTS attentive_events (
    id INTEGER PRIMARY KEY, request_id INTEGER NOT NULL, received_at TEXT NOT NULL,
    token TEXT NOT NULL, type TEXT NOT NULL, external_event_id TEXT, occurred_at TEXT,
    user TEXT NOT NULL, properties TEXT);
CREATE TABLE IF NOT EXISTS export_jobs (
    data_job_id TEXT PRIMARY KEY, api_key TEXT NOT NULL, job_name TEXT NOT NULL,
    status TEXT NOT NULL, path TEXT NOT NULL, file_format TEXT NOT NULL, day TEXT NOT NULL,
    created_at TEXT NOT NULL, started_at TEXT, completed_at TEXT,
    planned_rows INTEGER NOT NULL, rows INTEGER, size_bytes INTEGER, error TEXT,
    params TEXT NOT NULL);
CREATE UNIQUE INDEX IF NOT EXISTS export_job_names ON export_jobs (api_key, job_name);
"""

SIGNAL_COLUMNS = (
    "signal_id, request_id, received_at, received_ts, api_key, app_key, signal_type, test, "
    "session_id, contact_key, email, sms, whatsapp, content"
)
SignalRow = tuple[
    str, int, str, float, str, str, str, int, str | None, str | None, str | None,
    str | None, str | None, str,
]  # fmt: skip


@dataclass(frozen=True)
class RequestRecord:
    id: int
    received_at: str
    endpoint: str
    operation: str | None
    api_key: str | None
    body_bytes: int
    signals: int
    http_status: int
    fault: str | None
    error: str | None
    duration_ms: float


def connect(path: Path, *, readonly: bool = False) -> sqlite3.Connection:
    if readonly:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
    else:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        # Durable across a crash or kill of the process (what tests need), not across a
        # power cut: the sandbox trades that for write speed.
        conn.execute("PRAGMA synchronous=OFF")
        conn.execute("PRAGMA cache_size=-65536")
    conn.execute("PRAGMA busy_timeout=5000")
    conn.row_factory = sqlite3.Row
    return conn


class Store:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.conn = connect(path)
        self.conn.executescript(SCHEMA)
        row = self.conn.execute("SELECT COALESCE(MAX(id), 0) FROM requests").fetchone()
        self._next_request_id = int(row[0]) + 1

    def close(self) -> None:
        self.conn.close()

    def new_request_id(self) -> int:
        request_id = self._next_request_id
        self._next_request_id += 1
        return request_id

    def record(
        self,
        request: RequestRecord,
        signals: Sequence[SignalRow] = (),
        attentive_event: tuple[Any, ...] | None = None,
    ) -> None:
        """One transaction per request: the request log line and what it carried."""
        conn = self.conn
        conn.execute("BEGIN")
        try:
            conn.execute(
                "INSERT INTO requests VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (
                    request.id, request.received_at, request.endpoint, request.operation,
                    request.api_key, request.body_bytes, request.signals, request.http_status,
                    request.fault, request.error, request.duration_ms,
                ),
            )  # fmt: skip
            if signals:
                conn.executemany(
                    f"INSERT INTO signals ({SIGNAL_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    signals,
                )
            if attentive_event is not None:
                conn.execute(
                    "INSERT INTO attentive_events (request_id, received_at, token, type, "
                    "external_event_id, occurred_at, user, properties) VALUES (?,?,?,?,?,?,?,?)",
                    attentive_event,
                )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    # Accounts and keys -------------------------------------------------------------
    def upsert_account(
        self, api_key: str, tier: str, email: str, subscription_id: str, dataset_id: str, at: str
    ) -> None:
        self.conn.execute(
            "INSERT INTO accounts VALUES (?,?,?,?,?,?) ON CONFLICT (api_key) DO UPDATE SET "
            "tier = excluded.tier, email = excluded.email",
            (api_key, tier, email, subscription_id, dataset_id, at),
        )

    def accounts(self) -> list[sqlite3.Row]:
        return list(self.conn.execute("SELECT * FROM accounts ORDER BY created_at"))

    def add_attentive_key(self, key: str, at: str) -> None:
        self.conn.execute("INSERT OR IGNORE INTO attentive_keys VALUES (?, ?)", (key, at))

    def attentive_keys(self) -> list[str]:
        return [r[0] for r in self.conn.execute("SELECT key FROM attentive_keys")]

    def set_public_key(self, email: str, public_key: str, at: str) -> None:
        self.conn.execute(
            "INSERT INTO public_keys VALUES (?,?,?) ON CONFLICT (email) DO UPDATE SET "
            "public_key = excluded.public_key, updated_at = excluded.updated_at",
            (email, public_key, at),
        )

    def public_key(self, email: str) -> str | None:
        row = self.conn.execute(
            "SELECT public_key FROM public_keys WHERE email = ?", (email,)
        ).fetchone()
        return None if row is None else str(row[0])

    # Export jobs -------------------------------------------------------------------
    def add_job(self, values: dict[str, Any]) -> None:
        columns = ", ".join(values)
        marks = ", ".join("?" for _ in values)
        self.conn.execute(
            f"INSERT INTO export_jobs ({columns}) VALUES ({marks})", tuple(values.values())
        )

    def update_job(self, data_job_id: str, **values: Any) -> None:
        assignments = ", ".join(f"{name} = ?" for name in values)
        self.conn.execute(
            f"UPDATE export_jobs SET {assignments} WHERE data_job_id = ?",
            (*values.values(), data_job_id),
        )

    def job(self, data_job_id: str) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self.conn.execute(
            "SELECT * FROM export_jobs WHERE data_job_id = ?", (data_job_id,)
        ).fetchone()
        return row

    def jobs(self, api_key: str) -> list[sqlite3.Row]:
        return list(
            self.conn.execute(
                "SELECT * FROM export_jobs WHERE api_key = ? ORDER BY created_at", (api_key,)
            )
        )

    def unfinished_jobs(self) -> list[sqlite3.Row]:
        return list(
            self.conn.execute(
                "SELECT * FROM export_jobs WHERE status IN ('QUEUED', 'RUNNING') "
                "ORDER BY created_at"
            )
        )

    def job_name_taken(self, api_key: str, job_name: str) -> bool:
        row = self.conn.execute(
            "SELECT 1 FROM export_jobs WHERE api_key = ? AND job_name = ?", (api_key, job_name)
        ).fetchone()
        return row is not None

    def path_taken(self, email: str, path: str) -> bool:
        row = self.conn.execute(
            "SELECT 1 FROM export_jobs j JOIN accounts a ON a.api_key = j.api_key "
            "WHERE a.email = ? AND j.path = ?",
            (email, path),
        ).fetchone()
        return row is not None

    def day_usage(self, api_key: str, day: str) -> tuple[int, int, int]:
        """(jobs, bytes, rows) for one subscription and UTC day. Rows of jobs not yet
        finished count as planned, so two queued jobs cannot pass the limit together."""
        row = self.conn.execute(
            "SELECT COUNT(*), COALESCE(SUM(size_bytes), 0), "
            "COALESCE(SUM(CASE WHEN status IN ('QUEUED', 'RUNNING') THEN planned_rows "
            "ELSE COALESCE(rows, 0) END), 0) "
            "FROM export_jobs WHERE api_key = ? AND day = ?",
            (api_key, day),
        ).fetchone()
        return int(row[0]), int(row[1]), int(row[2])

    def count_signals(
        self, api_key: str, types: Iterable[str], start_ts: float, end_ts: float
    ) -> int:
        types = list(types)
        if not types:
            return 0
        marks = ",".join("?" for _ in types)
        row = self.conn.execute(
            "SELECT COUNT(*) FROM signals WHERE api_key = ? AND received_ts >= ? "
            f"AND received_ts <= ? AND signal_type IN ({marks})",
            (api_key, start_ts, end_ts, *types),
        ).fetchone()
        return int(row[0])


def _counts(conn: sqlite3.Connection, column: str, table: str = "signals") -> dict[str, int]:
    return {
        str(key): int(n)
        for key, n in conn.execute(
            f"SELECT {column}, COUNT(*) FROM {table} GROUP BY {column} ORDER BY {column}"
        )
    }


def summary(conn: sqlite3.Connection, limit: int = 100, signals: bool = True) -> dict[str, Any]:
    """What `python -m sandbox inspect` and `GET /_inspect` show."""
    counts: dict[str, Any] = {
        "signals": conn.execute("SELECT COUNT(*) FROM signals").fetchone()[0],
        "by_api_key": _counts(conn, "api_key"),
        "by_app_key": _counts(conn, "app_key"),
        "by_type": _counts(conn, "signal_type"),
        "by_test": {("true" if k == "1" else "false"): v for k, v in _counts(conn, "test").items()},
        # A signal received twice (same key, app key, contact, session, test flag and
        # content): what a client's blind retry would cause. Tests read it to tell
        # "duplicated" from "lost".
        "duplicate_signals": conn.execute(
            "SELECT COALESCE(SUM(n - 1), 0) FROM (SELECT COUNT(*) AS n FROM signals GROUP BY "
            "api_key, app_key, contact_key, email, sms, whatsapp, session_id, test, content "
            "HAVING n > 1)"
        ).fetchone()[0],
        "requests": conn.execute("SELECT COUNT(*) FROM requests").fetchone()[0],
        "requests_by_status": _counts(conn, "http_status", "requests"),
        "requests_by_fault": {
            k: v for k, v in _counts(conn, "fault", "requests").items() if k != "None"
        },
        "attentive_events": conn.execute("SELECT COUNT(*) FROM attentive_events").fetchone()[0],
        # Events sent again with the same externalEventId (an idempotent client never does).
        "attentive_duplicate_event_ids": conn.execute(
            "SELECT COALESCE(SUM(n - 1), 0) FROM (SELECT COUNT(*) AS n FROM attentive_events "
            "WHERE external_event_id IS NOT NULL GROUP BY external_event_id HAVING n > 1)"
        ).fetchone()[0],
        "export_jobs": _counts(conn, "status", "export_jobs"),
    }
    result: dict[str, Any] = {
        "counts": counts,
        "requests": [
            dict(r)
            for r in conn.execute("SELECT * FROM requests ORDER BY id DESC LIMIT ?", (limit,))
        ],
        "export_jobs": [
            dict(r)
            for r in conn.execute(
                "SELECT * FROM export_jobs ORDER BY created_at DESC LIMIT ?", (limit,)
            )
        ],
        "attentive_events": [
            dict(r)
            for r in conn.execute(
                "SELECT * FROM attentive_events ORDER BY id DESC LIMIT ?", (limit,)
            )
        ],
    }
    for event in result["attentive_events"]:
        event["user"] = orjson.loads(event["user"])
        event["properties"] = event["properties"] and orjson.loads(event["properties"])
    if signals:
        result["signals"] = [
            dict(r, content=orjson.loads(r["content"]), test=bool(r["test"]))
            for r in conn.execute(
                f"SELECT {SIGNAL_COLUMNS} FROM signals ORDER BY id DESC LIMIT ?", (limit,)
            )
        ]
    return result


def attentive_rate(
    conn: sqlite3.Connection, *, token: str | None = None, window_ms: int = 1000
) -> dict[str, Any]:
    """The Attentive requests as they arrived, for a rate limit to be judged by (read only):
    the most that arrived within any `window_ms` (a sliding window over the record's
    millisecond timestamps, every request counted: accepted, refused or faulted), the most
    in one wall-clock second (what the sandbox's own limit counts), how many its limit
    answered 429, and the events stored with their externalEventIds. With `token`, only
    the requests that named that token: a request refused by a fault before its token was
    read names none, so the overall figures (no token) are the ones to judge a run by."""
    where, params = "endpoint = '/v1/graphql'", []
    if token is not None:
        where, params = where + " AND api_key = ?", [token]
    arrivals = sorted(
        _epoch_ms(row[0])
        for row in conn.execute(f"SELECT received_at FROM requests WHERE {where}", params)
    )
    most, most_at, ahead = 0, None, 0
    for first, at in enumerate(arrivals):
        ahead = max(ahead, first)
        while ahead < len(arrivals) and arrivals[ahead] < at + window_ms:
            ahead += 1
        if ahead - first > most:
            most, most_at = ahead - first, at
    per_second: dict[int, int] = {}
    for at in arrivals:
        per_second[at // 1000] = per_second.get(at // 1000, 0) + 1
    event_where = "WHERE token = ?" if token is not None else ""
    ids = [
        row[0]
        for row in conn.execute(
            f"SELECT external_event_id FROM attentive_events {event_where} ORDER BY id",
            [token] if token is not None else [],
        )
    ]
    limited = conn.execute(
        f"SELECT COUNT(*) FROM requests WHERE {where} AND error = 'rate limit'", params
    ).fetchone()[0]
    return {
        "requests": len(arrivals),
        "first_ms": arrivals[0] if arrivals else None,
        "last_ms": arrivals[-1] if arrivals else None,
        "window_ms": window_ms,
        "max_in_window": most,
        "max_window_start_ms": most_at,
        "max_in_second": max(per_second.values(), default=0),
        "per_second": {str(second): n for second, n in sorted(per_second.items())},
        "rate_limited": limited,
        "by_status": {
            str(status): n
            for status, n in conn.execute(
                f"SELECT http_status, COUNT(*) FROM requests WHERE {where} "
                "GROUP BY http_status ORDER BY http_status",
                params,
            )
        },
        "events": len(ids),
        "event_ids": ids,
    }


def _epoch_ms(text: str) -> int:
    """Milliseconds since the epoch of a record's timestamp (`...T08:29:30.001Z`)."""
    return round(datetime.fromisoformat(text).timestamp() * 1000)
