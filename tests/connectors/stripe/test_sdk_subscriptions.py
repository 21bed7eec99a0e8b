"""The API sandbox's subscriptions, items, proration and their invoices, driven by
Stripe's own SDK (``stripe``) over real HTTP: the independent check that the sandbox
speaks Stripe's wire format for every subscription endpoint it serves."""

import pytest
import stripe

from connectors.stripe.api_sandbox import StripeApiSandbox

API_KEY = "sk_test_sdk"


@pytest.fixture
def api():
    served = StripeApiSandbox(api_key=API_KEY)
    served.serve()
    yield served
    served.stop()


@pytest.fixture
def client(api):
    return stripe.StripeClient(API_KEY, base_addresses={"api": api.url}, max_network_retries=0)


@pytest.fixture
def prices(client):
    product = client.v1.products.create(params={"name": "Pro"})
    monthly = {"interval": "month"}
    return {
        "pro": client.v1.prices.create(params={"product": product.id, "currency": "eur", "unit_amount": 10_000,
                                               "recurring": monthly}).id,
        "team": client.v1.prices.create(params={"product": product.id, "currency": "eur", "unit_amount": 30_000,
                                                "recurring": monthly}).id,
        "once": client.v1.prices.create(params={"product": product.id, "currency": "eur", "unit_amount": 500}).id,
    }


@pytest.fixture
def customer(client):
    return client.v1.customers.create(params={"name": "Acme GmbH"}).id


def subscribe(client, customer, price, quantity=2, **params):
    return client.v1.subscriptions.create(params={
        "customer": customer, "items": [{"price": price, "quantity": quantity}],
        "metadata": {"hub_subscription": "7"}, **params})


def test_create_a_subscription_invoices_and_pays_its_first_period(client, api, prices, customer):
    created = subscribe(client, customer, prices["pro"])
    assert isinstance(created, stripe.Subscription) and created.id.startswith("sub_")
    assert (created.status, created.metadata["hub_subscription"]) == ("active", "7")
    [item] = created["items"].data
    assert (item.price.id, item.quantity) == (prices["pro"], 2)
    assert item.current_period_end > item.current_period_start
    invoice = client.v1.invoices.retrieve(created.latest_invoice)
    assert (invoice.status, invoice.billing_reason, invoice.total, invoice.amount_paid) == (
        "paid", "subscription_create", 20_000, 20_000)
    assert invoice.parent.subscription_details.subscription == created.id
    assert [e["type"] for e in api.billing.events] == ["invoice.finalized", "invoice.paid",
                                                         "customer.subscription.created"]
    assert client.v1.subscriptions.retrieve(created.id).id == created.id


def test_the_same_idempotency_key_returns_the_first_subscription(client, api, prices, customer):
    params = {"customer": customer, "items": [{"price": prices["pro"], "quantity": 1}]}
    first = client.v1.subscriptions.create(params=params, options={"idempotency_key": "k-1"})
    again = client.v1.subscriptions.create(params=params, options={"idempotency_key": "k-1"})
    assert first.id == again.id and len(api.catalog.subscriptions) == 1
    with pytest.raises(stripe.IdempotencyError, match="same parameters"):
        client.v1.subscriptions.create(params={**params, "metadata": {"x": "1"}}, options={"idempotency_key": "k-1"})


def test_a_trial_starts_trialing_with_a_zero_invoice(client, api, prices, customer):
    trial_end = api.objects._now() + 14 * 86400
    created = subscribe(client, customer, prices["pro"], trial_end=trial_end)
    assert (created.status, created.trial_end) == ("trialing", trial_end)
    assert client.v1.invoices.retrieve(created.latest_invoice).total == 0


def test_an_upgrade_with_always_invoice_bills_the_prorated_difference(client, api, prices, customer):
    created = subscribe(client, customer, prices["pro"])
    api.billing.period_elapse(created.id, 0.5)
    [item] = created["items"].data
    now = api.objects._now()
    updated = client.v1.subscriptions.update(created.id, params={
        "items": [{"id": item.id, "price": prices["team"], "quantity": 2}], "proration_behavior": "always_invoice",
        "proration_date": now})
    assert updated["items"].data[0].price.id == prices["team"] and updated["items"].data[0].id == item.id
    invoice = client.v1.invoices.retrieve(updated.latest_invoice)
    assert invoice.billing_reason == "subscription_update"
    # Half a period: -10 000 unused Pro, +30 000 remaining Team.
    assert [line.amount for line in invoice.lines.data] == [-10_000, 30_000]
    assert (invoice.total, invoice.status) == (20_000, "paid")
    assert all(line.parent.subscription_item_details.proration for line in invoice.lines.data)
    updated_event = api.billing.events_of("customer.subscription.updated")[-1]
    assert updated_event["data"]["previous_attributes"]["items"]["data"][0]["price"]["id"] == prices["pro"]


