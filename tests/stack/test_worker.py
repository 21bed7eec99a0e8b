"""The real spine: webhook → inbox → broker → Celery worker process → database, on each
broker the hub supports (``stack_worker``: the configured one and RabbitMQ with quorum queues)."""

import datetime as dt

import pytest
from django.utils import timezone

from canonical.models import CrossReference, Customer
from integration_hub.runtime import services
from integration_hub.runtime.models import InboundEvent
from tests.conftest import wait_for

pytestmark = [pytest.mark.stack, pytest.mark.django_db(transaction=True)]


def test_a_worker_process_handles_an_accepted_event(stack_worker, stripe_connection, sandbox, post_webhook):
    customer = sandbox.customer("Katherine Johnson", "kj@example.com", country="US")
    assert post_webhook(sandbox.event("customer.created", customer)).status_code == 200

    wait_for(lambda: InboundEvent.objects.filter(status="processed").exists(), what="the worker to process the event")
    canonical_id = CrossReference.objects.get(system="stripe", object_type="customer", external_id=customer["id"])
    assert Customer.objects.get(pk=canonical_id.canonical_id).email == "kj@example.com"
    # This broker's worker ran it (on RabbitMQ, the configured broker's worker also runs, idle).
    assert "hub.process_inbound" in stack_worker.log_path.read_text()


def test_a_message_lost_by_the_broker_is_found_by_the_sweeper(
    stack_worker, stripe_connection, sandbox, post_webhook, settings, monkeypatch
):
    from integration_hub.celery import app

    # The broker "loses" the message: nothing is sent when the event is accepted.
    monkeypatch.setattr(app, "send_task", lambda *args, **kwargs: None)
    customer = sandbox.customer("Dorothy Vaughan", "dv@example.com")
    assert post_webhook(sandbox.event("customer.created", customer)).status_code == 200
    monkeypatch.undo()
    event = InboundEvent.objects.get()
    assert event.status == "received"

    InboundEvent.objects.update(enqueued_at=timezone.now() - dt.timedelta(seconds=settings.HUB_REENQUEUE_AFTER_SECONDS + 1))
    assert services.sweep().inbound_requeued == 1

    wait_for(lambda: InboundEvent.objects.filter(pk=event.pk, status="processed").exists(), what="the sweep")
