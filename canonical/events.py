"""Business facts a vendor event translates into, in canonical terms.

Connectors translate their vendor's events into these; workflows act on them, so no
workflow needs to know which vendor sent what.
"""

from __future__ import annotations

from dataclasses import dataclass

from canonical.contracts import (
    CreditNoteV1,
    CustomerV1,
    InvoiceV1,
    OrderV1,
    PaymentV1,
    PriceV1,
    ProductV1,
    RefundV1,
    SourceRef,
)


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


@dataclass(frozen=True)
class CatalogItemRead:
    """One catalog item as the product platform holds it now (a pull): the product
    and every price it lists. ``sync_run`` is the pull that read it, if any."""

    product: ProductV1
    prices: tuple[PriceV1, ...]
    sync_run: int | None = None


@dataclass(frozen=True)
class CatalogItemGone:
    """A full scan of the platform no longer lists a SKU the hub has: it is retired."""

    system: str
    sku: str
    sync_run: int | None = None


@dataclass(frozen=True)
class CatalogChanged:
    """The platform says its catalog changed (a webhook): pull it soon."""

    system: str
    skus: tuple[str, ...] = ()


@dataclass(frozen=True)
class OrderReferenced:
    """A CRM says one of its deals changed (a Salesforce Opportunity change event, a
    HubSpot deal webhook). The workflow reads the deal and its line items through the
    CRM's ``OrderSource``: only a won deal becomes an order."""

    source: SourceRef
    changed_fields: tuple[str, ...] = ()


@dataclass(frozen=True)
class OrderWon:
    """A won deal, read from its CRM: one canonical order (and a subscription)."""

    order: OrderV1


@dataclass(frozen=True)
class AmendmentRequested:
    """A won deal that amends the subscription sold on ``order.amends``."""

    order: OrderV1


@dataclass(frozen=True)
class SubscriptionItemState:
    billing_price: str
    quantity: int
    billing_item: str = ""


@dataclass(frozen=True)
class SubscriptionChanged:
    """Billing says a subscription was created, changed or deleted
    (``customer.subscription.*``). ``amendment`` is the hub's amendment id when the
    change is the hub's own (its metadata says so); otherwise the change was made in
    billing (self-service) and the CRM must learn it."""

    billing: SourceRef
    status: str
    items: tuple[SubscriptionItemState, ...]
    current_period_start: int | None = None
    current_period_end: int | None = None
    cancel_at_period_end: bool = False
    canceled_at: int | None = None
    hub_subscription: int | None = None
    amendment: int | None = None
    event_created: int = 0


Fact = (
    CustomerChanged | CustomerReferenced | CustomerSnapshot | InvoiceIssued | InvoicePaid | InvoiceVoided
    | InvoiceWrittenOff | PaymentReceived | CreditNoteIssued | CreditNoteVoided | RefundIssued
    | CatalogItemRead | CatalogItemGone | CatalogChanged | OrderReferenced | OrderWon | AmendmentRequested
    | SubscriptionChanged
)
