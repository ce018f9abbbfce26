"""The validate_signals contract of SPEC §5, end to end: through call_command and through a
real subprocess, on files written to disk."""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command

from signals_app.validation.findings import Finding
from signals_app.validation.validate import Options, validate_file

ROOT = Path(__file__).resolve().parent.parent

FINDING_KEYS_WITH_LINE = ["signal", "line", "path", "severity", "code", "message"]


def order(**content: Any) -> dict[str, Any]:
    signal_content = {
        "signalType": "order",
        "currency": "USD",
        "orderId": "02937-2025-XIA",
        "orderValue": 98.44,
        "orderedItems": [{"productId": "AC-1", "productName": "Brush", "unitPrice": 9.49}],
        "signalTimestamp": "2025-08-31T08:29:30.001Z",
    }
    signal_content.update(content)
    return {
        "appKey": "app-key-1",
        "identifiableAttributes": {"email": "jane.doe@example.com"},
        "sessionId": "SESS-1",
        "signalContent": signal_content,
    }


def page_view() -> dict[str, Any]:
    return {
        "appKey": "app-key-1",
        "identifiableAttributes": {"contactKey": "AAUN-132417508"},
        "signalContent": {"signalType": "pageView", "url": "https://www.example.com/"},
    }


def write_ndjson(path: Path, records: list[Any]) -> Path:
    path.write_bytes(b"".join(json.dumps(r).encode() + b"\n" for r in records))
    return path


def run_command(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("validate_signals", *args, stdout=out, stderr=err)
        code = 0
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    return code, out.getvalue(), err.getvalue()


def run_process(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", "validate_signals", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
        check=False,
    )


def test_a_clean_file_exits_0_with_only_the_summary(tmp_path: Path) -> None:
    path = write_ndjson(tmp_path / "clean.ndjson", [order(), page_view()])
    code, out, err = run_command(str(path))
    assert code == 0
    assert err == ""
    assert [json.loads(line) for line in out.splitlines()] == [
        {"summary": {"signals": 2, "valid": 2, "rejected": 0, "errors": 0, "warnings": 0}}
    ]


def test_a_file_with_rejected_signals_exits_1_with_one_line_per_finding(tmp_path: Path) -> None:
    bad_item = order(orderedItems=[{"productId": "AC-1", "productName": "Brush"}])
    path = write_ndjson(tmp_path / "bad.ndjson", [order(), bad_item, order(extra="x")])
    code, out, _ = run_command(str(path), "--report", "ndjson")
    lines = [json.loads(line) for line in out.splitlines()]
    assert code == 1
    assert lines[0] == {
        "signal": 1,
        "line": 2,
        "path": "signalContent.orderedItems[0].unitPrice",
        "severity": "error",
        "code": "required",
        "message": lines[0]["message"],
    }
    assert list(lines[0]) == FINDING_KEYS_WITH_LINE
    assert lines[1]["signal"] == 2
    assert (lines[1]["path"], lines[1]["severity"], lines[1]["code"]) == (
        "signalContent.extra",
        "warning",
        "unknown_field",
    )
    assert lines[-1] == {
        "summary": {"signals": 3, "valid": 2, "rejected": 1, "errors": 1, "warnings": 1}
    }


def test_json_array_findings_carry_no_line(tmp_path: Path) -> None:
    path = tmp_path / "signals.json"
    path.write_text(json.dumps([order(), order(currency="usd")], indent=2))
    code, out, _ = run_command(str(path))
    first = json.loads(out.splitlines()[0])
    assert code == 1
    assert first["signal"] == 1
    assert "line" not in first
    assert (first["path"], first["code"]) == ("signalContent.currency", "enum")


def test_tier_pro_rejects_premium_types_at_signal_type(tmp_path: Path) -> None:
    path = write_ndjson(tmp_path / "s.ndjson", [page_view(), order()])
    code, out, _ = run_command(str(path), "--tier", "pro")
    finding = json.loads(out.splitlines()[0])
    assert code == 1
    assert (finding["signal"], finding["path"], finding["code"]) == (
        0,
        "signalContent.signalType",
        "not_in_subscription",
    )


def test_app_key_option_fills_missing_app_keys_only(tmp_path: Path) -> None:
    record = order()
    del record["appKey"]
    path = write_ndjson(tmp_path / "s.ndjson", [record])
    assert run_command(str(path))[0] == 1
    code, out, _ = run_command(str(path), "--app-key", "from-the-command-line")
    assert code == 0, out


def test_csv_findings_carry_their_line(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(
            [
                "appKey",
                "identifiableAttributes.email",
                "signalContent.signalType",
                "signalContent.currency",
                "signalContent.orderId",
            ]
        )
        writer.writerow(["k", "jane.doe@example.com", "order", "USD", "o-1"])
        writer.writerow(["k", "jane.doe@example.com", "order", "USD", ""])
    code, out, _ = run_command(str(path))
    finding = json.loads(out.splitlines()[0])
    assert code == 1
    assert (finding["signal"], finding["line"], finding["path"], finding["code"]) == (
        1,
        3,
        "signalContent.orderId",
        "required",
    )


def test_the_text_report_groups_by_field_then_lists_each_finding(tmp_path: Path) -> None:
    records = [order(currency="usd") for _ in range(5)] + [page_view()]
    path = write_ndjson(tmp_path / "shop.ndjson", records)
    code, out, _ = run_command(str(path), "--report", "text")
    assert code == 1
    assert "shop.ndjson: 6 signals" in out
    assert "1 valid, 5 rejected" in out
    assert "signalContent.currency: enum error, 5 times" in out
    assert 'did you mean "USD"?' in out
    assert "identify the contact by contactKey only" in out
    assert out.index("Problems by field") < out.index("All findings")
    assert out.count("error enum at signalContent.currency") == 5


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b'[{"appKey": "k", "identifiableAttributes": {', "ends"),
        (b"\x00\x01\x02\xff\xfe binary garbage", ""),
        (b"42", "top level"),
        (b"", "empty"),
        (b'{"appKey": "k"}\n{"appKey": "\xff"}\n', "UTF-8"),
    ],
)
def test_an_unreadable_file_exits_2_with_one_message(
    tmp_path: Path, content: bytes, reason: str
) -> None:
    path = tmp_path / "broken.json"
    path.write_bytes(content)
    code, out, err = run_command(str(path), "--report", "text")
    assert code == 2
    assert out == ""
    assert str(path) in err
    assert reason in err
    assert len(err.strip().splitlines()) == 1


