"""The sending window (SPEC §6): how many createSignals calls of one send run are in flight
at once, and how fast the window may go.

A send run keeps up to `size` calls going on a pool of threads that only make the HTTP
calls; every ledger write stays with the run's own thread (the claim committed before a
call, the outcome after it), so each batch keeps the guarantees of a one-at-a-time run.
How many calls go at once is bounded three ways: the run's own window (its `Pace`), the
import's (SIGNALS_SEND_WINDOW, across its lanes) and the Connect account's
(`max_batches_in_flight`, across every import and worker) — the last two checked in the
claim itself (`sending._claim`).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


class InlineExecutor(Executor):
    """A window of one: each call is made in the run's own thread, no hand-off."""

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        future: Future[T] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # handed over with the future, as a pool would
            future.set_exception(exc)
        return future


def executor(size: int) -> Executor:
    if size <= 1:
        return InlineExecutor()
    return ThreadPoolExecutor(max_workers=size, thread_name_prefix="send-call")


class Pace:
    """The run's window size and a pause shared by all its slots. Connect answering 429,
    or asking to wait (Retry-After), tells the client and not one batch: the whole window
    holds off until then and halves; each `size` calls accepted in a row grow it back by
    one, up to `limit` (additive increase, multiplicative decrease, as TCP does). Times
    are the caller's clock (seconds, monotonic)."""

    def __init__(self, limit: int) -> None:
        self.limit = max(1, limit)
        self.size = self.limit
        self.paused_until = 0.0
        self._streak = 0

    def slow_down(self, *, until: float) -> None:
        self.paused_until = max(self.paused_until, until)
        self.size = max(1, self.size // 2)
        self._streak = 0

    def accepted(self) -> None:
        if self.size >= self.limit:
            return
        self._streak += 1
        if self._streak >= self.size:
            self.size += 1
            self._streak = 0

    def paused(self, now: float) -> bool:
        return now < self.paused_until
