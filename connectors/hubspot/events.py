"""HubSpot events → canonical facts. Pure: no I/O, no database."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from canonical.contracts import SourceRef
from canonical.events import CustomerReferenced, CustomerSnapshot, Fact, OrderReferenced
from connectors.base import Ignored
from connectors.hubspot.deals import HUB_OWNED_DEAL_PROPERTIES
from connectors.hubspot.mapping import HUB_OWNED_PROPERTIES, SYSTEM, customer_from_company

PULLED = "company.pulled"


def translate(event_type: str, payload: Mapping[str, Any], *, system: str = SYSTEM) -> list[Fact | Ignored]:
    """Company webhooks carry at most one property, so they become notices the
    workflow resolves by reading the company; a change of a hub-owned property is
    the echo of the hub's write-back and is ignored."""
    if event_type == PULLED:
        return [CustomerSnapshot(customer_from_company(payload, system=system))]
    source = SourceRef(system=system, external_id=str(payload.get("objectId")))
    match event_type:
        case "deal.creation" | "deal.restore":
            return [OrderReferenced(source)]
        case "deal.propertyChange":
            name = str(payload.get("propertyName") or "")
            if name in HUB_OWNED_DEAL_PROPERTIES:
                return [Ignored(f"only the hub-owned deal property {name} changed: the echo of a write-back")]
            return [OrderReferenced(source, (name,) if name else ())]
        case "company.creation" | "company.restore":
            return [CustomerReferenced(source)]
        case "company.propertyChange":
            name = str(payload.get("propertyName") or "")
            if name in HUB_OWNED_PROPERTIES:
                return [Ignored(f"only the hub-owned property {name} changed: the echo of a write-back")]
            return [CustomerReferenced(source, (name,) if name else ())]
        case "company.deletion":
            return [Ignored("company deleted in HubSpot; the hub keeps the customer (deletions are not propagated)")]
        case "company.merge":
            return [Ignored("companies merged in HubSpot; merge the canonical customers in the hub's admin")]
        case _:
            return [Ignored(f"HubSpot subscription {event_type} is not handled by the hub")]
