"""The web UI of imports, through Django's test client: access, upload, preview, sending
actions, history, and the htmx partial responses."""

from __future__ import annotations

import io
import itertools
import re
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from django.contrib.auth.models import Group, User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from connectadmin.models import AppKey
from signals_app.json_markup import Marked, json_with_marks
from signals_app.models import (
    AuditEvent,
    BatchState,
    ImportBatch,
    ImportFinding,
    ImportMode,
    ImportStatus,
    RejectedSignal,
    SignalImport,
)
from signals_app.services import preview, upload, validation
from signals_app.services.preview import ProblemExample
from tests.factories import make_account, make_app_key

pytestmark = pytest.mark.django_db

_names = itertools.count(1)

BAD_RECORD = {
    "appKey": "app-key",
    "identifiableAttributes": {"email": "not-an-address"},
    "signalContent": {"signalType": "addToCart", "productId": "p1", "itemQuantity": 1.5},
}
BAD_FINDINGS = [
    ("identifiableAttributes.email", "identifiableAttributes.email", "format", "Not an e-mail."),
    ("signalContent.currency", "signalContent.currency", "required", "currency is required."),
    ("signalContent.itemQuantity", "signalContent.itemQuantity", "type", "Must be an integer."),
]


# --- data, shared with the browser tests ----------------------------------------------


def make_user(username: str, role: str | None = None, *, send_live: bool = False) -> User:
    user = User.objects.create_user(username, password=f"{username}-pass")
    if role:
        user.groups.add(Group.objects.get_or_create(name=role)[0])
    if role in ("ops", "admin"):
        user.is_staff = True
        user.save(update_fields=["is_staff"])
    if send_live:
        from django.contrib.auth.models import Permission

        user.user_permissions.add(Permission.objects.get(codename="send_live"))
    return user


def make_import(user: User, app_key: AppKey | None = None, **fields: Any) -> SignalImport:
    values: dict[str, Any] = {
        "created_by": user,
        "app_key": app_key or make_app_key(),
        "original_name": f"signals-{next(_names)}.ndjson",
        "stored_name": uuid.uuid4().hex,
        "status": ImportStatus.VALIDATED,
        "mode": ImportMode.TEST,
        "size_bytes": 4096,
        "bytes_read": 4096,
        "file_format": "ndjson",
        "signals": 10,
        "valid": 8,
        "rejected": 2,
        "errors": 4,
        "warnings": 1,
    }
    values.update(fields)
    return SignalImport.objects.create(**values)


def add_rejected(signal_import: SignalImport, signal: int = 3, line: int | None = 4) -> None:
    RejectedSignal.objects.create(
        signal_import=signal_import, signal=signal, line=line, record=BAD_RECORD
    )
    for path, pattern, code, message in BAD_FINDINGS:
        ImportFinding.objects.create(
            signal_import=signal_import,
            signal=signal,
            line=line,
            path=path,
            path_pattern=pattern,
            severity="error",
            code=code,
            message=message,
        )
    signal_import.problem_counts = [
        {"path": pattern, "code": code, "severity": "error", "count": 1}
        for _, pattern, code, _ in BAD_FINDINGS
    ]
    signal_import.save(update_fields=["problem_counts"])


def add_batches(signal_import: SignalImport, states: list[str]) -> list[ImportBatch]:
    now = timezone.now()
    batches = []
    for number, state in enumerate(states):
        final = state in (BatchState.SENT, BatchState.FAILED, BatchState.UNKNOWN)
        batches.append(
            ImportBatch.objects.create(
                signal_import=signal_import,
                number=number,
                first_signal=number * 500,
                last_signal=number * 500 + 499,
                size=500,
                state=state,
                attempts=1 if final else 0,
                http_status={"sent": 200, "failed": 503, "unknown": None}.get(state),
                error={"failed": "HTTP 503 after 5 attempts", "unknown": "read timeout"}.get(
                    state, ""
                ),
                signal_ids=[f"sid-{number}-{i}" for i in range(3)] if state == "sent" else [],
                started_at=now - timedelta(seconds=5) if final else None,
                finished_at=now if final else None,
                duration_ms=840 if final else None,
            )
        )
    return batches


@pytest.fixture
def marketer(client: Client) -> User:
    user = make_user("mia", "marketer")
    client.force_login(user)
    return user


def detail_url(signal_import: SignalImport) -> str:
    return reverse("signals:import_detail", args=[signal_import.public_id])


# --- sign-in and access ---------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    ["/", "/imports/new", "/history", "/exports", f"/imports/{uuid.uuid4()}"],
)
def test_every_page_requires_sign_in(client: Client, url: str) -> None:
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith("/login/?next=")


