"""Benchmark: Attentive custom events through the global rate limit (issue 13).

Starts `python -m sandbox serve --attentive-rate-limit 150` (free ports, a temporary data
folder), then `--workers` sender processes (4). Each has its own AttentiveClient (one
kept-alive connection) and takes a permit from the shared limiter before every event,
all with one token; they send for `--seconds` (60). The figures come from the sandbox's
own record of what arrived (`GET /_inspect/attentive-rate`):

- events/s achieved, and its ratio to the limit (target: at least 0.95);
- the most requests in any one-second window, sliding over the record's millisecond
  timestamps (target: never above the limit), and in any one wall-clock second;
- the 429s the sandbox answered for its limit, and what the senders saw.

The limiter is Redis (`--redis`, default redis://127.0.0.1:6379/9), or with `--file` the
embedded default's file under a temporary folder (one machine's processes).

    .venv/bin/python bench/attentive.py [--seconds 60] [--limit 150] [--workers 4]
    .venv/bin/python bench/attentive.py --file

tests/integration/test_attentive_rate_live.py sends with `send_events` below too.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import multiprocessing
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from connectadmin.ratelimit import (  # noqa: E402  (ROOT must be on sys.path first)
    PACE_FRACTION,
    FileRateLimiter,
    RateLimiter,
    RedisRateLimiter,
)
from signals_app.attentive_client import AttentiveClient, Outcome, event_id  # noqa: E402

REDIS_URL = "redis://127.0.0.1:6379/9"
TARGET_RATIO = 0.95
# Retries of a RETRYABLE answer: backoff with full jitter from 0.1 s, doubling, at most
# 2 s; Retry-After pauses the key for every sender instead (plus a little jitter here).
BACKOFF_SECONDS = 0.1
BACKOFF_CAP_SECONDS = 2.0
MAX_ATTEMPTS = 30


# --- the sender (one per process) -----------------------------------------------------------


@dataclass(frozen=True)
class SenderPlan:
    """What one sender process sends: events `first` .. `first + count - 1` of run `run`,
    or, with `stop_at` (a time.time()), as many as it can until then."""

    endpoint: str
    token: str
    limit: float
    run: str
    first: int
    count: int
    redis_url: str | None = None
    file_dir: str | None = None
    stop_at: float | None = None
    start_at: float = 0.0  # time.time() to start at, so the senders start together
    fraction: float = PACE_FRACTION


@dataclass
class SenderResult:
    sent: list[str] = field(default_factory=list)  # externalEventIds SENT
    unknown: list[str] = field(default_factory=list)  # outcome UNKNOWN: not resent
    failed: list[str] = field(default_factory=list)
    retryable: int = 0  # RETRYABLE answers (each retried)
    seen_429: int = 0
    paused: int = 0  # pauses asked of the limiter (a Retry-After)
    waited: float = 0.0  # seconds spent waiting for permits
    late_permits: int = 0  # permits the limiter gave up for a late wake-up
    statuses: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)  # the first few, for the report


def make_event(run: str, index: int, occurred_at: str) -> dict[str, Any]:
    return {
        "type": "Added to cart",
        "user": {"email": f"contact{index}@example.com"},
        "properties": {"productId": f"AC-PNT-{index % 500:05d}", "unitPrice": 39.99},
        "externalEventId": event_id(run, index, "bench"),
        "occurredAt": occurred_at,
    }


def limiter_for(plan: SenderPlan) -> RateLimiter:
    if plan.redis_url:
        return RedisRateLimiter(plan.redis_url, fraction=plan.fraction)
    assert plan.file_dir, "a sender needs a Redis URL or a folder for the limit's files"
    return FileRateLimiter(Path(plan.file_dir), fraction=plan.fraction)


def retry_pause(attempt: int, retry_after: float | None) -> float:
    if retry_after is not None:  # the limiter's pause holds everyone; spread the return
        return random.uniform(0, BACKOFF_SECONDS)
    return random.uniform(0, min(BACKOFF_CAP_SECONDS, BACKOFF_SECONDS * 2 ** (attempt - 1)))


def send_events(plan: SenderPlan) -> SenderResult:
    """Send the plan's events one at a time, a permit before each call. RETRYABLE is
    retried (a Retry-After pauses the key for every sender); UNKNOWN is never resent."""
    limiter = limiter_for(plan)
    result = SenderResult()
    occurred_at = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    with AttentiveClient(endpoint=plan.endpoint, api_key=plan.token) as client:
        time.sleep(max(0.0, plan.start_at - time.time()))
        for index in range(plan.first, plan.first + plan.count):
            if plan.stop_at is not None and time.time() >= plan.stop_at:
                break
            event = make_event(plan.run, index, occurred_at)
            body = client.body(event)
            for attempt in range(1, MAX_ATTEMPTS + 1):
                result.waited += limiter.acquire(plan.token, plan.limit)
                answer = client.create_custom_event(event, body=body)
                status = str(answer.http_status or answer.error.partition(":")[0])
                result.statuses[status] = result.statuses.get(status, 0) + 1
                if answer.outcome != Outcome.RETRYABLE or attempt == MAX_ATTEMPTS:
                    break
                result.retryable += 1
                result.seen_429 += answer.http_status == 429
                if answer.retry_after is not None:
                    limiter.pause(plan.token, answer.retry_after)
                    result.paused += 1
                time.sleep(retry_pause(attempt, answer.retry_after))
            if answer.outcome == Outcome.SENT:
                result.sent.append(event["externalEventId"])
            elif answer.outcome == Outcome.UNKNOWN:
                result.unknown.append(event["externalEventId"])
            else:
                result.failed.append(event["externalEventId"])
            if answer.outcome != Outcome.SENT and len(result.errors) < 5:
                result.errors.append(f"{answer.outcome}: {answer.error}")
    result.late_permits = limiter.late_permits
    return result


def run_senders(plans: list[SenderPlan]) -> list[SenderResult]:
    """Each plan in its own OS process (spawned: a fresh interpreter, as a worker is)."""
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(len(plans), mp_context=context) as pool:
        return list(pool.map(send_events, plans))


# --- the sandbox ----------------------------------------------------------------------------


def start_sandbox(
    data: Path, token: str, limit: int
) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "sandbox", "serve", "--http-port", "0", "--sftp-port", "0",
         "--data", str(data), "--attentive-key", token, "--attentive-rate-limit", str(limit)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    assert process.stdout is not None
    ready: dict[str, Any] = orjson.loads(process.stdout.readline())
    return process, ready


def arrivals(base_url: str) -> dict[str, Any]:
    response = httpx.get(f"{base_url}/_inspect/attentive-rate", timeout=60)
    response.raise_for_status()
    record: dict[str, Any] = response.json()
    return record


def load_average() -> str:
    return " ".join(f"{n:.2f}" for n in os.getloadavg())


# --- the benchmark --------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--limit", type=int, default=150, help="the sandbox's limit per second")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--redis", default=REDIS_URL, help="the limiter's Redis")
    parser.add_argument("--file", action="store_true", help="the file limiter, not Redis")
    parser.add_argument("--fraction", type=float, default=PACE_FRACTION)
    args = parser.parse_args()

    run = uuid.uuid4().hex
    # A token of this run's own: no earlier run's permits or pause (kept in Redis) count.
    token = f"bench-attentive-{run[:12]}"
    with tempfile.TemporaryDirectory(prefix="attentive-bench-") as folder:
        process, ready = start_sandbox(Path(folder) / "sandbox", token, args.limit)
        try:
            base_url = f"http://127.0.0.1:{ready['http_port']}"
            start_at = time.time() + 2.0  # the spawned senders are ready well before
            plans = [
                SenderPlan(
                    endpoint=ready["attentive_url"],
                    token=token,
                    limit=args.limit,
                    run=run,
                    first=n * 10_000_000,
                    count=10_000_000,
                    redis_url=None if args.file else args.redis,
                    file_dir=str(Path(folder) / "ratelimit") if args.file else None,
                    stop_at=start_at + args.seconds,
                    start_at=start_at,
                    fraction=args.fraction,
                )
                for n in range(args.workers)
            ]
            load_before = load_average()
            results = run_senders(plans)
            load_after = load_average()
            record = arrivals(base_url)
        finally:
            process.terminate()
            process.wait(timeout=30)

    sent = sum(len(r.sent) for r in results)
    seconds = (record["last_ms"] - record["first_ms"]) / 1000 if record["requests"] > 1 else 0
    rate = (record["events"] - 1) / seconds if seconds else 0.0
    per_second = list(record["per_second"].values())[1:-1]  # whole seconds only
    limiter = "file (one machine)" if args.file else f"Redis {args.redis}"
    print(f"cpus: {os.cpu_count()}  load average before: {load_before}  after: {load_after}")
    print(
        f"limit: {args.limit}/s  workers: {args.workers} processes  limiter: {limiter}  "
        f"paced at {args.fraction:g} x the limit"
    )
    print(
        f"events received: {record['events']:,} in {seconds:.1f} s "
        f"(senders: {sent:,} sent, {sum(len(r.unknown) for r in results)} unknown, "
        f"{sum(len(r.failed) for r in results)} failed)"
    )
    print(
        f"events/s achieved: {rate:.1f}  ratio to the limit: {rate / args.limit:.3f} "
        f"(target >= {TARGET_RATIO})"
    )
    print(
        f"most in any one-second window (sliding, ms): {record['max_in_window']}  "
        f"in one wall-clock second: {record['max_in_second']}  (target <= {args.limit})"
    )
    if per_second:
        print(
            f"whole seconds: {len(per_second)}, fewest {min(per_second)}, "
            f"most {max(per_second)} requests"
        )
    print(
        f"429s answered for the limit: {record['rate_limited']}  "
        f"seen by the senders: {sum(r.seen_429 for r in results)}"
    )
    print(f"answers: {record['by_status']}")
    waited = sum(r.waited for r in results) / max(1, sent)
    print(
        f"mean wait for a permit: {waited * 1000:.2f} ms  permits given up for a late "
        f"wake-up: {sum(r.late_permits for r in results)}"
    )
    for errors in (r.errors for r in results):
        for error in errors:
            print(f"  {error}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
