"""Connect accounts and their application keys; Attentive accounts."""

from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from connectadmin.fields import EncryptedTextField
from connectadmin.validators import validate_sftp_user_name
from signals_app.validation.schema import TIERS


class Region(models.TextChoices):
    US_EAST_1 = "us-east-1", "US East (us-east-1)"
    EU_CENTRAL_1 = "eu-central-1", "EU Central (eu-central-1)"
    AP_SOUTHEAST_2 = "ap-southeast-2", "Asia Pacific (ap-southeast-2)"
    SANDBOX = "sandbox", "Local sandbox"


# The most createSignals calls an account may be sent at once (its own limit is below).
MAX_BATCHES_IN_FLIGHT = 64

# SPEC §6 "The Connect API itself": one GraphQL host per region.
REGION_ENDPOINTS = {
    Region.US_EAST_1: "https://connect-gql-us-1.goacoustic.com/",
    Region.EU_CENTRAL_1: "https://connect-gql-eu-1.goacoustic.com/",
    Region.AP_SOUTHEAST_2: "https://connect-gql-ap-3.goacoustic.com/",
}


# SPEC §8 and the export seed: one SFTP host per Connect region, port 22.
REGION_SFTP_HOSTS = {
    Region.US_EAST_1: "s-acca2da9ec374c47b.server.transfer.us-east-1.amazonaws.com",
    Region.EU_CENTRAL_1: "s-0f495b8f35324396a.server.transfer.eu-central-1.amazonaws.com",
    Region.AP_SOUTHEAST_2: "s-9596192dde684690a.server.transfer.ap-southeast-2.amazonaws.com",
}


def default_sftp_host(region: str) -> tuple[str, int]:
    if region == Region.SANDBOX:
        return "127.0.0.1", int(settings.SANDBOX_SFTP_PORT)
    return REGION_SFTP_HOSTS[Region(region)], 22


def default_endpoint(region: str) -> str:
    if region == Region.SANDBOX:
        return f"http://127.0.0.1:{settings.SANDBOX_HTTP_PORT}/graphql"
    return REGION_ENDPOINTS[Region(region)]


class ConnectAccount(models.Model):
    name = models.CharField(max_length=100, unique=True)
    region = models.CharField(max_length=20, choices=Region.choices)
    graphql_endpoint = models.URLField(
        "GraphQL endpoint",
        max_length=300,
        blank=True,
        help_text="Leave blank to use the region's endpoint.",
    )
    api_key = EncryptedTextField(
        "API key", help_text="Stored encrypted; never displayed again once saved."
    )
    connect_user_email = models.EmailField(
        "Connect user e-mail",
        max_length=100,
        validators=[validate_sftp_user_name],
        help_text="The Connect user owning the API key; also the SFTP user name.",
    )
    sftp_host = models.CharField(
        "SFTP host",
        max_length=255,
        blank=True,
        help_text="Leave blank for the region's SFTP host (port 22).",
    )
    sftp_port = models.PositiveIntegerField("SFTP port", null=True, blank=True)
    max_batches_in_flight = models.PositiveSmallIntegerField(
        "Batches in flight at most",
        default=8,
        validators=[MinValueValidator(1), MaxValueValidator(MAX_BATCHES_IN_FLIGHT)],
        help_text="How many createSignals calls this account is sent at once, across every "
        "import and worker (each import also keeps to the app's sending window). Lower it "
        "if Connect answers “too many requests” often.",
    )
    # Connect answered 429 or asked to wait (Retry-After): no batch of any import of this
    # account is sent before then (signals_app.services.sending).
    send_paused_until = models.DateTimeField(null=True, blank=True, editable=False)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "Connect account"

    def __str__(self) -> str:
        return self.name

    def save(self, *args: Any, **kwargs: Any) -> None:
        # Accounts created outside forms (seed_demo, shell) get the default too.
        if not self.graphql_endpoint:
            self.graphql_endpoint = default_endpoint(self.region)
        super().save(*args, **kwargs)

    @property
    def sftp_address(self) -> tuple[str, int]:
        """Where the account's export files are: its own host, else its region's."""
        host, port = default_sftp_host(self.region)
        return (self.sftp_host or host, self.sftp_port or (port if not self.sftp_host else 22))

    def clean(self) -> None:
        if not self.graphql_endpoint and self.region in Region.values:
            self.graphql_endpoint = default_endpoint(self.region)
        # The API key travels in a header: never send a real account's key in clear text.
        if (
            self.region in Region.values
            and self.region != Region.SANDBOX
            and self.graphql_endpoint
            and not self.graphql_endpoint.startswith("https://")
        ):
            raise ValidationError(
                {"graphql_endpoint": "A Connect region's endpoint must use https://."}
            )


