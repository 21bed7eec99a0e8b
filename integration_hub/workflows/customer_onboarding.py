"""Customer onboarding: CRM → canonical → ERP party and billing customer → ERP id
written back to the CRM → a confirmation per customer version.

* In: a CRM notice (``CustomerReferenced``: the record is read through the CRM's
  ``CustomerSource``, so reordered notices converge on the current state) or a full
  record from the scheduled pull (``CustomerSnapshot``).
* Control: validation (``canonical.validation``), system-of-record rules (a
  non-owner's change opens a ``FieldConflict``), duplicate detection (a likely
  duplicate is held as a ``DuplicateCase``, nothing is sent).
* Out: ``customer.upsert`` to the ERP and to billing, keyed by customer version (an
  unchanged record plans nothing new: that, and the translators ignoring changes of
  hub-owned fields only, is what stops the write-back's echo from looping), and one
  ``customer.writeback`` to the CRM that waits for the ERP upsert.
"""

from __future__ import annotations

import structlog
from django.db import transaction
from django.db.models import Q

from canonical.contracts import CustomerV1
from canonical.events import CustomerReferenced, CustomerSnapshot, Ignored
from canonical.models import CrossReference, Customer, LegalEntity
from canonical.selectors import customer_contract, customer_source_ref
from canonical.services import (
    confirmation_record,
    customer_apply,
    customer_create,
    customer_resolve,
    duplicate_candidates,
    duplicate_case_open,
    xref_bind,
)
from canonical.validation import customer_problems
from connectors.base import CustomerSink, CustomerSource, CustomerWriteBack, ExternalDocument
from connectors.errors import MappingError, NeedsConfiguration, Permanent, Retryable
from connectors.models import Connection
from connectors.services import connection_can, connection_for_role, connection_for_vendor, connector_for
from integration_hub.runtime.dispatch import DeliveryAction, on_fact, on_resolve, register_action
from integration_hub.runtime.models import Delivery, InboundEvent
from integration_hub.runtime.services import delivery_plan

log = structlog.get_logger(__name__)

UPSERT, WRITE_BACK = "customer.upsert", "customer.writeback"


class CustomerInvalid(MappingError):
    """The CRM record fails master-data validation; it is fixed in the CRM and replayed."""


# ---------------------------------------------------------------- inbound


@on_resolve(CustomerReferenced)
def customer_read(fact: CustomerReferenced) -> list:
    """A notice stands for the record as its source holds it now (read before the
    event's transaction opens; a Retryable from the CRM retries the event)."""
    connection = connection_for_vendor(fact.source.system)
    connector = connector_for(connection)
    if not isinstance(connector, CustomerSource):
        raise NeedsConfiguration(f"connection {connection.name} cannot read customers")
    contract = connector.fetch_customer(fact.source.external_id)
    if contract is None:
        return [Ignored(f"{fact.source.system} record {fact.source.external_id} no longer exists")]
    return [CustomerSnapshot(contract)]


@on_fact(CustomerSnapshot)
def customer_snapshot(fact: CustomerSnapshot, event: InboundEvent) -> None:
    crm_customer_apply(fact.customer, event=event, connection=connection_for_vendor(fact.customer.source.system))


def crm_customer_apply(contract: CustomerV1, *, event: InboundEvent, connection: Connection) -> Customer:
    """Validate, master (create / SoR-apply / hold as duplicate) and plan the sync."""
    problems = customer_problems(
        contract, known_currencies=set(LegalEntity.objects.values_list("currency", flat=True))
    )
    if problems:
        raise CustomerInvalid(
            f"{contract.source.system} record {contract.source.external_id} ({contract.display_name}): "
            + "; ".join(problems)
        )
    source = contract.source
    customer = customer_resolve(system=source.system, external_id=source.external_id)
    if customer is None:
        customer = customer_create(contract, transaction_id=event.transaction_id)
        candidates = duplicate_candidates(customer)
        if candidates:
            customer.status = Customer.Status.HELD
            customer.save(update_fields=["status", "updated_at"])
            duplicate_case_open(customer, candidates, transaction_id=event.transaction_id)
            log.info("customer_held_as_duplicate", customer=customer.pk, candidates=[c.pk for c, _ in candidates])
            return customer
    elif customer.aliases.filter(system=source.system, external_id=source.external_id).exists():
        # The record was merged into another in the hub; its later changes would
        # fight the survivor's own CRM record, so they are not applied.
        log.info("merged_alias_change_ignored", customer=customer.pk, source=source.external_id)
        return customer
    else:
        customer_apply(customer, contract, source_role=connection.role, transaction_id=event.transaction_id)
        customer.refresh_from_db()
    if customer.status == Customer.Status.ACTIVE:
        onboarding_plan(customer, transaction_id=event.transaction_id, crm=connection)
    return customer


# ---------------------------------------------------------------- planning


def _optional(role: str) -> Connection | None:
    try:
        return connection_for_role(role)
    except NeedsConfiguration:
        return None


