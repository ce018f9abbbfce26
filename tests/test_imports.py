"""Imports up to the preview: upload, validation, preview queries, fixes and downloads.

Unit tests: the Celery task body is called directly (the real-worker tests live elsewhere).
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import TemporaryUploadedFile, UploadedFile
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import path, reverse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt, csrf_protect

from signals_app import tasks
from signals_app.models import (
    AuditEvent,
    ImportFinding,
    ImportStatus,
    RejectedSignal,
    SignalImport,
)
from signals_app.services import downloads, fixes, preview, reading, upload, validation
from signals_app.services.errors import ImportRefused
from signals_app.services.rejections import Rejections
from signals_app.uploads import UploadSizeCap, install_upload_cap
from signals_app.validation import validate as validate_module
from signals_app.validation.processes import Forked, ReadCounters
from tests.conftest import require
from tests.factories import make_account, make_app_key

pytestmark = pytest.mark.django_db


# --- a tiny upload view, written the documented way (see signals_app/uploads.py) ---------


@csrf_exempt
def upload_view(request: HttpRequest) -> HttpResponse:
    cap = install_upload_cap(request)
    return _upload_view(request, cap)


@csrf_protect
def _upload_view(request: HttpRequest, cap: UploadSizeCap) -> HttpResponse:
    if cap.refusal:
        return JsonResponse({"error": cap.refusal}, status=413)
    uploaded = request.FILES.get("file")
    assert isinstance(uploaded, UploadedFile)
    return JsonResponse({"size": uploaded.size, "name": uploaded.name})


urlpatterns = [path("upload/", upload_view)]


# --- factories and helpers ----------------------------------------------------------------


@pytest.fixture(autouse=True)
def _imports_dir(settings: Any, tmp_path: Path) -> None:
    settings.IMPORTS_DIR = tmp_path / "imports"
    settings.FILE_UPLOAD_TEMP_DIR = str(tmp_path / "uploads")
    Path(settings.FILE_UPLOAD_TEMP_DIR).mkdir()


@pytest.fixture
def user() -> Any:
    return make_user()


@pytest.fixture
def app_key() -> Any:
    return make_app_key(key="shop-key", tier="ultimate")


def make_user(name: str = "marketer") -> Any:
    return get_user_model().objects.create_user(username=name, password="pw")


def order(n: int = 0, **content: Any) -> dict[str, Any]:
    signal_content = {"signalType": "order", "currency": "USD", "orderId": f"o-{n}"}
    signal_content.update(content)
    return {
        "appKey": "shop-key",
        "identifiableAttributes": {"email": f"ann{n}@example.com"},
        "signalContent": signal_content,
    }


def missing_currency(n: int = 0) -> dict[str, Any]:
    signal = order(n)
    del signal["signalContent"]["currency"]
    return signal


def ndjson(*signals: Any) -> bytes:
    return b"".join(orjson.dumps(s) + b"\n" for s in signals)


def create(
    user: Any, app_key: Any, content: bytes, name: str = "orders.ndjson", **kwargs: Any
) -> SignalImport:
    return upload.import_create(
        user=user,
        app_key=app_key,
        mode="test",
        upload=io.BytesIO(content),
        original_name=name,
        **kwargs,
    )


def validated(user: Any, app_key: Any, content: bytes, name: str = "orders.ndjson") -> SignalImport:
    signal_import = create(user, app_key, content, name)
    validation.import_validate(import_id=signal_import.pk)
    signal_import.refresh_from_db()
    return signal_import


# --- upload -------------------------------------------------------------------------------


def test_it_keeps_the_upload_under_a_generated_name(
    user: Any, app_key: Any, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    content = ndjson(order(1), order(2))
    with django_capture_on_commit_callbacks() as callbacks:
        signal_import = create(user, app_key, content, name="../../etc/my orders.ndjson")

    assert signal_import.original_name == "my orders.ndjson"
    assert signal_import.stored_name != signal_import.original_name
    assert "/" not in signal_import.stored_name and "orders" not in signal_import.stored_name
    stored = Path(settings.IMPORTS_DIR) / signal_import.stored_name
    assert stored.read_bytes() == content
    assert signal_import.size_bytes == len(content)
    assert signal_import.status == ImportStatus.UPLOADED
    assert AuditEvent.objects.filter(signal_import=signal_import, action="import.uploaded").exists()
    # Validation is queued once the row is committed, by id.
    assert len(callbacks) == 1
    assert callbacks[0].args == (signal_import.pk,)


def test_it_moves_a_temporary_upload_instead_of_copying_it(
    user: Any, app_key: Any, settings: Any
) -> None:
    uploaded = TemporaryUploadedFile("orders.ndjson", "application/x-ndjson", 0, None)
    uploaded.write(ndjson(order()))
    uploaded.flush()
    temporary = Path(uploaded.temporary_file_path())

    signal_import = upload.import_create(
        user=user, app_key=app_key, mode="live", upload=uploaded, original_name="orders.ndjson"
    )
    uploaded.close()  # what Django does at the end of the request: must not fail

    assert not temporary.exists()
    assert (Path(settings.IMPORTS_DIR) / signal_import.stored_name).exists()
    assert signal_import.mode == "live"


def test_a_double_clicked_submit_makes_one_import(user: Any, app_key: Any) -> None:
    first = create(user, app_key, ndjson(order()), idempotency_key="token-1")
    second = create(user, app_key, ndjson(order()), idempotency_key="token-1")
    assert second.pk == first.pk
    assert SignalImport.objects.count() == 1

    other_user = create(make_user("other"), app_key, ndjson(order()), idempotency_key="token-1")
    assert other_user.pk != first.pk

    SignalImport.objects.filter(pk=first.pk).update(created_at=timezone.now() - timedelta(hours=2))
    later = create(user, app_key, ndjson(order()), idempotency_key="token-1")
    assert later.pk != first.pk


def test_it_refuses_an_unknown_mode(user: Any, app_key: Any) -> None:
    with pytest.raises(ImportRefused):
        upload.import_create(
            user=user, app_key=app_key, mode="prod", upload=io.BytesIO(b"x"), original_name="x"
        )


def multipart_file(size: int) -> io.BytesIO:
    data = io.BytesIO(b"x" * size)
    data.name = "big.ndjson"
    return data


@pytest.mark.urls("tests.test_imports")
def test_an_upload_over_the_cap_is_refused_while_it_streams(settings: Any) -> None:
    settings.IMPORT_MAX_UPLOAD_BYTES = 200 * 1024
    # Just over the cap: the declared length looks fine, so the cap stops it mid-stream,
    # after the temporary file handler has written the first chunks.
    response = Client().post("/upload/", {"file": multipart_file(200 * 1024 + 10)})

    assert response.status_code == 413
    assert response.json()["error"].startswith("The file is larger than 200 KiB")
    assert list(Path(settings.FILE_UPLOAD_TEMP_DIR).iterdir()) == []


@pytest.mark.urls("tests.test_imports")
def test_an_upload_declared_far_over_the_cap_is_refused_before_it_is_written(
    settings: Any,
) -> None:
    settings.IMPORT_MAX_UPLOAD_BYTES = 100 * 1024
    response = Client().post("/upload/", {"file": multipart_file(400 * 1024)})

    assert response.status_code == 413
    assert "larger than 100 KiB" in response.json()["error"]
    assert list(Path(settings.FILE_UPLOAD_TEMP_DIR).iterdir()) == []


@pytest.mark.urls("tests.test_imports")
def test_an_upload_under_the_cap_goes_to_a_temporary_file(settings: Any) -> None:
    settings.IMPORT_MAX_UPLOAD_BYTES = 200 * 1024
    response = Client().post("/upload/", {"file": multipart_file(150 * 1024)})
    assert response.status_code == 200
    assert response.json() == {"size": 150 * 1024, "name": "big.ndjson"}


def test_the_cap_message_names_one_gib() -> None:
    cap = UploadSizeCap(limit=1024**3)
    with pytest.raises(Exception, match="StopUpload"):
        cap.receive_data_chunk(b"x" * 10, 1024**3 - 5)
    assert cap.refusal is not None
    assert cap.refusal.startswith("The file is larger than 1 GiB")


# --- validation ---------------------------------------------------------------------------


def test_validation_stores_findings_rejected_signals_and_totals(user: Any, app_key: Any) -> None:
    content = (
        ndjson(
            order(0),
            missing_currency(1),
            order(2, effect="positve"),  # a warning: Connect drops the field
            {
                "appKey": "shop-key",
                "identifiableAttributes": {"contactKey": "c-1"},
                "signalContent": {"signalType": "order", "currency": "EUR", "orderId": "o-3"},
            },
        )
        + b"not json at all\n"
    )
    signal_import = validated(user, app_key, content)

    assert signal_import.status == ImportStatus.VALIDATED
    assert signal_import.file_format == "ndjson"
    assert (signal_import.signals, signal_import.valid, signal_import.rejected) == (5, 3, 2)
    assert (signal_import.errors, signal_import.warnings) == (2, 1)
    assert signal_import.contact_key_only == 1
    assert signal_import.bytes_read == len(content)
    assert signal_import.validation_finished_at is not None

    findings = list(ImportFinding.objects.filter(signal_import=signal_import).order_by("signal"))
    assert [(f.signal, f.line, f.path, f.code) for f in findings] == [
        (1, 2, "signalContent.currency", "required"),
        (2, 3, "signalContent.effect", "enum"),
        (4, 5, "", "syntax"),
    ]
    rejected = {r.signal: r for r in RejectedSignal.objects.filter(signal_import=signal_import)}
    assert set(rejected) == {1, 4}
    # The text as in the file (keys in its order); no jsonb copy of it.
    assert rejected[1].raw == orjson.dumps(missing_currency(1)).decode()
    assert rejected[1].record is None
    assert rejected[1].line == 2
    assert rejected[4].record is None and rejected[4].raw == "not json at all"
    assert {
        (p["path"], p["code"], p["count"], p["signals"]) for p in signal_import.problem_counts
    } == {
        ("signalContent.currency", "required", 1, 1),
        ("signalContent.effect", "enum", 1, 1),
        ("", "syntax", 1, 1),
    }
    # Which signals are rejected: one byte per signal, what sending skips.
    assert sorted(Rejections.of(signal_import).indexes()) == [1, 4]
    assert signal_import.problem_counts[-1]["severity"] == "warning"


def _count_then_wait(counters: ReadCounters) -> bool:
    counters.set(0, 300, 20)  # a single reader
    counters.set(2, 200, 10)  # and a part of a file read in parallel
    time.sleep(1.5)
    return True


@pytest.mark.django_db(transaction=True)
def test_what_the_reader_counts_reaches_the_row_while_it_reads(
    user: Any, app_key: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reader, a child process (and its parts, its children), counts what it has read
    in memory shared with the worker, whose thread writes it to the import's row."""
    monkeypatch.setattr(validation, "PROGRESS_EVERY_SECONDS", 0.02)
    signal_import = create(user, app_key, ndjson(order(0)))
    counters = ReadCounters()
    child = Forked(_count_then_wait, (counters,))
    seen = None
    with validation._ReadProgress(signal_import.pk, counters, 10_000):
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and seen != (500, 30):
            time.sleep(0.02)
            seen = SignalImport.objects.values_list("bytes_read", "signals").get(
                pk=signal_import.pk
            )
        assert child.result() is True
    assert seen == (500, 30)


