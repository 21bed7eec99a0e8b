"""Invoice and payment posting: billing → ERP, event-driven, exactly once in effect.

An issued invoice becomes one ``invoice.post`` delivery to the ERP; a payment an
``invoice.pay`` delivery and a void an ``invoice.void`` delivery, each waiting for the
post. Events may arrive in any order and any number of times: the canonical invoice
only moves forward, and every delivery's idempotency key is planned once.
"""

from __future__ import annotations

import structlog
from django.db import IntegrityError, transaction

from canonical.events import InvoiceIssued, InvoicePaid, InvoiceVoided
from canonical.models import Invoice, Payment
from canonical.selectors import invoice_contract, payment_contract
from canonical.services import (
    customer_upsert,
    invoice_upsert,
    legal_entity_for_currency,
    payment_upsert,
    xref_bind,
)
from connectors.base import ExternalDocument, InvoicePoster
from connectors.models import Connection
from connectors.services import connection_for_role
from integration_hub.runtime.dispatch import DeliveryAction, on_fact, register_action
from integration_hub.runtime.models import Delivery, InboundEvent
from integration_hub.runtime.services import delivery_plan

log = structlog.get_logger(__name__)

POST, PAY, VOID = "invoice.post", "invoice.pay", "invoice.void"


def _invoice_record(fact: InvoiceIssued | InvoicePaid | InvoiceVoided, event: InboundEvent) -> Invoice:
    contract = fact.invoice
    customer = customer_upsert(contract.customer, transaction_id=event.transaction_id, fill_only=True)
    return invoice_upsert(
        contract,
        customer=customer,
        legal_entity=legal_entity_for_currency(contract.currency),
        transaction_id=event.transaction_id,
    )


def _plan_post(invoice: Invoice, event: InboundEvent) -> tuple[Connection, Delivery]:
    erp = connection_for_role(Connection.Role.ERP)
    post = delivery_plan(
        transaction_id=event.transaction_id, connection=erp, action=POST, object_type="invoice", object_id=invoice.pk
    )
    return erp, post


@on_fact(InvoiceIssued)
def invoice_issued(fact: InvoiceIssued, event: InboundEvent) -> None:
    _plan_post(_invoice_record(fact, event), event)


@on_fact(InvoicePaid)
def invoice_paid(fact: InvoicePaid, event: InboundEvent) -> None:
    invoice = _invoice_record(fact, event)
    erp, post = _plan_post(invoice, event)
    payment = payment_upsert(fact.payment, invoice=invoice, transaction_id=event.transaction_id)
    delivery_plan(
        transaction_id=event.transaction_id, connection=erp, action=PAY,
        object_type="payment", object_id=payment.pk, after=post,
    )


@on_fact(InvoiceVoided)
def invoice_voided(fact: InvoiceVoided, event: InboundEvent) -> None:
    invoice = _invoice_record(fact, event)
    erp, post = _plan_post(invoice, event)
    delivery_plan(
        transaction_id=event.transaction_id, connection=erp, action=VOID,
        object_type="invoice", object_id=invoice.pk, after=post,
    )


def _post_send(connector: InvoicePoster, delivery: Delivery) -> ExternalDocument:
    invoice = Invoice.objects.select_related("legal_entity", "customer").get(pk=delivery.object_id)
    return connector.post_invoice(
        invoice_contract(invoice), legal_entity=invoice.legal_entity.code, idempotency_key=delivery.idempotency_key
    )


def _post_bind(delivery: Delivery, document: ExternalDocument) -> None:
    system = delivery.connection.name
    xref_bind(
        system=system, object_type="invoice", canonical_id=delivery.object_id,
        external_id=document.external_id, number=document.number or "",
    )
    if customer_id := document.related.get("customer"):
        invoice = Invoice.objects.only("customer_id").get(pk=delivery.object_id)
        try:
            with transaction.atomic():
                xref_bind(
                    system=system, object_type="customer", canonical_id=invoice.customer_id, external_id=customer_id
                )
        except IntegrityError as exc:
            # The invoice is posted either way; a clash of party bindings is for a
            # person to look at, not a reason to undo the posting.
            log.warning("customer_binding_conflict", error=str(exc))


def _pay_send(connector: InvoicePoster, delivery: Delivery) -> ExternalDocument:
    payment = Payment.objects.select_related("invoice__legal_entity").get(pk=delivery.object_id)
    return connector.record_payment(
        payment_contract(payment), legal_entity=payment.invoice.legal_entity.code,
        idempotency_key=delivery.idempotency_key,
    )


def _void_send(connector: InvoicePoster, delivery: Delivery) -> ExternalDocument:
    invoice = Invoice.objects.select_related("legal_entity", "customer").get(pk=delivery.object_id)
    return connector.void_invoice(
        invoice_contract(invoice), legal_entity=invoice.legal_entity.code, idempotency_key=delivery.idempotency_key
    )


def _no_binding(delivery: Delivery, document: ExternalDocument) -> None:
    """The ERP document is the invoice already bound by its post."""


register_action(DeliveryAction(name=POST, capability=InvoicePoster, send=_post_send, bind=_post_bind))
register_action(DeliveryAction(name=PAY, capability=InvoicePoster, send=_pay_send, bind=_no_binding))
register_action(DeliveryAction(name=VOID, capability=InvoicePoster, send=_void_send, bind=_no_binding))
