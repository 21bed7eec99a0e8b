"""The catalog workflow's beat rows, created idempotently by name: the nightly drift
check and the task that keeps one pull schedule per product connection. Edit them
in the admin under Periodic tasks."""

from django.db import migrations

DRIFT_NAME = "hub: catalog drift check (nightly)"
SCHEDULES_NAME = "hub: catalog schedules (one pull per product connection)"


def create(apps, schema_editor):
    CrontabSchedule = apps.get_model("django_celery_beat", "CrontabSchedule")
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    nightly, _ = CrontabSchedule.objects.get_or_create(minute="30", hour="2", day_of_week="*", day_of_month="*",
                                                       month_of_year="*", timezone="UTC")
    PeriodicTask.objects.update_or_create(
        name=DRIFT_NAME,
        defaults={"task": "hub.catalog_drift_check", "crontab": nightly, "interval": None, "enabled": True,
                  "description": "Compares the ERP item master and billing prices with the released catalog "
                                 "versions; each difference is a drift record for product operations."},
    )
    every_5_min, _ = IntervalSchedule.objects.get_or_create(every=300, period="seconds")
    PeriodicTask.objects.update_or_create(
        name=SCHEDULES_NAME,
        defaults={"task": "hub.catalog_schedules", "interval": every_5_min, "enabled": True,
                  "description": "Adds a 'hub: catalog pull <name>' schedule for each new product connection "
                                 "and disables those of inactive ones (never changes an edited interval)."},
    )


def remove(apps, schema_editor):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTask.objects.filter(name__in=[DRIFT_NAME, SCHEDULES_NAME]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("workflows", "0003_catalog_sync_runs"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create, remove)]
