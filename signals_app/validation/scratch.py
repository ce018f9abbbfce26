"""Scratch folders of a validation run (the parts' findings, the reader's output), named
after the process that owns them and removes them when the run ends, whatever happens.

A process killed outright (a worker's pool child under SIGKILL, a reader child past its
memory limit) cleans up nothing: `sweep` removes the folders whose owner is gone. The owner
is told by its pid and the time it started (pids are reused), read from /proc; elsewhere
by the pid alone. Folders without an owner in their name (made before this module) are
removed once a day old.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PREFIX = "connectadmin-"
KINDS = ("parts", "validate", "files")  # files: connectadmin.files.local_path's copies
_TAGGED = re.compile(rf"{PREFIX}(?:{'|'.join(KINDS)})-(\d+)\.(\d+)-")
UNTAGGED_AFTER_SECONDS = 24 * 3600


def _started(pid: int) -> str | None:
    """The process's start time in clock ticks since boot ("0" without /proc); None when
    there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        if Path("/proc/self/stat").exists():
            return None  # Linux: no such process
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass  # someone else's: alive
        return "0"
    except OSError:
        return None
    # Field 22 (starttime), counted after the command name, which may hold spaces.
    return stat.rpartition(")")[2].split()[19]


def make(kind: str) -> str:
    """A new scratch folder of this process, e.g. /tmp/connectadmin-parts-4711.123456-x1y2."""
    pid = os.getpid()
    return tempfile.mkdtemp(prefix=f"{PREFIX}{kind}-{pid}.{_started(pid) or 0}-")


@contextmanager
def folder(kind: str) -> Iterator[str]:
    """`make(kind)`, removed with all it holds when the block ends."""
    path = make(kind)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def sweep(under: str | Path | None = None, *, now: float | None = None) -> list[Path]:
    """Remove the scratch folders under `under` (the temp directory) whose owner is gone;
    the ones removed."""
    now = time.time() if now is None else now
    removed = []
    with os.scandir(under or tempfile.gettempdir()) as entries:
        for entry in entries:
            if not entry.name.startswith(PREFIX) or not entry.is_dir(follow_symlinks=False):
                continue
            tagged = _TAGGED.match(entry.name)
            if tagged:
                current = _started(int(tagged[1]))
                gone = current is None or (tagged[2] != "0" and current != tagged[2])
            elif entry.name.startswith(tuple(f"{PREFIX}{kind}-" for kind in KINDS)):
                try:
                    modified = entry.stat(follow_symlinks=False).st_mtime
                except FileNotFoundError:
                    continue
                gone = modified < now - UNTAGGED_AFTER_SECONDS
            else:
                continue
            if gone:
                shutil.rmtree(entry.path, ignore_errors=True)
                removed.append(Path(entry.path))
    return removed
