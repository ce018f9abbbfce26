"""Signal exports (SPEC §7–§8): the SSH keys that open each account's SFTP folder, the
pinned SFTP host keys, export jobs and their schedules, and the files fetched from SFTP.

An `ExportJob` is one `exportSignals` call and its file's journey: submitted to Connect,
watched until the file is on SFTP, fetched into the archive (`ExportFile`), which keeps
it after Connect deletes it (28 days). An `ExportSchedule` makes jobs on its own, through
django-celery-beat's database scheduler.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django_celery_beat.models import PeriodicTask

from connectadmin.fields import EncryptedTextField
from connectadmin.models import ConnectAccount

SSH_KEY_COMMENT = "Acoustic Connect key"


class SshKeyState(models.TextChoices):
    NEW = "new", "Not registered"  # generated or imported, not yet sent to Connect
    REGISTERED = "registered", "Registered, not yet used"  # Connect has it; no logon yet
    CURRENT = "current", "Current"  # logged in with: what fetching uses
    RETIRED = "retired", "Retired"  # replaced by a newer key; its private part wiped
    FAILED = "failed", "Failed"  # registering or its first logon failed


class SshKey(models.Model):
    """An ed25519 key for an account's SFTP logon. The private key is encrypted at rest
    and never shown or logged; rotation keeps the old key current until the new one has
    logged in once."""

    account = models.ForeignKey(ConnectAccount, on_delete=models.CASCADE, related_name="ssh_keys")
    private_key = EncryptedTextField(blank=True)  # OpenSSH format; wiped once retired
    public_key = models.TextField()  # "ssh-ed25519 AAAA... Acoustic Connect key"
    fingerprint = models.CharField(max_length=100)  # SHA256:...
    state = models.CharField(max_length=12, choices=SshKeyState.choices, default=SshKeyState.NEW)
    imported = models.BooleanField(default=False)  # pasted by an admin, not generated here
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)
    registered_at = models.DateTimeField(null=True, blank=True)
    connect_answer = models.TextField(blank=True)  # what updatePublicKeyForConnectUser said
    first_logon_at = models.DateTimeField(null=True, blank=True)
    last_logon_at = models.DateTimeField(null=True, blank=True)
    retired_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["account", "-created_at", "-id"]
        verbose_name = "SSH key"
        constraints = [
            models.UniqueConstraint(
                fields=["account"],
                condition=models.Q(state="current"),
                name="one_current_ssh_key_per_account",
            )
        ]

    def __str__(self) -> str:
        return f"{self.fingerprint} ({self.get_state_display()})"


class HostKeyState(models.TextChoices):
    PENDING = "pending", "Waiting for approval"
    APPROVED = "approved", "Approved"
    SUPERSEDED = "superseded", "Replaced by an approved newer key"
    REJECTED = "rejected", "Rejected"


class HostKey(models.Model):
    """An SFTP server's host key, pinned: the first one seen waits for an admin's
    approval; a different one later is refused until approved, both fingerprints shown."""

    host = models.CharField(max_length=255)
    port = models.PositiveIntegerField()
    key_type = models.CharField(max_length=50)  # ssh-ed25519, ecdsa-sha2-nistp256, ...
    key_base64 = models.TextField()
    fingerprint = models.CharField(max_length=100)  # SHA256:...
    state = models.CharField(
        max_length=12, choices=HostKeyState.choices, default=HostKeyState.PENDING
    )
    first_seen_at = models.DateTimeField(auto_now_add=True)
    last_seen_at = models.DateTimeField(null=True, blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    decided_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["host", "port", "-first_seen_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["host", "port", "key_type", "key_base64"], name="one_row_per_host_key"
            ),
            models.UniqueConstraint(
                fields=["host", "port"],
                condition=models.Q(state="approved"),
                name="one_approved_key_per_host",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.host}:{self.port} {self.fingerprint} ({self.get_state_display()})"

    @property
    def line(self) -> str:
        """As in a known_hosts file."""
        where = self.host if self.port == 22 else f"[{self.host}]:{self.port}"
        return f"{where} {self.key_type} {self.key_base64}"


class Placement(models.TextChoices):
    DEFAULT = "default", "Connect's default folder"
    FOLDER = "folder", "A folder under Export/Signals, with a file name prefix"
    PATH = "path", "An exact path and file name"


class JobStatus(models.TextChoices):
    SUBMITTING = "submitting", "Submitting"
    QUEUED = "queued", "Queued at Connect"
    RUNNING = "running", "Running at Connect"
    READY = "ready", "Ready on SFTP"
    FETCHING = "fetching", "Fetching"
    FETCHED = "fetched", "Fetched"
    FAILED = "failed", "Failed"
    EXPIRED = "expired", "Expired on SFTP"
    REFUSED = "refused", "Refused"  # Connect (or a daily limit) said no: nothing runs
    SKIPPED = "skipped", "Skipped"  # a scheduled run that would pass a daily limit


class ExportFile(models.Model):
    """A file of an account's SFTP folder that the archive holds (or is fetching)."""

    account = models.ForeignKey(
        ConnectAccount, on_delete=models.PROTECT, related_name="export_files"
    )
    remote_path = models.CharField(max_length=1000)  # relative to the SFTP user's root
    remote_size = models.BigIntegerField(null=True, blank=True)
    remote_mtime = models.DateTimeField(null=True, blank=True)
    stored_name = models.CharField(max_length=100, unique=True)  # under EXPORTS_DIR
    size_bytes = models.BigIntegerField(default=0)
    sha256 = models.CharField(max_length=64, blank=True)
    rows = models.BigIntegerField(null=True, blank=True)
    rows_by_type = models.JSONField(default=dict, blank=True)
    types_counted = models.BooleanField(default=False)  # rows_by_type is complete
    fetched = models.BooleanField(default=False)  # complete and checked
    fetched_at = models.DateTimeField(null=True, blank=True)
    fetched_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    error = models.TextField(blank=True)
    keep_until = models.DateTimeField(null=True, blank=True)  # the archive's retention
    removed_at = models.DateTimeField(null=True, blank=True)  # taken out of the archive then

    class Meta:
        ordering = ["-fetched_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["account", "remote_path"], name="one_file_per_path")
        ]

    def __str__(self) -> str:
        return self.remote_path

    @property
    def name(self) -> str:
        return self.remote_path.rsplit("/", 1)[-1]


