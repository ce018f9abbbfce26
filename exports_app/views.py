"""Web pages of exports: the list with today's limits, the export form (checked as the user
types), a job's page (live), archived files (preview, download), an account's SFTP tree,
and the SFTP settings (SSH keys, host keys) for admins. HTTP only: every workflow is a
service call. Marketers see their own jobs; ops and admins all of them."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, Concatenate, ParamSpec
from uuid import UUID

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from connectadmin.models import ConnectAccount
from exports_app import rules
from exports_app.forms import ExportForm, KeyImportForm, ScheduleForm
from exports_app.models import (
    ExportFile,
    ExportJob,
    ExportSchedule,
    HostKey,
    HostKeyState,
    JobStatus,
    SshKey,
    SshKeyState,
)
from exports_app.services import (
    browsing,
    fetching,
    hostkeys,
    jobs,
    keys,
    limits,
    schedules,
)
from exports_app.sftp_client import SftpError
from signals_app.access import can_export, can_manage_sftp, sees_all_exports

P = ParamSpec("P")


def admin_required(
    view: Callable[Concatenate[Any, P], HttpResponse],
) -> Callable[Concatenate[Any, P], HttpResponse]:
    @wraps(view)
    def wrapper(request: HttpRequest, *args: P.args, **kwargs: P.kwargs) -> HttpResponse:
        if not can_manage_sftp(request.user):
            raise PermissionDenied("Only administrators manage SSH keys and SFTP host keys.")
        return view(request, *args, **kwargs)

    return wrapper


def exporter_required(
    view: Callable[Concatenate[Any, P], HttpResponse],
) -> Callable[Concatenate[Any, P], HttpResponse]:
    @wraps(view)
    def wrapper(request: HttpRequest, *args: P.args, **kwargs: P.kwargs) -> HttpResponse:
        if not can_export(request.user):
            raise PermissionDenied("Marketers and admins ask for exports; ops review them.")
        return view(request, *args, **kwargs)

    return wrapper


def _jobs_for(user: Any) -> QuerySet[ExportJob]:
    jobs_ = ExportJob.objects.select_related("account", "created_by", "file", "schedule")
    return jobs_ if sees_all_exports(user) else jobs_.filter(created_by=user)


RUNNING_JOBS = (JobStatus.SUBMITTING, JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.FETCHING)


# --- the exports page ------------------------------------------------------------------


@login_required
def exports_list(request: HttpRequest) -> HttpResponse:
    status = request.GET.get("status", "")
    account_id = request.GET.get("account", "")
    visible = _jobs_for(request.user)
    if status in JobStatus.values:
        visible = visible.filter(status=status)
    if account_id.isdigit():
        visible = visible.filter(account_id=int(account_id))
    page = Paginator(visible, 25).get_page(request.GET.get("page"))
    accounts = []
    for account in ConnectAccount.objects.order_by("name"):
        host, port = account.sftp_address
        accounts.append(
            {
                "account": account,
                "usage": limits.usage_of(account),
                "key": keys.current_key(account),
                "host_ok": HostKey.objects.filter(
                    host=host, port=port, state=HostKeyState.APPROVED
                ).exists(),
            }
        )
    context = {
        "page": page,
        "accounts": accounts,
        "statuses": JobStatus.choices,
        "filters": {"status": status, "account": account_id},
        "can_export": can_export(request.user),
        "can_manage_sftp": can_manage_sftp(request.user),
        "running": visible.filter(status__in=RUNNING_JOBS).exists(),
    }
    template = "exports/list.html"
    if getattr(request, "htmx", False):
        template += "#jobs"
    return TemplateResponse(request, template, context)


@login_required
@exporter_required
def export_new(request: HttpRequest) -> HttpResponse:
    checking = request.method == "POST" and request.POST.get("_check") == "1"
    if request.method == "POST":
        form = ExportForm(request.POST, check_only=checking)
        if form.is_valid() and not checking:
            try:
                job = jobs.export_submit(request=form.export_request(), user=request.user)
            except jobs.ExportRefused as refused:
                form.add_error(refused.field or None, refused.message)
            else:
                messages.success(
                    request,
                    f"Connect took the export: job {job.data_job_id}, file {job.remote_path}. "
                    "This page follows it until the file is fetched.",
                )
                return redirect("exports:job_detail", public_id=job.public_id)
    else:
        form = ExportForm()
    context = {"form": form, "groups": rules.SIGNAL_GROUPS, "checking": checking}
    template = "exports/new.html"
    if checking:
        template += "#export-form"
    status = 400 if request.method == "POST" and form.errors and not checking else 200
    return TemplateResponse(request, template, context, status=status)


def _job_or_404(request: HttpRequest, public_id: UUID) -> ExportJob:
    try:
        return _jobs_for(request.user).get(public_id=public_id)
    except ExportJob.DoesNotExist:
        raise Http404("No such export.") from None


@login_required
def job_detail(request: HttpRequest, public_id: UUID) -> HttpResponse:
    job = _job_or_404(request, public_id)
    context = {
        "job": job,
        # A fetched file's rows per type are counted just after: follow that too.
        "running": job.status in RUNNING_JOBS
        or bool(job.file and job.file.fetched and not job.file.types_counted),
        "steps": _steps(job),
        "window_label": rules.WINDOWS.get(job.window, job.window),
        "expires": browsing.expires_at(job.file) if job.file else None,
        "now": timezone.now(),
        "can_export": can_export(request.user),
        "chart": _type_rows(job.file),
    }
    template = "exports/job.html"
    if getattr(request, "htmx", False) and request.headers.get("HX-Target") == "job-state":
        template += "#job-state"
    return TemplateResponse(request, template, context)


_STEPS = (
    ("Asked Connect", (JobStatus.SUBMITTING,)),
    ("Connect writes the file", (JobStatus.QUEUED, JobStatus.RUNNING)),
    ("On SFTP", (JobStatus.READY,)),
    ("Fetched into the archive", (JobStatus.FETCHING,)),
)


def _steps(job: ExportJob) -> list[tuple[str, str, str]]:
    """The job's way as (step, label, "done" / "now" / "failed" / "todo")."""
    at = next((i for i, (_, states) in enumerate(_STEPS) if job.status in states), None)
    if job.status == JobStatus.FETCHED:
        at = len(_STEPS)
    elif at is None:  # stopped: failed, expired, refused, skipped
        reached = 3 if job.file_id else 2 if job.ready_at else 1 if job.submitted_at else 0
        return [
            (str(i), label, "done" if i < reached else "failed" if i == reached else "todo")
            for i, (label, _) in enumerate(_STEPS)
        ]
    return [
        (str(i), label, "done" if i < at else "now" if i == at else "todo")
        for i, (label, _) in enumerate(_STEPS)
    ]


