"""The Settings area (/settings/): Connect accounts, app keys, users and roles, for admins
only; the connection test against the real sandbox process."""

from __future__ import annotations

import contextlib
import ipaddress
import re
import socket
import ssl
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from django.contrib.auth.models import User
from django.core import mail
from django.db import connection
from django.test import Client

from connectadmin import team
from connectadmin.models import AppKey, ConnectAccount, Region
from signals_app.models import AuditEvent
from tests.factories import make_account, make_app_key
from tests.sandbox.support import ULTIMATE_EMAIL, ULTIMATE_KEY, Sandbox, running_sandbox
from tests.test_views import make_user

pytestmark = pytest.mark.django_db

PAGES = [
    "/settings/",
    "/settings/accounts",
    "/settings/accounts/new",
    "/settings/accounts/{account}",
    "/settings/app-keys",
    "/settings/app-keys/new",
    "/settings/app-keys/{app_key}",
    "/settings/users",
    "/settings/users/{user}",
]
GET_ONLY = {"/settings/", "/settings/accounts", "/settings/app-keys"}


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[Sandbox]:
    """A real `python -m sandbox serve` process (Connect's GraphQL)."""
    with running_sandbox(tmp_path / "sandbox") as running:
        yield running


@pytest.fixture
def admin(client: Client) -> User:
    user = make_user("ada", "admin")
    client.force_login(user)
    return user


def raw_api_key(account_id: int) -> str:
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT api_key FROM {ConnectAccount._meta.db_table} WHERE id = %s", [account_id]
        )
        (value,) = cursor.fetchone()
    return str(value)


def account_data(**fields: Any) -> dict[str, str]:
    data = {
        "name": "Shop EU",
        "region": Region.EU_CENTRAL_1.value,
        "graphql_endpoint": "",
        "api_key": "plain-secret-api-key-42",
        "connect_user_email": "connect.user@example.com",
    }
    data.update(fields)
    return data


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- access -------------------------------------------------------------------------------


@pytest.mark.parametrize("path", PAGES)
def test_each_settings_page_opens_for_an_admin(client: Client, admin: User, path: str) -> None:
    account = make_account()
    url = path.format(account=account.pk, app_key=make_app_key(account).pk, user=admin.pk)
    response = client.get(url)
    assert response.status_code == 200
    assert b'href="/settings/"' in response.content  # the nav link
    assert b"/settings/sftp" in response.content


@pytest.mark.parametrize("role", ["marketer", "ops"])
@pytest.mark.parametrize("path", PAGES)
def test_others_are_refused_with_a_reason(client: Client, role: str, path: str) -> None:
    user = make_user("someone", role, send_live=True)
    client.force_login(user)
    account = make_account()
    url = path.format(account=account.pk, app_key=make_app_key(account).pk, user=user.pk)
    response = client.get(url)
    assert response.status_code == 403
    assert b"Only administrators change the settings" in response.content
    response = client.post(url, {"role": "admin", "active": "on"})
    if path in GET_ONLY:
        assert response.status_code == 405
    else:
        assert response.status_code == 403
        assert b"Only administrators change the settings" in response.content
    assert ConnectAccount.objects.count() == 1
    assert not User.objects.get(pk=user.pk).groups.filter(name="admin").exists()


def test_the_nav_link_shows_for_admins_only(client: Client) -> None:
    client.force_login(make_user("mia", "marketer"))
    assert b'href="/settings/"' not in client.get("/imports").content
    client.force_login(make_user("ada", "admin"))
    assert b'href="/settings/"' in client.get("/imports").content


# --- Connect accounts --------------------------------------------------------------------


