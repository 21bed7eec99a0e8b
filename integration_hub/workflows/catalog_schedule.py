"""Beat schedules of the catalog workflow, as data (django-celery-beat rows).

Each active product connection has its own ``hub: catalog pull <name>`` periodic
task (created with the connection's ``pull_interval_seconds``, default 3600, then
edited in the admin: the hub never overwrites an existing row's schedule). The
``hub: catalog schedules`` task, created by the data migration with the nightly
drift check, keeps the per-connection rows in step with the connections: it adds
missing ones and disables those of connections switched off.
"""

from __future__ import annotations

import json

from django_celery_beat.models import IntervalSchedule, PeriodicTask

from connectors.models import Connection

PREFIX = "hub: catalog pull "
DEFAULT_INTERVAL_SECONDS = 3600


def schedule_name(connection: Connection) -> str:
    return f"{PREFIX}{connection.name}"


def catalog_schedule_ensure(connection: Connection) -> PeriodicTask:
    every = int(connection.config.get("pull_interval_seconds", DEFAULT_INTERVAL_SECONDS))
    interval, _ = IntervalSchedule.objects.get_or_create(every=every, period=IntervalSchedule.SECONDS)
    task, created = PeriodicTask.objects.get_or_create(
        name=schedule_name(connection),
        defaults={"task": "hub.catalog_pull", "interval": interval, "kwargs": json.dumps({"connection": connection.name}),
                  "enabled": connection.is_active,
                  "description": f"Pulls {connection.name}'s catalog changes since the watermark (a full scan "
                                 "when the last is older than full_scan_hours)."},
    )
    if not created and task.enabled and not connection.is_active:
        task.enabled = False
        task.save(update_fields=["enabled"])
    return task


def catalog_schedules_ensure() -> list[PeriodicTask]:
    return [catalog_schedule_ensure(c) for c in Connection.objects.filter(role=Connection.Role.PRODUCT)]
