"""Delivery attempts: classification, backoff, dead-letter, replay, and the sweeper
that recovers what the broker lost."""

import datetime as dt

import pytest
from django.utils import timezone

from connectors.errors import NeedsConfiguration, Permanent, RateLimited, Retryable
from integration_hub.runtime import services
from integration_hub.runtime.models import Delivery, ExceptionRecord, InboundEvent
from tests.helpers import drain

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def posted_event(stripe_connection, legal_entities, memory_erp, sandbox, post_webhook, sent_tasks):
    """One finalized invoice accepted and processed; its post delivery not yet run."""
    invoice = sandbox.finalize(sandbox.invoice("cus_1", [("Plan", 2, 1500)], currency="eur"))
    post_webhook(sandbox.event("invoice.finalized", invoice))
    name, event_id, _ = sent_tasks.pop(0)
    services.inbound_process(event_id)
    return Delivery.objects.get()


def _run(delivery_id):
    services.delivery_attempt(delivery_id)
    return Delivery.objects.get(pk=delivery_id)


def test_a_retryable_error_schedules_a_later_attempt_with_a_row(posted_event, memory_erp, sent_tasks):
    memory_erp.failures.append(Retryable("503 from ERP", http_status=503))
    sent_tasks.clear()
    before = timezone.now()

    delivery = _run(posted_event.pk)

    assert delivery.status == "pending" and delivery.attempts == 1
    assert delivery.next_attempt_at >= before and "503" in delivery.last_error
    attempt = delivery.attempt_log.get()
    assert (attempt.outcome, attempt.http_status, attempt.error_class) == ("retryable", 503, "Retryable")
    # Short backoffs ride a countdown to the same delivery.
    assert [(name, pk) for name, pk, _ in sent_tasks] == [("hub.deliver", delivery.pk)]


def test_retry_after_is_a_floor_for_the_next_attempt(posted_event, memory_erp, sent_tasks, settings):
    memory_erp.failures.append(RateLimited("429", retry_after=120, http_status=429))
    sent_tasks.clear()
    before = timezone.now()

    delivery = _run(posted_event.pk)

    assert delivery.status == "pending"
    assert delivery.next_attempt_at >= before + dt.timedelta(seconds=120)
    assert delivery.attempt_log.get().outcome == "rate_limited"
    # Longer than the re-enqueue window: left to the sweeper, no long countdown in the broker.
    assert sent_tasks == [] and delivery.enqueued_at is None


def test_an_attempt_before_it_is_due_does_nothing(posted_event, memory_erp):
    Delivery.objects.filter(pk=posted_event.pk).update(next_attempt_at=timezone.now() + dt.timedelta(minutes=5))
    delivery = _run(posted_event.pk)
    assert delivery.status == "pending" and delivery.attempts == 0 and memory_erp.calls == []


def test_a_permanent_error_is_dead_lettered_at_once_for_finance(posted_event, memory_erp):
    memory_erp.failures.append(Permanent("tax code unknown in the ERP", http_status=400))
    delivery = _run(posted_event.pk)

    assert delivery.status == "dead" and delivery.attempts == 1
    record = ExceptionRecord.objects.get()
    assert (record.owner_team, record.category, record.delivery_id) == ("finance", "rejected", delivery.pk)
    assert "tax code unknown" in record.summary


def test_needs_configuration_goes_to_it_operations(posted_event, memory_erp):
    memory_erp.failures.append(NeedsConfiguration("ERP rejected the hub's credentials"))
    _run(posted_event.pk)
    assert ExceptionRecord.objects.get().owner_team == "it_operations"


