"""Scratch folders of validation runs (signals_app.validation.scratch): named after their
owner process, removed when the run ends, and swept when the owner died without cleaning up
(a worker's pool child killed mid-validation). A worker sweeping as it starts is tested in
tests/integration/test_poison_uploads.py."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from signals_app.validation import scratch


@pytest.fixture
def tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    return tmp_path


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_a_folder_is_named_after_its_owner_and_removed_when_the_block_ends(tmp: Path) -> None:
    with scratch.folder("validate") as path:
        name = Path(path).name
        assert name.startswith(f"connectadmin-validate-{os.getpid()}.")
        (Path(path) / "part-1.ndjson").write_text("x")
        assert scratch.sweep() == []  # its owner is alive: kept
    assert not Path(path).exists()


def test_the_folders_of_a_dead_owner_are_swept_and_the_rest_kept(tmp: Path) -> None:
    mine = Path(scratch.make("parts"))
    dead = tmp / f"connectadmin-parts-{dead_pid()}.12345-abcd"
    (dead / "sub").mkdir(parents=True)
    (dead / "sub" / "findings").write_text("x")
    # A pid used again by another process: the start time tells it from the owner.
    reused = tmp / f"connectadmin-validate-{os.getpid()}.1-efgh"
    reused.mkdir()
    old = tmp / "connectadmin-parts-oldstyle"  # made before owners were named
    old.mkdir()
    os.utime(old, (time.time() - 2 * 86400,) * 2)
    recent = tmp / "connectadmin-validate-recent"
    recent.mkdir()
    other = tmp / "connectadmin-something-else-1.2-x"
    other.mkdir()
    assert sorted(scratch.sweep()) == sorted([dead, reused, old])
    assert mine.exists() and recent.exists() and other.exists()
    assert not dead.exists() and not reused.exists() and not old.exists()


def test_the_validators_parts_use_such_folders(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from signals_app.validation import validate

    made: list[str] = []
    real = scratch.make

    def make(kind: str) -> str:
        made.append(real(kind))
        return made[-1]

    monkeypatch.setattr(scratch, "make", make)
    path = tmp / "signals.ndjson"
    path.write_bytes(b'{"signalType": "order"}\n' * 20_000)
    summary = validate.validate_file(path, workers=2, parallel_min_bytes=1)
    assert summary.signals == 20_000
    assert made and all(Path(p).name.startswith("connectadmin-parts-") for p in made)
    assert not any(Path(p).exists() for p in made)
