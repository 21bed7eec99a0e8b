"""The hub's canonical copy of master data and transactions.

Amounts are integers in the currency's minor units (see ``canonical.money``).
``transaction_id`` links a record to the business transaction that last touched it
(a plain UUID: the canonical layer depends on nothing else of ours).
"""

from __future__ import annotations

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models

currency_code = RegexValidator(r"^[A-Z]{3}$", "ISO 4217 code, upper case")
country_code = RegexValidator(r"^[A-Z]{2}$", "ISO 3166-1 alpha-2, upper case")


class LegalEntity(models.Model):
    """A company of the group that books revenue in its functional ``currency``.
    Which documents it books is for the posting policy (``PostingRule``) to say;
    several entities may share a functional currency.

    ``erp_connection`` and ``billing_connection`` name the connections that hold its
    books and its billing account; blank means "the only active one of that role"."""

    code = models.SlugField(max_length=20, unique=True)
    name = models.CharField(max_length=200)
    currency = models.CharField(max_length=3, validators=[currency_code], help_text="Functional currency")
    country = models.CharField(max_length=2, validators=[country_code])
    erp_connection = models.SlugField(
        max_length=50, blank=True, help_text="Name of the ERP connection that books it (blank: the only active ERP)"
    )
    billing_connection = models.SlugField(
        max_length=50, blank=True,
        help_text="Name of its billing connection (blank: the only active billing connection)",
    )
    write_off_account = models.CharField(
        max_length=50, blank=True,
        help_text="ERP account code that uncollectible invoices are written off to (posting policy; "
                  "blank: write-offs wait for finance to name one)",
    )

    class Meta:
        verbose_name_plural = "legal entities"
        ordering = ["code"]

    def __str__(self) -> str:
        return f"{self.code} – {self.name}"


class Customer(models.Model):
    """The hub's golden record of a customer. Which system may change which field
    group is data (``SystemOfRecord``); ``*_key`` fields are normalised match keys
    for duplicate detection, kept in step by ``canonical.services``."""

    class Status(models.TextChoices):
        ACTIVE = "active"
        HELD = "held", "Held (possible duplicate)"
        MERGED = "merged"

    display_name = models.CharField(max_length=300)
    email = models.EmailField(blank=True)
    domain = models.CharField(max_length=255, blank=True)
    address = models.JSONField(default=dict, blank=True)
    country = models.CharField(max_length=2, blank=True)
    tax_ids = models.JSONField(default=list, blank=True)
    currency = models.CharField(max_length=3, blank=True)
    credit_terms = models.JSONField(default=dict, blank=True, help_text="Owned by the ERP by default")
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="children",
        help_text="Parent account (hierarchy), once the parent is known to the hub",
    )
    parent_ref = models.CharField(
        max_length=300, blank=True, help_text="The parent as the source named it: 'system:external id'"
    )
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.ACTIVE)
    merged_into = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="merged_records"
    )
    name_key = models.CharField(max_length=300, blank=True, db_index=True)
    domain_key = models.CharField(max_length=255, blank=True, db_index=True)
    tax_key = models.CharField(max_length=100, blank=True, db_index=True)
    version = models.PositiveIntegerField(default=1)
    transaction_id = models.UUIDField(null=True, blank=True, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return self.display_name


class Product(models.Model):
    """A SKU the hub knows. What it is at any time lives in its versions; ``name`` and
    ``is_active`` mirror the latest released version for lists and look-ups."""

    sku = models.CharField(max_length=100, unique=True)
    name = models.CharField(max_length=300)
    is_active = models.BooleanField(default=True)
    source_system = models.CharField(max_length=50, blank=True, help_text="Connection the catalog comes from")
    source_id = models.CharField(max_length=255, blank=True, help_text="The platform's id of the product")
    created_at = models.DateTimeField(auto_now_add=True, null=True)
    product_line = models.SlugField(
        max_length=50, blank=True, help_text="Product line or type posting policies match on, e.g. 'subscription'"
    )

    class Meta:
        ordering = ["sku"]

    def __str__(self) -> str:
        return f"{self.sku} – {self.name}"


class Price(models.Model):
    """One price of a product as the platform names it (``source_id``, e.g.
    ``pro-monthly-eur``). Its amounts live in versions: billing prices are immutable,
    so each released version is its own billing price."""

    product = models.ForeignKey(Product, on_delete=models.CASCADE, related_name="prices")
    currency = models.CharField(max_length=3, validators=[currency_code])
    source_system = models.CharField(max_length=50)
    source_id = models.CharField(max_length=255)
    created_at = models.DateTimeField(auto_now_add=True, null=True)

    class Meta:
        ordering = ["product", "source_id"]
        constraints = [
            models.UniqueConstraint(fields=["source_system", "source_id"], name="price_unique_source")
        ]

    def __str__(self) -> str:
        return f"{self.source_id} ({self.product.sku}, {self.currency})"


class CatalogVersion(models.Model):
    """One state of a product or price. A real change (a new ``content_hash``) makes a
    new draft; nothing is overwritten. Only an approved version is released to the
    ERP and billing; releasing one supersedes the version released before it."""

    class Status(models.TextChoices):
        DRAFT = "draft"
        APPROVED = "approved"
        RELEASED = "released"
        REJECTED = "rejected"
        SUPERSEDED = "superseded", "Superseded (history)"

    OPEN = (Status.DRAFT, Status.APPROVED)

    number = models.PositiveIntegerField()
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.DRAFT)
    content = models.JSONField(help_text="The contract (ProductV1 / PriceV1) as the platform sent it")
    content_hash = models.CharField(max_length=64)
    changes = models.JSONField(default=dict, blank=True,
                               help_text="field → [released value, this version's value]")
    effective_from = models.DateField(null=True, blank=True)
    source_event = models.BigIntegerField(null=True, blank=True, help_text="The inbox event it came from")
    transaction_id = models.UUIDField(null=True, blank=True, db_index=True)
    decided_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    decided_by_rule = models.CharField(max_length=100, blank=True, help_text="The auto-approval rule, if any")
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_reason = models.TextField(blank=True)
    released_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        abstract = True
        ordering = ["-created_at"]


