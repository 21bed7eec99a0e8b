"""A product platform's items → canonical products and prices, by a field mapping
kept as data on the connection (``config["mapping"]``).

Each canonical field is a JMESPath expression evaluated against the raw item (for
the product), one of its prices (for a price) or one of a price's tiers. A constant
is a JMESPath literal (``'recurring'``, ``` `true` ```). Pure functions: no I/O.

    {
      "product": {"sku": "sku", "display_name": "name", "active": "status != 'retired'", ...},
      "updated_at": "updated_at",
      "prices": "prices",
      "price": {"id": "id", "currency": "currency", "amount": "amount", "interval": "recurring.interval", ...},
      "tier": {"up_to": "up_to", "unit_amount": "unit_amount", "flat_amount": "flat_amount"},
      "amount_format": "decimal"
    }

``amount_format`` says how the platform writes money: ``decimal`` (major units, a
string or number: ``"49.00"`` USD, ``"4900"`` JPY) or ``minor`` (integers in minor
units). Either way the hub keeps integers in the currency's real minor units.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

import jmespath
import jmespath.exceptions
from pydantic import ValidationError

from canonical.contracts import PriceTier, PriceV1, ProductV1, SourceRef
from canonical.money import PrecisionError, UnknownCurrency, currency_normalize, to_minor
from connectors.base import CatalogItem
from connectors.errors import MappingError

PRODUCT_FIELDS = ("sku", "id", "display_name", "description", "category", "unit_label", "tax_code", "active")
PRICE_FIELDS = ("id", "currency", "amount", "type", "billing_scheme", "tiers", "tiers_mode", "interval",
                "interval_count", "usage_type", "meter_event_name", "lookup_key", "nickname", "list_price",
                "effective_from", "effective_to", "active")
TIER_FIELDS = ("up_to", "unit_amount", "flat_amount")
REQUIRED = {"product": ("sku", "display_name"), "price": ("id", "currency", "amount")}
AMOUNT_FORMATS = ("decimal", "minor")

# The mapping of the sandbox's (and many platforms') shape; a connection overrides
# any part of it.
DEFAULT_MAPPING: dict[str, Any] = {
    "product": {
        "sku": "sku", "id": "id", "display_name": "name", "description": "description", "category": "kind",
        "unit_label": "unit_label", "tax_code": "tax_code", "active": "status != 'retired'",
    },
    "updated_at": "updated_at",
    "prices": "prices",
    "price": {
        "id": "id", "currency": "currency", "amount": "unit_amount", "type": "type",
        "billing_scheme": "tiers && 'tiered' || 'per_unit'", "tiers": "tiers", "tiers_mode": "tiers_mode",
        "interval": "recurring.interval", "interval_count": "recurring.interval_count",
        "usage_type": "recurring.usage_type", "meter_event_name": "recurring.meter_event",
        "lookup_key": "lookup_key", "nickname": "nickname", "list_price": "is_default",
        "effective_from": "effective_from", "effective_to": "effective_to", "active": "active",
    },
    "tier": {"up_to": "up_to", "unit_amount": "unit_amount", "flat_amount": "flat_amount"},
    "amount_format": "decimal",
}


class MappingConfigError(ValueError):
    """The mapping itself is wrong (unknown field, an expression that does not parse)."""


@dataclass(frozen=True)
class CompiledMapping:
    product: Mapping[str, Any]
    price: Mapping[str, Any]
    tier: Mapping[str, Any]
    prices: Any
    updated_at: Any | None
    amount_format: str
    source: Mapping[str, Any]


def mapping_merge(override: Mapping[str, Any] | None) -> dict[str, Any]:
    """The default mapping with a connection's overrides on top (per section)."""
    merged = {key: (dict(value) if isinstance(value, dict) else value) for key, value in DEFAULT_MAPPING.items()}
    for key, value in (override or {}).items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


