"""Stripe's REST API (form-encoded requests, JSON answers) over plain httpx, and the
one place Stripe API errors become ``connectors.errors``.

Every POST carries ``Idempotency-Key``: Stripe stores the first answer under the
key for at least 24 h and replays it, so a retry after a timeout cannot create a
second customer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from connectors.errors import ConnectorError, NeedsConfiguration, Permanent, RateLimited, Retryable
from connectors.tryton.client import parse_retry_after

API_BASE = "https://api.stripe.com"


def form_encode(params: Mapping[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """Stripe's nested form encoding: ``{"metadata": {"hub_id": "7"}}`` → ``metadata[hub_id]=7``.
    None values are left out; an empty string clears a field, as Stripe documents."""
    pairs: list[tuple[str, str]] = []
    for key, value in params.items():
        name = f"{prefix}[{key}]" if prefix else str(key)
        if value is None:
            continue
        if isinstance(value, Mapping):
            pairs.extend(form_encode(value, name))
        elif isinstance(value, list | tuple):
            for index, item in enumerate(value):
                pairs.extend(form_encode({str(index): item}, name))
        elif isinstance(value, bool):
            pairs.append((name, "true" if value else "false"))
        else:
            pairs.append((name, str(value)))
    return pairs


def error_from_response(response: httpx.Response, *, what: str) -> ConnectorError:
    status = response.status_code
    try:
        error = response.json().get("error") or {}
    except (ValueError, AttributeError):
        error = {}
    kind, code = error.get("type", ""), error.get("code", "")
    text = f"Stripe {what}: HTTP {status} {kind} {code} {str(error.get('message', response.text))[:300]}"
    text = " ".join(text.split())
    retry_after = parse_retry_after(response.headers.get("Retry-After"))
    if status == 429:
        return RateLimited(text, retry_after=retry_after or 1.0, http_status=status)
    if status in (401, 403):
        return NeedsConfiguration(text, http_status=status)
    # Stripe-Should-Retry is Stripe's own verdict when present.
    should_retry = response.headers.get("Stripe-Should-Retry")
    if should_retry == "true" or status >= 500 or (status == 409 and kind != "idempotency_error"):
        return Retryable(text, retry_after=retry_after, http_status=status, outcome_unknown=status >= 500)
    return Permanent(text, http_status=status)


class StripeApiClient:
    def __init__(self, api_key: str, *, base_url: str = API_BASE, timeout: float = 20.0,
                 transport: httpx.BaseTransport | None = None):
        self._http = httpx.Client(base_url=base_url.rstrip("/"), headers={"Authorization": f"Bearer {api_key}"},
                                  timeout=httpx.Timeout(timeout, connect=5.0), transport=transport)

    def close(self) -> None:
        self._http.close()

    def request(self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
                idempotency_key: str | None = None, what: str) -> dict[str, Any]:
        headers = {"Idempotency-Key": idempotency_key[:255]} if idempotency_key else {}
        try:
            if method == "GET":
                response = self._http.get(path, params=form_encode(params or {}))
            else:
                response = self._http.request(method, path, data=dict(form_encode(params or {})), headers=headers)
        except httpx.TimeoutException as exc:
            raise Retryable(f"Stripe {what}: timed out ({exc})", outcome_unknown=method != "GET") from None
        except httpx.TransportError as exc:
            raise Retryable(f"Stripe {what}: {type(exc).__name__}: {exc}") from None
        if response.status_code >= 300:
            raise error_from_response(response, what=what)
        return response.json()
