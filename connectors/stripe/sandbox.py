"""A local stand-in for Stripe's side of webhooks, for the demo and the tests.

It renders customers and invoices the way Stripe's API does for a given API
version (the legacy shape before 2025-03-31, the basil shape from then on), walks
invoices through Stripe's lifecycle (draft -> open -> paid / void), wraps objects
in event envelopes and signs them exactly as Stripe signs webhook requests.

Everything is deterministic for a given ``seed`` and sequence of calls: ids come
from a seeded generator and object timestamps from ``clock`` (inject a fixed one
in tests). Signature timestamps default to the real time so that a real endpoint,
which checks them against its own clock, accepts the deliveries.

It also issues what adjusts an invoice: credit notes (by line or by amount, settled
before payment, by refund, to the customer's balance or out of band), partial
payments (InvoicePayment objects), refunds and disputes.

The sandbox covers what the hub reads; it does not model discounts, shipping or
Stripe Tax.
"""

from __future__ import annotations

import copy
import json
import random
import string
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import httpx

from connectors.stripe.webhooks import SIGNATURE_HEADER, compute_signature

BASIL = "2025-03-31.basil"
LEGACY = "2024-06-20"

_ID_ALPHABET = string.ascii_letters + string.digits


class SandboxError(ValueError):
    """A call Stripe itself would refuse (e.g. paying a draft invoice)."""


def is_basil(api_version: str) -> bool:
    """True for 2025-03-31.basil and later: versions are ISO dates, so they sort as strings."""
    return api_version[:10] >= "2025-03-31"


