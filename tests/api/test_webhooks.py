"""Webhook ingress: 2xx only after the inbox row is committed, 4xx with a reason for
anything wrong, never a 500, never a second row for a duplicate."""

import json
import time

import pytest

from integration_hub.runtime.models import InboundEvent

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def finalized(sandbox):
    customer = sandbox.customer("Ada Lovelace", "ada@example.com")
    invoice = sandbox.finalize(sandbox.invoice(customer, [("Plan", 1, 5000)], currency="usd"))
    return sandbox.event("invoice.finalized", invoice)


def test_a_signed_event_is_stored_and_enqueued_before_the_200(post_webhook, finalized, stripe_connection, sent_tasks):
    response = post_webhook(finalized)

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "accepted" and body["event_id"] == finalized["id"]
    row = InboundEvent.objects.get(source="stripe", external_id=finalized["id"])
    assert row.status == "received" and row.event_type == "invoice.finalized"
    assert str(row.transaction_id) == body["transaction_id"]
    assert row.transaction.subject == f"stripe:invoice:{finalized['data']['object']['id']}"
    assert sent_tasks == [("hub.process_inbound", row.pk, None)]


def test_a_duplicate_is_acknowledged_without_a_second_row_or_task(post_webhook, finalized, stripe_connection, sent_tasks):
    first, second = post_webhook(finalized), post_webhook(finalized)

    assert (first.status_code, second.status_code) == (200, 200)
    assert second.json()["status"] == "duplicate"
    assert InboundEvent.objects.count() == 1
    assert len(sent_tasks) == 1


def test_events_about_one_invoice_share_a_business_transaction(post_webhook, sandbox, stripe_connection, sent_tasks):
    invoice = sandbox.finalize(sandbox.invoice("cus_1", [("Plan", 1, 5000)]))
    a = post_webhook(sandbox.event("invoice.finalized", invoice)).json()
    b = post_webhook(sandbox.event("invoice.paid", sandbox.pay(invoice))).json()
    assert a["transaction_id"] == b["transaction_id"]


@pytest.mark.parametrize(
    "header, reason",
    [
        (None, "missing"),
        ("garbage", "timestamp"),
        ("t=1700000000,v1=" + "0" * 64, "signature"),
    ],
)
def test_bad_signatures_are_400_with_a_reason(client, finalized, stripe_connection, header, reason):
    headers = {"Stripe-Signature": header} if header else {}
    response = client.post(
        "/api/webhooks/stripe/", data=json.dumps(finalized), content_type="application/json", headers=headers
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_signature"
    assert reason in response.json()["detail"].lower()
    assert InboundEvent.objects.count() == 0


def test_a_stale_timestamp_is_rejected(client, sandbox, finalized, stripe_connection):
    body, headers = sandbox.webhook_request(finalized, timestamp=time.time() - 301)
    response = client.post(
        "/api/webhooks/stripe/", data=body, content_type="application/json",
        headers={"Stripe-Signature": headers["Stripe-Signature"]},
    )
    assert response.status_code == 400
    assert "tolerance" in response.json()["detail"]


def test_a_signed_but_malformed_body_is_400(client, sandbox, stripe_connection):
    body = b'{"id": "evt_1", "object": "event", '
    response = client.post(
        "/api/webhooks/stripe/", data=body, content_type="application/json",
        headers={"Stripe-Signature": sandbox.sign(body)},
    )
    assert response.status_code == 400
    assert response.json()["error"] == "malformed_payload"


def test_an_oversized_body_is_413(client, sandbox, stripe_connection, settings):
    settings.HUB_WEBHOOK_MAX_BYTES = 1000
    body = json.dumps({"padding": "x" * 2000}).encode()
    response = client.post(
        "/api/webhooks/stripe/", data=body, content_type="application/json",
        headers={"Stripe-Signature": sandbox.sign(body)},
    )
    assert response.status_code == 413


def test_rotated_secrets_are_all_accepted(post_webhook, finalized, stripe_connection, sent_tasks):
    credentials = stripe_connection.credentials
    stripe_connection.set_credentials({"webhook_secrets": ["whsec_new_one", *credentials["webhook_secrets"]]})
    stripe_connection.save()
    assert post_webhook(finalized).status_code == 200


def test_an_unknown_source_is_404(client):
    assert client.post("/api/webhooks/nope/", data=b"{}", content_type="application/json").status_code == 404


def test_a_source_without_a_configured_secret_is_503_so_the_vendor_retries(post_webhook, finalized):
    response = post_webhook(finalized)
    assert response.status_code == 503
    assert response.json()["error"] == "not_configured"


def test_only_post_is_allowed(client):
    assert client.get("/api/webhooks/stripe/").status_code == 405
