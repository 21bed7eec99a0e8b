from importlib import import_module

from django.apps import AppConfig
from django.conf import settings


class ConnectorsConfig(AppConfig):
    name = "connectors"
    verbose_name = "Connectors"

    def ready(self) -> None:
        # Importing a vendor package's connector module registers it.
        for package in settings.HUB_CONNECTOR_PACKAGES:
            import_module(f"{package}.connector")
