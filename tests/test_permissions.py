"""The permissions matrix: every URL of the project, taken from the URL resolver (a view
added without a rule here fails the test), asked by anonymous, the marketer who owns the
objects, another marketer, ops and an admin, with GET and POST, gets the answer its rule
says: "ok" (2xx, or a redirect that is not to the sign-in page), 403, 404 (another
marketer's import or export, by id) or 405. Every request runs in a transaction rolled back
afterwards, so a POST that is allowed changes nothing for the next one."""

from __future__ import annotations

import gzip
import socket
import uuid
from datetime import time, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import transaction
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.utils import timezone

from connectadmin import files
from connectadmin.models import AlertChannel, AttentiveAccount
from exports_app.models import ExportFile, ExportJob, ExportSchedule, HostKey, SshKey
from signals_app.models import BatchState, ImportStatus
from tests.factories import make_account
from tests.test_views import add_batches, make_import, make_user

pytestmark = pytest.mark.django_db

ROLES = ("anonymous", "owner", "other", "ops", "admin")
PUBLIC = {"login", "healthz", "favicon", "invite_accept"}  # invite: the token is the key

OK, DENIED, HIDDEN, NOT_ALLOWED, SIGN_IN = "ok", "403", "404", "405", "sign-in"

EVERYONE = dict.fromkeys(("owner", "other", "ops", "admin"), OK)
EXPORTERS = {"owner": OK, "other": OK, "ops": DENIED, "admin": OK}
ADMINS = {"owner": DENIED, "other": DENIED, "ops": DENIED, "admin": OK}
OPS_ADMINS = {"owner": DENIED, "other": DENIED, "ops": OK, "admin": OK}
OWN_IMPORT = {"owner": OK, "other": HIDDEN, "ops": OK, "admin": OK}
OWN_IMPORT_ACTION = {"owner": OK, "other": HIDDEN, "ops": DENIED, "admin": OK}
POST_ONLY = dict.fromkeys(("owner", "other", "ops", "admin"), NOT_ALLOWED)

# name: (GET, POST); a POST to a page that takes none is answered 405 or as its GET.
RULES: dict[str, tuple[dict[str, str], dict[str, str] | None]] = {
    "home": (EVERYONE, None),
    "health": (OPS_ADMINS, None),
    "alerts": (OPS_ADMINS, None),
    "alerts_subscription": (POST_ONLY, OPS_ADMINS),
    "logout": (POST_ONLY, dict.fromkeys(("owner", "other", "ops", "admin"), SIGN_IN)),
    "signals:imports": (EVERYONE, None),
    "signals:import_new": (EXPORTERS, EXPORTERS),
    "signals:import_detail": (OWN_IMPORT, None),
    "signals:import_send": (POST_ONLY, OWN_IMPORT_ACTION),
    "signals:import_promote": (
        POST_ONLY,
        {"owner": DENIED, "other": HIDDEN, "ops": DENIED, "admin": OK},
    ),
    "signals:import_cancel": (POST_ONLY, OWN_IMPORT),
    "signals:import_fix": (POST_ONLY, OWN_IMPORT_ACTION),
    "signals:batch_resend": (
        {"owner": DENIED, "other": DENIED, "ops": OK, "admin": OK},
        {"owner": DENIED, "other": DENIED, "ops": OK, "admin": OK},
    ),
    "signals:download_errors": (OWN_IMPORT, None),
    "signals:download_valid": (OWN_IMPORT, None),
    "signals:download_signal_ids": (OWN_IMPORT, None),
    "signals:history": (EVERYONE, None),
    "signals:audit": (OPS_ADMINS, None),
    "signals:audit_csv": (OPS_ADMINS, None),
    "exports:list": (EVERYONE, None),
    "exports:export_new": (EXPORTERS, EXPORTERS),
    "exports:job_detail": (OWN_IMPORT, None),
    "exports:job_refetch": (POST_ONLY, OWN_IMPORT_ACTION),
    "exports:schedules": (EVERYONE, None),
    "exports:schedule_new": (EXPORTERS, EXPORTERS),
    "exports:schedule_edit": (
        {"owner": OK, "other": HIDDEN, "ops": DENIED, "admin": OK},
        {"owner": OK, "other": HIDDEN, "ops": DENIED, "admin": OK},
    ),
    "exports:schedule_action": (
        POST_ONLY,
        {"owner": OK, "other": HIDDEN, "ops": DENIED, "admin": OK},
    ),
    "exports:file_detail": (OWN_IMPORT, None),
    "exports:file_download": (OWN_IMPORT, None),
    "exports:browse": (EVERYONE, None),
    "exports:browse_fetch": (POST_ONLY, EVERYONE),
    "exports:sftp_settings": (ADMINS, ADMINS),
    "exports:key_generate": (POST_ONLY, ADMINS),
    "exports:key_import": (POST_ONLY, ADMINS),
    "exports:key_rotate": (POST_ONLY, ADMINS),
    "exports:key_register": (POST_ONLY, ADMINS),
    "exports:key_test": (POST_ONLY, ADMINS),
    "exports:host_key_decide": (POST_ONLY, ADMINS),
    "settings:overview": (ADMINS, None),
    "settings:accounts": (ADMINS, None),
    "settings:account_new": (ADMINS, ADMINS),
    "settings:account_edit": (ADMINS, ADMINS),
    "settings:account_test": (POST_ONLY, ADMINS),
    "settings:app_keys": (ADMINS, None),
    "settings:app_key_new": (ADMINS, ADMINS),
    "settings:app_key_edit": (ADMINS, ADMINS),
    "settings:attentive_accounts": (ADMINS, None),
    "settings:attentive_account_new": (ADMINS, ADMINS),
    "settings:attentive_account_edit": (ADMINS, ADMINS),
    "settings:attentive_account_test": (POST_ONLY, ADMINS),
    "settings:attentive_account_delete": (POST_ONLY, ADMINS),
    "settings:users": (ADMINS, ADMINS),
    "settings:user_edit": (ADMINS, ADMINS),
    "settings:user_invite_again": (POST_ONLY, ADMINS),
    "settings:alerts": (ADMINS, ADMINS),
    "settings:webhook_edit": (ADMINS, ADMINS),
    "settings:webhook_test": (POST_ONLY, ADMINS),
    "settings:webhook_active": (POST_ONLY, ADMINS),
    "settings:webhook_remove": (POST_ONLY, ADMINS),
    "settings:subscriber_remove": (POST_ONLY, ADMINS),
}


