"""Helpers for tests that run the hub's tasks in-process, in the order the broker got them."""

from __future__ import annotations

from integration_hub.runtime import services
from integration_hub.usage import services as usage

RUNNERS = {
    usage.CHECKPOINT_TASK: usage.checkpoint_fill,
    services.PROCESS_TASK: services.inbound_process,
    services.DELIVER_TASK: services.delivery_attempt,
}


def planned_invoice_posts(count: int, *, sandbox, post_webhook, sent_tasks) -> list:
    """``count`` finalized Stripe invoices of one customer, accepted and processed in-process:
    their post deliveries planned, none attempted and nothing left in ``sent_tasks``."""
    from integration_hub.runtime.models import Delivery

    for _ in range(count):
        invoice = sandbox.finalize(sandbox.invoice("cus_1", [("Plan", 1, 1000)], currency="eur"))
        post_webhook(sandbox.event("invoice.finalized", invoice))
    for name, event_id, _ in list(sent_tasks):
        if name == services.PROCESS_TASK:
            services.inbound_process(event_id)
    sent_tasks.clear()
    return list(Delivery.objects.order_by("pk"))


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
