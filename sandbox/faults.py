"""Fault switches: what the sandbox does wrong on purpose, and how often.

One draw per GraphQL request decides its fate. With a seed the sequence of fates is
reproducible, and `budget` limits how many requests are faulted (e.g. "fail the next one
only"), so tests need no luck.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

# Faults that refuse a request before it is processed (nothing is stored) ...
REJECTING = ("http_429", "http_502", "http_503", "graphql_error")
# ... and faults that strike after it was processed and stored: the client cannot tell
# whether its batch was taken, which is the case the app must treat as "outcome unknown".
AFTER_STORE = ("http_500", "hang", "drop")
FAULT_NAMES = REJECTING + AFTER_STORE

Scope = Literal["all", "connect", "attentive"]


class FaultConfigError(ValueError):
    pass


@dataclass
class FaultConfig:
    latency_ms: float = 0.0
    rate_http_429: float = 0.0
    rate_http_500: float = 0.0
    rate_http_502: float = 0.0
    rate_http_503: float = 0.0
    rate_graphql_error: float = 0.0
    rate_hang: float = 0.0
    rate_drop: float = 0.0
    retry_after: int = 2
    hang_seconds: float = 3600.0
    seed: int | None = None
    budget: int | None = None
    scope: Scope = "all"
    sftp_cut_after_bytes: int | None = None
    host_key_changed: bool = False
    export_failure_rate: float = 0.0

    def validate(self) -> None:
        rates = [getattr(self, f"rate_{name}") for name in FAULT_NAMES]
        for name in FAULT_NAMES:
            rate = getattr(self, f"rate_{name}")
            if not 0.0 <= rate <= 1.0:
                raise FaultConfigError(f"rate_{name} must be between 0 and 1")
        if sum(rates) > 1.0 + 1e-9:
            raise FaultConfigError("the fault rates add up to more than 1")
        if not 0.0 <= self.export_failure_rate <= 1.0:
            raise FaultConfigError("export_failure_rate must be between 0 and 1")
        if self.latency_ms < 0 or self.hang_seconds < 0 or self.retry_after < 0:
            raise FaultConfigError("latency_ms, hang_seconds and retry_after must be >= 0")
        if self.scope not in ("all", "connect", "attentive"):
            raise FaultConfigError("scope must be all, connect or attentive")
        if self.budget is not None and self.budget < 0:
            raise FaultConfigError("budget must be >= 0 or null")
        if self.sftp_cut_after_bytes is not None and self.sftp_cut_after_bytes < 0:
            raise FaultConfigError("sftp_cut_after_bytes must be >= 0 or null")


def _check_type(name: str, expected: str, value: object) -> None:
    if value is None:
        ok = "None" in expected
    elif expected.startswith("bool"):
        ok = isinstance(value, bool)
    elif expected.startswith("int"):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif expected.startswith("float"):
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    else:
        ok = isinstance(value, str)
    if not ok:
        raise FaultConfigError(f"{name}: expected {expected}, got {value!r}")


class Faults:
    def __init__(self, config: FaultConfig | None = None) -> None:
        self.config = config or FaultConfig()
        self.config.validate()
        self._rng = random.Random(self.config.seed)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self.config)

    def update(self, changes: dict[str, Any], *, reset: bool = False) -> None:
        """Apply changes atomically: an invalid change leaves the switches as they were."""
        known = {f.name: f for f in fields(FaultConfig)}
        unknown = sorted(set(changes) - set(known))
        if unknown:
            raise FaultConfigError(f"unknown fault setting(s): {', '.join(unknown)}")
        merged = {} if reset else asdict(self.config)
        for name, value in changes.items():
            _check_type(name, str(known[name].type), value)
            merged[name] = value
        try:
            config = FaultConfig(**merged)
            config.validate()
        except TypeError as exc:
            raise FaultConfigError(str(exc)) from exc
        self.config = config
        if reset or "seed" in changes:
            self._rng = random.Random(config.seed)

    def draw(self, endpoint: Literal["connect", "attentive"]) -> str | None:
        """The fault for the next GraphQL request, or None."""
        config = self.config
        if config.scope not in ("all", endpoint):
            return None
        if config.budget == 0:
            return None
        point = self._rng.random()
        edge = 0.0
        for name in FAULT_NAMES:
            edge += getattr(config, f"rate_{name}")
            if point < edge:
                if config.budget is not None:
                    config.budget -= 1
                return name
        return None

    def export_fails(self) -> bool:
        rate = self.config.export_failure_rate
        return rate > 0 and self._rng.random() < rate
