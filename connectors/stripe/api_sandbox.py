"""A local stand-in for Stripe's customer API, served over HTTP for the worker.

Follows Stripe's documents: form-encoded POST /v1/customers and /v1/customers/{id},
GET /v1/customers/{id}, ``Authorization: Bearer sk_test_...``, errors as
``{"error": {"type", "code", "message", "param"}}``, and ``Idempotency-Key``: the
first answer is stored and replayed; the same key with other parameters is an
``idempotency_error`` (400). Objects are rendered by ``StripeSandbox.customer``.

Reads: GET /v1/customers (newest first, ``limit``, ``starting_after``, ``email``,
case-sensitive) and GET /v1/customers/search (``query`` of ``email:``, ``name:``
and ``metadata['key']:`` clauses joined by spaces or AND, ``limit``, ``page``).
Real Stripe search lags writes by up to a minute; the sandbox does not. Parameters
the sandbox does not model are refused as unknown, so a test cannot rely on them.

Products, prices and the subscriptions list: ``connectors/stripe/api_catalog.py``
(``self.catalog``). Subscriptions, their items, proration and invoices:
``connectors/stripe/api_subscriptions.py`` (``self.billing``). Billing meters, meter events (v1 and the v2 stream) and meter event summaries:
``connectors/stripe/meters_sandbox.py`` (``self.meters``).
"""

from __future__ import annotations

import re
import threading
from typing import Any

from connectors.sandbox_server import Fault, FaultQueue, Request, Response, Served
from connectors.stripe.api_catalog import StripeCatalog
from connectors.stripe.api_subscriptions import StripeSubscriptions
from connectors.stripe.meters_sandbox import MeterStore
from connectors.stripe.sandbox import StripeSandbox

_CUSTOMER = re.compile(r"^/v1/customers/(cus_\w+)$")
_CLAUSE = re.compile(r"""(?P<field>email|name|metadata\[(?P<kq>["'])(?P<key>.+?)(?P=kq)\]):"""
                     r"""(?P<vq>["'])(?P<value>.*?)(?P=vq)""")
_AND = re.compile(r"AND\s+", re.I)
_LIST_PARAMS = {"limit", "starting_after", "email"}
_SEARCH_PARAMS = {"query", "limit", "page"}


def form_decode(pairs: dict[str, str]) -> dict[str, Any]:
    """``metadata[hub_id]=7`` → ``{"metadata": {"hub_id": "7"}}``."""
    result: dict[str, Any] = {}
    for key, value in pairs.items():
        parts = re.findall(r"[^\[\]]+", key)
        node = result
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return result


def _error(status: int, kind: str, message: str, code: str | None = None, param: str | None = None) -> Response:
    error = {"type": kind, "code": code, "message": message}
    if param is not None:
        error["param"] = param
    return Response(status, {"error": error})


def _invalid(param: str, message: str, code: str = "parameter_invalid") -> Response:
    return _error(400, "invalid_request_error", message, code, param)


def search_clauses(query: str) -> list[tuple[str, str | None, str]] | None:
    """``email:'a@b' AND metadata['hub_id']:'7'`` → ``[("email", None, "a@b"), ("metadata", "hub_id", "7")]``;
    None for anything else (OR, negation, ``~``, numbers: Stripe has them, the sandbox does not)."""
    clauses, rest = [], query.strip()
    while rest:
        match = _CLAUSE.match(rest)
        if match is None:
            return None
        field = "metadata" if match["key"] else match["field"]
        clauses.append((field, match["key"], match["value"]))
        rest = rest[match.end():].lstrip()
        if joined := _AND.match(rest):
            rest = rest[joined.end():]
            if not rest:
                return None
    return clauses or None


def _matches(customer: dict[str, Any], clauses: list[tuple[str, str | None, str]]) -> bool:
    return all((customer["metadata"].get(key) if field == "metadata" else customer.get(field)) == value
               for field, key, value in clauses)


