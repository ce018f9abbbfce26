"""Forms of the export pages. One form class per object serves the page and its field-by-
field checks (htmx posts the form as the user types; `check_only` keeps "required" quiet
for fields not filled yet)."""

from __future__ import annotations

import re
import zoneinfo
from datetime import datetime
from typing import Any

from django import forms
from django.http import QueryDict
from django.utils import timezone

from connectadmin.models import ConnectAccount
from exports_app import rules
from exports_app.models import ExportSchedule, Placement, Recurrence
from exports_app.services import jobs
from exports_app.services.schedules import ScheduleSpec

_SPLIT = re.compile(r"[\s,;]+")
ZONES = sorted(zoneinfo.available_timezones() - {"localtime", "Factory"})


def in_zone(moment: datetime, zone: zoneinfo.ZoneInfo) -> datetime:
    """The wall-clock time typed, in the zone chosen on the form (Django's field has read
    it in the server's zone)."""
    naive = timezone.make_naive(moment) if timezone.is_aware(moment) else moment
    return naive.replace(tzinfo=zone)


class KeyImportForm(forms.Form):
    private_key = forms.CharField(
        label="Private key (OpenSSH format)",
        widget=forms.Textarea(attrs={"rows": 6, "spellcheck": "false", "autocomplete": "off"}),
        help_text="The key already registered with Connect for this account's user. It is "
        "stored encrypted and never shown again.",
    )


def type_choices() -> list[tuple[str, list[tuple[str, str]]]]:
    return [(group, [(t, t) for t in types]) for group, types in rules.SIGNAL_GROUPS.items()]


class ExportFields(forms.Form):
    """What an export is, shared by a one-off export and a schedule."""

    account = forms.ModelChoiceField(
        queryset=ConnectAccount.objects.order_by("name"),
        empty_label="Choose the Connect account",
        error_messages={"required": "Choose the Connect account to export from."},
    )
    signal_types = forms.MultipleChoiceField(
        choices=type_choices,
        widget=forms.CheckboxSelectMultiple,
        error_messages={"required": "Choose at least one signal type."},
    )
    timezone = forms.ChoiceField(
        label="Time zone",
        choices=[(z, z) for z in ZONES],
        initial="UTC",
        help_text="Days and times of the range are this zone's.",
    )
    notifications = forms.CharField(
        label="E-mail Connect when it is done (optional)",
        required=False,
        widget=forms.TextInput(attrs={"placeholder": "ann@example.com, ops@example.com"}),
        help_text="Addresses separated by commas or spaces.",
    )
    placement = forms.ChoiceField(
        label="Where Connect puts the file",
        choices=Placement.choices,
        initial=Placement.DEFAULT,
        widget=forms.RadioSelect,
    )
    parent_folder = forms.CharField(
        label="Folder",
        required=False,
        initial=rules.PARENT_FOLDER_ROOT + "/",
        help_text="Under Export/Signals; letters, digits, spaces, - _ and /.",
    )
    naming_prefix = forms.CharField(label="File name prefix", required=False)

    def zone(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.cleaned_data.get("timezone") or "UTC")

    def clean_signal_types(self) -> list[str]:
        return self._checked(rules.check_signal_types, self.cleaned_data["signal_types"])

    def clean_notifications(self) -> list[str]:
        addresses = [a for a in _SPLIT.split(self.cleaned_data.get("notifications") or "") if a]
        return self._checked(rules.check_notifications, addresses)

    def placement_target(self) -> rules.Placement:
        data = self.cleaned_data
        return rules.check_placement(
            data.get("placement") or "default",
            data.get("parent_folder") or "",
            data.get("naming_prefix") or "",
            data.get("target_path") or "",
        )

    def _checked(self, check: Any, value: Any) -> Any:
        try:
            return check(value)
        except rules.Problem as problem:
            raise forms.ValidationError(problem.message) from None

    def _clean_placement(self) -> None:
        try:
            self.cleaned_data["target"] = self.placement_target()
        except rules.Problem as problem:
            self.add_error(problem.field if problem.field in self.fields else None, problem.message)


