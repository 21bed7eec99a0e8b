"""The Tryton connector's adjustments against the real ERP: credit notes (full, by
line, by amount), refunds (through a credit note and as a reversal), partial payments
and write-offs. Documents come from the Stripe sandbox through the hub's mapping, so
what the ERP ends with is compared with what billing says, to the minor unit."""

import random
import uuid
from decimal import Decimal

import pytest

from connectors.errors import NeedsConfiguration, Permanent, Retryable
from connectors.stripe.adjustments import credit_note_from_stripe, refund_from_stripe
from connectors.stripe.mapping import invoice_from_stripe, invoice_payment_from_stripe
from connectors.stripe.sandbox import LEGACY, StripeSandbox
from connectors.tryton.connector import TrytonConnector
from tests.conftest import WEBHOOK_SECRET

pytestmark = pytest.mark.e2e


@pytest.fixture
def connector(tryton_server):
    instance = TrytonConnector(config=tryton_server.connection_config(), credentials=tryton_server.credentials())
    yield instance
    instance.close()


@pytest.fixture(params=["basil", "legacy"])
def billing(request):
    version = {"legacy": LEGACY}.get(request.param)
    kwargs = {"api_version": version} if version else {}
    return StripeSandbox(WEBHOOK_SECRET, seed=random.getrandbits(64), **kwargs)


def _customer(billing):
    return billing.customer(f"Adjusted {uuid.uuid4().hex[:6]}", "ap@adjusted.example", country="US")


def _open_invoice(billing, connector, lines=(("Seats", 4, 2500), ("Setup", 1, 5000))):
    invoice = billing.finalize(billing.invoice(_customer(billing), list(lines), currency="usd"))
    contract = invoice_from_stripe(invoice)
    # The canonical customer id decides the ERP party code; any unique number does here.
    contract = contract.model_copy(update={"customer": contract.customer.model_copy(
        update={"canonical_id": random.randrange(10**8, 10**9)})})
    connector.post_invoice(contract, legal_entity="US", idempotency_key="post")
    return invoice, contract


def _erp_invoice(connector, reference):
    company = connector._company("US")
    found = connector._find_invoice(company, reference)
    record, = connector.client.call("account.invoice", "read", [found["id"]],
                                    ["state", "total_amount", "amount_to_pay"], context={"company": company})
    return record


def test_a_partial_credit_note_by_line_leaves_the_erp_owing_what_billing_does(connector, billing, erp):
    invoice, contract = _open_invoice(billing, connector)
    note = billing.credit_note(invoice, lines=[(0, 1)])  # one of four seats: 25.00 + 2.50 tax
    after = billing.apply_credit(invoice, note)
    credit = credit_note_from_stripe(note)

    document = connector.post_credit_note(credit, contract, legal_entity="US", idempotency_key="credit")
    again = connector.post_credit_note(credit, contract, legal_entity="US", idempotency_key="credit")

    assert again.external_id == document.external_id
    [erp_note] = erp.invoices(reference=note["id"])
    assert (erp_note["state"], erp_note["total_amount"]) == ("posted", Decimal("-27.50"))
    assert erp.credit_notes(int(document.related["invoice"])) == [erp_note]  # its lines credit the invoice's
    original = _erp_invoice(connector, invoice["id"])
    assert original["state"] == "posted"
    assert Decimal(original["amount_to_pay"]) == Decimal(after["amount_remaining"]) / 100 == Decimal("137.50")
    assert connector.find_credit_note(credit, legal_entity="US").external_id == document.external_id