class ProductVersion(CatalogVersion):
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="versions")

    class Meta(CatalogVersion.Meta):
        permissions = [("approve_catalog", "Can approve or reject catalog versions for release")]
        constraints = [models.UniqueConstraint(fields=["product", "number"], name="product_version_unique")]
        indexes = [models.Index(fields=["product", "status"])]

    def __str__(self) -> str:
        return f"{self.product.sku} v{self.number} ({self.status})"


class PriceVersion(CatalogVersion):
    price = models.ForeignKey(Price, on_delete=models.PROTECT, related_name="versions")
    unit_amount = models.BigIntegerField(null=True, blank=True, help_text="Minor units; empty when tiered")

    class Meta(CatalogVersion.Meta):
        constraints = [models.UniqueConstraint(fields=["price", "number"], name="price_version_unique")]
        indexes = [models.Index(fields=["price", "status"])]

    def __str__(self) -> str:
        return f"{self.price.source_id} v{self.number} ({self.status})"


class CatalogApprovalRule(models.Model):
    """An auto-approval rule, kept as data. A draft that a rule covers is approved by
    the rule (audited under its name) instead of waiting for a person.

    * ``fields_only``: approve when only ``fields`` changed (e.g. display_name, description).
    * ``price_change_below``: approve a price version whose amount moved by less than
      ``percent`` from the released one (and nothing but the amount changed).
    A first version (nothing released yet) is never auto-approved."""

    class Kind(models.TextChoices):
        FIELDS_ONLY = "fields_only", "Only these fields changed"
        PRICE_CHANGE_BELOW = "price_change_below", "Price moved by less than a percentage"

    name = models.CharField(max_length=100, unique=True)
    applies_to = models.CharField(max_length=10, choices=[("product", "product"), ("price", "price")])
    kind = models.CharField(max_length=30, choices=Kind.choices)
    fields = models.JSONField(default=list, blank=True, help_text="For fields_only: the contract fields")
    percent = models.DecimalField(max_digits=6, decimal_places=2, null=True, blank=True)
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Invoice(models.Model):
    class Status(models.TextChoices):
        OPEN = "open"
        PAID = "paid"
        VOID = "void"
        UNCOLLECTIBLE = "uncollectible"

    # A later status never goes back to an earlier one, whatever order events arrive in.
    STATUS_RANK = {Status.OPEN: 0, Status.UNCOLLECTIBLE: 1, Status.PAID: 2, Status.VOID: 2}

    source_system = models.CharField(max_length=50)
    source_id = models.CharField(max_length=255)
    number = models.CharField(max_length=100, blank=True)
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="invoices")
    legal_entity = models.ForeignKey(LegalEntity, on_delete=models.PROTECT, related_name="invoices")
    currency = models.CharField(max_length=3, validators=[currency_code])
    status = models.CharField(max_length=20, choices=Status.choices)
    issued_on = models.DateField()
    due_on = models.DateField(null=True, blank=True)
    subtotal = models.BigIntegerField()
    tax = models.BigIntegerField()
    total = models.BigIntegerField()
    amount_paid = models.BigIntegerField(default=0)
    paid_at = models.DateTimeField(null=True, blank=True)
    voided_at = models.DateTimeField(null=True, blank=True)
    subscription_ref = models.CharField(max_length=255, blank=True)
    version = models.PositiveIntegerField(default=1)
    transaction_id = models.UUIDField(null=True, blank=True, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["source_system", "source_id"], name="invoice_unique_source")
        ]

    def __str__(self) -> str:
        return f"{self.number or self.source_id} ({self.currency})"


