from django.apps import AppConfig


class RuntimeConfig(AppConfig):
    name = "integration_hub.runtime"
    label = "runtime"
    verbose_name = "Runtime: inbox, deliveries, exceptions"
