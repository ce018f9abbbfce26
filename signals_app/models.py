"""Signal imports: a file, its validation, and the durable ledger of its sending.

A `SignalImport` is one file sent (or to be sent) in one mode, test or live. Promoting a
tested import to live creates a second `SignalImport` that points at the first through
`promoted_from` and reuses its file and validation (`validation_source`).

The ledger (`ImportBatch`) is written before and after every call to Connect, so a task
re-run after a crash resumes from it and never resends an acknowledged batch (SPEC §6).
"""

from __future__ import annotations

import contextvars
import uuid
from typing import Any

from django.conf import settings
from django.db import models

from connectadmin.models import AppKey, AttentiveAccount
from signals_app.outcome import Outcome, import_outcome


class ImportMode(models.TextChoices):
    TEST = "test", "Test"
    LIVE = "live", "Live"


class ImportStatus(models.TextChoices):
    UPLOADED = "uploaded", "Uploaded"  # stored, validation queued
    VALIDATING = "validating", "Validating"
    VALIDATED = "validated", "Ready to send"  # preview available
    UNREADABLE = "unreadable", "Unreadable"  # the file could not be read at all
    SENDING = "sending", "Sending"
    COMPLETED = "completed", "Completed"  # every batch has a final state
    CANCELLED = "cancelled", "Cancelled"
    FAILED = "failed", "Failed"  # the task itself gave up (see error_message)


class ImportKind(models.TextChoices):
    """What the file holds (SPEC §6): Connect behavior signals, sent with an app key to
    Connect and/or as events to Attentive, or Attentive custom events, sent as written to
    an Attentive account (no app key then)."""

    SIGNALS = "signals", "Behavior signals for Acoustic Connect"
    EVENTS = "events", "Custom events for Attentive"