def _type_rows(export_file: ExportFile | None) -> list[tuple[str, int, float]]:
    if export_file is None or not export_file.rows_by_type:
        return []
    top = max(export_file.rows_by_type.values()) or 1
    return [(t, n, n / top) for t, n in export_file.rows_by_type.items()]


@require_POST
@login_required
@exporter_required
def job_refetch(request: HttpRequest, public_id: UUID) -> HttpResponse:
    job = _job_or_404(request, public_id)
    if job.file is None or job.status != JobStatus.FAILED:
        messages.error(request, "Only a job whose file failed to arrive can be fetched again.")
    else:
        ExportJob.objects.filter(pk=job.pk).update(
            status=JobStatus.FETCHING, error_message="", finished_at=None
        )
        browsing.fetch_requested(
            account=job.account, remote_path=job.file.remote_path, user=request.user
        )
        messages.success(request, "Fetching the file again.")
    return redirect("exports:job_detail", public_id=job.public_id)


# --- schedules -----------------------------------------------------------------------


def _schedules_for(user: Any) -> QuerySet[ExportSchedule]:
    mine = ExportSchedule.objects.select_related("account", "created_by", "periodic_task")
    return mine if sees_all_exports(user) else mine.filter(created_by=user)


@login_required
def schedules_list(request: HttpRequest) -> HttpResponse:
    now = timezone.now()
    rows = []
    for schedule in _schedules_for(request.user).order_by("account__name", "name"):
        rows.append(
            {
                "schedule": schedule,
                "runs": schedules.describe(schedule),
                "next": schedules.next_moment(schedule, now),
                "last_job": schedule.jobs.order_by("-created_at").first(),
                "may_change": _may_change(request.user, schedule),
            }
        )
    context = {"rows": rows, "can_export": can_export(request.user)}
    return TemplateResponse(request, "exports/schedules.html", context)


