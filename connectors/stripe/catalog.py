"""Canonical products and prices → Stripe's Products and Prices API parameters, and
Stripe's objects back into what the drift check compares. Pure functions.

The Stripe product id is the SKU (Stripe accepts your own id on create: a natural
idempotent key); ``metadata[hub_sku]`` marks the products the hub manages. A price
carries ``metadata[hub_price_version]`` (the hub's version id), so the creation of
one version's price can be found again after an unknown outcome, and its
``lookup_key`` is the platform's price key, moved to each new price with
``transfer_lookup_key``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from canonical.contracts import PriceV1, ProductV1
from connectors.base import TargetProduct


def stripe_product_id(sku: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "-", sku)


def price_lookup_key(price: PriceV1) -> str:
    return (price.lookup_key or price.source.external_id)[:200]


def product_params(product: ProductV1, *, create: bool) -> dict[str, Any]:
    """POST /v1/products[/{id}] parameters (the id itself only on create). On an update
    an empty string unsets a field; on a create Stripe refuses empty strings."""
    unset = None if create else ""
    return {"name": product.display_name, "description": product.description or unset,
            "active": product.active, "unit_label": product.unit_label or unset,
            "metadata": {"hub_sku": product.sku}}


def price_params(price: PriceV1, *, product_id: str, version_ref: str, meter_id: str | None) -> dict[str, Any]:
    """POST /v1/prices parameters for one price version."""
    params: dict[str, Any] = {
        "product": product_id, "currency": price.currency.lower(), "lookup_key": price_lookup_key(price),
        "transfer_lookup_key": True, "nickname": price.nickname,
        "metadata": {"hub_price_version": version_ref, "hub_price": price.source.external_id, "hub_sku": price.sku},
    }
    if price.billing_scheme == "tiered":
        params["billing_scheme"] = "tiered"
        params["tiers_mode"] = price.tiers_mode
        params["tiers"] = [
            {"up_to": "inf" if tier.up_to is None else tier.up_to, "unit_amount": tier.unit_amount,
             "flat_amount": tier.flat_amount}
            for tier in price.tiers
        ]
    else:
        params["unit_amount"] = price.unit_amount
    if price.type == "recurring":
        params["recurring"] = {"interval": price.interval, "interval_count": price.interval_count,
                               "usage_type": price.usage_type}
        if price.usage_type == "metered":
            params["recurring"]["meter"] = meter_id
    return params


def price_state(price: Mapping[str, Any]) -> dict[str, Any]:
    """A Stripe price as the drift check compares it."""
    recurring = price.get("recurring") or {}
    return {"currency": str(price.get("currency", "")).upper(), "unit_amount": price.get("unit_amount"),
            "interval": recurring.get("interval"), "external_id": price["id"],
            "version_ref": (price.get("metadata") or {}).get("hub_price_version")}


def target_product(product: Mapping[str, Any], prices: list[Mapping[str, Any]]) -> TargetProduct:
    return TargetProduct(
        sku=(product.get("metadata") or {}).get("hub_sku") or product["id"], external_id=product["id"],
        name=product.get("name") or "", active=bool(product.get("active")),
        prices={p["lookup_key"]: price_state(p) for p in prices if p.get("lookup_key")},
    )
