"""The whole stack: signed Stripe webhooks → inbox → broker → a real Celery worker
process → the real Tryton ERP. Assertions are about what is in the ERP."""

from decimal import Decimal

import pytest

from canonical.models import CrossReference, Invoice
from connectors.services import connection_upsert
from integration_hub.runtime.models import Delivery, ExceptionRecord
from tests.conftest import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.stack, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def hub(celery_worker_process, tryton_server, stripe_connection, legal_entities):
    connection_upsert(
        name="tryton", vendor="tryton", role="erp",
        config=tryton_server.connection_config(), credentials=tryton_server.credentials(),
    )


def settled(count: int):
    """All ``count`` deliveries have finished (posted or dead)."""
    def check():
        done = Delivery.objects.filter(status__in=["posted", "dead"]).count()
        return done == count and not Delivery.objects.exclude(status__in=["posted", "dead"]).exists()
    return check


def test_the_same_invoice_event_three_times_posts_one_erp_invoice(hub, erp, sandbox, post_webhook):
    customer = sandbox.customer("Ada Lovelace Ltd", "ap@ada.example", country="US")
    invoice = sandbox.finalize(sandbox.invoice(customer, [("Seats", 4, 2500), ("Setup", 1, 5000)], currency="usd"))
    event = sandbox.event("invoice.finalized", invoice)
    for _ in range(3):
        assert post_webhook(event).status_code == 200
    assert post_webhook(sandbox.event("invoice.finalized", invoice)).status_code == 200  # a second event id

    wait_for(settled(1), what="the invoice to post")
    [posted] = erp.invoices(reference=invoice["id"])
    assert posted["state"] == "posted" and posted["number"]
    assert (posted["currency"], posted["untaxed_amount"], posted["tax_amount"], posted["total_amount"]) == (
        "USD", Decimal("150.00"), Decimal("15.00"), Decimal("165.00")
    )
    xref = CrossReference.objects.get(system="tryton", object_type="invoice")
    assert (xref.external_id, xref.external_number) == (str(posted["id"]), posted["number"])
    assert xref.canonical_id == Invoice.objects.get(source_id=invoice["id"]).pk


def test_zero_decimal_and_euro_invoices_in_any_order_converge(hub, erp, sandbox, post_webhook):
    jpy = sandbox.finalize(sandbox.invoice(sandbox.customer("Sakura KK", "k@sakura.example", country="JP"),
                                           [("Licence", 3, 12000)], currency="jpy"))
    eur = sandbox.finalize(sandbox.invoice(sandbox.customer("Müller GmbH", "r@mueller.example", country="DE"),
                                           [("Monitoring", 12, 3000)], currency="eur"))
    for event in [
        sandbox.event("invoice.paid", sandbox.pay(jpy)),  # paid before finalized
        sandbox.event("invoice.finalized", eur),
        sandbox.event("invoice.finalized", jpy),
    ]:
        assert post_webhook(event).status_code == 200

    wait_for(settled(3), what="posting and payment")
    [yen] = erp.invoices(reference=jpy["id"])
    [euro] = erp.invoices(reference=eur["id"])
    assert (yen["currency"], yen["total_amount"], yen["state"]) == ("JPY", Decimal("39600"), "paid")
    assert (euro["currency"], euro["total_amount"], euro["state"]) == ("EUR", Decimal("396.00"), "posted")
    assert yen["company"] != euro["company"]
    assert set(Delivery.objects.values_list("status", flat=True)) == {"posted"}


def test_a_voided_invoice_is_credited_in_the_erp(hub, erp, sandbox, post_webhook):
    invoice = sandbox.finalize(sandbox.invoice("cus_void", [("Mistake", 1, 9900)], currency="eur"))
    post_webhook(sandbox.event("invoice.finalized", invoice))
    post_webhook(sandbox.event("invoice.voided", sandbox.void(invoice)))

    wait_for(settled(2), what="post and void")
    [original] = erp.invoices(reference=invoice["id"])
    assert original["state"] == "cancelled"
    [credit] = erp.credit_notes(original["id"])
    assert credit["total_amount"] == -original["total_amount"]


