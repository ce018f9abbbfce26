"""Web pages of signal imports: upload, the import page (progress, preview, sending, ledger,
audit), downloads and the history. HTTP only: every workflow is a service call.

Every query starts from `_imports_for(request.user)`, so a marketer can never reach another
user's import (404, as for an id that does not exist); ops and admins see them all.
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import wraps
from typing import Any, Concatenate, ParamSpec
from urllib.parse import quote
from uuid import UUID

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import Count, Q, QuerySet, Sum
from django.db.models.functions import TruncDate
from django.http import HttpRequest, HttpResponse, HttpResponseBase, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseClientRefresh
from django_htmx.middleware import HtmxDetails

from connectadmin.models import AttentiveAccount
from signals_app import charts
from signals_app.access import (
    can_import,
    can_resend,
    can_send_live,
    sees_all_imports,
)
from signals_app.forms import SORTS, HistoryFilterForm, ImportUploadForm
from signals_app.json_markup import Marked, json_with_marks
from signals_app.models import (
    AuditEvent,
    BatchState,
    Destination,
    ImportBatch,
    ImportMode,
    ImportStatus,
    SignalImport,
)
from signals_app.outcome import import_outcome
from signals_app.services import attentive_sending, downloads, fixes, preview, sending, upload
from signals_app.services.attentive_events import DEFAULT_EVENT_TYPES, event_types
from signals_app.services.errors import ImportRefused
from signals_app.uploads import UploadSizeCap, human_size, install_upload_cap
from signals_app.validation.readers import UnreadableFile
from signals_app.validation.schema import SIGNAL_TYPES

P = ParamSpec("P")

RUNNING = {ImportStatus.UPLOADED, ImportStatus.VALIDATING, ImportStatus.SENDING}
NOT_PREVIEWABLE = {ImportStatus.UPLOADED, ImportStatus.VALIDATING, ImportStatus.UNREADABLE}
FINAL_BATCH_STATES = [BatchState.SENT, BatchState.FAILED, BatchState.UNKNOWN]
REJECTED_PAGE_SIZE = 20
LEDGER_PAGE_SIZE = 100  # batches per page of the ledger (an import has up to thousands)
ATTENTION_STATES = [BatchState.FAILED, BatchState.UNKNOWN]


class HtmxHttpRequest(HttpRequest):
    """A request past `login_required`, as django-htmx's middleware leaves it."""

    htmx: HtmxDetails
    user: User


# --- access --------------------------------------------------------------------------


IMPORTS_LISTED = 100  # the latest imports the working list sorts; History has them all


def _imports_for(user: Any) -> QuerySet[SignalImport]:
    """The imports this user may see: all for ops and admins, their own for marketers."""
    if sees_all_imports(user):
        return SignalImport.objects.all()
    return SignalImport.objects.filter(created_by=user)


@login_required
@require_GET
def imports_list(request: HtmxHttpRequest) -> HttpResponse:
    """The working list: what waits for someone (ready to send, needs attention, failed),
    what is under way, then the latest of the rest. History has every import, with filters."""
    recent = list(
        _imports_for(request.user).select_related("app_key__account", "created_by")[:IMPORTS_LISTED]
    )
    groups: dict[str, list[SignalImport]] = {"waiting": [], "running": [], "done": []}
    for signal_import in recent:
        outcome = signal_import.outcome
        if outcome.tone in ("ready", "warn", "bad"):
            groups["waiting"].append(signal_import)
        elif outcome.tone == "busy":
            groups["running"].append(signal_import)
        else:
            groups["done"].append(signal_import)
    context = {
        "groups": groups,
        "can_import": can_import(request.user),
        "sees_all": sees_all_imports(request.user),
        "limit": IMPORTS_LISTED,
        "more": len(recent) == IMPORTS_LISTED,
    }
    return TemplateResponse(request, "signals/imports.html", context)


def _import_or_404(request: HtmxHttpRequest, public_id: UUID) -> SignalImport:
    queryset = _imports_for(request.user).select_related(
        "created_by", "app_key__account", "promoted_from"
    )
    return get_object_or_404(queryset, public_id=public_id)


