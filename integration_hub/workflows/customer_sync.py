"""Customer changes from billing, under the same system-of-record rules as the CRM's.

A customer billing sends first (before any CRM record) is created from it, as the
ERP party is created on demand when its first invoice posts. For a customer the hub
already has, billing owns no field group by default (its own customer id is a
cross-reference), so a billing change to, say, the name is not applied: it opens a
``FieldConflict`` for the owning team.
"""

from __future__ import annotations

from django.db import IntegrityError, transaction

from canonical.events import CustomerChanged
from canonical.models import Customer
from canonical.services import customer_apply, customer_resolve, customer_upsert, xref_bind
from connectors.models import Connection
from integration_hub.runtime.dispatch import on_fact
from integration_hub.runtime.models import InboundEvent


def _role_of(system: str) -> str:
    connection = Connection.objects.filter(vendor=system, is_active=True).first()
    return connection.role if connection is not None else Connection.Role.BILLING


@on_fact(CustomerChanged)
def customer_changed(fact: CustomerChanged, event: InboundEvent) -> None:
    contract = fact.customer
    source = contract.source
    customer = customer_resolve(system=source.system, external_id=source.external_id)
    if customer is None and contract.canonical_id is not None:
        # A customer the hub created in billing (metadata.hub_id), seen before the
        # delivery bound its id: bind it now rather than create a twin.
        customer = Customer.objects.filter(pk=contract.canonical_id).first()
        if customer is not None:
            try:
                with transaction.atomic():
                    xref_bind(system=source.system, object_type="customer", canonical_id=customer.pk,
                              external_id=source.external_id)
            except IntegrityError:
                customer = None
    if customer is None:
        customer_upsert(contract, transaction_id=event.transaction_id)
        return
    customer_apply(customer, contract, source_role=_role_of(source.system), transaction_id=event.transaction_id)
