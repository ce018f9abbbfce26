"""A rate limit held across every worker process, thread and machine (issue 13).

Attentive allows 150 requests per second per token and answers 429 beyond it, counting
the requests as they arrive in each wall-clock second. Celery's `rate_limit` is per worker,
so it cannot keep several workers (or the lanes of one import) under the vendor's limit
together; this module can.

How: GCRA, the generic cell rate algorithm, in its "virtual scheduling" form. Each key
keeps one time, `tat` (the theoretical arrival time of the next permit). A caller asking
for a permit is given the moment `max(tat, now)` and moves `tat` one interval further,
in one atomic step; it then sleeps until its moment and sends. So callers are *paced*,
one interval apart, never refused, and no burst is allowed (a burst of 1): an idle key
does not save up permits to spend at once, because the vendor counts per second.

Where the state lives (same behaviour, same API):

- Redis (`RedisRateLimiter`), when settings.RATE_LIMIT_REDIS_URL names one: a Lua script
  run atomically by Redis, on the Redis server's clock, so every process on every
  machine shares the limit.
- A small file per key under VAR_DIR/ratelimit (`FileRateLimiter`), locked with
  `fcntl.flock`: the embedded default of `make run` (SQLite and the file-system broker,
  one worker with a few pool processes on one machine). The limit holds across the
  processes of that machine only.

The margin: the vendor counts requests as they *arrive*, and network and scheduling
jitter can bring two paced requests closer together than they left. Pacing exactly at
the limit would then put limit + 1 requests into some one-second window now and then.
So permits are spaced for PACE_FRACTION of the limit: the limit + 1 requests around any
window are then spread over 1 / PACE_FRACTION seconds, which absorbs a delay of
(1 / PACE_FRACTION - 1) seconds (42 ms at 0.96) of one request relative to another, while
the rate achieved stays near PACE_FRACTION of the limit, above the 0.95 the issue asks for.
The largest such delay on a busy machine is a sender woken late from its sleep (tens of
milliseconds when the CPUs are taken): a permit used more than LATE_SECONDS after its
moment is given up for a new one, so that part of the delay stays within 10 ms (`permit`
gives the moment, so that a sender handing the request to another thread can check it
again just before the request leaves: signals_app/services/attentive_sending.py). The margin
is measured for the sandbox on loopback; over the internet the vendor may see more jitter
than that now and then, and answers 429, which pauses the key (`pause`).

The key is an API key; only a SHA-256 of it is ever stored (Redis key or file name).
"""

from __future__ import annotations

import abc
import fcntl
import functools
import hashlib
import os
import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

import redis

# Permits are paced at this fraction of the vendor's limit (see the module's docstring):
# at 0.96 a request may arrive up to 42 ms late relative to another without any one-second
# window seeing more than the limit. (At 0.97, 31 ms, CI once saw 152 in a sliding second
# at a limit of 150, four workers and the sandbox sharing two busy cores.)
PACE_FRACTION: Final = 0.96
# A permit is reserved only when it comes within this many seconds. A caller further
# back in the queue (or behind a pause) waits without a reservation and asks again, so a
# pause set meanwhile is honoured and a cancelled caller wastes no permit.
HORIZON_SECONDS: Final = 0.25
# The longest sleep between two looks at `cancelled` while waiting beyond the horizon:
# a cancelled caller stops waiting within HORIZON_SECONDS + POLL_SECONDS.
POLL_SECONDS: Final = 0.25
# A caller woken this much later than its permit's moment (the machine was busy) gives the
# permit up and takes a new one, at most MAX_GIVE_UPS times a call: its request would
# arrive closer to the next ones than the pacing allows, eating the margin above. On a busy
# machine a woken process can wait tens of milliseconds for a CPU.
LATE_SECONDS: Final = 0.010
MAX_GIVE_UPS: Final = 3
# A Retry-After longer than this pauses the key for this long only (a vendor's absurd
# answer must not stop sending for a day); SIGNALS_SEND_RETRY_AFTER_MAX_SECONDS agrees.
MAX_PAUSE_SECONDS: Final = 300.0
# An idle key's state is forgotten this long after its last permit or pause ended.
IDLE_SECONDS: Final = 60
KEY_PREFIX: Final = "connectadmin:ratelimit:"


