"""A local stand-in for a company's catalog service, served over HTTP.

``GET /v1/catalog/items`` answers a page of items, newest change last:

* cursor paging: ``?limit=&cursor=`` → ``{"data": [...], "has_more": bool, "next_cursor": "…" | null}``;
* page paging: ``?page=&limit=`` → ``{"data": [...], "page": n, "total_pages": m}``;
* ``updated_since`` (ISO 8601): only items changed at or after it (deleted items are
  simply absent: a full scan is how a client learns about them);
* auth: ``Authorization: Bearer <token>`` or ``X-Api-Key: <key>``; 401 otherwise.

The catalog: three plans (Starter, Pro, Enterprise) with monthly prices in USD, EUR
and JPY (zero-decimal) and a yearly USD price, two usage add-ons with tiered prices
(API calls: metered, graduated; storage: licensed, volume) and a retired SKU.
Amounts are decimal strings in major units, as many platforms write them.

Knobs between pulls: ``price_set``, ``item_rename``, ``item_retire``, ``item_delete``,
``item_put`` (any raw item, e.g. a broken one), ``scale(n)`` (n extra generated SKUs),
``fail_next`` (5xx / 429 with Retry-After), ``garbage_next`` (a non-JSON page), and
``catalog_changed_request`` (a signed ``catalog.changed`` webhook).
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import re
import threading
from typing import Any

import httpx

from connectors.product_platform.webhooks import SIGNATURE_HEADER, signature_header
from connectors.sandbox_server import Fault, FaultQueue, Request, Response, Served

PATH = "/v1/catalog/items"
_START = dt.datetime(2026, 1, 5, 9, 0, tzinfo=dt.UTC)
REGIONS = (("usd", "29.00"), ("eur", "27.00"), ("jpy", "4400"))


def _plan(sku: str, name: str, monthly: dict[str, str], yearly_usd: str, *, description: str) -> dict[str, Any]:
    prices = [
        {"id": f"{sku.lower()}-monthly-{ccy}", "currency": ccy, "unit_amount": amount, "type": "recurring",
         "recurring": {"interval": "month", "interval_count": 1, "usage_type": "licensed"},
         "lookup_key": f"{sku.lower()}-monthly-{ccy}", "nickname": f"{name} monthly ({ccy.upper()})",
         "is_default": True, "active": True}
        for ccy, amount in monthly.items()
    ]
    prices.append({"id": f"{sku.lower()}-yearly-usd", "currency": "usd", "unit_amount": yearly_usd,
                   "type": "recurring", "recurring": {"interval": "year", "interval_count": 1,
                                                      "usage_type": "licensed"},
                   "lookup_key": f"{sku.lower()}-yearly-usd", "nickname": f"{name} yearly (USD)",
                   "is_default": False, "active": True})
    return {"id": f"item_{sku.lower()}", "sku": sku, "name": name, "description": description, "kind": "plan",
            "unit_label": "seat", "status": "active", "prices": prices}


def default_catalog(prefix: str = "") -> list[dict[str, Any]]:
    """The sandbox's catalog; ``prefix`` makes its SKUs and price ids unique (tests
    sharing one ERP for a session)."""
    items = _catalog()
    if not prefix:
        return items
    for item in items:
        item["sku"], item["id"] = f"{prefix}-{item['sku']}", f"{prefix.lower()}_{item['id']}"
        for price in item["prices"]:
            price["id"] = price["lookup_key"] = f"{prefix.lower()}-{price['id']}"
    return items


def _catalog() -> list[dict[str, Any]]:
    return [
        _plan("STARTER", "Starter", {"usd": "29.00", "eur": "27.00", "jpy": "4400"}, "290.00",
              description="For small teams getting started"),
        _plan("PRO", "Pro", {"usd": "99.00", "eur": "92.00", "jpy": "15000"}, "990.00",
              description="Advanced workflows and priority support"),
        _plan("ENTERPRISE", "Enterprise", {"usd": "499.00", "eur": "459.00", "jpy": "75000"}, "4990.00",
              description="SSO, audit logs and a dedicated manager"),
        {"id": "item_api_calls", "sku": "ADDON-API-CALLS", "name": "API calls", "kind": "addon",
         "description": "Metered API usage, billed per call at graduated rates", "unit_label": "call",
         "status": "active", "prices": [
             {"id": f"addon-api-calls-{ccy}", "currency": ccy, "type": "recurring",
              "recurring": {"interval": "month", "interval_count": 1, "usage_type": "metered",
                            "meter_event": "api_call"},
              "tiers_mode": "graduated", "tiers": tiers, "lookup_key": f"addon-api-calls-{ccy}",
              "nickname": f"API calls ({ccy.upper()})", "is_default": False, "active": True}
             for ccy, tiers in (
                 ("usd", [{"up_to": 10000, "unit_amount": "0"}, {"up_to": 100000, "unit_amount": "0.02"},
                          {"up_to": "inf", "unit_amount": "0.01"}]),
                 ("eur", [{"up_to": 10000, "unit_amount": "0"}, {"up_to": 100000, "unit_amount": "0.02"},
                          {"up_to": "inf", "unit_amount": "0.01"}]),
             )]},
        {"id": "item_storage", "sku": "ADDON-STORAGE", "name": "Extra storage", "kind": "addon",
         "description": "Storage blocks of 100 GB, volume pricing", "unit_label": "100 GB", "status": "active",
         "prices": [{"id": "addon-storage-usd", "currency": "usd", "type": "recurring",
                     "recurring": {"interval": "month", "interval_count": 1, "usage_type": "licensed"},
                     "tiers_mode": "volume", "tiers": [
                         {"up_to": 10, "unit_amount": "5.00"}, {"up_to": 50, "unit_amount": "4.00"},
                         {"up_to": "inf", "unit_amount": "3.00", "flat_amount": "20.00"}],
                     "lookup_key": "addon-storage-usd", "nickname": "Storage (USD)", "is_default": False,
                     "active": True}]},
        {"id": "item_legacy_basic", "sku": "LEGACY-BASIC", "name": "Basic (legacy)", "kind": "plan",
         "description": "Retired in 2025; existing customers were moved to Starter", "unit_label": "seat",
         "status": "retired", "prices": [
             {"id": "legacy-basic-monthly-usd", "currency": "usd", "unit_amount": "19.00", "type": "recurring",
              "recurring": {"interval": "month", "interval_count": 1, "usage_type": "licensed"},
              "lookup_key": "legacy-basic-monthly-usd", "nickname": "Basic monthly (USD)", "is_default": True,
              "active": False}]},
    ]


class ProductPlatformSandbox(Served):
    def __init__(self, *, token: str = "pp_test_token", api_key: str = "pp_test_key",
                 webhook_secret: str = "ppwh_test_secret", items: list[dict[str, Any]] | None = None,
                 prefix: str = ""):
        self.token, self.api_key, self.webhook_secret = token, api_key, webhook_secret
        self.clock = _START
        self.items: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.faults = FaultQueue()
        self._garbage = 0
        self._events = 0
        self._lock = threading.RLock()
        for item in items if items is not None else default_catalog(prefix):
            self.item_put(item)

    # ------------------------------------------------------------ knobs

    def _tick(self) -> str:
        self.clock += dt.timedelta(seconds=1)
        return self.clock.isoformat().replace("+00:00", "Z")

    def item_put(self, item: dict[str, Any], *, key: str | None = None) -> dict[str, Any]:
        """Add or replace a raw item (stored under its SKU, or ``key`` for one without)."""
        with self._lock:
            stored = {**copy.deepcopy(item), "updated_at": self._tick()}
            self.items[key or str(item.get("sku") or item.get("id"))] = stored
            return stored

    def _edit(self, sku: str, change) -> dict[str, Any]:
        with self._lock:
            item = self.items[sku]
            change(item)
            item["updated_at"] = self._tick()
            return item

    def price_set(self, price_id: str, amount: str) -> dict[str, Any]:
        """Change one price's amount (a decimal string in major units)."""
        sku = next(sku for sku, item in self.items.items() if any(p["id"] == price_id for p in item.get("prices", [])))

        def change(item):
            next(p for p in item["prices"] if p["id"] == price_id)["unit_amount"] = amount

        return self._edit(sku, change)

    def item_rename(self, sku: str, name: str) -> dict[str, Any]:
        return self._edit(sku, lambda item: item.update(name=name))

    def item_describe(self, sku: str, description: str) -> dict[str, Any]:
        return self._edit(sku, lambda item: item.update(description=description))

    def item_retire(self, sku: str) -> dict[str, Any]:
        def change(item):
            item["status"] = "retired"
            for price in item.get("prices", []):
                price["active"] = False

        return self._edit(sku, change)

    def item_delete(self, sku: str) -> None:
        with self._lock:
            del self.items[sku]

    def scale(self, count: int, *, prefix: str = "GEN") -> list[str]:
        """``count`` more plans, each with monthly prices in USD, EUR and JPY."""
        skus = []
        for index in range(count):
            sku = f"{prefix}-{index:05d}"
            self.item_put(_plan(sku, f"Generated plan {index}", dict(REGIONS), "290.00",
                                description=f"Generated for scale, number {index}"))
            skus.append(sku)
        return skus

    def fail_next(self, status: int = 503, *, times: int = 1, retry_after: int | None = None) -> None:
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
        self.faults.add(Fault(status, {"error": "injected fault"}, headers, times=times))

    def garbage_next(self, times: int = 1) -> None:
        """The next page(s) answer 200 with an HTML body, as a misrouted proxy would."""
        self._garbage += times

    # ------------------------------------------------------------ config for the hub

    def connection_config(self, **overrides: Any) -> dict[str, Any]:
        return {"url": self.url, "auth": {"type": "bearer"}, "paging": {"style": "cursor", "limit": 50},
                **overrides}

    def credentials(self) -> dict[str, Any]:
        return {"token": self.token, "webhook_secrets": [self.webhook_secret]}

    # ------------------------------------------------------------ the webhook

    def catalog_changed_request(self, skus: list[str] | None = None) -> tuple[bytes, dict[str, str]]:
        with self._lock:
            self._events += 1
            event = {"id": f"evt_catalog_{self._events:06d}_{int(self.clock.timestamp())}",
                     "type": "catalog.changed", "created": int(dt.datetime.now(dt.UTC).timestamp()),
                     "data": {"skus": skus or []}}
        body = json.dumps(event).encode()
        return body, {"Content-Type": "application/json",
                      SIGNATURE_HEADER: signature_header(body, [self.webhook_secret])}

    def deliver_catalog_changed(self, url: str, *, skus: list[str] | None = None,
                                client: httpx.Client | None = None) -> httpx.Response:
        body, headers = self.catalog_changed_request(skus)
        if client is not None:
            return client.post(url, content=body, headers=headers)
        return httpx.post(url, content=body, headers=headers, timeout=10)

    # ------------------------------------------------------------ HTTP

    def handle(self, request: Request) -> Response:
        with self._lock:
            self.requests.append((request.path, dict(request.query)))
            if request.headers.get("authorization") != f"Bearer {self.token}" and \
                    request.headers.get("x-api-key") != self.api_key:
                return Response(401, {"error": "unauthorized", "message": "a valid bearer token or API key is required"})
            if (fault := self.faults.take(request)) is not None:
                return fault
            if request.path != PATH or request.method != "GET":
                return Response(404, {"error": "not_found", "message": f"{request.method} {request.path}"})
            if self._garbage:
                self._garbage -= 1
                return Response(200, headers={"Content-Type": "text/html"},
                                raw=b"<html><body>502 Bad Gateway</body></html>")
            return self._page(request.query)

    def _page(self, query: dict[str, str]) -> Response:
        limit = query.get("limit", "100")
        if not limit.isdigit() or not 1 <= int(limit) <= 500:
            return Response(400, {"error": "invalid_limit", "message": "limit must be 1..500"})
        items = sorted(self.items.values(), key=lambda item: (item["updated_at"], str(item.get("sku"))))
        if since := query.get("updated_since"):
            try:
                when = dt.datetime.fromisoformat(since.replace("Z", "+00:00"))
            except ValueError:
                return Response(400, {"error": "invalid_updated_since", "message": "ISO 8601 expected"})
            items = [item for item in items
                     if dt.datetime.fromisoformat(item["updated_at"].replace("Z", "+00:00")) >= when]
        size = int(limit)
        if "page" in query:
            if not re.fullmatch(r"[1-9]\d*", query["page"]):
                return Response(400, {"error": "invalid_page", "message": "page counts from 1"})
            page = int(query["page"])
            total = max(1, -(-len(items) // size))
            return Response(200, {"data": items[(page - 1) * size: page * size], "page": page, "total_pages": total})
        offset = 0
        if cursor := query.get("cursor"):
            if not re.fullmatch(r"c\d+", cursor):
                return Response(400, {"error": "invalid_cursor", "message": f"unknown cursor {cursor!r}"})
            offset = int(cursor[1:])
        more = len(items) > offset + size
        return Response(200, {"data": items[offset: offset + size], "has_more": more,
                              "next_cursor": f"c{offset + size}" if more else None})