def test_a_downgrade_credits_the_customer_balance_and_asks_for_nothing(client, api, prices, customer):
    created = subscribe(client, customer, prices["team"], quantity=1)
    api.billing.period_elapse(created.id, 0.5)
    item = created["items"].data[0]
    updated = client.v1.subscriptions.update(created.id, params={
        "items": [{"id": item.id, "price": prices["pro"]}], "proration_behavior": "always_invoice",
        "proration_date": api.objects._now()})
    invoice = client.v1.invoices.retrieve(updated.latest_invoice)
    assert (invoice.total, invoice.amount_due, invoice.status) == (-10_000, 0, "open")
    assert client.v1.customers.retrieve(customer).balance == -10_000


def test_create_prorations_keeps_the_proration_for_the_next_invoice(client, api, prices, customer):
    created = subscribe(client, customer, prices["pro"], quantity=1)
    api.billing.period_elapse(created.id, 0.5)
    item = created["items"].data[0]
    updated = client.v1.subscriptions.update(created.id, params={"items": [{"id": item.id, "quantity": 3}],
                                                                 "proration_date": api.objects._now()})
    assert updated.latest_invoice == created.latest_invoice
    renewed = api.billing.period_advance(created.id)
    invoice = client.v1.invoices.retrieve(renewed["latest_invoice"])
    assert invoice.billing_reason == "subscription_cycle"
    assert [line.amount for line in invoice.lines.data] == [-5_000, 15_000, 30_000]


def test_a_declined_payment_refuses_the_change_and_leaves_the_subscription(client, api, prices, customer):
    created = subscribe(client, customer, prices["pro"])
    api.billing.period_elapse(created.id, 0.5)
    api.billing.decline_next_payment()
    item = created["items"].data[0]
    with pytest.raises(stripe.CardError) as refused:
        client.v1.subscriptions.update(created.id, params={
            "items": [{"id": item.id, "price": prices["team"]}], "proration_behavior": "always_invoice",
            "payment_behavior": "error_if_incomplete"})
    assert refused.value.code == "card_declined"
    assert client.v1.subscriptions.retrieve(created.id)["items"].data[0].price.id == prices["pro"]


def test_cancel_at_period_end_then_the_period_ends_without_an_invoice(client, api, prices, customer):
    created = subscribe(client, customer, prices["pro"])
    updated = client.v1.subscriptions.update(created.id, params={"cancel_at_period_end": True})
    assert updated.cancel_at_period_end is True and updated.cancel_at == created["items"].data[0].current_period_end
    invoices = len(api.billing.invoices)
    ended = api.billing.period_advance(created.id)
    assert ended["status"] == "canceled" and len(api.billing.invoices) == invoices
    assert api.billing.events[-1]["type"] == "customer.subscription.deleted"


def test_cancel_now_and_a_cancelled_subscription_refuses_changes(client, api, prices, customer):
    created = subscribe(client, customer, prices["pro"])
    cancelled = client.v1.subscriptions.cancel(created.id)
    assert (cancelled.status, cancelled.canceled_at is not None) == ("canceled", True)
    with pytest.raises(stripe.InvalidRequestError, match="canceled subscription"):
        client.v1.subscriptions.update(created.id, params={"metadata": {"x": "1"}, "cancel_at_period_end": True})


def test_invalid_requests_answer_as_stripe_does(client, prices, customer):
    with pytest.raises(stripe.InvalidRequestError, match="No such price") as missing:
        subscribe(client, customer, "price_missing")
    assert missing.value.param == "items[0][price]"
    with pytest.raises(stripe.InvalidRequestError, match="one-time price"):
        subscribe(client, customer, prices["once"])
    with pytest.raises(stripe.InvalidRequestError, match="No such customer"):
        subscribe(client, "cus_missing", prices["pro"])
    with pytest.raises(stripe.InvalidRequestError, match="No such subscription"):
        client.v1.subscriptions.retrieve("sub_missing")
    with pytest.raises(stripe.InvalidRequestError, match="No such invoice"):
        client.v1.invoices.retrieve("in_missing")
    with pytest.raises(stripe.InvalidRequestError, match="unknown parameter"):
        client.v1.subscriptions.create(params={"customer": customer, "items": [{"price": prices["pro"]}],
                                               "coupon": "x"})


def test_list_subscriptions_of_a_customer(client, prices, customer):
    created = subscribe(client, customer, prices["pro"])
    other = client.v1.customers.create(params={"name": "Other"}).id
    subscribe(client, other, prices["pro"])
    listed = client.v1.subscriptions.list(params={"customer": customer, "status": "all"})
    assert [s.id for s in listed.data] == [created.id]
