"""Invoice and payment posting: billing → ERP, event-driven, exactly once in effect.

An issued invoice becomes one ``invoice.post`` delivery to the ERP; a payment an
``invoice.pay`` delivery and a void an ``invoice.void`` delivery, each waiting for the
post. Events may arrive in any order and any number of times: the canonical invoice
only moves forward, and every delivery's idempotency key is planned once.

Where an invoice posts is the posting policy's decision (``canonical.policy``),
taken once, when the hub first learns of the invoice, by the approved version in
effect on its issue date: the legal entity (and so the ERP connection, by the
entity's ``erp_connection``, and the company), and per line the revenue account,
cost center and tax code. The decision is stored with the version it used; every
later delivery of that invoice posts by it. A document no rule covers is a
``PolicyMissing`` finance exception, replayed once the policy covers it.

A line whose billing price belongs to the catalog posts against that SKU's ERP
product (revenue by product), resolved at each attempt: while the SKU is not
released to the ERP yet the post is retried (``ProductMissing``), then it is a
product-operations exception. Once the product is released there, every post waiting
for it (dead or in its backoff) is retried at once, without anyone replaying it
(``product_released``). It is never posted as free text. A line the catalog does not know posts as text, as always.

Adjustments of invoices (credit notes, partial payments, refunds, lost disputes,
write-offs) are handled in ``invoice_adjustments`` and declared here with the rest.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import structlog
from django.db import IntegrityError
from django.db.models import Count, OuterRef, Q, Subquery
from django.dispatch import receiver
from django.utils import timezone

from canonical.contracts import CreditNoteV1, InvoiceV1, PaymentV1, RefundV1
from canonical.events import InvoiceIssued, InvoicePaid, InvoiceVoided, InvoiceWrittenOff
from canonical.models import (
    CrossReference,
    Invoice,
    LegalEntity,
    Payment,
    PostingPolicyVersion,
)
from canonical.policy import PolicyMissing
from canonical.policy_services import (
    policy_version_in_effect,
    posting_company_amounts_record,
    posting_decide,
    posting_decision_record,
)
from canonical.selectors import (
    catalog_products_of_prices,
    invoice_contract,
    payment_contract,
    price_refs_of_product,
)
from canonical.services import AdjustmentMismatch, customer_ingest, invoice_upsert, payment_upsert, xref_bind
from canonical.signals import product_released
from connectors.base import (
    ExternalDocument,
    InvoiceBatchPoster,
    InvoicePoster,
    InvoiceToPost,
    LinePosting,
    PostingInstructions,
)
from connectors.errors import ProductMissing
from connectors.models import Connection
from integration_hub.runtime.dispatch import (
    BatchSend,
    DeliveryAction,
    Indicator,
    QueueClass,
    TraceSection,
    Workflow,
    register_workflow,
)
from integration_hub.runtime.failures import DATA_OWNER, Failure
from integration_hub.runtime.models import Delivery, DeliveryAttempt, ExceptionRecord, InboundEvent
from integration_hub.runtime.services import deliveries_retry_now
from integration_hub.workflows import invoice_adjustments as adjustments
from integration_hub.workflows.invoice_corrections import INVOICE_CORRECTION

log = structlog.get_logger(__name__)

POST, PAY, VOID = "invoice.post", "invoice.pay", "invoice.void"


def _invoice_record(
    fact: InvoiceIssued | InvoicePaid | InvoiceVoided | InvoiceWrittenOff, event: InboundEvent
) -> Invoice:
    contract = fact.invoice
    # The invoice carries a copy of its customer: it fills gaps, never overrules.
    customer = customer_ingest(contract.customer, transaction_id=event.transaction_id, second_hand=True).customer
    known = Invoice.objects.filter(source_system=contract.source.system, source_id=contract.source.external_id)
    if known.filter(posting_decision__isnull=False).exists():
        # Decided once: a later event about the invoice never re-decides it.
        return invoice_upsert(contract, customer=customer, legal_entity=known.get().legal_entity,
                              transaction_id=event.transaction_id)
    version, facts, decision = posting_decide(contract)
    invoice = invoice_upsert(
        contract, customer=customer, legal_entity=LegalEntity.objects.get(code=decision.legal_entity),
        transaction_id=event.transaction_id,
    )
    posting_decision_record(invoice, version, facts, decision)
    return invoice


def invoice_issued(fact: InvoiceIssued, event: InboundEvent) -> None:
    adjustments.plan_post(_invoice_record(fact, event), event)


def invoice_paid(fact: InvoicePaid, event: InboundEvent) -> None:
    invoice = _invoice_record(fact, event)
    post = adjustments.plan_post(invoice, event)
    payment = payment_upsert(fact.payment, invoice=invoice, transaction_id=event.transaction_id)
    adjustments.plan_on_invoice(invoice, event, action=PAY, object_type="payment", object_id=payment.pk, after=post)


def invoice_voided(fact: InvoiceVoided, event: InboundEvent) -> None:
    invoice = _invoice_record(fact, event)
    post = adjustments.plan_post(invoice, event)
    adjustments.plan_on_invoice(invoice, event, action=VOID, object_type="invoice", object_id=invoice.pk, after=post)


def _invoices_to_send():
    """Invoices with what sending one reads (entity, customer, stored decision, lines):
    two statements for any number of them, rather than a few for each."""
    return (Invoice.objects.select_related("legal_entity", "customer", "posting_decision__policy_version")
            .prefetch_related("lines"))


def _invoice_to_send(delivery: Delivery) -> Invoice:
    return _invoices_to_send().get(pk=delivery.object_id)


def _post_lookup(connector: InvoicePoster, delivery: Delivery) -> ExternalDocument | None:
    invoice = _invoice_to_send(delivery)
    return connector.find_invoice(invoice_contract(invoice), legal_entity=invoice.legal_entity.code)


def line_products(invoice: Invoice, *, erp: str) -> list[str]:
    """Per line, the SKU of the catalog product its billing price belongs to ("" for
    a price the catalog does not know). Raises ProductMissing for a catalog SKU not
    released to ``erp`` yet (no binding of the product there)."""
    lines = [line.price_ref for line in invoice.lines.all()]  # in position order (the model's)
    products = catalog_products_of_prices(set(lines), system=invoice.source_system)
    if not products:
        return [""] * len(lines)
    in_erp = set(CrossReference.objects.filter(
        system=erp, object_type="product", canonical_id__in=[p.pk for p in products.values()],
    ).values_list("canonical_id", flat=True))
    for index, ref in enumerate(lines):
        product = products.get(ref)
        if product is not None and product.pk not in in_erp:
            raise ProductMissing(
                f"line {index + 1} bills price {ref} of catalog SKU {product.sku}, which is not released to "
                f"{erp} yet; release the SKU (approve its product version), then replay", sku=product.sku)
    return [products[ref].sku if ref in products else "" for ref in lines]


def posts_waiting_for_product(product_id: int, system: str) -> list[Delivery]:
    """Posts to ``system`` of invoices billing this product whose last attempt failed
    because the ERP did not have it yet (dead, or waiting for their backoff)."""
    last_error = DeliveryAttempt.objects.filter(delivery=OuterRef("pk")).order_by("-pk").values("error_class")[:1]
    invoices = Invoice.objects.filter(lines__price_ref__in=price_refs_of_product(product_id)).values("pk")
    return list(Delivery.objects.filter(
        action=POST, connection__name=system, object_type="invoice", object_id__in=invoices,
        status__in=[*Delivery.WAITING, Delivery.Status.DEAD], attempts__gt=0,
    ).annotate(last_error_class=Subquery(last_error)).filter(last_error_class=ProductMissing.__name__))


@receiver(product_released)
def _product_released(sender, *, product_id: int, system: str, **kwargs) -> None:
    """A SKU reached the ERP: the invoices waiting for it post now, nobody replays them."""
    waiting = posts_waiting_for_product(product_id, system)
    if waiting:
        sent = deliveries_retry_now(waiting, reason=f"its catalog SKU was released to {system}")
        log.info("invoice_posts_resumed_after_release", product=product_id, system=system, deliveries=sent)


def posting_instructions(invoice: Invoice, *, erp: str) -> PostingInstructions | None:
    """The stored policy decision in the connector's terms, with each line's catalog
    product (None for an invoice decided before posting policies existed)."""
    decision = getattr(invoice, "posting_decision", None)
    if decision is None:
        return None
    products = line_products(invoice, erp=erp)
    if len(products) != len(decision.lines):
        products = [""] * len(decision.lines)  # the connector refuses the mismatch itself
    return PostingInstructions(
        policy_version=decision.policy_version.number,
        lines=tuple(LinePosting(revenue_account=line["revenue_account"], cost_center=line["cost_center"],
                                tax_code=line["tax_code"], product=sku)
                    for line, sku in zip(decision.lines, products, strict=True)),
    )


def _post_send(connector: InvoicePoster, delivery: Delivery) -> ExternalDocument:
    invoice = _invoice_to_send(delivery)
    return connector.post_invoice(
        invoice_contract(invoice), legal_entity=invoice.legal_entity.code, idempotency_key=delivery.idempotency_key,
        posting=posting_instructions(invoice, erp=delivery.connection.name),
    )


def _post_send_batch(connector: InvoiceBatchPoster, deliveries: Sequence[Delivery]) -> list[ExternalDocument | Exception]:
    """A backlog of posts in batches the ERP takes (a month-end run, the end of a maintenance
    window). Safe to repeat: the connector looks every invoice up by its source reference first."""
    invoices = _invoices_to_send().in_bulk([delivery.object_id for delivery in deliveries])
    return connector.post_invoices([
        InvoiceToPost(invoice_contract(invoice), legal_entity=invoice.legal_entity.code,
                      idempotency_key=delivery.idempotency_key,
                      posting=posting_instructions(invoice, erp=delivery.connection.name))
        for delivery, invoice in ((delivery, invoices[delivery.object_id]) for delivery in deliveries)
    ])


def _post_bind(delivery: Delivery, document: ExternalDocument) -> None:
    system = delivery.connection.name
    xref_bind(
        system=system, object_type="invoice", canonical_id=delivery.object_id,
        external_id=document.external_id, number=document.number or "",
    )
    if document.related.get("company_total") is not None:
        posting_company_amounts_record(
            delivery.object_id, currency=document.related["company_currency"],
            total=int(document.related["company_total"]), tax=int(document.related.get("company_tax") or 0),
        )
    if customer_id := document.related.get("customer"):
        invoice = Invoice.objects.only("customer_id").get(pk=delivery.object_id)
        try:
            xref_bind(system=system, object_type="customer", canonical_id=invoice.customer_id, external_id=customer_id)
        except IntegrityError as exc:
            # The invoice is posted either way; a clash of party bindings is for a
            # person to look at, not a reason to undo the posting.
            log.warning("customer_binding_conflict", error=str(exc))


def _pay_send(connector: InvoicePoster, delivery: Delivery) -> ExternalDocument:
    """Safe to repeat: the connector checks the ERP invoice's payments first."""
    payment = Payment.objects.select_related("invoice__legal_entity").get(pk=delivery.object_id)
    return connector.record_payment(
        payment_contract(payment), legal_entity=payment.invoice.legal_entity.code,
        idempotency_key=delivery.idempotency_key,
    )


