"""The scheduled CRM pull (safety net for missed webhooks), created idempotently by
name; edit its interval in the admin under Periodic tasks."""

from django.conf import settings
from django.db import migrations

PULL_NAME = "hub: pull CRM customer changes since the watermark"


def create_schedule(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    interval, _ = IntervalSchedule.objects.get_or_create(
        every=settings.HUB_CRM_PULL_INTERVAL_SECONDS, period="seconds"
    )
    PeriodicTask.objects.update_or_create(
        name=PULL_NAME,
        defaults={"task": "hub.customers_pull", "interval": interval, "enabled": True,
                  "description": "Reads CRM changes since the stored watermark into the inbox; "
                                 "changes already received by webhook are dropped as duplicates."},
    )


def remove_schedule(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=PULL_NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("workflows", "0001_initial"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_schedule, remove_schedule)]