def importer_required(
    view: Callable[Concatenate[Any, P], HttpResponse],
) -> Callable[Concatenate[Any, P], HttpResponse]:
    """Marketers and admins upload and send; ops review (403 for them here)."""

    @wraps(view)
    def wrapper(request: HtmxHttpRequest, *args: P.args, **kwargs: P.kwargs) -> HttpResponse:
        if not can_import(request.user):
            raise PermissionDenied("Only marketers and admins upload and send imports.")
        return view(request, *args, **kwargs)

    return wrapper


# --- upload --------------------------------------------------------------------------


@csrf_exempt  # CSRF is checked by _import_new, after the size cap is installed
@login_required
@importer_required
def import_new(request: HtmxHttpRequest) -> HttpResponse:
    """Upload a file. The cap must be in place before anything reads the body."""
    cap = install_upload_cap(request)
    return _import_new(request, cap)


UNREADABLE_FILE_NAME = (
    "The file's name is not valid UTF-8, so the file could not be received. Rename it "
    "(letters, digits, - and _ are safest) and upload it again."
)


@csrf_protect
def _import_new(request: HtmxHttpRequest, cap: UploadSizeCap) -> HttpResponse:
    live_allowed = can_send_live(request.user)
    status = 200
    if request.method == "POST":
        form = ImportUploadForm(request.POST, request.FILES, can_send_live=live_allowed)
        if cap.refusal:
            form.is_valid()
            form.errors.clear()
            form.add_error("file", cap.refusal)
            status = 413
        elif cap.file_name_unreadable and "file" not in request.FILES:
            form.is_valid()
            form.errors.pop("file", None)
            form.add_error("file", UNREADABLE_FILE_NAME)
        elif form.is_valid():
            uploaded_file = form.cleaned_data["file"]
            try:
                signal_import = upload.import_create(
                    user=request.user,
                    app_key=form.cleaned_data["app_key"],
                    attentive_account=form.cleaned_data["attentive_account"],
                    mode=form.cleaned_data["mode"],
                    upload=uploaded_file,
                    original_name=uploaded_file.name or "upload",
                    idempotency_key=form.cleaned_data["idempotency_key"],
                )
            except ImportRefused as refused:
                form.add_error(None, str(refused))
            else:
                return redirect(_detail_url(signal_import))
        if form.errors:
            status = max(status, 400)
    else:
        form = ImportUploadForm(can_send_live=live_allowed)
    context = {
        "form": form,
        "can_send_live": live_allowed,
        "max_bytes": cap.limit,
        "max_size": human_size(cap.limit),
        "recent": _imports_for(request.user)
        .filter(created_by=request.user)
        .select_related("app_key")[:5],
    }
    return TemplateResponse(request, "signals/import_new.html", context, status=status)


# --- the import page -----------------------------------------------------------------


@dataclass(frozen=True)
class Progress:
    # "fixing" (writing the corrected file), "validating", "storing" (its findings), "sending"
    phase: str
    percent: int
    facts: list[tuple[str, str]]
    time_left: str | None


def _duration(seconds_float: float) -> str:
    seconds = max(round(seconds_float), 0)
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def _time_left(started: datetime | None, fraction: float) -> tuple[float, str | None]:
    """Seconds elapsed, and the time left at the rate so far (None until it can be told)."""
    if started is None:
        return 0.0, None
    elapsed = (timezone.now() - started).total_seconds()
    if fraction <= 0 or elapsed <= 0:
        return elapsed, None
    if fraction >= 1:
        return elapsed, "almost done"
    left = elapsed * (1 - fraction) / fraction
    return elapsed, "a moment" if left < 1 else _duration(left)


def _reading(
    signal_import: SignalImport, started_at: datetime | None
) -> tuple[float, float, str | None]:
    """(share of the file's bytes read, signals per second, time left) of a task reading
    the import's file since `started_at`."""
    size = signal_import.size_bytes
    fraction = min(signal_import.bytes_read / size, 1.0) if size else 0.0
    elapsed, left = _time_left(started_at, fraction)
    rate = signal_import.signals / elapsed if elapsed > 0 else 0.0
    return fraction, rate, left


