"""Invoice adjustments: credit notes, partial payments, refunds, lost disputes and
write-offs, as part of the invoice posting workflow (its declaration in
``invoice_posting`` carries these facts and actions).

Every adjustment is about one invoice, and its ERP effect waits for that invoice's
post (``delivery_plan(after=...)``): a credit note after the post, a refund after the
payment it reverses, a void of a credit note after the credit note; and no two ERP
effects on one invoice run at once (a shared serial key). Each is planned
once per billing object (the idempotency key is the canonical record, unique per
source id), so a redelivered or reordered event never books twice.

An adjustment can arrive before the invoice (or payment) it adjusts: billing does
not order its events. The handler then raises ``AwaitingDocument``, a retryable
failure: the inbox tries the event again with backoff, and once the invoice has been
processed the adjustment finds it. When the budget runs out, finance gets an
exception record that replays the event.

Policies (docs/invoice-adjustments.md): the credit note always posts as an ERP
credit note linked to the invoice; its pre-payment part settles the invoice; a refund
pays out the credit note that names it, else reverses the payment; a lost dispute is
a reversal of the disputed payment; a won one changes nothing; an uncollectible
invoice is written off to the account its legal entity's posting policy names.
"""

from __future__ import annotations

from django.db.models import Q

from canonical.events import (
    CreditNoteIssued,
    CreditNoteVoided,
    InvoiceWrittenOff,
    PaymentReceived,
    RefundIssued,
)
from canonical.models import CreditNote, Invoice, Refund
from canonical.selectors import credit_note_contract, invoice_contract, refund_contract
from canonical.services import (
    PolicyMissing,
    credit_note_upsert,
    invoice_find,
    payment_find,
    payment_upsert,
    refund_upsert,
    xref_bind,
)
from connectors.base import ExternalDocument, InvoiceAdjuster
from connectors.errors import Retryable
from connectors.models import Connection
from connectors.services import connection_for_role
from integration_hub.runtime.dispatch import DeliveryAction, TraceSection
from integration_hub.runtime.models import Delivery, InboundEvent
from integration_hub.runtime.services import delivery_plan

POST, PAY = "invoice.post", "invoice.pay"
CREDIT, CREDIT_VOID = "credit_note.post", "credit_note.void"
REFUND, WRITE_OFF = "refund.post", "invoice.write_off"


class AwaitingDocument(Retryable):
    """The invoice or payment an adjustment is about has not been processed yet."""


def invoice_erp(invoice: Invoice) -> Connection:
    # The ERP is the one the invoice's legal entity books in (or the only active one).
    return connection_for_role(Connection.Role.ERP, name=invoice.legal_entity.erp_connection)


def plan_on_invoice(invoice: Invoice, event: InboundEvent, *, action: str, object_type: str, object_id: int,
                    after: Delivery | None = None) -> Delivery:
    """Plan one ERP effect on ``invoice``. Every effect on one invoice shares a serial
    key, so they reach the ERP one at a time: Tryton checks a payment, a credit note
    and a refund against the invoice's open amount, and two at once can each see the
    other's part as still open."""
    return delivery_plan(transaction_id=event.transaction_id, connection=invoice_erp(invoice), action=action,
                         object_type=object_type, object_id=object_id, after=after, serial=f"invoice:{invoice.pk}")


def plan_post(invoice: Invoice, event: InboundEvent) -> Delivery:
    """The invoice's post delivery (planned with the invoice, so it exists once the
    invoice does; ``delivery_plan`` returns the existing row)."""
    return plan_on_invoice(invoice, event, action=POST, object_type="invoice", object_id=invoice.pk)


def _invoice_locked(system: str, external_id: str, what: str) -> Invoice:
    invoice = invoice_find(system=system, external_id=external_id)
    if invoice is None:
        raise AwaitingDocument(f"{what} is about invoice {external_id}, which the hub has not processed yet")
    # Adjustments of one invoice are checked against each other one at a time.
    return Invoice.objects.select_for_update().select_related("legal_entity").get(pk=invoice.pk)


# -- fact handlers (inside the event's transaction, no I/O) ---------------------


def payment_received(fact: PaymentReceived, event: InboundEvent) -> None:
    """One of possibly several payments towards an invoice: booked after the post."""
    contract = fact.payment
    invoice = _invoice_locked(contract.invoice.system, contract.invoice.external_id, f"payment {contract.source.external_id}")
    post = plan_post(invoice, event)
    payment = payment_upsert(contract, invoice=invoice, transaction_id=event.transaction_id)
    plan_on_invoice(invoice, event, action=PAY, object_type="payment", object_id=payment.pk, after=post)


