"""A deactivated app key starts nothing new: no upload, no send of an import made before it
was deactivated, no promotion to live; the service refuses in one wording, which the upload
form, the import page and `import_signals` (tests/test_import_signals_command.py) show.
A send already under way is left to finish."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from connectadmin.models import AppKey
from signals_app.models import ImportStatus, SignalImport, audit
from signals_app.services import sending, upload
from signals_app.services.errors import ImportRefused
from tests.factories import make_app_key
from tests.test_views import make_import, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def imports_dir(settings: Any, tmp_path: Path) -> Path:
    settings.IMPORTS_DIR = tmp_path / "imports"
    return Path(settings.IMPORTS_DIR)


def deactivate(app_key: AppKey, by: User | None = None) -> None:
    """As Settings → App keys does it: the flag, and the audit event naming who."""
    app_key.active = False
    app_key.save(update_fields=["active"])
    if by is not None:
        changes = {"active": {"before": "True", "after": "False"}}
        audit(action="appkey.deactivated", actor=by, obj=app_key, key=app_key.key, changes=changes)


def test_the_refusal_names_the_key_who_deactivated_it_and_where_to_reactivate_it() -> None:
    app_key = make_app_key(key="shop-web")
    assert upload.app_key_refusal(app_key) == ""
    deactivate(app_key, by=make_user("ada", "admin"))
    refusal = upload.app_key_refusal(app_key)
    assert refusal.startswith("App key shop-web was deactivated by ada on ")
    assert refusal.endswith(
        ", so it cannot be used for a new import or send. An admin can reactivate it in "
        "Settings → App keys."
    )
    # Deactivated in Django's admin: no audit event, the rest of the sentence stands.
    other = make_app_key(key="old-web", active=False)
    assert upload.app_key_refusal(other).startswith(
        "App key old-web was deactivated, so it cannot be used"
    )
    # Reactivated in Settings, deactivated again in Django's admin: not ada's doing.
    audit(action="appkey.reactivated", obj=app_key, key=app_key.key)
    assert upload.app_key_refusal(app_key).startswith("App key shop-web was deactivated, so")


def test_a_new_import_on_a_deactivated_key_stores_nothing(imports_dir: Path) -> None:
    app_key = make_app_key(key="shop-web", active=False)
    with pytest.raises(ImportRefused, match="App key shop-web was deactivated"):
        upload.import_create(
            user=make_user("mia", "marketer"),
            app_key=app_key,
            mode="test",
            upload=SimpleUploadedFile("a.ndjson", b"{}\n"),
            original_name="a.ndjson",
        )
    assert not SignalImport.objects.exists()
    assert not any(imports_dir.glob("*"))  # no file kept either


def test_an_import_whose_key_was_deactivated_after_upload_is_not_sent() -> None:
    mia = make_user("mia", "marketer")
    signal_import = make_import(mia)
    deactivate(signal_import.connect_app_key)
    with pytest.raises(ImportRefused, match="was deactivated"):
        sending.import_send(signal_import=signal_import, user=mia)
    signal_import.refresh_from_db()
    assert signal_import.status == ImportStatus.VALIDATED
    assert not signal_import.batches.exists()


def test_a_test_import_is_not_promoted_to_live_on_a_deactivated_key() -> None:
    ada = make_user("ada", "admin", send_live=True)
    tested = make_import(ada, status=ImportStatus.COMPLETED, accepted=8, sent=8)
    deactivate(tested.connect_app_key)
    with pytest.raises(ImportRefused, match="was deactivated"):
        sending.import_promote(signal_import=tested, user=ada, confirm_skip=2)
    assert SignalImport.objects.count() == 1  # the refusal rolled the promotion back


# --- in the browser ----------------------------------------------------------------------


def test_a_key_deactivated_while_the_upload_form_was_open_is_refused_in_words(
    client: Client, imports_dir: Path
) -> None:
    client.force_login(make_user("mia", "marketer"))
    app_key = make_app_key(key="shop-web")
    assert "shop-web" in client.get("/imports/new").content.decode()
    deactivate(app_key, by=make_user("ada", "admin"))
    response = client.post(
        "/imports/new",
        {
            "app_key": app_key.pk,
            "mode": "test",
            "idempotency_key": "t",
            "file": SimpleUploadedFile("a.ndjson", b"{}\n"),
        },
    )
    assert response.status_code == 400
    page = response.content.decode()
    assert "App key shop-web was deactivated by ada on" in page
    assert "Settings → App keys" in page
    assert not SignalImport.objects.exists()


def test_the_import_page_says_why_it_cannot_be_sent_and_a_send_is_refused(
    client: Client,
) -> None:
    mia = make_user("mia", "marketer")
    client.force_login(mia)
    signal_import = make_import(mia, app_key=make_app_key(key="shop-web"))
    url = reverse("signals:import_detail", args=[signal_import.public_id])
    assert "Send as test" in client.get(url).content.decode()

    deactivate(signal_import.connect_app_key, by=make_user("ada", "admin"))
    page = client.get(url).content.decode()
    assert "Send as test" not in page
    assert "App key shop-web was deactivated by ada on" in page
    assert "(Pro, deactivated)" in page
    # A form rendered before the deactivation, submitted after it: the same words.
    response = client.post(
        reverse("signals:import_send", args=[signal_import.public_id]), follow=True
    )
    assert "App key shop-web was deactivated by ada on" in response.content.decode()
    assert not signal_import.batches.exists()


def test_the_promote_form_gives_way_to_the_refusal(client: Client) -> None:
    ada = make_user("ada", "admin", send_live=True)
    client.force_login(ada)
    tested = make_import(ada, status=ImportStatus.COMPLETED, accepted=8, sent=8)
    url = reverse("signals:import_detail", args=[tested.public_id])
    assert "Promote to live</button>" in client.get(url).content.decode()
    deactivate(tested.connect_app_key, by=ada)
    page = client.get(url).content.decode()
    assert "Promote to live</button>" not in page
    assert "Promote to live: App key" in page
