"""Invoice adjustments with the broker recorded and the ERP in memory: credit notes,
partial payments, refunds, lost disputes and write-offs are planned once, after the
invoice's post, and converge whatever order billing's events arrive in."""

import itertools

import pytest

from canonical.models import CreditNote, Invoice, Payment, Refund
from integration_hub.runtime.models import Delivery, ExceptionRecord, InboundEvent
from tests.helpers import drain

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def hub(stripe_connection, legal_entities, memory_erp, sent_tasks):
    return memory_erp


@pytest.fixture
def invoice(sandbox):
    customer = sandbox.customer("Grace Hopper", "grace@example.com", country="US")
    return sandbox.finalize(sandbox.invoice(customer, [("Seats", 4, 2500), ("Support", 1, 1000)], currency="usd"))


def retry_waiting(sent_tasks, rounds=6):
    """What the backoff (or the sweeper) does: process again the events still waiting."""
    for _ in range(rounds):
        for event in InboundEvent.objects.filter(status="received"):
            sent_tasks.append(("hub.process_inbound", event.pk, None))
        drain(sent_tasks, include_delayed=True)


def actions():
    return sorted(Delivery.objects.values_list("action", "status"))


def test_a_partial_credit_note_posts_after_the_invoice_once(hub, post_webhook, sandbox, invoice, sent_tasks):
    note = sandbox.credit_note(invoice, lines=[(0, 1)])
    post_webhook(sandbox.event("invoice.finalized", invoice))
    for _ in range(2):
        post_webhook(sandbox.event("credit_note.created", note))
    post_webhook(sandbox.event("credit_note.updated", note))
    drain(sent_tasks)

    record = CreditNote.objects.get()
    assert (record.total, record.pre_payment_amount, record.invoice.source_id) == (2750, 2750, invoice["id"])
    assert record.lines.get().invoice_line_ref == invoice["lines"]["data"][0]["id"]
    assert actions() == [("credit_note.post", "posted"), ("invoice.post", "posted")]
    credit = Delivery.objects.get(action="credit_note.post")
    assert credit.after.action == "invoice.post"
    assert [call for call in hub.calls if call[0] == "credit"] == [("credit", note["id"])]


def test_a_credit_note_before_its_invoice_waits_and_then_posts(hub, post_webhook, sandbox, invoice, sent_tasks):
    post_webhook(sandbox.event("credit_note.created", sandbox.credit_note(invoice, amount=1000)))
    drain(sent_tasks)
    event = InboundEvent.objects.get()
    assert event.status == "received" and event.attempts == 1  # retried later, not failed

    post_webhook(sandbox.event("invoice.finalized", invoice))
    drain(sent_tasks)
    retry_waiting(sent_tasks, rounds=1)

    assert InboundEvent.objects.filter(status="processed").count() == 2
    assert actions() == [("credit_note.post", "posted"), ("invoice.post", "posted")]


def test_a_credit_note_whose_invoice_never_comes_opens_a_finance_exception(
    hub, post_webhook, sandbox, invoice, sent_tasks, settings
):
    settings.HUB_INBOUND_MAX_ATTEMPTS = 2
    post_webhook(sandbox.event("credit_note.created", sandbox.credit_note(invoice, amount=1000)))
    drain(sent_tasks)
    retry_waiting(sent_tasks, rounds=1)

    record = ExceptionRecord.objects.get()
    assert (record.owner_team, record.category) == ("finance", "retries_exhausted")
    assert "has not processed yet" in record.summary
    assert not CreditNote.objects.exists() and not Delivery.objects.exists()


def test_a_credit_note_in_another_currency_is_refused_for_finance(hub, post_webhook, sandbox, invoice, sent_tasks):
    note = sandbox.credit_note(invoice, amount=1000)
    note["currency"] = "eur"
    post_webhook(sandbox.event("invoice.finalized", invoice))
    post_webhook(sandbox.event("credit_note.created", note))
    drain(sent_tasks)

    record = ExceptionRecord.objects.get()
    assert (record.owner_team, record.category) == ("finance", "rejected")
    assert "is in EUR" in record.summary
    assert not CreditNote.objects.exists()


