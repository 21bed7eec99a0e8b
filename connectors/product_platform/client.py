"""A company's own catalog service: paged JSON over HTTP, read through ``connectors.http``.

Paging (``config["paging"]``), all optional:

* ``style``: ``cursor`` (default) — the answer names the next cursor
  (``next_cursor`` expression) and the request sends it as ``cursor_param``; or
  ``page`` — pages numbered from 1 (``page_param``), the last when the answer's
  ``total_pages`` expression is reached or a page comes back short/empty.
* ``items``: JMESPath of the item list in an answer (default ``data``).
* ``limit_param`` / ``limit``: page size (``limit`` / 100); ``updated_since_param``
  (``updated_since``, ISO 8601).

Auth (``config["auth"]``): ``bearer`` (``Authorization: Bearer <token>``) or
``api_key`` (``<header>: <api_key>``, header ``X-Api-Key`` by default).

A page the platform cannot serve now (5xx, 429, a dropped connection) is retried a
few times here, after its ``Retry-After`` when given; a page that is not JSON is a
Permanent error naming the page.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import httpx
import jmespath

from connectors import http
from connectors.errors import NeedsConfiguration, Permanent, Retryable

VENDOR = "Product platform"
DEFAULT_PAGING = {
    "style": "cursor", "path": "/v1/catalog/items", "items": "data", "next_cursor": "next_cursor",
    "cursor_param": "cursor", "page_param": "page", "total_pages": "total_pages", "limit_param": "limit",
    "limit": 100, "updated_since_param": "updated_since",
}


class PlatformClient:
    def __init__(self, base_url: str, *, auth: Mapping[str, Any], credentials: Mapping[str, Any],
                 paging: Mapping[str, Any] | None = None, timeout: float = 20.0, page_retries: int = 3,
                 max_retry_wait: float = 30.0, transport: httpx.BaseTransport | None = None,
                 sleep: Callable[[float], None] | None = None):
        self.paging = {**DEFAULT_PAGING, **(paging or {})}
        if self.paging["style"] not in ("cursor", "page"):
            raise NeedsConfiguration(f"paging.style must be cursor or page, not {self.paging['style']!r}")
        self._items = jmespath.compile(self.paging["items"])
        self._next = jmespath.compile(self.paging["next_cursor"])
        self._total = jmespath.compile(self.paging["total_pages"])
        self._http = http.client(base_url=base_url, headers=_auth_headers(auth, credentials), timeout=timeout,
                                 transport=transport)
        self.page_retries, self.max_retry_wait, self._sleep = page_retries, max_retry_wait, sleep

    def close(self) -> None:
        self._http.close()

    def get_page(self, params: Mapping[str, Any], *, number: int) -> dict[str, Any]:
        """One page as JSON, retried on transient failures (Retry-After honoured up to
        ``max_retry_wait``); the last failure is raised."""
        attempt = 0
        while True:
            attempt += 1
            try:
                response = http.request(self._http, "GET", self.paging["path"], vendor=VENDOR,
                                        what=f"catalog page {number}", params=dict(params))
                break
            except Retryable as exc:
                if attempt > self.page_retries:
                    raise
                wait = exc.retry_after if exc.retry_after is not None else min(2.0 ** attempt, 10.0)
                (self._sleep or time.sleep)(min(wait, self.max_retry_wait))
        try:
            body = response.json()
        except ValueError:
            raise Permanent(f"{VENDOR} catalog page {number} is not JSON "
                            f"({response.headers.get('content-type', 'no content type')}): "
                            f"{http.excerpt(response.text, 120)}", http_status=response.status_code) from None
        if not isinstance(body, dict):
            raise Permanent(f"{VENDOR} catalog page {number} is not a JSON object: {http.excerpt(body, 120)}")
        return body

    def pages(self, *, updated_since: dt.datetime | None) -> Iterator[tuple[int, list[Any]]]:
        """(page number, raw items) for every page, in the platform's order."""
        params: dict[str, Any] = {self.paging["limit_param"]: self.paging["limit"]}
        if updated_since is not None:
            params[self.paging["updated_since_param"]] = updated_since.astimezone(dt.UTC).isoformat()
        number = 1
        while True:
            if self.paging["style"] == "page":
                params[self.paging["page_param"]] = number
            body = self.get_page(params, number=number)
            items = self._items.search(body)
            if items is None:
                items = []
            if not isinstance(items, list):
                raise Permanent(f"{VENDOR} catalog page {number}: '{self.paging['items']}' is not a list")
            yield number, items
            if self.paging["style"] == "cursor":
                cursor = self._next.search(body)
                if not cursor:
                    return
                params[self.paging["cursor_param"]] = cursor
            else:
                total = self._total.search(body)
                if not items or (isinstance(total, int) and number >= total) or (
                        total is None and len(items) < int(self.paging["limit"])):
                    return
            number += 1


def _auth_headers(auth: Mapping[str, Any], credentials: Mapping[str, Any]) -> dict[str, str]:
    kind = (auth or {}).get("type", "bearer")
    if kind == "bearer":
        if not credentials.get("token"):
            raise NeedsConfiguration("product platform connection uses bearer auth but has no credentials.token")
        return {"Authorization": f"Bearer {credentials['token']}", "Accept": "application/json"}
    if kind == "api_key":
        if not credentials.get("api_key"):
            raise NeedsConfiguration("product platform connection uses api_key auth but has no credentials.api_key")
        return {auth.get("header", "X-Api-Key"): credentials["api_key"], "Accept": "application/json"}
    raise NeedsConfiguration(f"product platform auth.type must be bearer or api_key, not {kind!r}")
