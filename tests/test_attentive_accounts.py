"""Attentive accounts (issue 13, part 1): the API key encrypted at rest and never shown,
the settings pages for admins only, the connection test against the real sandbox process,
key rotation, the demo account and the audit trail."""

from __future__ import annotations

import io
import logging
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet
from django.contrib.auth.models import User
from django.core import serializers
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.db import connection
from django.test import Client, override_settings

from connectadmin import secrets
from connectadmin.attentive_accounts import _read_answer
from connectadmin.models import ATTENTIVE_ENDPOINT, AttentiveAccount
from signals_app.audit_words import describe
from signals_app.models import AuditEvent
from tests.sandbox.support import ATTENTIVE_KEY, Sandbox, running_sandbox
from tests.test_views import make_user

pytestmark = pytest.mark.django_db

SECRET = "attentive-plain-secret-key-77"
PAGES = [
    "/settings/attentive",
    "/settings/attentive/new",
    "/settings/attentive/{account}",
]
POST_ONLY = ["/settings/attentive/{account}/test", "/settings/attentive/{account}/delete"]


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[Sandbox]:
    """A real `python -m sandbox serve` on free ports, knowing the Attentive key
    ATTENTIVE_KEY (tests.sandbox.support), its rate limit off."""
    with running_sandbox(tmp_path / "sandbox") as running:
        yield running


@pytest.fixture
def admin(client: Client) -> User:
    user = make_user("ada", "admin")
    client.force_login(user)
    return user


def make_attentive(**fields: Any) -> AttentiveAccount:
    values: dict[str, Any] = {"name": "Shop US", "api_key": SECRET}
    values.update(fields)
    return AttentiveAccount.objects.create(**values)


