"""Versioned canonical contracts: the one typed definition of each business document.

Connectors map vendor payloads to these classes and back (pure functions); the
published JSON Schemas under ``canonical/schemas/`` are generated from them with
``manage.py contracts_publish``, and a test keeps the published files in sync.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Annotated, ClassVar, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from canonical.money import currency_normalize

# Bounds every contract applies, so a payload the database cannot hold is a mapping
# error naming its field, never a failed insert: amounts fit a 64-bit column, text
# fits its column and holds no NUL (PostgreSQL text cannot).
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
Int64 = Annotated[int, Field(ge=INT64_MIN, le=INT64_MAX)]


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("contains a NUL character")
    return value


def Text(max_length: int) -> type[str]:  # noqa: N802 - a type alias factory
    return Annotated[str, Field(max_length=max_length), AfterValidator(_no_nul)]  # type: ignore[return-value]


class Contract(BaseModel):
    """Base of every contract: immutable, strict about unknown fields, versioned."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: ClassVar[str]
    version: ClassVar[int]

    @classmethod
    def schema_id(cls) -> str:
        return f"{cls.name}.v{cls.version}"


class SourceRef(BaseModel):
    """Where a record came from: the system and that system's own id."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    system: Text(50) = Field(min_length=1, examples=["stripe"])
    external_id: Text(255) = Field(min_length=1, examples=["in_1MtHbELkdIwHu7ix"])


class Address(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    line1: Text(255) | None = None
    line2: Text(255) | None = None
    city: Text(255) | None = None
    postal_code: Text(50) | None = None
    state: Text(255) | None = None
    country: str | None = Field(default=None, description="ISO 3166-1 alpha-2", pattern=r"^[A-Z]{2}$")


class TaxId(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    type: Text(50) = Field(examples=["eu_vat"])
    value: Text(100)


class CustomerV1(Contract):
    name: ClassVar[str] = "customer"
    version: ClassVar[int] = 1

    source: SourceRef
    canonical_id: int | None = Field(default=None, description="The hub's id, once known")
    display_name: Text(300) = Field(min_length=1)
    email: Text(254) | None = None
    address: Address | None = None
    tax_ids: tuple[TaxId, ...] = ()
    currency: str | None = None
    domain: Text(255) | None = Field(default=None, description="Web domain, as the source gave it", examples=["acme.com"])
    parent: SourceRef | None = Field(
        default=None, description="The parent account in the same source system (CRM hierarchies)"
    )
    parent_canonical_id: int | None = Field(default=None, description="The hub's id of the parent, once known")
    tax_exempt: Literal["none", "exempt", "reverse"] | None = Field(
        default=None, description="Billing's tax treatment of the customer, when the source states one"
    )

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str | None) -> str | None:
        return currency_normalize(value) if value else None


class InvoiceLineV1(BaseModel):
    """One invoice line. Amounts are integers in the invoice currency's minor units."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    source_line_id: Text(255) | None = None
    description: Text(500) = Field(min_length=1)
    quantity: Decimal = Field(ge=0, lt=10**12)
    amount: Int64 = Field(description="Line amount excluding tax, minor units")
    tax_amount: Int64 = Field(default=0, description="Tax on this line, minor units")
    tax_rate: Decimal | None = Field(default=None, ge=0, lt=100000, description="Percent, e.g. 10 for 10 %, when known")
    product_ref: Text(255) | None = Field(default=None, description="Source system's product id")
    price_ref: Text(255) | None = Field(default=None, description="Source system's price id")
    period_start: dt.date | None = None
    period_end: dt.date | None = None


InvoiceStatus = Literal["open", "paid", "void", "uncollectible"]


