"""A local stand-in for Stripe's customer API, served over HTTP for the worker.

Follows Stripe's documents: form-encoded POST /v1/customers and /v1/customers/{id},
GET /v1/customers/{id}, ``Authorization: Bearer sk_test_...``, errors as
``{"error": {"type", "code", "message"}}``, and ``Idempotency-Key``: the first
answer is stored and replayed; the same key with other parameters is an
``idempotency_error`` (400). Objects are rendered by ``StripeSandbox.customer``.
"""

from __future__ import annotations

import re
import threading
from typing import Any

from connectors.sandbox_server import Fault, FaultQueue, Request, Response, Served
from connectors.stripe.sandbox import StripeSandbox

_CUSTOMER = re.compile(r"^/v1/customers/(cus_\w+)$")


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


def _error(status: int, kind: str, message: str, code: str | None = None) -> Response:
    return Response(status, {"error": {"type": kind, "code": code, "message": message}})


class StripeApiSandbox(Served):
    def __init__(self, *, api_key: str = "sk_test_sandbox", seed: int | None = None):
        self.api_key = api_key
        self.objects = StripeSandbox("whsec_unused", seed=seed or 0)
        self.customers: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, str, str | None]] = []
        self.faults = FaultQueue()
        self._idempotency: dict[str, tuple[str, dict[str, Any], Response]] = {}
        self._lock = threading.RLock()

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
            if request.headers.get("authorization") != f"Bearer {self.api_key}":
                return _error(401, "invalid_request_error", "Invalid API Key provided")
            if (fault := self.faults.take(request)) is not None:
                return fault  # like a 500 Stripe never stored: not replayed under the key
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
        if request.path == "/v1/customers" and request.method == "POST":
            address = params.get("address") or {}
            customer = self.objects.customer(params.get("name"), params.get("email"), country=address.get("country"),
                                             line1=address.get("line1"), city=address.get("city"),
                                             postal_code=address.get("postal_code"), state=address.get("state"))
            customer["metadata"] = params.get("metadata") or {}
            self.customers[customer["id"]] = customer
            return Response(200, customer)
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
                    customer["metadata"] = {**customer["metadata"], **params["metadata"]}
            return Response(200, customer)
        return _error(404, "invalid_request_error", f"Unrecognized request URL ({request.method}: {request.path})")
