"""Inline delivery: an inbox event's task runs the delivery it planned, right after
committing it, instead of sending it to the broker for another task."""

import pytest
from django.db import transaction

from connectors.errors import Retryable
from connectors.models import Connection
from integration_hub.runtime import services
from integration_hub.runtime.models import Delivery, InboundEvent

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def inline(settings):
    settings.HUB_INLINE_DELIVERIES = 1


@pytest.fixture
def accepted_event(stripe_connection, legal_entities, memory_erp, sandbox, post_webhook, sent_tasks):
    """A finalized invoice in the inbox, its processing task not yet run."""
    invoice = sandbox.finalize(sandbox.invoice("cus_1", [("Plan", 2, 1500)], currency="eur"))
    post_webhook(sandbox.event("invoice.finalized", invoice))
    name, event_id, _ = sent_tasks.pop(0)
    assert name == services.PROCESS_TASK
    return event_id


def test_the_event_task_posts_its_delivery_itself(inline, accepted_event, memory_erp, sent_tasks):
    services.inbound_process(accepted_event)

    delivery = Delivery.objects.get()
    assert InboundEvent.objects.get(pk=accepted_event).status == "processed"
    assert delivery.status == "posted" and delivery.attempt_log.get().outcome == "posted"
    assert len(memory_erp.calls) == 1
    assert sent_tasks == []  # no message for the delivery


def test_a_failed_inline_attempt_retries_through_the_broker(inline, accepted_event, memory_erp, sent_tasks):
    memory_erp.failures.append(Retryable("503 from ERP", http_status=503))
    services.inbound_process(accepted_event)

    delivery = Delivery.objects.get()
    assert delivery.status == "pending" and delivery.attempts == 1
    assert [(name, pk) for name, pk, countdown in sent_tasks] == [(services.DELIVER_TASK, delivery.pk)]
    assert sent_tasks[0][2] > 0  # after its backoff


def test_an_event_that_fails_plans_nothing_and_sends_nothing(inline, accepted_event, memory_erp, sent_tasks,
                                                              monkeypatch):
    from integration_hub.runtime import dispatch

    def broken(facts):
        raise RuntimeError("customer lookup failed")

    monkeypatch.setattr(dispatch, "facts_resolve", broken)
    services.inbound_process(accepted_event)

    assert not Delivery.objects.exists() and memory_erp.calls == []
    assert [name for name, _, _ in sent_tasks] == [services.PROCESS_TASK]  # the event's own retry


def _plan(connection, object_id):
    from integration_hub.runtime.models import BusinessTransaction

    txn = BusinessTransaction.objects.create(kind="invoice", subject=f"test:{object_id}")
    return services.delivery_plan(transaction_id=txn.pk, connection=connection, action="invoice.post",
                                  object_type="invoice", object_id=object_id).pk


def test_beyond_the_inline_count_deliveries_go_to_the_broker(inline, memory_erp, sent_tasks, monkeypatch):
    ran = []
    monkeypatch.setattr(services, "delivery_attempt", ran.append)
    connection = Connection.objects.get(name="erp")
    with services._inline_deliveries(), transaction.atomic():
        planned = [_plan(connection, n) for n in (1, 2, 3)]

    assert ran == planned[:1]
    assert [(name, pk) for name, pk, _ in sent_tasks] == [(services.DELIVER_TASK, pk) for pk in planned[1:]]


def test_deliveries_committed_before_a_failure_still_reach_the_broker(inline, memory_erp, sent_tasks, monkeypatch):
    ran = []
    monkeypatch.setattr(services, "delivery_attempt", ran.append)
    connection = Connection.objects.get(name="erp")
    with pytest.raises(RuntimeError), services._inline_deliveries():
        with transaction.atomic():
            planned = _plan(connection, 1)
        raise RuntimeError("after the commit")

    assert ran == [] and sent_tasks == [(services.DELIVER_TASK, planned, None)]


def test_a_rolled_back_plan_is_neither_run_nor_sent(inline, memory_erp, sent_tasks, monkeypatch):
    ran = []
    monkeypatch.setattr(services, "delivery_attempt", ran.append)
    connection = Connection.objects.get(name="erp")
    with services._inline_deliveries(), pytest.raises(RuntimeError), transaction.atomic():
        _plan(connection, 1)
        raise RuntimeError("rolled back")

    assert ran == [] and sent_tasks == [] and not Delivery.objects.exists()
