"""The files split over several processes give exactly the report of the single pass: the
same findings in the same order, the same summary, or the same refusal."""

from __future__ import annotations

import json
import os
import signal
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from signals_app.validation import processes, validate
from signals_app.validation.findings import ERROR, Code, Finding, Issue, Summary
from signals_app.validation.processes import ChildDied
from signals_app.validation.readers import UnreadableFile
from signals_app.validation.report import FindingBuffer
from signals_app.validation.validate import Options, validate_file
from tests.test_cli import order

BOM = b"\xef\xbb\xbf"

Outcome = tuple[list[Any], Summary | None, str | None]


def page_view(**content: Any) -> dict[str, Any]:
    return {
        "appKey": "app-key-1",
        "identifiableAttributes": {"contactKey": "AAUN-132417508"},
        "signalContent": {"signalType": "pageView", "url": "https://www.example.com/"} | content,
    }


def mixed_records(count: int) -> list[dict[str, Any]]:
    """Clean signals with errors and warnings spread over the whole file."""
    records: list[dict[str, Any]] = []
    for i in range(count):
        if i % 7 == 0:
            records.append(order(currency="usd"))
        elif i % 11 == 0:
            records.append(page_view() | {"unknown": i})
        elif i % 13 == 0:
            records.append(page_view(url=" "))
        elif i % 17 == 0:
            record = order()
            record["identifiableAttributes"] = {"sms": "+1234"}
            records.append(record)
        elif i % 19 == 0:
            records.append(order(orderedItems=[{"productId": "A", "productName": "B"}]))
        elif i % 2:
            records.append(page_view())
        else:
            records.append(order())
    return records


def outcome(path: Path, workers: int, *, line_sink: bool = False) -> Outcome:
    """Findings (as NDJSON objects), summary, or the refusal's message."""
    buffer = FindingBuffer()
    found: list[Finding] = []
    sink: Callable[[Finding], None] = buffer if line_sink else found.append
    try:
        summary = validate_file(path, Options(), sink, workers=workers, parallel_min_bytes=0)
    except UnreadableFile as exc:
        buffer.close()
        return [], None, f"{type(exc).__name__}: {exc}"
    lines = [json.loads(line) for line in buffer.lines()]
    buffer.close()
    return (lines if line_sink else [f.as_dict() for f in found]), summary, None