class SignalImport(models.Model):
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="signal_imports"
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    kind = models.CharField(max_length=7, choices=ImportKind.choices, default=ImportKind.SIGNALS)
    # Every import of signals has one; an import of Attentive events has none.
    app_key = models.ForeignKey(
        AppKey, null=True, blank=True, on_delete=models.PROTECT, related_name="imports"
    )
    mode = models.CharField(max_length=4, choices=ImportMode.choices, default=ImportMode.TEST)
    promoted_from = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="promotions"
    )
    status = models.CharField(
        max_length=12, choices=ImportStatus.choices, default=ImportStatus.UPLOADED, db_index=True
    )
    error_message = models.TextField(blank=True)

    # The file: shown under the client's name, stored under a generated one.
    original_name = models.CharField(max_length=255)
    stored_name = models.CharField(max_length=100, unique=True)
    size_bytes = models.BigIntegerField(default=0)
    file_format = models.CharField(max_length=20, blank=True)
    compressed = models.BooleanField(default=False)

    # Validation progress and totals (SPEC §4: rejected = at least one error).
    bytes_read = models.BigIntegerField(default=0)
    validation_started_at = models.DateTimeField(null=True, blank=True)
    validation_finished_at = models.DateTimeField(null=True, blank=True)
    signals = models.IntegerField(default=0)
    valid = models.IntegerField(default=0)
    rejected = models.IntegerField(default=0)
    errors = models.IntegerField(default=0)
    warnings = models.IntegerField(default=0)
    contact_key_only = models.IntegerField(default=0)
    # Counts per field and code: [{"path": ..., "code": ..., "severity": ..., "count": n}].
    problem_counts = models.JSONField(default=list, blank=True)
    # What the storage policy left out of the database (services.reading): the counts
    # above stay exact, the lists of findings and rejected records are shortened.
    findings_not_stored = models.IntegerField(default=0)
    records_not_stored = models.IntegerField(default=0)
    # Validation's progress once the file is read: the rows being stored.
    validation_phase = models.CharField(max_length=10, blank=True)
    rows_to_store = models.IntegerField(default=0)
    rows_stored = models.IntegerField(default=0)

    # The fixes the preview offers (see services.imports.FixSuggestion), found while
    # validating so the preview never has to read the file again.
    fix_suggestions = models.JSONField(default=list, blank=True)
    # A random token carried by the upload form: a double-clicked submit finds the import
    # the first click created instead of making a second one.
    # NULL, not "": the uniqueness per user only applies to imports that carry a token.
    idempotency_key = models.CharField(max_length=64, null=True, blank=True)  # noqa: DJ001

    # Sending.
    confirmed_skip = models.IntegerField(
        default=0, help_text="Rejected signals the sender confirmed to skip (live imports)."
    )
    cancel_requested = models.BooleanField(default=False)
    send_started_at = models.DateTimeField(null=True, blank=True)
    send_finished_at = models.DateTimeField(null=True, blank=True)
    # When a send run last showed life (it started, or finished a batch); a SENDING import
    # whose heartbeat is older than SIGNALS_SEND_STALLED_MINUTES is resumed by the sweep.
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    batches_total = models.IntegerField(default=0)
    sent = models.IntegerField(default=0)  # signals in batches Connect acknowledged
    accepted = models.IntegerField(default=0)  # signalIds returned
    failed = models.IntegerField(default=0)  # signals in batches that certainly failed
    unknown = models.IntegerField(default=0)  # signals in batches of unknown outcome

    # Destinations (SPEC §6): Connect (the app key's account) and/or an Attentive account,
    # which receives each valid signal as a custom event (services.attentive_events).
    send_to_connect = models.BooleanField(default=True)
    attentive_account = models.ForeignKey(
        AttentiveAccount,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="imports",
    )
    # The marketer's event type names, per signal type, over the defaults.
    attentive_event_types = models.JSONField(default=dict, blank=True)
    # Events, as the ledger's Attentive batches count them (one call per event).
    attentive_sent = models.IntegerField(default=0)
    attentive_failed = models.IntegerField(default=0)
    attentive_unknown = models.IntegerField(default=0)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["created_by", "-created_at"]),
            models.Index(fields=["app_key", "-created_at"]),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["created_by", "idempotency_key"],
                condition=models.Q(idempotency_key__isnull=False),
                name="one_import_per_idempotency_key",
            ),
            # Signals go with an app key; events go to the Attentive account they are for.
            models.CheckConstraint(
                condition=models.Q(kind=ImportKind.SIGNALS, app_key__isnull=False)
                | models.Q(kind=ImportKind.EVENTS, attentive_account__isnull=False),
                name="signals_have_an_app_key_events_an_attentive_account",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.original_name} ({self.get_mode_display()}, {self.get_status_display()})"

    @property
    def validation_source(self) -> SignalImport:
        """The import whose file and findings this one uses (itself unless promoted)."""
        return self.promoted_from.validation_source if self.promoted_from else self

    @property
    def is_live(self) -> bool:
        return self.mode == ImportMode.LIVE

    @property
    def connect_app_key(self) -> AppKey:
        """The app key of what goes to Connect: only an import of signals has one."""
        if self.app_key is None:
            raise ValueError(f"import {self.pk} holds Attentive events: nothing goes to Connect")
        return self.app_key

    @property
    def holds_events(self) -> bool:
        """A file of Attentive custom events (validated and sent as written)."""
        return self.kind == ImportKind.EVENTS

    @property
    def unit(self) -> str:
        """What its records are called: "event" (Attentive custom events) or "signal"."""
        return "event" if self.holds_events else "signal"

    @property
    def destination(self) -> str:
        """The rules its file is read by: "connect" (signals) or "attentive" (events)."""
        return "attentive" if self.holds_events else "connect"

    @property
    def outcome(self) -> Outcome:
        """Its status as people read it (signals_app.outcome): word, colour, sentence."""
        return import_outcome(self)


class Severity(models.TextChoices):
    ERROR = "error", "Error"
    WARNING = "warning", "Warning"


