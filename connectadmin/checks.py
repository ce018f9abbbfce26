"""System checks: `manage.py check --deploy` flags keys that others can read."""

import os
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Tags, Warning, register

from connectadmin import keyfile


@register(Tags.security, deploy=True)
def check_kept_keys(app_configs: Any, **kwargs: Any) -> list[CheckMessage]:
    """Keys kept in the data folder (connectadmin.keyfile) must be the owner's alone."""
    path = keyfile.path_in(Path(settings.VAR_DIR))
    from_file = not (
        os.environ.get("DJANGO_SECRET_KEY") and os.environ.get("FIELD_ENCRYPTION_KEYS")
    )
    if not from_file or not path.exists():
        return []
    if path.stat().st_mode & 0o077:
        return [
            Warning(
                f"{path} (SECRET_KEY and the encryption key) can be read by other users.",
                hint=f"chmod 600 {path}, or set DJANGO_SECRET_KEY and FIELD_ENCRYPTION_KEYS "
                "in the environment.",
                id="connectadmin.W001",
            )
        ]
    return []
