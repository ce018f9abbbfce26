"""Reading where a crash cannot spread (issue 8): the forked reader's limits and the verdict
each way of dying gives, poison tasks that end, and what the storage policy keeps."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from signals_app.models import (
    AuditEvent,
    ImportFinding,
    ImportStatus,
    RejectedSignal,
    SignalImport,
    TaskStart,
)
from signals_app.services import deliveries, downloads, fixes, reading, sending, upload, validation
from signals_app.services.rejections import Rejections
from signals_app.validation.processes import ChildDied, Forked, Limits, TimedOut
from tests.factories import make_app_key

pytestmark = pytest.mark.django_db


# --- the forked reader ----------------------------------------------------------------------


def _allocate(megabytes: int) -> int:
    return len(bytearray(megabytes * 1024 * 1024))


def _spin(seconds: float) -> str:
    started = time.process_time()
    while time.process_time() - started < seconds:
        pass
    return "done"


def _die(signal_number: int) -> None:
    os.kill(os.getpid(), signal_number)


def _exit_the_process() -> None:
    raise SystemExit(3)


def test_a_child_past_its_memory_raises_memory_error_here() -> None:
    with pytest.raises(MemoryError):
        Forked(_allocate, (400,), limits=Limits(memory_bytes=64 * 1024**2)).result()
    assert Forked(_allocate, (8,), limits=Limits(memory_bytes=64 * 1024**2)).result() == 8 * 2**20


def test_a_child_past_its_processor_time_dies_of_sigxcpu() -> None:
    with pytest.raises(ChildDied) as died:
        Forked(_spin, (5.0,), limits=Limits(cpu_seconds=1)).result()
    assert died.value.signal == signal.SIGXCPU


def test_a_child_keeps_no_inherited_signal_handler() -> None:
    """A Celery pool child turns SIGXCPU into SystemExit; the reader must die of it."""
    previous = signal.signal(signal.SIGXCPU, lambda *_: (_ for _ in ()).throw(SystemExit(-232)))
    try:
        with pytest.raises(ChildDied) as died:
            Forked(_spin, (5.0,), limits=Limits(cpu_seconds=1)).result()
    finally:
        signal.signal(signal.SIGXCPU, previous)
    assert died.value.signal == signal.SIGXCPU


def test_a_childs_system_exit_never_ends_the_parent() -> None:
    with pytest.raises(RuntimeError, match="stopped on SystemExit"):
        Forked(_exit_the_process, ()).result()


def test_a_child_that_does_not_answer_in_time_is_killed() -> None:
    child = Forked(time.sleep, (30,))
    started = time.monotonic()
    with pytest.raises(TimedOut):
        child.result(timeout=0.5)
    assert time.monotonic() - started < 5
    with pytest.raises(ChildProcessError):
        os.waitpid(child.pid, os.WNOHANG)  # reaped


# --- the verdicts -------------------------------------------------------------------------


@pytest.fixture
def imports_dir(settings: Any, tmp_path: Path) -> Path:
    settings.IMPORTS_DIR = tmp_path / "imports"
    return Path(settings.IMPORTS_DIR)


@pytest.fixture
def user() -> User:
    return User.objects.create_user("ann", password="x")


def order(n: int, **content: Any) -> dict[str, Any]:
    return {
        "appKey": "shop-key",
        "identifiableAttributes": {"email": f"a{n}@example.com"},
        "signalContent": {"signalType": "order", "currency": "USD", "orderId": f"o{n}", **content},
    }


def uploaded(user: User, content: bytes) -> SignalImport:
    import io

    app_key = make_app_key(key="shop-key", tier="ultimate")
    return upload.import_create(
        user=user, app_key=app_key, mode="test", upload=io.BytesIO(content), original_name="f"
    )


def validated(signal_import: SignalImport) -> SignalImport:
    validation.import_validate(import_id=signal_import.pk)
    signal_import.refresh_from_db()
    return signal_import


@pytest.mark.parametrize(
    ("death", "said"),
    [
        (signal.SIGSEGV, "the reader crashed on it (signal SIGSEGV)"),
        (signal.SIGKILL, "the process reading it was killed (signal SIGKILL)"),
    ],
)
def test_a_reader_that_dies_makes_the_import_unreadable_naming_how(
    user: User, imports_dir: Path, monkeypatch: pytest.MonkeyPatch, death: int, said: str
) -> None:
    """The reader stands in for a parser that crashes: it dies of a real signal, in a real
    child process; this process lives on and says so on the import."""
    signal_import = uploaded(user, json.dumps(order(0)).encode())
    monkeypatch.setattr(validation, "read_import", lambda job, counters: _die(death))
    signal_import = validated(signal_import)
    assert signal_import.status == ImportStatus.UNREADABLE
    assert said.lower() in signal_import.error_message.lower()
    assert not ImportFinding.objects.exists()


def test_a_reader_that_takes_too_long_makes_the_import_unreadable(
    user: User, imports_dir: Path, monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    settings.SIGNALS_VALIDATION_MAX_SECONDS = 1
    signal_import = uploaded(user, json.dumps(order(0)).encode())
    monkeypatch.setattr(validation, "read_import", lambda job, counters: time.sleep(30))
    signal_import = validated(signal_import)
    assert signal_import.status == ImportStatus.UNREADABLE
    assert "the file took longer than 1 second to read" in signal_import.error_message.lower()


# --- poison work ends ---------------------------------------------------------------------


def test_validation_started_three_times_without_ending_is_not_started_again(
    user: User, imports_dir: Path
) -> None:
    signal_import = uploaded(user, json.dumps(order(0)).encode())
    # Three deliveries whose worker died (the count is written before the work).
    TaskStart.objects.create(job=deliveries.VALIDATE, signal_import=signal_import, starts=3)
    signal_import = validated(signal_import)
    assert signal_import.status == ImportStatus.UNREADABLE
    assert "stopped 3 times before it was read" in signal_import.error_message
    assert AuditEvent.objects.filter(action="import.validation_abandoned").exists()
    # Delivered again: still given up, nothing read.
    assert validated(signal_import).status == ImportStatus.UNREADABLE


def test_a_start_that_ends_clears_the_count(user: User, imports_dir: Path) -> None:
    signal_import = uploaded(user, json.dumps(order(0)).encode())
    TaskStart.objects.create(job=deliveries.VALIDATE, signal_import=signal_import, starts=2)
    assert validated(signal_import).status == ImportStatus.VALIDATED
    assert TaskStart.objects.get().starts == 0


def test_a_start_ended_by_system_exit_still_counts(user: User, imports_dir: Path) -> None:
    signal_import = uploaded(user, b"{}")
    with (
        pytest.raises(SystemExit),
        deliveries.counted_start(job=deliveries.VALIDATE, import_id=signal_import.pk),
    ):
        raise SystemExit(1)
    assert TaskStart.objects.get().starts == 1


def test_the_corrected_file_given_up_after_three_starts(user: User, imports_dir: Path) -> None:
    source = validated(uploaded(user, json.dumps(order(0, currency="usd")).encode()))
    fixed = SignalImport.objects.create(
        created_by=user,
        app_key=source.app_key,
        original_name="f.fixed.ndjson",
        stored_name="fixed-file",
        status=ImportStatus.UPLOADED,
    )
    TaskStart.objects.create(job=deliveries.WRITE_FIXED_FILE, signal_import=fixed, starts=3)
    fixes.import_write_fixed_file(import_id=fixed.pk, source_id=source.pk, fixes=[])
    fixed.refresh_from_db()
    assert fixed.status == ImportStatus.FAILED
    assert "stopped 3 times before it ended" in fixed.error_message


def test_a_lane_given_up_after_three_starts_without_a_batch_says_so(
    user: User, imports_dir: Path
) -> None:
    signal_import = validated(uploaded(user, json.dumps(order(0)).encode()))
    signal_import = sending.import_send(signal_import=signal_import, user=user)
    TaskStart.objects.create(job=deliveries.SEND, signal_import=signal_import, lane=0, starts=3)
    sending.import_send_run(import_id=signal_import.pk, lane=0)
    signal_import.refresh_from_db()
    assert signal_import.status == ImportStatus.FAILED
    assert "stopped 3 times in a row before sending a batch" in signal_import.error_message
    assert signal_import.batches.get().state == "pending"  # nothing sent, nothing lost


# --- what is kept of a file with more problems than the budget ----------------------------


def test_past_the_budget_counts_stay_exact_and_the_first_findings_are_kept(
    user: User, imports_dir: Path, settings: Any
) -> None:
    settings.SIGNALS_STORED_FINDINGS_BASE_BYTES = 200_000
    settings.SIGNALS_STORED_FINDINGS_PER_FILE_BYTE = 0
    content = b"".join(
        json.dumps(order(n, currency="", orderId="", effect="x")).encode() + b"\n"
        for n in range(2000)
    )
    signal_import = validated(uploaded(user, content))
    assert (signal_import.signals, signal_import.rejected, signal_import.errors) == (
        2000,
        2000,
        4000,
    )
    stored = ImportFinding.objects.filter(signal_import=signal_import)
    assert 0 < stored.count() < 6000
    assert stored.count() + signal_import.findings_not_stored == 6000
    # The preview's needs come first: every field and code has its examples...
    codes = set(stored.values_list("path", "code"))
    assert codes == {
        ("signalContent.currency", "enum"),
        ("signalContent.orderId", "required"),
        ("signalContent.effect", "enum"),
    }
    # ...and the problem table's counts are the validator's, not the stored rows'.
    table = {(r.path, r.code): (r.count, r.signals) for r in reading_table(signal_import)}
    assert table[("signalContent.currency", "enum")] == (2000, 2000)
    rows = RejectedSignal.objects.filter(signal_import=signal_import).count()
    assert rows > 0 and rows + signal_import.records_not_stored == 2000
    # Sending skips every rejected signal, stored or not.
    assert sorted(Rejections.of(signal_import).indexes()) == list(range(2000))
    report = "".join(downloads.error_report_csv(signal_import)).splitlines()
    assert report[-1].startswith(",,,,not_stored,")
    assert f"{signal_import.findings_not_stored} more findings are not listed" in report[-1]


def reading_table(signal_import: SignalImport) -> Any:
    from signals_app.services import preview

    return preview.import_problem_table(signal_import)


def test_the_page_says_what_was_not_stored(
    client: Client, user: User, imports_dir: Path, settings: Any
) -> None:
    settings.SIGNALS_STORED_FINDINGS_BASE_BYTES = 100_000
    settings.SIGNALS_STORED_FINDINGS_PER_FILE_BYTE = 0
    content = b"".join(b"{}\n" for _ in range(3000))
    signal_import = validated(uploaded(user, content))
    client.force_login(User.objects.create_superuser("admin", password="x"))
    page = client.get(f"/imports/{signal_import.public_id}").content.decode()
    assert "has more problems than connectadmin keeps for one import" in page
    assert f"{signal_import.findings_not_stored:,} findings" in page
    assert "more not stored" in page  # the error report's line


def test_the_storage_policy_never_passes_its_budget(tmp_path: Path) -> None:
    keeper = reading._Keeper(tmp_path, budget=50_000)
    for n in range(5000):
        keeper.take(n, n + 1, "identifiableAttributes", "error", "required", "x" * 60)
        keeper.keep_record(n, n + 1, "{}")
    keeper.close()
    assert keeper.used + keeper.records_used <= 50_000
    assert keeper.findings_stored + keeper.findings_not_stored == 5000
    assert keeper.records_stored + keeper.records_not_stored == 5000
    assert keeper.findings_stored > 0 and keeper.records_stored > 0


# --- fuzz: hostile shapes through the reader, limits on -----------------------------------


def _hostile_file(
    tmp: Path, layout: str, depth: int, digits: int, text: int, wrapping: str
) -> Path:
    """A file of three signals, the middle one hostile: nested `depth` deep, a number of
    `digits` digits, a string of `text` characters; laid out as `layout`, wrapped per
    `wrapping` (plain, gzip, gzip with a run of blank lines, gzip cut short)."""
    import gzip

    good = json.dumps(order(0)).encode()
    hostile = (
        b'{"appKey": "shop-key", "identifiableAttributes": {"email": "a@b.co"}, '
        b'"signalContent": {"signalType": "order", "currency": "USD", "orderId": "'
        + b"x" * text
        + b'", "n": '
        + b"9" * digits
        + b', "deep": '
        + b"[" * depth
        + b"]" * depth
        + b"}}"
    )
    records = [good, hostile, good]
    if layout == "ndjson":
        data = b"\n".join(records) + b"\n"
    elif layout == "array":
        data = b"[\n" + b",\n".join(records) + b"\n]"
    elif layout == "signals":
        data = b'{"signals": [' + b",".join(records) + b"]}"
    else:  # a CSV whose orderedItems cell holds the nesting and the number
        cell = (b"[" * depth + b"9" * digits + b"]" * depth).replace(b'"', b'""')
        data = (
            b"appKey,identifiableAttributes.email,signalContent.signalType,"
            b"signalContent.currency,signalContent.orderId,signalContent.orderedItems\n"
            b'shop-key,a@b.co,order,USD,"' + b"x" * text + b'","' + cell + b'"\n'
        )
    path = tmp / f"hostile-{layout}-{wrapping}"
    if wrapping == "plain":
        path.write_bytes(data)
    else:
        blank = b"\n" * 3_000_000 if wrapping == "gzip-blank" else b""
        packed = gzip.compress(data + blank)
        path.write_bytes(packed[: len(packed) // 2] if wrapping == "gzip-cut" else packed)
    return path


def _read_with_limits(path: str) -> str:
    from signals_app.validation.readers import UnreadableFile
    from signals_app.validation.validate import Options, validate_file

    try:
        summary = validate_file(path, Options(), workers=1)
    except UnreadableFile as exc:
        return f"unreadable: {exc}"
    return f"signals {summary.signals} rejected {summary.rejected}"


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    layout=st.sampled_from(["ndjson", "array", "signals", "csv"]),
    depth=st.integers(0, 5000),
    digits=st.integers(1, 9000),
    text=st.integers(0, 300_000),
    wrapping=st.sampled_from(["plain", "gzip", "gzip-blank", "gzip-cut"]),
)
def test_hostile_shapes_get_a_verdict_within_the_limits(
    tmp_path: Path, layout: str, depth: int, digits: int, text: int, wrapping: str
) -> None:
    path = _hostile_file(tmp_path, layout, depth, digits, text, wrapping)
    limits = Limits(memory_bytes=512 * 1024**2, cpu_seconds=30)
    # A verdict, never a death, an exhausted limit or an exception of another kind.
    verdict = Forked(_read_with_limits, (str(path),), limits=limits).result(timeout=60)
    if wrapping == "gzip-cut":
        assert verdict.startswith("unreadable: the gzip data is truncated"), verdict
    elif verdict.startswith("signals"):
        assert verdict.startswith("signals 3" if layout != "csv" else "signals 1"), verdict
        if depth > 1024 or digits > 4300:
            assert not verdict.endswith("rejected 0"), verdict
    else:
        assert layout != "ndjson" or wrapping == "gzip-blank", verdict


def test_a_csv_cell_of_json_past_a_limit_is_a_finding_at_its_field(tmp_path: Path) -> None:
    from signals_app.validation.validate import Options, validate_file

    deep = "[" * 2000 + "]" * 2000
    long_number = '[{"productId": "p", "productName": "n", "unitPrice": ' + "9" * 5000 + "}]"
    rows = [
        "appKey,identifiableAttributes.email,signalContent.signalType,signalContent.currency,"
        "signalContent.orderId,signalContent.orderedItems",
        f'k,a@b.co,order,USD,o-1,"{deep}"',
        f'k,a@b.co,order,USD,o-2,"{long_number.replace(chr(34), chr(34) * 2)}"',
        'k,a@b.co,order,USD,o-3,"[{""productId"": ""p"", ""productName"": ""n"", '
        '""unitPrice"": 123456789012345678901234567890}]"',
    ]
    path = tmp_path / "cells.csv"
    path.write_text("\n".join(rows) + "\n")
    findings: list[Any] = []
    summary = validate_file(path, Options(), findings.append, workers=1)
    assert (summary.signals, summary.rejected) == (3, 2)
    assert [(f.signal, f.path, f.code) for f in findings] == [
        (0, "signalContent.orderedItems", "too_large"),
        (1, "signalContent.orderedItems", "too_large"),
    ]
    assert "nested more than 1,024 levels deep" in findings[0].message
    assert "a number of 5,000 digits" in findings[1].message


def test_the_keeper_takes_findings_in_pieces_that_cut_lines(tmp_path: Path) -> None:
    """The parallel path hands findings over as NDJSON text a megabyte at a time."""
    keeper = reading._Keeper(tmp_path, budget=10**9)
    text = "".join(
        json.dumps(
            {"signal": n, "line": n + 1, "path": "appKey", "severity": "error",
             "code": "required", "message": "appKey is required"}
        ) + "\n"
        for n in range(100)
    )  # fmt: skip
    for start in range(0, len(text), 37):  # pieces that end inside lines
        keeper.add_json_lines(text[start : start + 37])
    keeper.close()
    assert keeper.findings_stored == 100
    stored = [json.loads(line) for line in keeper.findings_path.read_text().splitlines()]
    assert [f["signal"] for f in stored] == list(range(100))
