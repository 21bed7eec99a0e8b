"""The Stripe API sandbox's catalog: products, prices and the subscriptions list, as Stripe's API reference documents them (form-encoded params,
list objects, error bodies).

* ``POST /v1/products`` (your own ``id`` allowed; a taken one is
  ``resource_already_exists``), ``GET|POST /v1/products/{id}`` (``default_price``
  must be an active price of the product), ``GET /v1/products`` (``active``).
* ``POST /v1/prices``: ``product``, ``currency`` (lower case), ``unit_amount`` or
  ``billing_scheme=tiered`` + ``tiers[n][up_to|unit_amount|flat_amount]`` (``up_to=inf``
  last) + ``tiers_mode``, ``recurring[interval|interval_count|usage_type|meter]``
  (``metered`` needs a meter since 2025-03-31.basil), ``lookup_key`` (taken by another
  price unless ``transfer_lookup_key=true``), ``nickname``, ``metadata``.
* ``POST /v1/prices/{id}``: only ``active``, ``metadata``, ``nickname``, ``lookup_key`` +
  ``transfer_lookup_key``: a price is immutable; anything else is refused as
  ``parameter_unknown``. The product's current default price cannot be archived.
* ``GET /v1/prices``: **active prices only** unless ``active=false``; filters
  ``product``, ``currency``, ``lookup_keys[]``; ``tiers`` only with
  ``expand[]=data.tiers`` (``expand[]=tiers`` on retrieve).
* Metered prices need a meter of the sandbox's ``MeterStore`` (``meters_sandbox.py``).
* ``GET /v1/subscriptions`` with ``price`` and ``status`` (subscriptions are seeded
  by tests with ``subscription_add``; the hub does not create them).
"""

from __future__ import annotations

import re
from typing import Any

from connectors.sandbox_server import Request, Response

_PRODUCT = re.compile(r"^/v1/products/([\w-]+)$")
_PRICE = re.compile(r"^/v1/prices/(price_\w+)$")
_ID = re.compile(r"^[A-Za-z0-9_-]{1,250}$")
_PRODUCT_PARAMS = {"id", "name", "description", "active", "metadata", "unit_label", "tax_code", "default_price"}
_PRICE_PARAMS = {"product", "currency", "unit_amount", "billing_scheme", "tiers", "tiers_mode", "recurring",
                 "lookup_key", "transfer_lookup_key", "nickname", "metadata", "active", "tax_behavior"}
_PRICE_UPDATE = {"active", "metadata", "nickname", "lookup_key", "transfer_lookup_key"}
_INTERVALS = {"day", "week", "month", "year"}


def error(status: int, message: str, *, code: str | None = None, param: str | None = None,
          kind: str = "invalid_request_error") -> Response:
    body: dict[str, Any] = {"type": kind, "code": code, "message": message}
    if param is not None:
        body["param"] = param
    return Response(status, {"error": body})


def _bool(value: Any) -> bool | None:
    return {"true": True, "false": False}.get(value) if isinstance(value, str) else None


def _values(request: Request, name: str) -> list[str]:
    """Every value of a list parameter, sent as ``name[]=…`` or (the SDKs) ``name[0]=…``."""
    return [value for key, value in request.query_pairs if re.fullmatch(rf"{re.escape(name)}\[\d*\]", key)]


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, str) and value.isdigit() else None