class RateLimitError(Exception):
    """The caller did not get a permit."""


class Cancelled(RateLimitError):
    """`cancelled()` said so while the caller was waiting."""


class DeadlineReached(RateLimitError):
    """The permit would come after the caller's deadline (nothing was reserved)."""


class RateLimitUnavailable(RateLimitError):
    """The limit's state could not be read or written (Redis down, a file not writable):
    nothing may be sent, since the limit cannot be held. Worth trying again later."""


def key_name(api_key: str) -> str:
    """The name the limit's state is kept under: a SHA-256 of the API key, never the key."""
    return KEY_PREFIX + hashlib.sha256(api_key.encode()).hexdigest()


class RateLimiter(abc.ABC):
    """Pacing per key (an API key) at `limit` requests per second, shared by every user of
    the same state. `acquire` before each request; `pause` after a 429 with Retry-After."""

    def __init__(self, *, fraction: float = PACE_FRACTION) -> None:
        if not 0 < fraction <= 1:
            raise ValueError("fraction must be in (0, 1]")
        self.fraction = fraction
        self.late_permits = 0  # permits given up by this process for a late wake-up

    def interval(self, limit: float) -> float:
        """Seconds between two permits of one key under `limit` requests per second."""
        if limit <= 0:
            raise ValueError("limit must be a positive number of requests per second")
        return 1.0 / (limit * self.fraction)

    def acquire(
        self,
        key: str,
        limit: float,
        *,
        deadline: float | None = None,
        cancelled: Callable[[], bool] | None = None,
    ) -> float:
        """Wait until this caller may send one request with `key`; return the seconds
        waited. `deadline` is a time.monotonic() instant: a permit that would come later
        raises DeadlineReached without being taken. `cancelled` is asked at most every
        POLL_SECONDS, and only while the wait is longer than HORIZON_SECONDS (behind a
        pause, or far back in a long queue), so it may be a database query; when it says
        True, Cancelled is raised. Raises RateLimitUnavailable when the state is out of
        reach."""
        started = time.monotonic()
        self.permit(key, limit, deadline=deadline, cancelled=cancelled)
        return time.monotonic() - started

    def permit(
        self,
        key: str,
        limit: float,
        *,
        deadline: float | None = None,
        cancelled: Callable[[], bool] | None = None,
    ) -> float:
        """`acquire`, returning the permit's moment (a time.monotonic() instant, never
        later than the truth): a caller that hands the request on to another thread can
        tell from it how late the request leaves, as LATE_SECONDS asks."""
        interval = self.interval(limit)
        name = key_name(key)
        given_up = 0
        while True:
            asked = time.monotonic()
            max_wait = HORIZON_SECONDS
            if deadline is not None:
                max_wait = min(max_wait, deadline - asked)
                if max_wait < 0:
                    raise DeadlineReached("the deadline passed before a permit came")
            reserved, wait = self._reserve(name, interval, max_wait)
            if reserved:
                if wait > 0:
                    time.sleep(wait)
                # Measured from before the reservation was asked for: never less late
                # than the truth.
                late = time.monotonic() - (asked + wait)
                if late > LATE_SECONDS and given_up < MAX_GIVE_UPS:
                    given_up += 1
                    self.late_permits += 1
                    continue
                return asked + wait
            if deadline is not None and time.monotonic() + wait > deadline:
                raise DeadlineReached(f"the next permit comes in {wait:.3f} s, after the deadline")
            # Not within the horizon: come back when it is, looking at `cancelled` between.
            time.sleep(min(max(wait - HORIZON_SECONDS, 0.001), POLL_SECONDS))
            if cancelled is not None and cancelled():
                raise Cancelled("cancelled while waiting for a permit")

    def pause(self, key: str, seconds: float) -> float:
        """No permit of `key` for `seconds` from now (capped at MAX_PAUSE_SECONDS), for
        every process sharing the state: what a 429 with Retry-After asks. A longer pause
        already set stays. Returns the seconds the key is now paused for."""
        seconds = min(max(seconds, 0.0), MAX_PAUSE_SECONDS)
        return self._pause(key_name(key), seconds)

    def paused_for(self, key: str) -> float:
        """Seconds left of the key's pause (0 when it is not paused)."""
        return self._pause(key_name(key), 0.0)

    @abc.abstractmethod
    def _reserve(self, name: str, interval: float, max_wait: float) -> tuple[bool, float]:
        """Atomically: the wait until the key's next permit, reserved when that wait is at
        most `max_wait`. Returns (reserved, wait in seconds)."""

    @abc.abstractmethod
    def _pause(self, name: str, seconds: float) -> float:
        """Atomically: paused_until = max(paused_until, now + seconds); the seconds left."""


