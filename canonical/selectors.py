"""Reads from the canonical store, as the contracts connectors consume."""

from __future__ import annotations

from canonical.contracts import (
    Address,
    CreditNoteLineV1,
    CreditNoteV1,
    CustomerV1,
    InvoiceLineV1,
    InvoiceV1,
    PaymentV1,
    PriceV1,
    ProductV1,
    RefundV1,
    SourceRef,
    SubscriptionItemV1,
    SubscriptionV1,
    TaxId,
)
from canonical.models import (
    CatalogVersion,
    CreditNote,
    CrossReference,
    Customer,
    Invoice,
    Payment,
    Price,
    PriceVersion,
    Product,
    ProductVersion,
    Refund,
    Subscription,
)


def customer_contract(customer: Customer) -> CustomerV1:
    xref = CrossReference.objects.filter(object_type="customer", canonical_id=customer.pk).order_by("pk").first()
    source = SourceRef(system=xref.system, external_id=xref.external_id) if xref else SourceRef(
        system="hub", external_id=str(customer.pk)
    )
    return CustomerV1(
        source=source,
        canonical_id=customer.pk,
        display_name=customer.display_name,
        email=customer.email or None,
        address=Address(**customer.address) if customer.address else None,
        tax_ids=tuple(TaxId(**tax_id) for tax_id in customer.tax_ids),
        currency=customer.currency or None,
        domain=customer.domain or None,
        parent=_parent_ref(customer.parent_ref),
        parent_canonical_id=customer.parent_id,
    )


def _parent_ref(value: str) -> SourceRef | None:
    system, _, external_id = value.partition(":")
    return SourceRef(system=system, external_id=external_id) if system and external_id else None


def customer_source_ref(customer: Customer, system: str) -> str | None:
    """The customer's own id in ``system`` (its cross-reference), if it has one."""
    return (
        CrossReference.objects.filter(object_type="customer", canonical_id=customer.pk, system=system)
        .values_list("external_id", flat=True)
        .first()
    )


def invoice_contract(invoice: Invoice) -> InvoiceV1:
    return InvoiceV1(
        source=SourceRef(system=invoice.source_system, external_id=invoice.source_id),
        number=invoice.number or None,
        customer=customer_contract(invoice.customer),
        currency=invoice.currency,
        status=invoice.status,
        issued_on=invoice.issued_on,
        due_on=invoice.due_on,
        subtotal=invoice.subtotal,
        tax=invoice.tax,
        total=invoice.total,
        amount_paid=invoice.amount_paid,
        paid_at=invoice.paid_at,
        voided_at=invoice.voided_at,
        subscription_ref=invoice.subscription_ref or None,
        lines=tuple(
            InvoiceLineV1(
                source_line_id=line.source_line_id or None,
                description=line.description,
                quantity=line.quantity.normalize(),
                amount=line.amount,
                tax_amount=line.tax_amount,
                tax_rate=line.tax_rate,
                product_ref=line.product_ref or None,
                price_ref=line.price_ref or None,
                period_start=line.period_start,
                period_end=line.period_end,
            )
            for line in invoice.lines.all()
        ),
    )


def payment_contract(payment: Payment) -> PaymentV1:
    invoice = payment.invoice
    return PaymentV1(
        source=SourceRef(system=payment.source_system, external_id=payment.source_id),
        invoice=SourceRef(system=invoice.source_system, external_id=invoice.source_id),
        currency=payment.currency,
        amount=payment.amount,
        paid_at=payment.paid_at,
    )


def credit_note_contract(note: CreditNote) -> CreditNoteV1:
    invoice = note.invoice
    return CreditNoteV1(
        source=SourceRef(system=note.source_system, external_id=note.source_id),
        invoice=SourceRef(system=invoice.source_system, external_id=invoice.source_id),
        number=note.number or None,
        currency=note.currency,
        status=note.status,
        issued_on=note.issued_on,
        reason=note.reason or None,
        subtotal=note.subtotal,
        tax=note.tax,
        total=note.total,
        pre_payment_amount=note.pre_payment_amount,
        refund_amount=note.refund_amount,
        credit_balance_amount=note.credit_balance_amount,
        out_of_band_amount=note.out_of_band_amount,
        refunds=tuple(SourceRef(system=note.source_system, external_id=ref) for ref in note.refund_refs),
        voided_at=note.voided_at,
        lines=tuple(
            CreditNoteLineV1(
                source_line_id=line.source_line_id or None,
                invoice_line_ref=line.invoice_line_ref or None,
                description=line.description,
                quantity=line.quantity.normalize() if line.quantity is not None else None,
                amount=line.amount,
                tax_amount=line.tax_amount,
                tax_rate=line.tax_rate,
            )
            for line in note.lines.all()
        ),
    )


def refund_contract(refund: Refund) -> RefundV1:
    payment = refund.payment
    return RefundV1(
        source=SourceRef(system=refund.source_system, external_id=refund.source_id),
        kind=refund.kind,
        payment=SourceRef(system=payment.source_system, external_id=payment.source_id),
        currency=refund.currency,
        amount=refund.amount,
        status=refund.status,
        refunded_at=refund.refunded_at,
        reason=refund.reason or None,
    )


# ---------------------------------------------------------------- catalog