def test_a_credit_by_amount_and_a_full_credit_settle_the_invoice(connector, billing, erp):
    invoice, contract = _open_invoice(billing, connector, lines=(("Consulting", 2, 10000),))
    by_amount = billing.credit_note(invoice, amount=5000, memo="Goodwill")  # 50.00 + 5.00 tax
    invoice = billing.apply_credit(invoice, by_amount)
    connector.post_credit_note(credit_note_from_stripe(by_amount), contract, legal_entity="US", idempotency_key="a")
    assert Decimal(_erp_invoice(connector, invoice["id"])["amount_to_pay"]) == Decimal("165.00")

    rest = billing.credit_note(invoice, lines=[(0, 1)], amount=5000)  # the other 165.00
    invoice = billing.apply_credit(invoice, rest)
    connector.post_credit_note(credit_note_from_stripe(rest), contract, legal_entity="US", idempotency_key="b")

    assert invoice["amount_remaining"] == 0 and invoice["status"] == "paid"
    assert _erp_invoice(connector, invoice["id"])["state"] == "paid"
    assert [n["state"] for n in erp.invoices(reference=rest["id"])] == ["paid"]


def test_a_credit_note_before_its_invoice_is_posted_waits(connector, billing):
    invoice = billing.finalize(billing.invoice(_customer(billing), [("Seats", 1, 1000)], currency="usd"))
    note = billing.credit_note(invoice, amount=100)
    with pytest.raises(Retryable, match="not posted in the ERP yet"):
        connector.post_credit_note(credit_note_from_stripe(note), invoice_from_stripe(invoice),
                                   legal_entity="US", idempotency_key="k")


def test_a_refund_through_a_credit_note_pays_it_out(connector, billing, erp):
    invoice, contract = _open_invoice(billing, connector)
    paid = billing.pay(invoice)
    payment_id = billing.payment_of(paid)
    from connectors.stripe.mapping import payment_from_stripe_invoice

    connector.record_payment(payment_from_stripe_invoice(paid), legal_entity="US", idempotency_key="pay")
    refund = billing.refund(payment_id, 2750)
    note = billing.credit_note(paid, lines=[(0, 1)], refund=refund)
    credit, money_back = credit_note_from_stripe(note), refund_from_stripe(refund)
    assert (credit.pre_payment_amount, credit.refund_amount) == (0, 2750)

    connector.post_credit_note(credit, contract, legal_entity="US", idempotency_key="credit")
    document = connector.record_refund(money_back, contract, credit_note=credit, legal_entity="US",
                                       idempotency_key="refund")
    again = connector.record_refund(money_back, contract, credit_note=credit, legal_entity="US",
                                    idempotency_key="refund")

    assert again == document and document.state == "posted"
    [erp_note] = erp.invoices(reference=note["id"])
    assert erp_note["state"] == "paid"  # the credit went back to the customer
    assert _erp_invoice(connector, invoice["id"])["state"] == "paid"


def test_a_refund_without_a_credit_note_reverses_its_payment(connector, billing):
    invoice, contract = _open_invoice(billing, connector, lines=(("Seats", 1, 10000),))
    paid = billing.pay(invoice)
    from connectors.stripe.mapping import payment_from_stripe_invoice

    connector.record_payment(payment_from_stripe_invoice(paid), legal_entity="US", idempotency_key="pay")
    refund = refund_from_stripe(billing.refund(billing.payment_of(paid), 4000))

    document = connector.record_refund(refund, contract, credit_note=None, legal_entity="US", idempotency_key="r")

    company = connector._company("US")
    move, = connector.client.call("account.move", "read", [int(document.external_id)],
                                  ["state", "description", "date"], context={"company": company})
    assert (move["state"], move["description"]) == ("posted", f"stripe refund {refund.source.external_id}")
    lines = connector.client.call("account.move.line", "search_read", [("move", "=", int(document.external_id))],
                                  0, None, None, ["debit", "credit", "party"], context={"company": company})
    assert sorted((Decimal(line["debit"]), Decimal(line["credit"])) for line in lines) == [
        (Decimal(0), Decimal("40.00")), (Decimal("40.00"), Decimal(0))]
    assert connector.find_refund(refund, legal_entity="US") == document


def test_two_partial_payments_close_the_invoice_and_a_third_is_refused(connector, billing):
    invoice, contract = _open_invoice(billing, connector, lines=(("Seats", 1, 10000),))  # 110.00
    first, invoice = billing.pay_part(invoice, 6000)
    connector.record_payment(invoice_payment_from_stripe(first), legal_entity="US", idempotency_key="p1")
    assert Decimal(_erp_invoice(connector, invoice["id"])["amount_to_pay"]) == Decimal("50.00")
    second, invoice = billing.pay_part(invoice, 5000)
    connector.record_payment(invoice_payment_from_stripe(second), legal_entity="US", idempotency_key="p2")
    connector.record_payment(invoice_payment_from_stripe(second), legal_entity="US", idempotency_key="p2")

    assert invoice["status"] == "paid"
    assert _erp_invoice(connector, invoice["id"])["state"] == "paid"