def _void_send(connector: InvoicePoster, delivery: Delivery) -> ExternalDocument:
    """Safe to repeat: the connector checks for the cancellation or credit note first."""
    invoice = Invoice.objects.select_related("legal_entity", "customer").get(pk=delivery.object_id)
    return connector.void_invoice(
        invoice_contract(invoice), legal_entity=invoice.legal_entity.code, idempotency_key=delivery.idempotency_key
    )


def _no_binding(delivery: Delivery, document: ExternalDocument) -> None:
    """The ERP document is the invoice already bound by its post."""


def _invoice_rows(transaction_id, delivered) -> list[dict]:
    invoices = Invoice.objects.filter(
        Q(transaction_id=transaction_id) | Q(pk__in=delivered.get("invoice", ()))
    ).annotate(line_count=Count("lines")).select_related("legal_entity", "posting_decision__policy_version")
    return [
        {"id": i.pk, "source": f"{i.source_system}:{i.source_id}", "number": i.number, "currency": i.currency,
         "status": i.status, "subtotal": i.subtotal, "tax": i.tax, "total": i.total,
         "amount_paid": i.amount_paid, "version": i.version, "issued_on": i.issued_on, "lines": i.line_count,
         "legal_entity": i.legal_entity.code, **_decision_row(i)}
        for i in invoices
    ]