def _may_change(user: Any, schedule: ExportSchedule) -> bool:
    return can_export(user) and (
        schedule.created_by_id == user.pk or can_manage_sftp(user)  # its owner, or an admin
    )


def _schedule_or_404(request: HttpRequest, public_id: UUID) -> ExportSchedule:
    schedule = _schedules_for(request.user).filter(public_id=public_id).first()
    if schedule is None:
        raise Http404("No such schedule.")
    if not _may_change(request.user, schedule):
        raise PermissionDenied("Only the schedule's owner or an administrator changes it.")
    return schedule


@login_required
@exporter_required
def schedule_new(request: HttpRequest) -> HttpResponse:
    return _schedule_form(request, None)


@login_required
@exporter_required
def schedule_edit(request: HttpRequest, public_id: UUID) -> HttpResponse:
    return _schedule_form(request, _schedule_or_404(request, public_id))


def _schedule_form(request: HttpRequest, schedule: ExportSchedule | None) -> HttpResponse:
    checking = request.method == "POST" and request.POST.get("_check") == "1"
    if request.method == "POST":
        form = ScheduleForm(request.POST, check_only=checking)
        if form.is_valid() and not checking:
            saved = schedules.schedule_save(spec=form.spec(), user=request.user, schedule=schedule)
            next_run = schedules.next_moment(saved, timezone.now())
            messages.success(
                request,
                f"Schedule {saved.name!r} saved: {schedules.describe(saved)}."
                + (
                    f" Next run {next_run:%a %b %-d, %H:%M} ({saved.timezone})." if next_run else ""
                ),
            )
            return redirect(reverse("exports:schedules") + f"#schedule-{saved.pk}")
    elif schedule is not None:
        form = ScheduleForm(initial=ScheduleForm.initial_of(schedule))
    else:
        form = ScheduleForm()
    context = {
        "form": form,
        "groups": rules.SIGNAL_GROUPS,
        "schedule": schedule,
        "action": reverse("exports:schedule_edit", args=[schedule.public_id])
        if schedule
        else reverse("exports:schedule_new"),
    }
    template = "exports/schedule_form.html"
    if checking:
        template += "#schedule-form"
    status = 400 if request.method == "POST" and form.errors and not checking else 200
    return TemplateResponse(request, template, context, status=status)


@require_POST
@login_required
@exporter_required
def schedule_action(request: HttpRequest, public_id: UUID, action: str) -> HttpResponse:
    schedule = _schedule_or_404(request, public_id)
    back = reverse("exports:schedules") + f"#schedule-{schedule.pk}"
    if action == "pause":
        schedules.schedule_pause(schedule=schedule, user=request.user)
        messages.success(request, f"{schedule.name!r} paused: it runs no more until resumed.")
    elif action == "resume":
        schedules.schedule_resume(schedule=schedule, user=request.user)
        next_run = schedules.next_moment(schedule, timezone.now())
        messages.success(
            request,
            f"{schedule.name!r} resumed."
            + (f" Next run {next_run:%a %b %-d, %H:%M} ({schedule.timezone})." if next_run else ""),
        )
    elif action == "delete":
        schedules.schedule_delete(schedule=schedule, user=request.user)
        messages.success(
            request, f"{schedule.name!r} deleted. The exports it made stay in the history."
        )
        return redirect("exports:schedules")
    elif action == "run":
        job = schedules.schedule_run(schedule_id=schedule.pk, by_hand=True, user=request.user)
        if job is None:
            messages.error(request, "The schedule could not run.")
        elif job.status in (JobStatus.REFUSED, JobStatus.SKIPPED, JobStatus.FAILED):
            messages.error(request, f"The run did not go to Connect: {job.error_message}")
            return redirect("exports:job_detail", public_id=job.public_id)
        else:
            messages.success(request, f"Running now: Connect took job {job.data_job_id}.")
            return redirect("exports:job_detail", public_id=job.public_id)
    else:
        raise Http404("No such action.")
    return redirect(back)


