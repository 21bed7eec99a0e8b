"""Stripe's entry in the connector registry (imported by ConnectorsConfig.ready)."""

from __future__ import annotations

from connectors.registry import register_translator, register_webhook
from connectors.stripe.events import translate
from connectors.stripe.webhooks import StripeWebhookReceiver

# Events the hub acts on; the inbox may store others but workflows ignore them.
HANDLED_EVENT_TYPES: frozenset[str] = frozenset(
    {"invoice.finalized", "invoice.paid", "invoice.voided", "customer.created", "customer.updated"}
)

register_webhook("stripe", StripeWebhookReceiver())
register_translator("stripe", translate)