class ExportForm(ExportFields):
    """A one-off export: a name, and a range given as a window or two dates."""

    job_name = forms.CharField(
        label="Name",
        max_length=200,
        help_text="Unique for the account; Connect's Job monitoring shows it.",
    )
    range_mode = forms.ChoiceField(
        label="Time range",
        choices=[("window", "A window"), ("dates", "From – to")],
        initial="window",
        widget=forms.RadioSelect,
    )
    window = forms.ChoiceField(
        choices=list(rules.WINDOWS.items()), initial="yesterday", required=False
    )
    start = forms.DateTimeField(
        label="From",
        required=False,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
    )
    end = forms.DateTimeField(
        label="To",
        required=False,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
    )
    target_path = forms.CharField(
        label="Path and file name",
        required=False,
        help_text="Relative to your folder, ending in .csv, e.g. "
        "Behavior Signals/Order/Export.csv.",
    )
    # The name last suggested: while the name is still that one, it follows the choices.
    suggested = forms.CharField(required=False, widget=forms.HiddenInput)

    field_order = [
        "account", "job_name", "signal_types", "range_mode", "window", "start", "end",
        "timezone", "notifications", "placement", "parent_folder", "naming_prefix",
        "target_path",
    ]  # fmt: skip

    def __init__(self, *args: Any, check_only: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.check_only = check_only
        if not self.is_bound:
            name = rules.suggested_job_name([], "yesterday", timezone.localtime())
            self.initial.update(job_name=name, suggested=name)
        elif (
            check_only
            and isinstance(self.data, QueryDict)
            and self.data.get("job_name", "") in ("", self.data.get("suggested"))
        ):
            data = self.data.copy()
            window = data.get("window", "") if data.get("range_mode") != "dates" else ""
            name = rules.suggested_job_name(
                data.getlist("signal_types"), window, timezone.localtime()
            )
            data["job_name"] = data["suggested"] = name
            self.data = data

    def clean_job_name(self) -> str:
        return self._checked(rules.check_job_name, self.cleaned_data["job_name"])

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        zone = self.zone()
        if data.get("range_mode") == "dates":
            start, end = data.get("start"), data.get("end")
            if start is None and not self.check_only:
                self.add_error("start", "Give the start of the range.")
            if end is None and not self.check_only:
                self.add_error("end", "Give the end of the range.")
            if start is not None and end is not None:
                start, end = in_zone(start, zone), in_zone(end, zone)
                try:
                    rules.check_range(start, end)
                except rules.Problem as problem:
                    self.add_error("end", problem.message)
                data["range"] = (start, end)
        elif data.get("window"):
            data["range"] = rules.window_range(data["window"], timezone.now(), zone)
        elif not self.check_only:
            self.add_error("window", "Choose the window to export.")
        self._clean_placement()
        if self.check_only:  # as the user types: say nothing yet of fields still empty
            for name in list(self.errors):
                if name in self.fields and not self.data.get(self.add_prefix(name)):
                    del self.errors[name]
        return data

    def range_shown(self) -> str:
        """The range the export will cover, for the page ("" until it can be told)."""
        if not hasattr(self, "cleaned_data") or "range" not in self.cleaned_data:
            return ""
        start, end = self.cleaned_data["range"]
        return f"{start:%a %b %-d %Y %H:%M} to {end:%a %b %-d %Y %H:%M} ({self.zone().key})"

    def export_request(self) -> jobs.ExportRequest:
        """What the valid form asks Connect for (the page and export_signals submit it)."""
        data = self.cleaned_data
        start, end = data["range"]
        return jobs.ExportRequest(
            account=data["account"],
            job_name=data["job_name"],
            signal_types=data["signal_types"],
            start=start,
            end=end,
            window=data["window"] if data["range_mode"] == "window" else "",
            notifications=data["notifications"],
            placement=data["placement"],
            target=data["target"],
        )


class ScheduleForm(ExportFields):
    """Exports made on their own (see ExportSchedule)."""

    name = forms.CharField(label="Name", max_length=150)
    recurrence = forms.ChoiceField(
        label="Runs", choices=Recurrence.choices, initial=Recurrence.DAILY, widget=forms.RadioSelect
    )
    run_at = forms.DateTimeField(
        label="Date and time",
        required=False,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
    )
    time_of_day = forms.TimeField(
        label="At",
        required=False,
        initial="06:00",
        widget=forms.TimeInput(attrs={"type": "time"}, format="%H:%M"),
    )
    weekday = forms.TypedChoiceField(
        label="On",
        required=False,
        coerce=int,
        choices=[(i, d) for i, d in enumerate(
            ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
        )],
    )  # fmt: skip
    month_day = forms.TypedChoiceField(
        label="Day of the month",
        required=False,
        coerce=int,
        choices=[(d, str(d)) for d in range(1, 29)],
        help_text="1 to 28: every month has it.",
    )
    window = forms.ChoiceField(
        label="Each run exports", choices=list(rules.WINDOWS.items()), initial="yesterday"
    )

    field_order = [
        "account", "name", "signal_types", "recurrence", "run_at", "time_of_day", "weekday",
        "month_day", "timezone", "window", "notifications", "placement", "parent_folder",
        "naming_prefix",
    ]  # fmt: skip

    def __init__(self, *args: Any, check_only: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.check_only = check_only
        # A schedule writes a new file each run: an exact path would collide.
        placement = self.fields["placement"]
        assert isinstance(placement, forms.ChoiceField)
        placement.choices = [c for c in Placement.choices if c[0] != Placement.PATH]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        recurrence = data.get("recurrence")
        zone = self.zone()
        if recurrence == Recurrence.ONCE:
            run_at = data.get("run_at")
            if run_at is None:
                if not self.check_only:
                    self.add_error("run_at", "Give the date and time of the run.")
            else:
                run_at = in_zone(run_at, zone)
                if run_at <= timezone.now():
                    self.add_error("run_at", "That moment has passed; choose one to come.")
                data["run_at"] = run_at
        elif recurrence:
            if data.get("time_of_day") is None and not self.check_only:
                self.add_error("time_of_day", "Give the time of day of the runs.")
            if recurrence == Recurrence.WEEKLY and data.get("weekday") in (None, ""):
                self.add_error("weekday", "Choose the day of the week.")
            if recurrence == Recurrence.MONTHLY and data.get("month_day") in (None, ""):
                self.add_error("month_day", "Choose the day of the month.")
        self._clean_placement()
        if self.check_only:
            for name in list(self.errors):
                if name in self.fields and not self.data.get(self.add_prefix(name)):
                    del self.errors[name]
        return data

    def spec(self) -> ScheduleSpec:
        data = self.cleaned_data
        target = data["target"]
        return ScheduleSpec(
            account=data["account"],
            name=data["name"],
            signal_types=data["signal_types"],
            window=data["window"],
            recurrence=data["recurrence"],
            timezone=data["timezone"],
            run_at=data.get("run_at"),
            time_of_day=data.get("time_of_day"),
            weekday=data.get("weekday"),
            month_day=data.get("month_day"),
            notifications=tuple(data["notifications"]),
            placement=data["placement"],
            parent_folder=target.parent_folder,
            naming_prefix=target.naming_prefix,
        )

    @staticmethod
    def initial_of(schedule: ExportSchedule) -> dict[str, Any]:
        """The form's values for editing `schedule`."""
        zone = zoneinfo.ZoneInfo(schedule.timezone)
        return {
            "account": schedule.account_id,
            "name": schedule.name,
            "signal_types": schedule.signal_types,
            "recurrence": schedule.recurrence,
            "run_at": schedule.run_at.astimezone(zone).replace(tzinfo=None)
            if schedule.run_at
            else None,
            "time_of_day": schedule.time_of_day,
            "weekday": schedule.weekday,
            "month_day": schedule.month_day,
            "timezone": schedule.timezone,
            "window": schedule.window,
            "notifications": ", ".join(schedule.notifications),
            "placement": schedule.placement,
            "parent_folder": schedule.parent_folder,
            "naming_prefix": schedule.naming_prefix,
        }