class AppKey(models.Model):
    key = models.CharField(max_length=200, unique=True)
    label = models.CharField(max_length=200, blank=True)
    tier = models.CharField(
        max_length=20,
        choices=[(tier, tier.capitalize()) for tier in TIERS],
        help_text="Decides which signal types this key may send.",
    )
    account = models.ForeignKey(ConnectAccount, on_delete=models.PROTECT, related_name="app_keys")
    active = models.BooleanField(default=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["account__name", "key"]
        verbose_name = "application key"
        # Lives here because every send goes through an app key; see connectadmin.roles.
        permissions = [("send_live", "Can send live imports (not only test imports)")]

    def __str__(self) -> str:
        return f"{self.label} ({self.key})" if self.label else self.key


# --- Attentive (SPEC §6, seeds/004): custom events, a second destination ---------------

# Attentive's one GraphQL endpoint (the seed's example); the sandbox serves it at
# http://127.0.0.1:<port>/v1/graphql.
ATTENTIVE_ENDPOINT = "https://api.attentivemobile.com/v1/graphql"
ATTENTIVE_MAX_RATE_LIMIT = 1000
# Hosts a key may be sent to without TLS: this machine (the sandbox), nothing else.
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})


def default_attentive_rate_limit() -> int:
    return int(settings.ATTENTIVE_RATE_LIMIT)


class AttentiveAccount(models.Model):
    """An Attentive API key (one token) and where to use it. The key is write-only: stored
    encrypted like the Connect keys (rotate_encryption_keys covers it) and never shown."""

    name = models.CharField(max_length=100, unique=True)
    api_key = EncryptedTextField(
        "API key", help_text="Stored encrypted; never displayed again once saved."
    )
    graphql_endpoint = models.URLField(
        "GraphQL endpoint",
        max_length=300,
        default=ATTENTIVE_ENDPOINT,
        help_text="Attentive's own, or the local sandbox's (http://127.0.0.1:8765/v1/graphql by "
        "default).",
    )
    rate_limit = models.PositiveSmallIntegerField(
        "Requests per second at most",
        default=default_attentive_rate_limit,
        validators=[MinValueValidator(1), MaxValueValidator(ATTENTIVE_MAX_RATE_LIMIT)],
        help_text="Attentive allows 150 requests a second per API key and answers “too many "
        "requests” beyond. The limit is held across every worker together, not per worker.",
    )
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "Attentive account"

    def __str__(self) -> str:
        return self.name

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self.graphql_endpoint:  # created outside forms (seed_demo, shell)
            self.graphql_endpoint = ATTENTIVE_ENDPOINT
        super().save(*args, **kwargs)

    @property
    def endpoint_host(self) -> str:
        """The endpoint's host (and port when it is not the scheme's), for lists."""
        parts = urlsplit(self.graphql_endpoint)
        return parts.netloc.rpartition("@")[2] or self.graphql_endpoint

    def clean(self) -> None:
        # The API key travels in a header: in clear text only to this machine (the sandbox).
        endpoint = self.graphql_endpoint
        if endpoint and not endpoint.startswith("https://"):
            host = (urlsplit(endpoint).hostname or "").lower()
            if host not in LOOPBACK_HOSTS:
                raise ValidationError(
                    {
                        "graphql_endpoint": "Use an https:// address: the API key travels "
                        "with every call. Only this machine (the local sandbox) may be called "
                        "over http://."
                    }
                )


class Heartbeat(models.Model):
    """The last signs of life of a Celery worker or of the scheduler (celery beat), written
    by those processes themselves (connectadmin.heartbeats) and read by connectadmin.health.
    One row per worker node name, and per scheduler process."""

    class Kind(models.TextChoices):
        WORKER = "worker", "Worker"
        SCHEDULER = "scheduler", "Scheduler"

    kind = models.CharField(max_length=20, choices=Kind.choices)
    # A worker's node name (celery@host); a scheduler's "host (pid N)".
    name = models.CharField(max_length=255)
    started_at = models.DateTimeField(null=True, blank=True)
    # Any sign of life: started, Celery's own worker heartbeat, the heartbeat task, a beat.
    seen_at = models.DateTimeField()
    # Workers: when the node last ran the heartbeat task, i.e. took a task from the queue.
    ran_at = models.DateTimeField(null=True, blank=True)
    # Workers: a warm shutdown says goodbye; a killed worker does not.
    stopped_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["kind", "name"]
        constraints = [
            models.UniqueConstraint(fields=["kind", "name"], name="heartbeat_kind_name_unique")
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.name}"


# --- Alerts (connectadmin.alerts) ------------------------------------------------------


