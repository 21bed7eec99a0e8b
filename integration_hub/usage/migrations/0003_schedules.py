"""Beat schedules of usage aggregation, created idempotently by name (edit them in the
admin under Periodic tasks)."""

from django.conf import settings
from django.db import migrations

SWEEP = "hub: usage drop folder, stalled loads, held usage"
CLOSE = "hub: close ended usage periods and reconcile them"


def create(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    sweep, _ = IntervalSchedule.objects.get_or_create(every=settings.HUB_USAGE_SWEEP_INTERVAL_SECONDS,
                                                      period="seconds")
    hourly, _ = IntervalSchedule.objects.get_or_create(every=1, period="hours")
    PeriodicTask.objects.update_or_create(name=SWEEP, defaults={
        "task": "hub.usage_sweep", "interval": sweep, "enabled": True,
        "description": "Takes files from HUB_USAGE_DROP_DIR, restarts loads whose worker died, "
                       "matches held usage whose subscription arrived."})
    PeriodicTask.objects.update_or_create(name=CLOSE, defaults={
        "task": "hub.usage_periods_close", "interval": hourly, "enabled": True,
        "description": "Closes each month HUB_USAGE_CLOSE_AFTER_HOURS after it ended, pushes its aggregates "
                       "to billing, and runs the reconciliation checkpoint once the pushes are sent."})


def remove(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name__in=[SWEEP, CLOSE]).delete()


class Migration(migrations.Migration):
    dependencies = [("usage", "0002_bulk_tables"), ("django_celery_beat", "0019_alter_periodictasks_options")]
    operations = [migrations.RunPython(create, remove)]
