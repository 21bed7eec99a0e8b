"""Capability interfaces that connectors implement, and the values they exchange.

Workflows ask the registry for a connector with a capability; they never import a
vendor package.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from canonical.contracts import (
    CreditNoteV1,
    CustomerV1,
    InvoiceV1,
    OrderV1,
    PaymentV1,
    PriceV1,
    ProductV1,
    RefundV1,
    SubscriptionV1,
)

if TYPE_CHECKING:
    from connectors.errors import ConnectorError

@dataclass(frozen=True)
class ExternalDocument:
    """What a target system answered: its id for the document, and more if known.

    ``related`` carries ids of records the connector created or found on the way
    (e.g. ``{"customer": "42"}`` for the ERP party), so the hub can record them as
    cross-references.
    """

    external_id: str
    number: str | None = None
    state: str | None = None
    related: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class LinePosting:
    """Where one invoice line goes in the ledger, as the posting policy decided:
    ERP codes, never ids (the connector resolves them in the entity's company).
    A blank ``revenue_account`` means the company's default revenue account; a
    blank ``cost_center`` no analytic account; a blank ``tax_code`` no tax.
    ``product`` is the SKU of the released catalog product the line bills (the
    ERP product's code): the line posts against that product, or, while the ERP
    does not have it, raises ``ProductMissing``; blank posts the line as free text."""

    revenue_account: str = ""
    cost_center: str = ""
    tax_code: str = ""
    product: str = ""


@dataclass(frozen=True)
class PostingInstructions:
    """The posting policy's decision for one invoice, one entry per line in order."""

    policy_version: int
    lines: tuple[LinePosting, ...]


@dataclass(frozen=True)
class ReceivedEvent:
    """One vendor event, verified and parsed, ready for the inbox."""

    external_id: str
    type: str
    subject: str  # the business object it is about, e.g. "invoice:in_123"
    payload: Mapping[str, Any]
    occurred_at: dt.datetime | None = None


@dataclass(frozen=True)
class Ignored:
    """What a translator returns for an event the hub has nothing to do with: the
    inbox records it as ignored, with the reason, and no workflow runs."""

    reason: str


class Connector:
    """Base of every connector: built from a Connection's config and credentials.

    ``name`` is the connection's stable name: the ``system`` of every reference the
    connector hands back (a customer it reads is ``SourceRef(system=name, …)``), so two
    connections of one vendor never mix their records. It defaults to the vendor.
    ``secret_fields`` names the credential keys that must never be shown or logged.
    ``url_fields`` names the config keys holding URLs the hub calls, validated on save
    by the outbound URL policy; ``fixed_hosts`` (glob patterns) the only hosts those
    URLs may name, for vendors whose API lives on fixed hosts.
    A connector that speaks HTTP builds its vendor client in ``build_client`` (from
    ``self.config``, ``self.credentials`` and ``self.transport``); ``client`` builds
    it on first use and ``close`` releases it.
    """

    vendor: str = ""
    secret_fields: tuple[str, ...] = ()
    url_fields: tuple[str, ...] = ()
    fixed_hosts: tuple[str, ...] = ()

    def __init__(
        self, *, config: Mapping[str, Any], credentials: Mapping[str, Any], transport: Any = None, name: str = ""
    ):
        self.name = name or self.vendor
        self.config = dict(config)
        self.credentials = dict(credentials)
        self._transport = transport
        self._client: Any = None

    @property
    def transport(self) -> Any:
        """The httpx transport a test injected (a fake, no network), or None: then
        ``connectors.http.client`` builds a real one under the outbound URL policy."""
        return self._transport

    def build_client(self) -> Any:
        """The vendor's HTTP client. Raise NeedsConfiguration if settings are missing."""
        raise NotImplementedError(f"{type(self).__name__} has no HTTP client")

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = self.build_client()
        return self._client

    def close(self) -> None:
        """Release network resources. Safe to call more than once."""
        if self._client is not None:
            self._client.close()
            self._client = None


@dataclass(frozen=True)
class ReferenceRates:
    """The rates published for one day: units of ``currency`` per 1 ``base``."""

    date: dt.date
    rates: Mapping[str, Decimal] = field(default_factory=dict)
    base: str = "EUR"

    def against(self, reference: str, currency: str, *, places: int = 6) -> Decimal:
        """Units of ``currency`` per 1 ``reference`` (the ERP's rate of ``currency`` when
        ``reference`` is its rate-1 currency), rounded to ``places`` decimals. KeyError
        names a currency the source does not publish."""
        rates = {**self.rates, self.base: Decimal(1)}
        for code in (reference, currency):
            if code not in rates:
                raise KeyError(code)
        return (rates[currency] / rates[reference]).quantize(Decimal(1).scaleb(-places))


@runtime_checkable
class RateSource(Protocol):
    """A publisher of reference exchange rates (a central bank)."""

    def reference_rates(self, on: dt.date) -> ReferenceRates | None:
        """The rates in force on ``on``: the last day published on or before it (None
        before the first). Reads only."""


@runtime_checkable
class RateSink(Protocol):
    """A ledger that keeps exchange rates per currency and date."""

    def load_exchange_rate(self, rates: ReferenceRates, currency: str, *, idempotency_key: str) -> ExternalDocument:
        """Make ``currency``'s rate for ``rates.date`` the published one, converted to the
        ledger's own reference currency. Looks the rate up (currency, date) before
        creating it; a rate the ledger already has for that date is kept, never
        overwritten."""

    def find_exchange_rate(self, rates: ReferenceRates, currency: str) -> ExternalDocument | None:
        """The ledger's rate for ``currency`` on ``rates.date``, if it has one."""


@runtime_checkable
class InvoicePoster(Protocol):
    """A ledger (ERP) that receives customer invoices and their payments.

    Every method is idempotent for the same document: it looks the document up by
    its source reference before creating anything, so a retry after an unknown
    outcome never creates a second one.
    """

    def find_invoice(self, invoice: InvoiceV1, *, legal_entity: str) -> ExternalDocument | None:
        """The ERP's document for ``invoice`` when it is posted (or paid, or
        cancelled), found by its source reference; None when the ERP has none or
        holds only a draft (``post_invoice`` finishes a draft). Reads only."""

    def post_invoice(self, invoice: InvoiceV1, *, legal_entity: str, idempotency_key: str,
                     posting: PostingInstructions | None = None) -> ExternalDocument:
        """Create (if absent) and post the invoice in the company that books for
        ``legal_entity``, each line on the account, cost center and tax ``posting``
        names; return the ERP's id and number, and in ``related`` the amounts in
        company currency (``company_currency``, ``company_total``, ``company_tax``,
        minor units) when the ERP reports them. Raises Retryable when the outcome is
        unknown, Permanent when the ERP rejects the document, MappingError when a
        code ``posting`` names is not in the ERP."""

    def record_payment(self, payment: PaymentV1, *, legal_entity: str, idempotency_key: str) -> ExternalDocument:
        """Record the payment against the posted invoice it references (no-op if the
        ERP already shows the invoice as paid). Raises Retryable if the invoice is
        not in the ERP yet."""

    def void_invoice(self, invoice: InvoiceV1, *, legal_entity: str, idempotency_key: str) -> ExternalDocument:
        """Cancel a draft, or credit a posted invoice; no-op if already done."""


@dataclass(frozen=True)
class Batching:
    """A connector's offer to carry out several documents of one kind in one go: up
    to ``size`` of them, costing the target about ``calls`` requests whatever their
    number. The governor admits a batch as those calls (one concurrency slot, ``calls``
    tokens of the rate). The runtime sizes each batch to the pace of the last ones
    (a worker process's first carries ``first``, default ``size``), so that it takes at
    most ``seconds`` (None: only the task's time limit bounds it)."""

    size: int
    calls: int
    seconds: float | None = None
    first: int | None = None


@dataclass(frozen=True)
class InvoiceToPost:
    """One invoice of a batch for ``InvoiceBatchPoster.post_invoices``: the arguments
    of ``InvoicePoster.post_invoice``."""

    invoice: InvoiceV1
    legal_entity: str
    idempotency_key: str
    posting: PostingInstructions | None = None


@runtime_checkable
class InvoiceBatchPoster(Protocol):
    """A ledger that also posts invoices in batches, as ``invoice_batching`` declares."""

    invoice_batching: Batching

    def post_invoices(self, items: Sequence[InvoiceToPost]) -> list[ExternalDocument | ConnectorError]:
        """Each item's answer, in order: what ``post_invoice`` returns or raises for it,
        with the same guarantees (looked up by its source reference first, so a batch
        cut short is safe to repeat). Raises, for the whole batch, only what leaves every
        item's outcome alike: the ERP unreachable, a timeout (outcome unknown)."""


@runtime_checkable
class InvoiceAdjuster(Protocol):
    """A ledger that takes the adjustments of invoices it holds: credit notes,
    refunds (and lost disputes) and write-offs. Every method finds its effect by a
    stable reference first (the credit note's source id, the refund's source id in
    the move's description), so a retry never books twice."""

    def find_credit_note(self, credit_note: CreditNoteV1, *, legal_entity: str) -> ExternalDocument | None:
        """The ERP's posted credit note for ``credit_note``, or None. Reads only."""

    def post_credit_note(
        self, credit_note: CreditNoteV1, invoice: InvoiceV1, *, legal_entity: str, idempotency_key: str
    ) -> ExternalDocument:
        """Create (if absent) and post the credit note against the posted ``invoice``,
        and apply its pre-payment part to the invoice. Raises Retryable while the
        invoice is not posted in the ERP, Permanent when the ERP rejects it."""

    def void_credit_note(self, credit_note: CreditNoteV1, *, legal_entity: str, idempotency_key: str) -> ExternalDocument:
        """Cancel the ERP credit note (a no-op when already cancelled, or absent)."""

    def find_refund(self, refund: RefundV1, *, legal_entity: str) -> ExternalDocument | None:
        """The ERP's booking of ``refund``, or None. Reads only."""

    def record_refund(
        self, refund: RefundV1, invoice: InvoiceV1, *, credit_note: CreditNoteV1 | None, legal_entity: str,
        idempotency_key: str,
    ) -> ExternalDocument:
        """Book money paid back on ``invoice``'s payment: against ``credit_note`` when
        one pays it out, else as the payment's reversal. Raises Retryable while the
        invoice (or the credit note) is not in the ERP yet."""

    def write_off_invoice(
        self, invoice: InvoiceV1, *, account: str, legal_entity: str, idempotency_key: str
    ) -> ExternalDocument:
        """Write what the ERP invoice still asks for off to ``account`` (an ERP account
        code); a no-op when nothing is due. Raises NeedsConfiguration when the ERP has
        no write-off method for that account."""


@runtime_checkable
class CustomerSink(Protocol):
    """A system that keeps customers (ERP party, billing customer), upserted by the hub."""

    def upsert_customer(
        self, customer: CustomerV1, *, idempotency_key: str, external_id: str | None = None
    ) -> ExternalDocument:
        """Create the customer, or update the one the target already holds for it, and
        return the target's id (``number``: a human-facing code when there is one).

        ``external_id`` is the target's id the hub has bound for this customer, if
        any. Without one the connector must still not create a second record on a
        retry: it finds the record by a stable reference (the ERP party code
        ``HUB-<canonical id>``) or uses the vendor's idempotency key. Raises Retryable
        when the outcome is unknown or a prerequisite (a parent account) is missing."""


@runtime_checkable
class CustomerSource(Protocol):
    """A system of record for customers (a CRM) the hub reads from."""

    def fetch_customer(self, external_id: str) -> CustomerV1 | None:
        """The current state of one customer record; None when it is deleted or gone."""

    def customers_changed_since(self, since: dt.datetime | None) -> Iterator[ReceivedEvent]:
        """Every customer record modified at or after ``since`` (all when None), oldest
        change first, as inbox events whose ``external_id`` is deterministic per
        record version (so pulling the same change twice is a duplicate) and whose
        ``occurred_at`` is the record's modification time."""


@runtime_checkable
class CustomerWriteBack(Protocol):
    """A CRM that stores the hub's ERP id on its record, for sales to see."""

    def write_back_erp_id(self, external_id: str, erp_id: str, *, idempotency_key: str) -> ExternalDocument:
        """Set the hub-owned ERP id field on the record; a no-op when it already holds
        ``erp_id``. Raises Permanent when the record no longer exists."""


@runtime_checkable
class OrderSource(Protocol):
    """A CRM whose won deals are orders."""

    def fetch_order(self, external_id: str) -> OrderV1 | None:
        """The deal as the CRM holds it now, with its line items; None when it is
        gone. Raises MappingError when the record cannot be an order."""


@runtime_checkable
class SubscriptionReporter(Protocol):
    """A CRM that shows sales what became of its deals: the subscription sold on a
    won deal, and the outcome of an amendment. Each method sets hub-owned fields to
    values, so repeating it is a no-op."""

    def report_subscription(self, deal_id: str, *, subscription_id: str, status: str,
                            idempotency_key: str) -> ExternalDocument:
        """Write the billing subscription's id and status on the won deal. Raises
        Permanent when the deal no longer exists."""

    def report_amendment(self, deal_id: str, *, outcome: str, detail: str, idempotency_key: str) -> ExternalDocument:
        """Write an amendment's outcome (``applied``, ``rejected``, ``failed``) and its
        detail (the reason, the proration invoice) on the amending deal."""


@dataclass(frozen=True)
class SubscriptionChange:
    """What the hub asks billing to change on a subscription. ``items`` are the
    subscription's items afterwards as (billing price id, quantity); ``cancel`` is
    ``now`` or ``period_end`` for a cancellation; ``proration_behavior`` is billing's
    own term (Stripe: ``always_invoice``, ``create_prorations``, ``none``)."""

    items: tuple[tuple[str, int], ...] = ()
    cancel: str | None = None
    proration_behavior: str = "always_invoice"
    amendment: int | None = None
    proration_date: int | None = None


@runtime_checkable
class SubscriptionBilling(Protocol):
    """A billing system that runs subscriptions (Stripe Billing)."""

    def create_subscription(self, subscription: SubscriptionV1, *, customer: str,
                            idempotency_key: str) -> ExternalDocument:
        """Create the subscription for billing's ``customer`` with the vendor's
        idempotency key (a retry returns the first answer). Returns billing's id,
        ``state`` its status and in ``related`` the period, the first invoice and the
        item ids (``item:<billing price>``)."""

    def find_subscription(self, subscription: SubscriptionV1, *, customer: str) -> ExternalDocument | None:
        """The subscription billing holds for the hub's subscription: by its billing
        id when bound, else the ``customer``'s subscription whose metadata names the
        hub's id; None when there is none. ``related["hub_amendment"]`` is the last
        amendment applied to it. Reads only."""

    def amend_subscription(self, billing_id: str, change: SubscriptionChange, *,
                           idempotency_key: str) -> ExternalDocument:
        """Apply ``change`` with the vendor's idempotency key (a retry returns the first
        answer and changes nothing). Returns the same shape as create, with the
        proration invoice (if billing made one) in ``related["invoice"]``. Raises
        Permanent when billing refuses the change (a declined payment, a cancelled
        subscription)."""

    def fetch_invoice(self, invoice_id: str) -> Mapping[str, Any] | None:
        """Billing's invoice as its webhook would carry it, to feed the invoice
        workflow; None when billing has no such invoice."""


@dataclass(frozen=True)
class CatalogPage:
    """One page of a catalog read: the platform's raw items, in its own shape."""

    number: int
    items: Sequence[Mapping[str, Any]]


@dataclass(frozen=True)
class CatalogItem:
    """One raw item mapped to canonical form: the product and the prices it lists."""

    product: ProductV1
    prices: tuple[PriceV1, ...]


@runtime_checkable
class CatalogSource(Protocol):
    """A product platform: the system of record for catalog and list prices."""

    def catalog_pages(self, *, updated_since: dt.datetime | None) -> Iterator[CatalogPage]:
        """Every item changed at or after ``updated_since`` (the whole catalog when
        None), page by page, as the platform pages it. Raises Retryable / RateLimited
        (with ``retry_after``) for a page the platform could not serve, and Permanent
        for a page that is not the documented JSON."""

    def catalog_item_key(self, item: Mapping[str, Any]) -> str | None:
        """The item's SKU by the connection's mapping, or None when it has none."""

    def catalog_item_updated_at(self, item: Mapping[str, Any]) -> dt.datetime | None:
        """When the platform last changed the item, by the mapping, if it says."""

    def catalog_item_map(self, item: Mapping[str, Any]) -> CatalogItem:
        """The canonical product and prices; raises MappingError naming the item and
        the field when the item cannot be mapped. Pure (no I/O)."""


@dataclass(frozen=True)
class TargetProduct:
    """What a target holds for one SKU, for the drift check. ``prices`` are keyed by
    the hub's price key (billing: the lookup key; ERP: the currency of a list price),
    each ``{"currency", "unit_amount", "interval", "external_id"}`` (what applies)."""

    sku: str
    external_id: str
    name: str
    active: bool
    prices: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


@runtime_checkable
class ProductSink(Protocol):
    """A system that keeps the item master (ERP products, billing products)."""

    def upsert_product(self, product: ProductV1, *, idempotency_key: str) -> ExternalDocument:
        """Create the product (code / id from the SKU) or bring it up to date, and
        return the target's id. Found by the SKU before anything is created (or
        created under the vendor's idempotency key), so it is safe to repeat. A
        product with ``active`` false is archived, never deleted."""

    def catalog_snapshot(self, skus: Sequence[str]) -> dict[str, TargetProduct]:
        """What the target holds for ``skus`` and for any other product the hub
        manages there (so extra ones show up), keyed by SKU. Reads only."""


@runtime_checkable
class ListPriceSink(Protocol):
    """An ERP that keeps a list price per product and company."""

    def set_list_price(self, price: PriceV1, *, legal_entity: str, idempotency_key: str) -> ExternalDocument:
        """Write the product's list price in the company that books ``legal_entity``
        (a value set, so repeating it is harmless). Raises Retryable while the
        product is not in the ERP yet."""


@runtime_checkable
class PriceSink(Protocol):
    """A billing system whose prices are immutable: a new amount is a new price."""

    def find_price(self, price: PriceV1, *, version_ref: str) -> ExternalDocument | None:
        """The billing price created for the hub's price version ``version_ref``, if
        any (read after write). Reads only."""

    def create_price(
        self, price: PriceV1, *, version_ref: str, replaces: str | None, idempotency_key: str
    ) -> ExternalDocument:
        """Create the price for ``version_ref`` (the lookup key moves to it), make it
        the product's default when it is the list price, then archive ``replaces``
        (the billing price of the version released before). Every POST carries an
        idempotency key derived from ``idempotency_key``; the creation is found
        first by ``find_price``, so a retry finishes what an earlier attempt began."""

    def price_subscriptions(self, external_id: str) -> int:
        """How many active subscriptions bill the price (0, 1 or "at least 2" as 2)."""


class WebhookReceiver(Protocol):
    """Authenticates and parses a vendor's webhook requests."""

    def verify(
        self, *, body: bytes, headers: Mapping[str, str], secrets: Sequence[str], method: str, url: str
    ) -> None:
        """Raise InvalidSignature unless the request is signed by one of ``secrets``.
        ``method`` and the full ``url`` as received are there for schemes that sign
        them (HubSpot v3); others ignore them."""

    def parse(self, body: bytes) -> list[ReceivedEvent]:
        """Raise MalformedPayload unless the body is a well-formed vendor event (or batch)."""


@dataclass(frozen=True)
class MeterEvent:
    """One usage figure for a billing system's meter: ``value`` (a decimal string) of
    ``event_name`` for ``customer`` (the billing system's customer id) at ``timestamp``.
    ``identifier`` is the billing system's idempotency key for the event."""

    event_name: str
    customer: str
    value: str
    identifier: str
    timestamp: dt.datetime


@runtime_checkable
class MeterEventSink(Protocol):
    """A billing system that bills usage from meter events (Stripe Billing meters)."""

    def send_meter_events(self, events: Sequence[MeterEvent], *, idempotency_key: str) -> ExternalDocument:
        """Send the events (at most 100). Safe to repeat: every event carries its own
        ``identifier``, which the billing system keeps once; a retry after a failure
        half-way resends them all and the ones that landed are not counted twice.
        Raises Retryable when the outcome is unknown, Permanent for refused events."""

    def meter_usage(self, *, event_name: str, customer: str, start: dt.datetime, end: dt.datetime) -> str:
        """What the billing system aggregated for the meter and customer in [start, end)
        (minute-aligned), as a decimal string. Reads only."""
