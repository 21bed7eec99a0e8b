"""Stripe's entry in the connector registry (imported by ConnectorsConfig.ready)."""

from __future__ import annotations

from typing import Any

from canonical.contracts import CustomerV1
from connectors.base import Connector, ExternalDocument
from connectors.errors import NeedsConfiguration
from connectors.registry import register, register_translator, register_webhook
from connectors.stripe.client import API_BASE, StripeApiClient
from connectors.stripe.events import translate
from connectors.stripe.webhooks import StripeWebhookReceiver

# Events the hub acts on; the inbox may store others but workflows ignore them.
HANDLED_EVENT_TYPES: frozenset[str] = frozenset(
    {
        "invoice.finalized", "invoice.paid", "invoice.voided", "invoice.marked_uncollectible",
        "invoice_payment.paid", "credit_note.created", "credit_note.updated", "credit_note.voided",
        "refund.created", "refund.updated", "refund.failed", "charge.refunded", "charge.dispute.closed",
        "customer.created", "customer.updated",
    }
)



def customer_params(customer: CustomerV1) -> dict[str, Any]:
    """POST /v1/customers parameters; ``metadata[hub_id]`` ties the Stripe customer
    to the canonical one (and lets the hub recognise its own customer in webhooks)."""
    params: dict[str, Any] = {"name": customer.display_name, "email": customer.email or None,
                              "metadata": {"hub_id": str(customer.canonical_id or "")}}
    if customer.address is not None:
        params["address"] = {key: value for key, value in customer.address.model_dump().items() if value}
    return params


@register("stripe")
class StripeConnector(Connector):
    """CustomerSink on Stripe's API. Config: optional ``api_base``; credentials:
    ``api_key`` (secret key) and ``webhook_secrets``."""

    secret_fields = ("api_key", "webhook_secrets")

    def build_client(self) -> StripeApiClient:
        if not self.credentials.get("api_key"):
            raise NeedsConfiguration("Stripe connection lacks api_key (needed to create customers)")
        return StripeApiClient(self.credentials["api_key"], base_url=self.config.get("api_base") or API_BASE,
                               timeout=float(self.config.get("timeout", 20)), transport=self.transport)

    def upsert_customer(self, customer: CustomerV1, *, idempotency_key: str,
                        external_id: str | None = None) -> ExternalDocument:
        params = customer_params(customer)
        if external_id:
            path, what = f"/v1/customers/{external_id}", f"update customer {external_id}"
        else:
            path, what = "/v1/customers", "create customer"
        found = self.client.request("POST", path, params=params, idempotency_key=idempotency_key, what=what)
        return ExternalDocument(external_id=found["id"], state="active")


register_webhook("stripe", StripeWebhookReceiver())
register_translator("stripe", translate)