def _compile_section(section: str, spec: Any, fields: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(spec, Mapping):
        raise MappingConfigError(f"mapping.{section} must be an object of field → JMESPath expression")
    unknown = sorted(set(spec) - set(fields))
    if unknown:
        raise MappingConfigError(f"mapping.{section} has unknown field(s) {', '.join(unknown)}; "
                                 f"known: {', '.join(fields)}")
    compiled = {}
    for name, expression in spec.items():
        if expression in (None, ""):
            continue  # field not mapped
        compiled[name] = _compile(f"mapping.{section}.{name}", expression)
    for name in REQUIRED.get(section, ()):
        if name not in compiled:
            raise MappingConfigError(f"mapping.{section}.{name} is required")
    return compiled


def _compile(where: str, expression: Any) -> Any:
    if not isinstance(expression, str):
        raise MappingConfigError(f"{where}: a JMESPath expression must be a string, not {expression!r}")
    try:
        return jmespath.compile(expression)
    except jmespath.exceptions.JMESPathError as exc:
        raise MappingConfigError(f"{where}: {expression!r} is not valid JMESPath: {exc}") from None


def mapping_compile(spec: Mapping[str, Any] | None) -> CompiledMapping:
    """Check and compile a connection's mapping (merged over the default); raises
    MappingConfigError naming the bad entry."""
    merged = mapping_merge(spec)
    amount_format = merged.get("amount_format", "decimal")
    if amount_format not in AMOUNT_FORMATS:
        raise MappingConfigError(f"mapping.amount_format must be one of {', '.join(AMOUNT_FORMATS)}")
    return CompiledMapping(
        product=_compile_section("product", merged["product"], PRODUCT_FIELDS),
        price=_compile_section("price", merged["price"], PRICE_FIELDS),
        tier=_compile_section("tier", merged["tier"], TIER_FIELDS),
        prices=_compile("mapping.prices", merged["prices"]),
        updated_at=_compile("mapping.updated_at", merged["updated_at"]) if merged.get("updated_at") else None,
        amount_format=amount_format,
        source=merged,
    )


class _Item:
    """Evaluates expressions against one record and names it in every error."""

    def __init__(self, label: str, data: Any, expressions: Mapping[str, Any], section: str, source: Mapping):
        self.label, self.data, self.expressions, self.section, self.source = label, data, expressions, section, source

    def get(self, name: str, default: Any = None) -> Any:
        expression = self.expressions.get(name)
        if expression is None:
            return default
        try:
            value = expression.search(self.data)
        except jmespath.exceptions.JMESPathError as exc:
            raise self.error(name, f"expression failed: {exc}") from None
        return default if value is None else value

    def error(self, name: str, problem: str) -> MappingError:
        expression = (self.source.get(self.section) or {}).get(name) if self.section != "prices" else None
        where = f"field {self.section}.{name}" + (f" (expression {expression!r})" if expression else "")
        return MappingError(f"{self.label}: {where}: {problem}")

    def text(self, name: str, *, required: bool = False) -> str | None:
        value = self.get(name)
        if value is None or value == "":
            if required:
                raise self.error(name, "is missing")
            return None
        if isinstance(value, bool | dict | list):
            raise self.error(name, f"must be text, got {value!r}")
        return str(value)

    def flag(self, name: str, default: bool) -> bool:
        value = self.get(name, default)
        if isinstance(value, bool):
            return value
        raise self.error(name, f"must be true or false, got {value!r}")


def item_key(compiled: CompiledMapping, item: Mapping[str, Any]) -> str | None:
    """The item's SKU, or None (missing, or the expression fails)."""
    try:
        value = compiled.product["sku"].search(item)
    except jmespath.exceptions.JMESPathError:
        return None
    return str(value) if value not in (None, "") and not isinstance(value, dict | list) else None


def item_updated_at(compiled: CompiledMapping, item: Mapping[str, Any]) -> dt.datetime | None:
    if compiled.updated_at is None:
        return None
    try:
        value = compiled.updated_at.search(item)
    except jmespath.exceptions.JMESPathError:
        return None
    return parse_datetime(value)


def parse_datetime(value: Any) -> dt.datetime | None:
    """ISO 8601 text or a Unix timestamp; None for anything else."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return dt.datetime.fromtimestamp(value, tz=dt.UTC)
    if isinstance(value, str) and value:
        try:
            parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
    return None


def _date(record: _Item, name: str) -> dt.date | None:
    value = record.get(name)
    if value in (None, ""):
        return None
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value[:10])
        except ValueError:
            pass
    raise record.error(name, f"must be a date (YYYY-MM-DD), got {value!r}")


def _money(record: _Item, name: str, value: Any, currency: str, amount_format: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise record.error(name, f"must be a number, got {value!r}")
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        raise record.error(name, f"is not a number: {value!r}") from None
    if not number.is_finite():
        raise record.error(name, f"is not a number: {value!r}")
    if number < 0:
        raise record.error(name, f"is negative: {value!r}")
    if amount_format == "minor":
        if number != number.to_integral_value():
            raise record.error(name, f"must be a whole number of minor units, got {value!r}")
        return int(number)
    try:
        return to_minor(number, currency)
    except PrecisionError as exc:
        raise record.error(name, str(exc)) from None


def _tiers(compiled: CompiledMapping, record: _Item, currency: str) -> tuple[PriceTier, ...]:
    raw = record.get("tiers")
    if raw in (None, []):
        return ()
    if not isinstance(raw, list):
        raise record.error("tiers", f"must be a list, got {raw!r}")
    tiers = []
    for index, data in enumerate(raw):
        tier = _Item(f"{record.label} tier {index + 1}", data, compiled.tier, "tier", compiled.source)
        up_to = tier.get("up_to")
        if up_to in ("inf", ""):
            up_to = None
        if up_to is not None and (isinstance(up_to, bool) or not isinstance(up_to, int) or up_to <= 0):
            raise tier.error("up_to", f"must be a positive whole number or 'inf', got {up_to!r}")
        amounts = {}
        for name in ("unit_amount", "flat_amount"):
            value = tier.get(name)
            if value is not None:
                amounts[name] = _money(tier, name, value, currency, compiled.amount_format)
        try:
            tiers.append(PriceTier(up_to=up_to, **amounts))
        except ValidationError as exc:
            raise tier.error("unit_amount", _first_problem(exc)) from None
    return tuple(tiers)


def _first_problem(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error.get("loc", ()))
    return f"{where}: {error['msg']}" if where else error["msg"]


def _price(compiled: CompiledMapping, data: Any, *, sku: str, system: str, label: str) -> PriceV1:
    record = _Item(label, data, compiled.price, "price", compiled.source)
    price_id = record.text("id", required=True)
    record.label = f"{label} ({price_id})"
    currency_text = record.text("currency", required=True)
    try:
        currency = currency_normalize(currency_text)
    except UnknownCurrency:
        raise record.error("currency", f"unknown currency {currency_text!r}") from None
    tiers = _tiers(compiled, record, currency)
    scheme = record.text("billing_scheme") or ("tiered" if tiers else "per_unit")
    amount = record.get("amount")
    if scheme == "per_unit" and amount is None:
        raise record.error("amount", "is missing")
    unit_amount = None if amount is None else _money(record, "amount", amount, currency, compiled.amount_format)
    interval = record.text("interval")
    values = {
        "source": SourceRef(system=system, external_id=price_id), "sku": sku, "currency": currency,
        "type": record.text("type") or ("recurring" if interval else "one_time"), "billing_scheme": scheme,
        "unit_amount": None if scheme == "tiered" else unit_amount, "tiers": tiers,
        "tiers_mode": record.text("tiers_mode"), "interval": interval,
        "interval_count": record.get("interval_count", 1), "usage_type": record.text("usage_type") or "licensed",
        "meter_event_name": record.text("meter_event_name"), "lookup_key": record.text("lookup_key"),
        "nickname": record.text("nickname"), "list_price": record.flag("list_price", False),
        "effective_from": _date(record, "effective_from"), "effective_to": _date(record, "effective_to"),
        "active": record.flag("active", True),
    }
    try:
        return PriceV1(**values)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = str(error["loc"][0]) if error.get("loc") else "amount"
        field = {"unit_amount": "amount"}.get(field, field)
        raise record.error(field if field in compiled.price else "amount", _first_problem(exc)) from None


def item_map(compiled: CompiledMapping, item: Mapping[str, Any], *, system: str, label: str = "item") -> CatalogItem:
    """One raw item → its canonical product and prices. Raises MappingError naming the
    item (``label`` and SKU), the canonical field and its expression."""
    if not isinstance(item, Mapping):
        raise MappingError(f"{label}: is not a JSON object: {str(item)[:80]!r}")
    record = _Item(label, item, compiled.product, "product", compiled.source)
    sku = record.text("sku", required=True)
    record.label = f"{label} (SKU {sku})"
    values = {
        "source": SourceRef(system=system, external_id=record.text("id") or sku), "sku": sku,
        "display_name": record.text("display_name", required=True), "description": record.text("description"),
        "category": record.text("category"), "unit_label": record.text("unit_label"),
        "tax_code": record.text("tax_code"), "active": record.flag("active", True),
    }
    try:
        product = ProductV1(**values)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = str(error["loc"][0]) if error.get("loc") else "sku"
        raise record.error(field, _first_problem(exc)) from None
    try:
        raw_prices = compiled.prices.search(item)
    except jmespath.exceptions.JMESPathError as exc:
        raise MappingError(f"{record.label}: field prices: expression failed: {exc}") from None
    if raw_prices is None:
        raw_prices = []
    if not isinstance(raw_prices, list):
        raise MappingError(f"{record.label}: field prices (expression {compiled.source['prices']!r}): "
                           f"must be a list, got {raw_prices!r}")
    prices = tuple(
        _price(compiled, data, sku=sku, system=system, label=f"{record.label} price {index + 1}")
        for index, data in enumerate(raw_prices)
    )
    seen: set[str] = set()
    for price in prices:
        if price.source.external_id in seen:
            raise MappingError(f"{record.label}: field price.id: price {price.source.external_id} is listed twice")
        seen.add(price.source.external_id)
    return CatalogItem(product=product, prices=prices)


def mapping_preview(spec: Mapping[str, Any] | None, sample: Any, *, system: str = "preview") -> dict[str, Any]:
    """What the mapping makes of a sample record, for the admin's preview before a
    mapping is saved: ``{"ok": True, "product": …, "prices": […]}`` or
    ``{"ok": False, "error": "…"}``."""
    try:
        compiled = mapping_compile(spec)
        mapped = item_map(compiled, sample, system=system, label="sample")
    except (MappingConfigError, MappingError) as exc:
        return {"ok": False, "error": str(exc)}
    return {"ok": True, "product": mapped.product.model_dump(mode="json", exclude={"source"}),
            "prices": [price.model_dump(mode="json", exclude={"source"}) for price in mapped.prices]}