# --- archived files ------------------------------------------------------------------


def _file_or_404(request: HttpRequest, file_id: int) -> ExportFile:
    export_file = ExportFile.objects.select_related("account").filter(pk=file_id).first()
    if export_file is None:
        raise Http404("No such file.")
    if (
        not sees_all_exports(request.user)
        and not export_file.jobs.filter(created_by_id=request.user.pk).exists()
        and export_file.fetched_by_id != request.user.pk
    ):
        raise Http404("No such file.")
    return export_file


@login_required
def file_detail(request: HttpRequest, file_id: int) -> HttpResponse:
    export_file = _file_or_404(request, file_id)
    if not export_file.fetched:
        raise Http404("This file is not in the archive yet.")
    signal_type = request.GET.get("type", "")
    missing = not fetching.is_stored(export_file)  # the storage lost it
    shown = (
        browsing.Preview([], [], 0, True)
        if missing
        else browsing.preview(export_file, signal_type=signal_type)
    )
    context = {
        "file": export_file,
        "missing": missing,
        "preview": shown,
        "signal_type": signal_type,
        "types": sorted(export_file.rows_by_type),
        "chart": _type_rows(export_file),
        "expires": browsing.expires_at(export_file),
    }
    template = "exports/file.html"
    if getattr(request, "htmx", False):  # the facts (followed while types are counted) or rows
        template += "#facts" if request.headers.get("HX-Target") == "file-facts" else "#rows"
    return TemplateResponse(request, template, context)


@login_required
def file_download(request: HttpRequest, file_id: int) -> FileResponse:
    export_file = _file_or_404(request, file_id)
    if not export_file.fetched or not fetching.is_stored(export_file):
        raise Http404("This file is not in the archive.")
    return FileResponse(
        fetching.open_stored(export_file), as_attachment=True, filename=export_file.name
    )


# --- an account's SFTP tree ----------------------------------------------------------


@login_required
def browse(request: HttpRequest, account_id: int) -> HttpResponse:
    account = get_object_or_404(ConnectAccount, pk=account_id)
    error = ""
    days: list[browsing.Day] = []
    try:
        days = browsing.tree(account)
    except SftpError as exc:
        error = str(exc)
    context = {
        "account": account,
        "days": days,
        "error": error,
        "can_fetch": can_export(request.user) or sees_all_exports(request.user),
        "can_manage_sftp": can_manage_sftp(request.user),
    }
    return TemplateResponse(request, "exports/browse.html", context)


@require_POST
@login_required
def browse_fetch(request: HttpRequest, account_id: int) -> HttpResponse:
    if not (can_export(request.user) or sees_all_exports(request.user)):
        raise PermissionDenied("You may not fetch files.")
    account = get_object_or_404(ConnectAccount, pk=account_id)
    try:
        export_file = browsing.fetch_requested(
            account=account, remote_path=request.POST.get("path", ""), user=request.user
        )
    except SftpError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Fetching {export_file.name} into the archive.")
    return redirect("exports:browse", account_id=account.pk)


def _settings_url(account: ConnectAccount | None = None) -> str:
    url = reverse("exports:sftp_settings")
    return f"{url}#account-{account.pk}" if account is not None else url