def test_findings_are_written_in_chunks(
    user: Any, app_key: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(validation, "STORE_CHUNK_ROWS", 10)
    monkeypatch.setattr(validation, "STORE_CHUNK_BYTES", 700)  # some cut by their size
    signal_import = validated(user, app_key, ndjson(*(missing_currency(n) for n in range(95))))
    assert ImportFinding.objects.filter(signal_import=signal_import).count() == 95
    assert RejectedSignal.objects.filter(signal_import=signal_import).count() == 95
    assert signal_import.rejected == 95


def test_an_unreadable_file_is_refused_with_one_reason(user: Any, app_key: Any) -> None:
    signal_import = validated(user, app_key, b"hello, world\nthis is not a signal file\n")
    assert signal_import.status == ImportStatus.UNREADABLE
    assert signal_import.error_message.startswith("The file cannot be read: The file is not JSON")
    assert signal_import.signals == 0


def test_a_file_broken_further_on_keeps_nothing_half_imported(user: Any, app_key: Any) -> None:
    data = gzip.compress(ndjson(*(missing_currency(n) for n in range(3000))))
    signal_import = validated(user, app_key, data[: len(data) // 2], name="orders.ndjson.gz")

    assert signal_import.status == ImportStatus.UNREADABLE
    assert "truncated" in signal_import.error_message
    assert not ImportFinding.objects.filter(signal_import=signal_import).exists()
    assert not RejectedSignal.objects.filter(signal_import=signal_import).exists()


def test_an_app_key_outside_the_chosen_keys_account_is_an_error(user: Any, app_key: Any) -> None:
    """SPEC §2, §5: a signal's appKey must be the chosen key or another key of the same
    Connect account; any other would be sent with the wrong account's API key."""
    make_app_key(key="same-account-key", account=app_key.account)
    make_app_key(key="other-account-key", account=make_account(name="Brand B"))
    same, other = order(1), order(2)
    same["appKey"], other["appKey"] = "same-account-key", "other-account-key"
    signal_import = validated(user, app_key, ndjson(order(0), same, other, {"signal": other}))

    assert (signal_import.signals, signal_import.valid, signal_import.rejected) == (4, 2, 2)
    findings = ImportFinding.objects.filter(signal_import=signal_import)
    assert [(f.signal, f.path, f.code) for f in findings.order_by("signal")] == [
        (2, "appKey", "other_account"),
        (3, "appKey", "other_account"),
    ]
    message = findings.first().message  # type: ignore[union-attr]
    assert 'belongs to the Connect account "Brand B"' in message
    assert f'not to "{app_key.account.name}"' in message
    assert sorted(Rejections.of(signal_import).indexes()) == [2, 3]


def test_an_unregistered_app_key_in_the_file_is_an_error(user: Any, app_key: Any) -> None:
    make_app_key(key="other-registered-key", account=app_key.account)
    unknown_key = order(1)
    unknown_key["appKey"] = "nobody-knows-me"
    no_key = order(2)
    del no_key["appKey"]  # the import's own key fills it
    other_key = order(3)
    other_key["appKey"] = "other-registered-key"
    both = missing_currency(4)
    both["appKey"] = "nobody-knows-me"
    wrapped = {"signal": dict(unknown_key)}

    signal_import = validated(
        user, app_key, ndjson(order(0), unknown_key, no_key, other_key, both, wrapped)
    )

    assert (signal_import.signals, signal_import.valid, signal_import.rejected) == (6, 3, 3)
    assert signal_import.errors == 4  # three unregistered keys and one missing currency
    unregistered = ImportFinding.objects.filter(code=validation.UNREGISTERED_APP_KEY)
    assert sorted(unregistered.values_list("signal", flat=True)) == [1, 4, 5]
    assert all(f.path == "appKey" and f.severity == "error" for f in unregistered)
    assert "nobody-knows-me" in unregistered.first().message  # type: ignore[union-attr]
    assert {
        "path": "appKey",
        "code": "unregistered_app_key",
        "severity": "error",
        "count": 3,
        "signals": 3,
    } in signal_import.problem_counts
    assert set(RejectedSignal.objects.values_list("signal", flat=True)) == {1, 4, 5}


def test_an_unregistered_app_key_in_a_csv_file_is_an_error(user: Any, app_key: Any) -> None:
    content = (
        b"appKey,identifiableAttributes.email,signalContent.signalType,"
        b"signalContent.currency,signalContent.orderId\n"
        b"shop-key,a@example.com,order,USD,o-1\n"
        b"stranger,b@example.com,order,USD,o-2\n"
    )
    signal_import = validated(user, app_key, content, name="orders.csv")
    assert (signal_import.valid, signal_import.rejected) == (1, 1)
    finding = ImportFinding.objects.get(signal_import=signal_import)
    assert (finding.signal, finding.line, finding.code) == (1, 3, "unregistered_app_key")


def test_validating_again_does_not_double_rows(user: Any, app_key: Any) -> None:
    signal_import = validated(user, app_key, ndjson(order(0), missing_currency(1)))
    validation.import_validate(import_id=signal_import.pk)
    signal_import.refresh_from_db()

    assert ImportFinding.objects.filter(signal_import=signal_import).count() == 1
    assert RejectedSignal.objects.filter(signal_import=signal_import).count() == 1
    assert (signal_import.signals, signal_import.rejected) == (2, 1)


def test_an_import_being_sent_is_not_validated_again(user: Any, app_key: Any) -> None:
    signal_import = validated(user, app_key, ndjson(missing_currency(1)))
    SignalImport.objects.filter(pk=signal_import.pk).update(status=ImportStatus.SENDING)
    validation.import_validate(import_id=signal_import.pk)
    signal_import.refresh_from_db()
    assert signal_import.status == ImportStatus.SENDING
    assert ImportFinding.objects.filter(signal_import=signal_import).count() == 1


# --- preview ------------------------------------------------------------------------------


def test_the_problem_table_puts_errors_first_then_counts(user: Any, app_key: Any) -> None:
    signals = [order(n, effect="positve") for n in range(5)]  # 5 warnings
    signals += [missing_currency(n) for n in range(5, 7)]  # 2 errors
    signals += [order(7, orderId="")]  # 1 error
    signals += [order(8, orderedItems=[{"productId": "p"}, {"productId": "q"}])]  # 4 errors
    table = preview.import_problem_table(validated(user, app_key, ndjson(*signals)))

    # Errors first, then by signals hit, then by findings.
    assert [(r.severity, r.path, r.code, r.signals, r.count) for r in table] == [
        ("error", "signalContent.currency", "required", 2, 2),
        ("error", "signalContent.orderedItems[].productName", "required", 1, 2),
        ("error", "signalContent.orderedItems[].unitPrice", "required", 1, 2),
        ("error", "signalContent.orderId", "required", 1, 1),
        ("warning", "signalContent.effect", "enum", 5, 5),
    ]
    items = table[1]
    assert items.signals == 1
    assert items.share == pytest.approx(1 / 9)
    assert [(e.signal, e.line) for e in items.examples] == [(8, 9), (8, 9)]
    effect = table[-1]
    assert [e.signal for e in effect.examples] == [0, 1, 2]
    assert "positve" in effect.examples[0].message


@pytest.fixture
def many_rejected(user: Any, app_key: Any) -> SignalImport:
    """120 rejected signals (every third also has a warning) between valid ones."""
    signals: list[Any] = []
    for n in range(240):
        if n % 2:
            signals.append(order(n))
        else:
            signal = missing_currency(n)
            if n % 3 == 0:
                signal["signalContent"]["effect"] = "positve"
            signals.append(signal)
    signals.append(order(240, effect="negatve"))  # a warning only
    return validated(user, app_key, ndjson(*signals))


def test_rejected_signals_are_paged_by_keyset(many_rejected: SignalImport) -> None:
    first = preview.import_rejected_page(many_rejected)
    assert [e.signal for e in first.entries] == list(range(0, 100, 2))
    assert first.next_after == 98
    entry = first.entries[0]
    assert entry.rejected and entry.line == 1
    assert entry.record == missing_currency(0) | {
        "signalContent": missing_currency(0)["signalContent"] | {"effect": "positve"}
    }
    assert entry.failing_paths == {"signalContent.currency", "signalContent.effect"}
    assert [(f.severity, f.code) for f in entry.findings] == [
        ("warning", "enum"),
        ("error", "required"),
    ]
    assert '"currency"' not in entry.record_json

    second = preview.import_rejected_page(many_rejected, after=first.next_after)
    third = preview.import_rejected_page(many_rejected, after=second.next_after)
    assert [e.signal for e in second.entries] == list(range(100, 200, 2))
    assert [e.signal for e in third.entries] == list(range(200, 240, 2))
    assert third.next_after is None

    deep = preview.import_rejected_page(many_rejected, after=229, limit=3)
    assert [e.signal for e in deep.entries] == [230, 232, 234]
    assert deep.next_after == 234


def test_rejected_signals_can_be_filtered(many_rejected: SignalImport) -> None:
    by_pattern = preview.import_rejected_page(
        many_rejected, path="signalContent.effect", code="enum", limit=500
    )
    assert [e.signal for e in by_pattern.entries] == list(range(0, 240, 6))
    warnings = preview.import_rejected_page(many_rejected, severity="warning", limit=500)
    assert [e.signal for e in warnings.entries] == list(range(0, 240, 6))
    with_warning_only = preview.import_rejected_page(
        many_rejected, severity="warning", limit=500, rejected_only=False
    )
    assert with_warning_only.entries[-1].signal == 240
    assert not with_warning_only.entries[-1].rejected
    assert with_warning_only.entries[-1].record is None
    errors = preview.import_rejected_page(many_rejected, code="required", after=230)
    assert [e.signal for e in errors.entries] == [232, 234, 236, 238]
    assert preview.import_rejected_page(many_rejected, code="nothing").entries == []


def test_rejected_pages_never_use_offset(many_rejected: SignalImport) -> None:
    with CaptureQueriesContext(connection) as queries:
        preview.import_rejected_page(many_rejected, after=150)
        preview.import_rejected_page(many_rejected, after=150, path="signalContent.effect")
        preview.import_rejected_page(many_rejected, after=150, severity="warning")
        preview.import_problem_table(many_rejected)
    assert queries.captured_queries
    assert not [q for q in queries.captured_queries if "OFFSET" in q["sql"].upper()]


@pytest.mark.parametrize(
    ("name", "encode"),
    [
        ("signals.ndjson", lambda signal: orjson.dumps(signal) + b"\n"),
        ("signals.json", lambda signal: json.dumps([signal], indent=2).encode()),
    ],
)
def test_the_preview_shows_a_rejected_signal_with_its_keys_in_file_order(
    user: Any, app_key: Any, client: Client, name: str, encode: Any
) -> None:
    """jsonb (PostgreSQL) stores object keys shorter first: the preview must not show the
    signal in that order but as it is in the file."""
    signal = {
        "signalContent": {"signalType": "order", "orderId": "o-1", "effect": "positve"},
        "identifiableAttributes": {"email": "ann@example.com"},
        "appKey": "shop-key",
    }  # currency missing: rejected
    signal_import = validated(user, app_key, encode(signal), name=name)
    assert signal_import.rejected == 1

    entry = preview.import_rejected_page(signal_import).entries[0]
    assert list(entry.record) == ["signalContent", "identifiableAttributes", "appKey"]
    assert list(entry.record["signalContent"]) == ["signalType", "orderId", "effect"]

    client.force_login(user)
    page = client.get(reverse("signals:import_detail", args=[signal_import.public_id]))
    html = page.content.decode()
    keys = [
        "signalContent",
        "signalType",
        "orderId",
        "effect",
        "identifiableAttributes",
        "email",
        "appKey",
    ]
    shown = [html.index(f'<span class="jk">&quot;{key}&quot;</span>') for key in keys]
    assert shown == sorted(shown)


# --- fixes --------------------------------------------------------------------------------


def fixable_file() -> bytes:
    add_to_cart = {
        "appKey": "shop-key",
        "identifiableAttributes": {"email": "cart@example.com"},
        "signalContent": {
            "signalType": "addToCart",
            "currency": "EUR",
            "itemQuantity": "2",
            "productId": "p-1",
            "productName": "Mug",
            "unitPrice": "9.95",
        },
    }
    return ndjson(
        order(0, effect="positve"),
        order(1, currency="usd"),
        order(
            2,
            orderedItems=[
                {"productId": "p", "productName": "Pen", "unitPrice": 1.5, "quantity": 3}
            ],
        ),
        add_to_cart,
        order(4),
        order(5, effect="positve", currency="eur"),
    )


def test_unambiguous_fixes_are_offered_with_their_counts(user: Any, app_key: Any) -> None:
    signal_import = validated(user, app_key, fixable_file())
    offered = {f.id: f for f in fixes.import_fix_suggestions(signal_import)}

    assert set(offered) == {
        "enum_spelling|signalContent.effect|positve",
        "currency_case|signalContent.currency",
        "item_quantity|signalContent.orderedItems[]",
        "number_string|signalContent.itemQuantity",
        "number_string|signalContent.unitPrice",
    }
    spelling = offered["enum_spelling|signalContent.effect|positve"]
    assert (spelling.before, spelling.after, spelling.signals) == ("positve", "positive", 2)
    assert offered["currency_case|signalContent.currency"].signals == 2
    assert offered["number_string|signalContent.itemQuantity"].after == "2"
    assert "itemQuantity" in offered["item_quantity|signalContent.orderedItems[]"].description


def test_an_ambiguous_spelling_is_not_offered(user: Any, app_key: Any) -> None:
    signal_import = validated(
        user, app_key, ndjson(order(0, effect="xyz"), order(1, currency="dollars"))
    )
    assert fixes.import_fix_suggestions(signal_import) == []


def test_applying_fixes_makes_a_new_import_that_validates_clean(
    user: Any, app_key: Any, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    source = validated(user, app_key, fixable_file())
    # usd, eur (a required currency) and the addToCart's numbers as text are errors.
    assert (source.rejected, source.warnings) == (3, 3)
    chosen = [f.id for f in fixes.import_fix_suggestions(source)]

    with django_capture_on_commit_callbacks() as callbacks:
        fixed = fixes.import_apply_fixes(signal_import=source, user=user, fixes=chosen)
    assert [c.args for c in callbacks] == [(fixed.pk, source.pk, sorted(chosen))]
    assert fixed.pk != source.pk
    assert fixed.original_name == "orders.fixed.ndjson"
    assert (fixed.app_key, fixed.mode) == (source.app_key, source.mode)
    assert AuditEvent.objects.filter(signal_import=fixed, action="import.fixes_applied").exists()

    with django_capture_on_commit_callbacks() as callbacks:
        tasks.write_fixed_file(*write_task_args(fixed, source, chosen))
    assert [c.args for c in callbacks] == [(fixed.pk,)]  # then validated as an upload
    lines = (Path(settings.IMPORTS_DIR) / fixed.stored_name).read_bytes().splitlines()
    records = [json.loads(line) for line in lines]
    assert len(records) == 6
    assert records[0]["signalContent"]["effect"] == "positive"
    assert records[1]["signalContent"]["currency"] == "USD"
    assert records[2]["signalContent"]["orderedItems"][0]["itemQuantity"] == 3
    assert records[3]["signalContent"]["itemQuantity"] == 2
    assert records[3]["signalContent"]["unitPrice"] == 9.95
    assert records[4] == order(4)

    validation.import_validate(import_id=fixed.pk)
    fixed.refresh_from_db()
    assert (fixed.signals, fixed.valid, fixed.rejected, fixed.warnings) == (6, 6, 0, 0)


def write_task_args(
    fixed: SignalImport, source: SignalImport, chosen: list[str]
) -> tuple[Any, ...]:
    """The write_fixed_file task's arguments, as import_apply_fixes queues them."""
    return fixed.pk, source.pk, sorted(chosen)


def applied(user: Any, source: SignalImport, chosen: list[str]) -> SignalImport:
    """Fixes applied, the task that writes the corrected file run here, then validated."""
    fixed = fixes.import_apply_fixes(signal_import=source, user=user, fixes=chosen)
    tasks.write_fixed_file(*write_task_args(fixed, source, chosen))
    validation.import_validate(import_id=fixed.pk)
    fixed.refresh_from_db()
    return fixed


def test_only_the_chosen_fixes_are_applied(user: Any, app_key: Any) -> None:
    source = validated(user, app_key, fixable_file())
    fixed = applied(user, source, ["currency_case|signalContent.currency"])
    assert fixed.rejected == 1  # the addToCart signal's numbers as text
    assert fixed.warnings == 3


def test_the_request_only_records_the_fixes_the_task_writes_the_file(
    user: Any, app_key: Any, settings: Any
) -> None:
    source = validated(user, app_key, fixable_file())
    chosen = ["currency_case|signalContent.currency"]
    fixed = fixes.import_apply_fixes(signal_import=source, user=user, fixes=chosen)
    path = Path(settings.IMPORTS_DIR) / fixed.stored_name

    assert fixed.status == ImportStatus.UPLOADED
    assert not path.exists()
    assert fixes.import_preparing(fixed)

    tasks.write_fixed_file(*write_task_args(fixed, source, chosen))
    fixed.refresh_from_db()
    assert path.exists()
    assert fixed.size_bytes == path.stat().st_size
    assert (fixed.status, fixed.bytes_read, fixed.signals) == (ImportStatus.UPLOADED, 0, 0)
    assert not fixes.import_preparing(fixed)
    assert list(Path(settings.IMPORTS_DIR).glob("*.part")) == []


def test_a_rerun_after_a_crash_writes_the_whole_file_not_half_of_it(
    user: Any, app_key: Any, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    source = validated(user, app_key, fixable_file())
    chosen = [f.id for f in fixes.import_fix_suggestions(source)]
    clean = applied(user, source, chosen)
    expected = (Path(settings.IMPORTS_DIR) / clean.stored_name).read_bytes()

    fixed = fixes.import_apply_fixes(signal_import=source, user=user, fixes=chosen)
    # A worker killed mid-write left half a file under the temporary name only.
    partial = Path(settings.IMPORTS_DIR) / f"{fixed.stored_name}.part"
    partial.write_bytes(expected[: len(expected) // 2])
    assert fixes.import_preparing(fixed)

    tasks.write_fixed_file(*write_task_args(fixed, source, chosen))  # the redelivered task
    path = Path(settings.IMPORTS_DIR) / fixed.stored_name
    assert path.read_bytes() == expected
    assert not partial.exists()

    # Killed after the rename, before the validation was queued: run again, queue it.
    with django_capture_on_commit_callbacks() as callbacks:
        tasks.write_fixed_file(*write_task_args(fixed, source, chosen))
    assert [c.args for c in callbacks] == [(fixed.pk,)]
    assert path.read_bytes() == expected

    validation.import_validate(import_id=fixed.pk)
    with django_capture_on_commit_callbacks() as callbacks:
        tasks.write_fixed_file(*write_task_args(fixed, source, chosen))
    assert callbacks == []  # validated already: nothing to do


def test_a_corrected_file_that_cannot_be_written_fails_the_import_cleanly(
    user: Any, app_key: Any, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = validated(user, app_key, fixable_file())
    chosen = ["currency_case|signalContent.currency"]
    fixed = fixes.import_apply_fixes(signal_import=source, user=user, fixes=chosen)

    def disk_full(source: Any, destination: Path, *args: Any) -> None:
        destination.write_bytes(b'{"half": ')
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(fixes, "_write_fixed_file", disk_full)
    with pytest.raises(OSError):
        tasks.write_fixed_file(*write_task_args(fixed, source, chosen))
    fixed.refresh_from_db()
    assert fixed.status == ImportStatus.FAILED
    assert fixed.error_message.startswith("Writing the corrected file stopped (OSError)")
    assert list(Path(settings.IMPORTS_DIR).glob(f"{fixed.stored_name}*")) == []


def test_a_fix_not_offered_is_refused(user: Any, app_key: Any) -> None:
    source = validated(user, app_key, fixable_file())
    with pytest.raises(ImportRefused):
        fixes.import_apply_fixes(signal_import=source, user=user, fixes=["made|up"])


# --- downloads ----------------------------------------------------------------------------


def test_the_error_report_is_safe_in_a_spreadsheet(user: Any, app_key: Any) -> None:
    formula = order(0)
    formula["signalContent"]['=HYPERLINK("http://evil")'] = "x"
    at = order(1)
    at["@SUM(A1)"] = 1
    minus = order(2)
    minus["signalContent"]["-2+3"] = 1
    signal_import = validated(user, app_key, ndjson(formula, at, minus, missing_currency(3)))

    text = "".join(downloads.error_report_csv(signal_import))
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["index", "line", "path", "severity", "code", "message"]
    assert [row[0] for row in rows[1:]] == ["0", "1", "2", "3"]
    assert rows[2][2] == "'@SUM(A1)"
    assert rows[2][5].startswith("'@SUM(A1) is not a field")
    assert rows[4][1:5] == ["4", "signalContent.currency", "error", "required"]
    for row in rows[1:]:
        for cell in row:
            assert not cell.startswith(("=", "+", "-", "@", "\t", "\r"))
    assert downloads.spreadsheet_safe("=1+1") == "'=1+1"
    assert downloads.spreadsheet_safe("\tx") == "'\tx"
    assert downloads.spreadsheet_safe("plain") == "plain"


def test_the_valid_signals_file_holds_only_valid_signals(user: Any, app_key: Any) -> None:
    signals = [order(0), missing_currency(1), order(2), order(3), missing_currency(4), order(5)]
    signal_import = validated(user, app_key, ndjson(*signals))
    lines = b"".join(downloads.valid_signals_ndjson(signal_import)).splitlines()
    assert [json.loads(line) for line in lines] == [order(0), order(2), order(3), order(5)]


def test_the_valid_signals_file_from_a_json_array(user: Any, app_key: Any) -> None:
    signals = [missing_currency(0), order(1), order(2, effect="positve")]
    signal_import = validated(user, app_key, json.dumps(signals).encode(), name="x.json")
    lines = b"".join(downloads.valid_signals_ndjson(signal_import)).splitlines()
    assert [json.loads(line) for line in lines] == signals[1:]


# --- validation over several processes ------------------------------------------------------


def _snapshot(signal_import: SignalImport) -> dict[str, Any]:
    signal_import.refresh_from_db()
    return {
        "totals": (
            signal_import.signals,
            signal_import.valid,
            signal_import.rejected,
            signal_import.errors,
            signal_import.warnings,
            signal_import.contact_key_only,
        ),
        "problems": signal_import.problem_counts,
        "fixes": signal_import.fix_suggestions,
        "findings": list(
            ImportFinding.objects.filter(signal_import=signal_import)
            .order_by("signal", "id")
            .values_list("signal", "line", "path", "severity", "code", "message")
        ),
        "rejected": list(
            RejectedSignal.objects.filter(signal_import=signal_import)
            .order_by("signal")
            .values_list("signal", "line", "record", "raw")
        ),
    }


def _mixed_signals() -> list[Any]:
    stranger = order(3)
    stranger["appKey"] = "nobody-knows-me"
    broken_stranger = missing_currency(5)
    broken_stranger["appKey"] = "nobody-knows-me"
    signals: list[Any] = []
    for n in range(300):
        kind = n % 10
        if kind == 1:
            signals.append(missing_currency(n))
        elif kind == 2:
            signals.append(order(n, effect="positve", currency="usd"))
        elif kind == 3:
            signals.append(stranger)
        elif kind == 5:
            signals.append(broken_stranger)
        else:
            signals.append(order(n))
    return signals


def _csv_of(signals: list[Any]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    columns = ["appKey", "identifiableAttributes.email", "signalContent.signalType"]
    columns += ["signalContent.currency", "signalContent.orderId", "signalContent.effect"]
    writer.writerow(columns)
    for s in signals:
        content = s["signalContent"]
        writer.writerow(
            [
                s["appKey"],
                s["identifiableAttributes"]["email"],
                content["signalType"],
                content.get("currency", ""),
                content["orderId"],
                content.get("effect", ""),
            ]
        )
    return out.getvalue().encode()


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("orders.ndjson", ndjson(*_mixed_signals())),
        ("orders.json", b"[\n" + b",\n".join(map(orjson.dumps, _mixed_signals())) + b"\n]\n"),
        ("orders.csv", _csv_of(_mixed_signals())),
    ],
)
def test_validation_over_several_processes_stores_what_the_single_pass_does(
    user: Any,
    app_key: Any,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    name: str,
    content: bytes,
) -> None:
    make_app_key(key="other-registered-key", account=app_key.account)
    single = _snapshot(validated(user, app_key, content, name))

    settings.SIGNALS_PARALLEL_MIN_BYTES = 0
    settings.SIGNALS_VALIDATION_WORKERS = 2
    # The reader is a child process: what it calls is written to a file to be seen here.
    calls = tmp_path / "calls"
    monkeypatch.setattr(validate_module, "_stitch", _recorded(validate_module._stitch, calls))
    parallel_import = create(user, app_key, content, name)
    validation.import_validate(import_id=parallel_import.pk)
    parallel = _snapshot(parallel_import)

    recorded = calls.read_text().splitlines()
    assert "_stitch" in recorded, "the file was not split over processes"
    assert parallel == single
    assert single["totals"][:3] == (300, 180, 120)
    assert {f[4] for f in single["findings"]} >= {"required", "enum", "unregistered_app_key"}
    unregistered = [f[0] for f in single["findings"] if f[4] == "unregistered_app_key"]
    # Signals 5, 15... miss their currency too: rejected anyway, the appKey still named.
    assert unregistered == sorted([*range(3, 300, 10), *range(5, 300, 10)])
    assert len(single["fixes"]) == 2


def test_a_clean_file_is_not_read_a_second_time(
    user: Any, app_key: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    calls = tmp_path / "calls"
    monkeypatch.setattr(
        validate_module, "validate_records", _recorded(validate_module.validate_records, calls)
    )
    monkeypatch.setattr(reading, "open_signal_file", _recorded(reading.open_signal_file, calls))
    signal_import = validated(user, app_key, ndjson(*(order(n) for n in range(50))))
    assert signal_import.valid == 50
    # Opened to tell its format, read once by the validator, not again by the follow-up.
    assert calls.read_text().splitlines() == ["open_signal_file", "validate_records"]


def _recorded(function: Any, calls: Path) -> Any:
    """`function`, writing its name to `calls` at each call (from any process)."""

    def recorded(*args: Any, **kwargs: Any) -> Any:
        with calls.open("a") as out:
            out.write(function.__name__ + "\n")
        return function(*args, **kwargs)

    return recorded


@pytest.mark.parametrize(
    ("line", "others"),
    [
        # Escapes in the key or in its value: the validator counts decoded values.
        (
            b'{"app\\u004bey": "stranger", "identifiableAttributes": {"email": "a@b.c"}, '
            b'"signalContent": {"signalType": "order", "currency": "USD", "orderId": "o"}}',
            1,
        ),
        (
            b'{"appKey": "strange\\u0072", "identifiableAttributes": {"email": "a@b.c"}, '
            b'"signalContent": {"signalType": "order", "currency": "USD", "orderId": "o"}}',
            1,
        ),
        (
            b'{"appKey": "shop-ke\\u0079", "identifiableAttributes": {"email": "a@b.c"}, '
            b'"signalContent": {"signalType": "order", "currency": "USD", "orderId": "o"}}',
            0,
        ),
        # Not clean (no currency), judged by the engine: counted there too.
        (
            b'{"appKey": "stranger", "identifiableAttributes": {"email": "a@b.c"}, '
            b'"signalContent": {"signalType": "order", "orderId": "o"}}',
            1,
        ),
        (
            b'{"signal": {"appKey": "stranger", "identifiableAttributes": {"email": "a@b.c"}, '
            b'"signalContent": {"signalType": "order", "currency": "USD", "orderId": "o"}}}',
            1,
        ),
        # A blank key or one that is not a string names no key (the engine's errors).
        (
            b'{"appKey": "  ", "identifiableAttributes": {"email": "a@b.c"}, '
            b'"signalContent": {"signalType": "order", "currency": "USD", "orderId": "o"}}',
            0,
        ),
        (b'{"appKey": 42}', 0),
    ],
)
@pytest.mark.parametrize("workers", [1, 2])
def test_the_validator_counts_the_signals_naming_another_app_key(
    line: bytes, others: int, workers: int, tmp_path: Path
) -> None:
    """What tells the follow-up pass whether it must look at every record's app key: a
    miss here would send a signal under the wrong account's API key."""
    path = tmp_path / "f.ndjson"
    path.write_bytes(ndjson(*(order(n) for n in range(30))) + line + b"\n" + ndjson(order(31)))
    options = validate_module.Options(app_keys=frozenset({"shop-key"}))
    summary = validate_module.validate_file(path, options, workers=workers, parallel_min_bytes=0)
    assert summary.other_app_keys == others
    assert validate_module.validate_file(path, workers=workers).other_app_keys == 0


def test_the_validator_counts_other_app_keys_in_csv(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    rows = [
        "appKey,identifiableAttributes.email,signalContent.signalType,"
        "signalContent.currency,signalContent.orderId",
        "shop-key,a@b.c,order,USD,o1",
        "stranger,a@b.c,order,USD,o2",
        "shop-key,a@b.c,order,,o3",
        "stranger,a@b.c,order,,o4",
    ]
    path.write_text("\n".join(rows) + "\n")
    options = validate_module.Options(app_keys=frozenset({"shop-key"}))
    assert validate_module.validate_file(path, options).other_app_keys == 2


def test_an_escaped_unregistered_app_key_is_still_an_error(user: Any, app_key: Any) -> None:
    line = (
        b'{"app\\u004bey": "nobody-knows-me", "identifiableAttributes": {"email": "a@b.c"}, '
        b'"signalContent": {"signalType": "order", "currency": "USD", "orderId": "o"}}\n'
    )
    signal_import = validated(user, app_key, ndjson(order(0)) + line)
    assert (signal_import.valid, signal_import.rejected) == (1, 1)
    finding = ImportFinding.objects.get(signal_import=signal_import)
    assert (finding.signal, finding.code) == (1, "unregistered_app_key")


@pytest.mark.django_db
def test_findings_are_analyzed_after_a_large_bulk_insert_on_postgresql() -> None:
    """Fresh statistics before the preview's first GROUP BY / ROW_NUMBER() (PostgreSQL
    plans them from an empty table's statistics otherwise); small imports skip it. Run on
    PostgreSQL: the statistics' own table says ANALYZE ran."""
    require(connection.vendor == "postgresql", "PostgreSQL (DATABASE_URL=postgres://...)")
    with CaptureQueriesContext(connection) as small:
        validation._refresh_preview_statistics(validation.ANALYZE_MIN_FINDINGS - 1)
    assert small.captured_queries == []
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT analyze_count FROM pg_stat_user_tables WHERE relname = %s",
            ["signals_app_importfinding"],
        )
        before = cursor.fetchone()[0]
    validation._refresh_preview_statistics(validation.ANALYZE_MIN_FINDINGS)
    deadline = time.monotonic() + 10  # the statistics collector reports with a delay
    while True:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_stat_clear_snapshot()")
            cursor.execute(
                "SELECT analyze_count FROM pg_stat_user_tables WHERE relname = %s",
                ["signals_app_importfinding"],
            )
            after = cursor.fetchone()[0]
        if after > before or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert after == before + 1
