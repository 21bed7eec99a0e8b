"""Stripe events → canonical facts. Pure: no I/O, no database."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from canonical.events import CustomerChanged, Fact, Ignored, InvoiceIssued, InvoicePaid, InvoiceVoided
from connectors.stripe.mapping import customer_from_stripe, invoice_from_stripe, payment_from_stripe_invoice


def translate(event_type: str, payload: Mapping[str, Any]) -> list[Fact]:
    """The facts one Stripe event means. Types the hub does not handle become
    ``Ignored`` (acknowledged and recorded, never processed)."""
    obj = payload.get("data", {}).get("object", {})
    match event_type:
        case "invoice.finalized":
            return [InvoiceIssued(invoice_from_stripe(obj))]
        case "invoice.paid":
            invoice = invoice_from_stripe(obj)
            payment = payment_from_stripe_invoice(obj)
            if payment is None:  # a zero-amount invoice is "paid" with no money moving
                return [InvoiceIssued(invoice)]
            return [InvoicePaid(invoice, payment)]
        case "invoice.voided":
            return [InvoiceVoided(invoice_from_stripe(obj))]
        case "customer.created" | "customer.updated":
            return [CustomerChanged(customer_from_stripe(obj))]
        case _:
            return [Ignored(f"Stripe event type {event_type} is not handled by the hub")]