class InvoiceLine(models.Model):
    invoice = models.ForeignKey(Invoice, on_delete=models.CASCADE, related_name="lines")
    position = models.PositiveIntegerField()
    source_line_id = models.CharField(max_length=255, blank=True)
    description = models.CharField(max_length=500)
    quantity = models.DecimalField(max_digits=18, decimal_places=6)
    amount = models.BigIntegerField(help_text="Excluding tax, minor units")
    tax_amount = models.BigIntegerField(default=0)
    tax_rate = models.DecimalField(max_digits=9, decimal_places=4, null=True, blank=True)
    product_ref = models.CharField(max_length=255, blank=True)
    price_ref = models.CharField(max_length=255, blank=True)
    period_start = models.DateField(null=True, blank=True)
    period_end = models.DateField(null=True, blank=True)

    class Meta:
        ordering = ["invoice", "position"]
        constraints = [
            models.UniqueConstraint(fields=["invoice", "position"], name="invoice_line_unique_position")
        ]


class Payment(models.Model):
    invoice = models.ForeignKey(Invoice, on_delete=models.PROTECT, related_name="payments")
    source_system = models.CharField(max_length=50)
    source_id = models.CharField(max_length=255)
    currency = models.CharField(max_length=3, validators=[currency_code])
    amount = models.BigIntegerField(help_text="Minor units")
    paid_at = models.DateTimeField()
    transaction_id = models.UUIDField(null=True, blank=True, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["source_system", "source_id"], name="payment_unique_source")
        ]


class CreditNote(models.Model):
    """A credit against one invoice, with how billing settled it (see CreditNoteV1)."""

    class Status(models.TextChoices):
        ISSUED = "issued"
        VOID = "void"

    invoice = models.ForeignKey(Invoice, on_delete=models.PROTECT, related_name="credit_notes")
    source_system = models.CharField(max_length=50)
    source_id = models.CharField(max_length=255)
    number = models.CharField(max_length=100, blank=True)
    currency = models.CharField(max_length=3, validators=[currency_code])
    status = models.CharField(max_length=20, choices=Status.choices)
    issued_on = models.DateField()
    reason = models.CharField(max_length=100, blank=True)
    subtotal = models.BigIntegerField()
    tax = models.BigIntegerField()
    total = models.BigIntegerField()
    pre_payment_amount = models.BigIntegerField(default=0, help_text="Taken off the invoice's amount due")
    refund_amount = models.BigIntegerField(default=0, help_text="Paid back to the customer")
    credit_balance_amount = models.BigIntegerField(default=0, help_text="Kept on the customer's balance")
    out_of_band_amount = models.BigIntegerField(default=0, help_text="Settled outside billing")
    refund_refs = models.JSONField(default=list, blank=True, help_text="Source ids of the refunds that paid it out")
    voided_at = models.DateTimeField(null=True, blank=True)
    version = models.PositiveIntegerField(default=1)
    transaction_id = models.UUIDField(null=True, blank=True, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["source_system", "source_id"], name="credit_note_unique_source")
        ]

    def __str__(self) -> str:
        return f"{self.number or self.source_id} ({self.currency})"


