from django.apps import AppConfig


class ConnectadminConfig(AppConfig):
    name = "connectadmin"
    verbose_name = "Connect accounts"

    def ready(self) -> None:
        from connectadmin import checks  # noqa: F401  (registers the deploy checks)
