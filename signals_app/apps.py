from django.apps import AppConfig


class SignalsAppConfig(AppConfig):
    name = "signals_app"
    verbose_name = "Signal imports"

    def ready(self) -> None:
        from signals_app import audit_hooks  # noqa: F401  (its receivers connect on import)
