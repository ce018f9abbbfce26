"""Fetching an export file: a gzip CSV of Connect's columns (2,000,000 rows by default)
from a loopback OpenSSH sshd, through the product's own code, beside OpenSSH's `sftp`
client fetching the same file in the same run.

    .venv/bin/python bench/export_fetch.py [--rows N] [--runs N]

Three things are timed, each in a process of its own so that its peak RSS is its own:
- `sftp`: OpenSSH's client, `get` of the file (wall time of the whole process);
- `download`: exports_app.sftp_client alone (logon, then the bytes to disk);
- `fetch`: exports_app.transfer.transfer, what the worker runs: logon, the bytes to disk,
  their SHA-256, and every record counted by the inflating child on the way. Its peak RSS
  is the largest of the process and that child.
The children load Django as a worker does. Prints the median MB/s of the runs, the peak
RSS, and the ratios the targets are about (issue 9): download >= 0.8 x sftp, fetch (download
plus row count, end to end) >= 0.7 x sftp, peak RSS < 100 MB. Needs /usr/sbin/sshd and
/usr/bin/sftp (openssh-server, openssh-client). The file is made once, kept in bench/out/.
"""

from __future__ import annotations

import argparse
import getpass
import gzip
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "connectadmin.settings")

OUT = Path(__file__).resolve().parent / "out"
TYPES = ("addToCart", "order", "productView", "pageView", "emailOpen", "emailClick")
MB = 1e6


def make_file(rows: int) -> Path:
    """A Connect export: every column of SPEC §7's file (sandbox.exports.COLUMNS), the
    behavior ones filled with varied values, SIGNAL_CONTENT as quoted JSON, so it
    compresses as a real one does."""
    from sandbox.exports import COLUMNS

    path = OUT / f"connect-export-{rows}.csv.gz"
    if path.exists():
        return path
    OUT.mkdir(exist_ok=True)
    rng = random.Random(7)
    partial = path.with_suffix(".part")
    blank = dict.fromkeys(COLUMNS, "")
    with gzip.open(partial, "wt", compresslevel=6, newline="") as out:
        out.write(",".join(COLUMNS) + "\n")
        lines: list[str] = []
        for n in range(rows):
            kind = TYPES[n % len(TYPES)]
            stamp = (
                f"2026-12-0{1 + n % 3} {n % 24:02d}:{n % 60:02d}:{rng.randrange(60):02d}"
                f".{rng.randrange(1000):03d}"
            )
            content = json.dumps(
                {
                    "orderId": uuid.UUID(int=rng.getrandbits(128)).hex[:12],
                    "productId": f"P-{rng.randrange(10**6)}",
                    "productName": f"Item {rng.randrange(5000)}",
                    "price": round(rng.uniform(1, 900), 2),
                    "currency": "USD",
                    "quantity": rng.randrange(1, 5),
                },
                separators=(",", ":"),
            )
            record = blank | {
                "DATASET_ID": "ds-7f3a",
                "ACOUSTIC_APP_KEY": "shop-app",
                "CATEGORY": "Behavior",
                "NAME": kind,
                "OBSERVED_TIMESTAMP": stamp,
                "RECEIVED_TIMESTAMP": stamp,
                "SIGNAL_CONTENT": '"' + content.replace('"', '""') + '"',
                "SIGNAL_GROUP": "behavior",
                "SIGNAL_TIMESTAMP": stamp,
                "SIGNAL_ID": str(uuid.UUID(int=rng.getrandbits(128))),
                "SIGNAL_TYPE": kind,
                "TIMESTAMP": stamp,
                "EMAIL": f"contact{rng.randrange(10**7)}@example.com",
                "CONSENT_EMAIL": "OPT_IN",
                "CONTACT_KEY": str(uuid.UUID(int=rng.getrandbits(128))),
            }
            lines.append(",".join(record[c] for c in COLUMNS) + "\n")
            if len(lines) >= 10_000:
                out.write("".join(lines))
                lines.clear()
        out.write("".join(lines))
    partial.rename(path)
    return path


def measured(command: list[str]) -> tuple[float, float, str]:
    """(wall seconds, peak RSS MB of the process itself, its stdout)."""
    with tempfile.TemporaryFile() as stdout, tempfile.TemporaryFile() as stderr:
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=stdout, stderr=stderr)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        stdout.seek(0)
        stderr.seek(0)
        if process.returncode != 0:
            raise SystemExit(f"{command[:3]} failed:\n{stderr.read().decode(errors='replace')}")
        return seconds, usage.ru_maxrss / 1024, stdout.read().decode()


