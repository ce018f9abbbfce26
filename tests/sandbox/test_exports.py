"""exportSignals: argument checks, daily limits, the files and their expiry."""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.sandbox.support import (
    PRO_KEY,
    ULTIMATE_EMAIL,
    ULTIMATE_KEY,
    Sandbox,
    signal,
)
from tests.seed_examples import SEEDS_DIR

SEED_003 = SEEDS_DIR / "003_70dd8bf3449407ac.txt"
EXPORT = """
mutation($name: String!, $types: [String!]!, $start: String!, $end: String!,
         $to: ExportTargetInput, $notify: [NotificationInput!]) {
  exportSignals(jobName: $name,
                export: {signals: {signalTypes: $types, timestampStart: $start,
                                   timestampEnd: $end}},
                notifications: $notify, to: $to) {
    dataJobId path fileFormat
  }
}
"""


def _window() -> tuple[str, str]:
    now = datetime.now(UTC)
    return (now - timedelta(hours=1)).isoformat(), (now + timedelta(hours=1)).isoformat()


def export(
    sandbox: Sandbox, name: str, types: list[str] | None = None, api_key: str = ULTIMATE_KEY,
    **variables: Any,
) -> dict[str, Any]:  # fmt: skip
    start, end = _window()
    values = {
        "name": name,
        "types": ["order"] if types is None else types,
        "start": start,
        "end": end,
    } | variables
    response = sandbox.graphql(EXPORT, values, api_key=api_key)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def error_of(body: dict[str, Any]) -> tuple[str, str]:
    error = body["errors"][0]
    return error["extensions"]["field"], error["extensions"]["code"]


def test_export_arguments_are_checked(sandbox: Sandbox) -> None:
    sftp = {"sftp": {"parentFolder": "Export/Signals/Test"}}
    cases: list[tuple[dict[str, Any], str]] = [
        ({"name": "  "}, "jobName"),
        ({"types": []}, "export.signals.signalTypes"),
        ({"types": ["order", "emailOpen", "fax"]}, "export.signals.signalTypes[2]"),
        ({"start": "yesterday"}, "export.signals.timestampStart"),
        ({"start": "2025-08-02T00:00:00Z", "end": "2025-08-01T00:00:00Z"},
         "export.signals.timestampStart"),
        ({"notify": [{"channel": "EMAIL", "destination": "[email protected]"}]},
         "notifications[0].destination"),
        ({"to": {"sftp": {"parentFolder": "Reports/Signals"}}}, "to.sftp.parentFolder"),
        ({"to": {"sftp": {"parentFolder": "Export/Signals/../../etc"}}}, "to.sftp.parentFolder"),
        ({"to": {"sftp": {"parentFolder": "Export/Signals/a;b"}}}, "to.sftp.parentFolder"),
        ({"to": {"sftp": {"parentFolder": "Export/Signals/x", "namingPrefix": "a/b"}}},
         "to.sftp.namingPrefix"),
        ({"to": {"sftp": {"path": "Reports/out.txt"}}}, "to.sftp.path"),
        ({"to": {"sftp": {"path": "../out.csv"}}}, "to.sftp.path"),
        ({"to": {"sftp": {"path": "/abs/out.csv"}}}, "to.sftp.path"),
        ({"to": {"sftp": {"path": "a.csv", "parentFolder": "Export/Signals"}}}, "to.sftp.path"),
        ({"to": {"sftp": {}}}, "to.sftp"),
    ]  # fmt: skip
    for variables, field in cases:
        body = export(sandbox, variables.pop("name", "job"), **variables)
        assert error_of(body)[0] == field, (variables, body)
    # The enum is GraphQL's own check: a request error.
    response = sandbox.graphql(
        EXPORT, {"name": "j", "types": ["order"], "start": _window()[0], "end": _window()[1],
                 "notify": [{"channel": "SMS", "destination": "a@example.com"}]},
    )  # fmt: skip
    assert response.status_code == 400
    # Nothing was queued by any of them.
    assert sandbox.inspect()["counts"]["export_jobs"] == {}
    assert "errors" not in export(sandbox, "fine", to=sftp, notify=[
        {"channel": "EMAIL", "destination": "ops@example.com"}])  # fmt: skip