def test_an_overpayment_is_refused(connector, billing):
    invoice, contract = _open_invoice(billing, connector, lines=(("Seats", 1, 10000),))
    part, _ = billing.pay_part(invoice, 11000)
    payment = invoice_payment_from_stripe(part).model_copy(update={"amount": 12000})
    with pytest.raises(Permanent, match="exceeds"):
        connector.record_payment(payment, legal_entity="US", idempotency_key="over")
    assert Decimal(_erp_invoice(connector, invoice["id"])["amount_to_pay"]) == Decimal("110.00")


def test_an_uncollectible_invoice_is_written_off_to_the_policy_account(connector, billing, tryton_server):
    invoice, contract = _open_invoice(billing, connector, lines=(("Seats", 1, 10000),))
    first, invoice = billing.pay_part(invoice, 3000)
    connector.record_payment(invoice_payment_from_stripe(first), legal_entity="US", idempotency_key="p1")
    account = tryton_server.info["write_off_accounts"]["USD"]

    with pytest.raises(NeedsConfiguration, match="no write-off method"):
        connector.write_off_invoice(contract, account="9.9.9", legal_entity="US", idempotency_key="w")
    document = connector.write_off_invoice(contract, account=account, legal_entity="US", idempotency_key="w")
    again = connector.write_off_invoice(contract, account=account, legal_entity="US", idempotency_key="w")

    assert document.state == again.state == "paid"
    company = connector._company("US")
    lines = connector.client.call(
        "account.move.line", "search_read",
        [("account.code", "=", account), ("move.origin", "=", None), ("party", "=", None)], 0, None,
        [("id", "DESC")], ["debit", "move"], context={"company": company})
    assert Decimal(lines[0]["debit"]) == Decimal("80.00")  # 110.00 less the 30.00 paid


@pytest.mark.parametrize("order", [("pay", "refund", "credit"), ("pay", "credit", "refund"),
                                   ("credit", "pay", "refund")])
def test_a_credit_before_payment_and_a_refund_converge_in_any_order(connector, billing, order, erp):
    """The ERP ends in one state whichever of the payment, its partial refund and a
    credit note taken off before payment reaches it first (the refund always comes
    after its payment: the hub orders it so)."""
    from connectors.stripe.mapping import payment_from_stripe_invoice

    invoice, contract = _open_invoice(billing, connector, lines=(("Seats", 4, 2500),))  # 110.00
    note = billing.credit_note(invoice, lines=[(0, 1)])  # 27.50 off before payment
    paid = billing.pay(billing.apply_credit(invoice, note))  # 82.50 collected
    refund = refund_from_stripe(billing.refund(billing.payment_of(paid), 2000))
    credit = credit_note_from_stripe(note)
    steps = {
        "pay": lambda: connector.record_payment(payment_from_stripe_invoice(paid), legal_entity="US",
                                                idempotency_key="pay"),
        "refund": lambda: connector.record_refund(refund, contract, credit_note=None, legal_entity="US",
                                                  idempotency_key="refund"),
        "credit": lambda: connector.post_credit_note(credit, contract, legal_entity="US", idempotency_key="credit"),
    }
    for step in order:
        steps[step]()

    original = _erp_invoice(connector, invoice["id"])
    assert (original["state"], Decimal(original["amount_to_pay"])) == ("paid", Decimal(0))
    erp_note = _erp_invoice(connector, note["id"])
    # Applied to the invoice: nothing left for the customer to claim on it.
    assert (Decimal(erp_note["total_amount"]), Decimal(erp_note["amount_to_pay"])) == (Decimal("-27.50"), 0)
    assert connector.find_refund(refund, legal_entity="US") is not None
