"""The Stripe API sandbox's subscriptions, subscription items, proration and the
invoices they create, as Stripe's API reference documents them (API version Basil:
the current period lives on each subscription item).

* ``POST /v1/subscriptions``: ``customer``, ``items[n][price|quantity]``, ``metadata``,
  ``trial_end`` (a Unix time), ``proration_behavior``, ``payment_behavior``. The first
  invoice (``billing_reason: subscription_create``) is finalized and paid at once
  (``charge_automatically``); during a trial it is a zero-amount invoice.
* ``POST /v1/subscriptions/{id}``: ``items[n][id|price|quantity|deleted]``,
  ``proration_behavior`` (``create_prorations``, the default, keeps the proration for
  the next invoice; ``always_invoice`` invoices it now; ``none``), ``proration_date``,
  ``cancel_at_period_end``, ``metadata``, ``payment_behavior``. Proration lines credit
  the unused time of the old item and charge the remaining time of the new one,
  ``amount * remaining seconds / period seconds`` rounded half up. A proration invoice
  with a positive total is paid; with a negative one it credits the customer's
  balance (``ending_balance``) and asks for nothing. With ``payment_behavior=
  error_if_incomplete`` a declined payment answers 402 ``card_declined`` and the
  subscription is left unchanged (``decline_next_payment`` arranges one).
* ``DELETE /v1/subscriptions/{id}``: cancels now (``status: canceled``).
* ``GET /v1/subscriptions/{id}``, ``GET /v1/invoices/{id}``.
* Changing a canceled subscription is refused (400), as Stripe does.

Every change records its webhook events in ``events`` (``customer.subscription.created``
/ ``updated`` (with ``previous_attributes``) / ``deleted``, ``invoice.finalized``,
``invoice.paid``), for a test to deliver. ``period_elapse`` and ``period_advance`` move
a subscription's clock (a renewal invoices the next period; a subscription set to
cancel at period end is cancelled instead, with no invoice).
"""

from __future__ import annotations

import calendar
import copy
import datetime as dt
import re
from typing import Any

from connectors.sandbox_server import Request, Response
from connectors.stripe.api_catalog import error

_SUBSCRIPTION = re.compile(r"^/v1/subscriptions/(sub_\w+)$")
_INVOICE = re.compile(r"^/v1/invoices/(in_\w+)$")
_CREATE = {"customer", "items", "metadata", "trial_end", "proration_behavior", "payment_behavior", "expand",
           "collection_method", "description"}
_UPDATE = {"items", "metadata", "proration_behavior", "proration_date", "cancel_at_period_end", "payment_behavior",
           "expand", "description"}
_PRORATIONS = {"create_prorations", "always_invoice", "none"}
_FINISHED = {"canceled", "incomplete_expired"}


def _add_interval(moment: int, interval: str, count: int) -> int:
    when = dt.datetime.fromtimestamp(moment, tz=dt.UTC)
    if interval in ("day", "week"):
        return int((when + dt.timedelta(days=count * (7 if interval == "week" else 1))).timestamp())
    months = count * (12 if interval == "year" else 1)
    year, month = divmod(when.month - 1 + months, 12)
    year, month = when.year + year, month + 1
    day = min(when.day, calendar.monthrange(year, month)[1])
    return int(when.replace(year=year, month=month, day=day).timestamp())


