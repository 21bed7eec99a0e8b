"""The sweeper's beat schedule, created idempotently by name (schedules are data:
edit the interval in the admin under Periodic tasks)."""

from django.conf import settings
from django.db import migrations

SWEEP_NAME = "hub: re-enqueue lost inbox events and deliveries"


def create_schedule(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    interval, _ = IntervalSchedule.objects.get_or_create(
        every=settings.HUB_SWEEP_INTERVAL_SECONDS, period="seconds"
    )
    PeriodicTask.objects.update_or_create(
        name=SWEEP_NAME,
        defaults={"task": "hub.sweep", "interval": interval, "enabled": True,
                  "description": "Finds work the broker lost; the database is the source of truth."},
    )


def remove_schedule(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=SWEEP_NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("runtime", "0001_initial"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_schedule, remove_schedule)]