class CreditNoteLine(models.Model):
    credit_note = models.ForeignKey(CreditNote, on_delete=models.CASCADE, related_name="lines")
    position = models.PositiveIntegerField()
    source_line_id = models.CharField(max_length=255, blank=True)
    invoice_line_ref = models.CharField(max_length=255, blank=True, help_text="The credited invoice line, if any")
    description = models.CharField(max_length=500)
    quantity = models.DecimalField(max_digits=18, decimal_places=6, null=True, blank=True)
    amount = models.BigIntegerField(help_text="Excluding tax, minor units")
    tax_amount = models.BigIntegerField(default=0)
    tax_rate = models.DecimalField(max_digits=9, decimal_places=4, null=True, blank=True)

    class Meta:
        ordering = ["credit_note", "position"]
        constraints = [
            models.UniqueConstraint(fields=["credit_note", "position"], name="credit_note_line_unique_position")
        ]


class Refund(models.Model):
    """Money returned on a payment: a refund, or a lost dispute's withdrawn funds."""

    class Kind(models.TextChoices):
        REFUND = "refund"
        DISPUTE_LOST = "dispute_lost"

    payment = models.ForeignKey(Payment, on_delete=models.PROTECT, related_name="refunds")
    source_system = models.CharField(max_length=50)
    source_id = models.CharField(max_length=255)
    kind = models.CharField(max_length=20, choices=Kind.choices, default=Kind.REFUND)
    currency = models.CharField(max_length=3, validators=[currency_code])
    amount = models.BigIntegerField(help_text="Minor units")
    status = models.CharField(max_length=20)
    reason = models.CharField(max_length=100, blank=True)
    refunded_at = models.DateTimeField()
    transaction_id = models.UUIDField(null=True, blank=True, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["source_system", "source_id"], name="refund_unique_source")
        ]


class CrossReference(models.Model):
    """An external id of a canonical record in one system, unique both ways:
    one external id maps to one record, and one record has one id per system."""

    system = models.CharField(
        max_length=50, help_text="Name of the connection the id belongs to, e.g. 'stripe-live' or 'tryton'"
    )
    object_type = models.CharField(max_length=50)
    canonical_id = models.BigIntegerField()
    external_id = models.CharField(max_length=255)
    external_number = models.CharField(max_length=255, blank=True, help_text="Human-facing number, if any")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["system", "object_type", "external_id"], name="xref_unique_external"),
            models.UniqueConstraint(fields=["system", "object_type", "canonical_id"], name="xref_unique_canonical"),
        ]
        indexes = [models.Index(fields=["object_type", "canonical_id"])]

    def __str__(self) -> str:
        return f"{self.object_type} {self.canonical_id} = {self.system}:{self.external_id}"


class SystemOfRecord(models.Model):
    """Which role's system owns one field group of one entity. A change from any
    other system is not applied; it opens a ``FieldConflict`` for the owner."""

    class Role(models.TextChoices):
        CRM = "crm"
        ERP = "erp"
        BILLING = "billing"
        PRODUCT = "product"

    entity = models.CharField(max_length=50, default="customer")
    field_group = models.CharField(max_length=50)
    owner_role = models.CharField(max_length=20, choices=Role.choices)
    note = models.CharField(max_length=300, blank=True)

    class Meta:
        verbose_name = "system of record rule"
        ordering = ["entity", "field_group"]
        constraints = [models.UniqueConstraint(fields=["entity", "field_group"], name="sor_unique_group")]

    def __str__(self) -> str:
        return f"{self.entity}.{self.field_group} → {self.owner_role}"


class FieldConflict(models.Model):
    """A change a non-owning system proposed, held for the owning team to accept or reject."""

    class Status(models.TextChoices):
        OPEN = "open"
        ACCEPTED = "accepted"
        REJECTED = "rejected"

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="conflicts")
    field_group = models.CharField(max_length=50)
    source_system = models.CharField(max_length=50)
    source_role = models.CharField(max_length=20)
    owner_role = models.CharField(max_length=20)
    proposed = models.JSONField(help_text="The values the source sent for this group")
    current = models.JSONField(help_text="The canonical values when the conflict opened")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.OPEN)
    transaction_id = models.UUIDField(null=True, blank=True, db_index=True)
    decided_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    decided_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["status", "owner_role"])]

    def __str__(self) -> str:
        return f"{self.customer}: {self.source_system} changes {self.field_group} (owned by {self.owner_role})"


