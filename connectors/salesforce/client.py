"""Salesforce REST over ``connectors.http``, and the one place Salesforce errors become
``connectors.errors``.

Salesforce answers errors as a JSON array ``[{"message": ..., "errorCode": ...}]``;
the error code, not only the status, decides the class (``REQUEST_LIMIT_EXCEEDED``
arrives as 403, as does a missing permission). The hub does not run the OAuth flow:
the connection holds an access token, and an expired one (``INVALID_SESSION_ID``)
needs a person (NeedsConfiguration).
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterator, Mapping
from typing import Any

import httpx

from connectors import http
from connectors.errors import ConnectorError, NeedsConfiguration, Permanent, RateLimited, Retryable
from connectors.url_policy import same_origin

DEFAULT_API_VERSION = "v60.0"
# Salesforce does not send Retry-After with REQUEST_LIMIT_EXCEEDED; its limits are
# rolling 24 h counters or concurrency caps, so a minute is a reasonable first wait.
LIMIT_RETRY_SECONDS = 60.0

# errorCode -> class, checked before the HTTP status.
_CODE_CLASSES: dict[str, type[ConnectorError]] = {
    "REQUEST_LIMIT_EXCEEDED": RateLimited,
    "INVALID_SESSION_ID": NeedsConfiguration,
    "INVALID_AUTH_HEADER": NeedsConfiguration,
    "INSUFFICIENT_ACCESS": NeedsConfiguration,
    "INSUFFICIENT_ACCESS_OR_READONLY": NeedsConfiguration,
    "API_DISABLED_FOR_ORG": NeedsConfiguration,
    "INVALID_FIELD": NeedsConfiguration,  # e.g. the ERP id custom field is not deployed
    "INVALID_TYPE": NeedsConfiguration,
    "MALFORMED_QUERY": NeedsConfiguration,
    "UNABLE_TO_LOCK_ROW": Retryable,
    "SERVER_UNAVAILABLE": Retryable,
    "NOT_FOUND": Permanent,
    "ENTITY_IS_DELETED": Permanent,
}
# When the errorCode is not in the table above, the status decides (the default table).
STATUS_TABLE = http.status_table()


def _errors(response: httpx.Response) -> list[Mapping[str, Any]]:
    try:
        body = response.json()
    except ValueError:
        return []
    if isinstance(body, Mapping):
        body = [body]
    return [item for item in body if isinstance(item, Mapping)] if isinstance(body, list) else []


def error_from_response(response: httpx.Response, *, what: str) -> ConnectorError:
    """Map a non-2xx Salesforce answer to the hub's taxonomy."""
    status = response.status_code
    errors = _errors(response)
    code = str(errors[0].get("errorCode", "")) if errors else ""
    message = "; ".join(str(item.get("message", "")) for item in errors)[:300] or response.text[:300]
    text = f"Salesforce {what}: HTTP {status} {code} {message}".rstrip()
    return http.status_error(response, text, table=STATUS_TABLE, cls=_CODE_CLASSES.get(code),
                             rate_limit_wait=LIMIT_RETRY_SECONDS)


class SalesforceClient:
    """HTTP only: SOQL queries with pagination, one-record reads and PATCH updates."""

    def __init__(
        self,
        instance_url: str,
        access_token: str,
        *,
        api_version: str = DEFAULT_API_VERSION,
        timeout: float = 20.0,
        transport: httpx.BaseTransport | None = None,
    ):
        self.origin = instance_url.rstrip("/")
        self.base = f"{self.origin}/services/data/{api_version}"
        self._http = http.client(
            base_url=self.origin,
            headers={"Authorization": f"Bearer {access_token}", "Accept": "application/json"},
            timeout=timeout,
            transport=transport,
        )

    def close(self) -> None:
        self._http.close()

    def _request(self, method: str, url: str, *, what: str, **kwargs: Any) -> httpx.Response:
        # GET reads; PATCH writes, so a timeout or 5xx leaves its outcome unknown.
        return http.request(self._http, method, url, vendor="Salesforce", what=what,
                            error_for=error_from_response, **kwargs)

    def query(self, soql: str) -> Iterator[dict[str, Any]]:
        """Every record of a SOQL query, following ``nextRecordsUrl`` page by page.

        Salesforce sends ``nextRecordsUrl`` as a path on the instance; the client
        carries the bearer token, so an absolute URL to any other origin is refused
        (Permanent) instead of followed."""
        url: str | None = f"{self.base}/query?{urllib.parse.urlencode({'q': soql})}"
        while url:
            page = self._request("GET", url, what="query").json()
            yield from page.get("records", [])
            url = None if page.get("done", True) else self._next_page(page.get("nextRecordsUrl"))

    def _next_page(self, link: Any) -> str:
        if not isinstance(link, str) or not link:
            raise Permanent("Salesforce query: a page that is not done has no nextRecordsUrl")
        if link.startswith("/") and not link.startswith("//"):
            return f"{self.origin}{link}"
        if same_origin(link, self.origin):
            return link
        raise Permanent(f"Salesforce query: nextRecordsUrl leaves the instance ({httpx.URL(link).host!r}); "
                        "the access token is only sent to the connection's own host")

    def get(self, sobject: str, record_id: str, fields: list[str]) -> dict[str, Any] | None:
        """One record, or None when Salesforce says it does not exist (or is deleted)."""
        try:
            response = self._request(
                "GET", f"{self.base}/sobjects/{sobject}/{record_id}", params={"fields": ",".join(fields)},
                what=f"read {sobject} {record_id}",
            )
        except Permanent as exc:
            if exc.http_status == 404:
                return None
            raise
        return response.json()

    def update(self, sobject: str, record_id: str, values: Mapping[str, Any]) -> None:
        """PATCH the fields (Salesforce answers 204 No Content)."""
        self._request("PATCH", f"{self.base}/sobjects/{sobject}/{record_id}", json=dict(values),
                      what=f"update {sobject} {record_id}")
