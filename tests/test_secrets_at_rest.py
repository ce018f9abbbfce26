"""No secret in plain text anywhere it could leak: after accounts with API keys and SSH keys
are made, used and made to fail, neither a dump of the database nor the logs nor the audit
trail holds one; and rotating the encryption key leaves every secret readable."""

from __future__ import annotations

import io
import logging
from typing import Any

import pytest
from cryptography.fernet import Fernet
from django.core import serializers
from django.core.management import call_command
from django.test import Client, override_settings

from connectadmin import alerts
from connectadmin.models import AlertChannel, AlertDelivery, ConnectAccount
from exports_app.models import SshKey
from exports_app.services import keys
from exports_app.sftp_client import load_private_key
from signals_app.connect_client import ConnectClient
from signals_app.models import AuditEvent
from tests.factories import make_account
from tests.test_views import make_user

pytestmark = pytest.mark.django_db

API_KEY = "ck-live-7f3a9e1d55c04b2a8e6f0d9c3b2a1f00"
# Slack's and Teams' webhook addresses carry their secret in the path.
WEBHOOK_SECRET = "T0001/B0002/XyZsecretWebhookToken42"
WEBHOOK_URL = f"http://127.0.0.1:9/services/{WEBHOOK_SECRET}"


def private_body(text: str) -> str:
    """The key's base64 body: what would betray it in a dump, whatever the wrapping."""
    return "".join(line for line in text.splitlines() if "PRIVATE KEY" not in line)[20:80]


def test_no_secret_reaches_a_dump_the_logs_or_the_audit_trail(
    caplog: pytest.LogCaptureFixture, settings: Any
) -> None:
    caplog.set_level(logging.DEBUG)
    admin = make_user("ada", "admin")
    account = make_account(api_key=API_KEY, graphql_endpoint="http://127.0.0.1:9/graphql")
    key = keys.ssh_key_generate(account=account, user=admin)
    private = SshKey.objects.get(pk=key.pk).private_key
    assert "PRIVATE KEY" in private and load_private_key(private) is not None
    # Errors that mention the account: a call to an endpoint that is not there, a page.
    with ConnectClient(endpoint=account.graphql_endpoint, api_key=account.api_key) as client:
        result = client.create_signals([{"sessionId": "S-1"}])
    logging.getLogger("test").error("send failed: %s", result)
    web = Client()
    web.force_login(admin)
    web.get("/settings/sftp")
    # An alert to a webhook that cannot be reached (the error is logged and stored).
    AlertChannel.objects.create(
        kind="webhook", name="Slack", url=WEBHOOK_URL, url_host=alerts.url_host(WEBHOOK_URL)
    )
    alerts.raise_alert(topic="import", subject="account:1", subject_label="x", title="x")
    assert alerts.deliver_due() == 0
    assert AlertDelivery.objects.get().last_error.startswith("the webhook could not be reached")

    dump = io.StringIO()
    call_command("dumpdata", "--all", stdout=dump)
    audit_text = str(list(AuditEvent.objects.values()))
    # The dump loads back whole: its tokens are decrypted with the configured keys.
    loaded = [item.object for item in serializers.deserialize("json", dump.getvalue())]
    assert [a.api_key for a in loaded if isinstance(a, ConnectAccount)] == [API_KEY]
    assert [k.private_key for k in loaded if isinstance(k, SshKey)] == [private]
    assert [c.url for c in loaded if isinstance(c, AlertChannel)] == [WEBHOOK_URL]
    for place, text in (("database dump", dump.getvalue()), ("logs", caplog.text),
                        ("audit trail", audit_text)):  # fmt: skip
        assert API_KEY not in text, f"the API key in the {place}"
        assert private_body(private) not in text, f"the SSH private key in the {place}"
        assert WEBHOOK_SECRET not in text, f"the webhook's secret address in the {place}"


def test_rotation_leaves_every_secret_readable() -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    with override_settings(FIELD_ENCRYPTION_KEYS=[old]):
        account = make_account(api_key=API_KEY)
        key = keys.ssh_key_generate(account=account, user=make_user("ada", "admin"))
        private = SshKey.objects.get(pk=key.pk).private_key
        channel = AlertChannel.objects.create(kind="webhook", url=WEBHOOK_URL)
    with override_settings(FIELD_ENCRYPTION_KEYS=[new, old]):
        call_command("rotate_encryption_keys", stdout=io.StringIO())
    with override_settings(FIELD_ENCRYPTION_KEYS=[new]):  # the old key dropped
        assert ConnectAccount.objects.get(pk=account.pk).api_key == API_KEY
        assert SshKey.objects.get(pk=key.pk).private_key == private
        assert AlertChannel.objects.get(pk=channel.pk).url == WEBHOOK_URL