def test_an_invoice_the_erp_cannot_book_opens_a_finance_exception_and_leaves_nothing(
    hub, erp, sandbox, post_webhook
):
    invoice = sandbox.finalize(sandbox.invoice("cus_tax", [("Item", 1, 10000)], currency="usd", tax_percent=16))
    post_webhook(sandbox.event("invoice.finalized", invoice))

    # The posting policy maps 10 % and 0 % only: a 16 % line is a policy gap, found
    # before any delivery is planned.
    record = wait_for(lambda: ExceptionRecord.objects.first(), what="the policy exception")
    assert (record.owner_team, record.category, record.status) == ("finance", "policy", "open")
    assert "at an unstated rate (tax 1600 on 10000" in record.summary
    assert not Delivery.objects.exists()
    assert erp.invoices(reference=invoice["id"]) == []


def _erp_amounts(erp, reference):
    [record] = erp.client.call("account.invoice", "search_read", [("reference", "=", reference)], 0, None, None,
                               ["state", "amount_to_pay", "total_amount"])
    return record["state"], Decimal(record["amount_to_pay"])


def test_a_partial_credit_note_leaves_the_erp_balance_equal_to_billings(hub, erp, sandbox, post_webhook):
    invoice = sandbox.finalize(sandbox.invoice("cus_credit", [("Seats", 4, 2500), ("Setup", 1, 5000)]))
    note = sandbox.credit_note(invoice, lines=[(0, 1)], amount=1234)  # a seat, and 12.34 by amount
    billing = sandbox.apply_credit(invoice, note)
    post_webhook(sandbox.event("credit_note.created", note))  # before its invoice: it waits
    post_webhook(sandbox.event("invoice.finalized", invoice))

    wait_for(settled(2), what="the invoice and its credit note")
    assert _erp_amounts(erp, invoice["id"]) == ("posted", Decimal(billing["amount_remaining"]) / 100)
    [credit] = erp.invoices(reference=note["id"])
    assert credit["total_amount"] == -Decimal(note["total"]) / 100


def test_a_refund_reverses_its_payment(hub, erp, sandbox, post_webhook):
    invoice = sandbox.finalize(sandbox.invoice("cus_refund", [("Seats", 2, 5000)]))
    paid = sandbox.pay(invoice)
    refund = sandbox.refund(sandbox.payment_of(paid), 4400)
    for event in [sandbox.event("refund.created", refund), sandbox.event("invoice.paid", paid)]:
        post_webhook(event)

    wait_for(settled(3), what="post, payment and refund")
    assert Delivery.objects.get(action="refund.post").status == "posted"
    lines = erp.client.call("account.move.line", "search_read",
                            [("move.description", "=", f"stripe refund {refund['id']}")], 0, None, None,
                            ["debit", "credit"])
    assert sorted((Decimal(line["debit"]), Decimal(line["credit"])) for line in lines) == [
        (Decimal(0), Decimal("44.00")), (Decimal("44.00"), Decimal(0))]


def test_two_partial_payments_close_the_invoice(hub, erp, sandbox, post_webhook):
    invoice = sandbox.finalize(sandbox.invoice("cus_parts", [("Licence", 1, 20000)]))  # 220.00
    first, part_paid = sandbox.pay_part(invoice, 12000)
    second, paid = sandbox.pay_part(part_paid, 10000)
    for event in [sandbox.event("invoice_payment.paid", second), sandbox.event("invoice.finalized", invoice),
                  sandbox.event("invoice_payment.paid", first)]:
        post_webhook(event)

    wait_for(settled(3), what="post and both payments")
    assert paid["status"] == "paid"
    assert _erp_amounts(erp, invoice["id"]) == ("paid", Decimal(0))


def test_an_uncollectible_invoice_is_written_off_to_its_account(hub, erp, sandbox, post_webhook, legal_entities,
                                                                 tryton_server):
    account = tryton_server.info["write_off_accounts"]["USD"]
    legal_entities["US"].write_off_account = account
    legal_entities["US"].save()
    invoice = sandbox.finalize(sandbox.invoice("cus_gone", [("Licence", 1, 7000)]))
    post_webhook(sandbox.event("invoice.marked_uncollectible", sandbox.mark_uncollectible(invoice)))

    wait_for(settled(2), what="post and write-off")
    assert _erp_amounts(erp, invoice["id"]) == ("paid", Decimal(0))
    [write_off] = erp.client.call("account.move.line", "search_read",
                                  [("account.code", "=", account), ("debit", "=", Decimal("77.00"))], 0, None,
                                  [("id", "DESC")], ["debit"])
    assert Decimal(write_off["debit"]) == Decimal("77.00")