def url_names() -> list[str]:
    """Every named URL of the project but Django's admin (its own staff-only rules)."""
    names: list[str] = []

    def walk(patterns: list[Any], namespace: str) -> None:
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                if pattern.namespace != "admin":
                    space = f"{pattern.namespace}:" if pattern.namespace else namespace
                    walk(pattern.url_patterns, space)
            elif isinstance(pattern, URLPattern):
                assert pattern.name, f"an unnamed URL: {pattern.pattern}"
                names.append(namespace + pattern.name)

    walk(get_resolver().url_patterns, "")
    return names


def test_every_url_has_a_rule() -> None:
    names = set(url_names())
    assert names - PUBLIC <= set(RULES), f"no rule for: {sorted(names - PUBLIC - set(RULES))}"
    assert set(RULES) <= names, f"rules for URLs that are gone: {set(RULES) - names}"


@pytest.fixture(autouse=True)
def _archive(settings: Any, tmp_path: Any) -> None:
    settings.EXPORTS_DIR = tmp_path / "exports"


def objects() -> dict[str, Any]:
    owner = make_user("mia", "marketer")
    make_user("max", "marketer")
    make_user("otto", "ops")
    make_user("ada", "admin", send_live=True)
    signal_import = make_import(
        owner, status=ImportStatus.COMPLETED, sent=500, accepted=500, unknown=500
    )
    add_batches(signal_import, [BatchState.SENT, BatchState.UNKNOWN])
    account = make_account()
    now = timezone.now()
    export_file = ExportFile.objects.create(
        account=account, remote_path="Export/Signals/x.csv.gz", stored_name=uuid.uuid4().hex,
        fetched=True, fetched_by=owner, rows=0,
    )  # fmt: skip
    stored = Path(files.exports().path(export_file.stored_name))
    stored.parent.mkdir(parents=True, exist_ok=True)
    stored.write_bytes(gzip.compress(b"SIGNAL_TYPE,SIGNAL_CONTENT\n"))
    job = ExportJob.objects.create(
        account=account, created_by=owner, job_name="j", timestamp_start=now - timedelta(days=1),
        timestamp_end=now, file=export_file, status="failed",
    )  # fmt: skip
    schedule = ExportSchedule.objects.create(
        account=account, name="s", created_by=owner, signal_types=["order"], recurrence="daily",
        window="yesterday", time_of_day=time(6, 0),
    )  # fmt: skip
    key = SshKey.objects.create(account=account, created_by=owner)
    host_key = HostKey.objects.create(
        host="127.0.0.1", port=2222, key_type="ssh-ed25519", key_base64="AAAA", fingerprint="x"
    )
    with socket.socket() as sock:  # a port nothing listens on: the webhook test fails fast
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    webhook = AlertChannel.objects.create(
        kind="webhook", name="Slack", url=f"http://127.0.0.1:{closed}/hook", url_host="127.0.0.1"
    )
    subscriber = AlertChannel.objects.create(kind="email", user=owner)
    attentive = AttentiveAccount.objects.create(  # its connection test fails fast too
        name="Attentive", api_key="k", graphql_endpoint=f"http://127.0.0.1:{closed}/v1/graphql"
    )
    return {
        "public_id": signal_import.public_id,
        "number": 1,
        "job": job.public_id,
        "schedule": schedule.public_id,
        "file_id": export_file.pk,
        "account_id": account.pk,
        "key_id": key.pk,
        "host_key_id": host_key.pk,
        "app_key_id": signal_import.app_key_id,
        "user_id": owner.pk,
        "webhook_id": webhook.pk,
        "subscriber_id": subscriber.pk,
        "attentive_id": attentive.pk,
    }