def _progress(signal_import: SignalImport) -> Progress | None:
    if fixes.import_preparing(signal_import):
        # size_bytes is the size of the file being corrected until the copy is written.
        fraction, rate, left = _reading(signal_import, signal_import.created_at)
        facts = [
            ("Signals written", f"{signal_import.signals:,}"),
            ("Rate", f"{rate:,.0f} signals/s" if rate else "waiting for a worker…"),
        ]
        return Progress("fixing", int(fraction * 100), facts, left)
    storing = signal_import.validation_phase == "storing"
    if storing and signal_import.status == ImportStatus.VALIDATING:
        total, stored = signal_import.rows_to_store, signal_import.rows_stored
        fraction = stored / total if total else 1.0
        facts = [
            (
                f"{signal_import.unit.capitalize()}s read",
                f"{signal_import.signals:,}",
            ),
            ("Rows stored", f"{stored:,} of {total:,}"),
        ]
        return Progress("storing", int(fraction * 100), facts, None)
    if signal_import.status in (ImportStatus.UPLOADED, ImportStatus.VALIDATING):
        fraction, rate, left = _reading(signal_import, signal_import.validation_started_at)
        units = signal_import.unit + "s"
        facts = [
            (f"{units.capitalize()} read", f"{signal_import.signals:,}"),
            ("Rate", f"{rate:,.0f} {units}/s" if rate else "starting…"),
            # Not "rejected so far": the parts read in parallel tell it only at their end.
        ]
        if signal_import.status == ImportStatus.UPLOADED:
            facts[1] = ("Rate", "waiting for a worker…")
        return Progress("validating", int(fraction * 100), facts, left)
    if signal_import.status == ImportStatus.SENDING:
        total = signal_import.batches_total
        totals = ledger_totals(signal_import)  # counters and batches from one moment
        counts = {state: batches for state, (batches, _) in totals.items()}
        done = sum(counts.get(state, 0) for state in FINAL_BATCH_STATES)
        fraction = done / total if total else 0.0
        _elapsed, left = _time_left(signal_import.send_started_at, fraction)

        def signals(state: str) -> str:
            return f"{totals.get(state, (0, 0))[1]:,}"

        facts = [("Batches", f"{done:,} of {total:,}")]
        if signal_import.send_to_connect:
            facts += [
                (
                    "Signals accepted by Connect"
                    if signal_import.attentive_account_id is not None
                    else "Signals accepted",
                    signals(BatchState.SENT),
                ),
                ("Failed", signals(BatchState.FAILED)),
                ("Outcome unknown", signals(BatchState.UNKNOWN)),
            ]
        if signal_import.attentive_account_id is not None:
            facts += [
                ("Events accepted by Attentive", f"{signal_import.attentive_sent:,}"),
                ("Refused", f"{signal_import.attentive_failed:,}"),
                ("Of unknown outcome", f"{signal_import.attentive_unknown:,}"),
            ]
        states = ", ".join(
            f"{counts[state]:,} {label.lower()}"
            for state, label in BatchState.choices
            if counts.get(state)
        )
        facts.append(("Batches by state", states or "none yet"))
        paused = signal_import.app_key.account.send_paused_until if signal_import.app_key else None
        if paused is not None and paused > timezone.now():
            facts.append(
                (
                    "Connect asked to wait",
                    f"no batch is sent before {paused:%H:%M:%S} UTC; sending then resumes "
                    "by itself",
                )
            )
        if signal_import.cancel_requested:
            left = "stopping once the batches on their way are answered"
        return Progress("sending", int(fraction * 100), facts, left)
    return None


@dataclass(frozen=True)
class RejectedView:
    signal: int
    line: int | None
    html: Any
    raw: str
    findings: list[Marked]
    unplaced: list[Marked]


def _rejected_view(entry: preview.RejectedEntry) -> RejectedView:
    findings = [
        Marked(path=f.path, severity=f.severity, code=f.code, message=f.message)
        for f in entry.findings
    ]
    if entry.record is None:
        return RejectedView(entry.signal, entry.line, "", entry.raw, findings, [])
    html, unplaced = json_with_marks(entry.record, findings)
    return RejectedView(entry.signal, entry.line, html, "", findings, unplaced)


def _int_or_none(value: str | None) -> int | None:
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        return None