def test_it_signs_in_through_the_login_form(client: Client) -> None:
    make_user("mia", "marketer")
    page = client.get("/login/")
    assert page.status_code == 200 and b"Sign in" in page.content
    response = client.post("/login/", {"username": "mia", "password": "mia-pass"}, follow=True)
    assert response.redirect_chain[-1][0] == "/"
    assert b"Hello, mia" in response.content
    assert b'href="/imports/new"' in response.content  # marketers see Imports


def test_it_explains_a_failed_sign_in(client: Client) -> None:
    make_user("mia", "marketer")
    response = client.post("/login/", {"username": "mia", "password": "wrong"})
    assert response.status_code == 200
    assert b"correct username and password" in response.content


def test_navigation_follows_the_role(client: Client) -> None:
    client.force_login(make_user("otto", "ops"))
    page = client.get("/").content.decode()
    assert 'href="/imports/new"' not in page
    assert 'href="/history"' in page and 'href="/admin/"' in page
    assert "Sign out" in page


def test_ops_may_not_upload(client: Client) -> None:
    client.force_login(make_user("otto", "ops"))
    assert client.get("/imports/new").status_code == 403


def test_marketer_gets_404_for_someone_elses_import(client: Client, marketer: User) -> None:
    foreign = make_import(make_user("other", "marketer"))
    assert client.get(detail_url(foreign)).status_code == 404
    assert client.post(reverse("signals:import_send", args=[foreign.public_id])).status_code == 404


def test_ops_see_every_import(client: Client) -> None:
    signal_import = make_import(make_user("other", "marketer"))
    client.force_login(make_user("otto", "ops"))
    assert client.get(detail_url(signal_import)).status_code == 200


def test_an_unknown_import_id_is_404(client: Client, marketer: User) -> None:
    assert client.get(f"/imports/{uuid.uuid4()}").status_code == 404
    assert client.get("/imports/not-a-uuid").status_code == 404


def test_it_rejects_live_send_without_permission(client: Client, marketer: User) -> None:
    live = make_import(marketer, mode=ImportMode.LIVE, rejected=0)
    response = client.post(reverse("signals:import_send", args=[live.public_id]))
    assert response.status_code == 403
    live.refresh_from_db()
    assert live.status == ImportStatus.VALIDATED
    assert not live.batches.exists()


def test_sending_progress_counts_signals_from_the_ledger_at_each_refresh(
    client: Client, marketer: User
) -> None:
    """The counters on the import row lag the ledger; the progress reads both the batches
    and their signals from the ledger, so they always agree (issue: "47 of 191 batches"
    beside "13,500 accepted"). The status in the page head follows too."""
    signal_import = make_import(
        marketer,
        status=ImportStatus.SENDING,
        batches_total=5,
        accepted=0,
        send_started_at=timezone.now(),
    )
    states = [BatchState.SENT, BatchState.SENT, BatchState.FAILED, BatchState.UNKNOWN, "pending"]
    add_batches(signal_import, states)
    poll = {"HX-Request": "true", "HX-Target": "progress"}
    body = client.get(detail_url(signal_import), headers=poll).content.decode()
    facts = dict(re.findall(r"<dt>([^<]+)</dt><dd>([^<]+)</dd>", body))
    assert facts["Batches"] == "4 of 5"
    assert (facts["Signals accepted"], facts["Failed"], facts["Outcome unknown"]) == (
        "1,000", "500", "500"
    )  # fmt: skip
    assert 'id="imp-status" hx-swap-oob="true">Sending<' in body


def test_a_marketer_may_not_resend_a_batch(client: Client, marketer: User) -> None:
    signal_import = make_import(marketer, status=ImportStatus.COMPLETED)
    add_batches(signal_import, [BatchState.UNKNOWN])
    url = reverse("signals:batch_resend", args=[signal_import.public_id, 0])
    assert client.post(url).status_code == 403