def url_of(name: str, ids: dict[str, Any]) -> str:
    kwargs = {
        "signals:batch_resend": {"public_id": ids["public_id"], "number": ids["number"]},
        "exports:job_detail": {"public_id": ids["job"]},
        "exports:job_refetch": {"public_id": ids["job"]},
        "exports:schedule_edit": {"public_id": ids["schedule"]},
        "exports:schedule_action": {"public_id": ids["schedule"], "action": "pause"},
        "exports:host_key_decide": {"host_key_id": ids["host_key_id"], "decision": "reject"},
    }.get(name)
    if kwargs is None:
        pattern = next(p for p in url_patterns_by_name() if p[0] == name)[1]
        kwargs = {arg: ids[arg] for arg in pattern.converters}
    return reverse(name, kwargs=kwargs)


def url_patterns_by_name() -> list[tuple[str, Any]]:
    found: list[tuple[str, Any]] = []

    def walk(patterns: list[Any], namespace: str) -> None:
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                if pattern.namespace != "admin":
                    walk(
                        pattern.url_patterns,
                        f"{pattern.namespace}:" if pattern.namespace else namespace,
                    )
            else:
                found.append((namespace + pattern.name, pattern.pattern))

    walk(get_resolver().url_patterns, "")
    return found


def answer(client: Client, method: str, url: str) -> str:
    with transaction.atomic():
        response = client.get(url) if method == "GET" else client.post(url, {})
        transaction.set_rollback(True)
    status = response.status_code
    if status in (301, 302) and "/login/" in response.get("Location", ""):
        return SIGN_IN
    if status < 400 or status == 400:  # 400: allowed, and told what the form lacks
        return OK
    return str(status)


def test_the_permissions_matrix() -> None:
    ids = objects()
    users = {
        role: User.objects.get(username=name)
        for role, name in (("owner", "mia"), ("other", "max"), ("ops", "otto"), ("admin", "ada"))
    }
    wrong: list[str] = []
    for name, (get_rule, post_rule) in RULES.items():
        url = url_of(name, ids)
        for method, rule in (("GET", get_rule), ("POST", post_rule)):
            for role in ROLES:
                client = Client()  # signed in afresh: a POST to logout ends a session
                if role != "anonymous":
                    client.force_login(users[role])
                got = answer(client, method, url)
                if role == "anonymous":
                    expected = {SIGN_IN, NOT_ALLOWED}  # never an answer with content
                elif rule is None:  # a page that takes no POST
                    expected = {NOT_ALLOWED, get_rule[role]}
                else:
                    expected = {rule[role]}
                if got not in expected:
                    allowed = " or ".join(sorted(expected))
                    wrong.append(f"{method} {name} as {role}: {got}, expected {allowed}")
    assert not wrong, "\n".join(wrong)