def test_an_accounts_batches_in_flight_are_set_on_its_form(client: Client, admin: User) -> None:
    """The cap of createSignals calls at once for the account (SPEC §6, the sending
    window): 8 unless set, kept when the field is left empty, 1 to 64."""
    assert client.post("/settings/accounts/new", account_data()).status_code == 302
    account = ConnectAccount.objects.get(name="Shop EU")
    assert account.max_batches_in_flight == 8
    edit = f"/settings/accounts/{account.pk}"
    page = client.get(edit).content.decode()
    assert 'name="max_batches_in_flight"' in page and 'value="8"' in page
    for wrong in ("0", "65", "many"):
        response = client.post(edit, {**account_data(), "max_batches_in_flight": wrong})
        assert response.status_code == 400, wrong
    assert client.post(edit, {**account_data(), "max_batches_in_flight": "3"}).status_code == 302
    account.refresh_from_db()
    assert account.max_batches_in_flight == 3
    assert client.post(edit, {**account_data(), "max_batches_in_flight": ""}).status_code == 302
    account.refresh_from_db()
    assert account.max_batches_in_flight == 3


def test_a_new_account_stores_its_key_encrypted_and_never_shows_it(
    client: Client, admin: User
) -> None:
    response = client.post("/settings/accounts/new", account_data())
    assert response.status_code == 302
    account = ConnectAccount.objects.get(name="Shop EU")
    assert account.api_key == "plain-secret-api-key-42"
    assert "plain-secret-api-key-42" not in raw_api_key(account.pk)
    # The region gives the API host and the SFTP host (SPEC §6 and §8).
    assert account.graphql_endpoint == "https://connect-gql-eu-1.goacoustic.com/"
    assert account.sftp_address == (
        "s-0f495b8f35324396a.server.transfer.eu-central-1.amazonaws.com",
        22,
    )
    for url in (response["Location"], "/settings/accounts"):
        page = client.get(url).content.decode()
        assert "plain-secret-api-key-42" not in page
        assert "connect-gql-eu-1.goacoustic.com" in page
    event = AuditEvent.objects.get(action="account.created")
    assert "plain-secret-api-key-42" not in str(event.detail)


def test_an_empty_key_on_edit_keeps_the_key_and_a_new_one_replaces_it(
    client: Client, admin: User
) -> None:
    account = make_account(api_key="the-old-key-123")
    old_name = account.name
    url = f"/settings/accounts/{account.pk}"
    page = client.get(url).content.decode()
    assert "the-old-key-123" not in page and "A key is stored" in page
    data = account_data(name="Renamed", region="sandbox", api_key="")
    assert client.post(url, data).status_code == 302
    account.refresh_from_db()
    assert account.name == "Renamed" and account.api_key == "the-old-key-123"
    assert not AuditEvent.objects.filter(action="account.key_replaced").exists()
    updated = AuditEvent.objects.get(action="account.updated")
    assert updated.detail["changes"]["name"] == {"before": old_name, "after": "Renamed"}
    assert "the-old-key-123" not in str(updated.detail)
    assert client.post(url, {**data, "api_key": "a-brand-new-key"}).status_code == 302
    account.refresh_from_db()
    assert account.api_key == "a-brand-new-key"
    assert "a-brand-new-key" not in raw_api_key(account.pk)
    replaced = AuditEvent.objects.get(action="account.key_replaced")
    assert "a-brand-new-key" not in str(replaced.detail)
    assert "the-old-key-123" not in str(replaced.detail)


def test_a_change_of_region_moves_the_api_host(client: Client, admin: User) -> None:
    account = make_account(region=Region.US_EAST_1, graphql_endpoint="")
    assert account.graphql_endpoint == "https://connect-gql-us-1.goacoustic.com/"
    data = account_data(name=account.name, region=Region.AP_SOUTHEAST_2.value, api_key="")
    assert client.post(f"/settings/accounts/{account.pk}", data).status_code == 302
    account.refresh_from_db()
    assert account.graphql_endpoint == "https://connect-gql-ap-3.goacoustic.com/"