def _decision_row(invoice: Invoice) -> dict:
    decision = getattr(invoice, "posting_decision", None)
    if decision is None:
        return {}
    return {"policy_version": decision.policy_version.number, "posting": decision.lines,
            "company_currency": decision.company_currency, "company_total": decision.company_total}


def _payment_rows(transaction_id, delivered) -> list[dict]:
    payments = Payment.objects.filter(
        Q(transaction_id=transaction_id) | Q(pk__in=delivered.get("payment", ()))
        | Q(invoice__transaction_id=transaction_id)
    ).distinct()
    return [
        {"id": p.pk, "source": f"{p.source_system}:{p.source_id}", "amount": p.amount, "currency": p.currency}
        for p in payments
    ]


ACTIVE = {"status__in": "open,acknowledged"}
UNFINISHED = {"status__in": "pending,held,in_flight"}
FINANCE = ExceptionRecord.Team.FINANCE
EXCEPTIONS = "runtime.ExceptionRecord"

SUBJECTS = ("invoice", "payment", "invoice_payment", "credit_note", "refund", "charge", "dispute")
OF_ITS_DOCUMENTS = {"transaction__kind__in": ",".join(SUBJECTS)}

INDICATORS = (
    Indicator("awaiting_posting", "Invoices awaiting ERP posting", "runtime.Delivery",
              {"action": POST, **UNFINISHED}, team=FINANCE, help="planned, held or being posted"),
    Indicator("payments_awaiting", "Payments and voids awaiting the ERP", "runtime.Delivery",
              {"action__in": f"{PAY},{VOID}", **UNFINISHED}, team=FINANCE),
    Indicator("adjustments_awaiting", "Credit notes, refunds and write-offs awaiting the ERP", "runtime.Delivery",
              {"action__in": ",".join(action.name for action in adjustments.ACTIONS), **UNFINISHED}, team=FINANCE),
    Indicator("stuck_mapping", "Invoices stuck in validation: mapping", EXCEPTIONS,
              {"category": "mapping", "inbound_event__isnull": "False", **OF_ITS_DOCUMENTS, **ACTIVE}, team=FINANCE, help="the billing event could not be read; fix its payload and replay"),
    Indicator("stuck_policy", "Invoices stuck in validation: posting policy", EXCEPTIONS,
              {"category": "policy", **OF_ITS_DOCUMENTS, **ACTIVE}, team=FINANCE,
              help="no approved posting policy rule covers the document (entity, account, tax)"),
    Indicator("stuck_tax", "Invoices stuck in validation: tax and totals (ERP)", EXCEPTIONS,
              {"category__in": "mapping,rejected", "delivery__action": POST, **ACTIVE}, team=FINANCE,
              help="the ERP refused the document: no matching tax, or its total differs"),
    Indicator("policies_awaiting", "Posting policy versions awaiting approval", "canonical.PostingPolicyVersion",
              {"status": PostingPolicyVersion.Status.DRAFT}, team=FINANCE,
              help="drafts to dry-run and approve (the Policy approver role)"),
)


