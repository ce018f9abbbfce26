"""Connect accounts, app keys, secrets at rest, the admin, roles and the demo seed."""

from __future__ import annotations

import io
from typing import Any

import pytest
from cryptography.fernet import Fernet
from django.contrib.auth.models import Group, User
from django.core.exceptions import FieldError, ValidationError
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.db.models import ProtectedError
from django.test import Client, override_settings

from connectadmin import secrets
from connectadmin.env import SettingError
from connectadmin.models import AppKey, ConnectAccount, Region
from connectadmin.roles import SEND_LIVE, Role
from connectadmin.validators import validate_sftp_user_name
from tests.factories import make_account, make_app_key

pytestmark = pytest.mark.django_db

OLD_KEY = Fernet.generate_key().decode()
NEW_KEY = Fernet.generate_key().decode()


def raw_api_key(account: ConnectAccount) -> str:
    """The column as stored, bypassing the field's decryption."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT api_key FROM {ConnectAccount._meta.db_table} WHERE id = %s", [account.pk]
        )
        (value,) = cursor.fetchone()
    return str(value)


# --- secrets -------------------------------------------------------------------------


def test_encryption_round_trips() -> None:
    for plaintext in ["demo-pro-api-key", "", "ключ 🔑 with spaces"]:
        token = secrets.encrypt(plaintext)
        assert token != plaintext
        assert secrets.decrypt(token) == plaintext


def test_the_stored_column_never_contains_the_plaintext() -> None:
    account = make_account(api_key="very-secret-api-key-1234")
    stored = raw_api_key(account)
    assert "very-secret-api-key-1234" not in stored
    assert secrets.decrypt(stored) == "very-secret-api-key-1234"
    assert ConnectAccount.objects.get(pk=account.pk).api_key == "very-secret-api-key-1234"


def test_rotation_keeps_old_values_readable_and_rotate_re_encrypts_them() -> None:
    with override_settings(FIELD_ENCRYPTION_KEYS=[OLD_KEY]):
        account = make_account(api_key="rotate-me")
    old_token = raw_api_key(account)

    with override_settings(FIELD_ENCRYPTION_KEYS=[NEW_KEY, OLD_KEY]):
        assert ConnectAccount.objects.get(pk=account.pk).api_key == "rotate-me"
        call_command("rotate_encryption_keys", stdout=io.StringIO())

    new_token = raw_api_key(account)
    assert new_token != old_token
    assert Fernet(NEW_KEY.encode()).decrypt(new_token.encode()) == b"rotate-me"
    with override_settings(FIELD_ENCRYPTION_KEYS=[NEW_KEY]):
        assert ConnectAccount.objects.get(pk=account.pk).api_key == "rotate-me"


def test_update_and_bulk_update_encrypt_too() -> None:
    first, second = make_account(), make_account()
    ConnectAccount.objects.filter(pk=first.pk).update(api_key="updated-key")
    assert "updated-key" not in raw_api_key(first)
    first.refresh_from_db()
    assert first.api_key == "updated-key"

    first.api_key, second.api_key = "bulk-one", "bulk-two"
    ConnectAccount.objects.bulk_update([first, second], ["api_key"])
    assert "bulk-one" not in raw_api_key(first)
    assert [a.api_key for a in ConnectAccount.objects.order_by("pk")] == ["bulk-one", "bulk-two"]


def test_a_value_no_configured_key_can_read_fails_loudly() -> None:
    with override_settings(FIELD_ENCRYPTION_KEYS=[OLD_KEY]):
        account = make_account()
    with (
        override_settings(FIELD_ENCRYPTION_KEYS=[NEW_KEY]),
        pytest.raises(secrets.SecretUnreadable, match="rotate_encryption_keys"),
    ):
        ConnectAccount.objects.get(pk=account.pk)


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        (["not-a-fernet-key"], "key 1 of 1 is not a Fernet key"),
        ([NEW_KEY, "c2hvcnQ="], "key 2 of 2 is not a Fernet key"),
        ([], "FIELD_ENCRYPTION_KEYS is empty"),
    ],
)
def test_bad_key_material_fails_loudly(keys: list[str], message: str) -> None:
    with override_settings(FIELD_ENCRYPTION_KEYS=keys), pytest.raises(SettingError) as error:
        secrets.encrypt("x")
    assert message in str(error.value)
    assert "Fernet.generate_key" in str(error.value)
    assert "c2hvcnQ=" not in str(error.value)  # a key, even a bad one, is never echoed


def test_lookups_on_an_encrypted_field_are_refused() -> None:
    make_account(api_key="k")
    with pytest.raises(FieldError):
        ConnectAccount.objects.filter(api_key="k").count()
    assert ConnectAccount.objects.filter(api_key__isnull=False).count() == 1


# --- models --------------------------------------------------------------------------


def test_the_endpoint_defaults_from_the_region() -> None:
    assert make_account(region=Region.US_EAST_1).graphql_endpoint == (
        "https://connect-gql-us-1.goacoustic.com/"
    )
    assert make_account(region=Region.EU_CENTRAL_1).graphql_endpoint == (
        "https://connect-gql-eu-1.goacoustic.com/"
    )
    assert make_account(region=Region.AP_SOUTHEAST_2).graphql_endpoint == (
        "https://connect-gql-ap-3.goacoustic.com/"
    )
    with override_settings(SANDBOX_HTTP_PORT=9999):
        assert make_account(region=Region.SANDBOX).graphql_endpoint == (
            "http://127.0.0.1:9999/graphql"
        )


def test_an_admin_may_override_the_endpoint_but_a_real_region_needs_https() -> None:
    account = make_account(region=Region.US_EAST_1, graphql_endpoint="https://proxy.example/gql")
    assert account.graphql_endpoint == "https://proxy.example/gql"
    account.graphql_endpoint = "http://proxy.example/gql"
    with pytest.raises(ValidationError) as error:
        account.full_clean()
    assert "must use https://" in str(error.value)


def test_an_unknown_region_is_a_validation_error_not_a_crash() -> None:
    account = ConnectAccount(name="Mars", region="mars-1", api_key="k", connect_user_email="a@x.io")
    with pytest.raises(ValidationError) as error:
        account.full_clean()
    assert list(error.value.message_dict) == ["region"]


@pytest.mark.parametrize("email", ["a.b-c_d@x.io", "pro@demo.connectadmin.test", "abc"])
def test_the_sftp_user_rule_accepts(email: str) -> None:
    validate_sftp_user_name(email)


@pytest.mark.parametrize(
    ("email", "message"),
    [
        ("a+b@x.io", "not '+'"),
        ('"ab"@x.io', "not '\"'"),
        ("o'neil@x.io", 'not "\'"'),
        ("ab", "3–100 characters long (this one has 2)"),
        ("a" * 93 + "@x.io.io", "3–100 characters long (this one has 101)"),
    ],
)
def test_the_sftp_user_rule_rejects(email: str, message: str) -> None:
    with pytest.raises(ValidationError) as error:
        validate_sftp_user_name(email)
    (text,) = error.value.messages
    assert "SFTP user name" in text
    assert message in text


def test_an_account_with_a_plus_address_does_not_validate() -> None:
    account = ConnectAccount(
        name="Plus", region=Region.SANDBOX, api_key="k", connect_user_email="a+b@x.io"
    )
    with pytest.raises(ValidationError) as error:
        account.full_clean()
    assert "connect_user_email" in error.value.message_dict


def test_an_account_with_app_keys_cannot_be_deleted() -> None:
    app_key = make_app_key()
    with pytest.raises(ProtectedError):
        app_key.account.delete()


# --- admin ---------------------------------------------------------------------------


def account_form(**overrides: Any) -> dict[str, Any]:
    data = {
        "name": "Admin made",
        "region": Region.EU_CENTRAL_1,
        "graphql_endpoint": "",
        "api_key": "",
        "connect_user_email": "owner@example.test",
        "app_keys-TOTAL_FORMS": "0",
        "app_keys-INITIAL_FORMS": "0",
        "app_keys-MIN_NUM_FORMS": "0",
        "app_keys-MAX_NUM_FORMS": "1000",
    }
    data.update(overrides)
    return data


def test_admin_add_page_renders_with_a_password_field(admin_client: Client) -> None:
    response = admin_client.get("/admin/connectadmin/connectaccount/add/")
    assert response.status_code == 200
    assert b'type="password" name="api_key"' in response.content


def test_admin_add_requires_a_key_and_stores_it_encrypted(admin_client: Client) -> None:
    response = admin_client.post("/admin/connectadmin/connectaccount/add/", account_form())
    assert response.status_code == 200
    assert b"Paste the API key Connect showed you." in response.content

    response = admin_client.post(
        "/admin/connectadmin/connectaccount/add/", account_form(api_key="fresh-key-5678")
    )
    assert response.status_code == 302
    account = ConnectAccount.objects.get(name="Admin made")
    assert account.api_key == "fresh-key-5678"
    assert account.graphql_endpoint == "https://connect-gql-eu-1.goacoustic.com/"
    assert "fresh-key-5678" not in raw_api_key(account)


def test_admin_pages_never_show_the_api_key(admin_client: Client) -> None:
    account = make_account(api_key="never-show-me-9876")
    make_app_key(account, key="visible-app-key")
    pages = [
        f"/admin/connectadmin/connectaccount/{account.pk}/change/",
        "/admin/connectadmin/connectaccount/",
        f"/admin/connectadmin/connectaccount/{account.pk}/history/",
        f"/admin/connectadmin/connectaccount/{account.pk}/delete/",
    ]
    for page in pages:
        response = admin_client.get(page)
        assert response.status_code == 200, page
        assert b"never-show-me" not in response.content, page
        assert b"9876" not in response.content, page
    change = admin_client.get(pages[0]).content.decode()
    assert "A key is stored." in change
    assert "visible-app-key" in change  # the inline


def test_a_blank_key_field_keeps_the_stored_key(admin_client: Client) -> None:
    account = make_account(api_key="keep-me", region=Region.SANDBOX)
    url = f"/admin/connectadmin/connectaccount/{account.pk}/change/"
    data = account_form(
        name=account.name,
        region=account.region,
        graphql_endpoint=account.graphql_endpoint,
        connect_user_email=account.connect_user_email,
        api_key="",
    )
    assert admin_client.post(url, data).status_code == 302
    account.refresh_from_db()
    assert account.api_key == "keep-me"

    assert admin_client.post(url, {**data, "api_key": "replaced"}).status_code == 302
    account.refresh_from_db()
    assert account.api_key == "replaced"


def test_admin_lists_and_filters_app_keys(admin_client: Client) -> None:
    make_app_key(key="pro-key", tier="pro")
    make_app_key(key="ultimate-key", tier="ultimate", active=False)
    response = admin_client.get("/admin/connectadmin/appkey/?tier=ultimate&active__exact=0")
    assert response.status_code == 200
    assert b"ultimate-key" in response.content
    assert b"pro-key" not in response.content
    response = admin_client.get("/admin/connectadmin/connectaccount/?region=sandbox&q=Account")
    assert response.status_code == 200


# --- roles ---------------------------------------------------------------------------


def test_the_roles_exist_and_only_admins_may_send_live() -> None:
    assert set(Group.objects.values_list("name", flat=True)) >= {r.value for r in Role}
    users = {}
    for role in Role:
        user = User.objects.create_user(username=f"user-{role}", password="x")
        user.groups.add(Group.objects.get(name=role))
        users[role] = User.objects.get(pk=user.pk)  # a fresh object: no permission cache
    assert users[Role.ADMIN].has_perm(SEND_LIVE)
    assert users[Role.ADMIN].has_perm("connectadmin.change_connectaccount")
    assert not users[Role.MARKETER].has_perm(SEND_LIVE)
    assert not users[Role.OPS].has_perm(SEND_LIVE)
    assert users[Role.OPS].has_perm("connectadmin.view_appkey")
    assert not users[Role.OPS].has_perm("connectadmin.change_appkey")


# --- seed_demo -----------------------------------------------------------------------


@override_settings(DEBUG=True)
def test_seed_demo_is_idempotent() -> None:
    call_command("seed_demo", stdout=io.StringIO())
    call_command("seed_demo", stdout=io.StringIO())
    assert ConnectAccount.objects.count() == 2
    assert AppKey.objects.count() == 2
    assert User.objects.count() == 3

    pro = ConnectAccount.objects.get(name="Demo Pro (sandbox)")
    assert pro.api_key == "demo-pro-api-key"
    assert pro.region == Region.SANDBOX
    assert pro.graphql_endpoint == "http://127.0.0.1:8765/graphql"
    assert pro.connect_user_email == "pro@demo.connectadmin.test"
    pro.full_clean()
    assert AppKey.objects.get(key="demo-ultimate-appkey").tier == "ultimate"
    assert AppKey.objects.get(key="demo-pro-appkey").account == pro

    admin = User.objects.get(username="admin")
    assert admin.is_superuser and admin.check_password("admin-demo-pass")
    marketer = User.objects.get(username="marketer")
    assert marketer.check_password("marketer-demo-pass")
    assert list(marketer.groups.values_list("name", flat=True)) == ["marketer"]
    assert not marketer.has_perm(SEND_LIVE)


@override_settings(DEBUG=True)
def test_seed_demo_prints_the_logins(capsys: pytest.CaptureFixture[str]) -> None:
    call_command("seed_demo")
    out = capsys.readouterr().out
    for line in ["admin-demo-pass", "marketer-demo-pass", "ops-demo-pass"]:
        assert line in out


def test_seed_demo_refuses_in_production_mode_unless_forced() -> None:
    with override_settings(DEBUG=False):
        with pytest.raises(CommandError, match="publicly known passwords"):
            call_command("seed_demo")
        assert not User.objects.exists()
        call_command("seed_demo", "--force", stdout=io.StringIO())
    assert User.objects.count() == 3