def test_the_retry_budget_ends_in_the_dead_letter(posted_event, memory_erp, settings):
    settings.HUB_DELIVERY_MAX_ATTEMPTS = 3
    memory_erp.failures.extend(Retryable("timeout", outcome_unknown=True) for _ in range(3))
    for _ in range(3):
        Delivery.objects.filter(pk=posted_event.pk).update(next_attempt_at=timezone.now())
        delivery = _run(posted_event.pk)

    assert delivery.status == "dead" and delivery.attempt_log.count() == 3
    record = ExceptionRecord.objects.get()
    assert (record.owner_team, record.category) == ("it_operations", "retries_exhausted")


def test_an_unexpected_exception_is_recorded_and_retried_not_lost(posted_event, memory_erp):
    memory_erp.failures.append(KeyError("bug"))
    delivery = _run(posted_event.pk)
    assert delivery.status == "pending"
    assert delivery.attempt_log.get().outcome == "error"


def test_replay_gives_a_dead_delivery_a_new_budget_and_resolves_its_exception(
    posted_event, memory_erp, sent_tasks, admin_user
):
    memory_erp.failures.append(Permanent("rejected"))
    _run(posted_event.pk)
    sent_tasks.clear()

    services.delivery_replay(Delivery.objects.get(pk=posted_event.pk), user=admin_user, reason="fixed the tax code")
    drain(sent_tasks)

    delivery = Delivery.objects.get(pk=posted_event.pk)
    assert delivery.status == "posted" and delivery.attempt_log.count() == 2
    record = ExceptionRecord.objects.get()
    assert record.status == "resolved" and record.resolved_by == admin_user
    assert "fixed the tax code" in record.resolution


def test_replaying_a_posted_delivery_is_refused(posted_event, memory_erp, admin_user):
    _run(posted_event.pk)
    with pytest.raises(services.InvalidTransition):
        services.delivery_replay(Delivery.objects.get(pk=posted_event.pk), user=admin_user, reason="again")
    assert len(memory_erp.calls) == 1


def test_two_claims_of_one_delivery_yield_one_call(posted_event, memory_erp):
    assert services.delivery_claim(posted_event.pk) is not None
    assert services.delivery_claim(posted_event.pk) is None


def test_the_sweeper_reenqueues_deliveries_whose_message_was_lost(posted_event, sent_tasks, settings):
    sent_tasks.clear()
    assert services.sweep().deliveries_requeued == 0  # just enqueued: not presumed lost yet

    Delivery.objects.filter(pk=posted_event.pk).update(
        enqueued_at=timezone.now() - dt.timedelta(seconds=settings.HUB_REENQUEUE_AFTER_SECONDS + 1)
    )
    report = services.sweep()

    assert report.deliveries_requeued == 1
    assert sent_tasks == [("hub.deliver", posted_event.pk, None)]
    assert services.sweep().deliveries_requeued == 0  # not twice in a row


def test_the_sweeper_reenqueues_unprocessed_inbox_rows(stripe_connection, sandbox, post_webhook, sent_tasks, settings):
    post_webhook(sandbox.event("customer.created", sandbox.customer("Ada", "ada@example.com")))
    sent_tasks.clear()  # the broker lost the message
    InboundEvent.objects.update(enqueued_at=timezone.now() - dt.timedelta(seconds=settings.HUB_REENQUEUE_AFTER_SECONDS + 1))

    assert services.sweep().inbound_requeued == 1
    drain(sent_tasks)
    assert InboundEvent.objects.get().status == "processed"


def test_the_sweeper_does_not_release_a_delivery_waiting_for_its_invoice(
    stripe_connection, legal_entities, memory_erp, sandbox, post_webhook, sent_tasks, settings
):
    memory_erp.failures.append(Permanent("rejected"))
    invoice = sandbox.finalize(sandbox.invoice("cus_1", [("Plan", 1, 1500)], currency="eur"))
    post_webhook(sandbox.event("invoice.paid", sandbox.pay(invoice)))
    drain(sent_tasks)
    Delivery.objects.update(enqueued_at=None)

    services.sweep()
    drain(sent_tasks)

    assert dict(Delivery.objects.values_list("action", "status")) == {"invoice.post": "dead", "invoice.pay": "pending"}
    assert memory_erp.calls == [("post", invoice["id"])]


