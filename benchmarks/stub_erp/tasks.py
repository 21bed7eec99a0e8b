"""The pipeline's baseline: a Celery task that does nothing, run by the same worker."""

from celery import shared_task

NOOP_TASK = "bench.noop"


@shared_task(name=NOOP_TASK, ignore_result=True)
def noop_task(n: int) -> None:
    """Carries an int like the hub's tasks carry an id; does nothing with it."""