def raw_api_key(account_id: int) -> str:
    """The column as stored, bypassing the field's decryption."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT api_key FROM {AttentiveAccount._meta.db_table} WHERE id = %s", [account_id]
        )
        (value,) = cursor.fetchone()
    return str(value)


def form_data(**fields: str) -> dict[str, str]:
    data = {"name": "Shop US", "graphql_endpoint": "", "api_key": SECRET, "rate_limit": ""}
    data.update(fields)
    return data


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- the model ---------------------------------------------------------------------------


def test_the_key_is_encrypted_at_rest_and_readable_through_the_model() -> None:
    account = make_attentive()
    stored = raw_api_key(account.pk)
    assert SECRET not in stored
    assert secrets.decrypt(stored) == SECRET
    assert AttentiveAccount.objects.get(pk=account.pk).api_key == SECRET


def test_a_new_account_has_attentives_endpoint_and_the_configured_rate_limit() -> None:
    account = make_attentive()
    assert (
        account.graphql_endpoint
        == ATTENTIVE_ENDPOINT
        == ("https://api.attentivemobile.com/v1/graphql")
    )
    assert account.rate_limit == 150
    assert account.endpoint_host == "api.attentivemobile.com"
    with override_settings(ATTENTIVE_RATE_LIMIT=40):
        assert make_attentive(name="Other").rate_limit == 40
    assert make_attentive(name="Third", graphql_endpoint="").graphql_endpoint == ATTENTIVE_ENDPOINT


def test_a_dump_holds_the_token_not_the_key_and_loads_back() -> None:
    make_attentive()
    dump = io.StringIO()
    call_command("dumpdata", "connectadmin.attentiveaccount", stdout=dump)
    assert SECRET not in dump.getvalue() and "fernet:" in dump.getvalue()
    (loaded,) = serializers.deserialize("json", dump.getvalue())
    assert isinstance(loaded.object, AttentiveAccount) and loaded.object.api_key == SECRET


@pytest.mark.parametrize(
    ("endpoint", "allowed"),
    [
        ("https://api.attentivemobile.com/v1/graphql", True),
        ("http://127.0.0.1:8765/v1/graphql", True),  # the sandbox
        ("http://localhost:8765/v1/graphql", True),
        ("http://api.attentivemobile.com/v1/graphql", False),  # the key in clear text
        ("http://10.0.0.5/v1/graphql", False),
    ],
)
def test_the_key_travels_in_clear_text_only_to_this_machine(endpoint: str, allowed: bool) -> None:
    account = AttentiveAccount(name="x", api_key="k", graphql_endpoint=endpoint)
    if allowed:
        account.full_clean()
    else:
        with pytest.raises(ValidationError, match="https://"):
            account.full_clean()


@pytest.mark.parametrize("rate", [0, 1001])
def test_the_rate_limit_is_between_1_and_1000(rate: int) -> None:
    with pytest.raises(ValidationError, match="rate_limit"):
        AttentiveAccount(name="x", api_key="k", rate_limit=rate).full_clean()


def test_key_rotation_re_encrypts_the_attentive_keys_too() -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    with override_settings(FIELD_ENCRYPTION_KEYS=[old]):
        account = make_attentive()
    old_token = raw_api_key(account.pk)
    with override_settings(FIELD_ENCRYPTION_KEYS=[new, old]):
        out = io.StringIO()
        call_command("rotate_encryption_keys", stdout=out)
        assert "Re-encrypted 1 secret(s)" in out.getvalue()
    new_token = raw_api_key(account.pk)
    assert new_token != old_token
    assert Fernet(new.encode()).decrypt(new_token.encode()) == SECRET.encode()
    with override_settings(FIELD_ENCRYPTION_KEYS=[new]):  # the old key can go now
        assert AttentiveAccount.objects.get(pk=account.pk).api_key == SECRET


# --- who may ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", PAGES)
def test_each_page_opens_for_an_admin_under_the_attentive_tab(
    client: Client, admin: User, path: str
) -> None:
    page = client.get(path.format(account=make_attentive().pk))
    assert page.status_code == 200
    assert re.search(rb'href="/settings/attentive"\s+aria-current="page"', page.content)


@pytest.mark.parametrize("role", ["marketer", "ops"])
@pytest.mark.parametrize("path", PAGES + POST_ONLY)
def test_others_are_refused_with_a_reason_and_nothing_changes(
    client: Client, role: str, path: str
) -> None:
    client.force_login(make_user("someone", role, send_live=True))
    account = make_attentive()
    url = path.format(account=account.pk)
    for response in (client.get(url), client.post(url, {**form_data(), "confirm": "1"})):
        if response.status_code == 405:  # a list takes no POST, a test or delete no GET
            continue
        assert response.status_code == 403
        assert b"Only administrators change the settings" in response.content
    assert AttentiveAccount.objects.get().name == "Shop US"
    assert not AuditEvent.objects.filter(action__startswith="account.attentive").exists()


# --- create, edit, delete -----------------------------------------------------------------


def test_a_new_account_stores_its_key_encrypted_and_never_shows_it(
    client: Client, admin: User
) -> None:
    response = client.post("/settings/attentive/new", form_data())
    assert response.status_code == 302
    account = AttentiveAccount.objects.get(name="Shop US")
    assert account.api_key == SECRET and SECRET not in raw_api_key(account.pk)
    assert account.graphql_endpoint == ATTENTIVE_ENDPOINT and account.rate_limit == 150
    for url in (response["Location"], "/settings/attentive"):
        page = client.get(url).content.decode()
        assert SECRET not in page
        assert "api.attentivemobile.com" in page and "150 requests/s" in page
    edit = client.get(response["Location"]).content.decode()
    assert "A key is stored (not shown). Leave empty to keep it" in edit
    assert 'name="api_key"' in edit and re.search(r'name="api_key"[^>]*value=', edit) is None
    event = AuditEvent.objects.get(action="account.attentive_created")
    assert event.object_type == "attentiveaccount" and event.object_id == str(account.pk)
    assert SECRET not in str(event.detail)
    assert describe(event.action, event.detail) == (
        "Added the Attentive account Shop US (endpoint https://api.attentivemobile.com/v1/"
        "graphql, at most 150 requests/s), its API key stored encrypted."
    )


def test_an_empty_key_on_edit_keeps_it_and_a_new_one_replaces_it(
    client: Client, admin: User
) -> None:
    account = make_attentive(api_key="the-old-attentive-key")
    url = f"/settings/attentive/{account.pk}"
    data = form_data(name="Shop EU", api_key="", rate_limit="100")
    response = client.post(url, data, follow=True)
    assert "Shop EU: saved the name and the rate limit." in response.content.decode()
    account.refresh_from_db()
    assert (account.name, account.rate_limit) == ("Shop EU", 100)
    assert account.api_key == "the-old-attentive-key"
    assert not AuditEvent.objects.filter(action="account.attentive_key_replaced").exists()
    updated = AuditEvent.objects.get(action="account.attentive_updated")
    assert updated.detail["changes"] == {
        "name": {"before": "Shop US", "after": "Shop EU"},
        "rate_limit": {"before": "150", "after": "100"},
    }
    assert describe(updated.action, updated.detail) == (
        "Changed the Attentive account Shop EU: the name from Shop US to Shop EU and the rate "
        "limit from 150 to 100."
    )

    # A new key replaces the old; the limit left empty stays what it was.
    new = form_data(name="Shop EU", api_key="a-brand-new-attentive-key", rate_limit="")
    response = client.post(url, new, follow=True)
    assert "Shop EU: saved the API key." in response.content.decode()
    account.refresh_from_db()
    assert account.api_key == "a-brand-new-attentive-key" and account.rate_limit == 100
    assert "a-brand-new-attentive-key" not in raw_api_key(account.pk)
    replaced = AuditEvent.objects.get(action="account.attentive_key_replaced")
    assert "attentive-key" not in str(replaced.detail)
    assert AuditEvent.objects.filter(action="account.attentive_updated").count() == 1
    page = client.get(url).content.decode()
    assert "a-brand-new-attentive-key" not in page and "the-old-attentive-key" not in page


def test_the_sandbox_endpoint_is_kept_and_an_empty_one_is_attentives(
    client: Client, admin: User
) -> None:
    sandbox_url = "http://127.0.0.1:8765/v1/graphql"
    response = client.post("/settings/attentive/new", form_data(graphql_endpoint=sandbox_url))
    assert response.status_code == 302
    account = AttentiveAccount.objects.get()
    assert account.graphql_endpoint == sandbox_url and account.endpoint_host == "127.0.0.1:8765"
    page = client.get(f"/settings/attentive/{account.pk}").content.decode()
    assert f'value="{sandbox_url}"' in page
    assert (
        client.post(f"/settings/attentive/{account.pk}", form_data(api_key="")).status_code == 302
    )
    account.refresh_from_db()
    assert account.graphql_endpoint == ATTENTIVE_ENDPOINT
    page = client.get(f"/settings/attentive/{account.pk}").content.decode()
    assert 'name="graphql_endpoint"' in page and f'value="{ATTENTIVE_ENDPOINT}"' not in page


@pytest.mark.parametrize(
    ("fields", "label", "words"),
    [
        ({"api_key": ""}, "API key", "Paste the key Attentive showed you"),
        ({"name": ""}, "Name", "required"),
        ({"rate_limit": "0"}, "Requests per second at most", "greater than or equal to 1"),
        ({"rate_limit": "1001"}, "Requests per second at most", "less than or equal to 1000"),
        ({"graphql_endpoint": "http://api.example.com/v1/graphql"}, "Custom GraphQL endpoint",
         "Use an https:// address"),
        ({"graphql_endpoint": "not a url"}, "Custom GraphQL endpoint", "valid URL"),
    ],
)  # fmt: skip
def test_the_form_names_the_field_it_refuses_and_never_echoes_the_key(
    client: Client, admin: User, fields: dict[str, str], label: str, words: str
) -> None:
    response = client.post("/settings/attentive/new", form_data(**fields))
    assert response.status_code == 400
    page = response.content.decode()
    assert f"{label}: " in page and words in page
    assert SECRET not in page
    assert not AttentiveAccount.objects.exists()


def test_a_taken_name_is_refused_whatever_its_case(client: Client, admin: User) -> None:
    make_attentive(name="Shop US")
    response = client.post("/settings/attentive/new", form_data(name="shop us"))
    assert response.status_code == 400
    assert "An Attentive account named shop us exists already" in response.content.decode()


def test_the_form_is_checked_as_typed_without_saving_or_giving_the_key_back(
    client: Client, admin: User
) -> None:
    make_attentive(name="Shop US")
    response = client.post(
        "/settings/attentive/new",
        {"_check": "1", "name": "Shop US", "rate_limit": "5000", "api_key": SECRET},
    )
    page = response.content.decode()
    assert response.status_code == 200 and page.lstrip().startswith('<form id="attentive-form"')
    assert "exists already" in page and "less than or equal to 1000" in page
    assert "Paste the key" not in page  # nothing not typed yet is called missing
    assert SECRET not in page
    assert AttentiveAccount.objects.count() == 1


def test_delete_asks_for_the_box_then_deletes_and_records_it(client: Client, admin: User) -> None:
    account = make_attentive()
    url = f"/settings/attentive/{account.pk}/delete"
    response = client.post(url, follow=True)
    assert "Tick the box" in response.content.decode()
    assert AttentiveAccount.objects.exists()
    response = client.post(url, {"confirm": "1"}, follow=True)
    assert response.redirect_chain[-1][0] == "/settings/attentive"
    assert "Attentive account Shop US deleted" in response.content.decode()
    assert not AttentiveAccount.objects.exists()
    event = AuditEvent.objects.get(action="account.attentive_deleted")
    assert event.object_label == "Shop US" and SECRET not in str(event.detail)
    assert describe(event.action, event.detail) == (
        "Deleted the Attentive account Shop US and its stored API key."
    )


def test_the_overview_counts_the_attentive_accounts(client: Client, admin: User) -> None:
    make_attentive()
    page = client.get("/settings/").content.decode()
    assert "Attentive accounts" in page and "1 account." in page


# --- the connection test against the sandbox ---------------------------------------------


def test_test_connection_with_the_right_key_says_accepted_and_creates_no_event(
    client: Client, admin: User, sandbox: Sandbox
) -> None:
    account = make_attentive(api_key=ATTENTIVE_KEY, graphql_endpoint=f"{sandbox.url}/v1/graphql")
    response = client.post(f"/settings/attentive/{account.pk}/test", follow=True)
    assert response.redirect_chain[-1][0] == f"/settings/attentive/{account.pk}#connection-test"
    page = response.content.decode()
    assert "status-conn-ok" in page and "Key accepted" in page
    assert "Attentive answered and accepted the API key. No event was created." in page
    assert re.search(r"\(\d+ ms, HTTP 200\)", page)
    assert ATTENTIVE_KEY not in page
    seen = sandbox.inspect()
    assert seen["counts"]["requests_by_status"] == {"200": 1}
    assert seen["counts"]["attentive_events"] == 0
    (request,) = seen["requests"]
    assert request["endpoint"] == "/v1/graphql" and request["api_key"] == ATTENTIVE_KEY
    event = AuditEvent.objects.get(action="account.attentive_tested")
    assert event.detail["outcome"] == "ok" and event.detail["http_status"] == 200
    assert ATTENTIVE_KEY not in str(event.detail)
    # Shown once: a reload does not show (nor run) it again.
    assert "Key accepted" not in client.get(f"/settings/attentive/{account.pk}").content.decode()


def test_test_connection_with_a_wrong_key_says_refused(
    client: Client, admin: User, sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    account = make_attentive(
        api_key="not-a-key-attentive-knows", graphql_endpoint=f"{sandbox.url}/v1/graphql"
    )
    page = client.post(f"/settings/attentive/{account.pk}/test", follow=True).content.decode()
    assert "Key refused" in page and "Attentive refused the API key (HTTP 401)" in page
    assert "not-a-key-attentive-knows" not in page
    assert "not-a-key-attentive-knows" not in caplog.text
    event = AuditEvent.objects.get(action="account.attentive_tested")
    assert describe(event.action, event.detail).startswith(
        "Tested the connection of the Attentive account Shop US: Attentive refused the API "
        "key (HTTP 401, "
    )


def test_test_connection_to_a_closed_port_names_the_host_and_port(
    client: Client, admin: User
) -> None:
    port = closed_port()
    account = make_attentive(graphql_endpoint=f"http://127.0.0.1:{port}/v1/graphql")
    page = client.post(f"/settings/attentive/{account.pk}/test", follow=True).content.decode()
    assert "Unreachable" in page and f"Nothing answers at 127.0.0.1:{port}" in page
    assert AuditEvent.objects.get(action="account.attentive_tested").detail["outcome"] == (
        "unreachable"
    )


def test_test_connection_when_the_key_is_at_its_rate_limit_says_so(
    client: Client, admin: User, sandbox: Sandbox
) -> None:
    sandbox.faults(rate_http_429=1.0, retry_after=3, scope="attentive")
    account = make_attentive(api_key=ATTENTIVE_KEY, graphql_endpoint=f"{sandbox.url}/v1/graphql")
    page = client.post(f"/settings/attentive/{account.pk}/test", follow=True).content.decode()
    assert "Rate limited" in page and "status-attention" in page
    assert "Try again in 3 s." in page and "HTTP 429" in page


def test_test_connection_with_an_error_in_a_200_says_what_came_back(
    client: Client, admin: User, sandbox: Sandbox
) -> None:
    sandbox.faults(rate_graphql_error=1.0, scope="attentive")
    account = make_attentive(api_key=ATTENTIVE_KEY, graphql_endpoint=f"{sandbox.url}/v1/graphql")
    page = client.post(f"/settings/attentive/{account.pk}/test", follow=True).content.decode()
    assert "Unexpected answer" in page
    assert "answered HTTP 200 with an error: Internal server error (sandbox fault)" in page


def test_test_connection_at_connects_endpoint_is_not_taken_for_attentive(
    client: Client, admin: User, sandbox: Sandbox
) -> None:
    """The wrong path of the sandbox (Connect's, which wants x-api-key): refused."""
    account = make_attentive(api_key=ATTENTIVE_KEY, graphql_endpoint=f"{sandbox.url}/graphql")
    page = client.post(f"/settings/attentive/{account.pk}/test", follow=True).content.decode()
    assert "Key refused" in page


@pytest.mark.parametrize(
    ("status", "body", "outcome"),
    [
        (200, {"data": {"__typename": "Query"}}, "ok"),
        # The token passed; only the test query was refused (a server that hides __typename).
        (200, {"errors": [{"message": "Cannot query field '__typename' on type 'Query'."}]},
         "ok"),
        (400, {"errors": [{"message": "Syntax Error: x",
                           "extensions": {"code": "GRAPHQL_PARSE_FAILED"}}]}, "ok"),
        (200, {"errors": [{"message": "Not allowed",
                           "extensions": {"code": "UNAUTHENTICATED"}}]}, "wrong_key"),
        (200, {"errors": [{"message": "Invalid token"}]}, "wrong_key"),
        (403, {}, "wrong_key"),
        (429, {}, "rate_limited"),
        (200, {"errors": [{"message": "Internal server error"}]}, "unexpected"),
        (502, "<html>Bad gateway</html>", "unexpected"),
        (200, {"data": None}, "unexpected"),
    ],
)  # fmt: skip
def test_each_answer_is_read_in_plain_words(status: int, body: Any, outcome: str) -> None:
    if isinstance(body, str):
        response = httpx.Response(status, text=body)
    else:
        response = httpx.Response(status, json=body)
    result = _read_answer(response, 5)
    assert result.outcome == outcome, result.detail
    if outcome == "unexpected" and status == 502:
        assert "HTTP 502" in result.detail and "<html>Bad gateway</html>" in result.detail


def test_an_unexpected_answer_shows_at_most_200_characters() -> None:
    result = _read_answer(httpx.Response(500, text="x" * 1000), 5)
    assert result.outcome == "unexpected" and result.detail.count("x") == 200


# --- the demo ------------------------------------------------------------------------------


@override_settings(DEBUG=True, SANDBOX_HTTP_PORT=8765)
def test_seed_demo_creates_one_demo_attentive_account_idempotently() -> None:
    out = io.StringIO()
    call_command("seed_demo", stdout=out)
    account = AttentiveAccount.objects.get()
    account.rate_limit = 20  # an admin's choice survives a second seed
    account.api_key = "changed"
    account.save()
    call_command("seed_demo", stdout=io.StringIO())
    account = AttentiveAccount.objects.get()
    assert account.name == "Demo Attentive (sandbox)"
    assert account.api_key == "demo-attentive-key"  # what devstack starts the sandbox with
    assert account.graphql_endpoint == "http://127.0.0.1:8765/v1/graphql"
    assert account.rate_limit == 20
    account.full_clean()
    assert "Demo Attentive account: Demo Attentive (sandbox)" in out.getvalue()


def test_devstack_starts_the_sandbox_with_the_demo_attentive_key() -> None:
    from connectadmin.demo import DEMO_ATTENTIVE_KEY
    from connectadmin.management.commands.devstack import sandbox_arguments

    arguments = sandbox_arguments()
    assert arguments[arguments.index("--attentive-key") + 1] == DEMO_ATTENTIVE_KEY
