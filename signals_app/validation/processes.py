"""Forked children, the limits they run under and the counters they share with their parent.

An import's file is read in a child process (and the child's own children, for the parts of
a large file) so that whatever the file does to a reader — a crash in a C extension, memory
running out, a read that never ends — ends that child and becomes the import's verdict,
never the worker's death.
"""

from __future__ import annotations

import contextlib
import functools
import mmap
import os
import pickle
import resource
import select
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Limits:
    """What a child may use. `memory_bytes`: address space beyond the parent's at the fork
    (RLIMIT_AS; a Python process maps much it never touches, so the limit is counted from
    there); `cpu_seconds`: processor time (RLIMIT_CPU; SIGXCPU past it)."""

    memory_bytes: int | None = None
    cpu_seconds: int | None = None


class ChildDied(RuntimeError):
    """The child ended without an answer: killed by a signal, or exited."""

    def __init__(self, status: int) -> None:
        self.signal = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
        self.exit_code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else None
        if self.signal is not None:
            how = f"was killed by signal {signal_name(self.signal)}"
        else:
            how = f"exited with status {self.exit_code}"
        super().__init__(f"a reading process {how} without an answer")


class TimedOut(RuntimeError):
    """The child did not answer in time; it has been killed."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        super().__init__(f"a reading process gave no answer within {seconds:.0f} s")


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)


class Forked(Generic[T]):
    """`function(*args)` in a forked child, its result (or exception) pickled back through
    a pipe. Plain os.fork rather than multiprocessing: a daemonic process — a Celery
    prefork pool child, where imports are validated — may not start multiprocessing
    children, and forking also spares the child importing the code again. The child
    leaves with os._exit, so it never runs the parent's exit handlers (nor closes its
    database connection, which the child shares: it must never use it).

    The child dies with the parent: a Celery hard time limit SIGKILLs the parent, which
    then cannot stop its children, and they would run on for nothing."""

    def __init__(
        self, function: Callable[..., T], args: tuple[Any, ...], limits: Limits | None = None
    ) -> None:
        prctl = _prctl()  # looked up before forking: the child only calls it
        parent = os.getpid()
        memory = _address_space() + limits.memory_bytes if limits and limits.memory_bytes else 0
        read_end, write_end = os.pipe()
        try:
            pid = os.fork()
        except BaseException:
            os.close(read_end)
            os.close(write_end)
            raise
        if pid == 0:  # the child
            status = 0
            try:
                if prctl is not None:
                    prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
                if os.getppid() != parent:  # the parent died before the request took
                    os._exit(1)
                os.close(read_end)
                # The parent's handlers are not the child's: a Celery pool child turns
                # SIGXCPU, SIGTERM and others into SystemExit, which would come back to
                # the parent pickled and end it. The child dies of them, as it should.
                for number in _DEFAULT_SIGNALS:
                    signal.signal(number, signal.SIG_DFL)
                if memory:
                    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
                if limits is not None and limits.cpu_seconds:
                    # SIGXCPU at the soft limit; the hard one, a little later, is SIGKILL.
                    cpu = limits.cpu_seconds
                    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 5))
                try:
                    payload = pickle.dumps((True, function(*args)))
                except BaseException as exc:
                    if memory and not isinstance(exc, MemoryError) and _peak_near(memory):
                        # At its memory limit, a C extension may fail otherwise than with
                        # MemoryError (orjson: SystemError); the cause is the memory.
                        exc = MemoryError(f"at the memory limit: {exc!r}")
                    status = 1
                    try:
                        payload = pickle.dumps((False, exc))
                    except Exception:
                        payload = pickle.dumps((False, RuntimeError(repr(exc))))
                with os.fdopen(write_end, "wb") as out:
                    out.write(payload)
            finally:
                os._exit(status)
        os.close(write_end)
        self.pid = pid
        self._read_end = read_end
        self._reaped = False

    def result(self, timeout: float | None = None) -> T:
        """The child's return value, or its exception raised here; ChildDied when it ended
        without either, TimedOut (the child killed) when `timeout` seconds pass first."""
        read_end, self._read_end = self._read_end, -1
        deadline = None if timeout is None else time.monotonic() + timeout
        chunks: list[bytes] = []
        try:
            while True:
                if deadline is not None:
                    left = deadline - time.monotonic()
                    if left <= 0 or not select.select([read_end], [], [], left)[0]:
                        self.kill()
                        raise TimedOut(cast(float, timeout))
                chunk = os.read(read_end, 1 << 20)
                if not chunk:
                    break
                chunks.append(chunk)
        finally:
            os.close(read_end)
        _pid, status = os.waitpid(self.pid, 0)
        self._reaped = True
        payload = b"".join(chunks)
        if not payload:
            raise ChildDied(status)
        ok, value = pickle.loads(payload)
        if not ok:
            if isinstance(value, Exception):
                raise value
            # SystemExit, KeyboardInterrupt: the child's, never to end this process.
            raise RuntimeError(f"the child process stopped on {value!r}")
        return cast(T, value)

    def kill(self) -> None:
        if self._reaped:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)
        if self._read_end >= 0:
            os.close(self._read_end)
            self._read_end = -1
        self._reaped = True


def _peak_near(limit: int, margin: int = 32 * 1024**2) -> bool:
    """Whether this process's peak virtual size came within `margin` of `limit`."""
    try:
        with open("/proc/self/status") as status:
            for text in status:
                if text.startswith("VmPeak:"):
                    return int(text.split()[1]) * 1024 >= limit - margin
    except (OSError, ValueError, IndexError):
        pass
    return False


def _address_space() -> int:
    """This process's virtual size in bytes (Linux), 0 where unknown."""
    try:
        with open("/proc/self/statm") as statm:
            pages = int(statm.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 0
    return pages * mmap.PAGESIZE


_DEFAULT_SIGNALS = tuple(
    getattr(signal, name)
    for name in (
        "SIGXCPU", "SIGXFSZ", "SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2",
        "SIGALRM", "SIGVTALRM", "SIGPROF",
    )
    if hasattr(signal, name)
)  # fmt: skip
_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>: a signal for the process when its parent dies


@functools.cache
def _prctl() -> Callable[..., int] | None:
    """libc's prctl, or None where there is none (not Linux)."""
    try:
        import ctypes  # here: only forking needs it, and the command line starts faster

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError, TypeError):
        return None
    prctl.argtypes = [ctypes.c_int] + [ctypes.c_ulong] * 4
    prctl.restype = ctypes.c_int
    return cast(Callable[..., int], prctl)


class ReadCounters:
    """Bytes and signals read so far, in memory shared with forked children and theirs
    (an anonymous shared mapping survives fork), so a parent can show the progress of
    readers it cannot otherwise see. Slot 0 is a single reader's; slots 1.. are the parts
    of a file read in parallel. Aligned 8-byte words: a read never sees half a write."""

    SLOTS = 65

    def __init__(self) -> None:
        self._map = mmap.mmap(-1, 16 * self.SLOTS)
        self._words = memoryview(self._map).cast("q")

    def set(self, slot: int, bytes_read: int, signals: int) -> None:
        if 0 <= slot < self.SLOTS:
            self._words[2 * slot] = bytes_read
            self._words[2 * slot + 1] = signals

    def totals(self) -> tuple[int, int]:
        words = self._words.tolist()
        return sum(words[0::2]), sum(words[1::2])

    def clear(self) -> None:
        self._map[:] = bytes(len(self._map))