class Recurrence(models.TextChoices):
    ONCE = "once", "Once, at a date and time"
    DAILY = "daily", "Every day"
    WEEKLY = "weekly", "Every week"
    MONTHLY = "monthly", "Every month"


class ExportSchedule(models.Model):
    """Exports made on their own: once at a time, or daily / weekly / monthly at a time of
    a time zone, each over a window relative to its run (yesterday, the last 7 days, ...).
    Each run becomes an ExportJob; django-celery-beat's PeriodicTask fires it."""

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    account = models.ForeignKey(ConnectAccount, on_delete=models.PROTECT, related_name="schedules")
    name = models.CharField(max_length=150)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="export_schedules"
    )
    signal_types = models.JSONField(default=list)
    window = models.CharField(max_length=20)  # see rules.WINDOWS
    recurrence = models.CharField(max_length=10, choices=Recurrence.choices)
    run_at = models.DateTimeField(null=True, blank=True)  # ONCE
    time_of_day = models.TimeField(null=True, blank=True)  # DAILY / WEEKLY / MONTHLY
    weekday = models.PositiveSmallIntegerField(null=True, blank=True)  # 0 Monday .. 6 Sunday
    month_day = models.PositiveSmallIntegerField(null=True, blank=True)  # 1..28
    timezone = models.CharField(max_length=64, default="UTC")
    notifications = models.JSONField(default=list, blank=True)
    placement = models.CharField(max_length=10, choices=Placement.choices, default="default")
    parent_folder = models.CharField(max_length=500, blank=True)
    naming_prefix = models.CharField(max_length=100, blank=True)
    enabled = models.BooleanField(default=True)
    periodic_task = models.OneToOneField(
        PeriodicTask, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    last_run_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["account", "name"]

    def __str__(self) -> str:
        return self.name


class ExportJob(models.Model):
    """One exportSignals call and what became of its file."""

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    account = models.ForeignKey(
        ConnectAccount, on_delete=models.PROTECT, related_name="export_jobs"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="export_jobs",
    )
    schedule = models.ForeignKey(
        ExportSchedule, null=True, blank=True, on_delete=models.SET_NULL, related_name="jobs"
    )
    # The schedule's moment this run is for (None: run by hand): a moment runs once, even
    # when the scheduler fires it again after a restart.
    scheduled_for = models.DateTimeField(null=True, blank=True)
    job_name = models.CharField(max_length=200)
    signal_types = models.JSONField(default=list)
    timestamp_start = models.DateTimeField()
    timestamp_end = models.DateTimeField()
    window = models.CharField(max_length=20, blank=True)  # the preset it was made from
    notifications = models.JSONField(default=list, blank=True)
    placement = models.CharField(max_length=10, choices=Placement.choices, default="default")
    parent_folder = models.CharField(max_length=500, blank=True)
    naming_prefix = models.CharField(max_length=100, blank=True)
    target_path = models.CharField(max_length=1000, blank=True)

    status = models.CharField(
        max_length=12, choices=JobStatus.choices, default=JobStatus.SUBMITTING, db_index=True
    )
    error_message = models.TextField(blank=True)
    data_job_id = models.CharField(max_length=200, blank=True)
    remote_path = models.CharField(max_length=1000, blank=True)
    file_format = models.CharField(max_length=20, blank=True)
    vendor_status = models.CharField(max_length=30, blank=True)  # as dataJob said it
    vendor_rows = models.BigIntegerField(null=True, blank=True)
    vendor_bytes = models.BigIntegerField(null=True, blank=True)
    file = models.ForeignKey(
        ExportFile, null=True, blank=True, on_delete=models.SET_NULL, related_name="jobs"
    )

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    submitted_at = models.DateTimeField(null=True, blank=True)
    ready_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    polls = models.IntegerField(default=0)
    next_poll_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["account", "-created_at"])]
        constraints = [
            models.UniqueConstraint(
                fields=["account", "job_name"], name="one_job_name_per_account"
            ),
            models.UniqueConstraint(
                fields=["schedule", "scheduled_for"], name="one_job_per_scheduled_moment"
            ),
        ]

    def __str__(self) -> str:
        return self.job_name
