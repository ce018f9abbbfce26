from django.apps import AppConfig


class ConnectadminConfig(AppConfig):
    name = "connectadmin"
    verbose_name = "Connect accounts"

    def ready(self) -> None:
        # The deploy checks register themselves; shared tasks bind to this Celery app; the
        # Celery processes record their heartbeats through signals (connectadmin.heartbeats)
        # and watch each other's (connectadmin.alerts).
        from connectadmin import alerts, celery, checks, heartbeats  # noqa: F401
