from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from connectadmin.demo import DEMO_ACCOUNTS
from connectadmin.services import demo_seed


class Command(BaseCommand):
    help = (
        "Create or reset the demo users (with well-known passwords) and the demo Connect "
        "accounts that point at the local sandbox. Idempotent. Development only."
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
        accounts = ", ".join(f"{a.name} ({a.tier}, app key {a.app_key})" for a in DEMO_ACCOUNTS)
        self.stdout.write(f"Demo Connect accounts: {accounts}")
        self.stdout.write(self.style.SUCCESS("Demo logins:"))
        self.stdout.write(f"  {'user':<10} {'password':<20} role")
        for user in users:
            role = f"{user.role} (superuser)" if user.is_superuser else str(user.role)
            self.stdout.write(f"  {user.username:<10} {user.password:<20} {role}")
