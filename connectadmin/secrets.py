"""Secrets at rest (Connect API keys, later SSH private keys and Attentive keys).

MultiFernet over `settings.FIELD_ENCRYPTION_KEYS`, newest first: values are always
encrypted with the first key and decrypted with whichever key works, so a new key can be
put in front, `manage.py rotate_encryption_keys` run, and the old key removed afterwards.
"""

from collections.abc import Sequence
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings

from connectadmin.env import SettingError

KEY_HINT = (
    "each key must be 32 url-safe base64-encoded bytes, as printed by "
    "python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'"
)


class SecretUnreadable(RuntimeError):
    """A stored value cannot be decrypted with any configured key."""


def validate_keys(keys: Sequence[str]) -> None:
    """Raise SettingError naming the first unusable key; called from settings at start-up."""
    _fernet(tuple(keys))


@lru_cache(maxsize=8)
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    # Keyed by the key tuple (not cached once) so override_settings in tests is honoured.
    if not keys:
        raise SettingError(f"FIELD_ENCRYPTION_KEYS is empty; {KEY_HINT}")
    fernets = []
    for position, key in enumerate(keys, start=1):
        try:
            fernets.append(Fernet(key))
        except (ValueError, TypeError):
            # Never echo the key itself: it is a secret even when malformed.
            raise SettingError(
                f"FIELD_ENCRYPTION_KEYS: key {position} of {len(keys)} is not a Fernet key; "
                f"{KEY_HINT}"
            ) from None
    return MultiFernet(fernets)


def _current() -> MultiFernet:
    return _fernet(tuple(settings.FIELD_ENCRYPTION_KEYS))


def encrypt(plaintext: str) -> str:
    return _current().encrypt(plaintext.encode()).decode("ascii")


def decrypt(token: str) -> str:
    try:
        return _current().decrypt(token.encode("ascii")).decode()
    except (InvalidToken, UnicodeEncodeError):
        raise SecretUnreadable(
            "A stored secret cannot be decrypted with any key in FIELD_ENCRYPTION_KEYS; "
            "was a key removed before `manage.py rotate_encryption_keys` had run?"
        ) from None


def rotate(token: str) -> str:
    """The same secret encrypted with the newest key."""
    try:
        return _current().rotate(token.encode("ascii")).decode("ascii")
    except (InvalidToken, UnicodeEncodeError):
        raise SecretUnreadable(
            "A stored secret cannot be decrypted with any key in FIELD_ENCRYPTION_KEYS."
        ) from None