def gcra_reserve(
    *, now: float, tat: float, paused_until: float, interval: float, max_wait: float
) -> tuple[bool, float, float]:
    """One GCRA step (the file backend's; the Lua script below is the same in
    microseconds). Returns (reserved, wait, the new tat)."""
    if tat > now + HORIZON_SECONDS + interval + 1.0:
        tat = now  # further ahead than any reservation can be: the clock went back
    if paused_until > now + MAX_PAUSE_SECONDS + 1.0:
        paused_until = 0.0  # likewise
    start = max(tat, now, paused_until)
    wait = start - now
    if wait > max_wait:
        return False, wait, tat
    return True, wait, start + interval


# Redis -----------------------------------------------------------------------------------

# Times are integer microseconds of the Redis server's clock (TIME): exact in Lua's
# doubles, unlike seconds with a fraction. ARGV: interval, max_wait, stale_after (a tat
# further ahead than this is from a clock that went back), max_pause; all in microseconds.
_RESERVE_LUA: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local state = redis.call('HMGET', KEYS[1], 'tat', 'paused_until')
local tat = tonumber(state[1]) or now
local paused_until = tonumber(state[2]) or 0
if tat > now + tonumber(ARGV[3]) then tat = now end
if paused_until > now + tonumber(ARGV[4]) then paused_until = 0 end
local start = math.max(tat, now, paused_until)
local wait = start - now
if wait > tonumber(ARGV[2]) then
  return {0, string.format('%.0f', wait)}
end
redis.call('HSET', KEYS[1], 'tat', string.format('%.0f', start + interval))
local keep = math.max(start + interval, paused_until) - now
redis.call('PEXPIRE', KEYS[1], math.floor(keep / 1000) + tonumber(ARGV[5]))
return {1, string.format('%.0f', wait)}
"""

# ARGV: seconds to pause in microseconds (0 only reads), idle milliseconds.
_PAUSE_LUA: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local current = tonumber(redis.call('HGET', KEYS[1], 'paused_until')) or 0
local pause = tonumber(ARGV[1])
if pause > 0 and now + pause > current then
  current = now + pause
  redis.call('HSET', KEYS[1], 'paused_until', string.format('%.0f', current))
  local keep = math.floor(pause / 1000) + tonumber(ARGV[2])
  if redis.call('PTTL', KEYS[1]) < keep then redis.call('PEXPIRE', KEYS[1], keep) end
end
return string.format('%.0f', math.max(current - now, 0))
"""

_MICRO: Final = 1_000_000