class ImportFinding(models.Model):
    """One finding of the validator, stored in bulk; paged by keyset on (signal, id)."""

    # No index of its own: the first index below starts with it (one index less to
    # keep up while a million findings are loaded).
    signal_import = models.ForeignKey(
        SignalImport, on_delete=models.CASCADE, related_name="findings", db_index=False
    )
    signal = models.IntegerField()
    line = models.IntegerField(null=True, blank=True)
    path = models.CharField(max_length=500)
    path_pattern = models.CharField(max_length=500)  # path with [i] as [] (grouping)
    severity = models.CharField(max_length=7, choices=Severity.choices)
    code = models.CharField(max_length=40)
    message = models.TextField()

    class Meta:
        indexes = [
            models.Index(fields=["signal_import", "signal", "id"]),
            models.Index(fields=["signal_import", "path_pattern", "code", "signal"]),
            # The preview's problem table: its GROUP BY and the examples' ROW_NUMBER()
            # read this index in order (no sort of the import's findings).
            models.Index(
                fields=["signal_import", "path_pattern", "code", "severity", "signal", "id"],
                name="finding_problem_groups",
            ),
        ]

    def __str__(self) -> str:
        return f"signal {self.signal} {self.severity} {self.code} at {self.path}"


class RejectedSignal(models.Model):
    """A rejected signal as found in the file, for the preview and for fixes."""

    # No index of its own: the unique constraint's starts with it.
    signal_import = models.ForeignKey(
        SignalImport, on_delete=models.CASCADE, related_name="rejected_signals", db_index=False
    )
    signal = models.IntegerField()
    line = models.IntegerField(null=True, blank=True)
    record = models.JSONField(null=True)  # None when the record is not valid JSON
    raw = models.TextField(blank=True)  # the text, when it is not JSON

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["signal_import", "signal"], name="one_rejected_row")
        ]

    def __str__(self) -> str:
        return f"rejected signal {self.signal}"


class RejectedSet(models.Model):
    """Which signals of an import are rejected: one byte per signal (1 rejected, 0 valid),
    zlib-compressed. Sending and downloads skip these; RejectedSignal keeps the records of
    only as many as the storage policy allows (imports validated before this table existed
    have a RejectedSignal row for every rejected signal instead)."""

    signal_import = models.OneToOneField(
        SignalImport, on_delete=models.CASCADE, related_name="rejected_set"
    )
    flags = models.BinaryField()
    count = models.IntegerField()

    def __str__(self) -> str:
        return f"{self.count} rejected signals"


class TaskStart(models.Model):
    """How often a task's work started without finishing (services.deliveries): a task a
    dead worker left behind comes back, and one that kills its worker every time must not
    come back forever."""

    job = models.CharField(max_length=20)  # validate, write_fixed_file, send
    signal_import = models.ForeignKey(
        SignalImport, on_delete=models.CASCADE, related_name="task_starts"
    )
    lane = models.SmallIntegerField(default=0)
    starts = models.IntegerField(default=0)  # since the last finish
    last_started_at = models.DateTimeField(null=True, blank=True)
    last_finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["job", "signal_import", "lane"], name="one_task_start")
        ]

    def __str__(self) -> str:
        return f"{self.job} of import {self.signal_import_id} lane {self.lane}: {self.starts}"


class BatchState(models.TextChoices):
    PENDING = "pending", "Pending"
    IN_FLIGHT = "in_flight", "In flight"
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed"  # certainly not taken (or refused with GraphQL errors)
    UNKNOWN = "unknown", "Outcome unknown"  # may have been taken: never resent by itself


class Destination(models.TextChoices):
    CONNECT = "connect", "Acoustic Connect"
    ATTENTIVE = "attentive", "Attentive"


