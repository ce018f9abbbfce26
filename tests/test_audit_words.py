"""The audit trail reads as sentences, without the codes the app stores."""

from __future__ import annotations

from typing import Any

import pytest

from signals_app.audit_words import SENTENCES, describe
from signals_app.models import AuditEvent, AuditRefused, audit
from tests.test_views import make_user


@pytest.mark.parametrize(
    ("action", "detail", "sentence"),
    [
        ("import.uploaded",
         {"original_name": "a.ndjson", "size_bytes": 2048, "app_key": "k1", "mode": "test"},
         "Uploaded a.ndjson (2 KiB) for app key k1, to send as a test."),
        ("import.validated", {"signals": 1000, "valid": 950, "rejected": 50,
                              "findings_not_stored": 0},
         "Checked 1,000 signals: 950 valid, 50 rejected."),
        ("import.send", {"mode": "live", "signals": 950, "batches": 2, "skipped": 50},
         "Started sending 950 signals live in 2 batches, skipping 50 rejected signals."),
        ("import.send", {"mode": "test", "signals": 1, "batches": 1, "skipped": 0},
         "Started sending 1 signal as a test in 1 batch."),
        ("import.fixes_applied",
         {"source_name": "a.ndjson", "fixes": ["currency_case|signalContent.currency"]},
         "Applied 1 fix to a.ndjson: currency case on signalContent.currency."),
        ("batch.resend", {"batch": 3, "previous_state": "unknown", "previous_http_status": None,
                          "reason": "not in Connect"},
         "Resent batch 3: its outcome was unknown. Reason given: “not in Connect”."),
    ],
)  # fmt: skip
def test_each_action_reads_as_a_sentence(action: str, detail: dict, sentence: str) -> None:
    assert describe(action, detail) == sentence


def test_no_sentence_shows_the_stored_codes() -> None:
    detail = {"fixes": ["a_b|x.y"], "skipped": 0, "reason": "", "starts": 3, "batches": [4, 5],
              "previous_state": "failed", "mode": "test"}  # fmt: skip
    for action in SENTENCES:
        text = describe(action, detail)
        assert "|" not in text and "import." not in text and "_" not in text, (action, text)
        assert "skipped:" not in text and text.endswith((".", "”.")), (action, text)


def test_an_action_without_words_still_reads() -> None:
    assert describe("export.ready", {"rows": 5, "error": ""}) == "Export ready (rows: 5)"


# --- the trail itself -----------------------------------------------------------------


@pytest.mark.django_db
def test_sign_ins_are_recorded_with_their_address_and_never_a_password(client: Any) -> None:
    make_user("mia", "marketer")
    client.post(
        "/login/", {"username": "mia", "password": "wrong-pass-123"}, REMOTE_ADDR="10.1.2.3"
    )
    client.post("/login/", {"username": "mia", "password": "mia-pass"}, REMOTE_ADDR="10.1.2.3")
    failed, signed_in = AuditEvent.objects.order_by("id")
    assert (failed.action, failed.ip_address, failed.detail) == (
        "auth.login_failed", "10.1.2.3", {"username": "mia"}
    )  # fmt: skip
    assert (signed_in.action, signed_in.actor_name, signed_in.object_type) == (
        "auth.login", "mia", "user"
    )  # fmt: skip
    assert "wrong-pass-123" not in str(list(AuditEvent.objects.values()))


@pytest.mark.django_db
def test_the_trail_is_append_only() -> None:
    event = audit(action="import.cancel")
    with pytest.raises(AuditRefused):
        event.save()
    with pytest.raises(AuditRefused):
        AuditEvent.objects.filter(pk=event.pk).update(action="x")
    with pytest.raises(AuditRefused):
        AuditEvent.objects.all().delete()
    with pytest.raises(AuditRefused):
        event.delete()


@pytest.mark.django_db
def test_ops_browse_filter_and_download_the_trail_safe_for_spreadsheets(client: Any) -> None:
    mia = make_user("mia", "marketer")
    audit(action="import.cancel", actor=make_user("-2+3"))  # a user name a sheet would add up
    audit(action="import.cancel", actor=mia)
    client.force_login(mia)
    assert client.get("/audit").status_code == 403
    client.force_login(make_user("otto", "ops"))
    page = client.get("/audit", {"kind": "import."}).content.decode()
    assert "Asked to cancel the send." in page and "-2+3" in page
    body = b"".join(client.get("/audit.csv").streaming_content).decode()
    lines = body.splitlines()
    assert lines[0].startswith("when (UTC),who,action")
    assert any(",'-2+3,import.cancel," in line for line in lines)  # a formula stays text
    assert not any(",-2+3," in line for line in lines)
