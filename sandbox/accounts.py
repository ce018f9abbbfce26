"""Connect accounts (one API key = one subscription with a tier and a Connect user e-mail)."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

from sandbox.catalog import TIERS

# SPEC §8: the SFTP user is the Connect e-mail; 3-100 characters, letters, digits, _ - . @
SFTP_USER_RE = re.compile(r"^[A-Za-z0-9_.@-]{3,100}$")
EMAIL_RE = re.compile(r"^[^@\s\"'<>()\[\],;:\\]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
_NAMESPACE = uuid.UUID("6f1c3c2e-5d0e-4a53-9a57-6b3cfa2a0c11")


class AccountError(ValueError):
    pass


@dataclass(frozen=True)
class Account:
    api_key: str
    tier: str
    email: str

    @property
    def subscription_id(self) -> str:
        # Stable per API key, so export files name the same subscription across restarts.
        return str(uuid.uuid5(_NAMESPACE, "subscription:" + self.api_key))

    @property
    def dataset_id(self) -> str:
        return str(uuid.uuid5(_NAMESPACE, "dataset:" + self.api_key))


def make_account(api_key: str, tier: str, email: str) -> Account:
    tier = tier.strip().lower()
    if not api_key.strip():
        raise AccountError("the API key must not be empty")
    if tier not in TIERS:
        raise AccountError(f"tier must be one of {', '.join(TIERS)}, not {tier!r}")
    if not SFTP_USER_RE.match(email) or not EMAIL_RE.match(email):
        raise AccountError(
            f"{email!r} cannot be a Connect user: an e-mail address of 3-100 letters, "
            "digits, '_', '-', '.', '@'"
        )
    return Account(api_key=api_key, tier=tier, email=email)


def parse_account_flag(text: str) -> Account:
    """`API_KEY:TIER:EMAIL` as given to `serve --account`."""
    parts = text.rsplit(":", 2)
    if len(parts) != 3:
        raise AccountError(f"--account wants API_KEY:TIER:EMAIL, got {text!r}")
    return make_account(*parts)