@login_required
@admin_required
def sftp_settings(request: HttpRequest) -> HttpResponse:
    accounts = []
    for account in ConnectAccount.objects.order_by("name"):
        account_keys = list(account.ssh_keys.exclude(state=SshKeyState.RETIRED)[:10])
        host, port = account.sftp_address
        accounts.append(
            {
                "account": account,
                "host": host,
                "port": port,
                "current": next((k for k in account_keys if k.state == SshKeyState.CURRENT), None),
                "keys": account_keys,
                "retired": account.ssh_keys.filter(state=SshKeyState.RETIRED).count(),
                "host_keys": list(HostKey.objects.filter(host=host, port=port)),
                "import_form": KeyImportForm(prefix=f"a{account.pk}"),
            }
        )
    pending = HostKey.objects.filter(state=HostKeyState.PENDING).count()
    return TemplateResponse(
        request, "exports/sftp_settings.html", {"accounts": accounts, "pending": pending}
    )


@require_POST
@login_required
@admin_required
def key_generate(request: HttpRequest, account_id: int) -> HttpResponse:
    account = get_object_or_404(ConnectAccount, pk=account_id)
    key = keys.ssh_key_generate(account=account, user=request.user)
    messages.success(
        request,
        f"New key {key.fingerprint} for {account.name}. Register it with Connect, then test "
        "the SFTP logon.",
    )
    return redirect(_settings_url(account))


@require_POST
@login_required
@admin_required
def key_import(request: HttpRequest, account_id: int) -> HttpResponse:
    account = get_object_or_404(ConnectAccount, pk=account_id)
    form = KeyImportForm(request.POST, prefix=f"a{account.pk}")
    if form.is_valid():
        try:
            key = keys.ssh_key_import(
                account=account, user=request.user, private_key=form.cleaned_data["private_key"]
            )
        except keys.KeyRefused as refused:
            messages.error(request, str(refused))
        else:
            messages.success(
                request,
                f"Key {key.fingerprint} imported for {account.name}. Test the SFTP logon to "
                "make it current.",
            )
    else:
        messages.error(request, "Paste the private key to import.")
    return redirect(_settings_url(account))


@require_POST
@login_required
@admin_required
def key_register(request: HttpRequest, key_id: int) -> HttpResponse:
    key = get_object_or_404(SshKey.objects.select_related("account"), pk=key_id)
    try:
        keys.ssh_key_register(key=key, user=request.user)
    except keys.KeyRefused as refused:
        messages.error(request, str(refused))
    else:
        messages.success(
            request, f"Connect registered {key.fingerprint}. Test the SFTP logon next."
        )
    return redirect(_settings_url(key.account))


@require_POST
@login_required
@admin_required
def key_test(request: HttpRequest, key_id: int) -> HttpResponse:
    key = get_object_or_404(SshKey.objects.select_related("account"), pk=key_id)
    logon = keys.ssh_key_test_logon(key=key, user=request.user)
    (messages.success if logon.ok else messages.error)(request, logon.message)
    return redirect(_settings_url(key.account))


@require_POST
@login_required
@admin_required
def key_rotate(request: HttpRequest, account_id: int) -> HttpResponse:
    account = get_object_or_404(ConnectAccount, pk=account_id)
    new, logon = keys.ssh_key_rotate(account=account, user=request.user)
    if logon.ok:
        messages.success(
            request, f"Rotated: {new.fingerprint} is current; the previous key is retired."
        )
    else:
        messages.error(request, f"The rotation did not complete. {logon.message}")
    return redirect(_settings_url(account))


@require_POST
@login_required
@admin_required
def host_key_decide(request: HttpRequest, host_key_id: int, decision: str) -> HttpResponse:
    host_key = get_object_or_404(HostKey, pk=host_key_id)
    if decision == "approve":
        hostkeys.host_key_approve(host_key=host_key, user=request.user)
        messages.success(
            request, f"{host_key.host}:{host_key.port} approved: {host_key.fingerprint}."
        )
    elif decision == "reject":
        hostkeys.host_key_reject(host_key=host_key, user=request.user)
        messages.success(request, f"{host_key.fingerprint} rejected for {host_key.host}.")
    else:
        raise PermissionDenied("Approve or reject.")
    return redirect(reverse("exports:sftp_settings"))
