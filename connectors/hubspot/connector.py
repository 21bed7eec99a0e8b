"""HubSpot as a CRM: reads companies, pulls changes, writes the ERP id back.

Config: optional ``base_url`` (default https://api.hubapi.com), ``erp_id_property``
(default ``hub_erp_id``, a custom company property the portal must have),
``timeout``. Credentials: ``access_token`` (private app); ``webhook_secrets`` (the
app's client secret, which signs webhooks).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping
from typing import Any

import httpx

from canonical.contracts import CustomerV1, OrderV1
from connectors.base import Connector, ExternalDocument, ReceivedEvent
from connectors.errors import NeedsConfiguration, Permanent
from connectors.hubspot import deals, mapping
from connectors.hubspot.client import API_BASE, HubSpotClient
from connectors.hubspot.events import PULLED, translate
from connectors.hubspot.webhooks import HubSpotWebhookReceiver
from connectors.registry import register, register_translator, register_webhook


@register("hubspot")
class HubSpotConnector(Connector):
    """CustomerSource, CustomerWriteBack, OrderSource and SubscriptionReporter over
    HubSpot's CRM v3 objects and v4 associations."""

    secret_fields = ("access_token", "webhook_secrets")
    url_fields = ("base_url",)
    fixed_hosts = ("api.hubapi.com", "api.hubspot.com", "api-eu1.hubapi.com")

    def __init__(self, *, config: Mapping[str, Any], credentials: Mapping[str, Any],
                 transport: httpx.BaseTransport | None = None, name: str = ""):
        super().__init__(config=config, credentials=credentials, transport=transport, name=name)
        self.erp_id_property = self.config.get("erp_id_property") or mapping.ERP_ID_PROPERTY

    def build_client(self) -> HubSpotClient:
        if not self.credentials.get("access_token"):
            raise NeedsConfiguration("HubSpot connection lacks access_token")
        return HubSpotClient(self.credentials["access_token"], base_url=self.config.get("base_url") or API_BASE,
                             timeout=float(self.config.get("timeout", 20)), transport=self.transport)

    @property
    def _properties(self) -> list[str]:
        return [p for p in mapping.COMPANY_PROPERTIES if p != mapping.ERP_ID_PROPERTY] + [self.erp_id_property]

    def fetch_customer(self, external_id: str) -> CustomerV1 | None:
        company = self.client.get_company(external_id, self._properties)
        if company is None or company.get("archived"):
            return None
        return mapping.customer_from_company(company, system=self.name)

    def customers_changed_since(self, since: dt.datetime | None) -> Iterator[ReceivedEvent]:
        since_ms = int(since.timestamp() * 1000) if since is not None else None
        for company in self.client.search_modified_since(since_ms, self._properties):
            modified = mapping.parse_time(company.get("updatedAt") or company["properties"].get("hs_lastmodifieddate"))
            yield ReceivedEvent(
                external_id=f"pull:{company['id']}:{int(modified.timestamp() * 1000)}", type=PULLED,
                subject=f"customer:{company['id']}", payload=company, occurred_at=modified,
            )

    def write_back_erp_id(self, external_id: str, erp_id: str, *, idempotency_key: str) -> ExternalDocument:
        company = self.client.get_company(external_id, [self.erp_id_property])
        if company is None:
            raise Permanent(f"HubSpot company {external_id} no longer exists; nothing to write back to")
        if (company.get("properties") or {}).get(self.erp_id_property) != erp_id:
            self.client.update_company(external_id, {self.erp_id_property: erp_id})
        return ExternalDocument(external_id=external_id, number=erp_id, state="written")

    def fetch_order(self, external_id: str) -> OrderV1 | None:
        deal = self.client.get_object("deals", external_id, deals.DEAL_PROPERTIES)
        if deal is None or deal.get("archived"):
            return None
        companies = self.client.associations("deals", external_id, "companies")
        line_ids = self.client.associations("deals", external_id, "line_items")
        items = self.client.batch_read("line_items", line_ids, deals.LINE_ITEM_PROPERTIES)
        return deals.order_from_deal(deal, companies[0] if companies else None, items, system=self.name)

    def _set_properties(self, deal_id: str, values: dict[str, str]) -> ExternalDocument:
        deal = self.client.get_object("deals", deal_id, list(values))
        if deal is None:
            raise Permanent(f"HubSpot deal {deal_id} no longer exists; nothing to report to")
        current = deal.get("properties") or {}
        changed = {key: value for key, value in values.items() if current.get(key) != value}
        if changed:
            self.client.update_object("deals", deal_id, changed)
        return ExternalDocument(external_id=deal_id, state="written" if changed else "unchanged")

    def report_subscription(self, deal_id: str, *, subscription_id: str, status: str,
                            idempotency_key: str) -> ExternalDocument:
        return self._set_properties(deal_id, {deals.SUBSCRIPTION_ID: subscription_id,
                                              deals.SUBSCRIPTION_STATUS: status})

    def report_amendment(self, deal_id: str, *, outcome: str, detail: str, idempotency_key: str) -> ExternalDocument:
        return self._set_properties(deal_id, {deals.AMENDMENT_STATUS: outcome, deals.AMENDMENT_DETAIL: detail[:255]})


register_webhook("hubspot", HubSpotWebhookReceiver())
register_translator("hubspot", translate)