def credit_note_issued(fact: CreditNoteIssued, event: InboundEvent) -> None:
    contract = fact.credit_note
    invoice = _invoice_locked(contract.invoice.system, contract.invoice.external_id,
                              f"credit note {contract.source.external_id}")
    post = plan_post(invoice, event)
    note = credit_note_upsert(contract, invoice=invoice, transaction_id=event.transaction_id)
    credit = plan_on_invoice(invoice, event, action=CREDIT, object_type="credit_note", object_id=note.pk, after=post)
    if note.status == CreditNote.Status.VOID:
        plan_on_invoice(invoice, event, action=CREDIT_VOID, object_type="credit_note", object_id=note.pk,
                        after=credit)


def credit_note_voided(fact: CreditNoteVoided, event: InboundEvent) -> None:
    """A void that arrives first still posts the credit note, then takes it back:
    the ERP ends where it would in the billing order, with both documents."""
    credit_note_issued(CreditNoteIssued(fact.credit_note), event)


def refund_issued(fact: RefundIssued, event: InboundEvent) -> None:
    """A refund (or lost dispute) is booked once it has succeeded, after the payment
    it reverses; a pending one is recorded and waits for its ``refund.updated``."""
    contract = fact.refund
    payment = payment_find(system=contract.payment.system,
                           external_ids=(contract.payment.external_id, *contract.payment_aliases))
    if payment is None:
        raise AwaitingDocument(f"refund {contract.source.external_id} reverses payment "
                               f"{contract.payment.external_id}, which the hub has not processed yet")
    invoice = Invoice.objects.select_for_update().select_related("legal_entity").get(pk=payment.invoice_id)
    refund = refund_upsert(contract, payment=payment, transaction_id=event.transaction_id)
    if refund.status != "succeeded":
        return
    pay = plan_on_invoice(invoice, event, action=PAY, object_type="payment", object_id=payment.pk)
    plan_on_invoice(invoice, event, action=REFUND, object_type="refund", object_id=refund.pk, after=pay)


def invoice_written_off(fact: InvoiceWrittenOff, event: InboundEvent, *, record) -> None:
    invoice = record(fact, event)
    plan_on_invoice(invoice, event, action=WRITE_OFF, object_type="invoice", object_id=invoice.pk,
                    after=plan_post(invoice, event))


# -- delivery actions ------------------------------------------------------------


def _credit_note(delivery: Delivery) -> CreditNote:
    return CreditNote.objects.select_related("invoice__legal_entity", "invoice__customer").get(pk=delivery.object_id)


def _credit_lookup(connector: InvoiceAdjuster, delivery: Delivery) -> ExternalDocument | None:
    note = _credit_note(delivery)
    return connector.find_credit_note(credit_note_contract(note), legal_entity=note.invoice.legal_entity.code)


def _credit_send(connector: InvoiceAdjuster, delivery: Delivery) -> ExternalDocument:
    note = _credit_note(delivery)
    return connector.post_credit_note(
        credit_note_contract(note), invoice_contract(note.invoice), legal_entity=note.invoice.legal_entity.code,
        idempotency_key=delivery.idempotency_key,
    )


def _credit_bind(delivery: Delivery, document: ExternalDocument) -> None:
    xref_bind(system=delivery.connection.name, object_type="credit_note", canonical_id=delivery.object_id,
              external_id=document.external_id, number=document.number or "")


def _credit_void_send(connector: InvoiceAdjuster, delivery: Delivery) -> ExternalDocument:
    """Safe to repeat: the connector finds the credit note cancelled (or credited) first."""
    note = _credit_note(delivery)
    return connector.void_credit_note(credit_note_contract(note), legal_entity=note.invoice.legal_entity.code,
                                      idempotency_key=delivery.idempotency_key)


def _refund(delivery: Delivery) -> Refund:
    return Refund.objects.select_related("payment__invoice__legal_entity", "payment__invoice__customer").get(
        pk=delivery.object_id
    )


def _refund_lookup(connector: InvoiceAdjuster, delivery: Delivery) -> ExternalDocument | None:
    refund = _refund(delivery)
    return connector.find_refund(refund_contract(refund), legal_entity=refund.payment.invoice.legal_entity.code)