@login_required
@require_GET
def import_detail(request: HtmxHttpRequest, public_id: UUID) -> HttpResponse:
    signal_import = _import_or_404(request, public_id)
    target = request.htmx.target if request.htmx else None
    progress = _progress(signal_import)
    if target == "progress" and progress is None:
        # The phase changed (validated, sent, cancelled): show the whole page anew.
        return HttpResponseClientRefresh()

    context: dict[str, Any] = {
        "imp": signal_import,
        "progress": progress,
        "can_import": can_import(request.user),
        "can_send_live": can_send_live(request.user),
        "can_resend": can_resend(request.user),
        "outcome": import_outcome(signal_import, can_resend=can_resend(request.user)),
        "is_owner_or_ops": signal_import.created_by_id == request.user.pk
        or sees_all_imports(request.user),
        # Said in place of the send and promote forms, which the service would refuse.
        "key_refusal": upload.app_key_refusal(signal_import.app_key),
        **_unit_words(signal_import),
    }
    template_name = "signals/import_detail.html"
    if target == "progress":
        return TemplateResponse(request, template_name + "#progress", context)

    if signal_import.status not in NOT_PREVIEWABLE:
        context.update(_preview_context(request, signal_import))
        if target == "rejected":
            return TemplateResponse(request, template_name + "#rejected", context)
        context.update(_destinations_context(signal_import))

    context.update(_ledger_context(request, signal_import))
    context.update(
        {
            "audit": AuditEvent.objects.filter(signal_import=signal_import).select_related("actor"),
            "promotions": list(signal_import.promotions.all()),
        }
    )
    return TemplateResponse(request, template_name, context)


def batch_counts(signal_import: SignalImport) -> dict[str, int]:
    """Batches per ledger state (one GROUP BY over the import's batches)."""
    return {state: batches for state, (batches, _) in ledger_totals(signal_import).items()}


def ledger_totals(signal_import: SignalImport) -> dict[str, tuple[int, int]]:
    """(batches, Connect signals) per ledger state, in one GROUP BY: the figures of a
    refresh all come from the same moment of the ledger. Attentive's batches count as
    batches; their events are the import's attentive_* counters."""
    rows = (
        signal_import.batches.order_by()
        .values("state")
        .annotate(n=Count("id"), signals=Sum("size", filter=Q(destination=Destination.CONNECT)))
        .values_list("state", "n", "signals")
    )
    return {state: (n, signals or 0) for state, n, signals in rows}


def _ledger_context(request: HtmxHttpRequest, signal_import: SignalImport) -> dict[str, Any]:
    """One page of the batch ledger, never with the batches' signalIds (up to 500 each):
    the failed and unknown batches first (what ops act on), then the others by number,
    paged with a keyset (`batches_after`, the last number shown)."""
    counts = batch_counts(signal_import)
    total = sum(counts.values())
    if not total:
        return {"batch_total": 0, "has_signal_ids": False}
    rows = signal_import.batches.defer("signal_ids").order_by("number")
    batches_after = _int_or_none(request.GET.get("batches_after"))
    attention: list[ImportBatch] = []
    attention_total = sum(counts.get(state, 0) for state in ATTENTION_STATES)
    if batches_after is None and attention_total:
        attention = list(rows.filter(state__in=ATTENTION_STATES)[:LEDGER_PAGE_SIZE])
    others = rows.exclude(state__in=ATTENTION_STATES)
    if batches_after is not None:
        others = others.filter(number__gt=batches_after)
    page = list(others[: LEDGER_PAGE_SIZE + 1])
    next_after = page[LEDGER_PAGE_SIZE - 1].number if len(page) > LEDGER_PAGE_SIZE else None
    groups: list[tuple[str, list[ImportBatch]]] = []
    if attention:
        shown = f"the first {len(attention)} of {attention_total:,}, "
        title = "Failed or of unknown outcome" + (
            f" ({shown}by number)" if attention_total > len(attention) else ""
        )
        groups.append((title, attention))
        if page:
            groups.append(("The other batches", page[:LEDGER_PAGE_SIZE]))
    elif page:
        groups.append(("", page[:LEDGER_PAGE_SIZE]))
    return {
        "batch_total": total,
        "ledger_groups": groups,
        "batch_counts": sorted(counts.items()),
        "attention_batches": attention,
        "attention_total": attention_total,
        "batches": page[:LEDGER_PAGE_SIZE],
        "batches_after": batches_after,
        "batches_next": next_after,
        # Connect's accepted signals each have a signalId (Attentive's events have none).
        "has_signal_ids": signal_import.batches.filter(
            state=BatchState.SENT, destination=Destination.CONNECT
        ).exists(),
    }