class DuplicateCase(models.Model):
    """A new customer that looks like one the hub already has: held, not sent to
    the ERP, until a person merges it or declares it distinct."""

    class Status(models.TextChoices):
        OPEN = "open"
        MERGED = "merged"
        DISTINCT = "distinct", "Not a duplicate (onboarded)"

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="duplicate_cases")
    candidates = models.ManyToManyField(Customer, related_name="+")
    reasons = models.JSONField(default=list, help_text="Why each candidate matched")
    survivor = models.ForeignKey(
        Customer, null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        help_text="The record to merge into (defaults to the strongest candidate)",
    )
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.OPEN)
    transaction_id = models.UUIDField(null=True, blank=True, db_index=True)
    decided_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    decided_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"possible duplicate: {self.customer} ({self.status})"


class CustomerAlias(models.Model):
    """An external id of a merged-away record, kept on the survivor when the survivor
    already has its own id in that system (cross-references are unique both ways)."""

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="aliases")
    system = models.CharField(max_length=50)
    object_type = models.CharField(max_length=50, default="customer")
    external_id = models.CharField(max_length=255)
    merged_from = models.BigIntegerField(help_text="The canonical id the alias belonged to")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "customer aliases"
        constraints = [
            models.UniqueConstraint(fields=["system", "object_type", "external_id"], name="alias_unique_external")
        ]

    def __str__(self) -> str:
        return f"{self.system}:{self.external_id} → customer {self.customer_id}"


class CustomerConfirmation(models.Model):
    """Proof that one version of a customer reached every target: its ids in the
    ERP, billing and (written back) the CRM. One per customer version."""

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="confirmations")
    version = models.PositiveIntegerField()
    transaction_id = models.UUIDField(null=True, blank=True, db_index=True)
    references = models.JSONField(default=dict, help_text="target connection → external id")
    confirmed_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-confirmed_at"]
        constraints = [
            models.UniqueConstraint(fields=["customer", "version"], name="confirmation_unique_version")
        ]


# ---------------------------------------------------------------- posting policies


class Region(models.Model):
    """A named set of countries posting rules and tax mappings can match on (EU, GCC …)."""

    code = models.SlugField(max_length=20, unique=True)
    name = models.CharField(max_length=200)
    countries = models.JSONField(default=list, help_text='ISO 3166-1 alpha-2 codes, e.g. ["DE", "FR"]')

    class Meta:
        ordering = ["code"]

    def __str__(self) -> str:
        return f"{self.code} – {self.name}"


class PostingPolicyVersion(models.Model):
    """One version of the posting policy: its rules and tax mappings. A draft is
    edited freely and dry-run against real documents; a finance user approves it
    with a date it takes effect from, and from then on it is frozen (``snapshot``
    holds exactly what decisions read). A document is decided by the approved
    version in effect on its issue date, and records that version."""

    class Status(models.TextChoices):
        DRAFT = "draft"
        APPROVED = "approved"

    number = models.PositiveIntegerField(unique=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.DRAFT)
    note = models.CharField(max_length=500, blank=True, help_text="What this version changes, and why")
    effective_from = models.DateField(null=True, blank=True, help_text="Documents issued on or after this date")
    snapshot = models.JSONField(null=True, blank=True, editable=False)
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    approved_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-number"]
        permissions = [("approve_postingpolicyversion", "Can approve posting policy versions")]
        indexes = [models.Index(fields=["status", "effective_from"])]

    def __str__(self) -> str:
        state = f"effective {self.effective_from}" if self.status == self.Status.APPROVED else "draft"
        return f"posting policy v{self.number} ({state})"


