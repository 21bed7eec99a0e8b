"""Thin tasks of the workflows: an id in (or nothing, for beat), one service call."""

from celery import shared_task

from connectors.models import Connection
from integration_hub.workflows import catalog_alerts, catalog_pull, catalog_schedule, exchange_rates, services


@shared_task(name="hub.customers_pull", ignore_result=True)
def customers_pull_task() -> None:
    services.customers_pull(services.sync_run_create(trigger="schedule"))


@shared_task(name=services.PULL_RUN_TASK, ignore_result=True)
def customers_pull_run_task(run_id: int) -> None:
    services.customers_pull_run(run_id)


@shared_task(name=catalog_pull.PULL_RUN_TASK, ignore_result=True)
def catalog_pull_run_task(run_id: int) -> None:
    catalog_pull.catalog_pull_run(run_id)


@shared_task(name="hub.catalog_pull", ignore_result=True)
def catalog_pull_task(connection: str) -> None:
    """Beat: one connection's scheduled pull (its schedule is ``hub: catalog pull <name>``)."""
    found = Connection.objects.filter(name=connection, is_active=True).first()
    if found is not None:
        catalog_pull.catalog_pull_now(found, trigger="schedule")


@shared_task(name="hub.catalog_schedules", ignore_result=True)
def catalog_schedules_task() -> None:
    catalog_schedule.catalog_schedules_ensure()


@shared_task(name="hub.catalog_drift_check", ignore_result=True)
def catalog_drift_check_task() -> None:
    catalog_alerts.catalog_drift_check()


@shared_task(name=catalog_alerts.RETIREMENT_CHECK_TASK, ignore_result=True)
def catalog_retirement_check_task(version_id: int) -> None:
    catalog_alerts.retirement_check(version_id)


@shared_task(name="hub.exchange_rates_load", ignore_result=True)
def exchange_rates_load_task() -> None:
    """Beat (weekdays): today's reference rates from every rate source into every ERP."""
    exchange_rates.rates_load_scheduled()
