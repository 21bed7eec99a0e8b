"""The role groups with their permissions, an SLA per exception category, and the
beat entry of the notifier (schedules are data: edit them in the admin)."""

from django.conf import settings
from django.db import migrations

from integration_hub.operations.roles import console_seed

NOTIFY_NAME = "hub: e-mail teams about new high-severity exceptions and SLA breaches"


def seed(apps, schema_editor):
    console_seed(apps, schema_editor)
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    interval, _ = IntervalSchedule.objects.get_or_create(every=settings.HUB_NOTIFY_INTERVAL_SECONDS, period="seconds")
    PeriodicTask.objects.update_or_create(
        name=NOTIFY_NAME,
        defaults={"task": "hub.exceptions_notify", "interval": interval, "enabled": True,
                  "description": "Each exception is announced once, and its SLA breach once."},
    )


def unseed(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=NOTIFY_NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("operations", "0001_initial"),
        ("runtime", "0007_exception_workflow"),
        ("canonical", "0004_legal_entity_connections"),
        ("connectors", "0001_initial"),
        ("authtoken", "0004_alter_tokenproxy_options"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]
    operations = [migrations.RunPython(seed, unseed)]
