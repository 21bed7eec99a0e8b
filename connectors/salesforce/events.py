"""Salesforce events → canonical facts. Pure: no I/O, no database."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from canonical.contracts import SourceRef
from canonical.events import CustomerReferenced, CustomerSnapshot, Fact, OrderReferenced
from connectors.base import Ignored
from connectors.salesforce.mapping import HUB_OWNED_FIELDS, SYSTEM, customer_from_account
from connectors.salesforce.opportunities import HUB_OWNED_OPPORTUNITY_FIELDS

PULLED = "Account.pulled"


def translate(event_type: str, payload: Mapping[str, Any], *, system: str = SYSTEM) -> list[Fact | Ignored]:
    """``Account.pulled`` (a scheduled pull) carries the whole record; change events
    (``Account.CREATE`` / ``UPDATE`` / ``UNDELETE`` / ``GAP_*``) are notices the
    workflow resolves by reading the record. An UPDATE that touches only hub-owned
    fields is the echo of the hub's own write-back and is ignored."""
    if event_type == PULLED:
        return [CustomerSnapshot(customer_from_account(payload, system=system))]
    entity, _, change_type = event_type.partition(".")
    if entity == "Opportunity":
        return _opportunity(change_type, payload, system)
    if entity != "Account":
        return [Ignored(f"Salesforce {entity} changes are not handled by the hub")]
    record_id = payload.get("recordId", "")
    if "*" in record_id:
        return [Ignored(f"wildcard change event ({record_id}); the scheduled pull catches these records")]
    if change_type in ("DELETE", "GAP_DELETE"):
        return [Ignored("Account deleted in Salesforce; the hub keeps the customer (deletions are not propagated)")]
    changed = tuple((payload.get("header") or {}).get("changedFields") or ())
    if change_type == "UPDATE" and changed and set(changed) <= HUB_OWNED_FIELDS:
        return [Ignored(f"only hub-owned fields changed ({', '.join(changed)}): the echo of a write-back")]
    if change_type not in ("CREATE", "UPDATE", "UNDELETE") and not change_type.startswith("GAP_"):
        return [Ignored(f"Salesforce change type {change_type} is not handled")]
    return [CustomerReferenced(SourceRef(system=system, external_id=record_id), changed)]


def _opportunity(change_type: str, payload: Mapping[str, Any], system: str) -> list[Fact | Ignored]:
    """An Opportunity change is a notice: the workflow reads the Opportunity and its
    line items, and acts only on a won one (so stage changes in any order converge)."""
    record_id = payload.get("recordId", "")
    if "*" in record_id or change_type in ("DELETE", "GAP_DELETE"):
        return [Ignored(f"Opportunity {change_type} ({record_id}) is not an order change")]
    changed = tuple((payload.get("header") or {}).get("changedFields") or ())
    if change_type == "UPDATE" and changed and set(changed) <= HUB_OWNED_OPPORTUNITY_FIELDS:
        return [Ignored(f"only hub-owned fields changed ({', '.join(changed)}): the echo of a write-back")]
    return [OrderReferenced(SourceRef(system=system, external_id=record_id), changed)]
