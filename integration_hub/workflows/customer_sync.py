"""Customer changes from billing: kept in the canonical store, bound to their source.

(Onboarding customers into the ERP and CRM write-back is a workflow of its own; the
ERP party is created on demand when the first invoice is posted.)
"""

from __future__ import annotations

from canonical.events import CustomerChanged
from canonical.services import customer_upsert
from integration_hub.runtime.dispatch import on_fact
from integration_hub.runtime.models import InboundEvent


@on_fact(CustomerChanged)
def customer_changed(fact: CustomerChanged, event: InboundEvent) -> None:
    customer_upsert(fact.customer, transaction_id=event.transaction_id)
