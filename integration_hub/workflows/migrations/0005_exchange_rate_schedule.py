"""The exchange-rate load's beat row: weekdays at 16:30 Frankfurt time, after the
ECB publishes its reference rates (around 16:00 CET on TARGET working days).
Edit it in the admin under Periodic tasks."""

from django.db import migrations

NAME = "hub: exchange rates (weekdays)"


def create(apps, schema_editor):
    CrontabSchedule = apps.get_model("django_celery_beat", "CrontabSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    weekdays, _ = CrontabSchedule.objects.get_or_create(minute="30", hour="16", day_of_week="1-5", day_of_month="*",
                                                        month_of_year="*", timezone="Europe/Berlin")
    PeriodicTask.objects.update_or_create(
        name=NAME,
        defaults={"task": "hub.exchange_rates_load", "crontab": weekdays, "interval": None, "enabled": True,
                  "description": "Reads today's reference rates from each rate source and loads them into "
                                 "every ERP, once per currency and date."},
    )


def remove(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("workflows", "0004_catalog_schedules"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create, remove)]
