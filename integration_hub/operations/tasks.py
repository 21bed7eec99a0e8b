from celery import shared_task

from integration_hub.operations.notifications import exceptions_notify


@shared_task(name="hub.exceptions_notify", ignore_result=True)
def exceptions_notify_task() -> None:
    exceptions_notify()
