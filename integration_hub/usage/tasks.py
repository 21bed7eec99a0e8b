"""Tasks of usage aggregation, routed to the bulk usage queue (``HUB_USAGE_QUEUE``) so a
two-million-row load never delays finance postings. Ids in, one service call."""

from celery import shared_task
from django.conf import settings

from integration_hub.usage import services

_LIMITS = {"soft_time_limit": settings.HUB_USAGE_TASK_SOFT_TIME_LIMIT,
           "time_limit": settings.HUB_USAGE_TASK_TIME_LIMIT}


@shared_task(name=services.LOAD_TASK, ignore_result=True, acks_late=True, **_LIMITS)
def usage_batch_load_task(batch_id: int) -> None:
    services.batch_load(batch_id)


@shared_task(name=services.MATCH_TASK, ignore_result=True)
def usage_subscriptions_match_task() -> None:
    services.subscriptions_match()


@shared_task(name=services.CHECKPOINT_TASK, ignore_result=True, acks_late=True, **_LIMITS)
def usage_checkpoint_task(checkpoint_id: int) -> None:
    services.checkpoint_fill(checkpoint_id)


@shared_task(name="hub.usage_sweep", ignore_result=True)
def usage_sweep_task() -> list[int]:
    """Beat (and ``manage.py hub_sweep``): take files from the drop folder, restart
    stalled loads, match held usage. Returns the batches sent to load again."""
    services.drop_folder_scan()
    stalled = services.batches_stalled()
    for batch_id in stalled:
        usage_batch_load_task.delay(batch_id)
    services.subscriptions_match()
    return stalled


@shared_task(name="hub.usage_periods_close", ignore_result=True, **_LIMITS)
def usage_periods_close_task() -> None:
    """Beat: close each period whose month has ended (after the grace hours), reconcile
    closed periods whose pushes have all been sent."""
    for period in services.periods_due():
        services.period_close(period)
    for period in services.periods_to_reconcile():
        services.checkpoint_run(period, trigger="schedule")
