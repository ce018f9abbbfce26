"""Model factories: plain functions with sensible defaults; pass what the test is about."""

from __future__ import annotations

import itertools
from typing import Any

from connectadmin.models import AppKey, ConnectAccount, Region

_sequence = itertools.count(1)


def make_account(**fields: Any) -> ConnectAccount:
    n = next(_sequence)
    values: dict[str, Any] = {
        "name": f"Account {n}",
        "region": Region.SANDBOX,
        "api_key": f"api-key-{n}",
        "connect_user_email": f"user{n}@example.test",
    }
    values.update(fields)
    return ConnectAccount.objects.create(**values)


def make_app_key(account: ConnectAccount | None = None, **fields: Any) -> AppKey:
    n = next(_sequence)
    values: dict[str, Any] = {
        "key": f"app-key-{n}",
        "label": f"App key {n}",
        "tier": "pro",
        "account": account or make_account(),
    }
    values.update(fields)
    return AppKey.objects.create(**values)