def test_job_names_and_paths_are_unique(sandbox: Sandbox) -> None:
    assert "errors" not in export(sandbox, "Weekly")
    assert error_of(export(sandbox, "Weekly")) == ("jobName", "BAD_USER_INPUT")
    # Another subscription may use the same name.
    assert "errors" not in export(sandbox, "Weekly", api_key=PRO_KEY)
    to = {"sftp": {"path": "Reports/weekly.csv"}}
    assert export(sandbox, "A", to=to)["data"]["exportSignals"]["path"] == "Reports/weekly.csv.gz"
    assert error_of(export(sandbox, "B", to=to))[0] == "to.sftp.path"


def test_daily_job_limit(sandbox: Sandbox) -> None:
    sandbox.control("settings", {"export_daily_jobs": 2})
    assert "errors" not in export(sandbox, "one")
    assert "errors" not in export(sandbox, "two")
    body = export(sandbox, "three")
    assert error_of(body)[1] == "DAILY_LIMIT_JOBS"
    assert "2 export jobs" in body["errors"][0]["message"]
    # Per subscription: another key still has its 2.
    assert "errors" not in export(sandbox, "one", api_key=PRO_KEY)
    # A new UTC day (the sandbox clock moved on) resets the count.
    sandbox.control("clock", {"offset_seconds": 86400})
    assert "errors" not in export(sandbox, "three")


def test_daily_row_limit_refuses_the_job_that_would_pass_it(sandbox: Sandbox) -> None:
    sandbox.create_signals([signal("order", n=i) for i in range(5)])
    sandbox.control("settings", {"export_daily_rows": 7})
    first = export(sandbox, "five orders")
    assert "errors" not in first
    sandbox.wait_job(first["data"]["exportSignals"]["dataJobId"])
    body = export(sandbox, "five more")  # 5 + 5 > 7
    assert error_of(body)[1] == "DAILY_LIMIT_ROWS"
    assert "would pass 7 rows" in body["errors"][0]["message"]
    usage = sandbox.graphql("{ exportUsage { jobs rows rowLimit } }").json()["data"]
    assert usage["exportUsage"] == {"jobs": 1, "rows": 5, "rowLimit": 7}


def test_daily_byte_limit_refuses_jobs_once_reached(sandbox: Sandbox) -> None:
    sandbox.create_signals([signal("order", n=i) for i in range(5)])
    sandbox.control("settings", {"export_daily_bytes": 100})
    first = export(sandbox, "big")
    job = sandbox.wait_job(first["data"]["exportSignals"]["dataJobId"])
    assert job["sizeBytes"] > 100
    assert error_of(export(sandbox, "after"))[1] == "DAILY_LIMIT_BYTES"


def _seed_columns() -> list[str]:
    text = SEED_003.read_text()
    section = text[text.index("Export data structure") :]
    # Top-level bullets only: the deeper ones are values (CAMPAIGN_STATUS: RUNNING...).
    return re.findall(r"(?m)^  • ([A-Z][A-Z_]+):", section)


def _read_csv(raw: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(gzip.decompress(raw).decode("utf-8"))))


def test_an_export_writes_the_seed_columns_with_the_signals_received(sandbox: Sandbox) -> None:
    # Long enough phases that a poll sees each one even on a busy machine.
    sandbox.control("settings", {"export_delay": 1.0, "export_run_seconds": 2.0})
    sent = [
        signal("order", n=1),
        signal("addToCart", n=2) | {"identifiableAttributes": {"whatsapp": "+14035549090"}},
        signal("pageView", n=3) | {"identifiableAttributes": {"contactKey": "AAUN-132417508"}},
    ]
    ids = sandbox.create_signals(sent).json()["data"]["createSignals"]["signalIds"]
    body = export(sandbox, "funnel", ["order", "addToCart", "emailOpen", "smsClick"])
    created = body["data"]["exportSignals"]
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    assert created["path"].startswith(f"Export/Signals/{today}/Signals_Export_")
    assert created["path"].endswith(".csv.gz") and created["fileFormat"] == "CSV"

    status_query = "query($id: String!) { dataJob(dataJobId: $id) { status } }"
    seen: list[str] = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and (not seen or seen[-1] not in ("COMPLETED", "FAILED")):
        result = sandbox.graphql(status_query, {"id": created["dataJobId"]}).json()
        status = result["data"]["dataJob"]["status"]
        if not seen or seen[-1] != status:
            seen.append(status)
        time.sleep(0.05)
    assert seen == ["QUEUED", "RUNNING", "COMPLETED"]
    job = sandbox.wait_job(created["dataJobId"])
    assert job["expiresAt"] is not None

    file = sandbox.data / "sftp" / ULTIMATE_EMAIL / created["path"]
    rows = _read_csv(file.read_bytes())
    columns = list(rows[0])
    seed_columns = _seed_columns()
    assert len(seed_columns) > 60
    assert set(seed_columns) <= set(columns)
    assert {"EMAIL", "SMS", "WHATSAPP", "CONTACT_KEY"} <= set(columns)

    behavior = [r for r in rows if r["CATEGORY"] == "Behavior"]
    assert {r["SIGNAL_ID"] for r in behavior} == {ids[0], ids[1]}  # pageView not asked for
    by_type = {r["SIGNAL_TYPE"]: r for r in behavior}
    assert json.loads(by_type["order"]["SIGNAL_CONTENT"]) == sent[0]["signalContent"]
    assert by_type["order"]["EMAIL"] == "contact1@example.com"
    assert by_type["addToCart"]["WHATSAPP"] == "+14035549090"
    assert by_type["order"]["ACOUSTIC_APP_KEY"] == "test-app"
    assert by_type["order"]["SIGNAL_GROUP"] == "order"
    marketing = [r for r in rows if r["CATEGORY"] == "Marketing"]
    # A 2-hour window is one day: 2 generated rows per marketing type and day.
    assert sorted(r["SIGNAL_TYPE"] for r in marketing) == ["emailOpen"] * 2 + ["smsClick"] * 2
    assert all(r["EMAIL"] for r in marketing if r["SIGNAL_TYPE"] == "emailOpen")
    assert job["rows"] == len(rows) == 6


