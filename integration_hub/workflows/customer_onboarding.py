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
from canonical.events import CustomerReferenced, CustomerSnapshot
from canonical.models import (
    CrossReference,
    Customer,
    DuplicateCase,
    FieldConflict,
    LegalEntity,
    SystemOfRecord,
)
from canonical.selectors import customer_contract, customer_source_ref
from canonical.services import (
    InvalidCaseTransition,
    confirmation_record,
    conflict_decide,
    customer_ingest,
    customer_merge,
    duplicate_case_release,
    xref_bind,
)
from canonical.validation import customer_problems
from connectors.base import CustomerSink, CustomerSource, CustomerWriteBack, ExternalDocument, Ignored
from connectors.errors import MappingError, NeedsConfiguration, Permanent, Retryable
from connectors.models import Connection
from connectors.services import connection_can, connection_for_role, connection_named, connector_for
from integration_hub.runtime.dispatch import (
    DeliveryAction,
    Indicator,
    QueueClass,
    TraceSection,
    Workflow,
    register_workflow,
)
from integration_hub.runtime.models import Delivery, ExceptionRecord, InboundEvent
from integration_hub.runtime.services import audit_record, delivery_plan

log = structlog.get_logger(__name__)

UPSERT, WRITE_BACK = "customer.upsert", "customer.writeback"


class CustomerInvalid(MappingError):
    """The CRM record fails master-data validation; it is fixed in the CRM and replayed."""


# ---------------------------------------------------------------- inbound


def customer_read(fact: CustomerReferenced) -> list:
    """A notice stands for the record as its source holds it now (read before the
    event's transaction opens; a Retryable from the CRM retries the event)."""
    connection = connection_named(fact.source.system)
    connector = connector_for(connection)
    if not isinstance(connector, CustomerSource):
        raise NeedsConfiguration(f"connection {connection.name} cannot read customers")
    contract = connector.fetch_customer(fact.source.external_id)
    if contract is None:
        return [Ignored(f"{fact.source.system} record {fact.source.external_id} no longer exists")]
    return [CustomerSnapshot(contract)]


def customer_snapshot(fact: CustomerSnapshot, event: InboundEvent) -> None:
    crm_customer_apply(fact.customer, event=event, connection=connection_named(fact.customer.source.system))


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
    intake = customer_ingest(contract, source_role=connection.role, transaction_id=event.transaction_id)
    customer = intake.customer
    if intake.held:
        log.info("customer_held_as_duplicate", customer=customer.pk)
    if intake.merged_alias:
        # The record was merged into another in the hub; its later changes would
        # fight the survivor's own CRM record, so they are not applied.
        log.info("merged_alias_change_ignored", customer=customer.pk, source=contract.source.external_id)
        return customer
    if customer.status == Customer.Status.ACTIVE:
        onboarding_plan(customer, transaction_id=event.transaction_id, crm=connection)
    return customer


# ---------------------------------------------------------------- planning


def _booking_entity(customer: Customer) -> LegalEntity | None:
    return LegalEntity.objects.filter(currency=customer.currency).first() if customer.currency else None


def _billing_for(entity: LegalEntity | None) -> Connection | None:
    """The billing connection the customer is created in, if any is configured."""
    try:
        return connection_for_role(Connection.Role.BILLING, name=entity.billing_connection if entity else "")
    except NeedsConfiguration:
        return None


def onboarding_plan(customer: Customer, *, transaction_id, crm: Connection | None) -> list[Delivery]:
    """Plan the current version's upserts and, once per customer, the CRM write-back
    after the ERP upsert. Idempotent.

    Which connections: the ERP and billing connections named by the legal entity that
    books the customer's currency, else the only active one of each role (billing is
    optional: without one, or one that cannot take customers, it is skipped)."""
    entity = _booking_entity(customer)
    erp = connection_for_role(Connection.Role.ERP, name=entity.erp_connection if entity else "")
    planned = [erp_upsert := delivery_plan(
        transaction_id=transaction_id, connection=erp, action=UPSERT, object_type="customer",
        object_id=customer.pk, version=customer.version,
    )]
    billing = _billing_for(entity)
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
    """Safe to repeat: the target is found by the bound id, else by a stable
    reference (the ERP party code) or the vendor's idempotency key (billing)."""
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
    """Safe to repeat: it sets a field to a value (a no-op when already set)."""
    customer = _live_customer(delivery)
    erp = delivery.after.connection  # the ERP upsert this write-back waits for
    erp_id = customer_source_ref(customer, erp.name)
    if erp_id is None:
        raise Retryable(f"customer {customer.pk} has no ERP id bound in {erp.name} yet")
    crm_id = customer_source_ref(customer, delivery.connection.name)
    if crm_id is None:
        raise Permanent(f"customer {customer.pk} has no {delivery.connection.name} record to write back to")
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


# ---------------------------------------------------------------- people's decisions (admin, API)


