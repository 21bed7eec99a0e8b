"""Customer changes from billing, under the same system-of-record rules as the CRM's.

A customer billing sends first (before any CRM record) is created from it, as the
ERP party is created on demand when its first invoice posts. For a customer the hub
already has, billing owns no field group by default (its own customer id is a
cross-reference), so a billing change to, say, the name is not applied: it opens a
``FieldConflict`` for the owning team.
"""

from __future__ import annotations

from canonical.contracts import CustomerV1
from canonical.events import CustomerChanged
from canonical.services import customer_ingest
from connectors.models import Connection
from connectors.services import connection_named
from integration_hub.runtime.dispatch import QueueClass, Workflow, register_workflow
from integration_hub.runtime.models import ExceptionRecord, InboundEvent


def customer_changed(fact: CustomerChanged, event: InboundEvent) -> None:
    """Through the one customer write path, as the role of the connection it came from."""
    connection = connection_named(fact.customer.source.system)
    customer_ingest(fact.customer, source_role=connection.role, transaction_id=event.transaction_id)


WORKFLOW = register_workflow(Workflow(
    name="billing_customer_changes",
    title="Customer changes from billing",
    pattern="event-driven (billing webhook), under system-of-record rules",
    data_owner=ExceptionRecord.Team.SALES_OPERATIONS,
    queue=QueueClass.CUSTOMER,
    source_role=Connection.Role.BILLING,
    contracts=(CustomerV1,),
    facts={CustomerChanged: customer_changed},
))
