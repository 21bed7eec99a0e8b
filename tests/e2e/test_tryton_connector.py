import datetime as dt
import uuid
from decimal import Decimal

import pytest

from canonical.contracts import InvoiceV1, PaymentV1
from connectors.errors import MappingError, NeedsConfiguration, Permanent
from connectors.registry import connector_class
from connectors.tryton.connector import TrytonConnector

pytestmark = pytest.mark.e2e


@pytest.fixture
def connector(tryton_server):
    instance = TrytonConnector(config=tryton_server.connection_config(), credentials=tryton_server.credentials())
    yield instance
    instance.close()


def make_invoice(currency="USD", lines=((2, 2000, 200), (3, 1000, 100)), *, issued_on=None, customer_id=None):
    """An open canonical invoice; ``lines`` are (quantity, amount, tax) in minor units."""
    reference = f"in_{uuid.uuid4().hex[:12]}"
    line_values = [
        dict(source_line_id=f"li_{index}", description=f"Item {index}", quantity=quantity, amount=amount,
             tax_amount=tax)
        for index, (quantity, amount, tax) in enumerate(lines)
    ]
    subtotal, tax = sum(line[1] for line in lines), sum(line[2] for line in lines)
    return InvoiceV1.model_validate(dict(
        source=dict(system="stripe", external_id=reference), number=f"N-{reference[-6:]}",
        customer=dict(source=dict(system="stripe", external_id=f"cus_{reference}"),
                      canonical_id=customer_id or uuid.uuid4().int % 10**9, display_name="E2E Customer",
                      email="ap@example.com", address=dict(line1="1 Main St", city="Springfield", postal_code="1")),
        currency=currency, status="open", issued_on=issued_on or dt.date.today(),
        subtotal=subtotal, tax=tax, total=subtotal + tax, lines=line_values,
    ))


def make_payment(invoice, amount=None, payment_id=None):
    return PaymentV1(
        source=dict(system="stripe", external_id=payment_id or f"py_{uuid.uuid4().hex[:12]}"),
        invoice=invoice.source, currency=invoice.currency, amount=amount or invoice.total,
        paid_at=dt.datetime.now(dt.UTC),
    )


def test_registered_as_tryton():
    assert connector_class("tryton") is TrytonConnector


def test_posts_a_usd_invoice_once(connector, erp):
    invoice = make_invoice()
    document = connector.post_invoice(invoice, legal_entity="US", idempotency_key="k1")
    assert document.state == "posted"
    assert document.number
    erp_invoice, = erp.invoices(reference=invoice.source.external_id)
    assert erp_invoice["id"] == int(document.external_id)
    assert (erp_invoice["state"], erp_invoice["number"], erp_invoice["currency"]) == ("posted", document.number, "USD")
    assert (erp_invoice["untaxed_amount"], erp_invoice["tax_amount"], erp_invoice["total_amount"]) == (
        Decimal("30.00"), Decimal("3.00"), Decimal("33.00"))
    party = erp.party(code=f"HUB-{invoice.customer.canonical_id}")
    assert document.related == {"customer": str(party["id"]), "company_currency": "USD", "company_total": "3300",
                                "company_tax": "300"}

    again = connector.post_invoice(invoice, legal_entity="US", idempotency_key="k1")
    assert again == document
    assert len(erp.invoices(reference=invoice.source.external_id)) == 1


def test_posts_a_jpy_invoice_with_exact_yen(connector, erp, tryton_server):
    invoice = make_invoice("JPY", lines=((3, 1500, 150), (1, 1001, 100)))
    document = connector.post_invoice(invoice, legal_entity="JP", idempotency_key="k2")
    erp_invoice, = erp.invoices(reference=invoice.source.external_id)
    assert document.state == "posted"
    assert erp_invoice["company"] == tryton_server.info["companies"]["JPY"]
    assert (erp_invoice["currency"], erp_invoice["tax_amount"], erp_invoice["total_amount"]) == (
        "JPY", Decimal(250), Decimal(2751))


