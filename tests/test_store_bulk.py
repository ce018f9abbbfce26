"""Findings and rejected records stored in bulk (issue 12): COPY on PostgreSQL,
`executemany` elsewhere, rows straight from the reader's NDJSON files.

The storing tests run both ways on whatever database the run has (`writer`): as the
database is (COPY on PostgreSQL, executemany on SQLite) and with the connection taken for
SQLite (the executemany path, on PostgreSQL too, where CI runs). What is stored is
compared, column by column, with what the bulk_create path this replaced stored
(`_stored_the_old_way`, kept here as it was). Then the reader's side of it: the findings
stored while its follow-up pass runs, and that pass reading only the lines it needs."""

from __future__ import annotations

import gzip
import io
from pathlib import Path
from typing import Any

import orjson
import pytest
from django.contrib.auth import get_user_model
from django.db import connection

from signals_app.models import (
    ImportFinding,
    ImportStatus,
    RejectedSet,
    RejectedSignal,
    SignalImport,
)
from signals_app.services import reading, upload, validation
from signals_app.services.reading import ReadResult
from signals_app.validation.findings import Summary, path_pattern
from signals_app.validation.readers import open_signal_file
from tests.factories import make_app_key

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _imports_dir(settings: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings.IMPORTS_DIR = tmp_path / "imports"
    # The tests call the task's body: nothing queued (the transactional ones would).
    monkeypatch.setattr(upload, "queue_validation", lambda signal_import: None)


@pytest.fixture(params=["as-is", "executemany"])
def writer(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The database's own path, then the executemany path whatever the database (it only
    asks the connection's vendor, as tests/test_sending.py's `leases` does)."""
    if request.param == "executemany":
        monkeypatch.setattr(connection, "vendor", "sqlite")
    return "copy" if connection.vendor == "postgresql" else "executemany"


@pytest.fixture
def app_key() -> Any:
    return make_app_key(key="shop-key", tier="ultimate")


def _import(app_key: Any, name: str = "orders.ndjson", content: bytes = b"{}\n") -> SignalImport:
    user = get_user_model().objects.create_user(username=f"u{SignalImport.objects.count()}")
    return upload.import_create(
        user=user, app_key=app_key, mode="test", upload=io.BytesIO(content), original_name=name
    )


# --- the path this replaced, as it was -----------------------------------------------------


def _clean(text: str, limit: int | None = None) -> str:
    text = text.replace("\x00", "\ufffd")
    return text[:limit] if limit is not None else text


def _stored_the_old_way(import_id: int, result: ReadResult) -> None:
    findings = []
    for line in Path(result.findings_path).read_bytes().splitlines():
        data = orjson.loads(line)
        findings.append(
            ImportFinding(
                signal_import_id=import_id,
                signal=data["signal"],
                line=data["line"],
                path=_clean(data["path"], 500),
                path_pattern=_clean(path_pattern(data["path"]), 500),
                severity=data["severity"],
                code=data["code"][:40],
                message=_clean(data["message"]),
            )
        )
    ImportFinding.objects.bulk_create(findings, batch_size=2000)
    rejected = []
    for line in Path(result.rejected_path).read_bytes().splitlines():
        data = orjson.loads(line)
        rejected.append(
            RejectedSignal(
                signal_import_id=import_id,
                signal=data["signal"],
                line=data["line"],
                raw=data["raw"],
            )
        )
    RejectedSignal.objects.bulk_create(rejected, batch_size=200)
    RejectedSet.objects.create(
        signal_import_id=import_id, flags=result.rejected_flags, count=result.summary.rejected
    )


def _stored(signal_import: SignalImport) -> dict[str, Any]:
    return {
        "findings": list(
            ImportFinding.objects.filter(signal_import=signal_import)
            .order_by("signal", "id")
            .values_list("signal", "line", "path", "path_pattern", "severity", "code", "message")
        ),
        "rejected": list(
            RejectedSignal.objects.filter(signal_import=signal_import)
            .order_by("signal")
            .values_list("signal", "line", "record", "raw")
        ),
        "set": list(
            RejectedSet.objects.filter(signal_import=signal_import).values_list("flags", "count")
        ),
    }


# --- what the reader's files hold at their hardest -----------------------------------------

_AWKWARD = 'tab\there, newline\nthere, CR\r, backslash \\ and \\N, quote ", comma , é ☃ 🦆'


def _findings() -> list[dict[str, Any]]:
    findings: list[dict[str, Any]] = []
    for n in range(23):
        findings.append(
            {
                "signal": n,
                "line": n + 1 if n % 5 else None,  # JSON documents have no lines
                "path": f"signalContent.orderedItems[{n}].unitPrice",
                "severity": "error" if n % 2 else "warning",
                "code": "type",
                "message": f"{_AWKWARD} #{n}",
            }
        )
    findings += [
        {  # NUL in path and message; a path past its column's 500 characters
            "signal": 30,
            "line": 31,
            "path": "signalContent.x\x00y" + "p" * 600 + "[7]",
            "severity": "warning",
            "code": "unknown_field",
            "message": "field \x00 unknown\x00",
        },
        {  # a code past its column's 40 characters; an empty path and message
            "signal": 31,
            "line": 32,
            "path": "",
            "severity": "error",
            "code": "c" * 55,
            "message": "",
        },
        {  # the index cut off by the truncation: the pattern truncated on its own
            "signal": 32,
            "line": 33,
            "path": "q" * 498 + "[12]",
            "severity": "error",
            "code": "required",
            "message": "\\N",
        },
    ]
    return findings


def _rejected() -> list[dict[str, Any]]:
    records = [
        {"signal": n, "line": n + 1, "raw": orjson.dumps({"n": n, "text": _AWKWARD}).decode()}
        for n in range(1, 23, 2)
    ]
    records += [
        {"signal": 31, "line": None, "raw": "\\N"},
        {"signal": 32, "line": 33, "raw": ""},
        {"signal": 40, "line": 41, "raw": "x" * 300_000},  # cut a chunk by its size
        {"signal": 41, "line": 42, "raw": "not json at all\t\\"},
    ]
    return records


def _result(
    folder: Path, findings: list[dict[str, Any]], rejected: list[dict[str, Any]]
) -> ReadResult:
    findings_path, rejected_path = folder / "findings.ndjson", folder / "rejected.ndjson"
    findings_path.write_bytes(b"".join(orjson.dumps(f) + b"\n" for f in findings))
    rejected_path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rejected))
    return ReadResult(
        file_format="ndjson",
        compressed=False,
        summary=Summary(signals=42, rejected=len(rejected)),
        fix_suggestions=[],
        findings_path=str(findings_path),
        rejected_path=str(rejected_path),
        rejected_flags=b"flags",
        findings_stored=len(findings),
        records_stored=len(rejected),
    )


@pytest.mark.parametrize("chunk_rows", [10_000, 4])
def test_bulk_storing_stores_every_column_as_the_old_path_did(
    writer: str,
    app_key: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    chunk_rows: int,
) -> None:
    monkeypatch.setattr(validation, "STORE_CHUNK_ROWS", chunk_rows)
    monkeypatch.setattr(validation, "STORE_CHUNK_BYTES", 100_000)
    result = _result(tmp_path, _findings(), _rejected())
    old, new = _import(app_key), _import(app_key)

    _stored_the_old_way(old.pk, result)
    validation._store(new.pk, result)

    expected, stored = _stored(old), _stored(new)
    assert stored == expected
    # The cleaning the rows went through, spelled out once.
    by_signal = {f[0]: f for f in stored["findings"]}
    assert "\x00" not in by_signal[30][2] and len(by_signal[30][2]) == 500
    assert by_signal[30][3].startswith("signalContent.x\ufffdy") and len(by_signal[30][3]) == 500
    assert by_signal[30][6] == "field \ufffd unknown\ufffd"
    assert by_signal[31][5] == "c" * 40
    assert by_signal[32][3] == "q" * 498 + "[]" and by_signal[32][6] == "\\N"
    assert by_signal[4][3] == "signalContent.orderedItems[].unitPrice"
    assert by_signal[5][1] is None and by_signal[3][6] == f"{_AWKWARD} #3"
    raws = {r[0]: r for r in stored["rejected"]}
    assert raws[31][1:] == (None, None, "\\N") and raws[32][3] == ""
    new.refresh_from_db()
    assert (new.validation_phase, new.rows_to_store) == ("storing", 23 + 3 + 11 + 4)
    assert new.rows_stored == new.rows_to_store


def test_bulk_storing_stores_nothing_for_empty_files(
    writer: str, app_key: Any, tmp_path: Path
) -> None:
    signal_import = _import(app_key)
    validation._store(signal_import.pk, _result(tmp_path, [], []))
    assert _stored(signal_import) == {"findings": [], "rejected": [], "set": [(b"flags", 0)]}


def test_the_progress_moves_while_the_rows_are_stored(
    writer: str, app_key: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(validation, "STORE_CHUNK_ROWS", 5)
    monkeypatch.setattr(validation, "PROGRESS_EVERY_SECONDS", 0)
    signal_import = _import(app_key)
    shown: list[tuple[str, int, int]] = []
    stored_then: list[int] = []
    real_flush = validation._StoreProgress.flush

    def flush(progress: Any) -> None:
        real_flush(progress)
        row = SignalImport.objects.values_list(
            "validation_phase", "rows_stored", "rows_to_store"
        ).get(pk=signal_import.pk)
        shown.append(row)
        stored_then.append(
            ImportFinding.objects.filter(signal_import=signal_import).count()
            + RejectedSignal.objects.filter(signal_import=signal_import).count()
        )

    monkeypatch.setattr(validation._StoreProgress, "flush", flush)
    findings, rejected = _findings(), _rejected()
    total = len(findings) + len(rejected)

    validation._store(signal_import.pk, _result(tmp_path, findings, rejected))

    counts = [stored for _, stored, _ in shown]
    assert all(phase == "storing" and to_store == total for phase, _, to_store in shown)
    assert counts == sorted(counts) and counts[-1] == total
    assert len(set(counts)) >= 5 and 0 < counts[0] < total  # it moved, chunk by chunk
    assert counts == stored_then  # what it shows is what is stored


# --- through the task: the validator's own findings ----------------------------------------


def _awkward_file() -> bytes:
    def signal(n: int, **content: Any) -> dict[str, Any]:
        return {
            "appKey": "shop-key",
            "identifiableAttributes": {"email": f"ann{n}@example.com"},
            "signalContent": {"signalType": "order", "currency": "USD", "orderId": f"o{n}"}
            | content,
        }

    lines = [
        signal(0),
        signal(1, **{"weird\x00field\tname": 1}),  # unknown field: NUL and tab in its path
        signal(2, **{"f" * 700: "long"}),  # a path past 500 characters
        signal(3, currency="usd", note="back\\slash\nnewline\x00nul"),  # a fixable finding
        signal(4, orderedItems=[{"productId": 1}, {"productId": "p", "quantity": "x"}]),
        signal(5, effect="positve\x00"),  # a fix suggestion with a NUL: not offered
        {"appKey": "shop-key", "signalContent": {"signalType": "order"}},  # rejected
    ]
    text = b"".join(orjson.dumps(s) + b"\n" for s in lines)
    return text + b'{"broken": "\\u0000 \t tab\n' + b"\r\n\n" + orjson.dumps(signal(9)) + b"\n"


def test_the_task_stores_what_the_old_path_stored_from_the_same_files(
    writer: str, app_key: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    kept: list[ReadResult] = []
    real_store = validation._store

    def store(import_id: int, result: ReadResult, *args: Any) -> None:
        for name in ("findings_path", "rejected_path"):
            copy = tmp_path / f"kept-{name}"
            copy.write_bytes(Path(getattr(result, name)).read_bytes())
            setattr(result, name, str(copy))
        kept.append(result)
        real_store(import_id, result, *args)

    monkeypatch.setattr(validation, "_store", store)
    signal_import = _import(app_key, content=_awkward_file())
    validation.import_validate(import_id=signal_import.pk)
    signal_import.refresh_from_db()
    assert signal_import.status == ImportStatus.VALIDATED
    assert signal_import.rejected >= 2 and signal_import.warnings >= 2

    old = _import(app_key)
    _stored_the_old_way(old.pk, kept[0])
    assert _stored(signal_import) == _stored(old)
    stored = _stored(signal_import)
    assert len(stored["findings"]) == signal_import.errors + signal_import.warnings
    assert any(len(f[2]) == 500 for f in stored["findings"])
    assert any("\ufffd" in f[2] for f in stored["findings"])
    assert signal_import.rows_stored == signal_import.rows_to_store > 0
    # What the import's row holds as JSON has no NUL either (PostgreSQL's jsonb refuses it).
    assert any("\ufffd" in row["path"] for row in signal_import.problem_counts)
    assert "\\u0000" not in orjson.dumps(signal_import.fix_suggestions).decode()


# --- the reader's follow-up, reading the lines it needs alone ------------------------------


def test_the_follow_up_takes_the_same_records_from_the_lines_it_needs(tmp_path: Path) -> None:
    content = (
        b"\xef\xbb\xbf"  # a BOM, which the reader skips
        + b'{"n": 0}\r\n'
        + b"\n  \n\t\n"
        + b'  {"n": 1}  \n'
        + b"".join(orjson.dumps({"n": n}) + b"\n" for n in range(2, 200))
        + b'{"n": 200}'  # no newline at the end
    )
    path = tmp_path / "f.ndjson"
    path.write_bytes(content)
    with open_signal_file(path) as signal_file:
        records = list(signal_file)
    wanted = [0, 1, 2, 57, 198, 199, 200]
    picked = list(
        reading._lines_of(str(path), [(records[i].line or 0, records[i].index) for i in wanted])
    )
    assert picked == [records[i] for i in wanted]


# --- the validator's findings, stored while the reader's follow-up pass runs ---------------


def _slow_follow_up(monkeypatch: pytest.MonkeyPatch, then: Any = None) -> None:
    """The reader (a forked child, which takes this patch along) waits before its
    follow-up pass, so that the validator's findings are stored meanwhile."""
    real_run = reading._FollowUp.run

    def run(follow_up: Any, *args: Any, **kwargs: Any) -> None:
        import time

        time.sleep(1.0)
        if then is not None:
            raise then
        real_run(follow_up, *args, **kwargs)

    monkeypatch.setattr(reading._FollowUp, "run", run)


def test_findings_stored_while_the_reader_finishes_are_those_the_old_path_stored(
    writer: str, app_key: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _stored_early_and_at_the_end(app_key, monkeypatch, tmp_path, beside=False)


@pytest.mark.django_db(transaction=True)  # a second connection sees committed rows only
def test_rejected_records_stored_beside_the_findings_are_those_the_old_path_stored(
    writer: str, app_key: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # PostgreSQL (COPY) stores them on a connection of the reader's waiting thread.
    _stored_early_and_at_the_end(app_key, monkeypatch, tmp_path, beside=writer == "copy")


def _stored_early_and_at_the_end(
    app_key: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, *, beside: bool
) -> None:
    monkeypatch.setattr(validation, "STORE_CHUNK_ROWS", 2)
    _slow_follow_up(monkeypatch)
    early: list[tuple[int, str, int, int]] = []
    real_findings_if_ready = validation._Storing.findings_if_ready

    def findings_if_ready(storing: Any) -> None:
        real_findings_if_ready(storing)
        if storing.findings_bytes and not early:
            row = SignalImport.objects.values_list(
                "validation_phase", "rows_stored", "rows_to_store"
            ).get(pk=storing.import_id)
            early.append((storing.findings_bytes, *row))

    monkeypatch.setattr(validation._Storing, "findings_if_ready", findings_if_ready)
    kept: list[ReadResult] = []
    stored_beside: list[bool] = []
    real_store = validation._store

    def store(import_id: int, result: ReadResult, storing: Any) -> None:
        stored_beside.append(storing.rejected_stored)
        copies = {}
        for name in ("findings_path", "rejected_path"):
            copies[name] = tmp_path / f"kept-{name}"
            copies[name].write_bytes(Path(getattr(result, name)).read_bytes())
        kept.append(result)
        real_store(import_id, result, storing)
        for name, copy in copies.items():
            setattr(result, name, str(copy))

    monkeypatch.setattr(validation, "_store", store)
    stranger = orjson.loads(_awkward_file().splitlines()[0])
    stranger["appKey"] = "nobody-knows-me"  # a finding the follow-up adds, after the mark
    content = _awkward_file() + orjson.dumps(stranger) + b"\n"
    signal_import = _import(app_key, content=content)

    validation.import_validate(import_id=signal_import.pk)

    signal_import.refresh_from_db()
    assert signal_import.status == ImportStatus.VALIDATED
    size, phase, shown, to_store = early[0]
    assert 0 < shown < kept[0].findings_stored and size > 0  # the follow-up's came after
    assert phase == "storing" and to_store >= shown
    assert stored_beside == [beside]
    old = _import(app_key)
    _stored_the_old_way(old.pk, kept[0])
    assert _stored(signal_import) == _stored(old)
    codes = [f[5] for f in _stored(signal_import)["findings"]]
    assert "unregistered_app_key" in codes
    assert (
        signal_import.rows_stored
        == signal_import.rows_to_store
        == (kept[0].findings_stored + kept[0].records_stored)
    )


def test_a_reader_failing_after_its_findings_were_stored_leaves_none(
    writer: str, app_key: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from signals_app.validation.errors import UnreadableFile

    _slow_follow_up(monkeypatch, then=UnreadableFile("it broke further on"))
    stored_early: list[int] = []
    real_findings_if_ready = validation._Storing.findings_if_ready

    def findings_if_ready(storing: Any) -> None:
        real_findings_if_ready(storing)
        if storing.findings_bytes and not stored_early:
            stored_early.append(
                ImportFinding.objects.filter(signal_import_id=storing.import_id).count()
            )

    monkeypatch.setattr(validation._Storing, "findings_if_ready", findings_if_ready)
    signal_import = _import(app_key, content=_awkward_file())

    validation.import_validate(import_id=signal_import.pk)

    signal_import.refresh_from_db()
    assert stored_early and stored_early[0] > 0
    assert signal_import.status == ImportStatus.UNREADABLE
    assert signal_import.error_message.endswith("It broke further on.")
    assert signal_import.validation_phase == ""
    assert not ImportFinding.objects.filter(signal_import=signal_import).exists()


@pytest.mark.django_db(transaction=True)
def test_a_failure_to_store_the_rejected_records_fails_the_import_keeping_nothing(
    app_key: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing(writer: Any) -> Any:
        def write(model: Any, *args: Any) -> None:
            if model is RejectedSignal:
                raise RuntimeError("the disk is full")
            writer(model, *args)

        return write

    # On PostgreSQL in the reader's waiting thread (see the test above), elsewhere after it.
    monkeypatch.setattr(validation, "_copy_rows", failing(validation._copy_rows))
    monkeypatch.setattr(validation, "_insert_rows", failing(validation._insert_rows))
    signal_import = _import(app_key, content=_awkward_file())

    with pytest.raises(RuntimeError, match="the disk is full"):
        validation.import_validate(import_id=signal_import.pk)

    signal_import.refresh_from_db()
    assert signal_import.status == ImportStatus.FAILED
    assert _stored(signal_import) == {"findings": [], "rejected": [], "set": []}


def test_the_follow_up_keeps_the_same_records_reading_lines_alone_or_every_record(
    app_key: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    calls = tmp_path / "calls"  # the reader is a child process: it tells through a file
    real_lines_of = reading._lines_of

    def lines_of(path: str, wanted: Any) -> Any:
        with calls.open("a") as out:
            out.write(f"{Path(path).name}\n")
        return real_lines_of(path, wanted)

    monkeypatch.setattr(reading, "_lines_of", lines_of)

    def signal(n: int, **content: Any) -> bytes:
        envelope = {
            "appKey": "shop-key" if n % 3 else "",  # a blank key: the scan still vouches
            "identifiableAttributes": {"email": f"ann{n}@example.com"},
            "signalContent": {"signalType": "order", "currency": "USD", "orderId": f"o{n}"}
            | content,
        }
        return orjson.dumps(envelope)

    lines = [signal(n) if n % 4 else signal(n, currency="usd", effect="positve") for n in range(60)]
    content = b"\xef\xbb\xbf" + b"\r\n".join(lines[:30]) + b"\r\n\n \n" + b"\n".join(lines[30:])
    plain = _import(app_key, content=content)  # the follow-up reads the flagged lines alone
    packed = _import(app_key, "orders.ndjson.gz", gzip.compress(content))  # every record
    for signal_import in (plain, packed):
        validation.import_validate(import_id=signal_import.pk)
        signal_import.refresh_from_db()
    assert calls.read_text().split() == [plain.stored_name]
    assert plain.status == packed.status == ImportStatus.VALIDATED
    assert plain.rejected == packed.rejected == 30  # a blank appKey, or a currency "usd"
    assert _stored(plain)["rejected"] == _stored(packed)["rejected"]
    assert _stored(plain)["findings"] == _stored(packed)["findings"]
    assert plain.fix_suggestions == packed.fix_suggestions != []
