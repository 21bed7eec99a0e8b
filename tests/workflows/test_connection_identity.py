"""Every reference names a connection, not a vendor: a billing connection called
``stripe-live``, two Stripe accounts side by side, and two ERPs active at once each
keep their own records, and nothing is bound under two names."""

import random

import pytest

from canonical.models import CrossReference, Customer, Invoice
from connectors.services import connection_upsert
from connectors.stripe.sandbox import StripeSandbox
from integration_hub.runtime.models import Delivery, ExceptionRecord, InboundEvent
from tests.helpers import drain

pytestmark = pytest.mark.django_db(transaction=True)

LIVE_SECRET, TEST_SECRET = "whsec_live_0123456789abcdef", "whsec_test_fedcba9876543210"


def stripe(name: str, secret: str):
    connection_upsert(name=name, vendor="stripe", role="billing", config={},
                      credentials={"webhook_secrets": [secret]})
    return StripeSandbox(secret, seed=random.getrandbits(64))


def send(client, sandbox, event, path="stripe"):
    body, headers = sandbox.webhook_request(event)
    return client.post(f"/api/webhooks/{path}/", data=body, content_type="application/json",
                       headers={k: v for k, v in headers.items() if k != "Content-Type"})


def finalized(sandbox, currency="usd"):
    customer = sandbox.customer("Grace Hopper", "grace@example.com", country="US")
    return sandbox.finalize(sandbox.invoice(customer, [("Seats", 3, 2500)], currency=currency))


@pytest.fixture
def hub(legal_entities, memory_erp, sent_tasks):
    return memory_erp


def test_a_connection_not_named_after_its_vendor_binds_everything_under_its_own_name(hub, client, sent_tasks):
    live = stripe("stripe-live", LIVE_SECRET)
    invoice = finalized(live)
    assert send(client, live, live.event("invoice.finalized", invoice)).status_code == 200
    drain(sent_tasks)

    assert InboundEvent.objects.get().source == "stripe-live"
    record = Invoice.objects.get()
    assert (record.source_system, record.source_id) == ("stripe-live", invoice["id"])
    assert set(CrossReference.objects.values_list("system", "object_type")) == {
        ("stripe-live", "customer"), ("erp", "invoice"), ("erp", "customer"),
    }
    assert not CrossReference.objects.filter(system="stripe").exists()
    assert Delivery.objects.get().status == "posted"


def test_two_accounts_of_one_vendor_are_told_apart_by_their_signatures(hub, client, sent_tasks):
    live, test = stripe("stripe-live", LIVE_SECRET), stripe("stripe-test", TEST_SECRET)
    for sandbox in (live, test):
        assert send(client, sandbox, sandbox.event("invoice.finalized", finalized(sandbox))).status_code == 200
    # The connection's own name works as the webhook path too.
    assert send(client, test, test.event("invoice.finalized", finalized(test)), path="stripe-test").status_code == 200
    drain(sent_tasks)

    assert sorted(InboundEvent.objects.values_list("source", flat=True)) == ["stripe-live", "stripe-test", "stripe-test"]
    assert Customer.objects.count() == 3  # one per account's customer: none merged across accounts by id
    assert sorted(Invoice.objects.values_list("source_system", flat=True)) == ["stripe-live", "stripe-test",
                                                                              "stripe-test"]


def test_a_webhook_signed_by_no_connection_of_the_vendor_is_refused(hub, client):
    stripe("stripe-live", LIVE_SECRET)
    forger = StripeSandbox("whsec_someone_else_entirely", seed=1)
    response = send(client, forger, forger.event("invoice.finalized", finalized(forger)))
    assert response.status_code == 400 and response.json()["error"] == "invalid_signature"
    assert not InboundEvent.objects.exists()


def test_two_erps_active_at_once_each_book_their_legal_entities(legal_entities, memory_erp, client, sent_tasks):
    connection_upsert(name="erp-eu", vendor="memory-erp", role="erp", config={}, credentials={})
    legal_entities["EU"].erp_connection = "erp-eu"
    legal_entities["EU"].save()
    legal_entities["US"].erp_connection = "erp"
    legal_entities["US"].save()
    live = stripe("stripe-live", LIVE_SECRET)
    usd, eur = finalized(live, "usd"), finalized(live, "eur")
    for invoice in (usd, eur):
        send(client, live, live.event("invoice.finalized", invoice))
    drain(sent_tasks)

    targets = dict(Delivery.objects.values_list("object_id", "connection__name"))
    assert targets == {Invoice.objects.get(source_id=usd["id"]).pk: "erp", Invoice.objects.get(source_id=eur["id"]).pk: "erp-eu"}
    assert set(CrossReference.objects.filter(object_type="invoice").values_list("system", flat=True)) == {"erp", "erp-eu"}
    assert Delivery.objects.filter(status="posted").count() == 2


def test_two_erps_and_an_entity_that_names_neither_is_an_exception_for_it(legal_entities, memory_erp, client,
                                                                          sent_tasks):
    connection_upsert(name="erp-eu", vendor="memory-erp", role="erp", config={}, credentials={})
    live = stripe("stripe-live", LIVE_SECRET)
    send(client, live, live.event("invoice.finalized", finalized(live)))
    drain(sent_tasks)

    record = ExceptionRecord.objects.get()
    assert (record.owner_team, record.category) == ("it_operations", "configuration")
    assert "several erp connections are active" in record.summary
    assert not Delivery.objects.exists()