def test_ops_resend_an_unknown_batch_after_saying_why_and_a_failed_one_at_once(
    client: Client,
) -> None:
    signal_import = make_import(make_user("mia", "marketer"), status=ImportStatus.COMPLETED)
    add_batches(signal_import, [BatchState.SENT, BatchState.UNKNOWN, BatchState.FAILED])
    client.force_login(make_user("otto", "ops"))
    page = client.get(detail_url(signal_import)).content.decode()
    unknown_url = reverse("signals:batch_resend", args=[signal_import.public_id, 1])
    assert f'href="{unknown_url}">Check and resend' in page
    assert page.count(">Resend</button>") == 1  # the failed batch: one click

    confirm = client.get(unknown_url).content.decode()
    assert "This batch may already be in Connect" in confirm and "How to check" in confirm
    refused = client.post(unknown_url, {"reason": "not in Connect"})
    assert refused.status_code == 400 and "Tick the box" in refused.content.decode()
    refused = client.post(unknown_url, {"confirm": "1", "reason": " "})
    assert refused.status_code == 400 and "Say why" in refused.content.decode()
    assert ImportBatch.objects.get(signal_import=signal_import, number=1).state == "unknown"

    done = client.post(
        unknown_url, {"confirm": "1", "reason": "not in Connect at 10:42"}, follow=True
    )
    assert "Batch 1 queued to be sent again." in done.content.decode()
    assert ImportBatch.objects.get(signal_import=signal_import, number=1).state == "pending"
    event = AuditEvent.objects.get(signal_import=signal_import, action="batch.resend")
    assert event.detail["reason"] == "not in Connect at 10:42"

    client.post(reverse("signals:batch_resend", args=[signal_import.public_id, 2]))
    assert ImportBatch.objects.get(signal_import=signal_import, number=2).state == "pending"


# --- upload ---------------------------------------------------------------------------


@pytest.fixture
def imports_dir(settings: Any, tmp_path: Path) -> Path:
    settings.IMPORTS_DIR = tmp_path / "imports"
    return Path(settings.IMPORTS_DIR)


def _upload(name: str = "signals.ndjson", content: bytes = b'{"appKey": "k"}\n') -> Any:
    return SimpleUploadedFile(name, content, content_type="application/octet-stream")


def test_the_upload_page_offers_keys_and_explains_live(client: Client, marketer: User) -> None:
    make_app_key(key="shop-key", tier="premium")
    make_app_key(key="old-key", active=False)
    page = client.get("/imports/new").content.decode()
    assert "shop-key" in page and "Premium" in page
    assert "old-key" not in page
    assert 'value="live" disabled' in page
    assert "send live" in page
    assert 'name="idempotency_key"' in page
    assert "data-disable-on-submit" in page


def test_a_double_submit_with_the_same_token_creates_one_import(
    client: Client, marketer: User, imports_dir: Path
) -> None:
    app_key = make_app_key()
    data = {"app_key": app_key.pk, "mode": "test", "idempotency_key": "token-123"}
    first = client.post("/imports/new", {**data, "file": _upload()})
    second = client.post("/imports/new", {**data, "file": _upload()})
    assert first.status_code == second.status_code == 302
    assert first["Location"] == second["Location"]
    assert SignalImport.objects.filter(created_by=marketer).count() == 1
    signal_import = SignalImport.objects.get()
    assert signal_import.original_name == "signals.ndjson"
    assert signal_import.stored_name != "signals.ndjson"
    assert (imports_dir / signal_import.stored_name).exists()


def test_a_marketer_without_permission_cannot_upload_live(
    client: Client, marketer: User, imports_dir: Path
) -> None:
    app_key = make_app_key()
    response = client.post(
        "/imports/new",
        {"app_key": app_key.pk, "mode": "live", "idempotency_key": "t", "file": _upload()},
    )
    assert response.status_code == 400
    page = response.content.decode()
    assert "send live" in page
    assert not SignalImport.objects.exists()
    # The form comes back with a choice it can take: test, not nothing.
    assert '<input type="radio" name="mode" value="test" checked>' in page


def test_ops_are_not_invited_to_do_what_they_may_not(client: Client) -> None:
    mia = make_user("mia", "marketer")
    client.force_login(make_user("otto", "ops"))
    home = client.get("/").content.decode()
    assert "Check a file" not in home and "New import" not in home
    assert "Follow every import and export" in home
    page = client.get(detail_url(make_import(mia))).content.decode()
    assert "Send as test" not in page and "Waiting for mia to send it." in page


def test_a_file_over_the_cap_gets_a_clear_message(
    client: Client, marketer: User, imports_dir: Path, settings: Any
) -> None:
    settings.IMPORT_MAX_UPLOAD_BYTES = 2048
    app_key = make_app_key()
    response = client.post(
        "/imports/new",
        {
            "app_key": app_key.pk,
            "mode": "test",
            "idempotency_key": "t",
            "file": _upload(content=b"x" * 10_000),
        },
    )
    assert response.status_code == 413
    assert "larger than 2 KiB" in response.content.decode()
    assert not SignalImport.objects.exists()


def test_bad_upload_input_is_a_form_error_not_a_500(client: Client, marketer: User) -> None:
    response = client.post("/imports/new", {"app_key": "999999", "mode": "sideways"})
    assert response.status_code == 400
    page = response.content.decode()
    assert "Choose a file of signals to upload." in page
    assert "Select a valid choice" in page


