"""Product-platform inbox events → canonical facts.

Three kinds: an item a pull read (``catalog.item``, mapped by the connection's
mapping, so fixing the mapping and replaying the event maps it again), an item a
full scan no longer found (``catalog.item.gone``), and the platform's
``catalog.changed`` webhook.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from canonical.events import CatalogChanged, CatalogItemGone, CatalogItemRead, Fact
from connectors.base import Ignored
from connectors.errors import MappingError
from connectors.services import connection_named, connector_for

ITEM, GONE, CHANGED = "catalog.item", "catalog.item.gone", "catalog.changed"


def item_label(payload: Mapping[str, Any]) -> str:
    return f"item {payload.get('position', '?')} of page {payload.get('page', '?')}"


def translate(event_type: str, payload: Mapping[str, Any], *, system: str) -> list[Fact | Ignored]:
    match event_type:
        case "catalog.item":
            if payload.get("duplicate_of"):
                raise MappingError(
                    f"{item_label(payload)}: field product.sku: SKU {payload.get('sku')} appears twice in one pull "
                    f"(first as {payload['duplicate_of']}); this one was not applied")
            # The mapping is the connection's current one (data), read here so that a
            # replay after fixing it maps the item again.
            connector = connector_for(connection_named(system))
            item = connector.catalog_item_map(payload.get("item"), label=item_label(payload))
            return [CatalogItemRead(item.product, item.prices, sync_run=payload.get("sync_run"))]
        case "catalog.item.gone":
            return [CatalogItemGone(system=system, sku=str(payload["sku"]), sync_run=payload.get("sync_run"))]
        case "catalog.changed":
            return [CatalogChanged(system=system, skus=tuple((payload.get("data") or {}).get("skus", ())))]
        case _:
            return [Ignored(f"product platform event type {event_type} is not handled by the hub")]