def test_a_voided_credit_note_is_posted_then_voided_in_either_order(hub, post_webhook, sandbox, invoice, sent_tasks):
    note = sandbox.credit_note(invoice, amount=1000)
    voided = sandbox.void_credit_note(note)
    post_webhook(sandbox.event("invoice.finalized", invoice))
    post_webhook(sandbox.event("credit_note.voided", voided))
    post_webhook(sandbox.event("credit_note.created", note))
    drain(sent_tasks)

    assert CreditNote.objects.get().status == "void"
    assert actions() == [("credit_note.post", "posted"), ("credit_note.void", "posted"), ("invoice.post", "posted")]
    assert Delivery.objects.get(action="credit_note.void").after.action == "credit_note.post"


def test_two_partial_payments_are_two_erp_payments(hub, post_webhook, sandbox, invoice, sent_tasks):
    first, invoice_after_first = sandbox.pay_part(invoice, 6000)
    second, paid = sandbox.pay_part(invoice_after_first, paid_rest := invoice_after_first["amount_remaining"])
    for event in [sandbox.event("invoice_payment.paid", second), sandbox.event("invoice.finalized", invoice),
                  sandbox.event("invoice_payment.paid", first), sandbox.event("invoice.paid", paid)]:
        post_webhook(event)
    drain(sent_tasks)
    retry_waiting(sent_tasks)

    assert sorted(Payment.objects.values_list("amount", flat=True)) == sorted([6000, paid_rest])
    assert Invoice.objects.get().status == "paid"
    assert actions() == [("invoice.pay", "posted"), ("invoice.pay", "posted"), ("invoice.post", "posted")]


def test_a_refund_reverses_its_payment_after_the_payment(hub, post_webhook, sandbox, invoice, sent_tasks):
    paid = sandbox.pay(invoice)
    refund = sandbox.refund(sandbox.payment_of(paid), 3000)
    for event in [sandbox.event("invoice.paid", paid), sandbox.event("refund.created", refund),
                  sandbox.event("refund.updated", refund)]:
        post_webhook(event)
    drain(sent_tasks)

    assert Refund.objects.get().amount == 3000
    delivery = Delivery.objects.get(action="refund.post")
    assert (delivery.status, delivery.after.action) == ("posted", "invoice.pay")
    assert hub.refunds_via == {refund["id"]: "reversal"}


def test_a_pending_refund_waits_for_success(hub, post_webhook, sandbox, invoice, sent_tasks):
    paid = sandbox.pay(invoice)
    pending = sandbox.refund(sandbox.payment_of(paid), 3000, status="pending")
    post_webhook(sandbox.event("invoice.paid", paid))
    post_webhook(sandbox.event("refund.created", pending))
    drain(sent_tasks)
    assert not Delivery.objects.filter(action="refund.post").exists()

    post_webhook(sandbox.event("refund.updated", {**pending, "status": "succeeded"}))
    drain(sent_tasks)
    assert Delivery.objects.get(action="refund.post").status == "posted"


def test_a_refund_named_by_a_credit_note_pays_the_credit_note_out(hub, post_webhook, sandbox, invoice, sent_tasks):
    paid = sandbox.pay(invoice)
    refund = sandbox.refund(sandbox.payment_of(paid), 2750)
    note = sandbox.credit_note(paid, lines=[(0, 1)], refund=refund)
    for event in [sandbox.event("invoice.paid", paid), sandbox.event("credit_note.created", note),
                  sandbox.event("refund.created", refund)]:
        post_webhook(event)
    drain(sent_tasks)

    assert CreditNote.objects.get().refund_refs == [refund["id"]]
    assert hub.refunds_via == {refund["id"]: f"via {note['id']}"}


def test_a_refund_of_more_than_its_payment_is_refused(hub, post_webhook, sandbox, invoice, sent_tasks):
    paid = sandbox.pay(invoice)
    post_webhook(sandbox.event("invoice.paid", paid))
    post_webhook(sandbox.event("refund.created", sandbox.refund(sandbox.payment_of(paid), paid["amount_paid"] + 1)))
    drain(sent_tasks)
    assert ExceptionRecord.objects.get().category == "rejected"
    assert not Refund.objects.exists()


@pytest.mark.parametrize(("status", "books_move"), [("lost", True), ("won", False), ("warning_closed", False)])
def test_a_lost_dispute_reverses_the_payment_and_a_won_one_changes_nothing(
    hub, post_webhook, sandbox, invoice, sent_tasks, status, books_move
):
    paid = sandbox.pay(invoice)
    dispute = sandbox.dispute(sandbox.payment_of(paid), paid["amount_paid"], status=status)
    post_webhook(sandbox.event("invoice.paid", paid))
    post_webhook(sandbox.event("charge.dispute.created", {**dispute, "status": "needs_response"}))
    post_webhook(sandbox.event("charge.dispute.closed", dispute))
    drain(sent_tasks)

    assert Delivery.objects.filter(action="refund.post").exists() is books_move
    if books_move:
        assert Refund.objects.get().kind == "dispute_lost"
    else:
        assert InboundEvent.objects.filter(status="ignored").count() == 2


