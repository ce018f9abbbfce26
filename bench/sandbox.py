"""Benchmark: createSignals mutations of 500 signals per second against the sandbox.

Starts `python -m sandbox serve` (port 0, a temporary data folder, storage on), then
posts pre-encoded mutations over keep-alive connections from client processes and prints
the figures. The target (issue 3): at least 100 mutations/s, 50,000 signals/s on loopback.

    .venv/bin/python bench/sandbox.py [--seconds 10] [--clients 2]
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
API_KEY = "bench-key"
QUERY = (
    "mutation Send($signals: [SignalInput!]!) { createSignals(signals: $signals) { signalIds } }"
)


def _signal(i: int, batch: int) -> dict[str, object]:
    kinds: list[dict[str, object]] = [
        {
            "signalType": "addToCart",
            "category": "Behavior",
            "name": "Add product to cart in online store",
            "effect": "positive",
            "currency": "USD",
            "productId": f"AC-PNT-{i:05d}",
            "productName": "AWESOME COLORS Interior Paint Satin Finish 32 Fl Oz",
            "itemQuantity": 2,
            "unitPrice": 39.99,
            "productUrls": ["https://www.example.com/painting-and-decorating/paint/satin"],
            "signalTimestamp": "2025-11-01T08:29:30.001Z",
        },
        {
            "signalType": "order",
            "currency": "USD",
            "orderId": f"ORD-{batch}-{i}",
            "orderValue": 98.44,
            "orderedItems": [
                {"productId": "AC-PNT-WHT-SM", "productName": "Paint", "unitPrice": 39.99}
            ],
            "signalTimestamp": "2025-11-01T08:29:30.001Z",
        },
        {
            "signalType": "pageView",
            "name": "Page view from online store",
            "url": f"https://www.example.com/painting-and-decorating/tools/{i}",
            "pageCategory": "Painting & Decorating",
            "signalTimestamp": "2025-11-01T08:29:30.001Z",
        },
    ]
    return {
        "appKey": "bench-app",
        "identifiableAttributes": {"email": f"contact{i}@example.com"},
        "sessionId": f"SESS-{batch}-{i // 10}",
        "test": True,
        "signalContent": kinds[i % len(kinds)],
    }


def _bodies(count: int, size: int) -> list[bytes]:
    return [
        orjson.dumps(
            {"query": QUERY, "variables": {"signals": [_signal(i, b) for i in range(size)]}}
        )
        for b in range(count)
    ]


def _client(port: int, seconds: float, size: int, results: multiprocessing.Queue) -> None:
    bodies = _bodies(8, size)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Content-Type": "application/json", "x-api-key": API_KEY}
    done = failed = 0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        conn.request("POST", "/graphql", bodies[done % len(bodies)], headers)
        response = conn.getresponse()
        payload = response.read()
        if response.status == 200 and b'"signalIds"' in payload:
            done += 1
        else:
            failed += 1
    conn.close()
    results.put((done, failed))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--batch", type=int, default=500)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="sandbox-bench-") as data:
        process = subprocess.Popen(
            [sys.executable, "-m", "sandbox", "serve", "--http-port", "0", "--sftp-port", "0",
             "--data", data, "--account", f"{API_KEY}:ultimate:bench@example.com"],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        try:
            assert process.stdout is not None
            ready = json.loads(process.stdout.readline())
            port = int(ready["http_port"])
            results: multiprocessing.Queue = multiprocessing.Queue()
            workers = [
                multiprocessing.Process(
                    target=_client, args=(port, args.seconds, args.batch, results)
                )
                for _ in range(args.clients)
            ]
            started = time.perf_counter()
            for worker in workers:
                worker.start()
            totals = [results.get(timeout=args.seconds + 120) for _ in workers]
            elapsed = time.perf_counter() - started
            for worker in workers:
                worker.join(timeout=30)
            size = os.path.getsize(Path(data) / "sandbox.sqlite3") + os.path.getsize(
                Path(data) / "sandbox.sqlite3-wal"
            )
        finally:
            process.terminate()
            process.wait(timeout=30)
    done = sum(d for d, _ in totals)
    failed = sum(f for _, f in totals)
    # Client start-up (building the bodies) is inside `elapsed`: the figure errs low.
    print(f"cpus: {os.cpu_count()}  clients: {args.clients}  batch: {args.batch} signals")
    print(f"mutations: {done} ok, {failed} failed in {elapsed:.1f} s")
    print(f"createSignals/s: {done / elapsed:.1f}")
    print(f"signals/s: {done * args.batch / elapsed:,.0f}")
    print(f"store size: {size / 1e6:.0f} MB")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
