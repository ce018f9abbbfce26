from django.apps import AppConfig


class ConnectadminConfig(AppConfig):
    name = "connectadmin"
    verbose_name = "Connect accounts"

    def ready(self) -> None:
        # The deploy checks register themselves; shared tasks bind to this Celery app.
        from connectadmin import celery, checks  # noqa: F401