def policy_in_force() -> str:
    """The posting policy version deciding today's documents (the inventory shows it)."""
    version = policy_version_in_effect(timezone.localdate())
    if version is None:
        return "no approved posting policy in effect: new invoices wait as policy exceptions"
    drafts = PostingPolicyVersion.objects.filter(status=PostingPolicyVersion.Status.DRAFT).count()
    return (f"posting policy v{version.number}, in effect since {version.effective_from:%Y-%m-%d}"
            + (f"; {drafts} draft version(s) awaiting approval" if drafts else ""))


WORKFLOW = register_workflow(Workflow(
    name="invoice_posting",
    title="Invoice and payment posting",
    pattern="event-driven, guaranteed delivery (billing webhook → ERP)",
    data_owner=ExceptionRecord.Team.FINANCE,
    queue=QueueClass.FINANCE,
    source_role=Connection.Role.BILLING,
    target_roles=(Connection.Role.ERP,),
    contracts=(InvoiceV1, PaymentV1, CreditNoteV1, RefundV1),
    indicators=INDICATORS,
    policy_in_force=policy_in_force,
    subjects=SUBJECTS,
    facts={
        InvoiceIssued: invoice_issued, InvoicePaid: invoice_paid, InvoiceVoided: invoice_voided,
        InvoiceWrittenOff: partial(adjustments.invoice_written_off, record=_invoice_record),
        **adjustments.FACTS,
    },
    actions=(
        DeliveryAction(name=POST, capability=InvoicePoster, send=_post_send, bind=_post_bind, lookup=_post_lookup,
                       batch=BatchSend(InvoiceBatchPoster, lambda connector: connector.invoice_batching,
                                       _post_send_batch)),
        DeliveryAction(name=PAY, capability=InvoicePoster, send=_pay_send, bind=_no_binding),
        DeliveryAction(name=VOID, capability=InvoicePoster, send=_void_send, bind=_no_binding),
        *adjustments.ACTIONS,
    ),
    trace=(TraceSection("invoices", "invoice", _invoice_rows), TraceSection("payments", "payment", _payment_rows),
           *adjustments.TRACE),
    correct=INVOICE_CORRECTION,
    failures={
        # No posting policy rule or tax mapping covers the document (or two cover it
        # equally): finance fixes the policy (a new version), then replays.
        PolicyMissing: Failure(
            DeliveryAttempt.Outcome.PERMANENT, "neutral", retry=False, team=DATA_OWNER,
            category=ExceptionRecord.Category.POLICY,
        ),
        # An adjustment before its invoice or payment: retried; if the document never
        # comes, finance looks at what billing sent.
        adjustments.AwaitingDocument: Failure(
            DeliveryAttempt.Outcome.RETRYABLE, "neutral", retry=True, team=DATA_OWNER,
            category=ExceptionRecord.Category.RETRIES_EXHAUSTED,
        ),
        # A credit or refund that does not fit its invoice (currency, more than is left).
        AdjustmentMismatch: Failure(
            DeliveryAttempt.Outcome.PERMANENT, "neutral", retry=False, team=DATA_OWNER,
            category=ExceptionRecord.Category.REJECTED,
        ),
        # A line on a catalog SKU the ERP does not have yet: retried while its release
        # is on the way (the ERP is healthy), then product operations release it and replay.
        ProductMissing: Failure(
            DeliveryAttempt.Outcome.RETRYABLE, "neutral", retry=True, team=ExceptionRecord.Team.PRODUCT_OPERATIONS,
            category=ExceptionRecord.Category.RETRIES_EXHAUSTED,
        ),
    },
))
