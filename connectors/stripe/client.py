"""Stripe's REST API (form-encoded requests, JSON answers) over ``connectors.http``, and the
one place Stripe API errors become ``connectors.errors``.

Every POST carries ``Idempotency-Key``: Stripe stores the first answer under the
key for at least 24 h and replays it, so a retry after a timeout cannot create a
second customer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from connectors import http
from connectors.errors import ConnectorError, Permanent, Retryable

API_BASE = "https://api.stripe.com"
# The v2 meter event stream has its own host, authenticated by a meter event session's token.
METER_EVENTS_BASE = "https://meter-events.stripe.com"
# v2 endpoints need an explicit API version; meter event sessions and the stream exist since acacia.
API_VERSION = "2025-03-31.basil"


class MeterSessionExpired(Retryable):
    """401 ``billing_meter_event_session_expired``: make a new session and send again."""


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


# Stripe's documented statuses (400, 401, 402, 403, 404, 409, 424, 429, 5xx) fit the
# default table; its error body and Stripe-Should-Retry refine it below.
STATUS_TABLE = http.status_table()
# A 429 without Retry-After waits at least this long (the hub's backoff grows from there).
RATE_LIMIT_WAIT = 1.0


def error_from_response(response: httpx.Response, *, what: str) -> ConnectorError:
    status = response.status_code
    try:
        error = response.json().get("error") or {}
    except (ValueError, AttributeError):
        error = {}
    kind, code = error.get("type", ""), error.get("code", "")
    text = f"Stripe {what}: HTTP {status} {kind} {code} {str(error.get('message', response.text))[:300]}"
    text = " ".join(text.split())
    cls: type[ConnectorError] | None = None
    if code == "billing_meter_event_session_expired":
        return MeterSessionExpired(text)
    if status in (401, 403, 429):
        pass  # the table decides: a person must act, or wait
    elif response.headers.get("Stripe-Should-Retry") == "true":
        cls = Retryable  # Stripe's own verdict when present
    elif status == 409 and kind == "idempotency_error":
        cls = Permanent  # the key was used with other parameters: every retry is refused
    return http.status_error(response, text, table=STATUS_TABLE, cls=cls, rate_limit_wait=RATE_LIMIT_WAIT)


class StripeApiClient:
    def __init__(self, api_key: str, *, base_url: str = API_BASE, timeout: float = 20.0,
                 transport: httpx.BaseTransport | None = None, meter_events_base: str = METER_EVENTS_BASE,
                 api_version: str = API_VERSION):
        self._http = http.client(base_url=base_url, headers={"Authorization": f"Bearer {api_key}"},
                                 timeout=timeout, transport=transport)
        self._events_http = http.client(base_url=meter_events_base, timeout=timeout, transport=transport)
        self._api_version = api_version

    def close(self) -> None:
        self._http.close()
        self._events_http.close()

    def request_v2(self, path: str, *, body: Mapping[str, Any], idempotency_key: str | None = None,
                   session_token: str | None = None, what: str) -> dict[str, Any]:
        """One v2 POST (JSON body, ``Stripe-Version``). With ``session_token`` it goes to the
        meter events host, authenticated by that token instead of the secret key."""
        headers = {"Stripe-Version": self._api_version}
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key[:255]
        target = self._http
        if session_token is not None:
            target, headers["Authorization"] = self._events_http, f"Bearer {session_token}"
        response = http.request(target, "POST", path, vendor="Stripe", what=what, error_for=error_from_response,
                                json=dict(body), headers=headers)
        return response.json() if response.content else {}

    def request(self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
                idempotency_key: str | None = None, what: str) -> dict[str, Any]:
        """One API call; raises ``connectors.errors``. A POST under an Idempotency-Key
        is safe to repeat, yet a timeout or 5xx still leaves ``outcome_unknown`` set:
        the hub cannot tell whether it created the object (``connectors.http``)."""
        encoded = form_encode(params or {})
        if method == "GET":
            kwargs: dict[str, Any] = {"params": encoded}
        else:
            headers = {"Idempotency-Key": idempotency_key[:255]} if idempotency_key else {}
            kwargs = {"data": dict(encoded), "headers": headers}
        response = http.request(self._http, method, path, vendor="Stripe", what=what,
                                error_for=error_from_response, **kwargs)
        return response.json()