class InvoiceV1(Contract):
    """A finalized customer invoice as issued by the billing system."""

    name: ClassVar[str] = "invoice"
    version: ClassVar[int] = 1

    source: SourceRef
    number: Text(100) | None = None
    customer: CustomerV1
    currency: str = Field(description="ISO 4217, upper case")
    status: InvoiceStatus
    issued_on: dt.date
    due_on: dt.date | None = None
    subtotal: Int64 = Field(description="Sum of line amounts excluding tax, minor units")
    tax: Int64 = Field(description="Total tax, minor units")
    total: Int64 = Field(description="subtotal + tax, minor units")
    amount_paid: Int64 = 0
    paid_at: dt.datetime | None = None
    voided_at: dt.datetime | None = None
    subscription_ref: Text(255) | None = None
    lines: tuple[InvoiceLineV1, ...] = Field(min_length=1)

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str) -> str:
        return currency_normalize(value)

    @model_validator(mode="after")
    def _totals_add_up(self) -> InvoiceV1:
        if self.subtotal + self.tax != self.total:
            raise ValueError(f"subtotal {self.subtotal} + tax {self.tax} != total {self.total}")
        if sum(line.amount for line in self.lines) != self.subtotal:
            raise ValueError("line amounts do not add up to the subtotal")
        if sum(line.tax_amount for line in self.lines) != self.tax:
            raise ValueError("line taxes do not add up to the invoice tax")
        return self


class PaymentV1(Contract):
    """Money received against one invoice."""

    name: ClassVar[str] = "payment"
    version: ClassVar[int] = 1

    source: SourceRef
    invoice: SourceRef
    currency: str
    amount: Int64 = Field(gt=0, description="Minor units")
    paid_at: dt.datetime

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str) -> str:
        return currency_normalize(value)