class ImportBatch(models.Model):
    """One createSignals call of at most 500 signals: the durable ledger of SPEC §6. For
    Attentive, a run of events sent one call each (createCustomEvent), settled together:
    `event_outcomes` says what became of each."""

    signal_import = models.ForeignKey(
        SignalImport, on_delete=models.CASCADE, related_name="batches"
    )
    number = models.IntegerField()  # from 0, in file order
    # The valid signals of the file, by their index, that this batch carries.
    first_signal = models.IntegerField()
    last_signal = models.IntegerField()
    size = models.IntegerField()
    # Which of the import's parallel send runs owns this batch (SIGNALS_SEND_LANES): each
    # lane is a contiguous run of batches sent by its own task, in file order.
    lane = models.SmallIntegerField(default=0)
    state = models.CharField(
        max_length=10, choices=BatchState.choices, default=BatchState.PENDING, db_index=True
    )
    attempts = models.IntegerField(default=0)
    http_status = models.IntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    # signalIds as returned, in the order of the batch's signals.
    signal_ids = models.JSONField(default=list, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    duration_ms = models.IntegerField(null=True, blank=True)
    destination = models.CharField(
        max_length=10, choices=Destination.choices, default=Destination.CONNECT
    )
    # Attentive: one letter per event of the batch, in order — S sent, F failed (refused),
    # U outcome unknown, - not sent yet (also every event past the string's end); only
    # "-" events are ever sent by a run: ops' resend turns F and U back into "-".
    event_outcomes = models.TextField(blank=True)
    events_sent = models.IntegerField(default=0)
    events_failed = models.IntegerField(default=0)
    events_unknown = models.IntegerField(default=0)

    class Meta:
        ordering = ["signal_import", "number"]
        constraints = [
            models.UniqueConstraint(fields=["signal_import", "number"], name="one_batch_number")
        ]

    def __str__(self) -> str:
        return f"batch {self.number} ({self.get_state_display()})"


class SendLane(models.Model):
    """One lane of an import's send (ImportBatch.lane): when its task was last enqueued and
    when a run of it last showed life (a thread of the run writes it every few seconds,
    whatever the run is waiting for). The sweep (sending.resume_stalled_sends) resumes a
    lane whose run is gone within a minute; on SQLite, without advisory locks, `run_id`
    is the lease a run holds on its lane."""

    signal_import = models.ForeignKey(SignalImport, on_delete=models.CASCADE, related_name="lanes")
    lane = models.SmallIntegerField()
    enqueued_at = models.DateTimeField(null=True, blank=True)
    alive_at = models.DateTimeField(null=True, blank=True)
    run_id = models.CharField(max_length=32, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["signal_import", "lane"], name="one_send_lane")
        ]

    def __str__(self) -> str:
        return f"lane {self.lane} of import {self.signal_import_id}"


class AuditRefused(Exception):
    """The audit trail is append-only: an event is never changed or deleted."""


class AuditEventQuerySet(models.QuerySet["AuditEvent"]):
    def update(self, **kwargs: Any) -> int:
        raise AuditRefused("audit events are never changed")

    def delete(self) -> tuple[int, dict[str, int]]:
        raise AuditRefused("audit events are never deleted")


class AuditEvent(models.Model):
    """One state-changing action anywhere in the product, append-only: who (the user, and
    their name kept should the user go), what (`action`, a dotted name; `detail` with the
    before and after where it matters, never a secret), on which object, when and from
    which address. signals_app.audit_words says it as a sentence."""

    signal_import = models.ForeignKey(
        SignalImport, null=True, blank=True, on_delete=models.SET_NULL, related_name="audit"
    )
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    actor_name = models.CharField(max_length=150, blank=True)
    action = models.CharField(max_length=40, db_index=True)
    object_type = models.CharField(max_length=40, blank=True, db_index=True)
    object_id = models.CharField(max_length=64, blank=True)
    object_label = models.CharField(max_length=255, blank=True)
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    detail = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.action}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None:
            raise AuditRefused("audit events are never changed")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        raise AuditRefused("audit events are never deleted")


# The address of the request being served (connectadmin.middleware sets it), so that a
# service deep below a view records it without being handed the request.
current_address: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "current_address", default=None
)


def audit(
    *,
    action: str,
    actor: Any = None,
    signal_import: SignalImport | None = None,
    obj: Any = None,
    **detail: Any,
) -> AuditEvent:
    """Record an action. `obj` (or the import) is the object it was done to."""
    target = obj if obj is not None else signal_import
    name = getattr(actor, "get_username", None)
    return AuditEvent.objects.create(
        action=action,
        actor=actor if getattr(actor, "pk", None) else None,
        actor_name=name() if callable(name) else "",
        signal_import=signal_import,
        object_type=_object_type(target),
        object_id=str(getattr(target, "pk", "") or "") if target is not None else "",
        object_label=str(target)[:255] if target is not None else "",
        ip_address=current_address.get(),
        detail=detail,
    )


def _object_type(target: Any) -> str:
    if target is None:
        return ""
    if isinstance(target, SignalImport):
        return "import"
    meta = getattr(target, "_meta", None)
    return meta.model_name if meta is not None else type(target).__name__.lower()
