"""Stripe events → canonical facts. Pure: no I/O, no database."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from canonical.events import CustomerChanged, Fact, InvoiceIssued, InvoicePaid, InvoiceVoided
from connectors.base import Ignored
from connectors.stripe.mapping import (
    SYSTEM,
    customer_from_stripe,
    invoice_from_stripe,
    payment_from_stripe_invoice,
)


def translate(event_type: str, payload: Mapping[str, Any], *, system: str = SYSTEM) -> list[Fact | Ignored]:
    """The facts one Stripe event means, with references into ``system`` (the name
    of the connection the event came through). Types the hub does not handle become
    ``Ignored`` (acknowledged and recorded, never processed)."""
    obj = payload.get("data", {}).get("object", {})
    match event_type:
        case "invoice.finalized":
            return [InvoiceIssued(invoice_from_stripe(obj, system=system))]
        case "invoice.paid":
            invoice = invoice_from_stripe(obj, system=system)
            payment = payment_from_stripe_invoice(obj, system=system)
            if payment is None:  # a zero-amount invoice is "paid" with no money moving
                return [InvoiceIssued(invoice)]
            return [InvoicePaid(invoice, payment)]
        case "invoice.voided":
            return [InvoiceVoided(invoice_from_stripe(obj, system=system))]
        case "customer.created" | "customer.updated":
            return [CustomerChanged(customer_from_stripe(obj, system=system))]
        case _:
            return [Ignored(f"Stripe event type {event_type} is not handled by the hub")]