def tax_half_up(amount: int, percent: Decimal | int | float | str) -> int:
    """Exclusive tax on ``amount`` minor units, rounded half-up to a whole minor unit."""
    exact = Decimal(amount) * Decimal(str(percent)) / Decimal(100)
    return int(exact.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def duplicates(events: Iterable[Mapping[str, Any]], times: int = 2) -> list[dict[str, Any]]:
    """Each event ``times`` times in a row: Stripe delivers at least once."""
    if times < 1:
        raise ValueError("times must be at least 1")
    return [copy.deepcopy(dict(event)) for event in events for _ in range(times)]


def reordered(events: Iterable[Mapping[str, Any]], seed: int = 0) -> list[dict[str, Any]]:
    """The events in a seeded shuffled order: Stripe does not guarantee ordering."""
    shuffled = [copy.deepcopy(dict(event)) for event in events]
    random.Random(seed).shuffle(shuffled)
    return shuffled


class StripeSandbox:
    """Stripe objects, lifecycle and signed webhook deliveries, offline.

    ``secret`` is the endpoint signing secret (``whsec_...``) the receiver is
    configured with; ``api_version`` decides the shape objects are rendered in.
    """

    duplicates = staticmethod(duplicates)
    reordered = staticmethod(reordered)

    def __init__(
        self,
        secret: str,
        *,
        api_version: str = BASIL,
        seed: int = 0,
        clock: Callable[[], float] = time.time,
    ):
        self.secret = secret
        self.api_version = api_version
        self.clock = clock
        self._rng = random.Random(seed)
        self._tax_rates: dict[str, dict[str, Any]] = {}
        self._invoice_sequence = 0
        # Numbers requested at creation, applied on finalize (Stripe numbers on finalization).
        self._pending_numbers: dict[str, str] = {}
        self._invoice_prefix = "".join(self._rng.choice(string.ascii_uppercase) for _ in range(8))

    @property
    def basil(self) -> bool:
        return is_basil(self.api_version)

    def new_id(self, prefix: str) -> str:
        """A Stripe-looking id, e.g. ``in_1Q8x...``; deterministic per seed."""
        return f"{prefix}_1" + "".join(self._rng.choice(_ID_ALPHABET) for _ in range(23))

    def _now(self) -> int:
        return int(self.clock())

    # -- objects ---------------------------------------------------------------

    def customer(
        self,
        name: str | None,
        email: str | None,
        *,
        country: str | None = "US",
        line1: str | None = None,
        city: str | None = None,
        postal_code: str | None = None,
        state: str | None = None,
        currency: str | None = None,
        tax_ids: Sequence[tuple[str, str]] = (),
        tax_exempt: str = "none",
    ) -> dict[str, Any]:
        """A Customer object. ``tax_ids`` (type, value) pairs render as the expanded list object;
        ``tax_exempt`` is Stripe's none / exempt / reverse."""
        customer_id = self.new_id("cus")
        customer: dict[str, Any] = {
            "id": customer_id,
            "object": "customer",
            "address": {
                "city": city,
                "country": country,
                "line1": line1,
                "line2": None,
                "postal_code": postal_code,
                "state": state,
            },
            "balance": 0,
            "created": self._now(),
            "currency": currency,
            "default_source": None,
            "delinquent": False,
            "description": None,
            "email": email,
            "invoice_prefix": self._invoice_prefix,
            "invoice_settings": {
                "custom_fields": None,
                "default_payment_method": None,
                "footer": None,
                "rendering_options": None,
            },
            "livemode": False,
            "metadata": {},
            "name": name,
            "next_invoice_sequence": 1,
            "phone": None,
            "preferred_locales": [],
            "shipping": None,
            "tax_exempt": tax_exempt,
            "test_clock": None,
        }
        if tax_ids:
            customer["tax_ids"] = {
                "object": "list",
                "data": [
                    {
                        "id": self.new_id("txi"),
                        "object": "tax_id",
                        "country": country,
                        "customer": customer_id,
                        "type": kind,
                        "value": value,
                    }
                    for kind, value in tax_ids
                ],
                "has_more": False,
                "url": f"/v1/customers/{customer_id}/tax_ids",
            }
        return customer

    def _tax_rate(self, percent: Decimal | int | float) -> dict[str, Any]:
        key = str(percent)
        if key not in self._tax_rates:
            self._tax_rates[key] = {
                "id": self.new_id("txr"),
                "object": "tax_rate",
                "active": True,
                "country": None,
                "created": self._now(),
                "description": None,
                "display_name": "Tax",
                "inclusive": False,
                "jurisdiction": None,
                "livemode": False,
                "metadata": {},
                "percentage": float(percent),
                "state": None,
                "tax_type": None,
            }
        return self._tax_rates[key]

    def invoice(
        self,
        customer: Mapping[str, Any] | str,
        lines: Sequence[tuple[str, int, int] | tuple[str, int, int, str] | tuple[str, int, int, str, str]],
        *,
        currency: str = "usd",
        tax_percent: Decimal | int | float | None = 10,
        number: str | None = None,
        subscription: str | None = None,
        due_in_days: int | None = 30,
    ) -> dict[str, Any]:
        """A draft Invoice with one line per (description, quantity, unit_amount_minor),
        optionally with a fourth item, the line's product id (else a fresh one), and a
        fifth, its price id (else a fresh one).

        Tax, when ``tax_percent`` is given, is exclusive and computed per line,
        rounded half-up to the minor unit. ``number`` is kept for ``finalize``
        (Stripe assigns numbers on finalization). The shape follows ``api_version``.
        """
        if isinstance(customer, Mapping):
            customer_obj: Mapping[str, Any] = customer
        else:
            customer_obj = {"id": customer}
        invoice_id = self.new_id("in")
        now = self._now()
        currency = currency.lower()
        rate = self._tax_rate(tax_percent) if tax_percent is not None else None

        rendered_lines = []
        for description, quantity, unit_amount, *product in lines:
            # Stripe's v1 line quantity is an integer.
            if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 0:
                raise SandboxError(f"quantity must be a non-negative integer, got {quantity!r}")
            amount = quantity * unit_amount
            tax = tax_half_up(amount, tax_percent) if tax_percent is not None else 0
            rendered_lines.append(
                self._line(
                    invoice_id,
                    description,
                    quantity,
                    unit_amount,
                    amount,
                    tax,
                    rate,
                    currency,
                    now,
                    subscription,
                    product[0] if product else None,
                    product[1] if len(product) > 1 else None,
                )
            )
        subtotal = sum(line["amount"] for line in rendered_lines)
        tax_total = sum(self._line_tax(line) for line in rendered_lines)
        total = subtotal + tax_total

        address = customer_obj.get("address")
        tax_ids = customer_obj.get("tax_ids")
        invoice: dict[str, Any] = {
            "id": invoice_id,
            "object": "invoice",
            "account_country": "US",
            "account_name": "Sandbox Inc.",
            "amount_due": total,
            "amount_paid": 0,
            "amount_remaining": total,
            "amount_shipping": 0,
            "attempt_count": 0,
            "attempted": False,
            "auto_advance": True,
            "billing_reason": "subscription_cycle" if subscription else "manual",
            "collection_method": "charge_automatically",
            "created": now,
            "currency": currency,
            "customer": customer_obj["id"],
            "customer_address": copy.deepcopy(address) if address else None,
            "customer_email": customer_obj.get("email"),
            "customer_name": customer_obj.get("name"),
            "customer_phone": None,
            "customer_shipping": None,
            "customer_tax_exempt": customer_obj.get("tax_exempt", "none"),
            "customer_tax_ids": [
                {"type": item["type"], "value": item["value"]}
                for item in (tax_ids.get("data", []) if isinstance(tax_ids, Mapping) else [])
            ],
            "description": None,
            "due_date": now + due_in_days * 86400 if due_in_days is not None else None,
            "ending_balance": None,
            "hosted_invoice_url": None,
            "invoice_pdf": None,
            "lines": {
                "object": "list",
                "data": rendered_lines,
                "has_more": False,
                "total_count": len(rendered_lines),
                "url": f"/v1/invoices/{invoice_id}/lines",
            },
            "livemode": False,
            "metadata": {},
            "number": None,
            "period_end": now,
            "period_start": now,
            "starting_balance": 0,
            "status": "draft",
            "status_transitions": {
                "finalized_at": None,
                "marked_uncollectible_at": None,
                "paid_at": None,
                "voided_at": None,
            },
            "subtotal": subtotal,
            "subtotal_excluding_tax": subtotal,
            "total": total,
            "total_discount_amounts": [],
            "total_excluding_tax": subtotal,
            "webhooks_delivered_at": None,
        }
        if self.basil:
            invoice["parent"] = (
                {
                    "type": "subscription_details",
                    "quote_details": None,
                    "subscription_details": {"metadata": {}, "subscription": subscription},
                }
                if subscription
                else None
            )
            invoice["total_taxes"] = (
                [
                    {
                        "amount": tax_total,
                        "tax_behavior": "exclusive",
                        "tax_rate_details": {"tax_rate": rate["id"]},
                        "taxability_reason": "standard_rated",
                        "taxable_amount": subtotal,
                        "type": "tax_rate_details",
                    }
                ]
                if rate
                else []
            )
        else:
            invoice.update(
                {
                    "charge": None,
                    "paid": False,
                    "paid_out_of_band": False,
                    "payment_intent": None,
                    "subscription": subscription,
                    "subscription_details": {"metadata": {}},
                    "tax": tax_total if rate else None,
                    "total_tax_amounts": [
                        {
                            "amount": tax_total,
                            "inclusive": False,
                            "tax_rate": rate["id"],
                            "taxability_reason": None,
                            "taxable_amount": subtotal,
                        }
                    ]
                    if rate
                    else [],
                }
            )
        if number is not None:
            self._pending_numbers[invoice_id] = number
        return invoice

    def _line(
        self,
        invoice_id: str,
        description: str,
        quantity: int,
        unit_amount: int,
        amount: int,
        tax: int,
        rate: Mapping[str, Any] | None,
        currency: str,
        now: int,
        subscription: str | None,
        product_id: str | None = None,
        price_id: str | None = None,
    ) -> dict[str, Any]:
        product_id, price_id, item_id = (product_id or self.new_id("prod"), price_id or self.new_id("price"),
                                         self.new_id("ii"))
        line: dict[str, Any] = {
            "id": self.new_id("il"),
            "object": "line_item",
            "amount": amount,
            "currency": currency,
            "description": description,
            "discount_amounts": [],
            "discountable": True,
            "discounts": [],
            "invoice": invoice_id,
            "livemode": False,
            "metadata": {},
            "period": {"start": now, "end": now},
            "quantity": quantity,
        }
        if self.basil:
            line["parent"] = {
                "type": "invoice_item_details",
                "invoice_item_details": {
                    "invoice_item": item_id,
                    "proration": False,
                    "proration_details": {"credited_items": None},
                    "subscription": subscription,
                },
                "subscription_item_details": None,
            }
            line["pricing"] = {
                "type": "price_details",
                "price_details": {"price": price_id, "product": product_id},
                "unit_amount_decimal": str(unit_amount),
            }
            line["taxes"] = (
                [
                    {
                        "amount": tax,
                        "tax_behavior": "exclusive",
                        "tax_rate_details": {"tax_rate": rate["id"]},
                        "taxability_reason": "standard_rated",
                        "taxable_amount": amount,
                        "type": "tax_rate_details",
                    }
                ]
                if rate
                else []
            )
        else:
            line.update(
                {
                    "amount_excluding_tax": amount,
                    "invoice_item": item_id,
                    "price": {
                        "id": price_id,
                        "object": "price",
                        "active": True,
                        "billing_scheme": "per_unit",
                        "created": now,
                        "currency": currency,
                        "livemode": False,
                        "lookup_key": None,
                        "metadata": {},
                        "nickname": None,
                        "product": product_id,
                        "recurring": None,
                        "tax_behavior": "exclusive",
                        "type": "one_time",
                        "unit_amount": unit_amount,
                        "unit_amount_decimal": str(unit_amount),
                    },
                    "proration": False,
                    "proration_details": {"credited_items": None},
                    "subscription": subscription,
                    "subscription_item": None,
                    "tax_amounts": [
                        {
                            "amount": tax,
                            "inclusive": False,
                            "tax_rate": rate["id"],
                            "taxability_reason": None,
                            "taxable_amount": amount,
                        }
                    ]
                    if rate
                    else [],
                    "tax_rates": [copy.deepcopy(dict(rate))] if rate else [],
                    "type": "invoiceitem",
                    "unit_amount_excluding_tax": str(unit_amount),
                }
            )
        return line

    @staticmethod
    def _line_tax(line: Mapping[str, Any]) -> int:
        return sum(item["amount"] for item in line.get("taxes") or line.get("tax_amounts") or ())

    # -- lifecycle ---------------------------------------------------------------

    def _transition(self, invoice: Mapping[str, Any], allowed: set[str], action: str) -> dict[str, Any]:
        if invoice.get("status") not in allowed:
            raise SandboxError(f"cannot {action} an invoice with status {invoice.get('status')!r}")
        return copy.deepcopy(dict(invoice))

    def finalize(self, invoice: Mapping[str, Any]) -> dict[str, Any]:
        """draft -> open: assigns the number and ``finalized_at``."""
        updated = self._transition(invoice, {"draft"}, "finalize")
        self._invoice_sequence += 1
        updated["number"] = (
            self._pending_numbers.pop(updated["id"], None)
            or f"{self._invoice_prefix}-{self._invoice_sequence:04d}"
        )
        updated["status"] = "open"
        updated["status_transitions"]["finalized_at"] = self._now()
        if not self.basil:
            # Legacy invoices name their PaymentIntent from finalization on.
            updated["payment_intent"] = self.new_id("pi")
        return updated

    def pay(self, invoice: Mapping[str, Any]) -> dict[str, Any]:
        """open/uncollectible -> paid, in full."""
        updated = self._transition(invoice, {"open", "uncollectible"}, "pay")
        now = self._now()
        updated["status"] = "paid"
        updated["status_transitions"]["paid_at"] = now
        updated["amount_paid"] = updated["amount_due"]
        updated["amount_remaining"] = 0
        updated["attempt_count"] = 1
        updated["attempted"] = True
        if self.basil:
            payment_intent = self.new_id("pi")
            updated["payments"] = {
                "object": "list",
                "data": [
                    {
                        "id": self.new_id("inpay"),
                        "object": "invoice_payment",
                        "amount_paid": updated["amount_paid"],
                        "amount_requested": updated["amount_due"],
                        "created": now,
                        "currency": updated["currency"],
                        "invoice": updated["id"],
                        "is_default": True,
                        "livemode": False,
                        "payment": {"type": "payment_intent", "payment_intent": payment_intent},
                        "status": "paid",
                        "status_transitions": {"canceled_at": None, "paid_at": now},
                    }
                ],
                "has_more": False,
                "url": f"/v1/invoice_payments?invoice={updated['id']}",
            }
        else:
            updated["paid"] = True
            updated["charge"] = self.new_id("ch")
        return updated

    def void(self, invoice: Mapping[str, Any]) -> dict[str, Any]:
        """open/uncollectible -> void."""
        updated = self._transition(invoice, {"open", "uncollectible"}, "void")
        updated["status"] = "void"
        updated["status_transitions"]["voided_at"] = self._now()
        return updated

    def mark_uncollectible(self, invoice: Mapping[str, Any]) -> dict[str, Any]:
        """open -> uncollectible."""
        updated = self._transition(invoice, {"open"}, "mark uncollectible")
        updated["status"] = "uncollectible"
        updated["status_transitions"]["marked_uncollectible_at"] = self._now()
        return updated

    # -- partial payments, credit notes, refunds, disputes ---------------------------

    def pay_part(self, invoice: Mapping[str, Any], amount: int) -> tuple[dict[str, Any], dict[str, Any]]:
        """One payment of ``amount`` towards an open invoice: (the InvoicePayment, the
        invoice after it). The invoice is paid once ``amount_remaining`` reaches 0;
        Stripe refuses more than is remaining."""
        updated = self._transition(invoice, {"open", "uncollectible"}, "pay")
        if amount <= 0 or amount > updated["amount_remaining"]:
            raise SandboxError(f"amount {amount} must be positive and at most {updated['amount_remaining']}")
        now = self._now()
        item = {
            "id": self.new_id("inpay"), "object": "invoice_payment", "amount_paid": amount,
            "amount_requested": amount, "created": now, "currency": updated["currency"], "invoice": updated["id"],
            "is_default": False, "livemode": False,
            "payment": {"type": "payment_intent", "payment_intent": self.new_id("pi")},
            "status": "paid", "status_transitions": {"canceled_at": None, "paid_at": now},
        }
        updated["amount_paid"] += amount
        updated["amount_remaining"] -= amount
        payments = updated.setdefault("payments", {"object": "list", "data": [], "has_more": False,
                                                   "url": f"/v1/invoice_payments?invoice={updated['id']}"})
        payments["data"].append(copy.deepcopy(item))
        if updated["amount_remaining"] == 0:
            updated["status"] = "paid"
            updated["status_transitions"]["paid_at"] = now
            if not self.basil:
                updated["paid"], updated["charge"] = True, self.new_id("ch")
        return item, updated

    def credit_note(
        self,
        invoice: Mapping[str, Any],
        *,
        lines: Sequence[tuple[int, int]] = (),
        amount: int | None = None,
        memo: str = "Adjustment",
        refund: Mapping[str, Any] | None = None,
        out_of_band_amount: int = 0,
        credit_balance: bool = False,
        reason: str | None = None,
    ) -> dict[str, Any]:
        """An issued CreditNote for ``invoice``: ``lines`` credits (invoice line index,
        quantity) of its lines, ``amount`` a custom line of that net amount (taxed at
        the invoice's rate). Before payment the credit comes off the amount due; after
        payment it goes back by ``refund`` (a Refund from ``refund()``), out of band,
        or to the customer's balance."""
        if invoice.get("status") not in ("open", "paid"):
            raise SandboxError("only an open or paid invoice can be credited")
        note_id, now = self.new_id("cn"), self._now()
        invoice_lines = invoice["lines"]["data"]
        rendered = []
        for index, quantity in lines:
            source = invoice_lines[index]
            unit = source["amount"] // source["quantity"]
            net = unit * quantity
            rendered.append(self._credit_line(note_id, "invoice_line_item", net, source, quantity,
                                              source.get("description"), unit))
        if amount is not None:
            rendered.append(self._credit_line(note_id, "custom_line_item", amount, invoice_lines[0], 1, memo, amount))
        if not rendered:
            raise SandboxError("a credit note needs lines or an amount")
        subtotal = sum(line["amount"] for line in rendered)
        tax = sum(self._line_tax(line) for line in rendered)
        total = subtotal + tax
        remaining = invoice.get("amount_remaining", 0) if invoice["status"] == "open" else 0
        pre = min(total, remaining)
        post = total - pre
        refunded = refund["amount"] if refund else 0
        if refunded + out_of_band_amount > post or (post - refunded - out_of_band_amount and not credit_balance):
            raise SandboxError(f"the post-payment amount {post} must be settled by refund, out of band or balance")
        note: dict[str, Any] = {
            "id": note_id, "object": "credit_note", "amount": total, "amount_shipping": 0, "created": now,
            "currency": invoice["currency"], "customer": invoice["customer"],
            "customer_balance_transaction": self.new_id("cbtxn") if post - refunded - out_of_band_amount else None,
            "discount_amount": 0, "discount_amounts": [], "effective_at": now, "invoice": invoice["id"],
            "lines": {"object": "list", "data": rendered, "has_more": False, "total_count": len(rendered),
                      "url": f"/v1/credit_notes/{note_id}/lines"},
            "livemode": False, "memo": memo, "metadata": {},
            "number": f"{invoice.get('number') or 'CN'}-CN{len(self._tax_rates) + self._rng.randrange(1000)}",
            "out_of_band_amount": out_of_band_amount or None, "pdf": f"https://pay.stripe.com/credit_notes/{note_id}",
            "post_payment_amount": post, "pre_payment_amount": pre, "pretax_credit_amounts": [], "reason": reason,
            "shipping_cost": None, "status": "issued", "subtotal": subtotal,
            "subtotal_excluding_tax": subtotal, "total": total, "total_excluding_tax": subtotal,
            "type": "pre_payment" if not post else ("post_payment" if not pre else "mixed"), "voided_at": None,
        }
        if self.basil:
            note["refunds"] = [{"amount_refunded": refunded, "refund": refund["id"], "type": "refund",
                                "payment_record_refund": None}] if refund else []
            note["total_taxes"] = [tax_entry for line in rendered for tax_entry in line["taxes"]]
        else:
            note["refund"] = refund["id"] if refund else None
            note["tax_amounts"] = [entry for line in rendered for entry in line["tax_amounts"]]
        return note

    @staticmethod
    def apply_credit(invoice: Mapping[str, Any], note: Mapping[str, Any]) -> dict[str, Any]:
        """The invoice after ``note``: its pre-payment part comes off ``amount_remaining``
        and ``amount_due`` (Stripe: "a credit note will first reduce the invoice's
        amount_remaining (and amount_due), but not below zero"), so a later payment
        collects the rest only; an invoice credited down to nothing is paid."""
        updated = copy.deepcopy(dict(invoice))
        pre, post = note["pre_payment_amount"], note["post_payment_amount"]
        updated["amount_remaining"] -= pre
        updated["amount_due"] -= pre
        updated["pre_payment_credit_notes_amount"] = updated.get("pre_payment_credit_notes_amount", 0) + pre
        updated["post_payment_credit_notes_amount"] = updated.get("post_payment_credit_notes_amount", 0) + post
        if updated["status"] == "open" and updated["amount_remaining"] == 0:
            updated["status"] = "paid"
            updated["status_transitions"]["paid_at"] = note["created"]
        return updated

    def _credit_line(self, note_id: str, kind: str, net: int, source: Mapping[str, Any], quantity: int,
                     description: str | None, unit: int) -> dict[str, Any]:
        rates = source.get("tax_rates") or []
        taxes = source.get("taxes") or source.get("tax_amounts") or []
        rate = None
        if taxes:
            rate_ref = (taxes[0].get("tax_rate_details") or {}).get("tax_rate") if self.basil else taxes[0]["tax_rate"]
            rate = next((r for r in self._tax_rates.values() if r["id"] == rate_ref), None)
        tax = tax_half_up(net, rate["percentage"]) if rate else 0
        line: dict[str, Any] = {
            "id": self.new_id("cnli"), "object": "credit_note_line_item", "amount": net,
            "description": description, "discount_amount": 0, "discount_amounts": [],
            "invoice_line_item": source["id"] if kind == "invoice_line_item" else None, "livemode": False,
            "metadata": {}, "pretax_credit_amounts": [], "quantity": quantity,
            "tax_rates": copy.deepcopy(list(rates)), "type": kind, "unit_amount": unit,
            "unit_amount_decimal": str(unit),
        }
        if self.basil:
            line["taxes"] = [{"amount": tax, "tax_behavior": "exclusive", "tax_rate_details": {"tax_rate": rate["id"]},
                              "taxability_reason": "standard_rated", "taxable_amount": net,
                              "type": "tax_rate_details"}] if rate else []
        else:
            line["amount_excluding_tax"] = net
            line["tax_amounts"] = [{"amount": tax, "inclusive": False, "tax_rate": rate["id"],
                                    "taxability_reason": None, "taxable_amount": net}] if rate else []
        return line

    def void_credit_note(self, note: Mapping[str, Any]) -> dict[str, Any]:
        if note.get("status") != "issued":
            raise SandboxError("only an issued credit note can be voided")
        updated = copy.deepcopy(dict(note))
        updated["status"], updated["voided_at"] = "void", self._now()
        return updated

    @staticmethod
    def payment_of(invoice: Mapping[str, Any], index: int = 0) -> str:
        """The PaymentIntent (else Charge) id of a paid invoice's ``index``-th payment."""
        payments = (invoice.get("payments") or {}).get("data") or []
        if payments:
            payment = payments[index]["payment"]
            return payment.get("payment_intent") or payment["charge"]
        found = invoice.get("payment_intent") or invoice.get("charge")
        if not found:
            raise SandboxError("the invoice names no payment")
        return found

    def refund(self, payment: str, amount: int, *, currency: str = "usd", status: str = "succeeded",
               reason: str | None = "requested_by_customer") -> dict[str, Any]:
        """A Refund of ``amount`` on a PaymentIntent (``pi_``) or Charge (``ch_``) id."""
        return {
            "id": self.new_id("re"), "object": "refund", "amount": amount, "balance_transaction": None,
            "charge": payment if payment.startswith("ch_") else self.new_id("ch"), "created": self._now(),
            "currency": currency.lower(), "description": None, "destination_details": None,
            "failure_reason": None, "metadata": {}, "next_action": None,
            "payment_intent": payment if payment.startswith("pi_") else None, "pending_reason": None,
            "reason": reason, "receipt_number": None, "source_transfer_reversal": None, "status": status,
            "transfer_reversal": None,
        }

    def dispute(self, payment: str, amount: int, *, status: str = "needs_response",
                currency: str = "usd") -> dict[str, Any]:
        """A Dispute on a PaymentIntent id; ``status`` lost or won once it closes."""
        return {
            "id": self.new_id("dp"), "object": "dispute", "amount": amount, "balance_transactions": [],
            "charge": self.new_id("ch"), "created": self._now(), "currency": currency.lower(),
            "is_charge_refundable": False, "livemode": False, "metadata": {},
            "payment_intent": payment, "reason": "fraudulent", "status": status,
        }

    # -- events and delivery -----------------------------------------------------

    def event(
        self,
        type: str,
        obj: Mapping[str, Any],
        previous_attributes: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The event envelope Stripe sends, with a snapshot of ``obj``."""
        data: dict[str, Any] = {"object": copy.deepcopy(dict(obj))}
        if previous_attributes is not None:
            data["previous_attributes"] = copy.deepcopy(dict(previous_attributes))
        return {
            "id": self.new_id("evt"),
            "object": "event",
            "api_version": self.api_version,
            "created": self._now(),
            "data": data,
            "livemode": False,
            "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None},
            "type": type,
        }

    def sign(self, body: bytes, *, timestamp: int | float | None = None, secret: str | None = None) -> str:
        """The Stripe-Signature header value for ``body`` (``t=...,v1=...``)."""
        t = int(time.time() if timestamp is None else timestamp)
        return f"t={t},v1={compute_signature(body, secret or self.secret, t)}"

    def webhook_request(
        self, event: Mapping[str, Any], *, timestamp: int | float | None = None
    ) -> tuple[bytes, dict[str, str]]:
        """(raw body, headers) of the POST Stripe would send for ``event``."""
        # Stripe pretty-prints webhook bodies; the signature covers these exact bytes.
        body = json.dumps(event, indent=2).encode("utf-8")
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: self.sign(body, timestamp=timestamp),
        }
        return body, headers

    def deliver(
        self,
        event: Mapping[str, Any],
        url: str,
        *,
        client: httpx.Client | None = None,
        timestamp: int | float | None = None,
    ) -> httpx.Response:
        """POST ``event`` to ``url`` as a signed webhook; returns the endpoint's response."""
        body, headers = self.webhook_request(event, timestamp=timestamp)
        if client is not None:
            return client.post(url, content=body, headers=headers)
        with httpx.Client(timeout=10.0) as own:
            return own.post(url, content=body, headers=headers)
