from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.exports.sshd import Sshd, running_sshd
from tests.sandbox.support import Sandbox, running_sandbox


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[Sandbox]:
    """A real `python -m sandbox serve` process (Connect's GraphQL and SFTP)."""
    with running_sandbox(tmp_path / "sandbox") as running:
        yield running


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[Sshd]:
    """OpenSSH's sshd with internal-sftp on a loopback port."""
    with running_sshd(tmp_path / "sshd") as running:
        yield running