def test_record_payment_pays_once(connector, erp):
    invoice = make_invoice()
    connector.post_invoice(invoice, legal_entity="US", idempotency_key="k3")
    payment = make_payment(invoice)
    document = connector.record_payment(payment, legal_entity="US", idempotency_key="p3")
    assert document.state == "paid"
    assert connector.record_payment(payment, legal_entity="US", idempotency_key="p3") == document
    assert erp.invoices(reference=invoice.source.external_id)[0]["state"] == "paid"


def test_partial_payments_add_up(connector):
    invoice = make_invoice()
    connector.post_invoice(invoice, legal_entity="US", idempotency_key="k4")
    first = make_payment(invoice, amount=1000)
    assert connector.record_payment(first, legal_entity="US", idempotency_key="p4").state == "posted"
    # The same payment again is recognised on the invoice's payment lines.
    assert connector.record_payment(first, legal_entity="US", idempotency_key="p4").state == "posted"
    rest = make_payment(invoice, amount=invoice.total - 1000)
    assert connector.record_payment(rest, legal_entity="US", idempotency_key="p5").state == "paid"


def test_void_credits_a_posted_invoice(connector, erp):
    invoice = make_invoice("EUR")
    posted = connector.post_invoice(invoice, legal_entity="EU", idempotency_key="k6")
    document = connector.void_invoice(invoice, legal_entity="EU", idempotency_key="v6")
    # Credit with refund: Tryton cancels the original and posts a reconciled credit note.
    assert (document.external_id, document.state) == (posted.external_id, "cancelled")
    credit_note, = erp.credit_notes(int(posted.external_id))
    assert document.related["credit_note"] == str(credit_note["id"])
    assert credit_note["total_amount"] == Decimal("-33.00")
    assert connector.void_invoice(invoice, legal_entity="EU", idempotency_key="v6") == document
    assert len(erp.credit_notes(int(posted.external_id))) == 1


def test_void_of_an_unknown_invoice_is_absent(connector):
    assert connector.void_invoice(make_invoice(), legal_entity="US", idempotency_key="v7").state == "absent"


def test_unknown_legal_entity_needs_configuration(connector):
    with pytest.raises(NeedsConfiguration, match="'XX'"):
        connector.post_invoice(make_invoice(), legal_entity="XX", idempotency_key="k8")


def test_wrong_password_needs_configuration(tryton_server):
    connector = TrytonConnector(config=tryton_server.connection_config(),
                                credentials={"login": "hub", "password": "not-the-password"})
    with pytest.raises(NeedsConfiguration, match="credentials"):
        connector.post_invoice(make_invoice(), legal_entity="US", idempotency_key="k9")
    connector.close()


def test_tax_rate_without_erp_tax_leaves_nothing_behind(connector, erp):
    invoice = make_invoice(lines=((1, 1000, 160),))  # 16 %: no ERP tax has that rate
    with pytest.raises(MappingError, match="li_0"):
        connector.post_invoice(invoice, legal_entity="US", idempotency_key="k10")
    assert erp.invoices(reference=invoice.source.external_id) == []
    assert erp.party(code=f"HUB-{invoice.customer.canonical_id}") is None


def test_total_mismatch_deletes_the_draft(connector, erp):
    # 10 % of 10.05 is 1.005: the billing system rounded up, Tryton rounds half-even to 1.00.
    invoice = make_invoice(lines=((1, 1005, 101),))
    with pytest.raises(Permanent, match=r"11\.05.*11\.06"):
        connector.post_invoice(invoice, legal_entity="US", idempotency_key="k11")
    assert erp.invoices(reference=invoice.source.external_id) == []


def test_invoice_before_the_fiscal_year_is_permanent(connector, erp, tryton_server):
    start = dt.date.fromisoformat(tryton_server.info["fiscalyears"]["USD"]["start_date"])
    invoice = make_invoice(issued_on=start - dt.timedelta(days=1))
    with pytest.raises(Permanent, match="before the ERP's first fiscal year"):
        connector.post_invoice(invoice, legal_entity="US", idempotency_key="k12")
    assert erp.invoices(reference=invoice.source.external_id) == []


# ---------------------------------------------------------------- batches (batch.py)


