"""The audit trail reads as sentences, without the codes the app stores."""

from __future__ import annotations

import ast
from pathlib import Path
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
        ("import.send", {"mode": "live", "signals": 11, "batches": 6, "skipped": 0,
                         "connect": True, "attentive": "Shop"},
         "Started sending 11 signals live to Connect and the Attentive account “Shop” in "
         "6 batches."),
        ("import.completed", {"sent": 0, "accepted": 0, "connect": False,
                              "attentive_sent": 10, "attentive_unknown": 1},
         "Sending finished: Attentive took 10 events, the outcome of 1 is unknown."),
        ("import.cancelled", {"sent": 5, "accepted": 5, "connect": True,
                              "attentive_sent": 4, "attentive_failed": 1},
         "Sending stopped as asked: Connect accepted 5 of the 5 signals sent; Attentive took "
         "4 events, refused 1."),
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


def test_an_action_without_words_still_reads_without_its_secrets() -> None:
    assert describe("export.teleported", {"rows": 5, "error": ""}) == "Export teleported (rows: 5)"
    secret = "https://hooks.slack.com/services/T0/B0/s3cr3t"
    said = describe("alerts.webhook_renamed", {"name": "ops", "url": secret, "api_key": "k"})
    assert said == "Alerts webhook renamed (name: ops)"


# --- every action the code records has its sentence ----------------------------------------

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("connectadmin", "signals_app", "exports_app")
# Actions named by an f-string: every value the placeholder takes at its call site.
EXPANSIONS = {
    "f'import.{status}'": ["import.completed", "import.cancelled"],  # sending.finish
    "f'export.{status}'": ["export.failed"],  # watching._finish
}
# Recorded by the alert settings (connectadmin.alert_channels): worded before they landed.
ALERT_ACTIONS = [
    "alerts.subscribed",
    "alerts.unsubscribed",
    "alerts.subscriber_removed",
    "alerts.webhook_added",
    "alerts.webhook_changed",
    "alerts.webhook_removed",
    "alerts.webhook_tested",
]