class PostingRule(models.Model):
    """Where a document's lines post: the first rule (lowest priority number) whose
    conditions all hold. A blank condition matches anything."""

    class TaxStatus(models.TextChoices):
        ANY = "", "any"
        B2B = "b2b", "B2B (VAT / tax id)"
        B2C = "b2c", "B2C"
        EXEMPT = "exempt", "Tax exempt"

    class CurrencyTreatment(models.TextChoices):
        INVOICE = "invoice", "Post in the invoice currency (ERP rates to the functional currency)"
        FUNCTIONAL_ONLY = "functional_only", "Functional currency only (anything else is an exception)"

    version = models.ForeignKey(PostingPolicyVersion, on_delete=models.CASCADE, related_name="rules")
    priority = models.PositiveIntegerField(help_text="Lower numbers are tried first")
    name = models.CharField(max_length=200)
    countries = models.JSONField(default=list, blank=True, help_text="Customer countries (blank: any)")
    region = models.ForeignKey(Region, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    tax_status = models.CharField(max_length=10, choices=TaxStatus.choices, blank=True, default="")
    product_line = models.SlugField(max_length=50, blank=True, help_text="The line's product line (blank: any)")
    currency = models.CharField(max_length=3, blank=True, validators=[currency_code], help_text="Blank: any")
    legal_entity = models.ForeignKey(LegalEntity, on_delete=models.PROTECT, related_name="+")
    revenue_account = models.CharField(max_length=50, help_text="ERP account code")
    cost_center = models.CharField(max_length=50, blank=True, help_text="ERP analytic account code (blank: none)")
    currency_treatment = models.CharField(
        max_length=20, choices=CurrencyTreatment.choices, default=CurrencyTreatment.INVOICE
    )

    class Meta:
        ordering = ["version", "priority"]

    def __str__(self) -> str:
        return f"#{self.priority} {self.name}"


class TaxMapping(models.Model):
    """Billing's tax on a line → the ERP tax code, by jurisdiction and rate. The
    jurisdiction is a country (``DE``), a country and subdivision (``US-CA``) or a
    region code (``EU``); the most specific one that matches wins. A blank
    ``tax_code`` posts the line without tax (an explicit choice, never a default)."""

    version = models.ForeignKey(PostingPolicyVersion, on_delete=models.CASCADE, related_name="tax_mappings")
    jurisdiction = models.CharField(max_length=20)
    rate = models.DecimalField(max_digits=9, decimal_places=4, help_text="Percent, as billing computed it")
    tax_status = models.CharField(max_length=10, choices=PostingRule.TaxStatus.choices, blank=True, default="")
    tax_code = models.CharField(max_length=50, blank=True, help_text="ERP tax code (blank: no ERP tax)")

    class Meta:
        ordering = ["version", "jurisdiction", "rate"]

    def __str__(self) -> str:
        return f"{self.jurisdiction} {self.rate.normalize():f} % → {self.tax_code or 'no tax'}"


class PostingDecision(models.Model):
    """What the posting policy decided for one invoice, taken once when the hub
    first learns of it: the version used, the facts it was decided on (for dry
    runs), and per line the account, cost center and tax code. Replays and
    retries post by this record, so a version approved meanwhile never mixes in."""

    invoice = models.OneToOneField(Invoice, on_delete=models.CASCADE, related_name="posting_decision")
    policy_version = models.ForeignKey(PostingPolicyVersion, on_delete=models.PROTECT, related_name="decisions")
    legal_entity = models.ForeignKey(LegalEntity, on_delete=models.PROTECT, related_name="+")
    currency_treatment = models.CharField(max_length=20)
    facts = models.JSONField(help_text="The document facts the policy was applied to")
    lines = models.JSONField(help_text="Per line: rule, revenue account, cost center, tax code")
    company_currency = models.CharField(max_length=3, blank=True, help_text="As the ERP reported after posting")
    company_total = models.BigIntegerField(null=True, blank=True, help_text="Total in company currency, minor units")
    company_tax = models.BigIntegerField(null=True, blank=True, help_text="Tax in company currency, minor units")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"invoice {self.invoice_id} by policy v{self.policy_version.number}"


class ReconciliationRun(models.Model):
    """A three-way reconciliation (billing ↔ hub ↔ ERP) per legal entity × currency."""

    label = models.CharField(max_length=200)
    rows = models.JSONField(help_text="One row per entity × currency: documents, totals, tax, open amounts")
    differences = models.BigIntegerField(help_text="Sum of absolute minor-unit differences over all rows")
    table = models.TextField(help_text="The table as printed")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.label} ({self.differences} minor units off)"


class ExchangeRate(models.Model):
    """A reference rate as a rate source published it: units of ``currency`` per 1
    ``base`` on ``date`` (the publication day). Loaded into each ERP through the
    outbox (``workflows.exchange_rates``)."""

    source = models.SlugField(max_length=50, help_text="Name of the rate-source connection")
    date = models.DateField(help_text="Publication day; the ERP applies it from this date on")
    currency = models.CharField(max_length=3, validators=[currency_code])
    base = models.CharField(max_length=3, default="EUR", validators=[currency_code])
    rate = models.DecimalField(max_digits=20, decimal_places=10)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-date", "currency"]
        constraints = [models.UniqueConstraint(fields=["source", "date", "currency"], name="exchange_rate_once")]
        permissions = [("load_exchangerate", "Can load reference rates into the ERPs")]

    def __str__(self) -> str:
        return f"{self.currency} {self.rate} per {self.base} on {self.date} ({self.source})"


