"""Helpers for tests that run the hub's tasks in-process, in the order the broker got them."""

from __future__ import annotations

from integration_hub.runtime import services
from integration_hub.usage import services as usage

RUNNERS = {
    usage.CHECKPOINT_TASK: usage.checkpoint_fill,
    services.PROCESS_TASK: services.inbound_process,
    services.DELIVER_TASK: services.delivery_attempt,
}


def drain(sent: list[tuple[str, int, float | None]], *, include_delayed: bool = False) -> int:
    """Run every recorded task (and those they enqueue) until none is left; tasks
    sent with a countdown are skipped unless ``include_delayed``. Returns how many ran."""
    ran = 0
    while sent:
        name, object_id, countdown = sent.pop(0)
        if countdown and not include_delayed:
            continue
        RUNNERS[name](object_id)
        ran += 1
    return ran
