"""Stripe's entry in the connector registry (imported by ConnectorsConfig.ready)."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator, Sequence
from decimal import Decimal
from typing import Any

from canonical.contracts import CustomerV1, PriceV1, ProductV1, SubscriptionV1
from connectors.base import Connector, ExternalDocument, MeterEvent, SubscriptionChange, TargetProduct
from connectors.errors import NeedsConfiguration, Permanent
from connectors.registry import register, register_translator, register_webhook
from connectors.stripe import catalog, subscriptions
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
        "customer.subscription.created", "customer.subscription.updated", "customer.subscription.deleted",
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

    # ------------------------------------------------------------ subscriptions (SubscriptionBilling)

    def create_subscription(self, subscription: SubscriptionV1, *, customer: str,
                            idempotency_key: str) -> ExternalDocument:
        params = subscriptions.create_params(subscription, customer=customer)
        created = self.client.request("POST", "/v1/subscriptions", params=params, idempotency_key=idempotency_key,
                                      what=f"create subscription {subscription.canonical_id}")
        return subscriptions.document(created)

    def find_subscription(self, subscription: SubscriptionV1, *, customer: str) -> ExternalDocument | None:
        if subscription.billing is not None:
            found = self._get(f"/v1/subscriptions/{subscription.billing.external_id}", "read subscription")
            return None if found is None else subscriptions.document(found)
        for found in self._all("/v1/subscriptions", "list subscriptions", customer=customer, status="all"):
            if (found.get("metadata") or {}).get("hub_subscription") == str(subscription.canonical_id):
                return subscriptions.document(found)
        return None

    def amend_subscription(self, billing_id: str, change: SubscriptionChange, *,
                           idempotency_key: str) -> ExternalDocument:
        current = self._get(f"/v1/subscriptions/{billing_id}", f"read subscription {billing_id}")
        if current is None:
            raise Permanent(f"Stripe has no subscription {billing_id}")
        if change.cancel == "now":
            done = self.client.request("DELETE", f"/v1/subscriptions/{billing_id}", idempotency_key=idempotency_key,
                                       what=f"cancel subscription {billing_id}")
            return subscriptions.document(done)
        before = current.get("latest_invoice")
        params = subscriptions.amend_params(current, change)
        done = self.client.request("POST", f"/v1/subscriptions/{billing_id}", params=params,
                                   idempotency_key=idempotency_key, what=f"update subscription {billing_id}")
        answer = subscriptions.document(done)
        invoice = done.get("latest_invoice")
        related = {**answer.related, "invoice": str(invoice) if invoice and invoice != before else ""}
        return ExternalDocument(external_id=answer.external_id, state=answer.state, related=related)

    def fetch_invoice(self, invoice_id: str) -> dict[str, Any] | None:
        return self._get(f"/v1/invoices/{invoice_id}", f"read invoice {invoice_id}")

    # ------------------------------------------------------------ catalog (ProductSink, PriceSink)

    def _get(self, path: str, what: str, **params: Any) -> dict[str, Any] | None:
        """A GET that answers None for Stripe's ``resource_missing`` 404."""
        try:
            return self.client.request("GET", path, params=params, what=what)
        except Permanent as exc:
            if exc.http_status == 404:
                return None
            raise

    def _all(self, path: str, what: str, **params: Any) -> Iterator[dict[str, Any]]:
        """Every object of a list endpoint, page by page (``starting_after``)."""
        params = {"limit": 100, **params}
        while True:
            page = self.client.request("GET", path, params=params, what=what)
            yield from page["data"]
            if not page.get("has_more") or not page["data"]:
                return
            params["starting_after"] = page["data"][-1]["id"]

    def upsert_product(self, product: ProductV1, *, idempotency_key: str) -> ExternalDocument:
        """Found by its id (the SKU) first, then updated, or created under that id with
        the Idempotency-Key; a retired SKU is archived (``active=false``)."""
        product_id = catalog.stripe_product_id(product.sku)
        if self._get(f"/v1/products/{product_id}", f"read product {product_id}") is None:
            params = {"id": product_id, **catalog.product_params(product, create=True)}
            created = self.client.request("POST", "/v1/products", params=params,
                                          idempotency_key=idempotency_key, what=f"create product {product_id}")
            return ExternalDocument(external_id=created["id"], state="created")
        self.client.request("POST", f"/v1/products/{product_id}", params=catalog.product_params(product, create=False),
                            idempotency_key=f"{idempotency_key}:update", what=f"update product {product_id}")
        return ExternalDocument(external_id=product_id, state="active" if product.active else "archived")

    def find_price(self, price: PriceV1, *, version_ref: str) -> ExternalDocument | None:
        """By the lookup key (read after write, unlike search) and the version's metadata;
        also among archived prices, in case a later step archived it already."""
        product_id = catalog.stripe_product_id(price.sku)
        for active in ("true", "false"):
            for found in self._all("/v1/prices", f"list prices of {product_id}", product=product_id, active=active):
                if (found.get("metadata") or {}).get("hub_price_version") == version_ref:
                    return ExternalDocument(external_id=found["id"], state="active" if found["active"] else "archived")
        return None

    def create_price(self, price: PriceV1, *, version_ref: str, replaces: str | None,
                     idempotency_key: str) -> ExternalDocument:
        """New price (lookup key transferred to it), default price of the product when it
        is the list price, then the replaced price archived. Each POST has its own key
        derived from ``idempotency_key``; a retry finds the price by ``find_price``."""
        product_id = catalog.stripe_product_id(price.sku)
        found = self.find_price(price, version_ref=version_ref)
        if found is None:
            meter = self._meter_for(price.meter_event_name, idempotency_key) if price.usage_type == "metered" else None
            params = catalog.price_params(price, product_id=product_id, version_ref=version_ref, meter_id=meter)
            created = self.client.request("POST", "/v1/prices", params=params, idempotency_key=idempotency_key,
                                          what=f"create price for {price.source.external_id}")
            price_id = created["id"]
        else:
            price_id = found.external_id
        if price.list_price and price.active:
            self.client.request("POST", f"/v1/products/{product_id}", params={"default_price": price_id},
                                idempotency_key=f"{idempotency_key}:default", what=f"set default price {price_id}")
        if not price.active:
            self._archive(price_id, product_id, f"{idempotency_key}:retire")
        if replaces and replaces != price_id:
            self._archive(replaces, product_id, f"{idempotency_key}:archive")
        return ExternalDocument(external_id=price_id, state="active" if price.active else "archived",
                                related={"archived": replaces} if replaces else {})

    def _archive(self, price_id: str, product_id: str, key: str) -> None:
        existing = self._get(f"/v1/prices/{price_id}", f"read price {price_id}")
        if existing is None or not existing["active"]:
            return
        product = self._get(f"/v1/products/{product_id}", f"read product {product_id}") or {}
        if product.get("default_price") == price_id:
            # Stripe refuses to archive a product's default price: clear it first.
            self.client.request("POST", f"/v1/products/{product_id}", params={"default_price": ""},
                                idempotency_key=f"{key}:clear-default", what=f"clear default price of {product_id}")
        self.client.request("POST", f"/v1/prices/{price_id}", params={"active": False}, idempotency_key=key,
                            what=f"archive price {price_id}")

    def _meter_for(self, event_name: str | None, key: str) -> str:
        """The billing meter of ``event_name``, created (sum) if Stripe has none."""
        for meter in self._all("/v1/billing/meters", "list meters"):
            if meter["event_name"] == event_name:
                return meter["id"]
        created = self.client.request(
            "POST", "/v1/billing/meters", idempotency_key=f"meter:{event_name}", what=f"create meter {event_name}",
            params={"display_name": event_name, "event_name": event_name, "default_aggregation": {"formula": "sum"}})
        return created["id"]

    def price_subscriptions(self, external_id: str) -> int:
        page = self.client.request("GET", "/v1/subscriptions", params={"price": external_id, "status": "active",
                                                                       "limit": 2},
                                   what=f"list subscriptions of {external_id}")
        return len(page["data"])

    def catalog_snapshot(self, skus: Sequence[str]) -> dict[str, TargetProduct]:
        """Every product the hub manages (``metadata[hub_sku]``) with its active prices,
        plus the asked SKUs whatever their metadata."""
        wanted = {catalog.stripe_product_id(sku): sku for sku in skus}
        products = [p for p in self._all("/v1/products", "list products")
                    if (p.get("metadata") or {}).get("hub_sku") or p["id"] in wanted]
        prices: dict[str, list[dict[str, Any]]] = {}
        for found in self._all("/v1/prices", "list active prices"):
            prices.setdefault(found["product"], []).append(found)
        snapshot = {}
        for product in products:
            state = catalog.target_product(product, prices.get(product["id"], []))
            snapshot[wanted.get(product["id"], state.sku)] = state
        return snapshot

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
