"""Settings from the environment fail loudly; `check --deploy` flags development secrets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from django.conf import settings
from django.core.checks import run_checks
from django.test import override_settings

from connectadmin import keyfile
from connectadmin.env import SettingError, env_bool, env_int, env_list

# --- the helpers ---------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "expected"), [("true", True), (" Off ", False), ("", True)])
def test_env_bool_reads_booleans(monkeypatch: pytest.MonkeyPatch, raw: str, expected: bool) -> None:
    monkeypatch.setenv("SOME_FLAG", raw)
    assert env_bool("SOME_FLAG", True) is expected


def test_env_bool_rejects_anything_else(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOME_FLAG", "maybe")
    with pytest.raises(SettingError, match=r"SOME_FLAG='maybe' is not a boolean"):
        env_bool("SOME_FLAG", False)


def test_env_int_reads_whole_numbers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOME_NUMBER", "4_000")
    assert env_int("SOME_NUMBER", 1, minimum=1, maximum=5000) == 4000
    monkeypatch.delenv("SOME_NUMBER")
    assert env_int("SOME_NUMBER", 7) == 7


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("12.5", "SOME_NUMBER='12.5' is not a whole number"),
        ("ten", "SOME_NUMBER='ten' is not a whole number"),
        ("0", "SOME_NUMBER=0 is below the minimum of 1"),
        ("70000", "SOME_NUMBER=70000 is above the maximum of 65535"),
    ],
)
def test_env_int_rejects_bad_values(
    monkeypatch: pytest.MonkeyPatch, raw: str, message: str
) -> None:
    monkeypatch.setenv("SOME_NUMBER", raw)
    with pytest.raises(SettingError) as error:
        env_int("SOME_NUMBER", 1, minimum=1, maximum=65535)
    assert str(error.value) == message


def test_env_list_splits_on_commas(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOME_LIST", " a, b ,,c ")
    assert env_list("SOME_LIST", []) == ["a", "b", "c"]


# --- the settings module, started the way a process starts ----------------------------


def start_django(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=settings.BASE_DIR,
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "connectadmin.settings",
            "CONNECTADMIN_VAR_DIR": str(tmp_path),
            **env,
        },
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_settings_load_with_the_defaults(tmp_path: Path) -> None:
    result = start_django(tmp_path)
    assert result.returncode == 0, result.stderr


def without_keys() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in KEY_VARIABLES}


KEY_VARIABLES = ("DJANGO_SECRET_KEY", "FIELD_ENCRYPTION_KEYS")


def test_without_keys_a_process_refuses_to_start_saying_how_to_make_them(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=settings.BASE_DIR,
        env={**without_keys(), "CONNECTADMIN_VAR_DIR": str(tmp_path),
             "DJANGO_SETTINGS_MODULE": "connectadmin.settings"},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode != 0
    assert "No keys: set DJANGO_SECRET_KEY and FIELD_ENCRYPTION_KEYS" in result.stderr
    assert "python -m connectadmin.keyfile" in result.stderr


def test_the_keys_file_is_made_once_for_its_owner_and_then_used(tmp_path: Path) -> None:
    env = {**without_keys(), "CONNECTADMIN_VAR_DIR": str(tmp_path)}
    make = [sys.executable, "-m", "connectadmin.keyfile"]
    first = subprocess.run(make, cwd=settings.BASE_DIR, env=env, capture_output=True, text=True)
    assert "made the keys file" in first.stderr
    kept = (tmp_path / "keys.json").read_text()
    assert (tmp_path / "keys.json").stat().st_mode & 0o777 == 0o600
    again = subprocess.run(make, cwd=settings.BASE_DIR, env=env, capture_output=True, text=True)
    assert "kept the keys file" in again.stderr and (tmp_path / "keys.json").read_text() == kept
    show = "from django.conf import settings; print(settings.SECRET_KEY[:12])"
    started = subprocess.run(
        [sys.executable, "-c", f"import django; django.setup(); {show}"],
        cwd=settings.BASE_DIR, capture_output=True, text=True, timeout=60,
        env={**env, "DJANGO_SETTINGS_MODULE": "connectadmin.settings"},
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    assert started.stdout.strip() == json.loads(kept)["secret_key"][:12]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DJANGO_DEBUG": "sometimes"}, "DJANGO_DEBUG='sometimes' is not a boolean"),
        ({"WEB_PORT": "eighty"}, "WEB_PORT='eighty' is not a whole number"),
        ({"SANDBOX_HTTP_PORT": "99999"}, "SANDBOX_HTTP_PORT=99999 is above the maximum"),
        ({"CELERY_TASK_TIME_LIMIT": "5"}, "CELERY_TASK_TIME_LIMIT=5 is below the minimum of 60"),
        (
            {"DATABASE_URL": "postgress://db/app"},
            "DATABASE_URL='postgress://db/app' cannot be used",
        ),
        ({"DATABASE_URL": "not a url"}, "DATABASE_URL='not a url' cannot be used"),
        (
            {"DATABASE_URL": "postgres://app:my-old-secret@db:port/app"},
            "DATABASE_URL='postgres://app:***@db:port/app' cannot be used",
        ),
        (
            {"CELERY_BROKER_URL": "sqs://guest@localhost//"},
            "CELERY_BROKER_URL='sqs://guest@localhost//' is not supported",
        ),
        (
            {"FIELD_ENCRYPTION_KEYS": f"{Fernet.generate_key().decode()},my-old-secret"},
            "FIELD_ENCRYPTION_KEYS: key 2 of 2 is not a Fernet key",
        ),
    ],
)
def test_a_bad_setting_stops_start_up_with_a_clear_message(
    tmp_path: Path, env: dict[str, str], message: str
) -> None:
    result = start_django(tmp_path, **env)
    assert result.returncode != 0
    assert "SettingError" in result.stderr
    assert message in result.stderr
    assert "my-old-secret" not in result.stderr


# --- deployment checks ----------------------------------------------------------------


def deploy_check_ids() -> set[str]:
    return {message.id for message in run_checks(include_deployment_checks=True) if message.id}


def test_check_deploy_flags_a_keys_file_others_can_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DJANGO_SECRET_KEY", raising=False)
    path, _ = keyfile.ensure(tmp_path)
    with override_settings(VAR_DIR=tmp_path):
        assert "connectadmin.W001" not in deploy_check_ids()
        path.chmod(0o644)
        assert "connectadmin.W001" in deploy_check_ids()


def test_no_key_ships_in_the_source() -> None:
    assert not hasattr(settings, "DEV_SECRET_KEY")
    assert not hasattr(settings, "DEV_FIELD_ENCRYPTION_KEY")
