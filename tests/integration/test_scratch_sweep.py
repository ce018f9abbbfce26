"""A worker starting on a machine removes the scratch folders that validation runs of
processes now dead left in its temp directory (signals_app.validation.scratch): a pool
child killed mid-validation cleans up nothing."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.conftest import Workers

# The worker writes its heartbeats into the test database: emptied after the test, as
# every test with real workers does, or later tests would see a stopped worker.
pytestmark = pytest.mark.django_db(transaction=True)


def test_a_starting_worker_sweeps_what_dead_validation_runs_left(
    workers: Workers, tmp_path: Path
) -> None:
    temp = tmp_path / "tmp"
    temp.mkdir()
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    left = temp / f"connectadmin-parts-{gone.pid}.4242-k1ll3d"
    (left / "part-0.ndjson").parent.mkdir()
    (left / "part-0.ndjson").write_text('{"signal": 1}\n')
    kept = temp / "someone-elses-folder"
    kept.mkdir()
    workers.env["TMPDIR"] = str(temp)
    workers.start()
    deadline = time.monotonic() + 20
    while left.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not left.exists(), workers.log_text()
    assert kept.exists()
    assert f"removed {left}: its validation run's process is gone" in workers.log_text()
