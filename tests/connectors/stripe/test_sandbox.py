"""The sandbox produces what Stripe would send: it verifies, parses and maps."""

from __future__ import annotations

import datetime as dt
import json

import httpx
import pytest

from connectors.errors import InvalidSignature
from connectors.stripe.mapping import (
    customer_from_stripe,
    invoice_from_stripe,
    invoice_shape,
    payment_from_stripe_invoice,
)
from connectors.stripe.sandbox import SandboxError, StripeSandbox, duplicates, reordered, tax_half_up
from connectors.stripe.webhooks import StripeWebhookReceiver, parse_event, verify_signature

SECRET = "whsec_sandbox"
NOW = 1_750_000_000
VERSIONS = pytest.mark.parametrize(
    ("api_version", "shape"),
    [("2024-06-20", "legacy"), ("2025-03-31.basil", "basil"), ("2025-12-15.clover", "basil")],
)


def sandbox(api_version="2025-03-31.basil", seed=0):
    return StripeSandbox(SECRET, api_version=api_version, seed=seed, clock=lambda: NOW)


def open_invoice(sb, **kwargs):
    customer = sb.customer("Acme Corp", "ap@acme.example", country="US", city="Austin")
    kwargs.setdefault(
        "lines",
        [
            (
                "Pro plan",
                2,
                4999,
            ),
            ("Setup fee", 1, 1005),
        ],
    )
    draft = sb.invoice(customer, kwargs.pop("lines"), **kwargs)
    return customer, sb.finalize(draft)


class TestObjects:
    def test_ids_have_stripe_prefixes_and_are_deterministic(self):
        first, second = sandbox(seed=7), sandbox(seed=7)
        a = open_invoice(first)[1]
        b = open_invoice(second)[1]
        assert a == b
        assert a["id"].startswith("in_") and a["customer"].startswith("cus_")
        line = a["lines"]["data"][0]
        assert line["id"].startswith("il_")
        assert line["pricing"]["price_details"]["price"].startswith("price_")
        assert line["pricing"]["price_details"]["product"].startswith("prod_")
        assert line["taxes"][0]["tax_rate_details"]["tax_rate"].startswith("txr_")
        assert open_invoice(sandbox(seed=8))[1]["id"] != a["id"]

    @VERSIONS
    def test_rendered_shape_follows_the_api_version(self, api_version, shape):
        _, invoice = open_invoice(sandbox(api_version))
        assert invoice_shape(invoice) == shape
        line = invoice["lines"]["data"][0]
        if shape == "basil":
            assert "subscription" not in invoice and "price" not in line and "tax_amounts" not in line
            assert "total_taxes" in invoice
        else:
            assert "parent" not in invoice and "pricing" not in line and "taxes" not in line
            assert line["price"]["object"] == "price"

    def test_tax_is_per_line_half_up(self):
        assert tax_half_up(4999 * 2, 10) == 1000  # 999.8
        assert tax_half_up(1005, 10) == 101  # 100.5 rounds up
        assert tax_half_up(1004, 10) == 100  # 100.4
        _, invoice = open_invoice(sandbox())
        assert [line["taxes"][0]["amount"] for line in invoice["lines"]["data"]] == [1000, 101]
        assert (invoice["subtotal"], invoice["total"]) == (11003, 12104)

    def test_lifecycle(self):
        sb = sandbox()
        customer = sb.customer("Acme Corp", "ap@acme.example")
        draft = sb.invoice(customer, [("Seat", 1, 1000)], number="ACME-0042")
        assert draft["status"] == "draft" and draft["number"] is None
        opened = sb.finalize(draft)
        assert draft["status"] == "draft"  # inputs are not mutated
        assert opened["status"] == "open" and opened["number"] == "ACME-0042"
        assert opened["status_transitions"]["finalized_at"] == NOW
        paid = sb.pay(opened)
        assert paid["status"] == "paid"
        assert (paid["amount_paid"], paid["amount_remaining"]) == (1100, 0)
        assert paid["status_transitions"]["paid_at"] == NOW
        voided = sb.void(sb.finalize(sb.invoice(customer, [("Seat", 1, 1000)])))
        assert voided["status"] == "void" and voided["status_transitions"]["voided_at"] == NOW
        with pytest.raises(SandboxError):
            sb.pay(draft)
        with pytest.raises(SandboxError):
            sb.void(paid)
        with pytest.raises(SandboxError):
            sb.finalize(opened)

    def test_numbers_are_assigned_in_sequence(self):
        sb = sandbox()
        customer = sb.customer("A", None)
        first = sb.finalize(sb.invoice(customer, [("x", 1, 100)]))
        second = sb.finalize(sb.invoice(customer, [("x", 1, 100)]))
        assert first["number"].endswith("-0001") and second["number"].endswith("-0002")

    def test_event_envelope(self):
        sb = sandbox()
        customer = sb.customer("A", "a@example.com")
        event = sb.event("customer.updated", customer, previous_attributes={"name": "Old"})
        assert event["id"].startswith("evt_")
        assert event["object"] == "event"
        assert event["api_version"] == "2025-03-31.basil"
        assert event["created"] == NOW
        assert event["data"] == {"object": customer, "previous_attributes": {"name": "Old"}}
        assert event["livemode"] is False and event["pending_webhooks"] == 1
        assert event["request"] == {"id": None, "idempotency_key": None}
        assert event["type"] == "customer.updated"
        assert "previous_attributes" not in sb.event("customer.created", customer)["data"]