class StripeCatalog:
    """State and routes; ``sandbox`` gives ids and the clock (``StripeSandbox``)."""

    def __init__(self, objects: Any, *, meters: dict[str, dict[str, Any]]):
        self.objects = objects
        self.products: dict[str, dict[str, Any]] = {}
        self.prices: dict[str, dict[str, Any]] = {}
        self.meters = meters  # the meter store's, by id
        self.subscriptions: dict[str, dict[str, Any]] = {}

    # ------------------------------------------------------------ test helpers

    def subscription_add(self, price_id: str, *, status: str = "active") -> dict[str, Any]:
        sub_id = self.objects.new_id("sub")
        item = {"id": self.objects.new_id("si"), "object": "subscription_item", "price": self.prices[price_id],
                "quantity": 1}
        subscription = {"id": sub_id, "object": "subscription", "status": status,
                        "items": {"object": "list", "data": [item], "has_more": False}}
        self.subscriptions[sub_id] = subscription
        return subscription

    # ------------------------------------------------------------ routing

    def route(self, request: Request, params: dict[str, Any]) -> Response | None:
        path, method = request.path, request.method
        if path == "/v1/products":
            return self._product_create(params) if method == "POST" else self._list(
                request, self.products, {"active", "limit", "starting_after"})
        if match := _PRODUCT.match(path):
            product = self.products.get(match.group(1))
            if product is None:
                return error(404, f"No such product: '{match.group(1)}'", code="resource_missing", param="id")
            return self._product_update(product, params) if method == "POST" else Response(200, product)
        if path == "/v1/prices":
            return self._price_create(params) if method == "POST" else self._list(
                request, self.prices, {"active", "product", "currency", "lookup_keys[]", "limit", "starting_after",
                                       "expand[]"})
        if match := _PRICE.match(path):
            price = self.prices.get(match.group(1))
            if price is None:
                return error(404, f"No such price: '{match.group(1)}'", code="resource_missing", param="price")
            if method == "POST":
                return self._price_update(price, params)
            return Response(200, self._render_price(price, expand_tiers="tiers" in _values(request, "expand")))
        if path == "/v1/subscriptions" and method == "GET":
            return self._list(request, self.subscriptions, {"price", "status", "customer", "limit", "starting_after"})
        return None

    # ------------------------------------------------------------ products

    def _product_create(self, params: dict[str, Any]) -> Response:
        if unknown := sorted(set(params) - _PRODUCT_PARAMS - {"default_price"}):
            return error(400, f"Received unknown parameter: {unknown[0]}", code="parameter_unknown", param=unknown[0])
        if not params.get("name"):
            return error(400, "Missing required param: name.", code="parameter_missing", param="name")
        if empty := sorted(key for key, value in params.items() if value == ""):
            return error(400, f"You passed an empty string for '{empty[0]}'. We assume empty values are an attempt "
                              f"to unset a parameter; however '{empty[0]}' cannot be unset.",
                         code="parameter_invalid_empty", param=empty[0])
        product_id = params.get("id") or self.objects.new_id("prod")
        if not _ID.match(product_id):
            return error(400, f"Invalid id: {product_id!r}", code="parameter_invalid", param="id")
        if product_id in self.products:
            return error(400, f"Product already exists: {product_id}", code="resource_already_exists", param="id")
        now = self.objects._now()
        product = {"id": product_id, "object": "product", "name": params["name"],
                   "description": params.get("description") or None, "active": _bool(params.get("active")) is not False,
                   "default_price": None, "metadata": params.get("metadata") or {},
                   "unit_label": params.get("unit_label") or None, "tax_code": params.get("tax_code") or None,
                   "created": now, "updated": now, "livemode": False}
        self.products[product_id] = product
        return Response(200, product)

    def _product_update(self, product: dict[str, Any], params: dict[str, Any]) -> Response:
        if unknown := sorted(set(params) - (_PRODUCT_PARAMS - {"id"})):
            return error(400, f"Received unknown parameter: {unknown[0]}", code="parameter_unknown", param=unknown[0])
        if params.get("default_price") == "":
            product["default_price"] = None  # an empty value unsets it
        elif "default_price" in params:
            price = self.prices.get(params["default_price"])
            if price is None or price["product"] != product["id"] or not price["active"]:
                return error(400, f"The price {params['default_price']!r} is not an active price of this product.",
                             code="parameter_invalid", param="default_price")
            product["default_price"] = price["id"]
        for field in ("name", "description", "unit_label", "tax_code"):
            if field in params:
                product[field] = params[field] or None
        if "active" in params:
            product["active"] = _bool(params["active"]) is not False
        if "metadata" in params:
            merged = {**product["metadata"], **params["metadata"]}
            product["metadata"] = {k: v for k, v in merged.items() if v != ""}
        product["updated"] = self.objects._now()
        return Response(200, product)

    # ------------------------------------------------------------ prices

    def _tiers(self, raw: Any) -> tuple[list[dict[str, Any]] | None, Response | None]:
        if not isinstance(raw, dict) or not raw:
            return None, error(400, "Missing required param: tiers.", code="parameter_missing", param="tiers")
        tiers = []
        for index in sorted(raw, key=lambda k: int(k) if k.isdigit() else -1):
            tier = raw[index]
            up_to = tier.get("up_to")
            if up_to != "inf" and _int(up_to) is None:
                return None, error(400, f"Invalid tiers[{index}][up_to]", code="parameter_invalid",
                                   param=f"tiers[{index}][up_to]")
            unit, flat = tier.get("unit_amount"), tier.get("flat_amount")
            if unit is None and flat is None:
                return None, error(400, f"tiers[{index}] needs unit_amount or flat_amount",
                                   code="parameter_missing", param=f"tiers[{index}][unit_amount]")
            tiers.append({"up_to": None if up_to == "inf" else int(up_to),
                          "unit_amount": _int(unit), "unit_amount_decimal": unit,
                          "flat_amount": _int(flat), "flat_amount_decimal": flat})
        if tiers[-1]["up_to"] is not None:
            return None, error(400, "The last tier must have up_to=inf.", code="parameter_invalid", param="tiers")
        return tiers, None

    def _price_create(self, params: dict[str, Any]) -> Response:
        if unknown := sorted(set(params) - _PRICE_PARAMS):
            return error(400, f"Received unknown parameter: {unknown[0]}", code="parameter_unknown", param=unknown[0])
        product = self.products.get(params.get("product", ""))
        if product is None:
            return error(400, f"No such product: '{params.get('product')}'", code="resource_missing", param="product")
        currency = params.get("currency", "")
        if not re.fullmatch(r"[a-z]{3}", currency):
            return error(400, "Invalid currency: must be a lowercase three-letter ISO code.",
                         code="parameter_invalid", param="currency")
        scheme = params.get("billing_scheme", "per_unit")
        tiers = None
        if scheme == "tiered":
            tiers, refused = self._tiers(params.get("tiers"))
            if refused:
                return refused
            if params.get("tiers_mode") not in ("graduated", "volume"):
                return error(400, "tiers_mode must be graduated or volume.", code="parameter_invalid",
                             param="tiers_mode")
            if "unit_amount" in params:
                return error(400, "unit_amount cannot be used with billing_scheme=tiered.",
                             code="parameter_invalid", param="unit_amount")
        elif _int(params.get("unit_amount")) is None:
            return error(400, "Missing required param: unit_amount.", code="parameter_missing", param="unit_amount")
        recurring = None
        if "recurring" in params:
            raw = params["recurring"]
            if raw.get("interval") not in _INTERVALS:
                return error(400, "Invalid recurring[interval].", code="parameter_invalid", param="recurring[interval]")
            usage = raw.get("usage_type", "licensed")
            meter = raw.get("meter")
            if usage == "metered" and meter not in self.meters:
                return error(400, "Metered prices must be backed by a meter: recurring[meter] is required.",
                             code="parameter_missing", param="recurring[meter]")
            recurring = {"interval": raw["interval"], "interval_count": _int(raw.get("interval_count", "1")) or 1,
                         "usage_type": usage, "meter": meter if usage == "metered" else None,
                         "trial_period_days": None}
        lookup_key = params.get("lookup_key") or None
        if lookup_key:
            holder = next((p for p in self.prices.values() if p["lookup_key"] == lookup_key), None)
            if holder is not None:
                if _bool(params.get("transfer_lookup_key")) is not True:
                    return error(400, f"A price (`{holder['id']}`) already uses that lookup key.",
                                 code="lookup_key_exists", param="lookup_key")
                holder["lookup_key"] = None
        price_id = self.objects.new_id("price")
        price = {"id": price_id, "object": "price", "product": product["id"], "currency": currency,
                 "active": _bool(params.get("active")) is not False, "billing_scheme": scheme,
                 "unit_amount": _int(params.get("unit_amount")), "unit_amount_decimal": params.get("unit_amount"),
                 "tiers_mode": params.get("tiers_mode") if scheme == "tiered" else None, "_tiers": tiers,
                 "recurring": recurring, "type": "recurring" if recurring else "one_time",
                 "lookup_key": lookup_key, "nickname": params.get("nickname") or None,
                 "metadata": params.get("metadata") or {}, "tax_behavior": params.get("tax_behavior", "unspecified"),
                 "created": self.objects._now(), "livemode": False}
        self.prices[price_id] = price
        return Response(200, self._render_price(price, expand_tiers=False))

    def _price_update(self, price: dict[str, Any], params: dict[str, Any]) -> Response:
        if unknown := sorted(set(params) - _PRICE_UPDATE):
            # Amount, currency, interval and tiers never change: a new price is made instead.
            return error(400, f"Received unknown parameter: {unknown[0]}", code="parameter_unknown", param=unknown[0])
        if "active" in params:
            active = _bool(params["active"]) is not False
            product = self.products[price["product"]]
            if not active and product["default_price"] == price["id"]:
                return error(400, "This price cannot be archived because it is the default price of its product.",
                             code="parameter_invalid", param="active")
            price["active"] = active
        if "lookup_key" in params:
            key = params["lookup_key"] or None
            holder = next((p for p in self.prices.values() if key and p["lookup_key"] == key and p is not price), None)
            if holder is not None:
                if _bool(params.get("transfer_lookup_key")) is not True:
                    return error(400, f"A price (`{holder['id']}`) already uses that lookup key.",
                                 code="lookup_key_exists", param="lookup_key")
                holder["lookup_key"] = None
            price["lookup_key"] = key
        if "nickname" in params:
            price["nickname"] = params["nickname"] or None
        if "metadata" in params:
            merged = {**price["metadata"], **params["metadata"]}
            price["metadata"] = {k: v for k, v in merged.items() if v != ""}
        return Response(200, self._render_price(price, expand_tiers=False))

    @staticmethod
    def _render_price(price: dict[str, Any], *, expand_tiers: bool) -> dict[str, Any]:
        rendered = {key: value for key, value in price.items() if key != "_tiers"}
        if expand_tiers and price["_tiers"] is not None:
            rendered["tiers"] = price["_tiers"]
        return rendered

    # ------------------------------------------------------------ lists

    def _list(self, request: Request, store: dict[str, dict[str, Any]], known: set[str]) -> Response:
        query = request.query
        keys = {re.sub(r"\[\d+\]$", "[]", key) for key, _ in request.query_pairs}
        if unknown := sorted(keys - known):
            return error(400, f"Received unknown parameter: {unknown[0]}", code="parameter_unknown", param=unknown[0])
        limit = query.get("limit", "10")
        if not limit.isdigit() or not 1 <= int(limit) <= 100:
            return error(400, f"Invalid limit: {limit!r}", code="parameter_invalid", param="limit")
        found = list(reversed(store.values()))  # newest first
        if store is self.prices:
            wanted = _bool(query.get("active"))
            found = [p for p in found if p["active"] == (True if wanted is None else wanted)]
            if "product" in query:
                found = [p for p in found if p["product"] == query["product"]]
            if "currency" in query:
                found = [p for p in found if p["currency"] == query["currency"]]
            if lookup_keys := _values(request, "lookup_keys"):
                found = [p for p in found if p["lookup_key"] in lookup_keys]
        elif store is self.products and "active" in query:
            found = [p for p in found if p["active"] == _bool(query["active"])]
        elif store is self.subscriptions:
            if "customer" in query:
                found = [s for s in found if s.get("customer") == query["customer"]]
            if "price" in query:
                found = [s for s in found if any(i["price"]["id"] == query["price"] for i in s["items"]["data"])]
            status = query.get("status", "active")
            if status != "all":
                found = [s for s in found if s["status"] == status]
        if after := query.get("starting_after"):
            ids = [obj["id"] for obj in found]
            if after in ids:
                found = found[ids.index(after) + 1:]
        page = found[: int(limit)]
        if store is self.prices:
            expand = "data.tiers" in _values(request, "expand")
            page = [self._render_price(p, expand_tiers=expand) for p in page]
        return Response(200, {"object": "list", "url": request.path, "has_more": len(found) > int(limit),
                              "data": page})
