"""`python -m sandbox serve ...` and `python -m sandbox inspect ...`."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

import orjson

from sandbox.accounts import AccountError, parse_account_flag
from sandbox.app import Settings, run
from sandbox.exports import ExportSettings
from sandbox.faults import FaultConfig, FaultConfigError
from sandbox.store import connect, summary


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sandbox",
        description="Local stand-in for Acoustic Connect and Attentive (GraphQL + SFTP).",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the sandbox until interrupted")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--http-port", type=int, default=8765, help="0 picks a free port")
    serve.add_argument("--sftp-port", type=int, default=2222, help="0 picks a free port")
    serve.add_argument("--data", type=Path, default=Path("var/sandbox"))
    serve.add_argument(
        "--account",
        action="append",
        default=[],
        metavar="API_KEY:TIER:EMAIL",
        help="a Connect account (tier: pro, premium, ultimate); repeat for more",
    )
    serve.add_argument("--attentive-key", action="append", default=[], metavar="KEY")
    serve.add_argument("--max-body-bytes", type=int, default=16 * 1024 * 1024)
    serve.add_argument(
        "--attentive-rate-limit",
        type=int,
        default=150,
        help="requests per second per token, 0 = unlimited",
    )
    serve.add_argument("--clock-offset", type=float, default=0.0, metavar="SECONDS")

    exports = serve.add_argument_group("exports")
    exports.add_argument(
        "--export-delay", type=float, default=2.0, metavar="SECONDS", help="time a job stays QUEUED"
    )
    exports.add_argument(
        "--export-run-seconds", type=float, default=0.0, help="minimum time a job stays RUNNING"
    )
    exports.add_argument("--daily-job-limit", type=int, default=20)
    exports.add_argument("--daily-byte-limit", type=int, default=1_000_000_000)
    exports.add_argument("--daily-row-limit", type=int, default=2_000_000)
    exports.add_argument("--retention-days", type=float, default=28)
    exports.add_argument("--sweep-interval", type=float, default=3600.0, metavar="SECONDS")
    exports.add_argument(
        "--marketing-rows-per-day",
        type=int,
        default=2,
        help="generated rows per marketing type and day of the range",
    )

    faults = serve.add_argument_group("fault switches (also: POST /_control/faults)")
    faults.add_argument("--latency-ms", type=float, default=0.0)
    for name in ("429", "500", "502", "503"):
        faults.add_argument(
            f"--fault-{name}",
            type=float,
            default=0.0,
            metavar="SHARE",
            help=f"share of GraphQL requests answered HTTP {name}",
        )
    faults.add_argument(
        "--fault-graphql-error",
        type=float,
        default=0.0,
        metavar="SHARE",
        help="share answered 200 with a GraphQL errors array",
    )
    faults.add_argument(
        "--fault-hang",
        type=float,
        default=0.0,
        metavar="SHARE",
        help="share processed, then never answered",
    )
    faults.add_argument(
        "--fault-drop",
        type=float,
        default=0.0,
        metavar="SHARE",
        help="share processed, then the connection dropped",
    )
    faults.add_argument("--retry-after", type=int, default=2, metavar="SECONDS")
    faults.add_argument("--hang-seconds", type=float, default=3600.0)
    faults.add_argument("--fault-seed", type=int, default=None)
    faults.add_argument(
        "--fault-budget", type=int, default=None, help="fault at most this many requests"
    )
    faults.add_argument("--fault-scope", choices=("all", "connect", "attentive"), default="all")
    faults.add_argument("--sftp-cut-after-bytes", type=int, default=None)
    faults.add_argument("--changed-host-key", action="store_true")
    faults.add_argument("--export-failure-rate", type=float, default=0.0, metavar="SHARE")

    inspect = commands.add_parser("inspect", help="show what the sandbox received")
    inspect.add_argument("--data", type=Path, default=Path("var/sandbox"))
    inspect.add_argument("--limit", type=int, default=20)
    inspect.add_argument("--json", action="store_true", help="the same JSON as GET /_inspect")
    inspect.add_argument("--no-signals", action="store_true")
    return parser


def _serve(args: argparse.Namespace) -> int:
    try:
        accounts = [parse_account_flag(text) for text in args.account]
        faults = FaultConfig(
            latency_ms=args.latency_ms,
            rate_http_429=args.fault_429,
            rate_http_500=args.fault_500,
            rate_http_502=args.fault_502,
            rate_http_503=args.fault_503,
            rate_graphql_error=args.fault_graphql_error,
            rate_hang=args.fault_hang,
            rate_drop=args.fault_drop,
            retry_after=args.retry_after,
            hang_seconds=args.hang_seconds,
            seed=args.fault_seed,
            budget=args.fault_budget,
            scope=args.fault_scope,
            sftp_cut_after_bytes=args.sftp_cut_after_bytes,
            host_key_changed=args.changed_host_key,
            export_failure_rate=args.export_failure_rate,
        )
        faults.validate()
    except (AccountError, FaultConfigError) as exc:
        print(f"sandbox: {exc}", file=sys.stderr)
        return 2
    settings = Settings(
        data=args.data,
        host=args.host,
        http_port=args.http_port,
        sftp_port=args.sftp_port,
        max_body_bytes=args.max_body_bytes,
        attentive_rate_limit=args.attentive_rate_limit,
        accounts=accounts,
        attentive_keys=args.attentive_key,
        faults=faults,
        clock_offset=args.clock_offset,
        exports=ExportSettings(
            delay=args.export_delay,
            run_seconds=args.export_run_seconds,
            daily_jobs=args.daily_job_limit,
            daily_bytes=args.daily_byte_limit,
            daily_rows=args.daily_row_limit,
            retention_days=args.retention_days,
            marketing_rows_per_day=args.marketing_rows_per_day,
            sweep_interval=args.sweep_interval,
        ),
    )
    asyncio.run(run(settings))
    return 0


def _inspect(args: argparse.Namespace) -> int:
    path = args.data / "sandbox.sqlite3"
    if not path.exists():
        print(f"sandbox: no record at {path}", file=sys.stderr)
        return 2
    conn = connect(path, readonly=True)
    try:
        report = summary(conn, args.limit, not args.no_signals)
    finally:
        conn.close()
    if args.json:
        sys.stdout.write(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode() + "\n")
        return 0
    counts = report["counts"]
    print(
        f"signals: {counts['signals']}  duplicates: {counts['duplicate_signals']}  "
        f"requests: {counts['requests']}  attentive events: {counts['attentive_events']}"
    )
    for title in (
        "by_api_key",
        "by_app_key",
        "by_type",
        "by_test",
        "requests_by_status",
        "requests_by_fault",
        "export_jobs",
    ):
        if counts[title]:
            items = ", ".join(f"{k}={v}" for k, v in counts[title].items())
            print(f"{title.replace('_', ' ')}: {items}")
    print(f"\nlast {len(report['requests'])} requests (newest first):")
    for r in report["requests"]:
        print(
            f"  #{r['id']} {r['received_at']} {r['endpoint']} {r['operation'] or '-'} "
            f"key={r['api_key'] or '-'} {r['body_bytes']}B signals={r['signals']} "
            f"-> {r['http_status'] or 'no answer'} {r['duration_ms']}ms"
            + (f" fault={r['fault']}" if r["fault"] else "")
            + (f" error={r['error']!r}" if r["error"] else "")
        )
    for s in report.get("signals", []):
        print(
            f"  signal {s['signal_id']} {s['signal_type']} app={s['app_key']} "
            f"test={s['test']} request=#{s['request_id']}"
        )
    for j in report["export_jobs"]:
        print(
            f"  export {j['data_job_id']} {j['job_name']!r} {j['status']} {j['path']} "
            f"rows={j['rows']} bytes={j['size_bytes']}"
        )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "serve":
        return _serve(args)
    return _inspect(args)
