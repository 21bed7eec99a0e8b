"""Pure mapping from a Salesforce Opportunity and its OpportunityLineItems to OrderV1.

An Opportunity is an order once ``IsWon`` (its stage is a Closed Won stage). Each
line names its product by ``ProductCode`` (from Product2, through the PricebookEntry)
and the catalog price by ``Hub_Price_Ref__c``, a custom text field on the line the
pricebook fills with the platform's price id. An amendment is an Opportunity whose
``Amends__c`` names the won Opportunity it changes, ``Amendment_Number__c`` its place
among that subscription's amendments and ``Cancellation__c`` (``now`` or
``period_end``) a cancellation; its lines are the subscription's items afterwards.

The hub writes back ``Hub_Subscription_Id__c`` / ``Hub_Subscription_Status__c`` on the
won Opportunity, and ``Hub_Amendment_Status__c`` / ``Hub_Amendment_Detail__c`` on an
amendment; a change event naming only these is the echo of that write-back.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from canonical.contracts import OrderLineV1, OrderV1, SourceRef
from canonical.money import UnknownCurrency, currency_normalize
from connectors.errors import MappingError

SUBSCRIPTION_ID_FIELD = "Hub_Subscription_Id__c"
SUBSCRIPTION_STATUS_FIELD = "Hub_Subscription_Status__c"
AMENDMENT_STATUS_FIELD = "Hub_Amendment_Status__c"
AMENDMENT_DETAIL_FIELD = "Hub_Amendment_Detail__c"
HUB_OWNED_OPPORTUNITY_FIELDS = frozenset({
    SUBSCRIPTION_ID_FIELD, SUBSCRIPTION_STATUS_FIELD, AMENDMENT_STATUS_FIELD, AMENDMENT_DETAIL_FIELD,
    "LastModifiedDate", "SystemModstamp", "LastModifiedById",
})
OPPORTUNITY_FIELDS = [
    "Id", "Name", "AccountId", "StageName", "IsClosed", "IsWon", "CloseDate", "CurrencyIsoCode",
    "Service_Start__c", "Trial_End__c", "Term_Months__c", "Amends__c", "Amendment_Number__c", "Cancellation__c",
    "LastModifiedDate", SUBSCRIPTION_ID_FIELD, SUBSCRIPTION_STATUS_FIELD, AMENDMENT_STATUS_FIELD,
    AMENDMENT_DETAIL_FIELD,
]
LINE_FIELDS = ["Id", "OpportunityId", "Quantity", "ProductCode", "Name", "Hub_Price_Ref__c"]


def line_items_soql(opportunity_id: str) -> str:
    if not opportunity_id.isalnum():
        raise MappingError(f"salesforce Opportunity id {opportunity_id!r} is not an id")
    return (f"SELECT {', '.join(LINE_FIELDS)} FROM OpportunityLineItem "
            f"WHERE OpportunityId = '{opportunity_id}' ORDER BY Id")


def _date(record: Mapping[str, Any], key: str) -> dt.date | None:
    value = record.get(key)
    if value in (None, ""):
        return None
    try:
        return dt.date.fromisoformat(str(value)[:10])
    except ValueError:
        raise MappingError(f"salesforce Opportunity.{key}: not a date: {value!r}") from None


def _quantity(value: Any, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise MappingError(f"salesforce {path}: expected a number, got {value!r}")
    try:
        number = float(value)
    except ValueError:
        raise MappingError(f"salesforce {path}: not a number: {value!r}") from None
    if number != int(number):
        raise MappingError(f"salesforce {path}: seats are whole units, got {value!r}")
    return int(number)


def order_from_opportunity(opportunity: Mapping[str, Any], lines: list[Mapping[str, Any]], *,
                           system: str) -> OrderV1:
    """The won (or still open, or lost) deal as an order. Raises MappingError naming
    the field when the record cannot be one."""
    record_id = opportunity.get("Id")
    if not opportunity.get("AccountId"):
        raise MappingError(f"salesforce Opportunity {record_id}: no AccountId")
    status = "won" if opportunity.get("IsWon") else ("lost" if opportunity.get("IsClosed") else "open")
    try:
        currency = currency_normalize(opportunity.get("CurrencyIsoCode") or "")
    except UnknownCurrency:
        raise MappingError(f"salesforce Opportunity {record_id}.CurrencyIsoCode: "
                           f"{opportunity.get('CurrencyIsoCode')!r} is not a currency") from None
    amends = opportunity.get("Amends__c")
    number = opportunity.get("Amendment_Number__c")
    term = opportunity.get("Term_Months__c")
    try:
        return OrderV1(
            source=SourceRef(system=system, external_id=record_id),
            customer=SourceRef(system=system, external_id=opportunity["AccountId"]),
            display_name=str(opportunity.get("Name") or "")[:300], status=status, currency=currency,
            closed_on=_date(opportunity, "CloseDate"), start_on=_date(opportunity, "Service_Start__c"),
            trial_end=_date(opportunity, "Trial_End__c"),
            term_months=_quantity(term, "Opportunity.Term_Months__c") if term not in (None, "") else 12,
            amends=SourceRef(system=system, external_id=amends) if amends else None,
            amendment_sequence=_quantity(number, "Opportunity.Amendment_Number__c") if number not in (None, "") else None,
            cancel=opportunity.get("Cancellation__c") or None,
            lines=tuple(
                OrderLineV1(
                    source_line_id=line["Id"], description=str(line.get("Name") or "")[:500],
                    sku=line.get("ProductCode") or None, price_ref=line.get("Hub_Price_Ref__c") or None,
                    quantity=_quantity(line.get("Quantity"), f"OpportunityLineItem {line.get('Id')}.Quantity"),
                )
                for line in lines
            ),
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise MappingError(f"salesforce Opportunity {record_id}: {where}: {first['msg']}") from None