def test_a_file_whose_name_is_not_utf8_is_named_as_the_problem(
    client: Client, marketer: User, imports_dir: Path
) -> None:
    """Django drops a multipart part whose headers are not UTF-8 without a word; the page
    says why the file did not arrive, not "choose a file"."""
    app_key = make_app_key()
    token = client.get("/imports/new").cookies["csrftoken"].value
    fields = {"app_key": str(app_key.pk), "mode": "test", "idempotency_key": "t"}
    body = b"".join(
        b'--B\r\nContent-Disposition: form-data; name="%s"\r\n\r\n%s\r\n'
        % (name.encode(), value.encode())
        for name, value in {**fields, "csrfmiddlewaretoken": token}.items()
    )
    body += (
        b'--B\r\nContent-Disposition: form-data; name="file"; filename="sig\xff\xfenals.ndjson"'
        b"\r\nContent-Type: application/octet-stream\r\n\r\n" + b'{"appKey": "k"}\n' * 500
    )
    body += b"\r\n--B--\r\n"
    response = client.generic(
        "POST", "/imports/new", body, content_type="multipart/form-data; boundary=B"
    )
    assert response.status_code == 400
    page = response.content.decode()
    assert "The file&#x27;s name is not valid UTF-8" in page
    assert "Choose a file of signals to upload." not in page
    assert not SignalImport.objects.exists()


# --- the import page -------------------------------------------------------------------


def test_a_warning_row_says_its_signals_are_sent_and_names_some_instead_of_linking(
    client: Client, marketer: User
) -> None:
    """A warning rejects nothing, so the rejected list cannot show its signals: its row
    names a few and points at the error report instead of linking to an empty list."""
    signal_import = make_import(marketer, warnings=6)
    add_rejected(signal_import)
    for signal in range(10, 16):
        ImportFinding.objects.create(
            signal_import=signal_import, signal=signal, line=signal + 1,
            path="signalContent.currency", path_pattern="signalContent.currency",
            severity="warning", code="currency_case", message="currency should be upper case",
        )  # fmt: skip
    signal_import.problem_counts = [
        *signal_import.problem_counts,
        {"path": "signalContent.currency", "code": "currency_case", "severity": "warning",
         "count": 6},
    ]  # fmt: skip
    signal_import.save(update_fields=["problem_counts"])
    page = client.get(detail_url(signal_import)).content.decode()
    assert "A warning does not reject its signal" in page
    assert "code=currency_case" not in page  # no link to a list that cannot hold them
    assert "code=required" in page  # errors still link to their rejected signals
    assert "Also signal 11 (line 12), signal 12 (line 13); all 6 in the error report" in page


def test_the_preview_shows_findings_and_marks_the_failing_fields(
    client: Client, marketer: User
) -> None:
    signal_import = make_import(marketer, contact_key_only=2)
    add_rejected(signal_import)
    page = client.get(detail_url(signal_import)).content.decode()
    # totals and the contactKey-only note
    assert "Rejected" in page and "identify the contact by <code>contactKey</code> only" in page
    # the problem table, with counts and an example
    assert "<code>signalContent.currency</code>" in page
    assert "currency is required." in page
    # the rejected signal, pretty-printed, failing lines marked and explained
    assert 'data-path="identifiableAttributes.email"' in page
    assert 'class="jl jl-error"' in page
    assert "format: Not an e-mail." in page
    assert '<span class="jmissing">missing</span>' in page  # currency, where it belongs
    assert "Error report (CSV)" in page
    assert "Send as test" in page


def test_the_rejected_list_filters_and_pages_by_keyset(client: Client, marketer: User) -> None:
    signal_import = make_import(marketer)
    for signal in range(25):
        add_rejected(signal_import, signal=signal, line=signal + 1)
    page = client.get(detail_url(signal_import)).content.decode()
    assert page.count('<article class="signal"') == 20
    assert "after=19" in page  # the next page starts after the last signal shown
    second = client.get(detail_url(signal_import) + "?after=19").content.decode()
    assert second.count('<article class="signal"') == 5
    assert "Signal 24" in second and "Signal 19<" not in second
    filtered = client.get(detail_url(signal_import) + "?code=nothing-like-this").content.decode()
    assert "No rejected signal matches these filters." in filtered


def test_a_live_import_with_rejected_signals_asks_to_confirm_the_skip(client: Client) -> None:
    user = make_user("lea", "marketer", send_live=True)
    client.force_login(user)
    live = make_import(user, mode=ImportMode.LIVE, rejected=2)
    page = client.get(detail_url(live)).content.decode()
    assert 'name="confirm_skip" value="2" required' in page
    assert "2 rejected signals</strong> will be skipped" in page


