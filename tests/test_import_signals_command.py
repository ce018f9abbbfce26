"""`manage.py import_signals` through call_command: a refused live send names the import,
leaves it unsent in the history, and says how to send it (`--import ID --confirm-skip N`).

Validation runs in this process (its task body, queued at once instead of on commit); the
send task is never run here (the real-worker tests are in tests/integration)."""

from __future__ import annotations

from io import StringIO
from pathlib import Path
from typing import Any

import orjson
import pytest
from django.contrib.auth.models import Group, User
from django.core.management import CommandError, call_command
from django.test import Client

from connectadmin.models import Alert, AppKey
from signals_app.models import AuditEvent, ImportStatus, SignalImport, audit
from signals_app.services import upload, validation
from tests.factories import make_app_key

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _validate_in_process(settings: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings.IMPORTS_DIR = tmp_path / "imports"
    monkeypatch.setattr(
        upload,
        "queue_validation",
        lambda signal_import: validation.import_validate(import_id=signal_import.pk),
    )


@pytest.fixture
def ops() -> User:
    return User.objects.create_superuser("ops", password="x")


def order(n: int, **content: Any) -> dict[str, Any]:
    return {
        "appKey": "shop-key",
        "identifiableAttributes": {"email": f"ann{n}@example.com"},
        "signalContent": {"signalType": "order", "currency": "USD", "orderId": f"o-{n}"} | content,
    }


@pytest.fixture
def one_rejected(tmp_path: Path) -> Path:
    make_app_key(key="shop-key", tier="ultimate")
    signals = [order(n) for n in range(10)]
    del signals[3]["signalContent"]["currency"]
    path = tmp_path / "broken.ndjson"
    path.write_bytes(b"".join(orjson.dumps(s) + b"\n" for s in signals))
    return path


def run(*args: str) -> str:
    out = StringIO()
    call_command("import_signals", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def test_a_refused_live_send_names_the_import_and_how_to_send_it(
    ops: User, one_rejected: Path, client: Client
) -> None:
    with pytest.raises(CommandError) as refused:
        run(str(one_rejected), "--app-key", "shop-key", "--live")

    signal_import = SignalImport.objects.get()
    message = str(refused.value)
    assert refused.value.returncode == 2
    assert f"import {signal_import.pk} (broken.ndjson) was not sent" in message
    assert "1 rejected signal will be skipped" in message
    assert f"python manage.py import_signals --import {signal_import.pk} --confirm-skip 1" in (
        message
    )
    # Kept, unsent, and it says so: in the history and on the import's audit trail.
    assert signal_import.status == ImportStatus.VALIDATED
    assert not signal_import.batches.exists()
    event = AuditEvent.objects.get(signal_import=signal_import, action="import.send_refused")
    assert event.actor == ops and "1 rejected signal will be skipped" in event.detail["reason"]
    client.force_login(ops)
    history = client.get("/history").content.decode()
    assert "broken.ndjson" in history and "Ready to send" in history
    # Whatever ran the command (cron, a pipeline) may not read its error: ops hear of it.
    alert = Alert.objects.get(topic="import")
    assert alert.title == f"Import #{signal_import.pk} (broken.ndjson, live): not sent, refused"
    assert alert.detail.startswith(f"manage.py import_signals: import {signal_import.pk} (")
    assert "--confirm-skip 1" in alert.detail


def test_the_refused_import_is_sent_by_its_id_once_the_skip_is_confirmed(
    ops: User, one_rejected: Path
) -> None:
    with pytest.raises(CommandError):
        run(str(one_rejected), "--app-key", "shop-key", "--live")
    signal_import = SignalImport.objects.get()

    with pytest.raises(CommandError) as wrong_count:
        run("--import", str(signal_import.pk), "--confirm-skip", "2")
    assert f"--import {signal_import.pk} --confirm-skip 1" in str(wrong_count.value)

    out = run("--import", str(signal_import.pk), "--confirm-skip", "1")
    assert "sending 9 signals in 1 batches" in out
    signal_import.refresh_from_db()
    assert (signal_import.status, signal_import.confirmed_skip) == (ImportStatus.SENDING, 1)
    assert SignalImport.objects.count() == 1  # sent as it was, not uploaded again


def test_confirm_skip_needs_the_number_as_the_browser_does(ops: User, one_rejected: Path) -> None:
    with pytest.raises(CommandError) as no_number:
        run(str(one_rejected), "--app-key", "shop-key", "--live", "--confirm-skip")
    assert "--confirm-skip: expected one argument" in str(no_number.value)
    assert not SignalImport.objects.exists()
    run(str(one_rejected), "--app-key", "shop-key", "--live", "--confirm-skip", "1")
    signal_import = SignalImport.objects.get()
    assert (signal_import.status, signal_import.confirmed_skip) == (ImportStatus.SENDING, 1)


def test_a_user_who_may_not_send_live_is_told_who_can(ops: User, one_rejected: Path) -> None:
    marketer = User.objects.create_user("mia", password="x")
    marketer.groups.add(Group.objects.get_or_create(name="marketer")[0])
    with pytest.raises(CommandError) as refused:
        run(str(one_rejected), "--app-key", "shop-key", "--live", "--user", "mia")
    signal_import = SignalImport.objects.get()
    assert signal_import.status == ImportStatus.VALIDATED
    assert f"--import {signal_import.pk} --user USERNAME --confirm-skip 1" in str(refused.value)


def test_import_takes_no_file_and_must_exist(ops: User, one_rejected: Path) -> None:
    with pytest.raises(CommandError) as both:
        run(str(one_rejected), "--import", "1")
    assert both.value.returncode == 2 and "give no FILE" in str(both.value)
    with pytest.raises(CommandError) as missing:
        run("--import", "999")
    assert "no such import" in str(missing.value)
    with pytest.raises(CommandError) as neither:
        run()
    assert "give a FILE" in str(neither.value)


# --- a deactivated app key -----------------------------------------------------------


def deactivate(key: str, by: User) -> None:
    app_key = AppKey.objects.get(key=key)
    app_key.active = False
    app_key.save(update_fields=["active"])
    audit(action="appkey.deactivated", actor=by, obj=app_key, key=key)


def test_a_deactivated_app_key_is_refused_for_a_new_import_and_nothing_is_made(
    ops: User, one_rejected: Path, settings: Any
) -> None:
    deactivate("shop-key", by=ops)
    with pytest.raises(CommandError) as refused:
        run(str(one_rejected), "--app-key", "shop-key")
    message = str(refused.value)
    assert refused.value.returncode == 2
    assert message.startswith("App key shop-key was deactivated by ops on ")
    assert "An admin can reactivate it in Settings → App keys." in message
    assert not SignalImport.objects.exists()
    assert not any(Path(settings.IMPORTS_DIR).glob("*"))


def test_an_import_whose_key_was_deactivated_after_upload_is_refused_as_in_the_browser(
    ops: User, one_rejected: Path, client: Client
) -> None:
    with pytest.raises(CommandError):  # kept, validated and unsent: no confirmation
        run(str(one_rejected), "--app-key", "shop-key", "--live")
    signal_import = SignalImport.objects.get()
    deactivate("shop-key", by=ops)

    with pytest.raises(CommandError) as refused:
        run("--import", str(signal_import.pk), "--confirm-skip", "1")
    message = str(refused.value)
    assert refused.value.returncode == 2
    assert f"import {signal_import.pk} (broken.ndjson) was not sent: App key shop-key was " in (
        message
    )
    assert "Settings → App keys" in message
    signal_import.refresh_from_db()
    assert signal_import.status == ImportStatus.VALIDATED and not signal_import.batches.exists()
    event = AuditEvent.objects.filter(action="import.send_refused").latest("id")
    assert "App key shop-key was deactivated by ops" in event.detail["reason"]
    # The browser's send of the same import says the same.
    client.force_login(ops)
    page = client.post(f"/imports/{signal_import.public_id}/send", follow=True)
    assert event.detail["reason"] in page.content.decode()

    AppKey.objects.filter(key="shop-key").update(active=True)  # reactivated: it goes
    assert "sending 9 signals" in run("--import", str(signal_import.pk), "--confirm-skip", "1")