def test_a_batch_posts_each_invoice_once_with_its_own_answer(connector, erp):
    from connectors.base import InvoiceToPost

    customer = uuid.uuid4().int % 10**9
    # Totals that differ, so an answer given to the wrong invoice shows (Tryton reads in its own order).
    new = [make_invoice(customer_id=customer, lines=((1, 1000, 100),)), make_invoice(customer_id=customer),
           make_invoice("EUR")]
    done = make_invoice()
    done_document = connector.post_invoice(done, legal_entity="US", idempotency_key="k20")
    no_tax = make_invoice(lines=((1, 1000, 160),))  # no ERP tax of 16 %: fails on mapping
    mismatch = make_invoice(lines=((1, 1005, 101),))  # Tryton's total differs by a cent
    entities = ["US", "US", "EU", "US", "US", "US"]
    invoices = [*new, done, no_tax, mismatch]

    answers = connector.post_invoices([InvoiceToPost(invoice, entity, f"k2{index}")
                                       for index, (invoice, entity) in enumerate(zip(invoices, entities, strict=True))])

    for invoice, answer in zip(new, answers[:3], strict=True):
        erp_invoice, = erp.invoices(reference=invoice.source.external_id)
        assert (answer.state, answer.external_id, answer.number) == ("posted", str(erp_invoice["id"]),
                                                                   erp_invoice["number"])
    assert [answer.related["company_total"] for answer in answers[:2]] == [str(new[0].total), str(new[1].total)]
    assert answers[0].related["customer"] == answers[1].related["customer"]  # one party for one customer
    assert answers[2].related["company_currency"] == "EUR"
    assert answers[3] == done_document
    assert isinstance(answers[4], MappingError) and "li_0" in str(answers[4])
    assert isinstance(answers[5], Permanent) and "differs" in str(answers[5])
    assert erp.invoices(reference=no_tax.source.external_id) == []
    assert erp.invoices(reference=mismatch.source.external_id) == []  # its draft deleted

    again = connector.post_invoices([InvoiceToPost(invoice, "EU" if invoice is new[2] else "US", "k")
                                     for invoice in new])
    assert again == answers[:3]  # found by reference: nothing created twice
    assert all(len(erp.invoices(reference=invoice.source.external_id)) == 1 for invoice in new)


def test_a_batch_the_server_refuses_falls_back_to_one_by_one(connector, erp, monkeypatch):
    from connectors.base import InvoiceToPost

    invoices = [make_invoice(), make_invoice()]
    call = connector.client.call

    def refuse_batch_posts(model, method, *args, **kwargs):
        if (model, method) == ("account.invoice", "post") and len(args[0]) > 1:
            raise Permanent("Tryton refused the batch: one invoice failed its validation")
        return call(model, method, *args, **kwargs)

    monkeypatch.setattr(connector.client, "call", refuse_batch_posts)
    answers = connector.post_invoices([InvoiceToPost(invoice, "US", "k30") for invoice in invoices])

    assert [answer.state for answer in answers] == ["posted", "posted"]
    for invoice, answer in zip(invoices, answers, strict=True):
        erp_invoice, = erp.invoices(reference=invoice.source.external_id)  # the batch's draft, posted alone
        assert str(erp_invoice["id"]) == answer.external_id and erp_invoice["state"] == "posted"


def test_a_batch_does_not_depend_on_the_order_tryton_reads_in(connector, erp, monkeypatch):
    """Tryton's ``read`` answers in its own order (on PostgreSQL, not the ids' order):
    here every read comes back reversed, and each invoice still gets its own answer."""
    from connectors.base import InvoiceToPost

    invoices = [make_invoice(lines=((1, 1000 * n, 100 * n),)) for n in (1, 2, 3)]
    call = connector.client.call

    def reversed_reads(model, method, *args, **kwargs):
        answer = call(model, method, *args, **kwargs)
        return list(reversed(answer)) if method == "read" else answer

    monkeypatch.setattr(connector.client, "call", reversed_reads)
    answers = connector.post_invoices([InvoiceToPost(invoice, "US", "k40") for invoice in invoices])

    for invoice, answer in zip(invoices, answers, strict=True):
        erp_invoice, = erp.invoices(reference=invoice.source.external_id)
        assert (answer.state, answer.external_id) == ("posted", str(erp_invoice["id"]))
        assert answer.related["company_total"] == str(invoice.total)