def _half_up(numerator: int, denominator: int) -> int:
    sign = -1 if numerator < 0 else 1
    return sign * ((abs(numerator) * 2 + denominator) // (2 * denominator))


class StripeSubscriptions:
    """State and routes; ``api`` is the ``StripeApiSandbox`` (customers, catalog, clock)."""

    def __init__(self, api: Any):
        self.api = api
        self.objects = api.objects
        self.subscriptions: dict[str, dict[str, Any]] = api.catalog.subscriptions
        self.invoices: dict[str, dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []
        self.pending_prorations: dict[str, list[dict[str, Any]]] = {}
        self._declines = 0

    # ------------------------------------------------------------ test helpers

    def decline_next_payment(self, times: int = 1) -> None:
        self._declines += times

    def events_of(self, type_: str, subscription: str | None = None) -> list[dict[str, Any]]:
        found = [e for e in self.events if e["type"] == type_]
        if subscription is not None:
            found = [e for e in found if subscription in (e["data"]["object"].get("id"), self._sub_of(e))]
        return found

    @staticmethod
    def _sub_of(event: dict[str, Any]) -> str | None:
        parent = event["data"]["object"].get("parent") or {}
        return (parent.get("subscription_details") or {}).get("subscription")

    def invoices_of(self, subscription: str) -> list[dict[str, Any]]:
        return [i for i in self.invoices.values()
                if ((i.get("parent") or {}).get("subscription_details") or {}).get("subscription") == subscription]

    def period_elapse(self, subscription_id: str, fraction: float) -> None:
        """Move the current period back so ``fraction`` of it has passed now."""
        sub = self.subscriptions[subscription_id]
        now = self.objects._now()
        for item in sub["items"]["data"]:
            length = item["current_period_end"] - item["current_period_start"]
            item["current_period_start"] = now - int(length * fraction)
            item["current_period_end"] = item["current_period_start"] + length

    def period_advance(self, subscription_id: str) -> dict[str, Any]:
        """The period ends: cancel a subscription set to cancel at period end (no
        invoice), else start the next period and invoice it (with pending prorations)."""
        sub = self.subscriptions[subscription_id]
        before = copy.deepcopy(sub)
        if sub["cancel_at_period_end"]:
            self._cancel(sub)
            self._event("customer.subscription.deleted", sub, {"status": before["status"]})
            return sub
        for item in sub["items"]["data"]:
            price = item["price"]["recurring"] or {"interval": "month", "interval_count": 1}
            item["current_period_start"] = item["current_period_end"]
            item["current_period_end"] = _add_interval(item["current_period_end"], price["interval"],
                                                       price.get("interval_count", 1))
        sub["status"] = "active"
        lines = [*self.pending_prorations.pop(sub["id"], []), *self._period_lines(sub)]
        invoice = self._bill(sub, lines, "subscription_cycle")
        sub["latest_invoice"] = invoice["id"]
        self._event("customer.subscription.updated", sub, {"items": before["items"]})
        return sub

    # ------------------------------------------------------------ routing

    def route(self, request: Request, params: dict[str, Any]) -> Response | None:
        path, method = request.path, request.method
        if path == "/v1/subscriptions" and method == "POST":
            return self._create(params)
        if match := _SUBSCRIPTION.match(path):
            sub = self.subscriptions.get(match.group(1))
            if sub is None:
                return error(404, f"No such subscription: '{match.group(1)}'", code="resource_missing", param="id")
            if method == "GET":
                return Response(200, sub)
            if method == "POST":
                return self._update(sub, params)
            if method == "DELETE":
                return self._delete(sub)
        if (match := _INVOICE.match(path)) and method == "GET":
            invoice = self.invoices.get(match.group(1))
            if invoice is None:
                return error(404, f"No such invoice: '{match.group(1)}'", code="resource_missing", param="id")
            return Response(200, invoice)
        return None

    # ------------------------------------------------------------ create

    def _items(self, raw: Any) -> tuple[list[dict[str, Any]] | None, Response | None]:
        if not isinstance(raw, dict) or not raw:
            return None, error(400, "Missing required param: items.", code="parameter_missing", param="items")
        found = []
        for index in sorted(raw, key=lambda key: int(key) if key.isdigit() else -1):
            entry = raw[index]
            if not isinstance(entry, dict):
                return None, error(400, f"Invalid items[{index}]", code="parameter_invalid", param=f"items[{index}]")
            found.append({"index": index, **entry})
        return found, None

    def _quantity(self, value: Any, index: str) -> tuple[int | None, Response | None]:
        if value is None:
            return 1, None
        if not isinstance(value, str) or not value.isdigit():
            return None, error(400, f"Invalid integer: {value}", code="parameter_invalid_integer",
                               param=f"items[{index}][quantity]")
        return int(value), None

    def _price(self, price_id: Any, index: str) -> tuple[dict[str, Any] | None, Response | None]:
        price = self.api.catalog.prices.get(price_id) if isinstance(price_id, str) else None
        if price is None:
            return None, error(400, f"No such price: '{price_id}'", code="resource_missing",
                               param=f"items[{index}][price]")
        if not price.get("recurring"):
            return None, error(400, f"The price specified ({price_id}) is a one-time price; subscriptions need "
                                    "recurring prices.", code="parameter_invalid", param=f"items[{index}][price]")
        if not price["active"]:
            return None, error(400, f"The price specified ({price_id}) is inactive.", code="parameter_invalid",
                               param=f"items[{index}][price]")
        return price, None

    def _create(self, params: dict[str, Any]) -> Response:
        if unknown := sorted(set(params) - _CREATE):
            return error(400, f"Received unknown parameter: {unknown[0]}", code="parameter_unknown", param=unknown[0])
        customer = self.api.customers.get(params.get("customer") or "")
        if customer is None:
            return error(400, f"No such customer: '{params.get('customer')}'", code="resource_missing",
                         param="customer")
        entries, refused = self._items(params.get("items"))
        if refused:
            return refused
        now = self.objects._now()
        trial_end = params.get("trial_end")
        if trial_end is not None and (not str(trial_end).isdigit() or int(trial_end) <= now):
            return error(400, "Invalid timestamp: must be an integer Unix timestamp in the future.",
                         code="parameter_invalid", param="trial_end")
        sub_id = self.objects.new_id("sub")
        items = []
        for entry in entries:
            price, refused = self._price(entry.get("price"), entry["index"])
            if refused:
                return refused
            quantity, refused = self._quantity(entry.get("quantity"), entry["index"])
            if refused:
                return refused
            items.append(self._item(sub_id, price, quantity, now, int(trial_end) if trial_end else None))
        currencies = {item["price"]["currency"] for item in items}
        if len(currencies) > 1:
            return error(400, "All prices on a subscription must have the same currency.", code="parameter_invalid",
                         param="items")
        sub = {
            "id": sub_id, "object": "subscription", "customer": customer["id"], "currency": currencies.pop(),
            "status": "trialing" if trial_end else "active", "created": now, "start_date": now,
            "billing_cycle_anchor": items[0]["current_period_end"] if trial_end else now,
            "cancel_at_period_end": False, "cancel_at": None, "canceled_at": None, "ended_at": None,
            "trial_start": now if trial_end else None, "trial_end": int(trial_end) if trial_end else None,
            "collection_method": "charge_automatically", "latest_invoice": None, "livemode": False,
            "metadata": params.get("metadata") or {}, "description": params.get("description") or None,
            "items": {"object": "list", "data": items, "has_more": False, "total_count": len(items),
                      "url": f"/v1/subscription_items?subscription={sub_id}"},
        }
        lines = [] if trial_end else self._period_lines(sub)
        if trial_end:
            lines = [(f"Trial period for {item['price']['id']}", item["quantity"], 0, item, False) for item in items]
        self.subscriptions[sub_id] = sub
        invoice = self._bill(sub, lines, "subscription_create")
        sub["latest_invoice"] = invoice["id"]
        self._event("customer.subscription.created", sub)
        return Response(200, sub)

    def _item(self, sub_id: str, price: dict[str, Any], quantity: int, now: int, trial_end: int | None) -> dict:
        recurring = price["recurring"]
        start = now
        end = trial_end or _add_interval(now, recurring["interval"], recurring.get("interval_count", 1))
        return {"id": self.objects.new_id("si"), "object": "subscription_item", "subscription": sub_id,
                "price": copy.deepcopy(price), "quantity": quantity, "created": now, "metadata": {},
                "current_period_start": start, "current_period_end": end}

    def _period_lines(self, sub: dict[str, Any]) -> list[tuple]:
        return [(f"{item['quantity']} × {item['price'].get('nickname') or item['price']['id']}", item["quantity"],
                 item["quantity"] * (item["price"]["unit_amount"] or 0), item, False)
                for item in sub["items"]["data"]]

    # ------------------------------------------------------------ invoices

    def _bill(self, sub: dict[str, Any], lines: list[tuple], reason: str, *, pay: bool = True) -> dict[str, Any]:
        """An invoice of (description, quantity, amount, item, proration) lines, finalized and paid."""
        customer = self.api.customers[sub["customer"]]
        rows = lines or [("Nothing due", 0, 0, sub["items"]["data"][0], False)]
        invoice = self.objects.invoice(customer, [(description, 1, amount) for description, _, amount, _, _ in rows],
                                       currency=sub["currency"], tax_percent=None, subscription=sub["id"])
        for line, (_, quantity, _, item, proration) in zip(invoice["lines"]["data"], rows, strict=True):
            line["quantity"] = quantity
            if "quantity_decimal" in line:
                line["quantity_decimal"] = str(quantity)
            line["period"] = {"start": item["current_period_start"], "end": item["current_period_end"]}
            line["pricing"] = {"type": "price_details", "unit_amount_decimal": str(item["price"]["unit_amount"]),
                               "price_details": {"price": item["price"]["id"], "product": item["price"]["product"]}}
            line["parent"] = {"type": "subscription_item_details", "invoice_item_details": None,
                              "subscription_item_details": {"subscription": sub["id"], "subscription_item": item["id"],
                                                            "proration": proration, "invoice_item": None,
                                                            "proration_details": {"credited_items": None}}}
        invoice["billing_reason"] = reason
        invoice["parent"]["subscription_details"]["metadata"] = dict(sub["metadata"])
        invoice = self.objects.finalize(invoice)
        if invoice["total"] < 0:
            # A credit: nothing is due; the customer's balance keeps it for later invoices.
            customer["balance"] = customer.get("balance", 0) + invoice["total"]
            invoice.update(amount_due=0, amount_remaining=0, ending_balance=customer["balance"])
        self.invoices[invoice["id"]] = invoice
        self._event("invoice.finalized", invoice)
        if pay:
            invoice = self.objects.pay(invoice)
            self.invoices[invoice["id"]] = invoice
            self._event("invoice.paid", invoice)
        return invoice

    # ------------------------------------------------------------ update, cancel

    def _update(self, sub: dict[str, Any], params: dict[str, Any]) -> Response:
        if unknown := sorted(set(params) - _UPDATE):
            return error(400, f"Received unknown parameter: {unknown[0]}", code="parameter_unknown", param=unknown[0])
        if sub["status"] in _FINISHED:
            return error(400, f"A {sub['status']} subscription can only update its cancellation_details and "
                              "metadata.", code="resource_missing" if False else None)
        behavior = params.get("proration_behavior", "create_prorations")
        if behavior not in _PRORATIONS:
            return error(400, f"Invalid proration_behavior: must be one of {', '.join(sorted(_PRORATIONS))}",
                         code="parameter_invalid", param="proration_behavior")
        now = self.objects._now()
        at = params.get("proration_date")
        if at is not None and not str(at).isdigit():
            return error(400, "Invalid integer: proration_date", code="parameter_invalid_integer",
                         param="proration_date")
        at = int(at) if at is not None else now
        before = copy.deepcopy(sub)
        items = copy.deepcopy(sub["items"]["data"])
        lines: list[tuple] = []
        if "items" in params:
            entries, refused = self._items(params["items"])
            if refused:
                return refused
            for entry in entries:
                current = next((i for i in items if i["id"] == entry.get("id")), None) if entry.get("id") else None
                if entry.get("id") and current is None:
                    return error(400, f"No such subscription item: '{entry['id']}'", code="resource_missing",
                                 param=f"items[{entry['index']}][id]")
                if entry.get("deleted") == "true":
                    if current is not None:
                        lines.append(self._proration(current, -1, at))
                        items.remove(current)
                    continue
                price = current["price"] if current is not None and "price" not in entry else None
                if price is None:
                    price, refused = self._price(entry.get("price"), entry["index"])
                    if refused:
                        return refused
                quantity, refused = self._quantity(entry.get("quantity") or (
                    str(current["quantity"]) if current is not None else None), entry["index"])
                if refused:
                    return refused
                if current is not None:
                    lines.append(self._proration(current, -1, at))
                    current.update(price=copy.deepcopy(price), quantity=quantity)
                    lines.append(self._proration(current, 1, at))
                else:
                    template = items[0] if items else None
                    new = self._item(sub["id"], price, quantity, now, None)
                    if template is not None:
                        new.update(current_period_start=template["current_period_start"],
                                   current_period_end=template["current_period_end"])
                    items.append(new)
                    lines.append(self._proration(new, 1, at))
            if not items:
                return error(400, "A subscription needs at least one item.", code="parameter_invalid", param="items")
        if sub["status"] == "trialing" or behavior == "none":
            lines = []
        lines = [line for line in lines if line[2] != 0]
        if lines and behavior == "always_invoice" and sum(line[2] for line in lines) > 0:
            if params.get("payment_behavior") == "error_if_incomplete" and self._declines:
                self._declines -= 1
                return error(402, "Your card was declined.", code="card_declined", kind="card_error")
        sub["items"]["data"] = items
        sub["items"]["total_count"] = len(items)
        if "cancel_at_period_end" in params:
            sub["cancel_at_period_end"] = params["cancel_at_period_end"] == "true"
            sub["cancel_at"] = items[0]["current_period_end"] if sub["cancel_at_period_end"] else None
        if "metadata" in params:
            merged = {**sub["metadata"], **(params["metadata"] or {})}
            sub["metadata"] = {k: v for k, v in merged.items() if v != ""}
        if lines and behavior == "always_invoice":
            invoice = self._bill(sub, lines, "subscription_update", pay=sum(line[2] for line in lines) > 0)
            sub["latest_invoice"] = invoice["id"]
        elif lines:
            self.pending_prorations.setdefault(sub["id"], []).extend(lines)
        previous = {key: before[key] for key in ("items", "cancel_at_period_end", "metadata") if before[key] != sub[key]}
        self._event("customer.subscription.updated", sub, previous)
        return Response(200, sub)

    def _proration(self, item: dict[str, Any], sign: int, at: int) -> tuple:
        start, end = item["current_period_start"], item["current_period_end"]
        remaining = max(0, min(end - at, end - start))
        amount = _half_up(sign * item["quantity"] * (item["price"]["unit_amount"] or 0) * remaining, end - start)
        moment = dt.datetime.fromtimestamp(at, tz=dt.UTC).strftime("%d %b %Y")
        what = item["price"].get("nickname") or item["price"]["id"]
        text = (f"Unused time on {item['quantity']} × {what} after {moment}" if sign < 0
                else f"Remaining time on {item['quantity']} × {what} after {moment}")
        return (text, item["quantity"], amount, copy.deepcopy(item), True)

    def _cancel(self, sub: dict[str, Any]) -> None:
        now = self.objects._now()
        sub.update(status="canceled", canceled_at=now, ended_at=now, cancel_at_period_end=False)

    def _delete(self, sub: dict[str, Any]) -> Response:
        if sub["status"] in _FINISHED:
            return error(400, f"This subscription is already {sub['status']}.", code="resource_missing")
        before = sub["status"]
        self._cancel(sub)
        self._event("customer.subscription.deleted", sub, {"status": before})
        return Response(200, sub)

    def _event(self, type_: str, obj: dict[str, Any], previous: dict[str, Any] | None = None) -> None:
        self.events.append(self.objects.event(type_, obj, previous))