def test_an_unreadable_file_in_ndjson_mode_prints_only_the_reason_as_json(tmp_path: Path) -> None:
    path = tmp_path / "cut.json.gz"
    path.write_bytes(gzip.compress(json.dumps([order()] * 50).encode())[:-30])
    code, out, err = run_command(str(path))
    assert code == 2
    assert list(json.loads(out)) == ["error"]
    assert str(path) in json.loads(out)["error"]
    assert str(path) in err


def test_a_missing_file_exits_2(tmp_path: Path) -> None:
    code, _, err = run_command(str(tmp_path / "nope.ndjson"), "--report", "text")
    assert code == 2
    assert "nope.ndjson" in err


def test_an_ndjson_line_in_the_middle_that_is_not_json_is_a_finding(tmp_path: Path) -> None:
    path = tmp_path / "s.ndjson"
    path.write_bytes(json.dumps(order()).encode() + b"\n{not json\n" + json.dumps(order()).encode())
    code, out, _ = run_command(str(path))
    finding = json.loads(out.splitlines()[0])
    assert code == 1
    assert (finding["signal"], finding["line"], finding["code"]) == (1, 2, "syntax")


def test_an_ndjson_line_nested_too_deeply_is_a_finding_not_a_traceback(tmp_path: Path) -> None:
    # Broken, so orjson refuses it and the standard library's recursion runs out.
    deep = b'{"appKey": ' + b"[" * 5000 + b"]" * 4999 + b"}"
    path = tmp_path / "s.ndjson"
    path.write_bytes(json.dumps(order()).encode() + b"\n" + deep + b"\n")
    result = run_process(str(path))
    assert result.returncode == 1, result.stderr
    finding, summary = (json.loads(line) for line in result.stdout.splitlines())
    assert (finding["signal"], finding["line"], finding["code"]) == (1, 2, "too_large")
    assert "nested more than 1,024 levels deep" in finding["message"]
    assert summary["summary"]["rejected"] == 1
    assert result.stderr == ""