def _preview_context(request: HtmxHttpRequest, signal_import: SignalImport) -> dict[str, Any]:
    source = signal_import.validation_source
    filters = {
        "path": request.GET.get("path") or None,
        "code": request.GET.get("code") or None,
        "severity": request.GET.get("severity") or None,
    }
    after = _int_or_none(request.GET.get("after"))
    page = preview.import_rejected_page(
        source,
        after=after,
        limit=REJECTED_PAGE_SIZE,
        path=filters["path"],
        code=filters["code"],
        severity=filters["severity"],
    )
    problems = list(preview.import_problem_table(source))
    fix_suggestions: list[Any] = []
    if signal_import.status == ImportStatus.VALIDATED and not signal_import.promoted_from_id:
        fix_suggestions = list(fixes.import_fix_suggestions(source))
    next_query = None
    if page.next_after is not None:
        query = {k: v for k, v in filters.items() if v}
        query["after"] = str(page.next_after)
        next_query = "&".join(f"{k}={_quote(v)}" for k, v in query.items())
    first_query = "&".join(f"{k}={_quote(v)}" for k, v in filters.items() if v)
    return {
        "preview": True,
        "problems": problems,
        "paths": sorted({row.path for row in problems}),
        "codes": sorted({row.code for row in problems}),
        "filters": filters,
        "filtered": any(filters.values()),
        "after": after,
        "rejected_entries": [_rejected_view(entry) for entry in page.entries],
        "next_query": next_query,
        "first_query": first_query,
        "fixes": fix_suggestions,
    }


def _unit_words(signal_import: SignalImport) -> dict[str, str]:
    """What the file's records are called on a page: events (a file of Attentive custom
    events) or signals."""
    return {"unit": signal_import.unit, "units": signal_import.unit + "s"}


def _destinations_context(signal_import: SignalImport) -> dict[str, Any]:
    """What the send form offers beyond Connect: the Attentive accounts, the event name of
    each signal type (editable), and the import's first valid signal as Attentive would
    receive it."""
    accounts = list(AttentiveAccount.objects.order_by("name"))
    # The send form (validated) and the promote form (a completed test) offer them.
    offered = signal_import.status == ImportStatus.VALIDATED or (
        signal_import.status == ImportStatus.COMPLETED and not signal_import.is_live
    )
    if not accounts or not offered or not signal_import.valid:
        return {"attentive_accounts": accounts}
    if signal_import.holds_events:
        # Events go as written: their warnings are the preview's findings already.
        preview = attentive_sending.preview_events(signal_import, {})
        return {
            "attentive_accounts": accounts,
            "attentive_sample": _pretty(preview.sample),
        }
    types = event_types(signal_import.attentive_event_types)
    # The first signals mapped and checked: what Attentive would refuse or warn about.
    preview = attentive_sending.preview_events(signal_import, types)
    return {
        "attentive_accounts": accounts,
        "event_type_rows": [
            (name, SIGNAL_TYPES[name].label, types[name]) for name in DEFAULT_EVENT_TYPES
        ],
        "attentive_sample": _pretty(preview.sample),
        "attentive_preview": preview,
        "attentive_scanned_all": preview.scanned >= signal_import.valid,
    }


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False) if value is not None else ""


def _quote(value: str) -> str:
    return quote(value, safe="")


def _detail_url(signal_import: SignalImport) -> str:
    return reverse("signals:import_detail", args=[signal_import.public_id])


# --- actions (POST, then back to the page) ---------------------------------------------