class StripeApiSandbox(Served):
    def __init__(self, *, api_key: str = "sk_test_sandbox", seed: int | None = None):
        self.api_key = api_key
        self.objects = StripeSandbox("whsec_unused", seed=seed or 0)
        self.customers: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, str, str | None]] = []
        self.faults = FaultQueue()
        self._idempotency: dict[str, tuple[str, dict[str, Any], Response]] = {}
        self._lock = threading.RLock()
        self.meters = MeterStore(self.customers)
        self.catalog = StripeCatalog(self.objects, meters=self.meters.meters)  # products, prices (api_catalog.py)
        self.billing = StripeSubscriptions(self)  # subscriptions, proration, their invoices (api_subscriptions.py)

    def connection_config(self) -> dict[str, Any]:
        return {"api_base": self.url}

    def fail_next(self, status: int = 500, *, times: int = 1, retry_after: int | None = None) -> None:
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
        kind = "api_error" if status >= 500 else "invalid_request_error"
        self.faults.add(Fault(status, {"error": {"type": kind, "message": "injected fault"}}, headers, times=times))

    def customers_with_hub_id(self, hub_id: int | str) -> list[dict[str, Any]]:
        return [c for c in self.customers.values() if c["metadata"].get("hub_id") == str(hub_id)]

    def handle(self, request: Request) -> Response:
        with self._lock:
            key = request.headers.get("idempotency-key")
            self.requests.append((request.method, request.path, key))
            if request.path == "/v2/billing/meter_event_stream":
                # Authenticated by a meter event session's token, not the secret key.
                token = request.headers.get("authorization", "").removeprefix("Bearer ")
                valid = self.meters.session_token_valid(token)
                if valid is False:
                    return _error(401, "temporary_session_expired", "The meter event session has expired.",
                                  "billing_meter_event_session_expired")
                if valid is None:
                    return _error(401, "invalid_request_error", "Invalid meter event session token provided")
            elif request.headers.get("authorization") != f"Bearer {self.api_key}":
                return _error(401, "invalid_request_error", "Invalid API Key provided")
            if (fault := self.faults.take(request)) is not None:
                return fault  # like a 500 Stripe never stored: not replayed under the key
            if request.method == "POST" and request.path.startswith("/v2/"):
                params = request.json() or {}  # v2 endpoints take JSON bodies
            else:
                params = form_decode(request.form()) if request.method == "POST" else {}
            if request.method == "POST" and key:
                stored = self._idempotency.get(key)
                if stored is not None:
                    if stored[0] != request.path or stored[1] != params:
                        return _error(400, "idempotency_error",
                                      "Keys for idempotent requests can only be used with the same parameters "
                                      "they were first used with.")
                    return stored[2]
            response = self._route(request, params)
            if request.method == "POST" and key:
                self._idempotency[key] = (request.path, params, response)
            return response

    def _route(self, request: Request, params: dict[str, Any]) -> Response:
        if self.meters.handles(request.path):
            return self.meters.route(request, params)
        if request.path == "/v1/customers" and request.method == "POST":
            address = params.get("address") or {}
            customer = self.objects.customer(params.get("name"), params.get("email"), country=address.get("country"),
                                             line1=address.get("line1"), city=address.get("city"),
                                             postal_code=address.get("postal_code"), state=address.get("state"))
            customer["metadata"] = params.get("metadata") or {}
            self.customers[customer["id"]] = customer
            return Response(200, customer)
        if request.path == "/v1/customers" and request.method == "GET":
            return self._list(request.query)
        if request.path == "/v1/customers/search" and request.method == "GET":
            return self._search(request.query)
        if match := _CUSTOMER.match(request.path):
            customer = self.customers.get(match.group(1))
            if customer is None:
                return _error(404, "invalid_request_error", f"No such customer: '{match.group(1)}'",
                              "resource_missing")
            if request.method == "POST":
                for field in ("name", "email"):
                    if field in params:
                        customer[field] = params[field] or None
                if "address" in params:
                    customer["address"] = {**(customer.get("address") or {}), **params["address"]}
                if "metadata" in params:
                    # An empty value unsets the key, as Stripe documents.
                    merged = {**customer["metadata"], **params["metadata"]}
                    customer["metadata"] = {k: v for k, v in merged.items() if v != ""}
            return Response(200, customer)
        if (answer := self.billing.route(request, params)) is not None:
            return answer
        if (answer := self.catalog.route(request, params)) is not None:
            return answer
        return _error(404, "invalid_request_error", f"Unrecognized request URL ({request.method}: {request.path})")

    def _newest_first(self) -> list[dict[str, Any]]:
        return list(reversed(self.customers.values()))

    @staticmethod
    def _check(query: dict[str, str], known: set[str]) -> tuple[int, Response | None]:
        """(limit, None), or (0, the 400 answer) for an unknown parameter or a bad limit."""
        if unknown := sorted(set(query) - known):
            return 0, _invalid(unknown[0], f"Received unknown parameter: {unknown[0]}", "parameter_unknown")
        limit = query.get("limit", "10")
        if not limit.isdigit() or not 1 <= int(limit) <= 100:
            return 0, _invalid("limit", f"Invalid limit: {limit!r}; must be an integer from 1 to 100")
        return int(limit), None

    def _list(self, query: dict[str, str]) -> Response:
        limit, refused = self._check(query, _LIST_PARAMS)
        if refused:
            return refused
        found = self._newest_first()
        if after := query.get("starting_after"):
            ids = [c["id"] for c in found]
            if after not in ids:
                return _error(400, "invalid_request_error", f"No such customer: '{after}'", "resource_missing",
                              "starting_after")
            found = found[ids.index(after) + 1:]
        found = [c for c in found if "email" not in query or c["email"] == query["email"]]
        return Response(200, {"object": "list", "url": "/v1/customers", "has_more": len(found) > limit,
                              "data": found[:limit]})

    def _search(self, query: dict[str, str]) -> Response:
        limit, refused = self._check(query, _SEARCH_PARAMS)
        if refused:
            return refused
        clauses = search_clauses(query.get("query", ""))
        if clauses is None:
            return _invalid("query", f"The sandbox cannot run this search query: {query.get('query', '')!r}")
        page = query.get("page", "page_0")
        if not re.fullmatch(r"page_\d+", page):
            return _invalid("page", f"Invalid page: {page!r}")
        offset = int(page[5:])
        found = [c for c in self._newest_first() if _matches(c, clauses)]
        more = len(found) > offset + limit
        return Response(200, {"object": "search_result", "url": "/v1/customers/search", "has_more": more,
                              "next_page": f"page_{offset + limit}" if more else None,
                              "data": found[offset: offset + limit]})