def test_the_command_runs_as_a_real_process(tmp_path: Path) -> None:
    path = write_ndjson(tmp_path / "s.ndjson", [order(), order(currency="usd")])
    result = run_process(str(path), "--tier", "pro")
    assert result.returncode == 1, result.stderr
    *findings, summary = [json.loads(line) for line in result.stdout.splitlines()]
    assert summary == {
        "summary": {"signals": 2, "valid": 1, "rejected": 1, "errors": 1, "warnings": 0}
    }
    assert findings[0]["code"] == "enum"


def test_a_process_refuses_a_gzip_that_inflates_past_the_cap(tmp_path: Path) -> None:
    path = tmp_path / "bomb.ndjson.gz"
    path.write_bytes(gzip.compress(b"\n" * 200_000))
    result = run_process(str(path), env={"SIGNALS_GZIP_MAX_INFLATED_BYTES": "100000"})
    assert result.returncode == 2
    assert "bomb.ndjson.gz" in result.stderr
    assert "inflates past 97.7 KiB" in result.stderr


@pytest.mark.parametrize("report", ["ndjson", "text"])
def test_manage_py_runs_the_validator_without_django_with_the_same_results(
    tmp_path: Path, report: str
) -> None:
    """manage.py takes a short way for validate_signals (no Django start-up); a Django
    option (--verbosity, --no-color...) sends it through Django's command: both say the same."""
    path = write_ndjson(tmp_path / "s.ndjson", [order(), order(currency="usd"), {"x": 1}])
    fast = run_process(str(path), "--report", report)
    through_django = run_process(str(path), "--report", report, "--verbosity", "1")
    assert fast.returncode == through_django.returncode == 1
    assert fast.stdout == through_django.stdout
    assert "django" not in fast.stderr.lower()
    for option in ("--no-color", "--force-color", "--skip-checks"):  # not the short way's
        other = run_process(str(path), "--report", report, option)
        assert (other.returncode, other.stdout) == (1, fast.stdout), (option, other.stderr)
    unreadable = tmp_path / "garbage.json"
    unreadable.write_bytes(b"\x00\xff[")
    fast, through_django = (
        run_process(str(unreadable), *extra) for extra in ((), ("--verbosity", "1"))
    )
    assert fast.returncode == through_django.returncode == 2
    assert (fast.stdout, fast.stderr) == (through_django.stdout, through_django.stderr)


def test_a_bad_setting_stops_the_short_way_too(tmp_path: Path) -> None:
    path = write_ndjson(tmp_path / "s.ndjson", [order()])
    result = run_process(str(path), env={"SIGNALS_GZIP_MAX_INFLATED_BYTES": "lots"})
    assert result.returncode != 0
    assert "SIGNALS_GZIP_MAX_INFLATED_BYTES='lots' is not a whole number" in result.stderr
    assert result.stdout == ""


def test_parallel_ndjson_gives_the_same_findings_as_one_pass(tmp_path: Path) -> None:
    records: list[Any] = []
    for i in range(3000):
        if i % 7 == 0:
            records.append(order(currency="usd"))
        elif i % 11 == 0:
            records.append(page_view() | {"unknown": i})
        else:
            records.append(order())
    lines = [json.dumps(r).encode() for r in records]
    lines.insert(1500, b"")  # blank lines count for line numbers, not for signals
    lines.insert(2222, b"{broken")
    path = tmp_path / "big.ndjson"
    path.write_bytes(b"\xef\xbb\xbf" + b"\n".join(lines) + b"\n")

    def run(workers: int) -> tuple[list[Finding], dict[str, int]]:
        found: list[Finding] = []
        summary = validate_file(
            path, Options(), found.append, workers=workers, parallel_min_bytes=0
        )
        return found, summary.as_dict()

    assert run(2) == run(1)
    assert run(2)[1]["signals"] == 3001


def test_a_report_of_many_megabytes_comes_out_whole_through_call_command(
    tmp_path: Path,
) -> None:
    # Written a block at a time: Django's OutputWrapper must get whole lines.
    path = write_ndjson(tmp_path / "many.ndjson", [order(currency="usd")] * 12_000)
    code, out, _ = run_command(str(path))
    assert code == 1
    lines = out.splitlines()
    assert len(out) > 2 * 1024**2
    assert len(lines) == 12_001
    assert all(json.loads(line)["code"] == "enum" for line in lines[:-1])
