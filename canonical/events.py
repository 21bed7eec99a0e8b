"""Business facts a vendor event translates into, in canonical terms.

Connectors translate their vendor's events into these; workflows act on them, so no
workflow needs to know which vendor sent what.
"""

from __future__ import annotations

from dataclasses import dataclass

from canonical.contracts import CustomerV1, InvoiceV1, PaymentV1


@dataclass(frozen=True)
class CustomerChanged:
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
class Ignored:
    reason: str


Fact = CustomerChanged | InvoiceIssued | InvoicePaid | InvoiceVoided | Ignored
