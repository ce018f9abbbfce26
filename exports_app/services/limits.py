"""Connect's daily export limits per account and UTC day (SPEC §7): 20 jobs, 2 million rows,
1 GB of output; "if any of these limits is reached, the export operation becomes
unavailable for the day". Counted from the jobs this app submitted and the files it
fetched, and, where the endpoint answers `exportUsage` (the sandbox), its own count,
whichever is higher (other tools may export from the same subscription)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta

from django.db.models import Q, Sum
from django.utils import timezone

from connectadmin.models import ConnectAccount
from exports_app import rules
from exports_app.models import ExportJob, JobStatus

# Jobs that Connect took (and so count): everything but refusals and skipped runs.
_COUNTED = Q(submitted_at__isnull=False) & ~Q(status__in=[JobStatus.REFUSED, JobStatus.SKIPPED])


@dataclass(frozen=True, slots=True)
class Usage:
    day: datetime  # the UTC day's start
    jobs: int
    rows: int
    bytes: int

    @property
    def resets_at(self) -> datetime:
        return self.day + timedelta(days=1)

    def gauges(self) -> list[tuple[str, int, int, str]]:
        """(what, used, limit, shown) for the page."""
        return [
            ("Jobs", self.jobs, rules.DAILY_JOBS, f"{self.jobs} of {rules.DAILY_JOBS}"),
            (
                "Rows",
                self.rows,
                rules.DAILY_ROWS,
                f"{self.rows:,} of {rules.DAILY_ROWS:,}",
            ),
            (
                "Output",
                self.bytes,
                rules.DAILY_BYTES,
                f"{self.bytes / 1e6:,.1f} MB of {rules.DAILY_BYTES / 1e9:.0f} GB",
            ),
        ]


def usage_of(account: ConnectAccount, *, now: datetime | None = None) -> Usage:
    now = now or timezone.now()
    day = datetime.combine(now.astimezone(UTC).date(), time(0), tzinfo=UTC)
    jobs = ExportJob.objects.filter(_COUNTED, account=account, submitted_at__gte=day)
    totals = jobs.aggregate(
        file_rows=Sum("file__rows", default=0),
        file_bytes=Sum("file__size_bytes", default=0),
        vendor_rows=Sum("vendor_rows", default=0),
        vendor_bytes=Sum("vendor_bytes", default=0),
    )
    return Usage(
        day=day,
        jobs=jobs.count(),
        rows=max(totals["file_rows"], totals["vendor_rows"]),
        bytes=max(totals["file_bytes"], totals["vendor_bytes"]),
    )


def with_vendor_count(usage: Usage, vendor: dict[str, object] | None) -> Usage:
    """The higher of ours and the endpoint's own count (`exportUsage`), when it gave one."""
    if not vendor:
        return usage

    def number(key: str) -> int:
        value = vendor.get(key)
        return int(value) if isinstance(value, int | float) else 0

    return Usage(
        day=usage.day,
        jobs=max(usage.jobs, number("jobs")),
        rows=max(usage.rows, number("rows")),
        bytes=max(usage.bytes, number("bytes")),
    )


def refusal(usage: Usage, *, now: datetime | None = None) -> str | None:
    """Why another job cannot run today, with when the limits reset; None when it can."""
    now = now or timezone.now()
    left = usage.resets_at - now
    hours, rest = divmod(int(left.total_seconds()), 3600)
    when = f"at 00:00 UTC, in {hours} h {rest // 60:02d} min"
    if usage.jobs >= rules.DAILY_JOBS:
        return (
            f"Connect allows {rules.DAILY_JOBS} export jobs a day and {usage.jobs} ran today "
            f"for this account; exports open again {when}."
        )
    if usage.rows >= rules.DAILY_ROWS:
        return (
            f"Today's exports of this account reached Connect's {rules.DAILY_ROWS:,} rows a "
            f"day ({usage.rows:,}); exports open again {when}."
        )
    if usage.bytes >= rules.DAILY_BYTES:
        return (
            f"Today's exports of this account reached Connect's 1 GB a day "
            f"({usage.bytes / 1e9:.2f} GB); exports open again {when}."
        )
    return None