def test_the_sending_page_shows_the_ledger_and_progress(client: Client, marketer: User) -> None:
    signal_import = make_import(
        marketer,
        status=ImportStatus.SENDING,
        batches_total=4,
        accepted=500,
        failed=500,
        unknown=500,
        send_started_at=timezone.now() - timedelta(seconds=30),
    )
    add_batches(signal_import, ["sent", "failed", "unknown", "pending"])
    AuditEvent.objects.create(signal_import=signal_import, actor=marketer, action="import.send")
    page = client.get(detail_url(signal_import)).content.decode()
    assert "Sending to Connect" in page and "3 of 4" in page
    assert 'hx-trigger="every 1s"' in page
    assert "HTTP 503 after 5 attempts" in page and "Outcome unknown" in page
    assert ">Cancel</button>" in page
    assert "Started sending" in page  # the audit trail, in words
    assert "signalIds (CSV)" in page


def test_htmx_progress_polling_gets_only_the_progress_part(client: Client, marketer: User) -> None:
    signal_import = make_import(
        marketer,
        status=ImportStatus.VALIDATING,
        size_bytes=1000,
        bytes_read=250,
        signals=5000,
        validation_started_at=timezone.now() - timedelta(seconds=10),
    )
    response = client.get(
        detail_url(signal_import), headers={"HX-Request": "true", "HX-Target": "progress"}
    )
    body = response.content.decode()
    assert response.status_code == 200
    assert "<html" not in body and body.strip().startswith('<section id="progress"')
    assert "25 %" in body and "5,000" in body and "signals/s" in body


def test_applying_fixes_returns_at_once_and_the_task_writes_the_file(
    client: Client,
    marketer: User,
    imports_dir: Path,
    django_capture_on_commit_callbacks: Any,
) -> None:
    app_key = make_app_key(key="shop-key", tier="ultimate")
    misspelt = {
        "appKey": "shop-key",
        "identifiableAttributes": {"email": "ann@example.com"},
        "signalContent": {"signalType": "order", "currency": "usd", "orderId": "o-1"},
    }
    source = upload.import_create(
        user=marketer,
        app_key=app_key,
        mode="test",
        upload=io.BytesIO(orjson.dumps(misspelt) + b"\n"),
        original_name="orders.ndjson",
    )
    validation.import_validate(import_id=source.pk)
    source.refresh_from_db()
    assert source.rejected == 1

    with django_capture_on_commit_callbacks() as queued:
        response = client.post(
            reverse("signals:import_fix", args=[source.public_id]),
            {"fix": "currency_case|signalContent.currency"},
        )
    fixed = SignalImport.objects.exclude(pk=source.pk).get()
    assert response.status_code == 302 and response["Location"] == detail_url(fixed)
    # The request recorded the choice and queued the writing: no file yet.
    assert not (imports_dir / fixed.stored_name).exists()
    assert [c.func.__self__.name for c in queued] == ["signals_app.tasks.write_fixed_file"]
    page = client.get(detail_url(fixed)).content.decode()
    assert "Writing the corrected file" in page and 'hx-trigger="every 1s"' in page

    with django_capture_on_commit_callbacks() as queued_next:
        for task in queued:
            task.func.__self__.apply(args=task.args).get()  # eagerly, in this process
    assert (imports_dir / fixed.stored_name).exists()
    polled = client.get(
        detail_url(fixed), headers={"HX-Request": "true", "HX-Target": "progress"}
    ).content.decode()
    assert "Checking the file" in polled and "Writing the corrected file" not in polled

    for task in queued_next:
        task.func.__self__.apply(args=task.args).get()
    fixed.refresh_from_db()
    assert (fixed.status, fixed.signals, fixed.rejected) == (ImportStatus.VALIDATED, 1, 0)


def test_htmx_polling_reloads_the_page_when_the_phase_ends(client: Client, marketer: User) -> None:
    signal_import = make_import(marketer, status=ImportStatus.VALIDATED)
    response = client.get(
        detail_url(signal_import), headers={"HX-Request": "true", "HX-Target": "progress"}
    )
    assert response["HX-Refresh"] == "true"


def test_htmx_rejected_paging_gets_only_the_list(client: Client, marketer: User) -> None:
    signal_import = make_import(marketer)
    add_rejected(signal_import)
    response = client.get(
        detail_url(signal_import), headers={"HX-Request": "true", "HX-Target": "rejected"}
    )
    body = response.content.decode()
    assert body.strip().startswith('<section class="card" id="rejected"')
    assert "Problems by field" not in body