@login_required
@require_POST
@importer_required
def import_send(request: HtmxHttpRequest, public_id: UUID) -> HttpResponse:
    signal_import = _import_or_404(request, public_id)
    if signal_import.is_live and not can_send_live(request.user):
        raise PermissionDenied("Sending live needs the “send live” permission.")
    try:
        sent = sending.import_send(
            signal_import=signal_import,
            user=request.user,
            confirm_skip=_int_or_none(request.POST.get("confirm_skip")),
            destinations=_destinations(request),
        )
    except ImportRefused as refused:
        messages.error(request, str(refused))
    else:
        mode = "live" if sent.is_live else "as a test"
        where = " and ".join(
            name
            for name, chosen in (
                ("Connect", sent.send_to_connect),
                (f"Attentive ({sent.attentive_account})", sent.attentive_account_id),
            )
            if chosen
        )
        messages.success(request, f"Sending {sent.valid:,} {sent.unit}s {mode} to {where}.")
    return redirect(_detail_url(signal_import))


def _destinations(request: HtmxHttpRequest) -> sending.Destinations | None:
    """The send form's choice of destinations (None from a form without the choice)."""
    post = request.POST
    if "destinations" not in post:
        return None
    account_id = _int_or_none(post.get("attentive_account"))
    account = None
    if account_id is not None:
        account = AttentiveAccount.objects.filter(pk=account_id).first()
        if account is None:
            raise ImportRefused("That Attentive account no longer exists; choose another.")
    types = {
        name: post[f"event_type_{name}"].strip()
        for name in DEFAULT_EVENT_TYPES
        if post.get(f"event_type_{name}", "").strip()
        and post[f"event_type_{name}"].strip() != DEFAULT_EVENT_TYPES[name]
    }
    return sending.Destinations(
        connect=post.get("to_connect") == "1", attentive=account, event_types=types
    )


@login_required
@require_POST
@importer_required
def import_promote(request: HtmxHttpRequest, public_id: UUID) -> HttpResponse:
    signal_import = _import_or_404(request, public_id)
    if not can_send_live(request.user):
        raise PermissionDenied("Promoting to live needs the “send live” permission.")
    try:
        live = sending.import_promote(
            signal_import=signal_import,
            user=request.user,
            confirm_skip=_int_or_none(request.POST.get("confirm_skip")),
            confirm_incomplete=request.POST.get("confirm_incomplete") == "1",
            destinations=_destinations(request),
        )
    except ImportRefused as refused:
        messages.error(request, str(refused))
        return redirect(_detail_url(signal_import))
    messages.success(request, "Promoted to live: the same validated signals are being sent live.")
    return redirect(_detail_url(live))


@login_required
@require_POST
def import_cancel(request: HtmxHttpRequest, public_id: UUID) -> HttpResponse:
    signal_import = _import_or_404(request, public_id)
    if signal_import.created_by_id != request.user.pk and not sees_all_imports(request.user):
        raise PermissionDenied
    try:
        sending.import_cancel(signal_import=signal_import, user=request.user)
    except ImportRefused as refused:
        messages.error(request, str(refused))
    else:
        messages.info(
            request,
            "Cancelling: no new batch is sent; the batches already on their way are answered "
            "first.",
        )
    return redirect(_detail_url(signal_import))


@login_required
@require_POST
@importer_required
def import_fix(request: HtmxHttpRequest, public_id: UUID) -> HttpResponse:
    signal_import = _import_or_404(request, public_id)
    chosen = request.POST.getlist("fix")
    if not chosen:
        messages.error(request, "Tick at least one fix to apply.")
        return redirect(_detail_url(signal_import))
    try:
        fixed = fixes.import_apply_fixes(
            signal_import=signal_import, user=request.user, fixes=chosen
        )
    except ImportRefused as refused:
        messages.error(request, str(refused))
        return redirect(_detail_url(signal_import))
    messages.success(
        request, "Fixes applied: the corrected file is being written, then checked again."
    )
    return redirect(_detail_url(fixed))