def crm_connection_of(customer: Customer) -> Connection | None:
    """The CRM connection whose record the customer came from, if any."""
    systems = CrossReference.objects.filter(object_type="customer", canonical_id=customer.pk).values_list(
        "system", flat=True)
    return Connection.objects.filter(name__in=list(systems), role=Connection.Role.CRM, is_active=True).first()


def customer_resync(customer: Customer, *, transaction_id) -> list[Delivery]:
    """Plan the sync of the customer's current version (after a person accepted a
    conflict or released a duplicate case)."""
    if customer.status != Customer.Status.ACTIVE or transaction_id is None:
        return []
    with transaction.atomic():
        return onboarding_plan(customer, transaction_id=transaction_id, crm=crm_connection_of(customer))


@transaction.atomic
def conflict_settle(conflict: FieldConflict, *, accept: bool, user) -> Customer:
    """A person's decision on a field conflict; an accepted change is synced."""
    customer = conflict_decide(conflict, accept=accept, user=user)
    audit_record(actor=user, action="conflict_accept" if accept else "conflict_reject", obj=conflict,
                 reason=f"{conflict.field_group} from {conflict.source_system}",
                 changes={"proposed": conflict.proposed, "current": conflict.current},
                 transaction_id=conflict.transaction_id)
    if accept:
        customer_resync(customer, transaction_id=conflict.transaction_id or customer.transaction_id)
    return customer


@transaction.atomic
def duplicate_merge(case: DuplicateCase, *, user) -> Customer:
    """Merge a held duplicate into the case's survivor, and sync the survivor."""
    if case.status != DuplicateCase.Status.OPEN or case.survivor is None:
        raise InvalidCaseTransition(f"case {case.pk} is {case.status} or has no survivor")
    survivor = customer_merge(case.customer, case.survivor)
    DuplicateCase.objects.filter(pk=case.pk).update(decided_by=user)
    audit_record(actor=user, action="merge", obj=case, reason=f"customer {case.customer_id} into {survivor.pk}",
                 transaction_id=case.transaction_id)
    customer_resync(survivor, transaction_id=case.transaction_id)
    return survivor


@transaction.atomic
def duplicate_release(case: DuplicateCase, *, user) -> Customer:
    """Declare the held customer distinct and onboard it."""
    customer = duplicate_case_release(case, user=user)
    audit_record(actor=user, action="release", obj=case, reason=f"customer {customer.pk} is not a duplicate",
                 transaction_id=case.transaction_id)
    customer_resync(customer, transaction_id=case.transaction_id)
    return customer


def _customer_rows(transaction_id, delivered) -> list[dict]:
    customers = Customer.objects.filter(Q(transaction_id=transaction_id) | Q(pk__in=delivered.get("customer", ())))
    return [
        {"id": c.pk, "name": c.display_name, "country": c.country, "status": c.status, "version": c.version}
        for c in customers
    ]


SALES = ExceptionRecord.Team.SALES_OPERATIONS

INDICATORS = (
    Indicator("updates_pending", "Customer updates pending synchronization", "runtime.Delivery",
              {"action__in": f"{UPSERT},{WRITE_BACK}", "status__in": "pending,held,in_flight"}, team=SALES,
              help="to the ERP, to billing, or the ERP id back to the CRM"),
    Indicator("duplicates_held", "Possible duplicates held for a decision", "canonical.DuplicateCase",
              {"status": "open"}, team=SALES),
    Indicator("conflicts_open", "System-of-record conflicts to decide", "canonical.FieldConflict",
              {"status": "open"}, team=SALES),
    Indicator("invalid_records", "CRM records failing validation", "runtime.ExceptionRecord",
              {"category": "mapping", "transaction__kind": "customer", "status__in": "open,acknowledged"}, team=SALES,
              help="fix the record in the CRM, then replay"),
)


def policy_in_force() -> str:
    rules = ", ".join(f"{group}: {owner}" for group, owner in SystemOfRecord.objects.filter(entity="customer")
                      .order_by("field_group").values_list("field_group", "owner_role"))
    return f"system of record per field group ({rules or 'none'}); ERP and billing by the booking legal entity"


WORKFLOW = register_workflow(Workflow(
    name="customer_onboarding",
    title="Customer onboarding",
    pattern="near-real-time (CRM change events and a scheduled pull) → ERP, billing, write-back to CRM",
    data_owner=ExceptionRecord.Team.SALES_OPERATIONS,
    queue=QueueClass.CUSTOMER,
    source_role=Connection.Role.CRM,
    target_roles=(Connection.Role.ERP, Connection.Role.BILLING, Connection.Role.CRM),
    contracts=(CustomerV1,),
    indicators=INDICATORS,
    policy_in_force=policy_in_force,
    subjects=("customer",),
    facts={CustomerSnapshot: customer_snapshot},
    resolvers={CustomerReferenced: customer_read},
    actions=(
        DeliveryAction(name=UPSERT, capability=CustomerSink, send=_upsert_send, bind=_upsert_bind),
        DeliveryAction(name=WRITE_BACK, capability=CustomerWriteBack, send=_writeback_send, bind=_writeback_bind),
    ),
    trace=(TraceSection("customers", "customer", _customer_rows),),
))