class RedisRateLimiter(RateLimiter):
    """The limit's state in Redis: shared by every process that reaches the same Redis."""

    def __init__(self, url: str, *, fraction: float = PACE_FRACTION) -> None:
        super().__init__(fraction=fraction)
        # Explicit timeouts: a Redis that stopped answering must not hang a send forever.
        self.redis = redis.Redis.from_url(
            url, socket_connect_timeout=5, socket_timeout=5, health_check_interval=30
        )
        self._reserve_script = self.redis.register_script(_RESERVE_LUA)
        self._pause_script = self.redis.register_script(_PAUSE_LUA)

    def _reserve(self, name: str, interval: float, max_wait: float) -> tuple[bool, float]:
        args = [
            round(interval * _MICRO),
            round(max_wait * _MICRO),
            round((HORIZON_SECONDS + interval + 1.0) * _MICRO),
            round((MAX_PAUSE_SECONDS + 1.0) * _MICRO),
            IDLE_SECONDS * 1000,
        ]
        try:
            reserved, wait = self._reserve_script(keys=[name], args=args)
        except redis.RedisError as exc:
            raise RateLimitUnavailable(f"Redis: {exc}") from exc
        return bool(reserved), int(wait) / _MICRO

    def _pause(self, name: str, seconds: float) -> float:
        try:
            left = self._pause_script(
                keys=[name], args=[round(seconds * _MICRO), IDLE_SECONDS * 1000]
            )
        except redis.RedisError as exc:
            raise RateLimitUnavailable(f"Redis: {exc}") from exc
        return int(left) / _MICRO


# A file per key ----------------------------------------------------------------------------

# tat and paused_until, seconds of time.time(): every process of the machine shares the
# clock, and a wall clock survives a reboot (a monotonic one starts again from zero).
_STATE: Final = struct.Struct("<dd")


class FileRateLimiter(RateLimiter):
    """The limit's state in a 16-byte file per key under `folder`, read and written under
    an exclusive flock: shared by the processes and threads of one machine."""

    def __init__(self, folder: Path, *, fraction: float = PACE_FRACTION) -> None:
        super().__init__(fraction=fraction)
        self.folder = folder

    def _path(self, name: str) -> Path:
        return self.folder / f"{name.removeprefix(KEY_PREFIX)}.gcra"

    def _update(
        self, name: str, change: Callable[[float, float, float], tuple[float, float, float]]
    ) -> float:
        """Apply change(now, tat, paused_until) -> (result, tat, paused_until) under the
        file's lock. The file is opened for each call: a flock belongs to the open file,
        so a descriptor inherited across fork would share one lock between processes."""
        try:
            self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(self._path(name), os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise RateLimitUnavailable(f"rate limit file: {exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            raw = os.pread(fd, _STATE.size, 0)
            tat, paused_until = _STATE.unpack(raw) if len(raw) == _STATE.size else (0.0, 0.0)
            result, new_tat, new_paused = change(time.time(), tat, paused_until)
            if (new_tat, new_paused) != (tat, paused_until):
                os.pwrite(fd, _STATE.pack(new_tat, new_paused), 0)
            return result
        except OSError as exc:
            raise RateLimitUnavailable(f"rate limit file: {exc}") from exc
        finally:
            os.close(fd)  # releases the lock

    def _reserve(self, name: str, interval: float, max_wait: float) -> tuple[bool, float]:
        outcome: list[bool] = []

        def change(now: float, tat: float, paused_until: float) -> tuple[float, float, float]:
            reserved, wait, tat = gcra_reserve(
                now=now, tat=tat, paused_until=paused_until, interval=interval, max_wait=max_wait
            )
            outcome.append(reserved)
            return wait, tat, paused_until

        wait = self._update(name, change)
        return outcome[0], wait

    def _pause(self, name: str, seconds: float) -> float:
        def change(now: float, tat: float, paused_until: float) -> tuple[float, float, float]:
            if seconds > 0:
                paused_until = max(paused_until, now + seconds)
            return max(paused_until - now, 0.0), tat, paused_until

        return self._update(name, change)


# The one settings choose -------------------------------------------------------------------


def shared_rate_limiter() -> RateLimiter:
    """The limiter the settings choose: Redis when RATE_LIMIT_REDIS_URL names one, else
    the files under VAR_DIR/ratelimit. One per process and settings (redis-py's pool opens
    new connections after a fork by itself)."""
    from django.conf import settings

    return _limiter(str(settings.RATE_LIMIT_REDIS_URL or ""), Path(settings.VAR_DIR))


@functools.lru_cache(maxsize=4)
def _limiter(redis_url: str, var_dir: Path) -> RateLimiter:
    if redis_url:
        return RedisRateLimiter(redis_url)
    return FileRateLimiter(var_dir / "ratelimit")