class CreditNoteLineV1(BaseModel):
    """One credited line: a share of an invoice line, or an amount of its own."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    source_line_id: str | None = None
    invoice_line_ref: str | None = Field(
        default=None, description="The credited invoice line's source_line_id; null for a credit by amount"
    )
    description: str = Field(min_length=1)
    quantity: Decimal | None = Field(default=None, ge=0, description="Units credited, when the source says")
    amount: int = Field(ge=0, description="Credited amount excluding tax, minor units")
    tax_amount: int = Field(default=0, ge=0, description="Tax credited on this line, minor units")
    tax_rate: Decimal | None = Field(default=None, description="Percent, when known")


CreditNoteStatus = Literal["issued", "void"]


class CreditNoteV1(Contract):
    """A credit against one issued invoice, and how billing settled it.

    ``total`` = ``pre_payment_amount`` (taken off what the invoice still asks for)
    + ``refund_amount`` (money returned) + ``credit_balance_amount`` (kept on the
    customer's balance) + ``out_of_band_amount`` (settled outside billing).
    """

    name: ClassVar[str] = "credit_note"
    version: ClassVar[int] = 1

    source: SourceRef
    invoice: SourceRef = Field(description="The credited invoice")
    number: str | None = None
    currency: str = Field(description="ISO 4217, upper case")
    status: CreditNoteStatus
    issued_on: dt.date
    reason: str | None = None
    subtotal: int = Field(ge=0, description="Sum of line amounts excluding tax, minor units")
    tax: int = Field(ge=0, description="Total tax credited, minor units")
    total: int = Field(ge=0, description="subtotal + tax, minor units")
    pre_payment_amount: int = Field(default=0, ge=0)
    refund_amount: int = Field(default=0, ge=0)
    credit_balance_amount: int = Field(default=0, ge=0)
    out_of_band_amount: int = Field(default=0, ge=0)
    refunds: tuple[SourceRef, ...] = Field(default=(), description="Refunds that paid the credit out")
    voided_at: dt.datetime | None = None
    lines: tuple[CreditNoteLineV1, ...] = Field(min_length=1)

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str) -> str:
        return currency_normalize(value)

    @model_validator(mode="after")
    def _amounts_add_up(self) -> CreditNoteV1:
        if self.subtotal + self.tax != self.total:
            raise ValueError(f"subtotal {self.subtotal} + tax {self.tax} != total {self.total}")
        if sum(line.amount for line in self.lines) != self.subtotal:
            raise ValueError("line amounts do not add up to the subtotal")
        if sum(line.tax_amount for line in self.lines) != self.tax:
            raise ValueError("line taxes do not add up to the credit note tax")
        settled = self.pre_payment_amount + self.refund_amount + self.credit_balance_amount + self.out_of_band_amount
        if settled != self.total:
            raise ValueError(f"settlement amounts add up to {settled}, the total is {self.total}")
        return self


RefundKind = Literal["refund", "dispute_lost"]
RefundStatus = Literal["pending", "requires_action", "succeeded", "failed", "canceled"]


class RefundV1(Contract):
    """Money returned on a payment: a refund, or the funds of a lost dispute."""

    name: ClassVar[str] = "refund"
    version: ClassVar[int] = 1

    source: SourceRef
    kind: RefundKind = "refund"
    payment: SourceRef = Field(description="The payment it reverses, by the id billing gave that payment")
    payment_aliases: tuple[str, ...] = Field(
        default=(), description="Other ids the same payment may be known by (its charge, its payment intent)"
    )
    currency: str
    amount: int = Field(gt=0, description="Minor units")
    status: RefundStatus
    refunded_at: dt.datetime
    reason: str | None = None

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str) -> str:
        return currency_normalize(value)


class ProductV1(Contract):
    """A sellable item of the catalog (a plan or an add-on) as the product platform
    defines it. ``active`` False means the SKU is retired."""

    name: ClassVar[str] = "product"
    version: ClassVar[int] = 1

    source: SourceRef
    sku: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
                     description="Stock keeping unit: the product's code in every system")
    display_name: str = Field(min_length=1, max_length=300)
    description: str | None = None
    category: str | None = Field(default=None, description="The platform's kind of item, e.g. plan or addon")
    unit_label: str | None = Field(default=None, max_length=12, description="e.g. seat, 1k calls")
    tax_code: str | None = None
    active: bool = True


class PriceTier(BaseModel):
    """One tier of a tiered price; ``up_to`` None is the last, open-ended tier."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    up_to: int | None = Field(default=None, gt=0)
    unit_amount: int | None = Field(default=None, ge=0, description="Per unit in the tier, minor units")
    flat_amount: int | None = Field(default=None, ge=0, description="Flat fee for the tier, minor units")

    @model_validator(mode="after")
    def _some_amount(self) -> PriceTier:
        if self.unit_amount is None and self.flat_amount is None:
            raise ValueError("a tier needs a unit_amount or a flat_amount")
        return self


class PriceV1(Contract):
    """A list price of one product in one currency. Amounts are integers in the
    currency's minor units (JPY has none). Prices are immutable in billing: any
    change of amount, currency, interval or tiers is a new price version."""

    name: ClassVar[str] = "price"
    version: ClassVar[int] = 1

    source: SourceRef
    sku: str = Field(min_length=1, max_length=100)
    currency: str = Field(description="ISO 4217, upper case")
    type: Literal["one_time", "recurring"] = "recurring"
    billing_scheme: Literal["per_unit", "tiered"] = "per_unit"
    unit_amount: int | None = Field(default=None, ge=0, description="Minor units; None when tiered")
    tiers: tuple[PriceTier, ...] = ()
    tiers_mode: Literal["graduated", "volume"] | None = None
    interval: Literal["day", "week", "month", "year"] | None = None
    interval_count: int = Field(default=1, ge=1, le=36)
    usage_type: Literal["licensed", "metered"] = "licensed"
    meter_event_name: str | None = Field(default=None, max_length=100,
                                         description="Usage events that bill a metered price")
    lookup_key: str | None = Field(default=None, max_length=200)
    nickname: str | None = None
    list_price: bool = Field(default=False, description="The product's list price in this currency (the ERP's)")
    effective_from: dt.date | None = None
    effective_to: dt.date | None = None
    active: bool = True

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str) -> str:
        return currency_normalize(value)

    @model_validator(mode="after")
    def _consistent(self) -> PriceV1:
        if self.billing_scheme == "per_unit":
            if self.unit_amount is None:
                raise ValueError("a per_unit price needs unit_amount")
            if self.tiers:
                raise ValueError("a per_unit price has no tiers")
        else:
            if not self.tiers or self.tiers_mode is None:
                raise ValueError("a tiered price needs tiers and tiers_mode")
            if self.tiers[-1].up_to is not None or any(t.up_to is None for t in self.tiers[:-1]):
                raise ValueError("only the last tier is open-ended (up_to null)")
            bounds = [t.up_to for t in self.tiers[:-1]]
            if bounds != sorted(set(bounds)):
                raise ValueError("tier bounds must increase")
        if self.type == "recurring" and self.interval is None:
            raise ValueError("a recurring price needs an interval")
        if self.type == "one_time" and (self.interval is not None or self.usage_type == "metered"):
            raise ValueError("a one_time price has no interval and is not metered")
        if self.usage_type == "metered" and not self.meter_event_name:
            raise ValueError("a metered price needs meter_event_name")
        if self.effective_to and self.effective_from and self.effective_to < self.effective_from:
            raise ValueError("effective_to is before effective_from")
        return self


