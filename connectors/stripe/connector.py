"""Stripe's entry in the connector registry (imported by ConnectorsConfig.ready)."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from canonical.contracts import CustomerV1
from connectors.base import Connector, ExternalDocument, MeterEvent
from connectors.errors import NeedsConfiguration, Permanent
from connectors.registry import register, register_translator, register_webhook
from connectors.stripe.client import API_BASE, METER_EVENTS_BASE, MeterSessionExpired, StripeApiClient
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
    """CustomerSink and MeterEventSink on Stripe's API. Config: optional ``api_base``,
    ``meter_events_base`` (the v2 stream's host), ``meter_events_api`` (``v2``, the
    default, for volume; ``v1`` for synchronous validation); credentials: ``api_key``
    (secret key) and ``webhook_secrets``."""

    secret_fields = ("api_key", "webhook_secrets")
    url_fields = ("api_base", "meter_events_base")
    fixed_hosts = ("api.stripe.com", "files.stripe.com", "meter-events.stripe.com")

    # A meter event session token lasts 15 minutes; renew a little before.
    SESSION_RENEW_SECONDS = 14 * 60

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self._session: tuple[str, float] | None = None
        self._meters: dict[str, str] = {}

    def build_client(self) -> StripeApiClient:
        if not self.credentials.get("api_key"):
            raise NeedsConfiguration("Stripe connection lacks api_key (needed to create customers)")
        return StripeApiClient(self.credentials["api_key"], base_url=self.config.get("api_base") or API_BASE,
                               timeout=float(self.config.get("timeout", 20)), transport=self.transport,
                               # A sandbox serves both hosts at its api_base.
                               meter_events_base=self.config.get("meter_events_base")
                               or self.config.get("api_base") or METER_EVENTS_BASE)

    def upsert_customer(self, customer: CustomerV1, *, idempotency_key: str,
                        external_id: str | None = None) -> ExternalDocument:
        params = customer_params(customer)
        if external_id:
            path, what = f"/v1/customers/{external_id}", f"update customer {external_id}"
        else:
            path, what = "/v1/customers", "create customer"
        found = self.client.request("POST", path, params=params, idempotency_key=idempotency_key, what=what)
        return ExternalDocument(external_id=found["id"], state="active")

    # ------------------------------------------------------------ usage (billing meters)

    def send_meter_events(self, events: Sequence[MeterEvent], *, idempotency_key: str) -> ExternalDocument:
        """v2: one stream request of up to 100 events; v1: one request per event, under
        ``Idempotency-Key`` = its identifier, so a retry after a failure half-way replays
        the events that landed and sends the rest. Either way Stripe keeps an identifier
        once (over at least 24 h), so repeating the whole call cannot count usage twice."""
        if not events:
            return ExternalDocument(external_id=idempotency_key, state="empty")
        if len(events) > 100:
            raise Permanent(f"{len(events)} meter events in one call; Stripe's stream takes at most 100")
        if self.config.get("meter_events_api", "v2") == "v1":
            for event in events:
                self.client.request("POST", "/v1/billing/meter_events", params=meter_event_params(event),
                                    idempotency_key=event.identifier, what=f"meter event {event.identifier}")
        else:
            body = {"events": [meter_event_stream_item(event) for event in events]}
            try:
                self.client.request_v2("/v2/billing/meter_event_stream", body=body, session_token=self._token(),
                                       what="meter event stream")
            except MeterSessionExpired:
                self._session = None
                self.client.request_v2("/v2/billing/meter_event_stream", body=body, session_token=self._token(),
                                       what="meter event stream")
        return ExternalDocument(external_id=idempotency_key, state="sent")

    def _token(self) -> str:
        if self._session is None or self._session[1] < time.monotonic():
            session = self.client.request_v2("/v2/billing/meter_event_session", body={},
                                             what="create meter event session")
            self._session = (session["authentication_token"], time.monotonic() + self.SESSION_RENEW_SECONDS)
        return self._session[0]

    def _meter_id(self, event_name: str) -> str:
        if event_name not in self._meters:
            after: str | None = None
            while True:
                page = self.client.request("GET", "/v1/billing/meters",
                                           params={"limit": 100, "status": "active", "starting_after": after},
                                           what="list meters")
                self._meters.update({m["event_name"]: m["id"] for m in page["data"]})
                if not page.get("has_more") or not page["data"]:
                    break
                after = page["data"][-1]["id"]
        try:
            return self._meters[event_name]
        except KeyError:
            raise NeedsConfiguration(f"Stripe has no active billing meter for event_name {event_name!r}") from None

    def meter_usage(self, *, event_name: str, customer: str, start: dt.datetime, end: dt.datetime) -> str:
        """The meter's event summaries for the customer in [start, end), summed (Stripe's
        summaries are eventually consistent: a just-sent event may be missing for a while)."""
        meter_id = self._meter_id(event_name)
        total, after = Decimal(0), None
        while True:
            page = self.client.request("GET", f"/v1/billing/meters/{meter_id}/event_summaries", params={
                "customer": customer, "start_time": int(start.timestamp()), "end_time": int(end.timestamp()),
                "limit": 100, "starting_after": after}, what=f"meter {event_name} summaries")
            total += sum((Decimal(repr(s["aggregated_value"])) for s in page["data"]), Decimal(0))
            if not page.get("has_more") or not page["data"]:
                return format(total.normalize(), "f")
            after = page["data"][-1]["id"]


def meter_event_params(event: MeterEvent) -> dict[str, Any]:
    """POST /v1/billing/meter_events parameters (form-encoded; the timestamp in Unix seconds)."""
    return {"event_name": event.event_name, "identifier": event.identifier,
            "timestamp": int(event.timestamp.timestamp()),
            "payload": {"stripe_customer_id": event.customer, "value": event.value}}


def meter_event_stream_item(event: MeterEvent) -> dict[str, Any]:
    """One event of the v2 stream (JSON; the timestamp in ISO 8601)."""
    stamp = event.timestamp.astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    return {"event_name": event.event_name, "identifier": event.identifier, "timestamp": stamp,
            "payload": {"stripe_customer_id": event.customer, "value": event.value}}


register_webhook("stripe", StripeWebhookReceiver())
register_translator("stripe", translate)