def test_the_signal_ids_download(client: Client, marketer: User) -> None:
    signal_import = make_import(marketer, status=ImportStatus.COMPLETED)
    add_batches(signal_import, ["sent", "sent"])
    response = client.get(reverse("signals:download_signal_ids", args=[signal_import.public_id]))
    text = b"".join(response.streaming_content).decode()  # type: ignore[attr-defined]
    assert text.splitlines()[0] == "signal,line,signalId"
    # No rejected signals here: batch 1 starts at signal 500 (its file has no lines).
    assert text.splitlines()[1:4] == ["0,,sid-0-0", "1,,sid-0-1", "2,,sid-0-2"]
    assert "502,,sid-1-2" in text


def test_the_error_report_download(client: Client, marketer: User) -> None:
    signal_import = make_import(marketer)
    add_rejected(signal_import)
    response = client.get(reverse("signals:download_errors", args=[signal_import.public_id]))
    assert response.status_code == 200
    assert "attachment" in response["Content-Disposition"]
    text = b"".join(
        chunk if isinstance(chunk, bytes) else chunk.encode()
        for chunk in response.streaming_content  # type: ignore[attr-defined]
    ).decode()
    assert "currency is required." in text


# --- history --------------------------------------------------------------------------


def test_history_filters_by_mode_user_status_and_date(client: Client) -> None:
    mia, lea = make_user("mia", "marketer"), make_user("lea", "marketer")
    key = make_app_key(key="shop-key")
    make_import(mia, key, original_name="mia-test.json")
    make_import(mia, key, original_name="mia-live.json", mode=ImportMode.LIVE)
    old = make_import(lea, original_name="lea-old.csv", status=ImportStatus.COMPLETED)
    SignalImport.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=40))
    client.force_login(make_user("otto", "ops"))

    def names(query: str) -> set[str]:
        page = client.get("/history?" + query).content.decode()
        return {n for n in ("mia-test.json", "mia-live.json", "lea-old.csv") if n in page}

    assert names("") == {"mia-test.json", "mia-live.json", "lea-old.csv"}
    assert names("mode=live") == {"mia-live.json"}
    assert names(f"user={lea.pk}") == {"lea-old.csv"}
    assert names(f"app_key={key.pk}") == {"mia-test.json", "mia-live.json"}
    assert names("status=completed") == {"lea-old.csv"}
    since = (timezone.localdate() - timedelta(days=7)).isoformat()
    assert names(f"since={since}") == {"mia-test.json", "mia-live.json"}
    assert (
        "No import matches these filters." in client.get("/history?status=failed").content.decode()
    )


def test_history_sorts_by_a_column(client: Client, marketer: User) -> None:
    make_import(marketer, original_name="b.json")
    make_import(marketer, original_name="a.json")
    page = client.get("/history?sort=file").content.decode()
    assert page.index("a.json") < page.index("b.json")
    assert 'aria-sort="ascending"' in page
    page = client.get("/history?sort=-file").content.decode()
    assert page.index("b.json") < page.index("a.json")
    assert client.get("/history?sort=evil").status_code == 200  # ignored, not a 500


def test_a_marketer_sees_only_their_own_history(client: Client, marketer: User) -> None:
    make_import(marketer, original_name="mine.json")
    make_import(make_user("other", "marketer"), original_name="theirs.json")
    page = client.get("/history").content.decode()
    assert "mine.json" in page and "theirs.json" not in page
    assert 'name="user"' not in page  # no user filter for a marketer


def test_history_is_empty_with_a_next_step(client: Client, marketer: User) -> None:
    page = client.get("/history").content.decode()
    assert "No imports yet." in page and "Upload a file of signals" in page


def test_history_draws_its_charts_each_file_counted_once(client: Client, marketer: User) -> None:
    signal_import = make_import(
        marketer, status=ImportStatus.COMPLETED, original_name="a.json", size_bytes=10
    )
    add_rejected(signal_import)
    add_batches(signal_import, ["sent", "sent"])
    again = make_import(marketer, original_name="a.json", size_bytes=10)  # uploaded again
    add_rejected(again)
    page = client.get("/history").content.decode()
    assert page.count("<svg") == 1  # sent per day; the causes are an HTML list
    assert "Signals sent per day" in page and "1,000 test, 0 live" in page
    assert ">Test</text>" in page and ">Live</text>" in page  # a panel and scale each
    causes = re.search(r'<ol class="hbars">(.*?)</ol>', page, re.S)
    assert causes is not None
    assert "<code>signalContent.currency</code>" in causes.group(1)
    assert re.findall(r'<span class="num">(\d+)</span>', causes.group(1)) == ["1"] * 3


def test_htmx_history_filtering_gets_only_the_results(client: Client, marketer: User) -> None:
    make_import(marketer, original_name="mine.json")
    response = client.get(
        "/history?mode=test", headers={"HX-Request": "true", "HX-Target": "history-results"}
    )
    body = response.content.decode()
    assert body.strip().startswith('<section id="history-results"')
    assert "mine.json" in body and "<svg" not in body


