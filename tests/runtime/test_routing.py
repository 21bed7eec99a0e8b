"""Queues per workflow class: every sender of an inbound event or a delivery — the first
send, a retry, a hold, a wake, a replay, the sweeper — puts it on its workflow's queue."""

import datetime as dt
import time
import uuid

import pytest
from django.utils import timezone

from connectors.errors import Permanent, Retryable
from integration_hub.runtime import dispatch, routing, services
from integration_hub.runtime.models import BusinessTransaction, Delivery, InboundEvent

pytestmark = pytest.mark.django_db(transaction=True)

# What each workflow's work must never wait behind decides its class.
CLASS_OF = {
    "invoice_posting": "finance", "subscription_amendment": "finance", "exchange_rates": "finance",
    "customer_onboarding": "customer", "billing_customer_changes": "customer", "quote_to_cash": "customer",
    "catalog": "catalog", "usage_aggregation": "usage",
}
ACTIONS = [(action.name, workflow.name) for workflow in dispatch.workflows() for action in workflow.actions]
SUBJECTS = [(kind, workflow.name) for workflow in dispatch.workflows() for kind in workflow.subjects]


@pytest.fixture
def routed(monkeypatch) -> list[tuple[str, int, str | None]]:
    """What the hub sends to the broker, with the queue it chose (None: the task's route)."""
    from integration_hub.celery import app

    sent: list[tuple[str, int, str | None]] = []

    def record(name, args=None, countdown=None, queue=None, **options):
        sent.append((name, args[0], queue))

    monkeypatch.setattr(app, "send_task", record)
    return sent


def _queue(workflow: str, settings) -> str:
    return settings.HUB_QUEUES[CLASS_OF[workflow]]


def test_every_workflow_has_the_queue_class_of_its_work():
    assert {workflow.name: workflow.queue for workflow in dispatch.workflows()} == CLASS_OF


def test_the_settings_name_a_queue_for_every_class(settings):
    assert set(settings.HUB_QUEUES) == set(dispatch.QueueClass)
    assert settings.HUB_QUEUES["default"] == settings.CELERY_TASK_DEFAULT_QUEUE
    assert settings.HUB_QUEUES["finance"] == f"{settings.CELERY_TASK_DEFAULT_QUEUE}-finance"
    # A worker without -Q consumes every one of them.
    assert {queue.name for queue in settings.CELERY_TASK_QUEUES} == set(settings.HUB_QUEUES.values())


def test_work_no_workflow_claims_stays_on_the_default_queue(settings):
    assert routing.inbound_queue("no-such-kind") == settings.CELERY_TASK_DEFAULT_QUEUE
    assert routing.delivery_queue("no-such-action") == settings.CELERY_TASK_DEFAULT_QUEUE


@pytest.mark.parametrize(("action", "workflow"), ACTIONS)
def test_a_delivery_stays_on_its_workflows_queue_through_retry_hold_wake_replay_and_sweep(
    action, workflow, stripe_connection, routed, settings
):
    queue = _queue(workflow, settings)
    txn = BusinessTransaction.objects.create(kind="test", subject=f"test:{uuid.uuid4()}")
    delivery = services.delivery_plan(transaction_id=txn.pk, connection=stripe_connection, action=action,
                                      object_type="test", object_id=1)
    now = timezone.now()

    claimed = services.delivery_claim(delivery.pk)
    services.delivery_record_failure(claimed, Retryable("503"), started=now, seconds=0)  # a countdown retry
    Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=now)
    services.delivery_hold(services.delivery_claim(delivery.pk), reason="slots", until=time.time() + 1)
    services.delivery_wake(delivery.pk)
    Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=now)
    services.delivery_record_failure(services.delivery_claim(delivery.pk), Permanent("400"), started=now, seconds=0)
    services.delivery_replay(Delivery.objects.get(pk=delivery.pk), user=None, reason="fixed")
    Delivery.objects.filter(pk=delivery.pk).update(enqueued_at=now - dt.timedelta(hours=1))
    assert services.sweep().deliveries_requeued == 1

    # plan, retry, hold, wake, replay, sweep: six sends, all to the workflow's queue.
    assert routed == [(services.DELIVER_TASK, delivery.pk, queue)] * 6


@pytest.mark.parametrize(("kind", "workflow"), SUBJECTS)
def test_an_inbound_event_stays_on_its_workflows_queue_through_retry_replay_and_sweep(
    kind, workflow, stripe_connection, routed, settings, monkeypatch
):
    queue = _queue(workflow, settings)
    txn = BusinessTransaction.objects.create(kind=kind, subject=f"stripe:{kind}:{uuid.uuid4()}")
    event = InboundEvent.objects.create(transaction=txn, source="stripe", external_id=str(uuid.uuid4()),
                                        event_type="test", payload={}, occurred_at=timezone.now())

    def unreachable(event_type, payload, system):
        raise Retryable("the source did not answer")

    monkeypatch.setattr(services.registry, "event_translator", lambda vendor: unreachable)
    services.inbound_process(event.pk)  # retried after a backoff
    InboundEvent.objects.filter(pk=event.pk).update(enqueued_at=timezone.now() - dt.timedelta(hours=1))
    assert services.sweep().inbound_requeued == 1
    InboundEvent.objects.filter(pk=event.pk).update(status=InboundEvent.Status.FAILED)
    services.inbound_replay(InboundEvent.objects.get(pk=event.pk), user=None, reason="fixed")

    assert routed == [(services.PROCESS_TASK, event.pk, queue)] * 3


def test_an_accepted_webhook_goes_to_the_queue_of_its_business_object(
    stripe_connection, sandbox, post_webhook, routed, settings
):
    customer = sandbox.customer("Ada Lovelace", "ada@example.com")
    invoice = sandbox.finalize(sandbox.invoice(customer, [("Seats", 1, 2500)]))
    post_webhook(sandbox.event("customer.created", customer))
    post_webhook(sandbox.event("invoice.finalized", invoice))
    assert [queue for _, _, queue in routed] == [settings.HUB_QUEUES["customer"], settings.HUB_QUEUES["finance"]]
