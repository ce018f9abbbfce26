"""The global rate limit (connectadmin.ratelimit): pacing without bursts, a pause seen by
every process, cancel and deadline, the file backend across processes, keys never stored.

Each behaviour is checked on both backends: Redis (skipped loudly without one, required in
CI) and the file of the embedded default. Timings are lower bounds where the limit is the
point: a permit is never given before its moment, and the first one's moment is no earlier
than the first call (Redis and this process read the same clock). Upper bounds are loose,
for a busy machine."""

from __future__ import annotations

import fcntl
import hashlib
import multiprocessing
import os
import struct
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from django.conf import settings

from connectadmin.ratelimit import (
    KEY_PREFIX,
    PACE_FRACTION,
    Cancelled,
    DeadlineReached,
    FileRateLimiter,
    RateLimiter,
    RateLimitUnavailable,
    RedisRateLimiter,
    key_name,
    shared_rate_limiter,
)
from tests.conftest import require

LIMIT = 50.0  # permits per second in these tests: 20.8 ms apart at 0.96
INTERVAL = 1 / (LIMIT * PACE_FRACTION)
# Forked children inherit the test process as it is (no Django start-up to wait for).
FORK = multiprocessing.get_context("fork")


def redis_url() -> str:
    url = str(settings.RATE_LIMIT_REDIS_URL or "")
    reachable = False
    if url:
        try:
            reachable = bool(redis.Redis.from_url(url, socket_connect_timeout=2).ping())
        except redis.RedisError:
            reachable = False
    require(reachable, "Redis (RATE_LIMIT_REDIS_URL, REDIS_URL or CELERY_BROKER_URL=redis://...)")
    return url


def make_limiter(kind: str, folder: Path) -> RateLimiter:
    if kind == "redis":
        return RedisRateLimiter(redis_url())
    return FileRateLimiter(folder)


