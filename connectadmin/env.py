"""Settings read from the environment, failing loudly on values that make no sense.

A typo in production configuration must stop the process at start-up, not surface as a
confusing error hours later (the same habit as healthchecks' settings).
"""

import os


class SettingError(RuntimeError):
    """An environment variable holds a value the application cannot use."""


def env_str(name: str, default: str) -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise SettingError(f"{name}={raw!r} is not a boolean; use true or false")


def env_int(
    name: str, default: int, *, minimum: int | None = None, maximum: int | None = None
) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw.strip().replace("_", ""))
    except ValueError:
        raise SettingError(f"{name}={raw!r} is not a whole number") from None
    if minimum is not None and value < minimum:
        raise SettingError(f"{name}={value} is below the minimum of {minimum}")
    if maximum is not None and value > maximum:
        raise SettingError(f"{name}={value} is above the maximum of {maximum}")
    return value


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def gzip_max_inflated_bytes() -> int:
    """SIGNALS_GZIP_MAX_INFLATED_BYTES: the most a gzip file may inflate to (4 GiB)."""
    return env_int("SIGNALS_GZIP_MAX_INFLATED_BYTES", 4 * 1024**3, minimum=1024)