@pytest.mark.parametrize(
    ("fields", "field_label", "words"),
    [
        (
            {"connect_user_email": "jane+shop@example.com"},
            "Connect user e-mail",
            "allows only letters, digits",
        ),
        ({"connect_user_email": "not-an-address"}, "Connect user e-mail", "valid email"),
        (
            {"connect_user_email": "a" * 90 + "@example.com"},
            "Connect user e-mail",
            "at most 100 characters",
        ),
        ({"api_key": ""}, "API key", "Paste the key"),
        ({"name": ""}, "Name", "required"),
        (
            {"graphql_endpoint": "http://connect.example.com/graphql"},
            "Custom GraphQL endpoint",
            "https://",
        ),
    ],
)
def test_the_account_form_names_the_field_it_refuses(
    client: Client, admin: User, fields: dict[str, str], field_label: str, words: str
) -> None:
    response = client.post("/settings/accounts/new", account_data(**fields))
    assert response.status_code == 400
    page = response.content.decode()
    assert f"{field_label}: " in page
    assert words in page
    assert not ConnectAccount.objects.exists()
    assert "plain-secret-api-key-42" not in page  # not even given back to a refused form


def test_test_connection_with_the_right_key_says_ok(
    client: Client, admin: User, sandbox: Sandbox
) -> None:
    account = make_account(
        api_key=ULTIMATE_KEY,
        connect_user_email=ULTIMATE_EMAIL,
        graphql_endpoint=f"{sandbox.url}/graphql",
    )
    response = client.post(f"/settings/accounts/{account.pk}/test", follow=True)
    page = response.content.decode()
    assert "status-conn-ok" in page
    assert "Connect answered and accepted the API key" in page
    assert re.search(r"\(\d+ ms, HTTP 200\)", page)
    # One call reached the sandbox, answered 200, and changed nothing there.
    counts = sandbox.inspect()["counts"]
    assert counts["requests"] == 1 and counts["requests_by_status"] == {"200": 1}
    assert counts["signals"] == 0 and counts["export_jobs"] == {}
    event = AuditEvent.objects.get(action="account.connection_tested")
    assert event.detail["outcome"] == "ok"
    assert ULTIMATE_KEY not in str(event.detail)


def test_test_connection_with_a_wrong_key_says_wrong_key(
    client: Client, admin: User, sandbox: Sandbox
) -> None:
    account = make_account(api_key="not-a-key-connect-knows")
    account.graphql_endpoint = f"{sandbox.url}/graphql"
    account.save()
    page = client.post(f"/settings/accounts/{account.pk}/test", follow=True).content.decode()
    assert "status-conn-wrong_key" in page and "Wrong key" in page
    assert "HTTP 401" in page
    assert "not-a-key-connect-knows" not in page


def test_test_connection_to_a_closed_port_says_unreachable(client: Client, admin: User) -> None:
    account = make_account(graphql_endpoint=f"http://127.0.0.1:{closed_port()}/graphql")
    page = client.post(f"/settings/accounts/{account.pk}/test", follow=True).content.decode()
    assert "status-conn-unreachable" in page and "cannot be reached" in page
    assert re.search(r"\(\d+ ms\)", page)


