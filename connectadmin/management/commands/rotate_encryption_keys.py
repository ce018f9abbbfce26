from typing import Any

from django.core.management.base import BaseCommand

from connectadmin.services import encrypted_values_rotate


class Command(BaseCommand):
    help = (
        "Re-encrypt every stored secret (every encrypted field of every model: the Connect "
        "and Attentive API keys, the webhooks' addresses) with the newest key (the first in "
        "FIELD_ENCRYPTION_KEYS). Rotation: put a new key first, run this, then drop the "
        "old key."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        count = encrypted_values_rotate()
        self.stdout.write(
            self.style.SUCCESS(f"Re-encrypted {count} secret(s) with the newest key.")
        )