def test_exports_page_lists_jobs_and_offers_a_new_export(client: Client, marketer: User) -> None:
    body = client.get("/exports").content.decode()
    assert "Export jobs" in body and 'href="/exports/new"' in body


# --- the JSON markup ------------------------------------------------------------------


def test_json_markup_marks_present_and_missing_fields() -> None:
    html, unplaced = json_with_marks(
        {"a": {"b": [1, {"c": "<x>"}]}},
        [
            Marked("a.b[1].c", "error", "type", "bad c"),
            Marked("a.d", "warning", "required", "d is missing"),
            Marked("zzz[3]", "error", "type", "nowhere"),
        ],
    )
    assert 'data-path="a.b[1].c"' in html and "&lt;x&gt;" in html
    assert 'data-path="a.d"' in html and "jl-warning" in html
    assert [m.path for m in unplaced] == ["zzz[3]"]


# --- the ledger and problem table stay small on big imports --------------------------------


def test_the_ledger_is_paged_with_failed_and_unknown_batches_first(
    client: Client, marketer: User
) -> None:
    states = ["sent"] * 230
    states[150], states[220] = "failed", "unknown"
    signal_import = make_import(marketer, status=ImportStatus.COMPLETED, batches_total=230)
    add_batches(signal_import, states)
    response = client.get(detail_url(signal_import))
    page = response.content.decode()
    groups = response.context["ledger_groups"]
    assert [b.number for b in groups[0][1]] == [150, 220]  # what ops act on, first
    assert [b.number for b in groups[1][1]] == list(range(100))
    # The signalIds (up to 500 per batch) are never loaded for the page.
    assert all("signal_ids" in b.get_deferred_fields() for _, rows in groups for b in rows)
    assert "230 batches" in page and "228 sent" in page and "1 failed" in page
    assert "?batches_after=99#ledger" in page
    assert "signalIds (CSV)" in page

    second = client.get(detail_url(signal_import) + "?batches_after=99")
    rows = [b.number for _, group in second.context["ledger_groups"] for b in group]
    assert rows == [n for n in range(100, 201) if n != 150]  # keyset, failed ones not again
    assert "?batches_after=200#ledger" in second.content.decode()
    last = client.get(detail_url(signal_import) + "?batches_after=200")
    rows = [b.number for _, group in last.context["ledger_groups"] for b in group]
    assert rows == [n for n in range(201, 230) if n != 220]
    ledger = last.content.decode().split('id="ledger"')[1].split("</section>")[0]
    assert "Next batches" not in ledger and "First batches" in ledger


def test_the_polled_progress_shows_the_batches_per_state(client: Client, marketer: User) -> None:
    signal_import = make_import(
        marketer,
        status=ImportStatus.SENDING,
        batches_total=5,
        send_started_at=timezone.now() - timedelta(seconds=30),
    )
    add_batches(signal_import, ["sent", "sent", "unknown", "in_flight", "pending"])
    body = client.get(
        detail_url(signal_import), headers={"HX-Request": "true", "HX-Target": "progress"}
    ).content.decode()
    assert "3 of 5" in body
    assert "1 pending, 1 in flight, 2 sent, 1 outcome unknown" in body


def test_the_progress_says_when_connect_asked_to_wait(client: Client, marketer: User) -> None:
    """A 429 or Retry-After pauses every send of the account (services.sending): the
    progress says until when, rather than a bar that stands still without a word."""
    signal_import = make_import(
        marketer,
        status=ImportStatus.SENDING,
        batches_total=2,
        send_started_at=timezone.now() - timedelta(seconds=30),
    )
    add_batches(signal_import, ["sent", "pending"])
    progress = {"HX-Request": "true", "HX-Target": "progress"}
    assert (
        "Connect asked to wait"
        not in client.get(detail_url(signal_import), headers=progress).content.decode()
    )
    account = signal_import.connect_app_key.account
    account.send_paused_until = timezone.now() + timedelta(seconds=90)
    account.save()
    body = client.get(detail_url(signal_import), headers=progress).content.decode()
    assert "Connect asked to wait" in body
    assert f"no batch is sent before {account.send_paused_until:%H:%M:%S} UTC" in body
    account.send_paused_until = timezone.now() - timedelta(seconds=1)  # the pause is over
    account.save()
    body = client.get(detail_url(signal_import), headers=progress).content.decode()
    assert "Connect asked to wait" not in body


