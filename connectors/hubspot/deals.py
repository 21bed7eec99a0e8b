"""Pure mapping from a HubSpot deal, its company and its line items to OrderV1.

HubSpot's CRM v3 objects carry string properties. A deal is won when
``hs_is_closed_won`` is ``true`` (its stage is a closed-won stage of its pipeline). Its
company and line items are read through the v4 associations API
(``/crm/v4/objects/deals/{id}/associations/{companies|line_items}``), the line items'
properties by a batch read. Each line names its product by ``hs_sku`` and the catalog
price by ``hub_price_ref``, a custom line-item property. An amendment is a deal whose
``hub_amends_deal`` names the won deal it changes, ``hub_amendment_sequence`` its place
and ``hub_cancel`` (``now`` / ``period_end``) a cancellation; the hub writes
``hub_subscription_id`` / ``hub_subscription_status`` and ``hub_amendment_status`` /
``hub_amendment_detail`` back, and ignores changes of only these (the echo).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from canonical.contracts import OrderLineV1, OrderV1, SourceRef
from canonical.money import UnknownCurrency, currency_normalize
from connectors.errors import MappingError

SUBSCRIPTION_ID, SUBSCRIPTION_STATUS = "hub_subscription_id", "hub_subscription_status"
AMENDMENT_STATUS, AMENDMENT_DETAIL = "hub_amendment_status", "hub_amendment_detail"
HUB_OWNED_DEAL_PROPERTIES = frozenset({SUBSCRIPTION_ID, SUBSCRIPTION_STATUS, AMENDMENT_STATUS, AMENDMENT_DETAIL,
                                       "hs_lastmodifieddate"})
DEAL_PROPERTIES = [
    "dealname", "dealstage", "pipeline", "hs_is_closed_won", "hs_is_closed", "closedate", "deal_currency_code",
    "hub_service_start", "hub_trial_end", "hub_term_months", "hub_amends_deal", "hub_amendment_sequence",
    "hub_cancel", "hs_lastmodifieddate", SUBSCRIPTION_ID, SUBSCRIPTION_STATUS, AMENDMENT_STATUS, AMENDMENT_DETAIL,
]
LINE_ITEM_PROPERTIES = ["name", "quantity", "hs_sku", "hub_price_ref"]


def _date(properties: Mapping[str, Any], key: str, deal_id: str) -> dt.date | None:
    value = properties.get(key)
    if value in (None, ""):
        return None
    try:
        return dt.date.fromisoformat(str(value)[:10])
    except ValueError:
        raise MappingError(f"hubspot deal {deal_id}.{key}: not a date: {value!r}") from None


def _whole(value: Any, path: str) -> int:
    try:
        number = float(str(value))
    except ValueError:
        raise MappingError(f"hubspot {path}: not a number: {value!r}") from None
    if number != int(number):
        raise MappingError(f"hubspot {path}: seats are whole units, got {value!r}")
    return int(number)


def order_from_deal(deal: Mapping[str, Any], company_id: str | None, line_items: list[Mapping[str, Any]], *,
                    system: str) -> OrderV1:
    deal_id = str(deal.get("id"))
    props = deal.get("properties") or {}
    if not company_id:
        raise MappingError(f"hubspot deal {deal_id}: no associated company")
    won = props.get("hs_is_closed_won") == "true"
    status = "won" if won else ("lost" if props.get("hs_is_closed") == "true" else "open")
    try:
        currency = currency_normalize(props.get("deal_currency_code") or "")
    except UnknownCurrency:
        raise MappingError(f"hubspot deal {deal_id}.deal_currency_code: "
                           f"{props.get('deal_currency_code')!r} is not a currency") from None
    amends, number, term = props.get("hub_amends_deal"), props.get("hub_amendment_sequence"), props.get(
        "hub_term_months")
    try:
        return OrderV1(
            source=SourceRef(system=system, external_id=deal_id),
            customer=SourceRef(system=system, external_id=str(company_id)),
            display_name=str(props.get("dealname") or "")[:300], status=status, currency=currency,
            closed_on=_date(props, "closedate", deal_id), start_on=_date(props, "hub_service_start", deal_id),
            trial_end=_date(props, "hub_trial_end", deal_id),
            term_months=_whole(term, f"deal {deal_id}.hub_term_months") if term else 12,
            amends=SourceRef(system=system, external_id=str(amends)) if amends else None,
            amendment_sequence=_whole(number, f"deal {deal_id}.hub_amendment_sequence") if number else None,
            cancel=props.get("hub_cancel") or None,
            lines=tuple(
                OrderLineV1(
                    source_line_id=str(item["id"]), description=str(item["properties"].get("name") or "")[:500],
                    sku=item["properties"].get("hs_sku") or None,
                    price_ref=item["properties"].get("hub_price_ref") or None,
                    quantity=_whole(item["properties"].get("quantity"), f"line item {item['id']}.quantity"),
                )
                for item in sorted(line_items, key=lambda item: int(item["id"]))
            ),
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        raise MappingError(f"hubspot deal {deal_id}: {'.'.join(map(str, first['loc']))}: {first['msg']}") from None