def onboarding_plan(customer: Customer, *, transaction_id, crm: Connection | None) -> list[Delivery]:
    """Plan the current version's upserts (ERP, and billing when one is configured)
    and, once per customer, the CRM write-back after the ERP upsert. Idempotent."""
    erp = connection_for_role(Connection.Role.ERP)
    planned = [erp_upsert := delivery_plan(
        transaction_id=transaction_id, connection=erp, action=UPSERT, object_type="customer",
        object_id=customer.pk, version=customer.version,
    )]
    billing = _optional(Connection.Role.BILLING)
    if billing is not None and connection_can(billing, "upsert_customer"):
        planned.append(delivery_plan(
            transaction_id=transaction_id, connection=billing, action=UPSERT, object_type="customer",
            object_id=customer.pk, version=customer.version,
        ))
    if crm is not None and connection_can(crm, "write_back_erp_id"):
        # Version 1 always: the ERP id does not change with the customer's versions.
        planned.append(delivery_plan(
            transaction_id=transaction_id, connection=crm, action=WRITE_BACK, object_type="customer",
            object_id=customer.pk, after=erp_upsert, version=1,
        ))
    return planned


# ---------------------------------------------------------------- delivery


def _live_customer(delivery: Delivery) -> Customer:
    customer = Customer.objects.get(pk=delivery.object_id)
    if customer.status != Customer.Status.ACTIVE:
        raise Permanent(f"customer {customer.pk} is {customer.status}; it is not sent to {delivery.connection.name}")
    return customer


def _upsert_send(connector: CustomerSink, delivery: Delivery) -> ExternalDocument:
    customer = _live_customer(delivery)
    # The target gets the record's current state; a key per state keeps a vendor's
    # idempotency store (Stripe's) from seeing one key with two different payloads.
    return connector.upsert_customer(
        customer_contract(customer), idempotency_key=f"{delivery.idempotency_key}@{customer.version}",
        external_id=customer_source_ref(customer, delivery.connection.name),
    )


def _upsert_bind(delivery: Delivery, document: ExternalDocument) -> None:
    xref_bind(system=delivery.connection.name, object_type="customer", canonical_id=delivery.object_id,
              external_id=document.external_id, number=document.number or "")
    _confirm_when_complete(delivery)


def _writeback_send(connector: CustomerWriteBack, delivery: Delivery) -> ExternalDocument:
    customer = _live_customer(delivery)
    erp = connection_for_role(Connection.Role.ERP)
    erp_id = customer_source_ref(customer, erp.name)
    if erp_id is None:
        raise Retryable(f"customer {customer.pk} has no ERP id bound yet")
    crm_id = customer_source_ref(customer, delivery.connection.vendor)
    if crm_id is None:
        raise Permanent(f"customer {customer.pk} has no {delivery.connection.vendor} record to write back to")
    return connector.write_back_erp_id(crm_id, erp_id, idempotency_key=delivery.idempotency_key)


def _writeback_bind(delivery: Delivery, document: ExternalDocument) -> None:
    _confirm_when_complete(delivery)


def _confirm_when_complete(delivery: Delivery) -> None:
    """Record the confirmation once every delivery of the customer is posted."""
    customer = Customer.objects.get(pk=delivery.object_id)
    outstanding = Delivery.objects.filter(
        object_type="customer", object_id=customer.pk, action__in=[UPSERT, WRITE_BACK]
    ).exclude(status=Delivery.Status.POSTED)
    if outstanding.exists():
        return
    references = dict(
        CrossReference.objects.filter(object_type="customer", canonical_id=customer.pk)
        .values_list("system", "external_id")
    )
    confirmation_record(customer=customer, references=references, transaction_id=delivery.transaction_id)
    log.info("customer_confirmed", customer=customer.pk, version=customer.version, references=references)


register_action(DeliveryAction(name=UPSERT, capability=CustomerSink, send=_upsert_send, bind=_upsert_bind))
register_action(DeliveryAction(name=WRITE_BACK, capability=CustomerWriteBack, send=_writeback_send,
                               bind=_writeback_bind))


# ---------------------------------------------------------------- people's decisions (admin, API)


def crm_connection_of(customer: Customer) -> Connection | None:
    """The CRM connection whose record the customer came from, if any."""
    systems = CrossReference.objects.filter(object_type="customer", canonical_id=customer.pk).values_list(
        "system", flat=True)
    connection = Connection.objects.filter(
        Q(vendor__in=list(systems)), role=Connection.Role.CRM, is_active=True).first()
    return connection


def customer_resync(customer: Customer, *, transaction_id) -> list[Delivery]:
    """Plan the sync of the customer's current version (after a person accepted a
    conflict or released a duplicate case)."""
    if customer.status != Customer.Status.ACTIVE or transaction_id is None:
        return []
    with transaction.atomic():
        return onboarding_plan(customer, transaction_id=transaction_id, crm=crm_connection_of(customer))



