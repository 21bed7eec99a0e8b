"""Salesforce as a CRM: reads accounts, pulls changes, writes the ERP id back.

Config: ``instance_url``, optional ``api_version`` (default v60.0), ``erp_id_field``
(default ``ERP_Id__c``, a custom text field the org must have), ``timeout``.
Credentials: ``access_token``; ``webhook_secrets`` (the change-event relay's secret).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping
from typing import Any

import httpx

from canonical.contracts import CustomerV1, OrderV1
from connectors.base import Connector, ExternalDocument, ReceivedEvent
from connectors.errors import NeedsConfiguration, Permanent
from connectors.registry import register, register_translator, register_webhook
from connectors.salesforce import mapping, opportunities
from connectors.salesforce.client import DEFAULT_API_VERSION, SalesforceClient
from connectors.salesforce.events import PULLED, translate
from connectors.salesforce.webhooks import SalesforceRelayReceiver


def soql_changed_since(since: dt.datetime | None, fields: list[str]) -> str:
    # ``>=``: records sharing the watermark's second are read again and dropped by
    # the inbox as duplicates, rather than missed.
    where = ""
    if since is not None:
        where = f" WHERE LastModifiedDate >= {since.astimezone(dt.UTC).strftime('%Y-%m-%dT%H:%M:%SZ')}"
    return f"SELECT {', '.join(fields)} FROM Account{where} ORDER BY LastModifiedDate ASC"


@register("salesforce")
class SalesforceConnector(Connector):
    """CustomerSource, CustomerWriteBack, OrderSource and SubscriptionReporter over the
    Salesforce REST API."""

    secret_fields = ("access_token", "webhook_secrets")
    url_fields = ("instance_url",)
    # My Domain instance URLs, sandboxes and the legacy login hosts.
    fixed_hosts = ("*.salesforce.com", "*.force.com", "*.cloudforce.com", "*.salesforce.mil")

    def __init__(self, *, config: Mapping[str, Any], credentials: Mapping[str, Any],
                 transport: httpx.BaseTransport | None = None, name: str = ""):
        super().__init__(config=config, credentials=credentials, transport=transport, name=name)
        self.erp_id_field = self.config.get("erp_id_field") or mapping.ERP_ID_FIELD

    def build_client(self) -> SalesforceClient:
        if not self.config.get("instance_url") or not self.credentials.get("access_token"):
            raise NeedsConfiguration("Salesforce connection lacks instance_url or access_token")
        return SalesforceClient(
            self.config["instance_url"], self.credentials["access_token"],
            api_version=self.config.get("api_version") or DEFAULT_API_VERSION,
            timeout=float(self.config.get("timeout", 20)), transport=self.transport,
        )

    @property
    def _fields(self) -> list[str]:
        fields = [name for name in mapping.ACCOUNT_FIELDS if name != mapping.ERP_ID_FIELD]
        return [*fields, self.erp_id_field]

    def fetch_customer(self, external_id: str) -> CustomerV1 | None:
        record = self.client.get("Account", external_id, self._fields)
        return None if record is None else mapping.customer_from_account(record, system=self.name)

    def customers_changed_since(self, since: dt.datetime | None) -> Iterator[ReceivedEvent]:
        for record in self.client.query(soql_changed_since(since, self._fields)):
            modified = mapping.parse_timestamp(record.get("LastModifiedDate"))
            yield ReceivedEvent(
                external_id=mapping.change_id(record["Id"], modified), type=PULLED,
                subject=f"customer:{record['Id']}", payload=record, occurred_at=modified,
            )

    def write_back_erp_id(self, external_id: str, erp_id: str, *, idempotency_key: str) -> ExternalDocument:
        # Read first: writing an unchanged value would still bump LastModifiedDate
        # and emit a change event for nothing.
        record = self.client.get("Account", external_id, ["Id", self.erp_id_field])
        if record is None:
            raise Permanent(f"Salesforce Account {external_id} no longer exists; nothing to write back to")
        if record.get(self.erp_id_field) != erp_id:
            self.client.update("Account", external_id, {self.erp_id_field: erp_id})
        return ExternalDocument(external_id=external_id, number=erp_id, state="written")

    def fetch_order(self, external_id: str) -> OrderV1 | None:
        record = self.client.get("Opportunity", external_id, opportunities.OPPORTUNITY_FIELDS)
        if record is None:
            return None
        lines = list(self.client.query(opportunities.line_items_soql(external_id)))
        return opportunities.order_from_opportunity(record, lines, system=self.name)

    def _set_fields(self, deal_id: str, values: dict[str, str]) -> ExternalDocument:
        # Read first: an unchanged value written again would still emit a change event.
        record = self.client.get("Opportunity", deal_id, ["Id", *values])
        if record is None:
            raise Permanent(f"Salesforce Opportunity {deal_id} no longer exists; nothing to report to")
        changed = {key: value for key, value in values.items() if record.get(key) != value}
        if changed:
            self.client.update("Opportunity", deal_id, changed)
        return ExternalDocument(external_id=deal_id, state="written" if changed else "unchanged")

    def report_subscription(self, deal_id: str, *, subscription_id: str, status: str,
                            idempotency_key: str) -> ExternalDocument:
        return self._set_fields(deal_id, {opportunities.SUBSCRIPTION_ID_FIELD: subscription_id,
                                          opportunities.SUBSCRIPTION_STATUS_FIELD: status})

    def report_amendment(self, deal_id: str, *, outcome: str, detail: str, idempotency_key: str) -> ExternalDocument:
        return self._set_fields(deal_id, {opportunities.AMENDMENT_STATUS_FIELD: outcome,
                                          opportunities.AMENDMENT_DETAIL_FIELD: detail[:255]})


register_webhook("salesforce", SalesforceRelayReceiver())
register_translator("salesforce", translate)