class TestWebhooks:
    @VERSIONS
    def test_events_verify_parse_and_map(self, api_version, shape):
        sb = sandbox(api_version)
        customer, opened = open_invoice(sb, currency="eur", tax_percent=19)
        paid = sb.pay(opened)
        for event_type, obj in (("invoice.finalized", opened), ("invoice.paid", paid)):
            body, headers = sb.webhook_request(sb.event(event_type, obj), timestamp=NOW)
            assert headers["Content-Type"] == "application/json"
            verify_signature(body, headers["Stripe-Signature"], [SECRET], now=NOW)
            event = parse_event(body)
            assert event.type == event_type
            assert event.subject == f"invoice:{obj['id']}"
            invoice = invoice_from_stripe(event.payload["data"]["object"])
            assert invoice.currency == "EUR"
            assert invoice.customer.display_name == "Acme Corp"
            assert invoice.lines[0].tax_amount == 1900  # 9998 * 19 % = 1899.62
            assert invoice.total == invoice.subtotal + invoice.tax
        assert invoice.status == "paid"
        payment = payment_from_stripe_invoice(paid)
        assert payment.amount == invoice.total
        assert payment.source.external_id.startswith("pi_")

    def test_both_versions_map_to_the_same_business_content(self):
        def canonical(api_version):
            _, invoice = open_invoice(sandbox(api_version), currency="jpy", lines=[("Seat", 3, 1500)])
            return invoice_from_stripe(invoice).model_dump(exclude={"source", "customer", "number", "lines"})

        assert canonical("2024-06-20") == canonical("2025-03-31.basil")
        assert canonical("2025-03-31.basil")["total"] == 4950

    @VERSIONS
    def test_kwd_and_untaxed(self, api_version, shape):
        _, invoice = open_invoice(
            sandbox(api_version), currency="kwd", lines=[("Support", 2, 1250)], tax_percent=None
        )
        mapped = invoice_from_stripe(invoice)
        assert (mapped.currency, mapped.subtotal, mapped.tax, mapped.total) == ("KWD", 2500, 0, 2500)

    @VERSIONS
    def test_subscription_reference(self, api_version, shape):
        _, invoice = open_invoice(sandbox(api_version), subscription="sub_1Sandbox")
        assert invoice_from_stripe(invoice).subscription_ref == "sub_1Sandbox"

    def test_uncollectible_then_paid(self):
        sb = sandbox("2024-06-20")
        _, opened = open_invoice(sb)
        uncollectible = sb.mark_uncollectible(opened)
        assert invoice_from_stripe(uncollectible).status == "uncollectible"
        paid = sb.pay(uncollectible)
        assert payment_from_stripe_invoice(paid).source.external_id == paid["payment_intent"]

    def test_void_event_maps(self):
        sb = sandbox()
        _, opened = open_invoice(sb)
        mapped = invoice_from_stripe(sb.void(opened))
        assert mapped.status == "void" and mapped.voided_at == dt.datetime.fromtimestamp(NOW, tz=dt.UTC)

    def test_customer_event_maps(self):
        sb = sandbox()
        customer = sb.customer(
            "Acme GmbH", "ap@acme.example", country="DE", tax_ids=[("eu_vat", "DE123456789")]
        )
        body, headers = sb.webhook_request(sb.event("customer.created", customer), timestamp=NOW)
        StripeWebhookReceiver(tolerance=0).verify(body=body, headers=headers, secrets=[SECRET])
        [event] = StripeWebhookReceiver().parse(body)
        mapped = customer_from_stripe(event.payload["data"]["object"])
        assert mapped.display_name == "Acme GmbH" and mapped.tax_ids[0].value == "DE123456789"

    def test_default_timestamp_is_now_and_verifies_with_the_real_clock(self):
        sb = sandbox()
        body, headers = sb.webhook_request(sb.event("customer.created", sb.customer("A", None)))
        verify_signature(body, headers["Stripe-Signature"], [SECRET])

    def test_signed_with_another_secret_fails(self):
        sb = sandbox()
        body = b'{"id": "evt_1"}'
        with pytest.raises(InvalidSignature):
            verify_signature(body, sb.sign(body, timestamp=NOW, secret="whsec_other"), [SECRET], now=NOW)
        verify_signature(body, sb.sign(body, timestamp=NOW), [SECRET], now=NOW)

    def test_deliver_posts_the_signed_body(self):
        seen = {}

        def handler(request: httpx.Request) -> httpx.Response:
            seen["body"] = request.content
            seen["headers"] = request.headers
            verify_signature(request.content, request.headers.get("stripe-signature"), [SECRET])
            return httpx.Response(200, json={"received": True})

        sb = sandbox()
        event = sb.event("customer.created", sb.customer("A", None))
        with httpx.Client(transport=httpx.MockTransport(handler)) as client:
            response = sb.deliver(event, "http://hub.test/webhooks/stripe", client=client)
        assert response.status_code == 200
        assert json.loads(seen["body"]) == event
        assert seen["headers"]["content-type"] == "application/json"


class TestFaults:
    def test_duplicates(self):
        events = [{"id": "evt_1"}, {"id": "evt_2"}]
        assert [e["id"] for e in duplicates(events, 3)] == ["evt_1"] * 3 + ["evt_2"] * 3
        assert StripeSandbox.duplicates is duplicates or StripeSandbox.duplicates == duplicates

    def test_reordered_is_a_seeded_permutation(self):
        events = [{"id": f"evt_{i}"} for i in range(10)]
        first = reordered(events, seed=3)
        assert first == reordered(events, seed=3)
        assert sorted(e["id"] for e in first) == sorted(e["id"] for e in events)
        assert [e["id"] for e in first] != [e["id"] for e in events]
