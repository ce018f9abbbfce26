"""The audit trail of the whole product, for ops and admins: every recorded action, filtered
by who, what kind, which object and when, as a page and as CSV (safe to open in a
spreadsheet)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC, datetime, time
from typing import Any

from django import forms
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone
from django.views.decorators.http import require_GET

from signals_app.access import sees_all_imports
from signals_app.audit_words import describe
from signals_app.models import AuditEvent
from signals_app.services.downloads import spreadsheet_safe

KINDS = [
    ("", "Every kind"),
    ("import.", "Imports"),
    ("batch.", "Batches"),
    ("export.", "Exports"),
    ("auth.", "Sign-ins"),
    ("account.", "Accounts"),
    ("appkey.", "App keys"),
    ("user.", "Users"),
    ("ssh_key.", "SSH keys"),
    ("sftp.", "SFTP host keys"),
    ("alerts.", "Alerts"),
]


class AuditFilterForm(forms.Form):
    kind = forms.ChoiceField(label="Kind", choices=KINDS, required=False)
    who = forms.CharField(label="Who", required=False, max_length=150)
    start = forms.DateField(
        label="From", required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    end = forms.DateField(
        label="To", required=False, widget=forms.DateInput(attrs={"type": "date"})
    )

    def clean(self) -> dict[str, Any] | None:
        cleaned = super().clean()
        start, end = (cleaned or {}).get("start"), (cleaned or {}).get("end")
        if start and end and start > end:
            self.add_error("end", "This day is before the From day: no event could match.")
        return cleaned

    def events(self) -> QuerySet[AuditEvent]:
        """The events the filter asks for; none while it does not read right (every event
        listed under a filter that says otherwise would be a false answer)."""
        events = AuditEvent.objects.select_related("signal_import").order_by("-created_at", "-id")
        if self.is_bound and not self.is_valid():
            return events.none()
        if not self.is_bound:
            return events
        data = self.cleaned_data
        if data["kind"]:
            events = events.filter(action__startswith=data["kind"])
        if data["who"]:
            events = events.filter(actor_name__icontains=data["who"].strip())
        zone = timezone.get_current_timezone()
        if data["start"]:
            events = events.filter(created_at__gte=datetime.combine(data["start"], time(), zone))
        if data["end"]:
            events = events.filter(created_at__lt=datetime.combine(data["end"], time.max, zone))
        return events


def _ops_or_admin(request: HttpRequest) -> None:
    if not sees_all_imports(request.user):
        raise PermissionDenied("The audit trail is for ops and administrators.")


@login_required
@require_GET
def audit_list(request: HttpRequest) -> HttpResponse:
    _ops_or_admin(request)
    form = AuditFilterForm(request.GET or None)
    page = Paginator(form.events(), 50).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    context = {
        "form": form,
        "page": page,
        "rows": [(event, describe(event.action, event.detail)) for event in page.object_list],
        "query": query.urlencode(),
    }
    return TemplateResponse(request, "signals/audit.html", context)


@login_required
@require_GET
def audit_csv(request: HttpRequest) -> HttpResponse | StreamingHttpResponse:
    _ops_or_admin(request)
    form = AuditFilterForm(request.GET or None)
    if form.is_bound and not form.is_valid():
        problems = "; ".join(
            f"{form.fields[name].label}: {' '.join(map(str, errors))}"
            for name, errors in form.errors.items()
        )
        return HttpResponse(
            f"The filter does not read right, so nothing was exported. {problems}\n",
            status=400,
            content_type="text/plain; charset=utf-8",
        )
    events = form.events()
    response = StreamingHttpResponse(_csv_lines(events), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="connectadmin-audit.csv"'
    return response


def _csv_lines(events: QuerySet[AuditEvent]) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def line(cells: list[Any]) -> str:
        buffer.seek(0)
        buffer.truncate()
        writer.writerow([spreadsheet_safe(str(cell)) for cell in cells])
        return buffer.getvalue()

    yield line(["when (UTC)", "who", "action", "object", "object id", "address", "what"])
    for event in events.iterator(chunk_size=2000):
        yield line(
            [
                event.created_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"),
                event.actor_name or "connectadmin",
                event.action,
                event.object_type,
                event.object_id,
                event.ip_address or "",
                describe(event.action, event.detail),
            ]
        )