def test_an_uncollectible_invoice_is_written_off_to_the_policy_account(
    hub, post_webhook, sandbox, invoice, sent_tasks, legal_entities
):
    legal_entities["US"].write_off_account = "6.1.9"
    legal_entities["US"].save()
    post_webhook(sandbox.event("invoice.marked_uncollectible", sandbox.mark_uncollectible(invoice)))
    drain(sent_tasks)

    assert Invoice.objects.get().status == "uncollectible"
    assert actions() == [("invoice.post", "posted"), ("invoice.write_off", "posted")]
    assert hub.write_off_accounts == ["6.1.9"]


def test_a_write_off_without_a_policy_account_waits_for_finance(hub, post_webhook, sandbox, invoice, sent_tasks):
    post_webhook(sandbox.event("invoice.marked_uncollectible", sandbox.mark_uncollectible(invoice)))
    drain(sent_tasks)

    assert Delivery.objects.get(action="invoice.write_off").status == "dead"
    record = ExceptionRecord.objects.get()
    assert (record.owner_team, record.category) == ("finance", "policy")


@pytest.mark.parametrize(("kind", "action"), [("refund", "refund.post"), ("credit", "credit_note.post")])
def test_after_an_unknown_outcome_the_retry_looks_the_adjustment_up(
    hub, post_webhook, sandbox, invoice, sent_tasks, kind, action
):
    from django.utils import timezone

    from connectors.base import ExternalDocument
    from connectors.errors import Retryable
    from integration_hub.runtime import services

    paid = sandbox.pay(invoice)
    refund = sandbox.refund(sandbox.payment_of(paid), 1000)
    note = sandbox.credit_note(paid, amount=1000, out_of_band_amount=1100)
    post_webhook(sandbox.event("invoice.paid", paid))
    post_webhook(sandbox.event("refund.created", refund) if kind == "refund" else
                 sandbox.event("credit_note.created", note))
    source_id = refund["id"] if kind == "refund" else note["id"]
    # The ERP booked it, but the answer was lost.
    hub.documents[f"{kind}:{source_id}"] = ExternalDocument(external_id="77", state="posted")
    original = hub.handle

    def lose_the_answer(operation, reference):
        if operation == kind:
            hub.calls.append((operation, reference))
            raise Retryable("read timed out after sending", outcome_unknown=True)
        return original(operation, reference)

    hub.handle = lose_the_answer
    try:
        drain(sent_tasks)
    finally:
        del hub.handle
    delivery = Delivery.objects.get(action=action)
    assert delivery.status == "pending" and delivery.lookup_first
    Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())
    services.delivery_attempt(delivery.pk)

    delivery.refresh_from_db()
    assert (delivery.status, delivery.external_id) == ("posted", "77")
    assert [call for call in hub.calls if call[1] == source_id] == [
        (kind, source_id), (f"find_{'refund' if kind == 'refund' else 'credit'}", source_id)]


EVENT_ORDERS = list(itertools.permutations(range(4)))[::5]


@pytest.mark.parametrize("order", EVENT_ORDERS)
def test_an_invoice_and_its_adjustments_converge_in_any_order(hub, post_webhook, sandbox, invoice, sent_tasks, order):
    note = sandbox.credit_note(invoice, lines=[(1, 1)])
    credited = sandbox.apply_credit(invoice, note)
    paid = sandbox.pay(credited)
    refund = sandbox.refund(sandbox.payment_of(paid), 2000)
    events = [sandbox.event("invoice.finalized", invoice), sandbox.event("credit_note.created", note),
              sandbox.event("invoice.paid", paid), sandbox.event("refund.created", refund)]
    for index in order:
        post_webhook(events[index])
        post_webhook(events[index])  # and each delivered twice
    drain(sent_tasks)
    retry_waiting(sent_tasks)  # adjustments that came first are retried until their invoice is in

    assert InboundEvent.objects.exclude(status="processed").count() == 0
    assert actions() == [("credit_note.post", "posted"), ("invoice.pay", "posted"), ("invoice.post", "posted"),
                         ("refund.post", "posted")]
    assert sorted(call[0] for call in hub.calls if not call[0].startswith("find")) == [
        "credit", "pay", "post", "refund"]
