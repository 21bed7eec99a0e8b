"""Pure mapping from HubSpot company objects to CustomerV1.

Every property value is a string (or null). ``country`` must hold an ISO 3166-1
alpha-2 code; ``hs_parent_company_id`` (set by HubSpot's parent/child company
association) becomes the parent reference.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from canonical.contracts import Address, CustomerV1, SourceRef
from connectors.errors import MappingError
from connectors.payloads import epoch_datetime

SYSTEM = "hubspot"
ERP_ID_PROPERTY = "hub_erp_id"
COMPANY_PROPERTIES = [
    "name", "domain", "country", "city", "zip", "address", "address2", "state", "hs_object_id",
    "hs_parent_company_id", "hs_lastmodifieddate", ERP_ID_PROPERTY,
]
HUB_OWNED_PROPERTIES = frozenset({ERP_ID_PROPERTY, "hs_lastmodifieddate"})


def parse_time(value: Any) -> dt.datetime:
    """HubSpot timestamps: ISO strings (``updatedAt``) or epoch ms as a string (properties)."""
    if isinstance(value, str) and value.isdigit() and len(value) <= 16:
        return epoch_datetime(int(value), field="hubspot timestamp", millis=True, error=MappingError)
    if isinstance(value, str) and value:
        try:
            return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(dt.UTC)
        except ValueError:
            pass
    raise MappingError(f"hubspot timestamp: cannot read {value!r}")


def _prop(properties: Mapping[str, Any], key: str) -> str | None:
    value = properties.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise MappingError(f"hubspot company.properties.{key}: expected a string, got {value!r}")
    return value.strip() or None


def customer_from_company(company: Mapping[str, Any], *, system: str = SYSTEM) -> CustomerV1:
    if not isinstance(company, Mapping) or not isinstance(company.get("properties"), Mapping):
        raise MappingError("hubspot company: expected an object with properties")
    properties = company["properties"]
    company_id = str(company.get("id") or properties.get("hs_object_id") or "")
    if not company_id:
        raise MappingError("hubspot company.id: missing")
    name = _prop(properties, "name")
    if not name:
        raise MappingError(f"hubspot company {company_id}: name is missing")
    country = _prop(properties, "country")
    if country and len(country) == 2:
        country = country.upper()
    parent = _prop(properties, "hs_parent_company_id")
    try:
        address = Address(line1=_prop(properties, "address"), line2=_prop(properties, "address2"),
                          city=_prop(properties, "city"), postal_code=_prop(properties, "zip"),
                          state=_prop(properties, "state"), country=country)
        return CustomerV1(
            source=SourceRef(system=system, external_id=company_id), display_name=name,
            address=address if any(address.model_dump().values()) else None,
            domain=_prop(properties, "domain"),
            parent=SourceRef(system=system, external_id=parent) if parent else None,
        )
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise MappingError(f"hubspot company {company_id} does not fit CustomerV1: {problems}") from None