def child(mode: str, port: int, key: Path, remote: str, target: Path) -> None:
    """One measured fetch, in this process: prints its seconds, rows and peak RSS."""
    import django

    django.setup()
    from contextlib import AbstractContextManager

    from exports_app import sftp_client, transfer

    def open_session() -> AbstractContextManager[sftp_client.Session]:
        target_ = sftp_client.SftpTarget("127.0.0.1", port, getpass.getuser(), key.read_text())
        return sftp_client.session(target_, lambda *_: None)  # a fresh sshd: any host key

    started = time.perf_counter()
    rows = None
    if mode == "download":
        with open_session() as sftp, target.open("wb") as out:
            sftp.download(remote, out)
    else:
        done = transfer.transfer(open_session, remote, target, max_inflated=64 * 1024**3)
        rows = done.rows
    seconds = time.perf_counter() - started
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    counter = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "rows": rows, "rss": max(own, counter)}))


def count_alone(source: Path) -> float:
    from exports_app.transfer import count_records

    started = time.perf_counter()
    with source.open("rb") as data:
        count_records(data.read, 64 * 1024**3)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--child", choices=("download", "fetch"), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--key", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--remote", help=argparse.SUPPRESS)
    parser.add_argument("--target", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.port, args.key, args.remote, args.target)
        return

    from tests.exports.sshd import running_sshd

    started = time.perf_counter()
    source = make_file(args.rows)
    size = source.stat().st_size
    print(
        f"file: {source.name}, {size / MB:.1f} MB gzip, {args.rows:,} rows "
        f"(made or found in {time.perf_counter() - started:.1f} s)"
    )
    with tempfile.TemporaryDirectory(prefix="bench-fetch-") as work:
        folder = Path(work)
        key = folder / "client_ed25519"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        with running_sshd(folder / "sshd") as sshd:
            sshd.authorize((folder / "client_ed25519.pub").read_text())
            remote = "export.csv.gz"
            shutil.copyfile(source, sshd.home / remote)
            landed = folder / "landed.csv.gz"
            batch = folder / "batch"
            batch.write_text(f"get {remote} {landed}\n")
            sftp_command = [
                "sftp", "-q", "-b", str(batch), "-i", str(key), "-P", str(sshd.port),
                "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                "-o", "BatchMode=yes", f"{sshd.user}@127.0.0.1",
            ]  # fmt: skip
            results: dict[str, list[tuple[float, float]]] = {
                "sftp": [],
                "download": [],
                "fetch": [],
            }
            rows = None
            for run in range(args.runs):
                for name in results:
                    landed.unlink(missing_ok=True)
                    if name == "sftp":
                        seconds, rss, _ = measured(sftp_command)
                    else:
                        _, rss, out = measured(
                            [sys.executable, __file__, "--child", name, "--port", str(sshd.port),
                             "--key", str(key), "--remote", remote, "--target", str(landed)]
                        )  # fmt: skip
                        figures = json.loads(out)
                        seconds, rss = figures["seconds"], max(rss, figures["rss"])
                        rows = figures["rows"] if name == "fetch" else rows
                    assert landed.stat().st_size == size, f"{name}: the file arrived short"
                    results[name].append((seconds, rss))
                    print(f"run {run + 1} {name:9} {seconds:6.2f} s  {size / MB / seconds:6.1f} "
                          f"MB/s  peak RSS {rss:5.1f} MB")  # fmt: skip
    assert rows == args.rows, f"fetch counted {rows} rows, the file holds {args.rows}"
    # What counting costs by itself, no network: the product's count (one core) and the C
    # tools' `igzip -d | wc -l` (not quote-aware: a lower bound), on the file on disk.
    count_seconds = count_alone(source)
    started = time.perf_counter()
    subprocess.run(
        f"{sys.executable} -m isal.igzip -d -c {source} | wc -l > /dev/null", shell=True, check=True
    )
    c_seconds = time.perf_counter() - started
    speed = {
        name: size / MB / statistics.median(s for s, _ in runs) for name, runs in results.items()
    }
    peak = {name: max(r for _, r in runs) for name, runs in results.items()}
    print(f"\nmedian of {args.runs} runs, {os.cpu_count()} cores; rows counted by fetch: {rows:,}")
    for name in results:
        print(f"  {name:9} {speed[name]:6.1f} MB/s  peak RSS {peak[name]:5.1f} MB")
    print(f"  counting alone, no network: the product's {size / MB / count_seconds:6.1f} MB/s, "
          f"igzip -d | wc -l {size / MB / c_seconds:6.1f} MB/s")  # fmt: skip
    print(f"  download / sftp = {speed['download'] / speed['sftp']:.2f}  (target >= 0.8)")
    print(f"  fetch / sftp    = {speed['fetch'] / speed['sftp']:.2f}  (target >= 0.7)")
    print(f"  fetch peak RSS  = {peak['fetch']:.1f} MB  (target < 100 MB)")


if __name__ == "__main__":
    main()