@pytest.fixture
def untrusted_tls_server(tmp_path: Path) -> Iterator[int]:
    """A TLS server on a loopback port with a self-signed certificate nobody trusts."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn, contextlib.suppress(OSError, ssl.SSLError):
                conn.settimeout(5)
                with context.wrap_socket(conn, server_side=True) as tls:
                    tls.recv(65536)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()


def test_test_connection_to_an_untrusted_certificate_says_tls_problem(
    client: Client, admin: User, untrusted_tls_server: int
) -> None:
    account = make_account(graphql_endpoint=f"https://127.0.0.1:{untrusted_tls_server}/graphql")
    page = client.post(f"/settings/accounts/{account.pk}/test", follow=True).content.decode()
    assert "status-conn-tls" in page and "TLS problem" in page
    assert "CERTIFICATE_VERIFY_FAILED" in page or "certificate verify failed" in page


# --- app keys ----------------------------------------------------------------------------


def test_an_app_key_is_added_and_deactivating_it_hides_it_from_the_upload_form(
    client: Client, admin: User
) -> None:
    account = make_account(name="Shop")
    response = client.post(
        "/settings/app-keys/new",
        {"key": "shop-web", "label": "Web shop", "tier": "premium", "account": account.pk,
         "active": "on"},
    )  # fmt: skip
    assert response.status_code == 302
    app_key = AppKey.objects.get(key="shop-web")
    assert (app_key.tier, app_key.account, app_key.active) == ("premium", account, True)
    marketer = Client()
    marketer.force_login(make_user("mia", "marketer"))
    assert "shop-web" in marketer.get("/imports/new").content.decode()

    page = client.get(f"/settings/app-keys/{app_key.pk}").content.decode()
    assert "can no longer be chosen for a new import" in page
    response = client.post(
        f"/settings/app-keys/{app_key.pk}",
        {"key": "shop-web", "label": "Web shop", "tier": "premium", "account": account.pk},
    )
    assert response.status_code == 302
    assert not AppKey.objects.get(pk=app_key.pk).active
    assert "shop-web" not in marketer.get("/imports/new").content.decode()
    assert AuditEvent.objects.filter(action="appkey.deactivated").count() == 1
    listing = client.get("/settings/app-keys").content.decode()
    assert "Deactivated" in listing


def test_a_duplicate_app_key_is_refused_naming_the_field(client: Client, admin: User) -> None:
    existing = make_app_key(key="taken-key")
    response = client.post(
        "/settings/app-keys/new",
        {"key": "taken-key", "tier": "pro", "account": existing.account_id, "active": "on"},
    )
    assert response.status_code == 400
    assert "App key: " in response.content.decode()
    assert AppKey.objects.count() == 1


# --- users and roles ---------------------------------------------------------------------


def invite(client: Client, **fields: str) -> str:
    data = {"username": "nina", "email": "nina@example.com", "role": "marketer", **fields}
    response = client.post("/settings/users", data)
    assert response.status_code == 200, response.content.decode()
    match = re.search(r"http://testserver(/invite/[^<\s]+/)", response.content.decode())
    assert match, "the page shows the one-time link"
    return match.group(1)


def test_an_invitation_sets_a_password_once_and_signs_in(client: Client, admin: User) -> None:
    link = invite(client)
    nina = User.objects.get(username="nina")
    assert not nina.has_usable_password() and nina.groups.get().name == "marketer"
    assert len(mail.outbox) == 1 and link in mail.outbox[0].body
    assert mail.outbox[0].to == ["nina@example.com"]
    assert AuditEvent.objects.filter(action="user.invited").count() == 1

    invitee = Client()
    form_page = invitee.get(link, follow=True)
    assert b"Set your password" in form_page.content
    set_url = form_page.redirect_chain[-1][0]
    password = "a-long-password-for-nina-7"
    done = invitee.post(set_url, {"new_password1": password, "new_password2": password})
    assert done.status_code == 302 and done["Location"] == "/"
    assert invitee.get("/imports").status_code == 200  # signed in
    nina.refresh_from_db()
    assert nina.check_password(password)

    again = Client().get(link, follow=True)
    assert b"This link does not work any more" in again.content
    assert b"new_password1" not in again.content
    signing_in = Client().post("/login/", {"username": "nina", "password": password})
    assert signing_in.status_code == 302


def test_a_lost_invitation_is_sent_again_with_a_new_link(client: Client, admin: User) -> None:
    invite(client)
    nina = User.objects.get(username="nina")
    page = client.post(f"/settings/users/{nina.pk}/invite", follow=True).content.decode()
    match = re.search(r"http://testserver(/invite/[^<\s]+/)", page)
    assert match and "A new link for nina" in page
    assert len(mail.outbox) == 2 and match.group(1) in mail.outbox[1].body
    assert AuditEvent.objects.filter(action="user.invite_resent").count() == 1
    invitee = Client()
    set_url = invitee.get(match.group(1), follow=True).redirect_chain[-1][0]
    password = "another-long-password-3"
    invitee.post(set_url, {"new_password1": password, "new_password2": password})
    assert User.objects.get(pk=nina.pk).check_password(password)
    # With a password set, there is nothing to send again.
    page = client.post(f"/settings/users/{nina.pk}/invite", follow=True).content.decode()
    assert "is not waiting for an invitation" in page
    assert len(mail.outbox) == 2


def test_an_invitation_with_a_taken_name_is_refused(client: Client, admin: User) -> None:
    response = client.post(
        "/settings/users", {"username": "ada", "email": "x@example.com", "role": "ops"}
    )
    assert response.status_code == 400
    assert "User name: “ada” is taken" in response.content.decode()


def test_an_admin_changes_a_role_and_send_live(client: Client, admin: User) -> None:
    mia = make_user("mia", "marketer")
    url = f"/settings/users/{mia.pk}"
    assert client.post(url, {"role": "ops", "active": "on"}).status_code == 302
    mia = User.objects.get(pk=mia.pk)
    assert list(mia.groups.values_list("name", flat=True)) == ["ops"]
    assert mia.is_staff
    event = AuditEvent.objects.get(action="user.role_changed")
    assert event.detail == {"before": "marketer", "after": "ops"}

    assert (
        client.post(url, {"role": "marketer", "active": "on", "send_live": "on"}).status_code == 302
    )
    mia = User.objects.get(pk=mia.pk)
    assert mia.has_perm("connectadmin.send_live")
    assert AuditEvent.objects.filter(action="user.send_live_granted").count() == 1
    assert client.post(url, {"role": "marketer", "active": "on"}).status_code == 302
    assert not User.objects.get(pk=mia.pk).has_perm("connectadmin.send_live")


def test_an_admin_deactivates_and_reactivates_a_user(client: Client, admin: User) -> None:
    otto = make_user("otto", "ops")
    url = f"/settings/users/{otto.pk}"
    assert client.post(url, {"role": "ops"}).status_code == 302
    assert not User.objects.get(pk=otto.pk).is_active
    signing_in = Client().post("/login/", {"username": "otto", "password": "otto-pass"})
    assert signing_in.status_code == 200  # the form again, not a redirect: refused
    assert client.post(url, {"role": "ops", "active": "on"}).status_code == 302
    assert User.objects.get(pk=otto.pk).is_active
    actions = list(AuditEvent.objects.values_list("action", flat=True))
    assert "user.deactivated" in actions and "user.reactivated" in actions


def test_deactivation_ends_open_sessions_and_keeps_send_live_for_a_reactivation(
    client: Client, admin: User
) -> None:
    mia = make_user("mia", "marketer", send_live=True)
    mia_client = Client()
    assert (
        mia_client.post("/login/", {"username": "mia", "password": "mia-pass"}).status_code == 302
    )
    assert mia_client.get("/imports").status_code == 200
    url = f"/settings/users/{mia.pk}"
    assert client.post(url, {"role": "marketer", "send_live": "on"}).status_code == 302
    assert mia_client.get("/imports").status_code == 302  # signed out: back to the sign-in
    # The deactivated user's form still shows the grant, so saving it as shown keeps it.
    assert client.get(url).context["form"].initial["send_live"] is True
    assert (
        client.post(url, {"role": "marketer", "send_live": "on", "active": "on"}).status_code == 302
    )
    assert User.objects.get(pk=mia.pk).has_perm("connectadmin.send_live")
    assert not AuditEvent.objects.filter(action="user.send_live_revoked").exists()


def test_the_last_active_admin_cannot_be_demoted_or_deactivated(
    client: Client, admin: User
) -> None:
    url = f"/settings/users/{admin.pk}"
    for data, field in (
        ({"role": "marketer", "active": "on"}, "Role"),
        ({"role": "admin"}, "Active (may sign in)"),
    ):
        response = client.post(url, data)
        assert response.status_code == 400
        page = response.content.decode()
        assert f"{field}: ada is the last active admin" in page
        assert "make another user admin first" in page
    ada = User.objects.get(pk=admin.pk)
    assert ada.is_active and ada.groups.get().name == "admin"
    assert not AuditEvent.objects.filter(action__startswith="user.").exists()


def test_the_service_itself_refuses_to_leave_no_active_admin(admin: User) -> None:
    """Two admins demoting each other at once both pass the form's check; the service's
    own check (under a lock) keeps the last one."""
    with pytest.raises(team.LastAdminError, match="ada is the last active admin"):
        team.user_update(user=admin, role="ops", send_live=False, active=True, actor=admin)
    ada = User.objects.get(pk=admin.pk)
    assert ada.groups.get().name == "admin" and ada.is_staff
    assert not AuditEvent.objects.filter(action="user.role_changed").exists()


def test_an_admin_cannot_lock_themselves_out_but_another_admin_can_demote_them(
    client: Client, admin: User
) -> None:
    root = make_user("root", "admin")
    for data in ({"role": "ops", "active": "on"}, {"role": "admin"}):
        response = client.post(f"/settings/users/{admin.pk}", data)
        assert response.status_code == 400
        assert "lock yourself out" in response.content.decode()
    assert User.objects.get(pk=admin.pk).groups.get().name == "admin"
    # Another admin may: then root is the last one, and is kept.
    other = Client()
    other.force_login(root)
    assert (
        other.post(f"/settings/users/{admin.pk}", {"role": "ops", "active": "on"}).status_code
        == 302
    )
    assert User.objects.get(pk=admin.pk).groups.get().name == "ops"
    response = other.post(f"/settings/users/{root.pk}", {"role": "admin"})
    assert response.status_code == 400
    assert "root is the last active admin" in response.content.decode()


def test_a_superuser_demoted_loses_the_superuser_flag(client: Client, admin: User) -> None:
    boss = User.objects.create_superuser("boss", "boss@example.com", "boss-pass")
    assert (
        client.post(f"/settings/users/{boss.pk}", {"role": "marketer", "active": "on"}).status_code
        == 302
    )
    boss.refresh_from_db()
    assert not boss.is_superuser and not boss.is_staff
    assert Client().get("/settings/", HTTP_HOST="testserver").status_code == 302
    boss_client = Client()
    boss_client.force_login(boss)
    assert boss_client.get("/settings/").status_code == 403


# --- checked as the admin types (htmx posts the form with _check, as the export form) ---


def check(client: Client, url: str, data: dict[str, Any]) -> str:
    response = client.post(url, {"_check": "1", **data}, HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    return response.content.decode()


def test_the_settings_forms_are_checked_as_the_admin_types(client: Client, admin: User) -> None:
    account = make_account()
    app_key = make_app_key(account)
    for url, form_id in (
        ("/settings/accounts/new", "account-form"),
        (f"/settings/accounts/{account.pk}", "account-form"),
        ("/settings/app-keys/new", "app-key-form"),
        (f"/settings/app-keys/{app_key.pk}", "app-key-form"),
        ("/settings/users", "invite"),
        (f"/settings/users/{admin.pk}", "user-form"),
    ):
        page = client.get(url).content.decode()
        assert f'id="{form_id}"' in page and f'hx-post="{url}"' in page
        assert """hx-vals='{"_check": "1"}'""" in page, url
    # The API key is left out of the checks and kept as typed across the swap.
    page = client.get("/settings/accounts/new").content.decode()
    assert 'hx-params="not api_key"' in page and 'hx-preserve="true"' in page


def test_the_account_form_says_each_rule_as_typed_and_saves_nothing(
    client: Client, admin: User
) -> None:
    make_account(name="Shop EU")
    body = check(
        client,
        "/settings/accounts/new",
        {
            "name": "shop eu",
            "region": Region.EU_CENTRAL_1.value,
            "graphql_endpoint": "http://connect.example.com/graphql",
            "connect_user_email": "ann+ops@example.com",
            "api_key": "",  # not typed yet (and never sent by the check)
        },
    )
    assert body.lstrip().startswith('<form id="account-form"')  # the form only, for htmx
    assert "An account named shop eu exists already." in body
    assert "must use https://" in body
    assert "allows only letters, digits, _ - . and @; not &#x27;+&#x27;" in body
    assert "Paste the key" not in body and "This field is required" not in body
    assert "Nothing was saved" not in body
    assert ConnectAccount.objects.count() == 1
    assert not AuditEvent.objects.filter(action__startswith="account.").exists()


def test_a_check_never_gives_the_api_key_back(client: Client, admin: User) -> None:
    body = check(client, "/settings/accounts/new", account_data(name=""))
    assert "plain-secret-api-key-42" not in body
    assert not ConnectAccount.objects.exists()


def test_a_check_of_an_account_keeps_its_connection_test_result(
    client: Client, admin: User
) -> None:
    account = make_account(name="Shop EU")
    session = client.session
    session[f"connection-test-{account.pk}"] = {"outcome": "ok", "words": "OK", "detail": "fine",
                                                "elapsed_ms": 5, "http_status": 200,
                                                "endpoint": "x"}  # fmt: skip
    session.save()
    check(client, f"/settings/accounts/{account.pk}", {"name": "Shop EU", "region": "sandbox"})
    assert f"connection-test-{account.pk}" in client.session


def test_a_duplicate_app_key_is_said_as_typed_naming_its_account(
    client: Client, admin: User
) -> None:
    taken = make_app_key(account=make_account(name="Shop US"), key="taken-key", active=False)
    body = check(client, "/settings/app-keys/new", {"key": "taken-key", "tier": "", "account": ""})
    assert body.lstrip().startswith('<form id="app-key-form"')
    assert "taken-key is registered already (for Shop US, deactivated)" in body
    assert "id_tier-error" not in body and "id_account-error" not in body  # not chosen yet
    # The key's own page: its key is no duplicate of itself.
    data = {"key": "taken-key", "tier": "pro", "account": taken.account_id}
    assert "registered already" not in check(client, f"/settings/app-keys/{taken.pk}", data)
    assert AppKey.objects.count() == 1


def test_a_taken_user_name_or_e_mail_is_said_as_typed(client: Client, admin: User) -> None:
    User.objects.create_user("mia", "mia@example.com", "mia-pass")
    body = check(client, "/settings/users", {"username": "MIA", "email": "", "role": "ops"})
    assert "“MIA” is taken" in body and "id_email-error" not in body
    body = check(client, "/settings/users", {"username": "nina", "email": "MIA@example.com"})
    assert "A user with MIA@example.com exists already" in body
    assert not User.objects.filter(username="nina").exists()


def test_the_last_admin_guard_is_said_as_soon_as_active_is_unticked(
    client: Client, admin: User
) -> None:
    body = check(client, f"/settings/users/{admin.pk}", {"role": "admin"})
    assert body.lstrip().startswith('<form id="user-form"')
    assert "ada is the last active admin" in body
    assert User.objects.get(pk=admin.pk).is_active
    assert not AuditEvent.objects.filter(action__startswith="user.").exists()


def test_an_admin_sets_a_users_e_mail_address_for_their_alerts(client: Client, admin: User) -> None:
    otto = make_user("otto", "ops")
    mia = make_user("mia", "marketer")
    User.objects.filter(pk=mia.pk).update(email="mia@example.test")
    url = f"/settings/users/{otto.pk}"
    taken = client.post(url, {"email": "MIA@example.test", "role": "ops", "active": "on"})
    assert taken.status_code == 400
    assert "Another user has MIA@example.test already." in taken.content.decode()
    done = client.post(url, {"email": "otto@example.test", "role": "ops", "active": "on"})
    assert done.status_code == 302
    assert User.objects.get(pk=otto.pk).email == "otto@example.test"
    event = AuditEvent.objects.get(action="user.email_changed")
    assert event.detail == {"before": otto.email, "after": "otto@example.test"}
