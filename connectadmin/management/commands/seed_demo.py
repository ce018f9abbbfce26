from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from connectadmin.demo import (
    DEMO_ACCOUNTS,
    DEMO_ATTENTIVE_KEY,
    DEMO_ATTENTIVE_NAME,
    demo_attentive_endpoint,
)
from connectadmin.models import AttentiveAccount
from connectadmin.services import demo_seed


def demo_attentive_seed() -> AttentiveAccount:
    """The demo Attentive account against the sandbox: its key and endpoint reset every
    time (they are what devstack starts the sandbox with), its rate limit set once."""
    account, _ = AttentiveAccount.objects.update_or_create(
        name=DEMO_ATTENTIVE_NAME,
        defaults={"api_key": DEMO_ATTENTIVE_KEY, "graphql_endpoint": demo_attentive_endpoint()},
        create_defaults={
            "api_key": DEMO_ATTENTIVE_KEY,
            "graphql_endpoint": demo_attentive_endpoint(),
            "rate_limit": settings.ATTENTIVE_RATE_LIMIT,
        },
    )
    return account


class Command(BaseCommand):
    help = (
        "Create or reset the demo users (with well-known passwords), the demo Connect "
        "accounts and the demo Attentive account, which point at the local sandbox. "
        "Idempotent. Development only."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--force",
            action="store_true",
            help="Run even with DEBUG off. The demo passwords are public: never in production.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.DEBUG and not options["force"]:
            raise CommandError(
                "seed_demo creates users with publicly known passwords and runs only with "
                "DJANGO_DEBUG=true. Pass --force if this really is a throw-away installation."
            )
        users = demo_seed()
        attentive = demo_attentive_seed()
        accounts = ", ".join(f"{a.name} ({a.tier}, app key {a.app_key})" for a in DEMO_ACCOUNTS)
        self.stdout.write(f"Demo Connect accounts: {accounts}")
        self.stdout.write(
            f"Demo Attentive account: {attentive.name} ({attentive.graphql_endpoint}, "
            f"{attentive.rate_limit} requests/s)"
        )
        self.stdout.write(self.style.SUCCESS("Demo logins:"))
        self.stdout.write(f"  {'user':<10} {'password':<20} role")
        for user in users:
            role = f"{user.role} (superuser)" if user.is_superuser else str(user.role)
            self.stdout.write(f"  {user.username:<10} {user.password:<20} {role}")
