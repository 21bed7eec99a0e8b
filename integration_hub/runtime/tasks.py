"""Thin Celery tasks: an id in, one service call. Retry policy lives in the services."""

from celery import shared_task

from integration_hub.runtime import services


@shared_task(name=services.PROCESS_TASK, ignore_result=True)
def process_inbound_task(event_id: int) -> None:
    services.inbound_process(event_id)


@shared_task(name=services.DELIVER_TASK, ignore_result=True)
def deliver_task(delivery_id: int) -> None:
    services.delivery_attempt(delivery_id)


@shared_task(name="hub.sweep", ignore_result=True)
def sweep_task() -> None:
    services.sweep()