class Order(models.Model):
    """A won deal from the CRM (a Salesforce Opportunity, a HubSpot deal): what the
    customer bought. Every line names a released catalog price: a deal with a line
    that does not is held before it becomes an order (its inbox event fails into an
    exception for sales operations naming the line, replayed once it is fixed)."""

    class Status(models.TextChoices):
        ACCEPTED = "accepted", "Accepted (subscription planned)"
        FULFILLED = "fulfilled", "Fulfilled (subscription in billing)"

    source_system = models.CharField(max_length=50, help_text="The CRM connection it came from")
    source_id = models.CharField(max_length=255, help_text="The CRM's opportunity or deal id")
    name = models.CharField(max_length=300, blank=True)
    customer = models.ForeignKey(Customer, null=True, blank=True, on_delete=models.PROTECT, related_name="orders")
    customer_ref = models.CharField(max_length=255, help_text="The CRM's account or company id")
    currency = models.CharField(max_length=3, validators=[currency_code])
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.ACCEPTED)
    closed_on = models.DateField()
    start_on = models.DateField()
    trial_end = models.DateField(null=True, blank=True)
    term_months = models.PositiveIntegerField(default=12)
    version = models.PositiveIntegerField(default=1)
    transaction_id = models.UUIDField(null=True, blank=True, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [models.UniqueConstraint(fields=["source_system", "source_id"], name="order_unique_source")]

    def __str__(self) -> str:
        return f"order {self.source_system}:{self.source_id} ({self.status})"


class OrderLine(models.Model):
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="lines")
    position = models.PositiveIntegerField()
    source_line_id = models.CharField(max_length=255)
    sku = models.CharField(max_length=100, blank=True)
    price_ref = models.CharField(max_length=255, blank=True, help_text="The catalog price id the CRM line names")
    price_version = models.ForeignKey(PriceVersion, null=True, blank=True, on_delete=models.PROTECT,
                                      related_name="order_lines", help_text="The released version it resolved to")
    quantity = models.IntegerField()

    class Meta:
        ordering = ["order", "position"]
        constraints = [models.UniqueConstraint(fields=["order", "position"], name="order_line_unique_position")]


