from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.sandbox.support import Sandbox, running_sandbox


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[Sandbox]:
    """A real `python -m sandbox serve` process on free ports with a fresh data folder."""
    data = tmp_path / "sandbox"
    with running_sandbox(data) as running:
        yield running