@login_required
def batch_resend(request: HtmxHttpRequest, public_id: UUID, number: int) -> HttpResponse:
    """A failed batch is resent at once (Connect surely did not take it); one of unknown
    outcome may already be in Connect, so a page first says how to check, and the resend
    needs a confirmation and a reason, kept in the audit trail."""
    if not can_resend(request.user):
        raise PermissionDenied("Only ops and admins resend batches.")
    signal_import = _import_or_404(request, public_id)
    batch = get_object_or_404(ImportBatch, signal_import=signal_import, number=number)
    if batch.state not in (BatchState.UNKNOWN, BatchState.FAILED):
        messages.error(request, f"Batch {number} is {batch.get_state_display().lower()}.")
        return redirect(_detail_url(signal_import) + "#ledger")
    if signal_import.is_live and not can_send_live(request.user):
        raise PermissionDenied("Resending a live batch needs the “send live” permission.")
    reason = request.POST.get("reason", "").strip()
    problem = ""
    vendor = batch.get_destination_display().removeprefix("Acoustic ")
    if request.method == "POST" and batch.state == BatchState.UNKNOWN:
        if request.POST.get("confirm") != "1":
            problem = f"Tick the box to confirm that you checked {vendor}."
        elif not reason:
            problem = f"Say why the batch is resent (what you found in {vendor})."
    if request.method != "POST" or problem:
        context = {
            "imp": signal_import,
            "batch": batch,
            "sample": _batch_sample(signal_import, batch),
            "reason": reason,
            "problem": problem,
            "vendor": vendor,
            **_unit_words(signal_import),
        }
        return TemplateResponse(
            request, "signals/batch_resend.html", context, status=400 if problem else 200
        )
    try:
        sending.batch_resend(batch=batch, user=request.user, reason=reason)
    except ImportRefused as refused:
        messages.error(request, str(refused))
    else:
        messages.success(request, f"Batch {number} queued to be sent again.")
    return redirect(_detail_url(signal_import) + "#ledger")


def _batch_sample(signal_import: SignalImport, batch: ImportBatch) -> list[Any]:
    try:
        return downloads.batch_sample(signal_import, batch.first_signal, batch.last_signal)
    except (OSError, UnreadableFile):  # the file is gone or damaged: the page says so
        return []


# --- downloads -----------------------------------------------------------------------