def test_the_problem_table_takes_three_examples_per_group_in_one_query(
    marketer: User, django_assert_max_num_queries: Any
) -> None:
    signal_import = make_import(marketer)
    rows = []
    for signal in (9, 3, 7, 1, 5):
        for severity in ("error", "warning"):
            rows.append(
                ImportFinding(
                    signal_import=signal_import,
                    signal=signal,
                    line=signal + 1,
                    path="signalContent.name",
                    path_pattern="signalContent.name",
                    severity=severity,
                    code="max_length",
                    message=f"{severity} {signal}",
                )
            )
    ImportFinding.objects.bulk_create(rows)
    with django_assert_max_num_queries(3):
        table = preview.import_problem_table(signal_import)
    assert [(r.severity, r.signals, [e.signal for e in r.examples]) for r in table] == [
        ("error", 5, [1, 3, 5]),
        ("warning", 5, [1, 3, 5]),
    ]
    assert table[1].examples[0] == ProblemExample(1, 2, "warning 1")


def test_the_imports_list_puts_what_waits_for_someone_first(client: Client, marketer: User) -> None:
    done = make_import(marketer, status=ImportStatus.COMPLETED, sent=10, accepted=10)
    waiting = make_import(marketer, status=ImportStatus.COMPLETED, sent=5, accepted=5, unknown=5)
    ready = make_import(marketer)  # validated
    running = make_import(marketer, status=ImportStatus.SENDING)
    make_import(make_user("other", "marketer"))  # not theirs
    page = client.get("/imports").content.decode()
    names = [i.original_name for i in (waiting, ready, running, done)]
    assert all(name in page for name in names) and page.count("<tr>") == 4 + 3  # + heads
    waiting_part = page[page.index("Waiting for someone") : page.index("Under way")]
    assert waiting.original_name in waiting_part and ready.original_name in waiting_part
    assert running.original_name in page[page.index("Under way") : page.index(">Done<")]
    assert done.original_name in page[page.index(">Done<") :]
    assert 'href="/imports" aria-current="page">Imports' in page


def test_the_app_key_choice_names_key_tier_and_account_once(client: Client, marketer: User) -> None:
    account = make_account(name="Shop EU")
    make_app_key(account, key="shop-web", tier="premium", label="Shop EU")
    make_app_key(account, key="shop-app", tier="pro", label="Mobile app")
    page = client.get("/imports/new").content.decode()
    assert ">shop-web · Premium · Shop EU</option>" in page  # the label said the account
    assert ">shop-app · Mobile app · Pro · Shop EU</option>" in page


# --- each role sees only the actions it can take ------------------------------------------

FIX = {"id": "currency_case|signalContent.currency", "kind": "currency_case",
       "path": "signalContent.currency", "before": "usd", "after": "USD", "signals": 2,
       "description": "Write currency codes in capitals (usd → USD)"}  # fmt: skip


def pages_of_every_state(owner: User) -> list[str]:
    ready = make_import(owner, fix_suggestions=[FIX])
    add_rejected(ready)
    tested = make_import(owner, status=ImportStatus.COMPLETED, sent=500, accepted=500)
    add_batches(tested, [BatchState.SENT])
    unknown = make_import(owner, status=ImportStatus.COMPLETED, sent=500, accepted=500, unknown=500)
    add_batches(unknown, [BatchState.SENT, BatchState.UNKNOWN, BatchState.FAILED])
    live = make_import(owner, mode=ImportMode.LIVE)
    return ["/", "/imports", "/history", "/exports"] + [
        detail_url(i) for i in (ready, tested, unknown, live)
    ]


@pytest.mark.parametrize(
    ("role", "send_live", "forbidden"),
    [
        ("ops", False, ('/send"', '/fixes"', '/promote"', 'href="/imports/new"')),
        ("marketer", False, ('/promote"', '/resend"', 'value="live" checked')),
    ],
)
def test_no_page_offers_an_action_its_user_cannot_take(
    client: Client, role: str, send_live: bool, forbidden: tuple[str, ...]
) -> None:
    mia = make_user("mia", "marketer")
    urls = pages_of_every_state(mia)
    client.force_login(mia if role == "marketer" else make_user("otto", role, send_live=send_live))
    for url in urls:
        page = client.get(url).content.decode()
        shown = [action for action in forbidden if action in page]
        assert not shown, f"{role} is offered {shown} on {url}"


def test_what_a_role_may_do_is_offered(client: Client) -> None:
    """The other side: the same pages do offer ops their resend and admins their promote."""
    mia = make_user("mia", "marketer")
    urls = pages_of_every_state(mia)
    client.force_login(make_user("ada", "admin", send_live=True))
    pages = "".join(client.get(url).content.decode() for url in urls)
    for action in ('/send"', '/fixes"', '/promote"', '/resend"'):
        assert action in pages, action