def test_a_delivery_whose_worker_died_is_recovered_with_a_lost_attempt(posted_event, memory_erp, sent_tasks, settings):
    claimed = services.delivery_claim(posted_event.pk)  # the worker dies right after this
    Delivery.objects.filter(pk=claimed.pk).update(
        claimed_at=timezone.now() - dt.timedelta(seconds=settings.HUB_IN_FLIGHT_LEASE_SECONDS + 1)
    )
    sent_tasks.clear()

    assert services.sweep().in_flight_recovered == 1
    drain(sent_tasks)

    delivery = Delivery.objects.get(pk=posted_event.pk)
    assert delivery.status == "posted"
    assert list(delivery.attempt_log.values_list("outcome", flat=True)) == ["lost", "posted"]


def test_a_binding_conflict_dead_letters_instead_of_looping(posted_event, memory_erp):
    from canonical.models import CrossReference

    # Another invoice already holds the ERP id the target is about to answer with.
    CrossReference.objects.create(system="erp", object_type="invoice", canonical_id=999_999, external_id="1")
    delivery = _run(posted_event.pk)

    assert delivery.status == "dead"
    assert "binding conflicts" in ExceptionRecord.objects.get().summary
    assert list(delivery.attempt_log.values_list("outcome", flat=True)) == ["permanent"]


def test_effects_on_one_invoice_reach_the_erp_one_at_a_time(
    stripe_connection, legal_entities, memory_erp, sandbox, post_webhook, sent_tasks
):
    """A payment in flight holds the credit note of the same invoice (the ERP checks
    them against each other); when the payment is done the credit note is woken."""
    from connectors.base import ExternalDocument

    invoice = sandbox.finalize(sandbox.invoice("cus_1", [("Seats", 4, 2500)], currency="eur"))
    note = sandbox.credit_note(invoice, lines=[(0, 1)])
    post_webhook(sandbox.event("invoice.finalized", invoice))
    post_webhook(sandbox.event("credit_note.created", note))
    post_webhook(sandbox.event("invoice.paid", sandbox.pay(sandbox.apply_credit(invoice, note))))
    for name, event_id, _ in list(sent_tasks):
        if name == "hub.process_inbound":
            services.inbound_process(event_id)
    post, pay, credit = (Delivery.objects.get(action=name) for name in ("invoice.post", "invoice.pay",
                                                                          "credit_note.post"))
    assert pay.serial_key == credit.serial_key == post.serial_key != ""
    assert _run(post.pk).status == "posted"

    in_flight = services.delivery_claim(pay.pk)
    held = _run(credit.pk)

    assert (held.status, held.attempts) == ("held", 0)
    assert held.hold_reason == "waits for invoice.pay on the same invoice"
    assert ("credit", note["id"]) not in memory_erp.calls
    sent_tasks.clear()
    services.delivery_record_success(in_flight, ExternalDocument(external_id="9", state="paid"),
                                     started=timezone.now(), seconds=0.1)
    assert [(name, pk) for name, pk, _ in sent_tasks] == [("hub.deliver", credit.pk)]
    assert _run(credit.pk).status == "posted"


def test_deliveries_on_different_invoices_do_not_wait_for_each_other(posted_event, memory_erp, sandbox, post_webhook,
                                                                     sent_tasks):
    other = sandbox.finalize(sandbox.invoice("cus_2", [("Plan", 1, 900)], currency="eur"))
    sent_tasks.clear()
    post_webhook(sandbox.event("invoice.finalized", other))
    services.inbound_process(sent_tasks[0][1])
    second = Delivery.objects.exclude(pk=posted_event.pk).get()
    assert second.serial_key != posted_event.serial_key

    assert services.delivery_claim(posted_event.pk) is not None
    assert _run(second.pk).status == "posted"