def _download(chunks: Iterator[Any], content_type: str, filename: str) -> StreamingHttpResponse:
    response = StreamingHttpResponse(chunks, content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


def _stem(signal_import: SignalImport) -> str:
    return f"import-{str(signal_import.public_id)[:8]}"


@login_required
@require_GET
def download_errors(request: HtmxHttpRequest, public_id: UUID) -> HttpResponseBase:
    signal_import = _import_or_404(request, public_id)
    chunks = downloads.error_report_csv(signal_import.validation_source)
    return _download(chunks, "text/csv; charset=utf-8", f"{_stem(signal_import)}-errors.csv")


@login_required
@require_GET
def download_valid(request: HtmxHttpRequest, public_id: UUID) -> HttpResponseBase:
    signal_import = _import_or_404(request, public_id)
    chunks = downloads.valid_signals_ndjson(signal_import.validation_source)
    return _download(chunks, "application/x-ndjson", f"{_stem(signal_import)}-valid.ndjson")


def _signal_ids_csv(signal_import: SignalImport) -> Iterator[str]:
    """signal (index in the file), line (NDJSON and CSV), signalId: streamed in chunks."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["signal", "line", "signalId"])
    for n, (index, line, signal_id) in enumerate(
        sending.import_signal_ids_with_lines(signal_import), 1
    ):
        writer.writerow([index, "" if line is None else line, signal_id])
        if n % 1000 == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


@login_required
@require_GET
def download_signal_ids(request: HtmxHttpRequest, public_id: UUID) -> HttpResponseBase:
    signal_import = _import_or_404(request, public_id)
    return _download(
        _signal_ids_csv(signal_import),
        "text/csv; charset=utf-8",
        f"{_stem(signal_import)}-signal-ids.csv",
    )


# --- history -------------------------------------------------------------------------

HISTORY_PAGE_SIZE = 25
CHART_DAYS = 30


@login_required
@require_GET
def history(request: HtmxHttpRequest) -> HttpResponse:
    visible = _imports_for(request.user)
    users = (
        get_user_model()
        .objects.filter(signal_imports__isnull=False)
        .distinct()
        .order_by("username")
        if sees_all_imports(request.user)
        else None
    )
    form = HistoryFilterForm(request.GET or None, users=users)
    queryset = visible.select_related("created_by", "app_key", "attentive_account")
    sort = "-created"
    if form.is_bound and form.is_valid():
        data = form.cleaned_data
        if data.get("user"):
            queryset = queryset.filter(created_by=data["user"])
        if data.get("app_key"):
            queryset = queryset.filter(app_key=data["app_key"])
        if data.get("mode"):
            queryset = queryset.filter(mode=data["mode"])
        if data.get("status"):
            queryset = queryset.filter(status=data["status"])
        if data.get("since"):
            queryset = queryset.filter(created_at__date__gte=data["since"])
        if data.get("until"):
            queryset = queryset.filter(created_at__date__lte=data["until"])
        sort = data.get("sort") or sort
    field = SORTS[sort.lstrip("-")]
    direction = "-" if sort.startswith("-") else ""
    queryset = queryset.order_by(f"{direction}{field}", f"{direction}id")
    page = Paginator(queryset, HISTORY_PAGE_SIZE).get_page(request.GET.get("page"))

    context: dict[str, Any] = {
        "form": form,
        "page": page,
        "sort": sort,
        "columns": _sort_columns(request, sort),
        "query_without_page": _query(request, drop={"page"}),
        "filtered": form.is_bound and any(request.GET.get(k) for k in form.fields if k != "sort"),
        "sees_all": sees_all_imports(request.user),
        "can_import": can_import(request.user),
    }
    template_name = "signals/history.html"
    if request.htmx and request.htmx.target == "history-results":
        return TemplateResponse(request, template_name + "#results", context)
    context.update(_charts(visible))
    return TemplateResponse(request, template_name, context)


def _query(request: HtmxHttpRequest, *, drop: Iterable[str] = (), **changes: str) -> str:
    params = request.GET.copy()
    for key in drop:
        params.pop(key, None)
    for key, value in changes.items():
        params[key] = value
    encoded: str = params.urlencode()
    return encoded


def _sort_columns(request: HtmxHttpRequest, sort: str) -> dict[str, dict[str, str]]:
    """For each sortable column: the query that sorts by it (toggling) and its aria-sort."""
    columns = {}
    for key in SORTS:
        current = sort.lstrip("-") == key
        descending = sort.startswith("-")
        next_sort = key if current and descending else f"-{key}"
        if not current and key in ("file", "user", "app_key", "mode", "status"):
            next_sort = key  # text columns start A→Z
        aria = ("descending" if descending else "ascending") if current else "none"
        columns[key] = {"query": _query(request, drop={"page"}, sort=next_sort), "aria": aria}
    return columns


def _charts(visible: QuerySet[SignalImport]) -> dict[str, Any]:
    today = timezone.localdate()
    days = [today - timedelta(days=CHART_DAYS - 1 - i) for i in range(CHART_DAYS)]
    per_day: dict[tuple[date, str], int] = {}
    rows = (
        ImportBatch.objects.filter(
            signal_import__in=visible,
            state=BatchState.SENT,
            # Connect's signals: the same signals sent to Attentive too count once.
            destination=Destination.CONNECT,
            finished_at__date__gte=days[0],
        )
        .annotate(day=TruncDate("finished_at"))
        .values("day", "signal_import__mode")
        .annotate(n=Sum("size"))
    )
    for row in rows:
        per_day[(row["day"], row["signal_import__mode"])] = row["n"] or 0
    test = [per_day.get((day, ImportMode.TEST), 0) for day in days]
    live = [per_day.get((day, ImportMode.LIVE), 0) for day in days]

    causes: Counter[tuple[str, str]] = Counter()
    # Each file once: promoted imports reuse their source's findings, and a file uploaded
    # again (same name and size) counts by its latest upload only.
    seen: set[tuple[str, int]] = set()
    for name, size, counts in (
        visible.filter(promoted_from__isnull=True)
        .order_by("-created_at")
        .values_list("original_name", "size_bytes", "problem_counts")
    ):
        if (name, size) in seen:
            continue
        seen.add((name, size))
        for item in counts or []:
            if item.get("severity") == "error":
                causes[(str(item.get("path", "")), str(item.get("code", "")))] += int(
                    item.get("count", 0)
                )
    top_causes = [(path, code, n) for (path, code), n in causes.most_common(8)]
    return {
        "sent_total": {"test": sum(test), "live": sum(live)},
        "chart_days": charts.signals_per_day(days, test, live) if any(test) or any(live) else None,
        "causes": charts.bars(top_causes),
    }