class Subscription(models.Model):
    """A subscription in billing, created from an order and changed by amendments.
    ``status`` and the current period are billing's (it is the system of record)."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending (not yet in billing)"
        INCOMPLETE = "incomplete"
        TRIALING = "trialing"
        ACTIVE = "active"
        PAST_DUE = "past_due"
        UNPAID = "unpaid"
        PAUSED = "paused"
        CANCELED = "canceled"
        INCOMPLETE_EXPIRED = "incomplete_expired"

    # Billing never brings a subscription back from these.
    ENDED = (Status.CANCELED, Status.INCOMPLETE_EXPIRED)

    order = models.OneToOneField(Order, null=True, blank=True, on_delete=models.PROTECT, related_name="subscription")
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="subscriptions")
    currency = models.CharField(max_length=3, validators=[currency_code])
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    start_on = models.DateField()
    trial_end = models.DateField(null=True, blank=True)
    term_months = models.PositiveIntegerField(default=12)
    current_period_start = models.DateTimeField(null=True, blank=True)
    current_period_end = models.DateTimeField(null=True, blank=True)
    cancel_at_period_end = models.BooleanField(default=False)
    canceled_at = models.DateTimeField(null=True, blank=True)
    billing_event_at = models.PositiveBigIntegerField(
        default=0, help_text="When billing sent the event its status and period are from (epoch seconds)")
    billing_system = models.CharField(max_length=50, blank=True)
    billing_id = models.CharField(max_length=255, blank=True, db_index=True)
    crm_system = models.CharField(max_length=50, blank=True)
    crm_id = models.CharField(max_length=255, blank=True, help_text="The CRM record the subscription is reported on")
    version = models.PositiveIntegerField(default=1)
    transaction_id = models.UUIDField(null=True, blank=True, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"subscription {self.pk} ({self.billing_id or 'not in billing'}, {self.status})"


class SubscriptionItem(models.Model):
    subscription = models.ForeignKey(Subscription, on_delete=models.CASCADE, related_name="items")
    price_version = models.ForeignKey(PriceVersion, on_delete=models.PROTECT, related_name="subscription_items")
    quantity = models.PositiveIntegerField()
    billing_item_id = models.CharField(max_length=255, blank=True)

    class Meta:
        ordering = ["subscription", "pk"]


class Amendment(models.Model):
    """A change to a subscription, carried out as a saga (``AmendmentStep``).
    ``sequence`` is the CRM's order of amendments of one subscription: amendment n+1
    is applied only after n has finished, whatever order they arrive in."""

    class Kind(models.TextChoices):
        UPGRADE = "upgrade"
        DOWNGRADE = "downgrade"
        QUANTITY = "quantity", "Quantity change"
        CANCEL_NOW = "cancel_now", "Cancel now"
        CANCEL_AT_PERIOD_END = "cancel_at_period_end", "Cancel at period end"
        RENEWAL = "renewal"
        BILLING_CHANGE = "billing_change", "Changed in billing (self-service)"

    class Status(models.TextChoices):
        WAITING = "waiting", "Waiting for an earlier amendment"
        APPLYING = "applying", "Applying in billing"
        POSTING = "posting", "Posting to the ERP"
        REPORTING = "reporting", "Reporting to the CRM"
        DONE = "done"
        REJECTED = "rejected", "Rejected (validation)"
        FAILED = "failed", "Failed (billing refused)"

    FINISHED = (Status.DONE, Status.REJECTED, Status.FAILED)

    subscription = models.ForeignKey(Subscription, on_delete=models.PROTECT, related_name="amendments")
    sequence = models.PositiveIntegerField(
        null=True, blank=True, help_text="The CRM's amendment number; empty for a change made in billing")
    source_system = models.CharField(max_length=50)
    source_id = models.CharField(max_length=255)
    kind = models.CharField(max_length=30, choices=Kind.choices)
    items = models.JSONField(default=list, blank=True,
                             help_text="The subscription's items after the change: [{price_version, quantity}]")
    proration_behavior = models.CharField(max_length=30, default="always_invoice")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.WAITING)
    reason = models.TextField(blank=True, help_text="Why it was rejected or failed")
    invoice_ref = models.CharField(max_length=255, blank=True, help_text="Billing's proration invoice, if any")
    transaction_id = models.UUIDField(null=True, blank=True, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["subscription", "sequence"]
        constraints = [
            models.UniqueConstraint(fields=["subscription", "sequence"], name="amendment_unique_sequence"),
            models.UniqueConstraint(fields=["source_system", "source_id"], name="amendment_unique_source"),
        ]

    def __str__(self) -> str:
        return f"amendment {self.sequence} of subscription {self.subscription_id} ({self.kind}, {self.status})"


class AmendmentStep(models.Model):
    """One persisted step of an amendment saga. The billing, ERP and CRM steps are
    carried out by outbox deliveries (``delivery``) whose idempotency key they share."""

    class Name(models.TextChoices):
        VALIDATE = "validate", "1. Validate against the catalog"
        APPLY = "apply", "2. Apply in billing"
        POST = "post", "3. Post to the ERP"
        REPORT = "report", "4. Report to the CRM"

    class State(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"
        SKIPPED = "skipped", "Skipped (compensation)"

    amendment = models.ForeignKey(Amendment, on_delete=models.CASCADE, related_name="steps")
    name = models.CharField(max_length=20, choices=Name.choices)
    state = models.CharField(max_length=20, choices=State.choices, default=State.PENDING)
    idempotency_key = models.CharField(max_length=255, unique=True)
    delivery_id = models.BigIntegerField(null=True, blank=True, help_text="The outbox delivery carrying it out")
    detail = models.TextField(blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    ORDER = [Name.VALIDATE, Name.APPLY, Name.POST, Name.REPORT]

    class Meta:
        ordering = ["amendment", "id"]
        constraints = [models.UniqueConstraint(fields=["amendment", "name"], name="amendment_step_unique")]

    def __str__(self) -> str:
        return f"{self.get_name_display()}: {self.state}"