def _refund_send(connector: InvoiceAdjuster, delivery: Delivery) -> ExternalDocument:
    """Which ERP document pays the money out is decided now, not when the refund was
    planned: a credit note that names the refund may have arrived since."""
    refund = _refund(delivery)
    invoice = refund.payment.invoice
    note = None
    if refund.kind == Refund.Kind.REFUND:
        # A JSON "contains" lookup is not portable (SQLite); an invoice has few credit notes.
        issued = CreditNote.objects.filter(invoice=invoice, status=CreditNote.Status.ISSUED).select_related("invoice")
        note = next((n for n in issued.order_by("pk") if refund.source_id in n.refund_refs), None)
    return connector.record_refund(
        refund_contract(refund), invoice_contract(invoice),
        credit_note=credit_note_contract(note) if note else None,
        legal_entity=invoice.legal_entity.code, idempotency_key=delivery.idempotency_key,
    )


def _refund_bind(delivery: Delivery, document: ExternalDocument) -> None:
    xref_bind(system=delivery.connection.name, object_type="refund", canonical_id=delivery.object_id,
              external_id=document.external_id, number=document.number or "")


def _write_off_send(connector: InvoiceAdjuster, delivery: Delivery) -> ExternalDocument:
    """Safe to repeat: a written-off invoice is paid in the ERP, and the connector
    returns a paid invoice as it is. The account is the legal entity's posting
    policy; without one the delivery waits for finance (PolicyMissing)."""
    invoice = Invoice.objects.select_related("legal_entity", "customer").get(pk=delivery.object_id)
    account = invoice.legal_entity.write_off_account
    if not account:
        raise PolicyMissing(f"legal entity {invoice.legal_entity.code} names no write-off account; "
                            "set one and replay")
    return connector.write_off_invoice(invoice_contract(invoice), account=account,
                                       legal_entity=invoice.legal_entity.code,
                                       idempotency_key=delivery.idempotency_key)


def _no_binding(delivery: Delivery, document: ExternalDocument) -> None:
    """The ERP document is one already bound (the invoice or the credit note)."""


ACTIONS = (
    DeliveryAction(name=CREDIT, capability=InvoiceAdjuster, send=_credit_send, bind=_credit_bind,
                   lookup=_credit_lookup),
    DeliveryAction(name=CREDIT_VOID, capability=InvoiceAdjuster, send=_credit_void_send, bind=_no_binding),
    DeliveryAction(name=REFUND, capability=InvoiceAdjuster, send=_refund_send, bind=_refund_bind,
                   lookup=_refund_lookup),
    DeliveryAction(name=WRITE_OFF, capability=InvoiceAdjuster, send=_write_off_send, bind=_no_binding),
)


# -- trace -----------------------------------------------------------------------


def _credit_note_rows(transaction_id, delivered) -> list[dict]:
    notes = CreditNote.objects.filter(
        Q(transaction_id=transaction_id) | Q(pk__in=delivered.get("credit_note", ()))
        | Q(invoice__transaction_id=transaction_id)
    ).distinct()
    return [
        {"id": n.pk, "source": f"{n.source_system}:{n.source_id}", "invoice": n.invoice_id, "number": n.number,
         "status": n.status, "currency": n.currency, "total": n.total, "pre_payment": n.pre_payment_amount,
         "refund": n.refund_amount, "credit_balance": n.credit_balance_amount, "out_of_band": n.out_of_band_amount}
        for n in notes
    ]


def _refund_rows(transaction_id, delivered) -> list[dict]:
    refunds = Refund.objects.filter(
        Q(transaction_id=transaction_id) | Q(pk__in=delivered.get("refund", ()))
        | Q(payment__invoice__transaction_id=transaction_id)
    ).distinct()
    return [
        {"id": r.pk, "source": f"{r.source_system}:{r.source_id}", "kind": r.kind, "payment": r.payment_id,
         "amount": r.amount, "currency": r.currency, "status": r.status}
        for r in refunds
    ]


TRACE = (TraceSection("credit_notes", "credit_note", _credit_note_rows),
         TraceSection("refunds", "refund", _refund_rows))

FACTS = {PaymentReceived: payment_received, CreditNoteIssued: credit_note_issued,
         CreditNoteVoided: credit_note_voided, RefundIssued: refund_issued}

