"""Benchmark of the validation task against the CLI (issue 12, "Findings stored in bulk"):
a benchmark printing figures, never a test.

On the 5 %-error file of bench/validate.py's generator (N signals, made once in
``var/bench/`` and reused), in the same run:

1. ``manage.py validate_signals FILE --report ndjson`` in a fresh process (the CLI: the
   validator alone, over all cores), wall and CPU time;
2. the validation task's body, ``validation.import_validate``, on an import of the same
   file against PostgreSQL (database ``ca_bench_vtask``, dropped, created and migrated by
   this script), in a fresh process of its own: the forked reader, the follow-up pass, the
   storing of findings and rejected records, the preview's ANALYZE.

Printed: both times, their ratio (target: the task ≤ 2 × the CLI), and the task's phases:
when the reader answered, how long the validator's findings took to store while the
reader's follow-up pass ran, the storing of the rest (on PostgreSQL the rejected records
are stored beside, as the reader answers), the ANALYZE; and the rows stored.

Usage (from the project root)::

    .venv/bin/python bench/validation_task.py                    # N = 1,000,000
    .venv/bin/python bench/validation_task.py --signals 100000   # a quick run
    .venv/bin/python bench/validation_task.py --py-spy           # also profile the task

``--py-spy`` records the task's process and its children (py-spy in .venv, not in
requirements.txt) and prints where the samples were. The run's folder
(``var/bench/vtask-run/``: the import's file, as a hard link) is removed afterwards.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.validate import (  # noqa: E402  (ROOT must be on sys.path first)
    APP_KEYS,
    MB,
    DataSet,
    Run,
    _load,
    _warm,
    generate,
    machine,
    measure,
)

DB_NAME = "ca_bench_vtask"
DB_URL = f"postgres://postgres@127.0.0.1:5432/{DB_NAME}"
ADMIN_DB_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
TARGET_RATIO = 2.0


def create_database() -> None:
    import psycopg

    with psycopg.connect(ADMIN_DB_URL, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DB_NAME}")


def child_env(run_dir: Path) -> dict[str, str]:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "connectadmin.settings",
        "DATABASE_URL": DB_URL,
        "CONNECTADMIN_VAR_DIR": str(run_dir / "var"),
        "IMPORTS_DIR": str(run_dir / "imports"),
        "DJANGO_DEBUG": "0",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("CELERY_BROKER_URL", None)  # the task is called, never queued
    return env


# --- the task, in a process of its own ---------------------------------------------------------


def run_task(path: Path, result_path: Path, py_spy_out: str) -> None:
    """The measured process: an import of `path` (hard-linked into IMPORTS_DIR) and
    `import_validate` on it; its figures as JSON into `result_path`."""
    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth import get_user_model

    from connectadmin.models import AppKey, ConnectAccount, Region
    from signals_app.models import ImportFinding, ImportStatus, RejectedSignal, SignalImport
    from signals_app.services import validation

    user = get_user_model().objects.create_user("bench-vtask", password=uuid.uuid4().hex)
    account = ConnectAccount.objects.create(
        name="Bench (ultimate)",
        region=Region.SANDBOX,
        api_key="bench-vtask-api-key",
        connect_user_email="bench.vtask@example.com",
    )
    keys = [
        AppKey.objects.create(key=key, label=f"bench {i}", tier="ultimate", account=account)
        for i, key in enumerate(APP_KEYS)
    ]
    imports = Path(settings.IMPORTS_DIR)
    imports.mkdir(parents=True, exist_ok=True)
    stored_name = uuid.uuid4().hex
    try:
        os.link(path, imports / stored_name)
    except OSError:
        shutil.copyfile(path, imports / stored_name)
    signal_import = SignalImport.objects.create(
        created_by=user,
        app_key=keys[0],
        mode="test",
        original_name=path.name,
        stored_name=stored_name,
        size_bytes=path.stat().st_size,
        status=ImportStatus.UPLOADED,
    )

    marks: dict[str, float] = {}

    def timed(name: str, function: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            marks[f"{name}_start"] = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                marks[f"{name}_end"] = time.perf_counter()

        return wrapper

    validation._store = timed("store", validation._store)
    validation.Forked.result = timed("reader", validation.Forked.result)  # type: ignore[method-assign]
    validation._refresh_preview_statistics = timed(
        "analyze", validation._refresh_preview_statistics
    )
    early_seconds = [0.0]
    storing = getattr(validation, "_Storing", None)  # None: a version storing at the end
    if storing is not None:
        findings_if_ready = storing.findings_if_ready

        def early_store(self: Any) -> None:
            started = time.perf_counter()
            findings_if_ready(self)
            if self.findings_bytes and not early_seconds[0]:
                early_seconds[0] = time.perf_counter() - started

        storing.findings_if_ready = early_store
    profiler = _start_py_spy(py_spy_out) if py_spy_out else None
    cpu_before = os.times()
    started = time.perf_counter()
    validation.import_validate(import_id=signal_import.pk)
    finished = time.perf_counter()
    cpu_after = os.times()
    if profiler is not None:
        _stop_py_spy(profiler)
    signal_import.refresh_from_db()
    figures = {
        "seconds": finished - started,
        "reading": marks.get("store_start", finished) - started,
        "storing": marks.get("store_end", 0.0) - marks.get("store_start", 0.0),
        "analyze": marks.get("analyze_end", 0.0) - marks.get("analyze_start", 0.0),
        "early": early_seconds[0],
        "answered": marks.get("reader_end", started) - started,
        "cpu_self": (cpu_after.user + cpu_after.system) - (cpu_before.user + cpu_before.system),
        "cpu_children": (cpu_after.children_user + cpu_after.children_system)
        - (cpu_before.children_user + cpu_before.children_system),
        "status": signal_import.status,
        "error_message": signal_import.error_message,
        "signals": signal_import.signals,
        "rejected": signal_import.rejected,
        "errors": signal_import.errors,
        "warnings": signal_import.warnings,
        "findings": ImportFinding.objects.filter(signal_import=signal_import).count(),
        "records": RejectedSignal.objects.filter(signal_import=signal_import).count(),
        "findings_not_stored": signal_import.findings_not_stored,
        "records_not_stored": signal_import.records_not_stored,
        "rows_stored": signal_import.rows_stored,
        "rows_to_store": signal_import.rows_to_store,
    }
    result_path.write_bytes(orjson.dumps(figures))


def _start_py_spy(out: str) -> subprocess.Popen[bytes]:
    py_spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if py_spy is None:
        raise SystemExit("--py-spy: py-spy is not installed (.venv/bin/pip install py-spy)")
    command = [
        *(py_spy, "record", "--pid", str(os.getpid()), "--subprocesses", "--rate", "100"),
        *("--nonblocking", "--format", "raw", "--output", out),
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # attached before the work starts
    return process


def _stop_py_spy(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGINT)  # py-spy writes its file on Ctrl-C
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def summarize_profile(path: Path, top: int = 15) -> None:
    """Where the samples were, per process: the project's functions (inclusive) and the
    leaf functions (self), idle waits left out."""
    per_process: dict[str, tuple[dict[str, int], dict[str, int], list[int]]] = {}
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        process = frames[0] if frames[0].startswith("process ") else "process"
        leaf = frames[-1]
        if any(word in leaf for word in ("(idle)", "select (selectors", "poll (selectors")):
            continue
        inclusive, leaves, total = per_process.setdefault(
            re.sub(r":.*", "", process), ({}, {}, [0])
        )
        total[0] += count
        leaves[leaf] = leaves.get(leaf, 0) + count
        for frame in set(frames):
            if "signals_app/" in frame:
                inclusive[frame] = inclusive.get(frame, 0) + count
    for process, (inclusive, leaves, total) in sorted(
        per_process.items(), key=lambda kv: -kv[1][2][0]
    ):
        print(f"py-spy {process}: {total[0] / 100:.1f} s of samples")
        for title, table in (("project functions, inclusive", inclusive), ("leaf (self)", leaves)):
            print(f"  {title}:")
            for frame, count in sorted(table.items(), key=lambda kv: -kv[1])[:top]:
                print(f"    {100 * count / total[0]:5.1f} %  {frame[:130]}")


# --- the run -----------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Time the validation task against `manage.py validate_signals`."
    )
    parser.add_argument("--signals", type=int, default=1_000_000, help="N (default 1,000,000)")
    parser.add_argument("--seed", type=int, default=2025, help="random seed (default 2025)")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "var" / "bench", help="data directory (var/bench/)"
    )
    parser.add_argument("--repeat", type=int, default=1, help="runs of each; best is shown")
    parser.add_argument("--py-spy", action="store_true", help="profile the task's processes")
    parser.add_argument("--run-task", nargs=3, help=argparse.SUPPRESS)  # the measured process
    args = parser.parse_args(argv)
    if args.signals < 1 or args.repeat < 1:
        parser.error("--signals and --repeat must be at least 1")
    args.contacts, args.error_rate, args.warning_rate, args.regenerate = 50_000, 0.05, 0.03, False
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.run_task:
        file, result, py_spy_out = args.run_task
        run_task(Path(file), Path(result), py_spy_out)
        return 0
    for line in machine():
        print(line)
    print(f"Load average before: {_load()}")
    data = DataSet(args.signals, args.seed, args.out.resolve())
    generate(data, args)
    path = data.path("ndjson")
    print(f"File: {path}, {path.stat().st_size / MB:,.0f} MB")
    run_dir = data.out / "vtask-run"
    shutil.rmtree(run_dir, ignore_errors=True)
    (run_dir / "var").mkdir(parents=True)
    env = child_env(run_dir)
    # The run's own keys (a throwaway data folder), unless the environment has some.
    subprocess.run([sys.executable, "-m", "connectadmin.keyfile"], cwd=ROOT, env=env, check=True)
    try:
        return _measure(args, path, run_dir, env)
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


def _measure(args: argparse.Namespace, path: Path, run_dir: Path, env: dict[str, str]) -> int:
    python = sys.executable
    _warm(path)
    cli_runs: list[Run] = []
    for attempt in range(args.repeat):
        command = [python, "manage.py", "validate_signals", str(path), "--report", "ndjson"]
        run = measure(command, run_dir / "findings-cli.ndjson")
        if run.returncode not in (0, 1):
            print(f"the CLI failed (exit {run.returncode}):\n{run.stderr[-2000:]}")
            return 2
        print(f"CLI run {attempt + 1}: {run.seconds:.2f} s wall, {run.cpu_seconds:.2f} s CPU")
        cli_runs.append(run)

    task_runs: list[tuple[Run, dict[str, Any]]] = []
    for attempt in range(args.repeat):
        started = time.perf_counter()
        create_database()
        migrate = subprocess.run(
            [python, "manage.py", "migrate", "--noinput"], cwd=ROOT, env=env, capture_output=True
        )
        if migrate.returncode:
            raise RuntimeError(
                f"migrate failed:\n{(migrate.stdout + migrate.stderr).decode()[-3000:]}"
            )
        print(f"Database {DB_NAME} created and migrated in {time.perf_counter() - started:.1f} s")
        result = run_dir / "task.json"
        py_spy_out = str(args.out.resolve() / "vtask-pyspy.txt") if args.py_spy else ""
        os.environ.update(env)  # measure() starts the process with this environment
        command = [python, str(Path(__file__).resolve()), "--run-task", str(path), str(result)]
        run = measure([*command, py_spy_out], None)
        if run.returncode != 0:
            print(f"the task's process failed (exit {run.returncode}):\n{run.stderr[-3000:]}")
            return 2
        figures: dict[str, Any] = orjson.loads(result.read_bytes())
        print(
            f"Task run {attempt + 1}: {figures['seconds']:.2f} s (reader answered at "
            f"{figures['answered']:.2f} s, findings stored meanwhile in {figures['early']:.2f} s;"
            f" the rest from {figures['reading']:.2f} s in {figures['storing']:.2f} s, ANALYZE "
            f"{figures['analyze']:.2f} s); CPU "
            f"{figures['cpu_self']:.2f} s in the task's process, {figures['cpu_children']:.2f} s"
            " in its children"
        )
        task_runs.append((run, figures))
        if args.py_spy:
            summarize_profile(Path(py_spy_out))

    cli = min(cli_runs, key=lambda r: r.seconds)
    _, task = min(task_runs, key=lambda rf: float(rf[1]["seconds"]))
    print(f"Load average after: {_load()}")
    print()
    print(f"Signals: {task['signals']:,} ({task['rejected']:,} rejected), status {task['status']}")
    if task["error_message"]:
        print(f"  {task['error_message']}")
    print(
        f"Stored: {task['findings']:,} findings ({task['findings_not_stored']:,} not stored), "
        f"{task['records']:,} rejected records ({task['records_not_stored']:,} not stored); "
        f"progress showed {task['rows_stored']:,} of {task['rows_to_store']:,} rows"
    )
    print(f"validate_signals (CLI, wall, with start-up): {cli.seconds:8.2f} s")
    print(f"import_validate (task body, wall):           {task['seconds']:8.2f} s")
    print(f"  the reader (a forked child) answered at:   {task['answered']:8.2f} s")
    print(f"  findings stored during its follow-up pass: {task['early']:8.2f} s (from its mark)")
    print(f"  the rest stored from (answered + beside):  {task['reading']:8.2f} s")
    print(f"  the rest stored in:                        {task['storing']:8.2f} s")
    print(f"  ANALYZE of the findings:                   {task['analyze']:8.2f} s")
    ratio = task["seconds"] / cli.seconds
    ok = ratio <= TARGET_RATIO
    print(
        f"Ratio task / CLI: {ratio:.2f} (target ≤ {TARGET_RATIO:.0f}): {'PASS' if ok else 'FAIL'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
