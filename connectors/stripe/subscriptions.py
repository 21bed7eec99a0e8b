"""Pure mapping between the hub's subscriptions and Stripe's (API version Basil:
the current period is on each subscription item)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from canonical.contracts import SourceRef, SubscriptionV1
from canonical.events import SubscriptionChanged, SubscriptionItemState
from connectors.base import ExternalDocument, SubscriptionChange
from connectors.errors import MappingError


def create_params(subscription: SubscriptionV1, *, customer: str) -> dict[str, Any]:
    """POST /v1/subscriptions: items by billing price, the trial end, and the hub's id
    in metadata (how the hub finds it again, and recognises its webhooks)."""
    missing = [item.price_ref for item in subscription.items if not item.billing_price]
    if missing:
        raise MappingError(f"prices {', '.join(missing)} have no released Stripe price")
    params: dict[str, Any] = {
        "customer": customer,
        "items": {str(n): {"price": item.billing_price, "quantity": item.quantity}
                  for n, item in enumerate(subscription.items)},
        "metadata": {"hub_subscription": str(subscription.canonical_id)},
        "payment_behavior": "error_if_incomplete",
    }
    if subscription.trial_end is not None:
        moment = dt.datetime.combine(subscription.trial_end, dt.time(), tzinfo=dt.UTC)
        params["trial_end"] = int(moment.timestamp())
    return params


def amend_params(current: Mapping[str, Any], change: SubscriptionChange) -> dict[str, Any]:
    """POST /v1/subscriptions/{id}: the items afterwards, matched to the current items
    by price (a price that stays keeps its item; the others are deleted and added)."""
    params: dict[str, Any] = {"proration_behavior": change.proration_behavior,
                              "payment_behavior": "error_if_incomplete",
                              "metadata": {"hub_amendment": str(change.amendment or "")}}
    if change.proration_date is not None:
        params["proration_date"] = change.proration_date
    if change.cancel == "period_end":
        params["cancel_at_period_end"] = True
        return params
    existing = list(current.get("items", {}).get("data", []))
    items: dict[str, dict[str, Any]] = {}
    wanted = list(change.items)
    for item in existing:
        match = next((w for w in wanted if w[0] == item["price"]["id"]), None)
        if match is not None:
            wanted.remove(match)
            items[str(len(items))] = {"id": item["id"], "quantity": match[1]}
        elif wanted:
            # Swapping the price on the item keeps its id (an upgrade or downgrade).
            price, quantity = wanted.pop(0)
            items[str(len(items))] = {"id": item["id"], "price": price, "quantity": quantity}
        else:
            items[str(len(items))] = {"id": item["id"], "deleted": True}
    for price, quantity in wanted:
        items[str(len(items))] = {"price": price, "quantity": quantity}
    params["items"] = items
    return params


def _period(subscription: Mapping[str, Any], key: str) -> int | None:
    items = subscription.get("items", {}).get("data") or []
    value = items[0].get(key) if items else subscription.get(key)
    return value if isinstance(value, int) else None


def document(subscription: Mapping[str, Any]) -> ExternalDocument:
    related = {"latest_invoice": str(subscription.get("latest_invoice") or ""),
               "hub_amendment": str((subscription.get("metadata") or {}).get("hub_amendment") or ""),
               "cancel_at_period_end": "true" if subscription.get("cancel_at_period_end") else ""}
    for key in ("current_period_start", "current_period_end"):
        if (value := _period(subscription, key)) is not None:
            related[key] = str(value)
    for item in subscription.get("items", {}).get("data", []):
        related[f"item:{item['price']['id']}"] = item["id"]
    return ExternalDocument(external_id=subscription["id"], state=subscription.get("status"), related=related)


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, int | str) and str(value).isdigit() else None


def subscription_changed(subscription: Mapping[str, Any], *, system: str, created: int = 0) -> SubscriptionChanged:
    sub_id = subscription.get("id")
    if not isinstance(sub_id, str) or not sub_id:
        raise MappingError("stripe subscription: no id")
    items = []
    for index, item in enumerate(subscription.get("items", {}).get("data") or []):
        price = item.get("price") or {}
        quantity = item.get("quantity")
        if not isinstance(price.get("id"), str) or not isinstance(quantity, int):
            raise MappingError(f"stripe subscription {sub_id}.items[{index}]: a price id and a quantity are required")
        items.append(SubscriptionItemState(billing_price=price["id"], quantity=quantity, billing_item=item.get("id", "")))
    metadata = subscription.get("metadata") or {}
    return SubscriptionChanged(
        billing=SourceRef(system=system, external_id=sub_id), status=str(subscription.get("status") or ""),
        items=tuple(items), current_period_start=_period(subscription, "current_period_start"),
        current_period_end=_period(subscription, "current_period_end"),
        cancel_at_period_end=bool(subscription.get("cancel_at_period_end")),
        canceled_at=_int(subscription.get("canceled_at")), hub_subscription=_int(metadata.get("hub_subscription")),
        amendment=_int(metadata.get("hub_amendment")), event_created=created,
    )