def test_to_places_the_file_where_asked(sandbox: Sandbox) -> None:
    folder = export(sandbox, "a", to={"sftp": {"parentFolder": "Export/Signals/Funnel",
                                              "namingPrefix": "August_2025_"}})  # fmt: skip
    path = folder["data"]["exportSignals"]["path"]
    assert path.startswith("Export/Signals/Funnel/August_2025_Signals_Export_")
    exact = export(sandbox, "b", to={"sftp": {"path": "Behavior Signals/Order/Demo_Export.csv"}})
    assert exact["data"]["exportSignals"]["path"] == "Behavior Signals/Order/Demo_Export.csv.gz"
    for body in (folder, exact):
        job = sandbox.wait_job(body["data"]["exportSignals"]["dataJobId"])
        assert job["status"] == "COMPLETED"
        assert (sandbox.data / "sftp" / ULTIMATE_EMAIL / job["path"]).is_file()


def test_a_job_can_fail(sandbox: Sandbox) -> None:
    sandbox.faults(export_failure_rate=1.0)
    body = export(sandbox, "doomed")
    job = sandbox.wait_job(body["data"]["exportSignals"]["dataJobId"])
    assert job["status"] == "FAILED" and "export_failure_rate" in job["error"]


def test_files_older_than_28_days_are_removed(sandbox: Sandbox) -> None:
    sandbox.create_signals([signal("order")])
    old = sandbox.wait_job(export(sandbox, "old")["data"]["exportSignals"]["dataJobId"])
    new = sandbox.wait_job(export(sandbox, "new")["data"]["exportSignals"]["dataJobId"])
    root = sandbox.data / "sftp" / ULTIMATE_EMAIL
    old_file, new_file = root / old["path"], root / new["path"]
    # Back-date one file by 29 days: the sweep takes it and leaves the other.
    past = time.time() - 29 * 86400
    os.utime(old_file, (past, past))
    removed = sandbox.control("sweep")["removed"]
    assert removed == [f"{ULTIMATE_EMAIL}/{old['path']}"]
    assert new_file.exists() and not old_file.exists()
    # 27 days on, the new file stays; 29 days on it goes (injectable clock).
    later = (datetime.now(UTC) + timedelta(days=27)).isoformat()
    assert sandbox.control("sweep", {"now": later})["removed"] == []
    sandbox.control("clock", {"offset_seconds": 29 * 86400})
    assert sandbox.control("sweep")["removed"] == [f"{ULTIMATE_EMAIL}/{new['path']}"]
    assert (root / "Export" / "Signals").is_dir()  # the reserved folder itself stays


def test_jobs_are_private_to_their_subscription(sandbox: Sandbox) -> None:
    job_id = export(sandbox, "mine")["data"]["exportSignals"]["dataJobId"]
    query = "query($id: String!) { dataJob(dataJobId: $id) { status } }"
    assert sandbox.graphql(query, {"id": job_id}, api_key=PRO_KEY).json()["data"] == {
        "dataJob": None
    }
    jobs = sandbox.graphql("{ dataJobs { jobName } }").json()["data"]["dataJobs"]
    assert jobs == [{"jobName": "mine"}]