class AlertTopic(models.TextChoices):
    IMPORT = "import", "Imports that failed"
    EXPORT = "export", "Export runs that failed or were skipped"
    HOST_KEY = "host_key", "SFTP host keys that changed"
    WORKER = "worker", "Workers gone silent"
    SCHEDULER = "scheduler", "The scheduler gone silent"


class AlertChannel(models.Model):
    """Where alerts go: a person's e-mail (kind email, their address at sending time) or a
    webhook that takes a JSON body (Slack, Teams, anything). `topics` empty: every topic."""

    class Kind(models.TextChoices):
        EMAIL = "email", "E-mail"
        WEBHOOK = "webhook", "Webhook"

    kind = models.CharField(max_length=10, choices=Kind.choices)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="alert_channels",
    )
    name = models.CharField(max_length=100, blank=True)  # a webhook's, for people
    # A webhook's address: Slack's and Teams' hold their secret in the path, so encrypted
    # like every other secret and never shown whole again.
    url = EncryptedTextField(blank=True)
    url_host = models.CharField(max_length=255, blank=True)  # shown instead of the address
    topics = models.JSONField(default=list, blank=True)
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["kind", "name", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["user"],
                condition=models.Q(kind="email"),
                name="alert_channel_one_email_per_user",
            )
        ]

    def __str__(self) -> str:
        if self.kind == self.Kind.EMAIL:
            return f"e-mail to {self.user}"
        return f"webhook {self.name or self.url_host}"

    def wants(self, topic: str) -> bool:
        return self.active and (not self.topics or topic in self.topics)


class AlertState(models.TextChoices):
    OPEN = "open", "Open"
    CLEARED = "cleared", "Cleared"


class Alert(models.Model):
    """Something ops must know about, per subject (an account's imports, a schedule, a
    worker, ...): opened by the first failure, counted while it lasts, cleared by the first
    good run. At most one notification per subject per ALERT_REPEAT_MINUTES."""

    topic = models.CharField(max_length=20, choices=AlertTopic.choices)
    subject = models.CharField(max_length=255)  # e.g. "account:3", "worker:celery@host"
    subject_label = models.CharField(max_length=300)  # e.g. "Imports to Acme EU"
    state = models.CharField(max_length=10, choices=AlertState.choices, default=AlertState.OPEN)
    # The latest occurrence, in words: what happened, what to do, the page that shows it.
    title = models.CharField(max_length=300)
    detail = models.TextField(blank=True)
    link = models.CharField(max_length=500, blank=True)
    occurrences = models.PositiveIntegerField(default=1)
    opened_at = models.DateTimeField()
    last_seen_at = models.DateTimeField()
    # When people were last told (the alert, or a reminder), and how many occurrences they
    # had heard of then; None: not told yet (held back by the interval).
    notified_at = models.DateTimeField(null=True, blank=True)
    notified_occurrences = models.PositiveIntegerField(default=0)
    cleared_at = models.DateTimeField(null=True, blank=True)
    cleared_detail = models.TextField(blank=True)

    class Meta:
        ordering = ["-last_seen_at", "-id"]
        indexes = [models.Index(fields=["topic", "subject", "-opened_at"])]
        constraints = [
            models.UniqueConstraint(
                fields=["topic", "subject"],
                condition=models.Q(state="open"),
                name="alert_one_open_per_subject",
            )
        ]

    def __str__(self) -> str:
        return f"{self.get_topic_display()}: {self.title}"


class AlertDelivery(models.Model):
    """One message of an alert to one channel, and what became of it."""

    class Message(models.TextChoices):
        ALERT = "alert", "Alert"
        REMINDER = "reminder", "Still happening"
        RECOVERY = "recovery", "Recovered"

    class State(models.TextChoices):
        PENDING = "pending", "Waiting to be sent"
        SENDING = "sending", "Sending"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"  # every attempt failed
        CANCELLED = "cancelled", "Not sent"  # its channel was removed or turned off first

    alert = models.ForeignKey(Alert, on_delete=models.CASCADE, related_name="deliveries")
    message = models.CharField(max_length=10, choices=Message.choices)
    channel = models.ForeignKey(
        AlertChannel, null=True, blank=True, on_delete=models.SET_NULL, related_name="deliveries"
    )
    target = models.CharField(
        max_length=300
    )  # "ops@example.com", "webhook Slack (hooks.slack.com)"
    # What was said, as it was when the message was made (the alert goes on changing).
    subject = models.CharField(max_length=300)
    body = models.TextField()
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    next_try_at = models.DateTimeField()
    claimed_at = models.DateTimeField(null=True, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["state", "next_try_at"])]

    def __str__(self) -> str:
        return f"{self.message} of alert {self.alert_id} to {self.target}: {self.state}"