def recorded_actions() -> dict[str, str]:
    """{action: "file:line"} for every audit(action=...) in the code. The action is a
    literal, a literal chosen by `if ... else`, a variable assigned such literals, or an
    f-string listed in EXPANSIONS; anything else fails, asking to list it."""
    found: dict[str, str] = {}
    for path in sorted(p for top in SOURCES for p in (ROOT / top).rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        assigned: dict[str, list[ast.expr]] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    if isinstance(target, ast.Name):
                        assigned.setdefault(target.id, []).append(node.value)
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            function = node.func
            name = function.id if isinstance(function, ast.Name) else getattr(function, "attr", "")
            if name != "audit":
                continue
            where = f"{path.relative_to(ROOT)}:{node.lineno}"
            for keyword in node.keywords:
                if keyword.arg == "action":
                    for action in _action_names(keyword.value, assigned, where):
                        found.setdefault(action, where)
    return found


def _action_names(node: ast.expr, assigned: dict[str, list[ast.expr]], where: str) -> list[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.IfExp):
        return _action_names(node.body, assigned, where) + _action_names(
            node.orelse, assigned, where
        )
    if isinstance(node, ast.JoinedStr):
        text = ast.unparse(node)
        assert text in EXPANSIONS, f"{where}: list the actions {text} can be in EXPANSIONS"
        return EXPANSIONS[text]
    if isinstance(node, ast.Name) and node.id in assigned:
        return [a for value in assigned[node.id] for a in _action_names(value, assigned, where)]
    raise AssertionError(f"{where}: cannot tell which action {ast.unparse(node)} records")


def test_every_action_recorded_in_the_code_has_a_sentence() -> None:
    recorded = recorded_actions()
    # The walk finds what it must: literals, choices, variables and f-strings.
    assert {
        "import.uploaded", "appkey.deactivated", "appkey.updated", "user.reactivated",
        "export.schedule_paused", "import.completed", "export.failed", "import.send_refused",
    } <= recorded.keys()  # fmt: skip
    missing = [
        f"{action} ({where})" for action, where in recorded.items() if action not in SENTENCES
    ]
    assert not missing, "no sentence in signals_app/audit_words.py for: " + ", ".join(missing)


def test_the_alert_settings_actions_have_sentences() -> None:
    assert [action for action in ALERT_ACTIONS if action not in SENTENCES] == []


@pytest.mark.parametrize(
    ("action", "detail", "sentence"),
    [
        ("import.completed", {"sent": 950, "accepted": 940, "failed": 10, "unknown": 0},
         "Sending finished: Connect accepted 940 of the 950 signals sent, 10 failed."),
        ("import.send_refused", {"reason": "App key k was deactivated.", "via": "import_signals"},
         "A send was refused: App key k was deactivated."),
        ("export.failed", {"job_name": "daily", "reason": "Connect says the export failed: x"},
         "The export “daily” failed: Connect says the export failed: x."),
        ("account.updated",
         {"changes": {"region": {"before": "eu", "after": "us"},
                      "connect_user_email": {"before": "a@x.test", "after": "b@x.test"}}},
         "Changed the account: the region from eu to us and the Connect user from a@x.test to "
         "b@x.test."),
        ("account.connection_tested", {"outcome": "wrong_key", "http_status": 401,
                                       "elapsed_ms": 1234},
         "Tested the connection to Connect: Connect refused the API key (HTTP 401, 1,234 ms)."),
        ("appkey.created", {"key": "shop-web", "label": "Web shop", "tier": "premium",
                            "account": "Shop EU", "active": True},
         "Added the app key shop-web “Web shop” (Premium) to Shop EU."),
        ("appkey.updated", {"key": "shop-web",
                            "changes": {"tier": {"before": "pro", "after": "premium"},
                                        "active": {"before": "True", "after": "False"}}},
         "Changed the app key shop-web: the tier from pro to premium and the state from "
         "active to deactivated."),
        ("user.invited", {"username": "nina", "email": "nina@example.com", "role": "marketer",
                          "send_live": True},
         "Invited nina (nina@example.com) as marketer, allowed to send live imports."),
        ("user.role_changed", {"before": "marketer", "after": "ops"},
         "Changed the role from marketer to ops."),
        ("ssh_key.logon_ok", {"key": "SHA256:abc", "files": 3},
         "Logged on to SFTP with the SSH key SHA256:abc: 3 files in the export folder."),
        ("sftp.host_key_changed", {"host": "sftp.example", "port": 22, "approved": "SHA256:old",
                                   "offered": "SHA256:new"},
         "The SFTP host sftp.example:22 offered a different key (SHA256:new) where SHA256:old "
         "is approved: nothing is downloaded from it until an admin approves the new key."),
        ("export.schedule_created", {"account": "Shop EU", "schedule": "Nightly",
                                     "runs": "Every day at 06:00 (UTC), exporting yesterday"},
         "Created the export schedule “Nightly” of Shop EU: Every day at 06:00 (UTC), "
         "exporting yesterday."),
        ("alerts.subscribed", {"email": "mia@example.com", "topics": ["import", "host_key"]},
         "Subscribed mia@example.com to alert e-mails for failed imports and changed SFTP "
         "host keys."),
        ("alerts.subscribed", {"email": "mia@example.com", "topics": ["worker"],
                               "topics_before": []},
         "Changed the alert e-mails to mia@example.com from every topic to silent workers."),
        ("alerts.subscriber_removed", {"user": "mia", "email": "mia@example.com", "topics": [],
                                       "unsent_dropped": 2},
         "Stopped the alert e-mails to mia (mia@example.com); 2 messages not sent yet dropped."),
        ("alerts.webhook_added", {"name": "ops", "url_host": "hooks.slack.com", "topics": [],
                                  "active": True},
         "Added the webhook “ops” to hooks.slack.com, for every topic."),
        ("alerts.webhook_changed",
         {"name": "ops", "url_host": "hooks.slack.com", "url_replaced": True,
          "changes": {"name": {"before": "team", "after": "ops"},
                      "topics": {"before": [], "after": ["export"]},
                      "active": {"before": True, "after": False}}},
         "Changed the webhook “ops” to hooks.slack.com: renamed from “team”, now for failed or "
         "skipped export runs, turned off and its address replaced."),
        ("alerts.webhook_tested", {"name": "ops", "url_host": "hooks.slack.com", "outcome": "ok",
                                   "status": 200, "elapsed_ms": 85},
         "Sent a test alert to the webhook “ops” to hooks.slack.com: it took it (HTTP 200, "
         "85 ms)."),
        ("alerts.webhook_tested", {"name": "", "url_host": "hooks.example", "outcome": "timeout",
                                   "status": None, "elapsed_ms": 5000},
         "Sent a test alert to the webhook to hooks.example: it did not answer in time "
         "(5,000 ms)."),
    ],
)  # fmt: skip
def test_settings_export_and_alert_actions_read_as_sentences(
    action: str, detail: dict, sentence: str
) -> None:
    assert describe(action, detail) == sentence


def test_a_webhook_address_or_an_api_key_never_shows() -> None:
    secret = "https://hooks.slack.com/services/T0/B0/s3cr3t"
    changes = {"api_key": {"before": "old-secret", "after": "new-secret"}}
    for action in [*ALERT_ACTIONS, "account.updated", "account.created"]:
        said = describe(action, {"name": "ops", "url": secret, "api_key": "k", "changes": changes})
        assert "s3cr3t" not in said and "secret" not in said, (action, said)
    assert describe("account.updated", {"changes": changes}) == "Changed the account: the API key."


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


@pytest.mark.django_db
def test_a_filter_that_does_not_read_right_lists_nothing_and_says_so(client: Any) -> None:
    audit(action="import.cancel", actor=make_user("mia", "marketer"))
    client.force_login(make_user("otto", "ops"))
    page = client.get("/audit", {"start": "2026-13-45"}).content.decode()
    assert "Enter a valid date." in page
    assert "Correct the filter above: nothing is listed until it reads right." in page
    assert "Asked to cancel the send." not in page  # not every event under a broken filter
    backwards = client.get("/audit", {"start": "2026-12-04", "end": "2026-12-01"})
    assert "This day is before the From day: no event could match." in backwards.content.decode()
    export = client.get("/audit.csv", {"end": "yesterday"})
    assert export.status_code == 400
    assert export.content.decode().startswith("The filter does not read right, so nothing was")
    assert "To: Enter a valid date." in export.content.decode()
    assert "Asked to cancel" in client.get("/audit", {"start": "2000-01-01"}).content.decode()
