"""Pure mapping from Salesforce Account records to CustomerV1.

Reads the REST shape (``attributes`` plus fields) and the Change Data Capture shape
(the same field names, only those that changed). Country: ``BillingCountry`` must
hold an ISO 3166-1 alpha-2 code (orgs with state and country picklists store the
code in ``BillingCountryCode``, which wins when present); a country name is refused
by validation rather than guessed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from canonical.contracts import Address, CustomerV1, SourceRef
from canonical.money import UnknownCurrency, currency_normalize
from connectors.errors import MappingError

SYSTEM = "salesforce"
ERP_ID_FIELD = "ERP_Id__c"
ACCOUNT_FIELDS = [
    "Id", "Name", "ParentId", "AccountNumber", "BillingStreet", "BillingCity", "BillingPostalCode",
    "BillingState", "BillingCountry", "CurrencyIsoCode", "LastModifiedDate", "Website", ERP_ID_FIELD,
]
# Fields only the hub writes, and fields every change touches: a change event that
# names nothing else is the echo of the hub's own write-back.
HUB_OWNED_FIELDS = frozenset({ERP_ID_FIELD, "LastModifiedDate", "SystemModstamp", "LastModifiedById"})


def parse_timestamp(value: Any, path: str = "LastModifiedDate") -> dt.datetime:
    """Salesforce datetimes: ``2024-05-29T16:26:40.000+0000`` (REST) or ``...Z`` (CDC)."""
    if not isinstance(value, str) or not value:
        raise MappingError(f"salesforce {path}: expected a datetime string, got {value!r}")
    text = value.replace("Z", "+00:00")
    if len(text) > 5 and text[-5] in "+-" and text[-3] != ":":
        text = f"{text[:-2]}:{text[-2:]}"
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise MappingError(f"salesforce {path}: not a datetime: {value!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC)


def change_id(record_id: str, modified: dt.datetime) -> str:
    """The inbox id of one version of a record, the same whether a change event or
    a scheduled pull saw it: ``<Id>:<LastModifiedDate, UTC, ms>``."""
    return f"{record_id}:{modified.astimezone(dt.UTC).strftime('%Y-%m-%dT%H:%M:%S.%f')[:-3]}Z"


def _text(record: Mapping[str, Any], key: str) -> str | None:
    value = record.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise MappingError(f"salesforce Account.{key}: expected a string, got {value!r}")
    return value.strip() or None


def _street(value: str | None) -> tuple[str | None, str | None]:
    # BillingStreet is a textarea: the first line is line1, the rest line2.
    if not value:
        return None, None
    lines = [line.strip() for line in value.splitlines() if line.strip()]
    return (lines[0] if lines else None), (", ".join(lines[1:]) or None)


def customer_from_account(record: Mapping[str, Any], *, system: str = SYSTEM) -> CustomerV1:
    """Account → CustomerV1. ``Name`` and ``Id`` are required; ``Website`` becomes the
    domain; ``ParentId`` the parent reference; ``CurrencyIsoCode`` the currency."""
    if not isinstance(record, Mapping):
        raise MappingError(f"salesforce Account: expected an object, got {type(record).__name__}")
    record_id = _text(record, "Id")
    if not record_id:
        raise MappingError("salesforce Account.Id: missing")
    name = _text(record, "Name")
    if not name:
        raise MappingError(f"salesforce Account.Name: missing on {record_id}")
    line1, line2 = _street(_text(record, "BillingStreet"))
    country = _text(record, "BillingCountryCode") or _text(record, "BillingCountry")
    if country and len(country) == 2:
        country = country.upper()
    currency = _text(record, "CurrencyIsoCode")
    if currency:
        try:
            currency = currency_normalize(currency)
        except UnknownCurrency:
            raise MappingError(f"salesforce Account.CurrencyIsoCode: unknown currency {currency!r}") from None
    parent = _text(record, "ParentId")
    try:
        address = Address(
            line1=line1, line2=line2, city=_text(record, "BillingCity"),
            postal_code=_text(record, "BillingPostalCode"), state=_text(record, "BillingState"), country=country,
        )
        return CustomerV1(
            source=SourceRef(system=system, external_id=record_id),
            display_name=name,
            address=address if any(address.model_dump().values()) else None,
            currency=currency,
            domain=_text(record, "Website"),
            parent=SourceRef(system=system, external_id=parent) if parent else None,
        )
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise MappingError(f"salesforce Account {record_id} does not fit CustomerV1: {problems}") from None
