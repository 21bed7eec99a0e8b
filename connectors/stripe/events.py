"""Stripe events → canonical facts. Pure: no I/O, no database."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from canonical.events import (
    CreditNoteIssued,
    CreditNoteVoided,
    CustomerChanged,
    Fact,
    InvoiceIssued,
    InvoicePaid,
    InvoiceVoided,
    InvoiceWrittenOff,
    PaymentReceived,
    RefundIssued,
)
from connectors.base import Ignored
from connectors.stripe.adjustments import (
    credit_note_from_stripe,
    lost_dispute_from_stripe,
    refund_from_stripe,
    refunds_from_stripe_charge,
)
from connectors.stripe.mapping import (
    SYSTEM,
    customer_from_stripe,
    invoice_from_stripe,
    invoice_payment_from_stripe,
    payments_from_stripe_invoice,
)
from connectors.stripe.subscriptions import subscription_changed

# Dispute outcomes that leave the books as they were: the funds came back (won) or
# were never withdrawn (warning_closed: an inquiry that did not become a dispute).
_DISPUTE_KEPT = {"won", "warning_closed", "prevented"}


def translate(event_type: str, payload: Mapping[str, Any], *, system: str = SYSTEM) -> list[Fact | Ignored]:
    """The facts one Stripe event means, with references into ``system`` (the name
    of the connection the event came through). Types the hub does not handle become
    ``Ignored`` (acknowledged and recorded, never processed)."""
    obj = payload.get("data", {}).get("object", {})
    match event_type:
        case "customer.subscription.created" | "customer.subscription.updated" | "customer.subscription.deleted":
            return [subscription_changed(obj, system=system, created=int(payload.get("created") or 0))]
        case "invoice.finalized":
            return [InvoiceIssued(invoice_from_stripe(obj, system=system))]
        case "invoice.paid":
            invoice = invoice_from_stripe(obj, system=system)
            payments = payments_from_stripe_invoice(obj, system=system)
            if not payments:  # a zero-amount invoice is "paid" with no money moving
                return [InvoiceIssued(invoice)]
            first, *others = payments
            return [InvoicePaid(invoice, first), *(PaymentReceived(payment) for payment in others)]
        case "invoice.voided":
            return [InvoiceVoided(invoice_from_stripe(obj, system=system))]
        case "invoice.marked_uncollectible":
            return [InvoiceWrittenOff(invoice_from_stripe(obj, system=system))]
        case "invoice_payment.paid":
            return [PaymentReceived(invoice_payment_from_stripe(obj, system=system))]
        case "credit_note.created" | "credit_note.updated":
            note = credit_note_from_stripe(obj, system=system)
            return [CreditNoteVoided(note) if note.status == "void" else CreditNoteIssued(note)]
        case "credit_note.voided":
            return [CreditNoteVoided(credit_note_from_stripe(obj, system=system))]
        case "refund.created" | "refund.updated" | "refund.failed":
            return [RefundIssued(refund_from_stripe(obj, system=system))]
        case "charge.refunded":
            refunds = refunds_from_stripe_charge(obj, system=system)
            if refunds is None:
                return [Ignored("charge.refunded without embedded refunds: each refund arrives as refund.created")]
            return [RefundIssued(refund) for refund in refunds]
        case "charge.dispute.closed":
            status = obj.get("status")
            if status == "lost":
                return [RefundIssued(lost_dispute_from_stripe(obj, closed_at=payload.get("created"), system=system))]
            if status in _DISPUTE_KEPT:
                return [Ignored(f"dispute closed {status}: the books stay as they were")]
            return [Ignored(f"dispute closed with status {status!r}: only a lost dispute moves the books")]
        case "charge.dispute.created" | "charge.dispute.funds_withdrawn" | "charge.dispute.funds_reinstated":
            return [Ignored(f"{event_type}: the books move only when the dispute is closed lost")]
        case "customer.created" | "customer.updated":
            return [CustomerChanged(customer_from_stripe(obj, system=system))]
        case _:
            return [Ignored(f"Stripe event type {event_type} is not handled by the hub")]
