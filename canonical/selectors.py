"""Reads from the canonical store, as the contracts connectors consume."""

from __future__ import annotations

from canonical.contracts import (
    Address,
    CreditNoteLineV1,
    CreditNoteV1,
    CustomerV1,
    InvoiceLineV1,
    InvoiceV1,
    PaymentV1,
    RefundV1,
    SourceRef,
    TaxId,
)
from canonical.models import CreditNote, CrossReference, Customer, Invoice, Payment, Refund


def customer_contract(customer: Customer) -> CustomerV1:
    xref = CrossReference.objects.filter(object_type="customer", canonical_id=customer.pk).order_by("pk").first()
    source = SourceRef(system=xref.system, external_id=xref.external_id) if xref else SourceRef(
        system="hub", external_id=str(customer.pk)
    )
    return CustomerV1(
        source=source,
        canonical_id=customer.pk,
        display_name=customer.display_name,
        email=customer.email or None,
        address=Address(**customer.address) if customer.address else None,
        tax_ids=tuple(TaxId(**tax_id) for tax_id in customer.tax_ids),
        currency=customer.currency or None,
        domain=customer.domain or None,
        parent=_parent_ref(customer.parent_ref),
        parent_canonical_id=customer.parent_id,
    )


def _parent_ref(value: str) -> SourceRef | None:
    system, _, external_id = value.partition(":")
    return SourceRef(system=system, external_id=external_id) if system and external_id else None


def customer_source_ref(customer: Customer, system: str) -> str | None:
    """The customer's own id in ``system`` (its cross-reference), if it has one."""
    return (
        CrossReference.objects.filter(object_type="customer", canonical_id=customer.pk, system=system)
        .values_list("external_id", flat=True)
        .first()
    )


def invoice_contract(invoice: Invoice) -> InvoiceV1:
    return InvoiceV1(
        source=SourceRef(system=invoice.source_system, external_id=invoice.source_id),
        number=invoice.number or None,
        customer=customer_contract(invoice.customer),
        currency=invoice.currency,
        status=invoice.status,
        issued_on=invoice.issued_on,
        due_on=invoice.due_on,
        subtotal=invoice.subtotal,
        tax=invoice.tax,
        total=invoice.total,
        amount_paid=invoice.amount_paid,
        paid_at=invoice.paid_at,
        voided_at=invoice.voided_at,
        subscription_ref=invoice.subscription_ref or None,
        lines=tuple(
            InvoiceLineV1(
                source_line_id=line.source_line_id or None,
                description=line.description,
                quantity=line.quantity.normalize(),
                amount=line.amount,
                tax_amount=line.tax_amount,
                tax_rate=line.tax_rate,
                product_ref=line.product_ref or None,
                price_ref=line.price_ref or None,
                period_start=line.period_start,
                period_end=line.period_end,
            )
            for line in invoice.lines.all()
        ),
    )


def payment_contract(payment: Payment) -> PaymentV1:
    invoice = payment.invoice
    return PaymentV1(
        source=SourceRef(system=payment.source_system, external_id=payment.source_id),
        invoice=SourceRef(system=invoice.source_system, external_id=invoice.source_id),
        currency=payment.currency,
        amount=payment.amount,
        paid_at=payment.paid_at,
    )


def credit_note_contract(note: CreditNote) -> CreditNoteV1:
    invoice = note.invoice
    return CreditNoteV1(
        source=SourceRef(system=note.source_system, external_id=note.source_id),
        invoice=SourceRef(system=invoice.source_system, external_id=invoice.source_id),
        number=note.number or None,
        currency=note.currency,
        status=note.status,
        issued_on=note.issued_on,
        reason=note.reason or None,
        subtotal=note.subtotal,
        tax=note.tax,
        total=note.total,
        pre_payment_amount=note.pre_payment_amount,
        refund_amount=note.refund_amount,
        credit_balance_amount=note.credit_balance_amount,
        out_of_band_amount=note.out_of_band_amount,
        refunds=tuple(SourceRef(system=note.source_system, external_id=ref) for ref in note.refund_refs),
        voided_at=note.voided_at,
        lines=tuple(
            CreditNoteLineV1(
                source_line_id=line.source_line_id or None,
                invoice_line_ref=line.invoice_line_ref or None,
                description=line.description,
                quantity=line.quantity.normalize() if line.quantity is not None else None,
                amount=line.amount,
                tax_amount=line.tax_amount,
                tax_rate=line.tax_rate,
            )
            for line in note.lines.all()
        ),
    )


def refund_contract(refund: Refund) -> RefundV1:
    payment = refund.payment
    return RefundV1(
        source=SourceRef(system=refund.source_system, external_id=refund.source_id),
        kind=refund.kind,
        payment=SourceRef(system=payment.source_system, external_id=payment.source_id),
        currency=refund.currency,
        amount=refund.amount,
        status=refund.status,
        refunded_at=refund.refunded_at,
        reason=refund.reason or None,
    )