class OrderLineV1(BaseModel):
    """One line of a won deal. ``price_ref`` names the catalog price (the platform's
    price id); ``sku`` is what the CRM's product says, for people reading a held line."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    source_line_id: Text(255) = Field(min_length=1)
    description: Text(500) = ""
    sku: Text(100) | None = None
    price_ref: Text(255) | None = None
    quantity: int = Field(ge=-(10**9), le=10**9, description="Units (seats); must be above zero to be ordered")


OrderStatus = Literal["won", "open", "lost"]


class OrderV1(Contract):
    """A deal as the CRM holds it: an order once won. Amounts are the catalog's (the
    released price versions), never the CRM's."""

    name: ClassVar[str] = "order"
    version: ClassVar[int] = 1

    source: SourceRef
    customer: SourceRef = Field(description="The CRM account or company the deal belongs to")
    display_name: Text(300) = ""
    status: OrderStatus
    currency: str = Field(description="ISO 4217, upper case")
    closed_on: dt.date | None = None
    start_on: dt.date | None = Field(default=None, description="Service start; the close date when absent")
    trial_end: dt.date | None = None
    term_months: int = Field(default=12, ge=1, le=120)
    lines: tuple[OrderLineV1, ...] = ()
    amends: SourceRef | None = Field(default=None, description="The won deal whose subscription this one amends")
    amendment_sequence: int | None = Field(default=None, ge=1, le=10**6,
                                           description="This amendment's place among the subscription's amendments")
    cancel: Literal["now", "period_end"] | None = Field(default=None, description="An amendment that cancels")

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str) -> str:
        return currency_normalize(value)


class SubscriptionItemV1(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    price_ref: Text(255) = Field(description="The catalog price id of the released version")
    price_version: int = Field(ge=1)
    billing_price: Text(255) | None = Field(default=None, description="Billing's price id for that version")
    quantity: int = Field(ge=1, le=10**9)
    billing_item: Text(255) | None = None


SubscriptionStatus = Literal[
    "pending", "incomplete", "incomplete_expired", "trialing", "active", "past_due", "unpaid", "paused", "canceled"
]


class SubscriptionV1(Contract):
    """A subscription: what the customer is billed for, per period."""

    name: ClassVar[str] = "subscription"
    version: ClassVar[int] = 1

    canonical_id: int | None = None
    customer_id: int = Field(description="The hub's customer id")
    currency: str
    status: SubscriptionStatus
    start_on: dt.date
    trial_end: dt.date | None = None
    term_months: int = Field(ge=1, le=120)
    current_period_start: dt.datetime | None = None
    current_period_end: dt.datetime | None = None
    cancel_at_period_end: bool = False
    canceled_at: dt.datetime | None = None
    billing: SourceRef | None = Field(default=None, description="The subscription in billing, once created")
    crm: SourceRef | None = Field(default=None, description="The CRM deal it was sold on")
    items: tuple[SubscriptionItemV1, ...] = Field(min_length=1)

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str) -> str:
        return currency_normalize(value)


CONTRACTS: tuple[type[Contract], ...] = (
    CustomerV1, InvoiceV1, PaymentV1, CreditNoteV1, RefundV1, ProductV1, PriceV1, OrderV1, SubscriptionV1,
)
