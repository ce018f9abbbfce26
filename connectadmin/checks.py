"""System checks: `manage.py check --deploy` flags the development defaults."""

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Tags, Warning, register


@register(Tags.security, deploy=True)
def check_development_secrets(app_configs: Any, **kwargs: Any) -> list[CheckMessage]:
    messages: list[CheckMessage] = []
    if settings.DEV_FIELD_ENCRYPTION_KEY in settings.FIELD_ENCRYPTION_KEYS:
        messages.append(
            Warning(
                "Secrets are encrypted with the development key.",
                hint="Set FIELD_ENCRYPTION_KEYS to one or more Fernet keys "
                "(python -c 'from cryptography.fernet import Fernet; "
                "print(Fernet.generate_key().decode())').",
                id="connectadmin.W001",
            )
        )
    # Django's own security.W009 does not catch this one: it is long and varied enough.
    if settings.SECRET_KEY == settings.DEV_SECRET_KEY:
        messages.append(
            Warning(
                "SECRET_KEY is the development default.",
                hint="Set DJANGO_SECRET_KEY to a long random value "
                "(python -c 'import secrets; print(secrets.token_urlsafe(50))').",
                id="connectadmin.W002",
            )
        )
    return messages
