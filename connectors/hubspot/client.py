"""HubSpot CRM v3 over ``connectors.http``, and the one place HubSpot errors become
``connectors.errors``.

Errors come as ``{"status": "error", "message", "category", "errorType"?,
"correlationId", "policyName"?}``; 429 carries ``policyName`` (SECONDLY,
TEN_SECONDLY_ROLLING, DAILY), which sets the wait when there is no Retry-After.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import httpx

from connectors import http
from connectors.errors import ConnectorError, NeedsConfiguration, Permanent

API_BASE = "https://api.hubapi.com"
_POLICY_WAIT = {"SECONDLY": 1.0, "TEN_SECONDLY_ROLLING": 10.0, "DAILY": 3600.0}
_CONFIG_CATEGORIES = {"MISSING_SCOPES", "INVALID_AUTHENTICATION", "PROPERTY_DOESNT_EXIST"}
# HubSpot's statuses fit the default table; the error category refines it.
STATUS_TABLE = http.status_table()


def error_from_response(response: httpx.Response, *, what: str) -> ConnectorError:
    status = response.status_code
    try:
        body = response.json()
    except ValueError:
        body = {}
    body = body if isinstance(body, Mapping) else {}
    category = str(body.get("category") or body.get("errorType") or "")
    text = f"HubSpot {what}: HTTP {status} {category} {str(body.get('message', response.text))[:300]}".rstrip()
    if status == 429:
        # Without a Retry-After, the policy that was hit says how long its window is.
        wait = _POLICY_WAIT.get(str(body.get("policyName")), 10.0)
        return http.status_error(response, text, table=STATUS_TABLE, rate_limit_wait=wait)
    cls = NeedsConfiguration if category in _CONFIG_CATEGORIES else None
    return http.status_error(response, text, table=STATUS_TABLE, cls=cls)


class HubSpotClient:
    def __init__(self, access_token: str, *, base_url: str = API_BASE, timeout: float = 20.0,
                 transport: httpx.BaseTransport | None = None):
        self._http = http.client(base_url=base_url, headers={"Authorization": f"Bearer {access_token}"},
                                 timeout=timeout, transport=transport)

    def close(self) -> None:
        self._http.close()

    def _request(self, method: str, path: str, *, what: str, idempotent: bool | None = None,
                 **kwargs: Any) -> httpx.Response:
        return http.request(self._http, method, path, vendor="HubSpot", what=what,
                            error_for=error_from_response, idempotent=idempotent, **kwargs)

    def get_company(self, company_id: str, properties: list[str]) -> dict[str, Any] | None:
        try:
            return self._request("GET", f"/crm/v3/objects/companies/{company_id}",
                                 params={"properties": ",".join(properties)}, what=f"read company {company_id}").json()
        except Permanent as exc:
            if exc.http_status == 404:
                return None
            raise

    def update_company(self, company_id: str, properties: Mapping[str, str]) -> dict[str, Any]:
        return self._request("PATCH", f"/crm/v3/objects/companies/{company_id}",
                             json={"properties": dict(properties)}, what=f"update company {company_id}").json()

    def search_modified_since(self, since_ms: int | None, properties: list[str]) -> Iterator[dict[str, Any]]:
        """Companies by ``hs_lastmodifieddate`` ascending, following ``paging.next.after``."""
        after: str | None = None
        while True:
            body: dict[str, Any] = {
                "sorts": [{"propertyName": "hs_lastmodifieddate", "direction": "ASCENDING"}],
                "properties": properties, "limit": 100,
            }
            if since_ms is not None:
                body["filterGroups"] = [{"filters": [
                    {"propertyName": "hs_lastmodifieddate", "operator": "GTE", "value": str(since_ms)}]}]
            if after:
                body["after"] = after
            # A search is a POST that only reads: repeating it cannot change anything.
            page = self._request("POST", "/crm/v3/objects/companies/search", json=body, what="search",
                                 idempotent=True).json()
            yield from page.get("results", [])
            after = ((page.get("paging") or {}).get("next") or {}).get("after")
            if not after:
                return

    # ------------------------------------------------------------ deals and line items

    def get_object(self, object_type: str, object_id: str, properties: list[str]) -> dict[str, Any] | None:
        try:
            return self._request("GET", f"/crm/v3/objects/{object_type}/{object_id}",
                                 params={"properties": ",".join(properties)},
                                 what=f"read {object_type} {object_id}").json()
        except Permanent as exc:
            if exc.http_status == 404:
                return None
            raise

    def update_object(self, object_type: str, object_id: str, properties: Mapping[str, str]) -> dict[str, Any]:
        return self._request("PATCH", f"/crm/v3/objects/{object_type}/{object_id}",
                             json={"properties": dict(properties)}, what=f"update {object_type} {object_id}").json()

    def associations(self, from_type: str, object_id: str, to_type: str) -> list[str]:
        """Ids associated with the object (v4 associations), following ``paging.next.after``."""
        ids, after = [], None
        while True:
            params = {"limit": 500, **({"after": after} if after else {})}
            page = self._request("GET", f"/crm/v4/objects/{from_type}/{object_id}/associations/{to_type}",
                                 params=params, what=f"read {from_type} {object_id} associations").json()
            ids += [str(result["toObjectId"]) for result in page.get("results", [])]
            after = ((page.get("paging") or {}).get("next") or {}).get("after")
            if not after:
                return ids

    def batch_read(self, object_type: str, ids: list[str], properties: list[str]) -> list[dict[str, Any]]:
        if not ids:
            return []
        # A batch read is a POST that only reads.
        return self._request("POST", f"/crm/v3/objects/{object_type}/batch/read", idempotent=True,
                             json={"properties": properties, "inputs": [{"id": i} for i in ids]},
                             what=f"read {object_type}").json().get("results", [])