@pytest.fixture(params=["file", "redis"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, Path]:
    """(kind, folder): children make their own limiter from these."""
    kind: str = request.param
    if kind == "redis":
        redis_url()
    return kind, tmp_path / "ratelimit"


@pytest.fixture
def limiter(backend: tuple[str, Path]) -> RateLimiter:
    return make_limiter(*backend)


@pytest.fixture
def key() -> Iterator[str]:
    """An API key of this test's own, so that no other run's permits or pause count."""
    yield f"test-api-key-{uuid.uuid4()}"


def take(limiter: RateLimiter, key: str, count: int) -> list[float]:
    """time.time() before the first call, then as each of `count` permits was given."""
    times = [time.time()]
    for _ in range(count):
        limiter.acquire(key, LIMIT)
        times.append(time.time())
    return times


# --- pacing -----------------------------------------------------------------------------------


def test_permits_come_one_interval_apart_at_the_paced_fraction(
    limiter: RateLimiter, key: str
) -> None:
    assert limiter.interval(LIMIT) == pytest.approx(1 / (LIMIT * 0.96))
    times = take(limiter, key, 11)
    assert times[1] - times[0] < 0.5  # the first permit at once
    assert times[-1] - times[0] >= 10 * INTERVAL  # none of the others early
    assert times[-1] - times[0] < 10 * INTERVAL + 1.0  # and no stall either


def test_an_idle_key_saves_up_no_burst(limiter: RateLimiter, key: str) -> None:
    limiter.acquire(key, LIMIT)
    time.sleep(0.5)  # 24 intervals idle: a token bucket would now allow a burst
    times = take(limiter, key, 6)
    assert times[-1] - times[0] >= 5 * INTERVAL


def test_threads_of_one_process_share_the_pace(limiter: RateLimiter, key: str) -> None:
    times: list[float] = []
    started = time.time()

    def run() -> None:
        times.extend(take(limiter, key, 5)[1:])

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(times) == 20
    assert max(times) - started >= 19 * INTERVAL


def test_a_limit_must_be_positive(limiter: RateLimiter, key: str) -> None:
    with pytest.raises(ValueError, match="limit must be a positive"):
        limiter.acquire(key, 0)


# --- pause, cancel, deadline ------------------------------------------------------------------


def _pause_in_child(kind: str, folder: Path, key: str, seconds: float, out: Any) -> None:
    before = time.time()
    make_limiter(kind, folder).pause(key, seconds)
    out.put(before)


def test_a_pause_set_by_one_process_holds_another(backend: tuple[str, Path], key: str) -> None:
    queue = FORK.Queue()
    child = FORK.Process(target=_pause_in_child, args=(*backend, key, 1.0, queue))
    child.start()
    paused_at = queue.get(timeout=30)
    child.join(timeout=30)
    limiter = make_limiter(*backend)  # a limiter of this process's own
    assert 0.5 < limiter.paused_for(key) <= 1.0
    limiter.acquire(key, LIMIT)
    assert time.time() >= paused_at + 1.0
    assert limiter.paused_for(key) == 0


def test_a_longer_pause_already_set_stays(limiter: RateLimiter, key: str) -> None:
    assert limiter.pause(key, 5.0) == pytest.approx(5.0, abs=0.1)
    assert limiter.pause(key, 0.5) == pytest.approx(5.0, abs=0.1)
    assert limiter.paused_for(key) == pytest.approx(5.0, abs=0.1)


def test_a_pause_is_capped(limiter: RateLimiter, key: str) -> None:
    # A vendor's absurd Retry-After must not stop sending for a day.
    assert limiter.pause(key, 86_400) == pytest.approx(300.0, abs=0.1)


def test_a_cancel_stops_the_wait_within_half_a_second(limiter: RateLimiter, key: str) -> None:
    limiter.pause(key, 30.0)
    started = time.monotonic()
    cancel_at = started + 0.3
    with pytest.raises(Cancelled):
        limiter.acquire(key, LIMIT, cancelled=lambda: time.monotonic() >= cancel_at)
    assert time.monotonic() - cancel_at < 0.5


def test_a_permit_after_the_deadline_is_not_waited_for(limiter: RateLimiter, key: str) -> None:
    limiter.pause(key, 30.0)
    started = time.monotonic()
    with pytest.raises(DeadlineReached):
        limiter.acquire(key, LIMIT, deadline=started + 5.0)
    assert time.monotonic() - started < 0.5  # known at once: no use waiting


def test_a_permit_before_the_deadline_is_given(limiter: RateLimiter, key: str) -> None:
    limiter.pause(key, 0.3)
    waited = limiter.acquire(key, LIMIT, deadline=time.monotonic() + 5.0)
    assert waited >= 0.29


# --- across processes -------------------------------------------------------------------------


def _take_in_child(kind: str, folder: Path, key: str, count: int, out: Any) -> None:
    out.put(take(make_limiter(kind, folder), key, count)[1:])


def test_processes_share_one_pace(backend: tuple[str, Path], key: str) -> None:
    """Four processes, as a worker's pool: together they get the permits of one."""
    queue = FORK.Queue()
    started = time.time()
    children = [
        FORK.Process(target=_take_in_child, args=(*backend, key, 8, queue)) for _ in range(4)
    ]
    for child in children:
        child.start()
    times = [t for _ in children for t in queue.get(timeout=60)]
    for child in children:
        child.join(timeout=30)
    assert len(times) == 32
    # Each process alone would need only 7 intervals for its 8 permits.
    assert max(times) - started >= 31 * INTERVAL


def test_the_file_is_read_and_written_under_its_lock(tmp_path: Path, key: str) -> None:
    """What keeps two processes from taking the same permit: while another holds the
    file's lock (in the middle of its own update), a permit waits."""
    limiter = FileRateLimiter(tmp_path)
    limiter.acquire(key, LIMIT)
    state = tmp_path / f"{key_name(key).removeprefix(KEY_PREFIX)}.gcra"
    given = threading.Event()
    with state.open("rb+") as held:
        fcntl.flock(held, fcntl.LOCK_EX)

        def wait_for_a_permit() -> None:
            limiter.acquire(key, LIMIT)
            given.set()

        waiting = threading.Thread(target=wait_for_a_permit)
        waiting.start()
        assert not given.wait(0.3)
        fcntl.flock(held, fcntl.LOCK_UN)
        assert given.wait(5)
    waiting.join(timeout=5)


# --- what is stored ---------------------------------------------------------------------------


def test_the_key_is_stored_only_as_a_hash(backend: tuple[str, Path], key: str) -> None:
    kind, folder = backend
    limiter = make_limiter(kind, folder)
    limiter.acquire(key, LIMIT)
    limiter.pause(key, 1.0)
    digest = hashlib.sha256(key.encode()).hexdigest()
    assert key_name(key) == KEY_PREFIX + digest
    if kind == "redis":
        client = redis.Redis.from_url(redis_url())
        assert client.exists(KEY_PREFIX + digest)
        assert client.keys(f"*{key}*") == []
        assert 0 < client.pttl(KEY_PREFIX + digest) <= 61_000 + 1_000  # forgotten when idle
        stored: dict[bytes, bytes] = client.hgetall(KEY_PREFIX + digest)  # type: ignore[assignment]
        assert set(stored) == {b"tat", b"paused_until"}
        assert all(value.isdigit() for value in stored.values())  # times, nothing else
    else:
        files = list(folder.iterdir())
        assert [f.name for f in files] == [f"{digest}.gcra"]
        assert key.encode() not in files[0].read_bytes()
        assert files[0].stat().st_mode & 0o777 == 0o600


def test_a_clock_set_back_does_not_hold_the_file_for_hours(tmp_path: Path, key: str) -> None:
    limiter = FileRateLimiter(tmp_path)
    limiter.acquire(key, LIMIT)
    state = tmp_path / f"{key_name(key).removeprefix(KEY_PREFIX)}.gcra"
    # What a clock set back by two hours leaves: the next permit "two hours from now".
    state.write_bytes(struct.pack("<dd", time.time() + 7200, time.time() + 7200))
    assert limiter.acquire(key, LIMIT) < 0.1


def test_an_unreachable_redis_is_reported_not_waited_on(key: str) -> None:
    limiter = RedisRateLimiter("redis://127.0.0.1:1/0")  # nothing listens on port 1
    with pytest.raises(RateLimitUnavailable, match="Redis"):
        limiter.acquire(key, LIMIT)
    with pytest.raises(RateLimitUnavailable):
        limiter.pause(key, 1.0)


# --- which backend ----------------------------------------------------------------------------


def test_the_setting_chooses_the_backend(settings: Any, tmp_path: Path) -> None:
    settings.VAR_DIR = tmp_path
    settings.RATE_LIMIT_REDIS_URL = ""
    chosen = shared_rate_limiter()
    assert isinstance(chosen, FileRateLimiter) and chosen.folder == tmp_path / "ratelimit"
    assert shared_rate_limiter() is chosen  # one per process
    settings.RATE_LIMIT_REDIS_URL = "redis://127.0.0.1:6379/9"
    assert isinstance(shared_rate_limiter(), RedisRateLimiter)


def _setting(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    names = ("RATE_LIMIT_REDIS_URL", "REDIS_URL", "CELERY_BROKER_URL")
    return subprocess.run(
        [sys.executable, "-c",
         "import django; django.setup(); from django.conf import settings; "
         "print(settings.RATE_LIMIT_REDIS_URL or '(none)')"],
        cwd=settings.BASE_DIR,
        env={**{k: v for k, v in os.environ.items() if k not in names},
             "DJANGO_SETTINGS_MODULE": "connectadmin.settings",
             "CONNECTADMIN_VAR_DIR": str(tmp_path), **env},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("env", "chosen"),
    [
        (
            {"RATE_LIMIT_REDIS_URL": "redis://a:6379/1", "REDIS_URL": "redis://b:6379/2",
             "CELERY_BROKER_URL": "redis://c:6379/3"},
            "redis://a:6379/1",
        ),
        ({"REDIS_URL": "redis://b:6379/2", "CELERY_BROKER_URL": "redis://c:6379/3"},
         "redis://b:6379/2"),
        ({"CELERY_BROKER_URL": "redis://c:6379/3"}, "redis://c:6379/3"),
        ({"CELERY_BROKER_URL": "amqp://guest:guest@127.0.0.1:5672//"}, "(none)"),
        ({}, "(none)"),
    ],
)  # fmt: skip
def test_the_redis_of_the_limit_comes_from_the_environment(
    tmp_path: Path, env: dict[str, str], chosen: str
) -> None:
    result = _setting(tmp_path, **env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == chosen


def test_a_rate_limit_url_that_is_not_redis_stops_start_up(tmp_path: Path) -> None:
    result = _setting(tmp_path, RATE_LIMIT_REDIS_URL="http://127.0.0.1:6379")
    assert result.returncode != 0
    assert "RATE_LIMIT_REDIS_URL='http://127.0.0.1:6379' is not a Redis URL" in result.stderr
