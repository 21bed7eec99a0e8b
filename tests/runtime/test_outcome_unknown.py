"""An attempt whose outcome is unknown is recorded as such, and the next attempt looks
the effect up before it may send (create) again."""

import datetime as dt

import pytest
from django.utils import timezone

from connectors.base import ExternalDocument
from connectors.errors import Permanent, Retryable
from integration_hub.runtime import services
from integration_hub.runtime.models import Delivery

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def post(stripe_connection, legal_entities, memory_erp, sandbox, post_webhook, sent_tasks):
    invoice = sandbox.finalize(sandbox.invoice("cus_1", [("Plan", 1, 900)], currency="usd"))
    post_webhook(sandbox.event("invoice.finalized", invoice))
    services.inbound_process(sent_tasks.pop(0)[1])
    sent_tasks.clear()
    return Delivery.objects.get(), invoice["id"]


def _attempt(delivery):
    Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())  # due now, not after backoff
    services.delivery_attempt(delivery.pk)
    return Delivery.objects.get(pk=delivery.pk)


def test_after_a_timeout_the_retry_finds_the_posted_invoice_and_does_not_post_again(post, memory_erp):
    delivery, reference = post
    # The ERP posted the invoice, but the answer never came back.
    memory_erp.documents[f"post:{reference}"] = ExternalDocument(external_id="77", number="INV-77", state="posted")
    memory_erp.failures.append(Retryable("read timed out after sending", outcome_unknown=True))

    delivery = _attempt(delivery)
    first = delivery.attempt_log.get()
    assert delivery.status == "pending" and delivery.lookup_first
    assert (first.outcome, first.outcome_unknown) == ("retryable", True)

    delivery = _attempt(delivery)
    assert delivery.status == "posted" and delivery.external_id == "77" and not delivery.lookup_first
    assert memory_erp.calls == [("post", reference), ("find", reference)]  # looked up, not posted twice
    assert "found in the target" in delivery.attempt_log.get(number=2).message


def test_when_the_lookup_finds_nothing_the_document_is_sent(post, memory_erp):
    delivery, reference = post
    memory_erp.failures.append(Retryable("connection reset after sending", outcome_unknown=True))
    _attempt(delivery)

    delivery = _attempt(delivery)
    assert delivery.status == "posted"
    assert memory_erp.calls == [("post", reference), ("find", reference), ("post", reference)]


def test_a_known_failure_sends_again_without_a_lookup(post, memory_erp):
    delivery, reference = post
    memory_erp.failures.append(Retryable("503: the ERP did nothing", http_status=503))
    delivery = _attempt(delivery)
    assert not delivery.attempt_log.get().outcome_unknown and not delivery.lookup_first

    _attempt(delivery)
    assert memory_erp.calls == [("post", reference), ("post", reference)]


def test_once_unknown_every_later_attempt_looks_up_even_after_known_failures(post, memory_erp):
    delivery, reference = post
    memory_erp.failures.extend([
        Retryable("timed out", outcome_unknown=True),
        Permanent("the lookup itself was refused"),
    ])
    _attempt(delivery)  # unknown
    delivery = _attempt(delivery)  # the lookup fails with a known error: dead-lettered
    assert delivery.status == "dead" and delivery.lookup_first

    services.delivery_replay(delivery, user=None, reason="fixed")
    delivery = _attempt(delivery)
    assert delivery.status == "posted"
    assert memory_erp.calls == [("post", reference), ("find", reference), ("find", reference), ("post", reference)]


def test_a_worker_lost_mid_call_counts_as_an_unknown_outcome(post, memory_erp, settings):
    delivery, _ = post
    Delivery.objects.filter(pk=delivery.pk).update(
        status="in_flight", attempts=1,
        claimed_at=timezone.now() - dt.timedelta(seconds=settings.HUB_IN_FLIGHT_LEASE_SECONDS + 1),
    )
    services.sweep()
    delivery = Delivery.objects.get(pk=delivery.pk)
    lost = delivery.attempt_log.get()
    assert (lost.outcome, lost.outcome_unknown, delivery.lookup_first) == ("lost", True, True)


def test_the_lookup_after_an_unknown_outcome_waits_for_the_target_to_settle(post, memory_erp, settings):
    """A target may still be working on the call the hub gave up on: looking it up at
    once would miss it and send a second document."""
    settings.HUB_UNKNOWN_OUTCOME_SETTLE_SECONDS = 10
    settings.HUB_RETRY_BASE_SECONDS = settings.HUB_RETRY_CAP_SECONDS = 0.1
    delivery, _ = post
    before = timezone.now()
    memory_erp.failures.append(Retryable("read timed out", outcome_unknown=True))
    unknown = _attempt(delivery)
    assert unknown.next_attempt_at >= before + dt.timedelta(seconds=10)

    memory_erp.failures.append(Retryable("503, nothing done"))
    known = _attempt(unknown)  # a known failure keeps the short backoff
    assert known.next_attempt_at < timezone.now() + dt.timedelta(seconds=1)
