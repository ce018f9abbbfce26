"""Connect accounts and their application keys."""

from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models

from connectadmin.fields import EncryptedTextField
from connectadmin.validators import validate_sftp_user_name
from signals_app.validation.schema import TIERS


class Region(models.TextChoices):
    US_EAST_1 = "us-east-1", "US East (us-east-1)"
    EU_CENTRAL_1 = "eu-central-1", "EU Central (eu-central-1)"
    AP_SOUTHEAST_2 = "ap-southeast-2", "Asia Pacific (ap-southeast-2)"
    SANDBOX = "sandbox", "Local sandbox"


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
