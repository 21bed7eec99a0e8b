"""Writes to the canonical store. Each upsert is idempotent for the same input."""

from __future__ import annotations

import uuid

from django.db import IntegrityError, transaction

from canonical.contracts import CustomerV1, InvoiceV1, PaymentV1
from canonical.models import CrossReference, Customer, Invoice, InvoiceLine, LegalEntity, Payment


class PolicyMissing(LookupError):
    """No posting policy covers a document (e.g. no legal entity books its currency)."""


def legal_entity_for_currency(currency: str) -> LegalEntity:
    entity = LegalEntity.objects.filter(currency=currency).first()
    if entity is None:
        raise PolicyMissing(f"no legal entity books invoices in {currency}; add one in the admin")
    return entity


def xref_bind(*, system: str, object_type: str, canonical_id: int, external_id: str, number: str = "") -> CrossReference:
    """Record that ``canonical_id`` is ``external_id`` in ``system``. Re-binding the
    same pair is a no-op; binding either side to something else raises IntegrityError."""
    xref, created = CrossReference.objects.get_or_create(
        system=system,
        object_type=object_type,
        external_id=external_id,
        defaults={"canonical_id": canonical_id, "external_number": number},
    )
    if xref.canonical_id != canonical_id:
        raise IntegrityError(
            f"{system}:{object_type}:{external_id} is already bound to {object_type} {xref.canonical_id}"
        )
    if number and xref.external_number != number:
        xref.external_number = number
        xref.save(update_fields=["external_number"])
    return xref


def xref_lookup(*, system: str, object_type: str, external_id: str) -> int | None:
    return (
        CrossReference.objects.filter(system=system, object_type=object_type, external_id=external_id)
        .values_list("canonical_id", flat=True)
        .first()
    )


def _customer_fields(contract: CustomerV1) -> dict:
    address = contract.address.model_dump(exclude_none=True) if contract.address else {}
    return {
        "display_name": contract.display_name,
        "email": contract.email or "",
        "address": address,
        "country": address.get("country", ""),
        "tax_ids": [tax_id.model_dump() for tax_id in contract.tax_ids],
        "currency": contract.currency or "",
    }


@transaction.atomic
def customer_upsert(contract: CustomerV1, *, transaction_id: uuid.UUID | None = None, fill_only: bool = False) -> Customer:
    """Create or update the customer known in ``contract.source``.

    ``fill_only`` updates only empty fields: used when the data comes second-hand
    (the customer block of an invoice) rather than from the customer record itself.
    """
    fields = _customer_fields(contract)
    source = contract.source
    canonical_id = xref_lookup(system=source.system, object_type="customer", external_id=source.external_id)
    if canonical_id is None:
        try:
            with transaction.atomic():
                customer = Customer.objects.create(transaction_id=transaction_id, **fields)
                xref_bind(
                    system=source.system, object_type="customer", canonical_id=customer.pk,
                    external_id=source.external_id,
                )
            return customer
        except IntegrityError:
            # A concurrent upsert bound this source id first: update its record instead.
            canonical_id = xref_lookup(system=source.system, object_type="customer", external_id=source.external_id)
            if canonical_id is None:
                raise
    customer = Customer.objects.select_for_update().get(pk=canonical_id)
    if fill_only:
        fields = {name: value for name, value in fields.items() if value and not getattr(customer, name)}
    changed = {name: value for name, value in fields.items() if getattr(customer, name) != value}
    if changed:
        for name, value in changed.items():
            setattr(customer, name, value)
        customer.version += 1
        customer.transaction_id = transaction_id or customer.transaction_id
        customer.save()
    return customer


@transaction.atomic
def invoice_upsert(
    contract: InvoiceV1, *, customer: Customer, legal_entity: LegalEntity, transaction_id: uuid.UUID | None = None
) -> Invoice:
    """Create the invoice, or advance its status. Lines are fixed once finalized (the
    billing system cannot change them), so later snapshots only move the status,
    payment and void facts forward — never back, whatever order events arrive in."""
    source = contract.source
    invoice = (
        Invoice.objects.select_for_update()
        .filter(source_system=source.system, source_id=source.external_id)
        .first()
    )
    if invoice is None:
        invoice = Invoice.objects.create(
            source_system=source.system,
            source_id=source.external_id,
            number=contract.number or "",
            customer=customer,
            legal_entity=legal_entity,
            currency=contract.currency,
            status=contract.status,
            issued_on=contract.issued_on,
            due_on=contract.due_on,
            subtotal=contract.subtotal,
            tax=contract.tax,
            total=contract.total,
            amount_paid=contract.amount_paid,
            paid_at=contract.paid_at,
            voided_at=contract.voided_at,
            subscription_ref=contract.subscription_ref or "",
            transaction_id=transaction_id,
        )
        InvoiceLine.objects.bulk_create(
            InvoiceLine(
                invoice=invoice,
                position=position,
                source_line_id=line.source_line_id or "",
                description=line.description,
                quantity=line.quantity,
                amount=line.amount,
                tax_amount=line.tax_amount,
                tax_rate=line.tax_rate,
                product_ref=line.product_ref or "",
                price_ref=line.price_ref or "",
                period_start=line.period_start,
                period_end=line.period_end,
            )
            for position, line in enumerate(contract.lines, start=1)
        )
        return invoice

    if Invoice.STATUS_RANK[contract.status] > Invoice.STATUS_RANK[invoice.status]:
        invoice.status = contract.status
        invoice.amount_paid = max(invoice.amount_paid, contract.amount_paid)
        invoice.paid_at = invoice.paid_at or contract.paid_at
        invoice.voided_at = invoice.voided_at or contract.voided_at
        invoice.number = invoice.number or contract.number or ""
        invoice.version += 1
        invoice.save()
    return invoice


@transaction.atomic
def payment_upsert(contract: PaymentV1, *, invoice: Invoice, transaction_id: uuid.UUID | None = None) -> Payment:
    payment, _ = Payment.objects.get_or_create(
        source_system=contract.source.system,
        source_id=contract.source.external_id,
        defaults={
            "invoice": invoice,
            "currency": contract.currency,
            "amount": contract.amount,
            "paid_at": contract.paid_at,
            "transaction_id": transaction_id,
        },
    )
    return payment
