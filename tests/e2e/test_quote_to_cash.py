"""Quote to cash on the whole stack: signed Salesforce change events → inbox → a real
Celery worker (two processes) → the Stripe API sandbox and the real Tryton ERP, the
outcome written back to the Salesforce sandbox. Assertions read the targets."""

import uuid

import pytest

from canonical.models import Amendment, Customer, Invoice, Subscription
from connectors.services import connection_upsert
from connectors.stripe.api_subscriptions import _half_up
from integration_hub.runtime.models import Delivery, InboundEvent
from tests.conftest import WEBHOOK_SECRET, wait_for
from tests.crm.conftest import post_salesforce, salesforce_org, stripe_api  # noqa: F401 - fixtures
from tests.quote_to_cash.conftest import release_price

pytestmark = [pytest.mark.e2e, pytest.mark.stack, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def hub(celery_worker_process, tryton_server, legal_entities, salesforce_org, stripe_api):  # noqa: F811
    connection_upsert(name="tryton", vendor="tryton", role="erp", config=tryton_server.connection_config(),
                      credentials=tryton_server.credentials())
    connection_upsert(name="salesforce", vendor="salesforce", role="crm", config=salesforce_org.connection_config(),
                      credentials=salesforce_org.credentials())
    connection_upsert(name="stripe", vendor="stripe", role="billing", config=stripe_api.connection_config(),
                      credentials={"api_key": stripe_api.api_key, "webhook_secrets": [WEBHOOK_SECRET]})
    suffix = uuid.uuid4().hex[:6]  # the Tryton server lives for the session
    return {name: release_price(stripe_api, f"{name}-{suffix}", f"{name.upper()}-{suffix}", amount,
                                erp="tryton")[0]
            for name, amount in (("pro", 10_000), ("team", 30_000), ("starter", 3_000))}


def settled():
    return (not InboundEvent.objects.filter(status="received").exists()
            and not Delivery.objects.exclude(status__in=["posted", "dead"]).exists())


def line(prices, name, quantity):
    price = prices[name].price
    return {"ProductCode": price.product.sku, "Quantity": quantity, "Hub_Price_Ref__c": price.source_id}


@pytest.fixture
def sold(hub, salesforce_org, stripe_api, post_salesforce, post_webhook):  # noqa: F811
    """An account onboarded through its change event, and its won Opportunity for 5 Pro seats."""
    account = salesforce_org.account_create(f"Initech {uuid.uuid4().hex[:6]} GmbH", BillingCountry="DE",
                                            BillingCity="Berlin", CurrencyIsoCode="EUR")
    post_salesforce(salesforce_org.last_event(account["Id"]))
    wait_for(lambda: Customer.objects.exists() and settled(), what="the account to be onboarded")
    opportunity = salesforce_org.opportunity_create(account["Id"], "Initech – Pro", lines=[line(hub, "pro", 5)])
    salesforce_org.opportunity_close_won(opportunity["Id"])
    for _ in range(2):  # the relay delivers at least once
        assert post_salesforce(salesforce_org.last_event(opportunity["Id"])).status_code == 200
    wait_for(lambda: salesforce_org.opportunities[opportunity["Id"]]["Hub_Subscription_Id__c"],
             what="the subscription id in Salesforce")
    for event in list(stripe_api.billing.events):
        assert post_webhook(event).status_code == 200
    wait_for(settled, what="the first invoice")
    return {"account": account, "opportunity": opportunity, "seen": len(stripe_api.billing.events)}


def amendment_event(salesforce_org, sold, number, lines, **fields):  # noqa: F811
    opportunity = salesforce_org.opportunity_create(
        sold["account"]["Id"], f"Initech – amendment {number}", lines=lines, stage="Closed Won",
        Amends__c=sold["opportunity"]["Id"], Amendment_Number__c=number, **fields)
    return opportunity, salesforce_org.last_event(opportunity["Id"])


def deliver_billing_events(stripe_api, sold, post_webhook):  # noqa: F811
    for event in stripe_api.billing.events[sold["seen"]:]:
        assert post_webhook(event).status_code == 200
    sold["seen"] = len(stripe_api.billing.events)


def test_closed_won_is_one_subscription_its_id_in_the_crm_and_the_first_invoice_posted_once(
    sold, erp, stripe_api, salesforce_org  # noqa: F811
):
    [billed] = stripe_api.catalog.subscriptions.values()
    subscription = Subscription.objects.get()
    assert (subscription.billing_id, subscription.status) == (billed["id"], "active")
    record = salesforce_org.opportunities[sold["opportunity"]["Id"]]
    assert (record["Hub_Subscription_Id__c"], record["Hub_Subscription_Status__c"]) == (billed["id"], "active")
    [first] = erp.invoices(reference=billed["latest_invoice"])
    assert (first["state"], first["total_amount"]) == ("paid", 500)  # invoice.paid followed


def test_upgrade_downgrade_and_cancellation_at_period_end(
    sold, erp, hub, stripe_api, salesforce_org, post_salesforce, post_webhook  # noqa: F811
):
    subscription = Subscription.objects.get()
    stripe_api.billing.period_elapse(subscription.billing_id, 0.5)
    item = dict(stripe_api.catalog.subscriptions[subscription.billing_id]["items"]["data"][0])

    upgrade, event = amendment_event(salesforce_org, sold, 1, [line(hub, "team", 5)])
    post_salesforce(event)
    wait_for(lambda: Amendment.objects.filter(status="done").count() == 1, what="the upgrade")
    deliver_billing_events(stripe_api, sold, post_webhook)
    wait_for(settled, what="billing's webhooks")
    amendment = Amendment.objects.get(sequence=1)
    remaining = item["current_period_end"] - int(amendment.created_at.timestamp())
    length = item["current_period_end"] - item["current_period_start"]
    expected = _half_up(-50_000 * remaining, length) + _half_up(150_000 * remaining, length)
    [proration] = erp.invoices(reference=amendment.invoice_ref)
    # Billing's invoice.paid for it followed: posted, then paid, once.
    assert (proration["state"], proration["total_amount"] * 100) == ("paid", expected)
    assert salesforce_org.opportunities[upgrade["Id"]]["Hub_Amendment_Status__c"] == "applied"

    downgrade, event = amendment_event(salesforce_org, sold, 2, [line(hub, "starter", 5)])
    post_salesforce(event)
    wait_for(lambda: Amendment.objects.filter(status="done").count() == 2, what="the downgrade")
    credit = Amendment.objects.get(sequence=2)
    [note] = erp.invoices(reference=credit.invoice_ref)
    assert note["total_amount"] < 0 and Invoice.objects.get(source_id=credit.invoice_ref).total < 0

    _, event = amendment_event(salesforce_org, sold, 3, [], Cancellation__c="period_end")
    post_salesforce(event)
    wait_for(lambda: Amendment.objects.filter(status="done").count() == 3, what="the cancellation")
    invoices = len(stripe_api.billing.invoices)
    stripe_api.billing.period_advance(subscription.billing_id)
    deliver_billing_events(stripe_api, sold, post_webhook)
    wait_for(lambda: Subscription.objects.get().status == "canceled", what="the end of the period")
    assert len(stripe_api.billing.invoices) == invoices
    wait_for(settled, what="the last webhooks")
    assert Invoice.objects.count() == 3  # the first period, the upgrade, the downgrade


def test_three_amendments_in_reverse_order_with_two_workers_apply_in_crm_order(
    sold, hub, stripe_api, salesforce_org, post_salesforce  # noqa: F811
):
    events = [amendment_event(salesforce_org, sold, n, [line(hub, "pro", 5 + n)])[1] for n in (1, 2, 3)]
    for event in reversed(events):
        assert post_salesforce(event).status_code == 200
    wait_for(lambda: Amendment.objects.filter(status="done").count() == 3, timeout=120, what="three amendments")

    amendments = list(Amendment.objects.order_by("sequence"))
    applied = [key for method, path, key in stripe_api.requests
               if method == "POST" and path.startswith("/v1/subscriptions/") and key]
    assert applied == [f"amendment.apply:stripe:amendment:{a.pk}:v1" for a in amendments]
    billed = stripe_api.catalog.subscriptions[Subscription.objects.get().billing_id]
    assert billed["items"]["data"][0]["quantity"] == 8


def test_a_billing_refusal_shows_in_the_crm_and_posts_nothing(
    sold, erp, hub, stripe_api, salesforce_org, post_salesforce  # noqa: F811
):
    subscription = Subscription.objects.get()
    stripe_api.billing.period_elapse(subscription.billing_id, 0.5)
    stripe_api.billing.decline_next_payment()
    refused, event = amendment_event(salesforce_org, sold, 1, [line(hub, "team", 5)])
    post_salesforce(event)
    wait_for(lambda: salesforce_org.opportunities[refused["Id"]]["Hub_Amendment_Status__c"], what="the CRM report")

    record = salesforce_org.opportunities[refused["Id"]]
    assert record["Hub_Amendment_Status__c"] == "failed" and "declined" in record["Hub_Amendment_Detail__c"]
    assert Amendment.objects.get().status == "failed"
    assert Invoice.objects.count() == 1
    billed = stripe_api.catalog.subscriptions[subscription.billing_id]
    assert len(erp.invoices(reference=billed["latest_invoice"])) == 1  # the first invoice only
