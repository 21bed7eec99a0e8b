"""A local stand-in for a HubSpot portal: companies over CRM v3 and signed
webhook batches (signature v3).

Shapes follow HubSpot's documents: ``{id, properties (all strings), createdAt,
updatedAt, archived}``, search results with ``paging.next.after``, errors as
``{"status": "error", "message", "category", "correlationId"}``, 429 bodies with
``policyName``. Webhook batches are JSON arrays of events; a write-back emits a
``company.propertyChange`` for the written property, as HubSpot would (the echo the
hub must ignore). ``serve()`` runs it as a real HTTP server.

``properties`` on a read comes comma-separated (the hub) or repeated (the SDK);
HubSpot takes both, and leaves out names the portal does not have. Search filters
are ANDed within a group and the groups ORed; the sandbox models ``EQ``/``NEQ`` on
any property and ``GT``/``GTE``/``LT``/``LTE`` on numeric ones (such as
``hs_lastmodifieddate``), sorts by one property, and refuses other operators
instead of ignoring them.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import random
import re
import threading
import time
import uuid
from typing import Any

import httpx

from connectors.hubspot.deals import DEAL_PROPERTIES, LINE_ITEM_PROPERTIES
from connectors.hubspot.mapping import COMPANY_PROPERTIES
from connectors.hubspot.webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER, compute_signature
from connectors.sandbox_server import Fault, FaultQueue, Request, Response, Served

_COMPANY = re.compile(r"^/crm/v3/objects/companies/(\d+)$")
_DEAL = re.compile(r"^/crm/v3/objects/deals/(\d+)$")
_ASSOCIATIONS = re.compile(r"^/crm/v4/objects/deals/(\d+)/associations/(companies|line_items)$")
# HubSpot-defined association types: deal → company (primary) and deal → line item.
_ASSOCIATION_TYPE = {"companies": 5, "line_items": 19}
# The default pipeline's stages; closedwon is its won stage.
DEAL_STAGES = {"appointmentscheduled": (False, False), "contractsent": (False, False),
               "closedwon": (True, True), "closedlost": (True, False)}
_COMPARE = {"EQ": lambda a, b: a == b, "NEQ": lambda a, b: a != b, "GT": lambda a, b: a > b,
            "GTE": lambda a, b: a >= b, "LT": lambda a, b: a < b, "LTE": lambda a, b: a <= b}


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _passes(company: dict[str, Any], item: dict[str, Any]) -> bool:
    actual, wanted, operator = company["properties"].get(item["propertyName"]), item.get("value"), item["operator"]
    if operator in ("EQ", "NEQ"):
        return _COMPARE[operator](actual, None if wanted is None else str(wanted))
    number = _number(actual)
    return number is not None and _COMPARE[operator](number, _number(wanted))


def _sort_key(sort: Any) -> tuple[str, bool] | None:
    """(property, descending) from ``{"propertyName", "direction"}`` or a bare property name."""
    if isinstance(sort, str):
        return sort, False
    if isinstance(sort, dict) and sort.get("direction", "ASCENDING") in ("ASCENDING", "DESCENDING"):
        return sort.get("propertyName"), sort.get("direction") == "DESCENDING"
    return None


def _error(status: int, category: str, message: str, **extra: Any) -> Response:
    return Response(status, {"status": "error", "message": message, "category": category,
                             "correlationId": str(uuid.uuid4()), **extra})


class HubSpotSandbox(Served):
    def __init__(self, *, access_token: str = "pat-sandbox-token", client_secret: str = "hubspot-app-secret",
                 seed: int | None = None, portal_id: int = 62515, app_id: int = 54321):
        self.access_token = access_token
        self.client_secret = client_secret
        self.portal_id, self.app_id = portal_id, app_id
        self.companies: dict[str, dict[str, Any]] = {}
        self.deals: dict[str, dict[str, Any]] = {}
        self.line_items: dict[str, dict[str, Any]] = {}
        self.deal_associations: dict[str, dict[str, list[str]]] = {}
        self.events: list[dict[str, Any]] = []
        self.write_backs: list[tuple[str, str, str]] = []
        self.faults = FaultQueue()
        self._rng = random.Random(seed)
        self._event_id = self._rng.randrange(1, 10**6)
        self._last = 0
        self._lock = threading.RLock()

    def _now_ms(self) -> int:
        self._last = max(int(time.time() * 1000), self._last + 1)
        return self._last

    def _event(self, subscription: str, company_id: str, occurred: int, **extra: Any) -> dict[str, Any]:
        self._event_id += 1
        return {"eventId": self._event_id, "subscriptionId": 12345, "portalId": self.portal_id,
                "appId": self.app_id, "occurredAt": occurred, "subscriptionType": subscription,
                "attemptNumber": 0, "objectId": int(company_id), "changeSource": "CRM_UI", **extra}

    def company_create(self, name: str, *, emit: bool = True, **properties: str | None) -> dict[str, Any]:
        with self._lock:
            company_id = str(self._rng.randrange(10**9, 10**10))
            now = self._now_ms()
            props = {key: None for key in COMPANY_PROPERTIES}
            props.update(properties, name=name, hs_object_id=company_id, hs_lastmodifieddate=str(now),
                         createdate=str(now))
            iso = dt.datetime.fromtimestamp(now / 1000, tz=dt.UTC).isoformat().replace("+00:00", "Z")
            self.companies[company_id] = {"id": company_id, "properties": props, "createdAt": iso,
                                          "updatedAt": iso, "archived": False}
            if emit:
                self.events.append(self._event("company.creation", company_id, now, changeFlag="CREATED"))
            return copy.deepcopy(self.companies[company_id])

    def company_update(self, company_id: str, *, emit: bool = True, **properties: str | None) -> dict[str, Any]:
        """Change properties; one ``company.propertyChange`` event per property."""
        with self._lock:
            company = self.companies[company_id]
            now = self._now_ms()
            company["properties"].update(properties, hs_lastmodifieddate=str(now))
            company["updatedAt"] = dt.datetime.fromtimestamp(now / 1000, tz=dt.UTC).isoformat().replace("+00:00", "Z")
            if emit:
                for name, value in properties.items():
                    self.events.append(self._event("company.propertyChange", company_id, now, propertyName=name,
                                                   propertyValue=value if value is not None else ""))
            return copy.deepcopy(company)

    # ---------------------------------------------------------------- deals

    def _object(self, properties: dict[str, Any], names: list[str], now: int) -> dict[str, Any]:
        object_id = str(self._rng.randrange(10**9, 10**10))
        iso = dt.datetime.fromtimestamp(now / 1000, tz=dt.UTC).isoformat().replace("+00:00", "Z")
        props = {key: None for key in names}
        props.update({k: None if v is None else str(v) for k, v in properties.items()}, hs_object_id=object_id,
                     createdate=str(now), hs_lastmodifieddate=str(now))
        return {"id": object_id, "properties": props, "createdAt": iso, "updatedAt": iso, "archived": False}

    def deal_create(self, company_id: str, name: str, *, lines: list[dict[str, Any]] = (),
                    stage: str = "appointmentscheduled", emit: bool = True, **properties: Any) -> dict[str, Any]:
        """A deal of the default pipeline with line items (``{"hs_sku", "quantity", "hub_price_ref"}``),
        associated with its company."""
        with self._lock:
            unknown = set(properties) - set(DEAL_PROPERTIES)
            if unknown:
                raise ValueError(f"unknown deal properties {sorted(unknown)}")
            now = self._now_ms()
            closed, won = DEAL_STAGES[stage]
            deal = self._object({"closedate": dt.date.today().isoformat(), "deal_currency_code": "EUR",
                                 "pipeline": "default", **properties, "dealname": name, "dealstage": stage,
                                 "hs_is_closed": str(closed).lower(), "hs_is_closed_won": str(won).lower()},
                                DEAL_PROPERTIES, now)
            self.deals[deal["id"]] = deal
            items = []
            for line in lines:
                item = self._object({"name": line.get("hs_sku"), **line}, LINE_ITEM_PROPERTIES, now)
                self.line_items[item["id"]] = item
                items.append(item["id"])
            self.deal_associations[deal["id"]] = {"companies": [str(company_id)], "line_items": items}
            if emit:
                self.events.append(self._event("deal.creation", deal["id"], now, changeFlag="CREATED"))
            return copy.deepcopy(deal)

    def deal_update(self, deal_id: str, *, emit: bool = True, **properties: Any) -> dict[str, Any]:
        """Change properties (``dealstage`` sets the closed / won flags); one
        ``deal.propertyChange`` event per property."""
        with self._lock:
            deal = self.deals[deal_id]
            now = self._now_ms()
            values = {k: None if v is None else str(v) for k, v in properties.items()}
            if "dealstage" in values:
                closed, won = DEAL_STAGES[values["dealstage"]]
                values.update(hs_is_closed=str(closed).lower(), hs_is_closed_won=str(won).lower())
            deal["properties"].update(values, hs_lastmodifieddate=str(now))
            deal["updatedAt"] = dt.datetime.fromtimestamp(now / 1000, tz=dt.UTC).isoformat().replace("+00:00", "Z")
            if emit:
                for name, value in properties.items():
                    self.events.append(self._event("deal.propertyChange", deal_id, now, propertyName=name,
                                                   propertyValue="" if value is None else str(value)))
            return copy.deepcopy(deal)

    def deal_close_won(self, deal_id: str) -> dict[str, Any]:
        return self.deal_update(deal_id, dealstage="closedwon")

    def _deal_route(self, request: Request) -> Response | None:
        if match := _DEAL.match(request.path):
            deal = self.deals.get(match.group(1))
            if deal is None or deal["archived"]:
                return _error(404, "OBJECT_NOT_FOUND", "resource not found")
            if request.method == "GET":
                wanted = [name for value in request.query_values("properties") for name in value.split(",") if name]
                return Response(200, self._render(deal, wanted))
            if request.method == "PATCH":
                properties = (request.json() or {}).get("properties") or {}
                if unknown := [name for name in properties if name not in DEAL_PROPERTIES]:
                    return _error(400, "VALIDATION_ERROR", f'Property "{unknown[0]}" does not exist')
                for name, value in properties.items():
                    self.write_backs.append((deal["id"], name, value))
                return Response(200, self.deal_update(deal["id"], **properties))
        if request.method == "GET" and (match := _ASSOCIATIONS.match(request.path)):
            if match.group(1) not in self.deals:
                return _error(404, "OBJECT_NOT_FOUND", "resource not found")
            ids = self.deal_associations.get(match.group(1), {}).get(match.group(2), [])
            type_id = _ASSOCIATION_TYPE[match.group(2)]
            return Response(200, {"results": [{"toObjectId": int(i), "associationTypes": [
                {"category": "HUBSPOT_DEFINED", "typeId": type_id, "label": None}]} for i in ids]})
        if request.method == "POST" and request.path == "/crm/v3/objects/line_items/batch/read":
            body = request.json() or {}
            inputs = body.get("inputs") or []
            found = [self.line_items[i["id"]] for i in inputs if i.get("id") in self.line_items]
            now = dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z")
            return Response(200, {"status": "COMPLETE", "startedAt": now, "completedAt": now,
                                  "results": [self._render(item, body.get("properties")) for item in found]})
        return None

    def events_for(self, company_id: str) -> list[dict[str, Any]]:
        return [e for e in self.events if str(e["objectId"]) == str(company_id)]

    # ---------------------------------------------------------------- webhooks

    def webhook_request(self, events: list[dict[str, Any]], url: str, *, timestamp_ms: int | None = None,
                        secret: str | None = None, method: str = "POST") -> tuple[bytes, dict[str, str]]:
        body = json.dumps(events).encode()
        timestamp = str(int(time.time() * 1000) if timestamp_ms is None else timestamp_ms)
        signature = compute_signature(secret=secret or self.client_secret, method=method, uri=url, body=body,
                                      timestamp=timestamp)
        return body, {"Content-Type": "application/json", SIGNATURE_HEADER: signature, TIMESTAMP_HEADER: timestamp}

    def deliver(self, events: list[dict[str, Any]], url: str, *, client: httpx.Client | None = None) -> httpx.Response:
        body, headers = self.webhook_request(events, url)
        if client is not None:
            return client.post(url, content=body, headers=headers)
        with httpx.Client(timeout=10) as own:
            return own.post(url, content=body, headers=headers)

    # ---------------------------------------------------------------- HTTP

    def connection_config(self) -> dict[str, Any]:
        return {"base_url": self.url}

    def credentials(self) -> dict[str, Any]:
        return {"access_token": self.access_token, "webhook_secrets": [self.client_secret]}

    def rate_limit_next(self, *, times: int = 1, policy: str = "SECONDLY", retry_after: int | None = None) -> None:
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
        body = {"status": "error", "message": "You have reached your secondly limit.", "errorType": "RATE_LIMIT",
                "correlationId": str(uuid.uuid4()), "policyName": policy}
        self.faults.add(Fault(429, body, headers, times=times))

    def fail_next(self, status: int = 502, *, times: int = 1) -> None:
        self.faults.add(Fault(status, {"status": "error", "message": "Bad gateway", "category": "INTERNAL_ERROR",
                                       "correlationId": str(uuid.uuid4())}, times=times))

    def handle(self, request: Request) -> Response:
        with self._lock:
            if request.headers.get("authorization") != f"Bearer {self.access_token}":
                return _error(401, "INVALID_AUTHENTICATION", "Authentication credentials not found.")
            if (fault := self.faults.take(request)) is not None:
                return fault
            if (answer := self._deal_route(request)) is not None:
                return answer
            if request.method == "POST" and request.path == "/crm/v3/objects/companies/search":
                return self._search(request.json() or {})
            if match := _COMPANY.match(request.path):
                company = self.companies.get(match.group(1))
                if company is None or company["archived"]:
                    return _error(404, "OBJECT_NOT_FOUND", "resource not found")
                if request.method == "GET":
                    wanted = [name for value in request.query_values("properties") for name in value.split(",") if name]
                    return Response(200, self._render(company, wanted))
                if request.method == "PATCH":
                    return self._patch(company, (request.json() or {}).get("properties") or {})
            return _error(404, "OBJECT_NOT_FOUND", "resource not found")

    @staticmethod
    def _render(company: dict[str, Any], wanted: list[str] | None) -> dict[str, Any]:
        shown = copy.deepcopy(company)
        if wanted:
            shown["properties"] = {key: company["properties"][key] for key in wanted if key in company["properties"]}
        return shown

    def _patch(self, company: dict[str, Any], properties: dict[str, Any]) -> Response:
        unknown = [name for name in properties if name not in COMPANY_PROPERTIES]
        if unknown:
            return _error(400, "VALIDATION_ERROR", f'Property "{unknown[0]}" does not exist')
        for name, value in properties.items():
            self.write_backs.append((company["id"], name, value))
        return Response(200, self.company_update(company["id"], **{k: str(v) for k, v in properties.items()}))

    def _search(self, body: dict[str, Any]) -> Response:
        groups = [group.get("filters") or [] for group in body.get("filterGroups") or []]
        for item in (item for filters in groups for item in filters):
            operator, numeric = item.get("operator"), _number(item.get("value")) is not None
            if operator not in _COMPARE or not item.get("propertyName") or (operator[0] in "GL" and not numeric):
                return _error(400, "VALIDATION_ERROR", f"The sandbox does not model the filter {item}")
        sorts = [_sort_key(sort) for sort in body.get("sorts") or [{"propertyName": "hs_lastmodifieddate"}]]
        if len(sorts) != 1 or sorts[0] is None:
            return _error(400, "VALIDATION_ERROR", f"The sandbox sorts by one property, not {body.get('sorts')}")
        (by, descending), = sorts
        found = [c for c in self.companies.values() if not c["archived"]
                 and (not groups or any(all(_passes(c, item) for item in filters) for filters in groups))]
        found.sort(key=lambda c: (_number(c["properties"].get(by)) or 0, str(c["properties"].get(by) or "")),
                   reverse=descending)
        offset, limit = int(body.get("after") or 0), int(body.get("limit") or 10)
        page = found[offset: offset + limit]
        result: dict[str, Any] = {"total": len(found),
                                  "results": [self._render(c, body.get("properties")) for c in page]}
        if offset + limit < len(found):
            result["paging"] = {"next": {"after": str(offset + limit)}}
        return Response(200, result)