@pytest.fixture
def went_parallel(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Records, per run, whether the parts gave the report (True) or the file took the
    single pass after all (False)."""
    runs: list[bool] = []
    original = validate._validate_parallel

    def spy(*args: Any, **kwargs: Any) -> Summary | None:
        summary = original(*args, **kwargs)
        runs.append(summary is not None)
        return summary

    monkeypatch.setattr(validate, "_validate_parallel", spy)
    return runs


def assert_same(path: Path) -> Outcome:
    single = outcome(path, 1)
    assert outcome(path, 2) == single
    assert outcome(path, 2, line_sink=True) == single
    assert outcome(path, 3) == single
    return single


# --- NDJSON ------------------------------------------------------------------------------


def ndjson_lines(records: list[dict[str, Any]]) -> list[bytes]:
    return [json.dumps(r).encode() for r in records]


@pytest.mark.parametrize("newline", [b"\n", b"\r\n"])
def test_ndjson_parts_give_the_single_pass_report(
    tmp_path: Path, newline: bytes, went_parallel: list[bool]
) -> None:
    lines = ndjson_lines(mixed_records(2000))
    lines.insert(900, b"")
    lines.insert(1001, b"   ")
    lines.insert(1500, b"{broken")
    # Lone surrogate escapes: JSON's grammar takes them, no text holds them.
    lines.insert(1700, b'{"appKey": "k", "signalContent": {"signalTimestamp": "\\ud800"}}')
    lines.insert(1800, b'{"identifiableAttributes": {"email": "\\udc00@example.com"}}')
    path = tmp_path / "signals.ndjson"
    path.write_bytes(BOM + newline.join(lines) + newline)
    findings, summary, error = assert_same(path)
    assert error is None and summary is not None
    assert summary.signals == 2003 and summary.rejected > 100
    assert {f["line"] for f in findings} >= {1501}
    surrogates = [f for f in findings if "lone UTF-16 surrogate" in f["message"]]
    assert [(f["line"], f["code"]) for f in surrogates] == [(1701, "syntax"), (1801, "syntax")]
    assert went_parallel and all(went_parallel)


def test_ndjson_lines_only_the_standard_library_reads_are_findings(
    tmp_path: Path, went_parallel: list[bool]
) -> None:
    """orjson refuses them, json.loads would take them: such a record would be called
    valid, then fail when sent (or crash the run, nested too deeply)."""
    good = ndjson_lines([page_view()])[0]
    odd = {
        300: good.replace(b'"https://www.example.com/"', b"NaN"),
        400: good.replace(b'"https://www.example.com/"', b"Infinity"),
        500: good.replace(b'"https://www.example.com/"', b"-Infinity"),
        600: BOM + good,  # files joined with cat: the second one's BOM
        700: good.replace(b'"https://www.example.com/"', b"[" * 1100 + b"]" * 1100),
        # Broken as well as deep: orjson refuses it, json.loads runs out of recursion.
        800: good.replace(b'"https://www.example.com/"', b"[" * 5000 + b"]" * 4999),
        900: good.decode().encode("utf-16-le"),  # json.loads would guess UTF-16
    }
    lines = ndjson_lines(mixed_records(1500))
    for number, line in odd.items():
        lines[number - 1] = line
    path = tmp_path / "signals.ndjson"
    path.write_bytes(b"\n".join(lines) + b"\n")
    findings, summary, error = assert_same(path)
    assert error is None and summary is not None and summary.signals == 1500
    found = {f["line"]: f for f in findings if f["line"] in odd}
    codes = dict.fromkeys(odd, "syntax") | {700: "too_large", 800: "too_large"}
    assert {line: f["code"] for line, f in found.items()} == codes
    messages = {line: f["message"] for line, f in found.items()}
    assert "NaN is not a JSON number" in messages[300]
    assert "Infinity is not a JSON number" in messages[400]
    assert "-Infinity is not a JSON number" in messages[500]
    assert "byte order mark" in messages[600]
    deep = "nested more than 1,024 levels deep"
    assert deep in messages[700] and deep in messages[800]
    assert went_parallel and all(went_parallel)


def test_ndjson_refuses_a_line_that_is_not_utf8_in_any_part(tmp_path: Path) -> None:
    lines = ndjson_lines(mixed_records(600))
    lines.insert(450, b'{"appKey": "\xff"}')
    path = tmp_path / "signals.ndjson"
    path.write_bytes(b"\n".join(lines))  # and no final newline
    _, _, error = assert_same(path)
    assert error is not None and "line 451" in error


# --- JSON arrays -------------------------------------------------------------------------


def one_per_line(records: list[Any], *, newline: bytes = b"\n", bom: bool = False) -> bytes:
    body = (b"," + newline).join(json.dumps(r).encode() for r in records)
    return (BOM if bom else b"") + b"[" + newline + body + newline + b"]" + newline


@pytest.mark.parametrize(("newline", "bom"), [(b"\n", False), (b"\r\n", True)])
def test_a_one_per_line_json_array_is_judged_in_parts(
    tmp_path: Path, newline: bytes, bom: bool, went_parallel: list[bool]
) -> None:
    path = tmp_path / "signals.json"
    path.write_bytes(one_per_line(mixed_records(2000), newline=newline, bom=bom))
    findings, summary, error = assert_same(path)
    assert error is None and summary is not None
    assert summary.signals == 2000 and summary.rejected > 100
    assert findings and all("line" not in f for f in findings)  # JSON findings carry no line
    assert went_parallel and all(went_parallel)


def test_brackets_on_the_element_lines_and_blank_lines_are_the_same_layout(
    tmp_path: Path, went_parallel: list[bool]
) -> None:
    lines = [json.dumps(r).encode() for r in mixed_records(1000)]
    text = b"  [" + b",\n".join(lines[:500]) + b",\n\n\n" + b",\n".join(lines[500:]) + b"]  \n\n"
    path = tmp_path / "signals.json"
    path.write_bytes(text)
    assert_same(path)
    assert went_parallel and all(went_parallel)


def test_an_element_that_is_no_object_takes_the_single_pass(
    tmp_path: Path, went_parallel: list[bool]
) -> None:
    records: list[Any] = list(mixed_records(1000))
    records[700] = 42
    path = tmp_path / "signals.json"
    path.write_bytes(one_per_line(records))
    _, summary, _ = assert_same(path)
    assert summary is not None and summary.signals == 1000
    assert went_parallel and not any(went_parallel)


def test_a_pretty_printed_json_array_takes_the_single_pass(
    tmp_path: Path, went_parallel: list[bool]
) -> None:
    path = tmp_path / "signals.json"
    path.write_text(json.dumps(mixed_records(500), indent=2))
    _, summary, _ = assert_same(path)
    assert summary is not None and summary.signals == 500
    assert went_parallel and not any(went_parallel)


def test_an_array_pretty_printed_after_its_first_lines_takes_the_single_pass(
    tmp_path: Path, went_parallel: list[bool]
) -> None:
    records = mixed_records(1000)
    pretty = json.dumps(records[900:], indent=1)[1:].encode()
    path = tmp_path / "signals.json"
    path.write_bytes(one_per_line(records[:900])[:-3] + b",\n" + pretty)
    _, summary, _ = assert_same(path)
    assert summary is not None and summary.signals == 1000
    assert went_parallel and not any(went_parallel)


def broken_arrays() -> dict[str, bytes]:
    good = one_per_line(mixed_records(1000))
    lines = good.split(b"\n")
    two_on_a_line = [*lines[:600], lines[600] + lines[601], *lines[602:]]
    no_comma = [*lines[:600], lines[600].removesuffix(b","), *lines[601:]]
    trailing_comma = [*lines[:-3], lines[-3] + b",", *lines[-2:]]
    wide = order(orderValue=2**64)
    return {
        "truncated": good[: len(good) // 3 * 2],
        "truncated after an element": good.removesuffix(b"]\n"),
        "text after ]": good + b"oops\n",
        "a second array": good + b"[]\n",
        "two on a line": b"\n".join(two_on_a_line),
        "no comma": b"\n".join(no_comma),
        "trailing comma": b"\n".join(trailing_comma),
        "an integer past 64 bits": good.replace(b"98.44", b"18446744073709551616", 1),
        "one past 64 bits in a bad record": good.replace(
            json.dumps(order(currency="usd")).encode(),
            json.dumps(wide | {"x": 1}).encode(),
            1,
        ),
        "NaN": good.replace(b"98.44", b"NaN", 1),
        "a lone surrogate": good.replace(b"Brush", b"Br\\ud800sh", 1),
        "not UTF-8": good.replace(b"Brush", b"Br\xffsh", 1),
        "a comment": good.replace(b",\n", b", /* c */\n", 1),
    }


@pytest.mark.parametrize("name", list(broken_arrays()))
def test_a_broken_json_array_gets_the_single_pass_report(tmp_path: Path, name: str) -> None:
    path = tmp_path / "signals.json"
    path.write_bytes(broken_arrays()[name])
    _, summary, error = assert_same(path)
    # Records that are valid JSON or only findings of their own: the array is read.
    read = ("two on a line", "a lone surrogate", "an integer past 64 bits", "NaN")
    if name in (*read, "one past 64 bits in a bad record"):
        assert summary is not None and summary.signals == 1000
    else:
        assert error is not None, name  # refused, exactly as the single pass does


# --- CSV ---------------------------------------------------------------------------------

CSV_HEADER = (
    "appKey,identifiableAttributes.email,identifiableAttributes.contactKey,"
    "signalContent.signalType,signalContent.url,signalContent.name,signalContent.orderId,"
    "signalContent.currency,signalContent.orderValue,signalContent.orderedItems,"
    "signalContent.signalTimestamp"
)
ITEMS = '"[{""productId"": ""AC-1"", ""productName"": ""Brush"", ""unitPrice"": 9.49}]"'


def csv_rows(count: int) -> list[str]:
    rows = []
    for i in range(count):
        stamp = "2025-08-31T08:29:30.001Z"
        name = f'"Line one\nline ""{i}"" two,\nthree"' if i % 3 == 0 else f"view {i}"
        if i % 2:
            url = "https://www.example.com/" if i % 13 else " "
            rows.append(f"app-key-1,,AAUN-132417508,pageView,{url},{name},,,,,")
        else:
            currency = "usd" if i % 7 == 0 else "USD"
            value = "many" if i % 11 == 0 else "98.44"
            email = "jane.doe@example.com" if i % 17 else "jane"
            rows.append(
                f"app-key-1,{email},,order,,{name},02937-{i},{currency},{value},{ITEMS},{stamp}"
            )
        if i % 97 == 0:
            rows.append(",,,,,,,,,,")  # no cell filled: skipped, not a signal
        if i % 89 == 0:
            rows.append("")
    return rows


@pytest.mark.parametrize("count", [400, 401, 777, 1500])
@pytest.mark.parametrize(("newline", "bom"), [("\n", False), ("\r\n", True)])
def test_csv_parts_give_the_single_pass_report(
    tmp_path: Path, count: int, newline: str, bom: bool, went_parallel: list[bool]
) -> None:
    text = newline.join([CSV_HEADER, *csv_rows(count)]) + newline
    path = tmp_path / "signals.csv"
    path.write_bytes((BOM if bom else b"") + text.encode())
    findings, summary, error = assert_same(path)
    assert error is None and summary is not None
    assert summary.signals == count and summary.rejected > count // 10
    assert max(f["line"] for f in findings) > text.count("\n") // 2
    assert went_parallel and all(went_parallel)


def test_csv_split_inside_quoted_cells_everywhere(tmp_path: Path) -> None:
    """Every split point tried lands near a cell of many lines with doubled quotes."""
    cells = ['"' + 'a""b' * 3 + "\n" * (1 + i % 5) + 'x"' for i in range(300)]
    rows = [
        f"app-key-1,,K-{i},pageView,https://x.example/,{cell},,,,," for i, cell in enumerate(cells)
    ]
    for cut in range(250, 300, 7):
        path = tmp_path / f"signals-{cut}.csv"
        path.write_text("\n".join([CSV_HEADER, *rows[:cut]]) + "\n")
        _, summary, error = assert_same(path)
        assert error is None and summary is not None and summary.signals == cut


def test_a_stray_quote_in_an_unquoted_cell_still_gives_the_single_pass_report(
    tmp_path: Path,
) -> None:
    rows = csv_rows(600)
    rows[10] = rows[10].replace("view 10", 'Pan 10" wide')
    path = tmp_path / "signals.csv"
    path.write_text("\n".join([CSV_HEADER, *rows]) + "\n")
    _, summary, error = assert_same(path)
    assert error is None and summary is not None and summary.signals == 600


@pytest.mark.parametrize(
    "damage",
    [
        lambda text: text + 'app-key-1,,K,pageView,"never closed\n',
        lambda text: text.replace("view 301", "view \udcff"),
        lambda text: text.replace("view 301", 'vi"ew" 301'),
    ],
    ids=["an unclosed quote at the end", "not UTF-8 in the second half", "a bad quote"],
)
def test_a_broken_csv_gets_the_single_pass_refusal(
    tmp_path: Path, damage: Callable[[str], str]
) -> None:
    text = damage("\n".join([CSV_HEADER, *csv_rows(600)]) + "\n")
    path = tmp_path / "signals.csv"
    path.write_bytes(text.encode(errors="surrogateescape"))
    assert_same(path)


def test_a_csv_of_only_a_header_or_only_blank_rows(tmp_path: Path) -> None:
    path = tmp_path / "signals.csv"
    path.write_text(CSV_HEADER + "\n" + "\n" * 50 + ",,,,,,,,,,\n" * 50)
    _, summary, error = assert_same(path)
    assert summary is None
    assert error == "UnreadableFile: the CSV has its header row but no signals in the rows after it"


def _validate_in_daemon(path: str, results: Any) -> None:
    forks = []
    os.register_at_fork(after_in_parent=lambda: forks.append(1))
    try:
        summary = validate_file(path, Options(), workers=2, parallel_min_bytes=0)
        results.put(("ok", summary.as_dict(), len(forks)))
    except BaseException as exc:  # report anything to the parent
        results.put(("error", repr(exc), len(forks)))


def test_a_daemonic_process_still_splits_the_file_over_processes(tmp_path: Path) -> None:
    # Celery's prefork pool children are daemonic: multiprocessing refuses them children,
    # so the parts are plain forks.
    import multiprocessing

    path = tmp_path / "signals.ndjson"
    path.write_text("\n".join(['{"appKey": "k"}'] * 50) + "\n")
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    child = context.Process(target=_validate_in_daemon, args=(str(path), results), daemon=True)
    child.start()
    child.join(timeout=60)
    status, value, forks = results.get(timeout=5)
    assert status == "ok", value
    assert value["signals"] == 50
    assert forks == 2


def _part_that_fails(path: str, number: int, *args: Any) -> Any:
    raise ValueError(f"part {number} of {path} broke")


def _part_that_dies(path: str, number: int, *args: Any) -> Any:
    os.kill(os.getpid(), signal.SIGKILL)


def test_a_part_that_raises_raises_in_the_parent(tmp_path: Path) -> None:

    with pytest.raises(ValueError, match="part 0 of x broke"):
        validate._run_parts(Path("x"), _part_that_fails, [0, 5, 10], (), Options(), None, 0)


def test_a_part_whose_process_dies_is_an_error_not_a_hang(tmp_path: Path) -> None:

    with pytest.raises(ChildDied, match="was killed by signal SIGKILL without an answer"):
        validate._run_parts(Path("x"), _part_that_dies, [0, 5, 10], (), Options(), None, 0)


@pytest.fixture
def temp_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where tempfile puts what it makes during the test (instead of /tmp)."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def _part_that_writes_then_fails(
    path: str, number: int, start: int, end: int, options: Options, folder: str
) -> Any:
    writer = validate._FindingWriter(folder)
    writer.write(0, 1, Issue("", ERROR, Code.SYNTAX, "found before the part broke"))
    writer.close()
    if number > 0:
        time.sleep(60)  # still running when part 0 fails: the parent kills it
    deadline = time.monotonic() + 10
    while len(os.listdir(folder)) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)  # until the other parts have their files too
    raise ValueError("part 0 broke after writing findings")


def test_parts_that_fail_or_are_killed_leave_no_files(temp_folder: Path) -> None:
    with pytest.raises(ValueError, match="part 0 broke"):
        validate._run_parts(
            Path("x"), _part_that_writes_then_fails, [0, 5, 10, 15], (), Options(), None, 0
        )
    assert list(temp_folder.iterdir()) == []


def test_parts_that_succeed_leave_no_files(tmp_path: Path, temp_folder: Path) -> None:
    path = tmp_path / "signals.ndjson"
    path.write_bytes(b"\n".join(ndjson_lines(mixed_records(300))) + b"\n")
    findings, summary, _ = outcome(path, 2)
    assert summary is not None and findings
    assert list(temp_folder.iterdir()) == []


def _part_that_sleeps(*args: Any) -> Any:
    time.sleep(60)


def _living_children(parent: int) -> set[int]:
    """The processes whose parent is `parent`, zombies left out, from /proc; not
    multiprocessing's resource tracker, which lives as long as the test process once a
    test has used a spawn context (the Attentive rate tests do)."""
    from multiprocessing import resource_tracker

    tracker = getattr(resource_tracker._resource_tracker, "_pid", None)
    children = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit() and _ppid_if_alive(int(entry)) == parent and int(entry) != tracker:
            children.add(int(entry))
    return children


def _ppid_if_alive(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()  # after the command's name: state, ppid
    return None if len(fields) < 2 or fields[0] in ("Z", "X") else int(fields[1])


def test_the_parts_die_with_a_parent_that_is_killed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, temp_folder: Path
) -> None:
    """A Celery hard time limit SIGKILLs the process validating: its parts must not run on.
    (Its run's folder stays: nothing is left to remove it; temp_folder keeps it out of
    /tmp.)"""
    if processes._prctl() is None:
        pytest.skip("NOT TESTED: no prctl(PR_SET_PDEATHSIG) here (Linux only); parts outlive")
    path = tmp_path / "signals.ndjson"
    path.write_bytes(b"\n".join(ndjson_lines(mixed_records(300))) + b"\n")
    monkeypatch.setattr(validate, "_validate_ndjson_part", _part_that_sleeps)
    parent = os.fork()
    if parent == 0:  # the process validating, which the test kills
        try:
            validate_file(path, Options(), workers=2, parallel_min_bytes=0)
        finally:
            os._exit(0)
    parts: set[int] = set()
    try:
        deadline = time.monotonic() + 30
        while len(parts) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
            parts = _living_children(parent)
        assert len(parts) == 2
    finally:
        os.kill(parent, signal.SIGKILL)
        os.waitpid(parent, 0)
    try:
        deadline = time.monotonic() + 10
        while any(_ppid_if_alive(part) is not None for part in parts):
            assert time.monotonic() < deadline, "the parts outlived their parent"
            time.sleep(0.02)
    finally:
        for part in parts:  # only when they outlived it
            if _ppid_if_alive(part) is not None:
                os.kill(part, signal.SIGKILL)


def test_a_fork_that_fails_stops_the_parts_started_and_leaks_no_pipe(
    monkeypatch: pytest.MonkeyPatch, temp_folder: Path
) -> None:
    real_fork = os.fork
    forks = 0

    def fork_once() -> int:
        nonlocal forks
        forks += 1
        if forks > 1:
            raise BlockingIOError(11, "Resource temporarily unavailable")
        return real_fork()

    open_fds = set(os.listdir("/proc/self/fd"))
    monkeypatch.setattr(os, "fork", fork_once)
    with pytest.raises(BlockingIOError):
        validate._run_parts(Path("x"), _part_that_sleeps, [0, 5, 10], (), Options(), None, 0)
    assert forks == 2
    assert _living_children(os.getpid()) == set()  # the first part was killed and reaped
    assert set(os.listdir("/proc/self/fd")) == open_fds
    assert list(temp_folder.iterdir()) == []


SURROGATE_MESSAGE = "the record is not valid JSON: it holds a \\u escape of a lone UTF-16 surrogate"


@pytest.mark.parametrize("layout", ["ndjson", "array per line", "array on one line", "wrapped"])
@pytest.mark.parametrize("workers", [1, 2])
def test_a_lone_surrogate_escape_is_a_syntax_finding_in_every_json_layout(
    tmp_path: Path, layout: str, workers: int
) -> None:
    """Deep in a signal (a custom attribute's value, in a list) as at its top: the escape
    stands for no character, so the signal is rejected, never sent with a "?" for it."""
    records = [json.dumps(page_view()).encode() for _ in range(3000)]
    records[1200] = records[1200].replace(b'"url"', b'"signalCustomAttributes": [{"name": "v", '
                                          b'"value": "a\\ud800b"}], "url"')  # fmt: skip
    records[2500] = records[2500].replace(b'"appKey": "', b'"appKey": "\\udfff')
    body = {
        "ndjson": b"\n".join(records) + b"\n",
        "array per line": b"[\n" + b",\n".join(records) + b"\n]\n",
        "array on one line": b"[" + b",".join(records) + b"]",
        "wrapped": b'{"signals": [\n' + b",\n".join(records) + b"\n]}\n",
    }[layout]
    path = tmp_path / ("signals.ndjson" if layout == "ndjson" else "signals.json")
    path.write_bytes(body)
    found: list[Finding] = []
    summary = validate_file(path, sink=found.append, workers=workers, parallel_min_bytes=1)
    assert summary.rejected == 2
    assert [(f.signal, f.code) for f in found] == [(1200, "syntax"), (2500, "syntax")]
    assert all(f.message.startswith(SURROGATE_MESSAGE) for f in found)
