from django.apps import AppConfig


class OperationsConfig(AppConfig):
    name = "integration_hub.operations"
    label = "operations"
    verbose_name = "Operations"
