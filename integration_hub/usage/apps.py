from django.apps import AppConfig


class UsageConfig(AppConfig):
    name = "integration_hub.usage"
    label = "usage"
    verbose_name = "Usage aggregation"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from integration_hub.usage import tasks  # noqa: F401 - registers the usage queue's tasks
