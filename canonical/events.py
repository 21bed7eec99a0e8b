"""Business facts a vendor event translates into, in canonical terms.

Connectors translate their vendor's events into these; workflows act on them, so no
workflow needs to know which vendor sent what.
"""

from __future__ import annotations

from dataclasses import dataclass

from canonical.contracts import CreditNoteV1, CustomerV1, InvoiceV1, PaymentV1, RefundV1, SourceRef


@dataclass(frozen=True)
class CustomerChanged:
    customer: CustomerV1


@dataclass(frozen=True)
class CustomerReferenced:
    """A source system says one of its customer records changed, without carrying
    the whole record (HubSpot webhooks carry one property; Salesforce change events
    only the changed fields). The workflow reads the current record through the
    source's connector, so reordered or repeated notices converge on the latest state.

    ``changed_fields`` names what changed in the source's own field names, when known.
    """

    source: SourceRef
    changed_fields: tuple[str, ...] = ()


@dataclass(frozen=True)
class CustomerSnapshot:
    """A complete customer record read from a source system (a scheduled pull)."""

    customer: CustomerV1


@dataclass(frozen=True)
class InvoiceIssued:
    invoice: InvoiceV1


@dataclass(frozen=True)
class InvoicePaid:
    invoice: InvoiceV1
    payment: PaymentV1


@dataclass(frozen=True)
class InvoiceVoided:
    invoice: InvoiceV1


@dataclass(frozen=True)
class InvoiceWrittenOff:
    """Billing gave up collecting the invoice (Stripe: marked uncollectible)."""

    invoice: InvoiceV1


@dataclass(frozen=True)
class PaymentReceived:
    """One payment towards an invoice (of possibly several); the invoice is named by
    ``payment.invoice`` only."""

    payment: PaymentV1


@dataclass(frozen=True)
class CreditNoteIssued:
    """A credit note was issued or changed (its amounts are final once issued)."""

    credit_note: CreditNoteV1


@dataclass(frozen=True)
class CreditNoteVoided:
    credit_note: CreditNoteV1


@dataclass(frozen=True)
class RefundIssued:
    """Money went back on a payment (a refund, or a lost dispute); ``status`` says
    whether it has left yet."""

    refund: RefundV1


Fact = (
    CustomerChanged | CustomerReferenced | CustomerSnapshot | InvoiceIssued | InvoicePaid | InvoiceVoided
    | InvoiceWrittenOff | PaymentReceived | CreditNoteIssued | CreditNoteVoided | RefundIssued
)
