"""Thin tasks of the workflows: an id in (or nothing, for beat), one service call."""

from celery import shared_task

from integration_hub.workflows import services


@shared_task(name="hub.customers_pull", ignore_result=True)
def customers_pull_task() -> None:
    services.customers_pull(services.sync_run_create(trigger="schedule"))


@shared_task(name=services.PULL_RUN_TASK, ignore_result=True)
def customers_pull_run_task(run_id: int) -> None:
    services.customers_pull_run(run_id)