def price_released(ref: str, *, system: str | None = None) -> PriceVersion | None:
    """The released version of a price, by the platform's price id (``ref``, e.g.
    ``pro-monthly-eur``) or by a billing system's price id (``price_…``, bound when the
    version was released), optionally within one connection. None when nothing is
    released for it (a draft or approved version is never a price anyone may bill).

    This is the selector orders and quotes use to reference a price."""
    versions = PriceVersion.objects.select_related("price__product").filter(status=CatalogVersion.Status.RELEASED)
    by_platform = versions.filter(price__source_id=ref)
    if system is not None:
        by_platform = by_platform.filter(price__source_system=system)
    found = by_platform.order_by("-number").first()
    if found is not None:
        return found
    bound = CrossReference.objects.filter(object_type="price_version", external_id=ref)
    if system is not None:
        bound = bound.filter(system=system)
    ids = list(bound.values_list("canonical_id", flat=True))
    # A billing id names one version; it is the released one only while nothing replaced it.
    return versions.filter(pk__in=ids).first() if ids else None


def catalog_products_of_prices(refs: set[str], *, system: str) -> dict[str, Product]:
    """The catalog product each billing price id of ``system`` (bound when one of its
    versions was released there, released or since replaced) or platform price id
    belongs to; refs the catalog does not know are left out. Invoice lines use it:
    a line billed on an old price of a SKU is still revenue of that SKU."""
    refs = {ref for ref in refs if ref}
    if not refs:
        return {}
    bound = dict(CrossReference.objects.filter(system=system, object_type="price_version", external_id__in=refs)
                 .values_list("external_id", "canonical_id"))
    owners = dict(PriceVersion.objects.filter(pk__in=bound.values()).values_list("pk", "price__product_id"))
    product_of = {ref: owners[version] for ref, version in bound.items() if version in owners}
    for source_id, product_id in Price.objects.filter(source_id__in=refs - set(product_of)).values_list(
            "source_id", "product_id"):
        product_of.setdefault(source_id, product_id)
    products = Product.objects.in_bulk(set(product_of.values()))
    return {ref: products[product_id] for ref, product_id in product_of.items()}


def price_refs_of_product(product_id: int) -> set[str]:
    """Every id an invoice line may name a price of this catalog product by: the billing
    ids its price versions were released as, and the platform's price ids (the inverse
    of ``catalog_products_of_prices``)."""
    versions = PriceVersion.objects.filter(price__product_id=product_id).values("pk")
    billed = CrossReference.objects.filter(object_type="price_version", canonical_id__in=versions)
    return ({ref for ref in billed.values_list("external_id", flat=True)}
            | {ref for ref in Price.objects.filter(product_id=product_id).values_list("source_id", flat=True) if ref})


def price_released_for_sku(sku: str, currency: str, *, interval: str | None = None) -> list[PriceVersion]:
    """The released prices of a SKU in one currency (optionally one billing interval)."""
    found = PriceVersion.objects.select_related("price__product").filter(
        status=CatalogVersion.Status.RELEASED, price__product__sku=sku, price__currency=currency.upper())
    if interval is not None:
        found = found.filter(content__interval=interval)
    return list(found.order_by("price__source_id"))


def price_contract(version: PriceVersion) -> PriceV1:
    return PriceV1.model_validate(version.content)


def product_contract(version: ProductVersion) -> ProductV1:
    return ProductV1.model_validate(version.content)


def price_billing_ref(version: PriceVersion, system: str) -> str | None:
    """Billing's price id for a released price version (bound when it was released)."""
    return CrossReference.objects.filter(system=system, object_type="price_version", canonical_id=version.pk).values_list(
        "external_id", flat=True).first()


def subscription_contract(subscription: Subscription) -> SubscriptionV1:
    items = [
        SubscriptionItemV1(
            price_ref=item.price_version.price.source_id, price_version=item.price_version.number,
            billing_price=price_billing_ref(item.price_version, subscription.billing_system)
            if subscription.billing_system else None,
            quantity=item.quantity, billing_item=item.billing_item_id or None,
        )
        for item in subscription.items.select_related("price_version__price")
    ]
    return SubscriptionV1(
        canonical_id=subscription.pk, customer_id=subscription.customer_id, currency=subscription.currency,
        status=subscription.status, start_on=subscription.start_on, trial_end=subscription.trial_end,
        term_months=subscription.term_months, current_period_start=subscription.current_period_start,
        current_period_end=subscription.current_period_end, cancel_at_period_end=subscription.cancel_at_period_end,
        canceled_at=subscription.canceled_at,
        billing=SourceRef(system=subscription.billing_system, external_id=subscription.billing_id)
        if subscription.billing_id else None,
        crm=SourceRef(system=subscription.crm_system, external_id=subscription.crm_id) if subscription.crm_id else None,
        items=tuple(items),
    )


def subscription_history(subscription: Subscription) -> list[dict]:
    """What happened to a subscription, oldest first: the order it came from, then
    each amendment with its saga's steps."""
    history: list[dict] = []
    if subscription.order is not None:
        order = subscription.order
        history.append({
            "kind": "order", "at": order.created_at, "source": f"{order.source_system}:{order.source_id}",
            "status": order.status,
            "lines": [{"sku": line.sku, "price_ref": line.price_ref, "quantity": line.quantity}
                      for line in order.lines.all()],
        })
    for amendment in subscription.amendments.prefetch_related("steps").order_by("sequence"):
        history.append({
            "kind": "amendment", "at": amendment.created_at, "sequence": amendment.sequence,
            "source": f"{amendment.source_system}:{amendment.source_id}", "change": amendment.kind,
            "status": amendment.status, "reason": amendment.reason, "invoice": amendment.invoice_ref,
            "items": amendment.items,
            "steps": [{"name": step.name, "state": step.state, "idempotency_key": step.idempotency_key,
                       "started_at": step.started_at, "finished_at": step.finished_at, "detail": step.detail}
                      for step in amendment.steps.all()],
        })
    return history
