"""Won deals become orders and subscriptions in billing, reported back to the CRM."""

import pytest

from canonical.models import Order, Subscription
from integration_hub.runtime.models import Delivery, ExceptionRecord, InboundEvent
from tests.helpers import drain
from tests.quote_to_cash.conftest import close_won

pytestmark = pytest.mark.django_db(transaction=True)

PRO = {"ProductCode": "PRO", "Quantity": 5, "Hub_Price_Ref__c": "pro-monthly-eur"}


def test_a_closed_won_opportunity_becomes_one_subscription_in_stripe_with_its_id_in_salesforce(
    hub, account, catalog, salesforce_org, stripe_api, post_salesforce, sent_tasks
):
    opportunity = close_won(salesforce_org, post_salesforce, sent_tasks, account["Id"], [PRO])

    order = Order.objects.get()
    subscription = Subscription.objects.get()
    assert (order.status, order.source_id, [line.quantity for line in order.lines.all()]) == (
        "fulfilled", opportunity["Id"], [5])
    [billed] = stripe_api.catalog.subscriptions.values()
    assert billed["metadata"] == {"hub_subscription": str(subscription.pk)}
    assert [(i["price"]["id"], i["quantity"]) for i in billed["items"]["data"]] == [(catalog.stripe["pro-monthly-eur"], 5)]
    assert (subscription.billing_id, subscription.status) == (billed["id"], "active")
    assert subscription.items.get().billing_item_id == billed["items"]["data"][0]["id"]
    record = salesforce_org.opportunities[opportunity["Id"]]
    assert (record["Hub_Subscription_Id__c"], record["Hub_Subscription_Status__c"]) == (billed["id"], "active")
    create = [key for method, path, key in stripe_api.requests if (method, path) == ("POST", "/v1/subscriptions")]
    assert create == [f"subscription.create:stripe:subscription:{subscription.pk}:v1"]


def test_the_same_won_deal_twice_and_the_write_back_echo_create_nothing_more(
    hub, account, salesforce_org, stripe_api, post_salesforce, sent_tasks
):
    opportunity = close_won(salesforce_org, post_salesforce, sent_tasks, account["Id"], [PRO])
    salesforce_org.opportunity_update(opportunity["Id"], Name="Acme – Pro (renamed)")
    post_salesforce(salesforce_org.last_event(opportunity["Id"]))
    echo = [e for e in salesforce_org.change_events
            if "Hub_Subscription_Id__c" in e["data"]["payload"]["ChangeEventHeader"].get("changedFields", [])]
    assert echo
    post_salesforce(echo[0])
    drain(sent_tasks, include_delayed=True)

    assert Order.objects.count() == Subscription.objects.count() == len(stripe_api.catalog.subscriptions) == 1
    assert InboundEvent.objects.filter(status="ignored").count() == 1  # the echo


def test_the_first_invoice_flows_through_invoice_posting_once(
    hub, account, salesforce_org, stripe_api, post_salesforce, sent_tasks, stripe_events
):
    close_won(salesforce_org, post_salesforce, sent_tasks, account["Id"], [PRO])
    sent = stripe_events(types=("invoice.finalized", "invoice.paid", "customer.subscription.created"))
    stripe_events()  # nothing new
    drain(sent_tasks, include_delayed=True)

    assert [e["type"] for e in sent] == ["invoice.finalized", "invoice.paid", "customer.subscription.created"]
    invoice_id = sent[0]["data"]["object"]["id"]
    assert [call for call in hub.calls if call[0] == "post"] == [("post", invoice_id)]
    assert Delivery.objects.get(action="invoice.post").status == "posted"


def test_the_api_shows_the_subscription_with_its_contract_and_history(
    hub, account, salesforce_org, post_salesforce, sent_tasks, api
):
    close_won(salesforce_org, post_salesforce, sent_tasks, account["Id"], [PRO])
    subscription = Subscription.objects.get()

    body = api.get(f"/api/subscriptions/{subscription.pk}/").json()
    assert body["subscription"]["billing"]["external_id"] == subscription.billing_id
    assert body["subscription"]["items"][0]["price_ref"] == "pro-monthly-eur"
    assert body["history"][0]["kind"] == "order"
    assert {d["action"]: d["status"] for d in body["deliveries"]} == {
        "subscription.create": "posted", "subscription.report": "posted"}
    assert api.get("/api/subscriptions/999999/").status_code == 404


@pytest.mark.parametrize(("line", "reason"), [
    ({"ProductCode": "UNKNOWN", "Quantity": 2}, "product UNKNOWN has no released price in EUR"),
    ({"ProductCode": "PRO", "Quantity": 1, "Hub_Price_Ref__c": "enterprise-eur"},
     "price enterprise-eur has no released catalog version"),
    ({"ProductCode": "PRO", "Quantity": 0, "Hub_Price_Ref__c": "pro-monthly-eur"}, "quantity 0 must be above zero"),
    ({"ProductCode": "PRO", "Quantity": -3, "Hub_Price_Ref__c": "pro-monthly-eur"}, "quantity -3 must be above zero"),
])
def test_a_deal_with_a_bad_line_is_held_for_sales_operations_naming_the_line(
    hub, account, salesforce_org, stripe_api, post_salesforce, sent_tasks, line, reason
):
    opportunity = close_won(salesforce_org, post_salesforce, sent_tasks, account["Id"], [PRO, line])

    assert not Order.objects.exists() and not stripe_api.catalog.subscriptions
    record = ExceptionRecord.objects.get()
    line_id = next(i for i in salesforce_org.line_items.values()
                   if i["OpportunityId"] == opportunity["Id"] and i["ProductCode"] == line["ProductCode"]
                   and i["Quantity"] == line["Quantity"])["Id"]
    assert (record.owner_team, record.category, record.status) == ("sales_operations", "mapping", "open")
    assert reason in record.summary and line_id in record.summary


def test_a_held_deal_replayed_after_the_fix_becomes_the_order(
    hub, account, salesforce_org, stripe_api, post_salesforce, sent_tasks, admin_user
):
    from integration_hub.runtime.services import exception_replay

    opportunity = close_won(salesforce_org, post_salesforce, sent_tasks, account["Id"],
                            [{"ProductCode": "PRO", "Quantity": 0, "Hub_Price_Ref__c": "pro-monthly-eur"}])
    for line in salesforce_org.line_items.values():
        if line["OpportunityId"] == opportunity["Id"]:
            line["Quantity"] = 4  # sales operations fixed the deal in Salesforce
    exception_replay(ExceptionRecord.objects.get(), user=admin_user, reason="quantity fixed in the CRM")
    drain(sent_tasks, include_delayed=True)

    assert Subscription.objects.get().items.get().quantity == 4
    assert len(stripe_api.catalog.subscriptions) == 1


def test_an_open_or_lost_deal_is_not_an_order(hub, account, salesforce_org, post_salesforce, sent_tasks):
    opportunity = salesforce_org.opportunity_create(account["Id"], "Acme – Pro", lines=[PRO])
    post_salesforce(salesforce_org.last_event(opportunity["Id"]))
    salesforce_org.opportunity_update(opportunity["Id"], StageName="Closed Lost")
    post_salesforce(salesforce_org.last_event(opportunity["Id"]))
    drain(sent_tasks, include_delayed=True)

    assert not Order.objects.exists()
    assert set(InboundEvent.objects.values_list("status", flat=True)) == {"ignored"}


def test_a_deal_of_an_account_not_yet_onboarded_is_retried_then_an_exception_not_dropped(
    hub, salesforce_org, post_salesforce, sent_tasks
):
    record = salesforce_org.account_create("Unknown GmbH", emit=False, BillingCountry="DE")
    close_won(salesforce_org, post_salesforce, sent_tasks, record["Id"], [PRO])

    event = InboundEvent.objects.get()
    assert (event.status, event.attempts > 1) == ("failed", True)
    exception = ExceptionRecord.objects.get()
    assert exception.owner_team == "sales_operations" and "is not onboarded yet" in exception.summary
    assert not Order.objects.exists()


def test_a_hubspot_deal_reaching_closed_won_becomes_the_order_and_its_subscription_id_lands_on_the_deal(
    hub, hubspot_portal, stripe_api, post_hubspot, sent_tasks, catalog
):
    from tests.quote_to_cash.conftest import customer_onboarded

    company = hubspot_portal.company_create("Globex Corporation", emit=False)
    customer_onboarded(stripe_api, "hubspot", company["id"], "Globex Corporation")
    deal = hubspot_portal.deal_create(company["id"], "Globex – Team", emit=False, lines=[
        {"hs_sku": "TEAM", "quantity": "3", "hub_price_ref": "team-monthly-eur"}])
    hubspot_portal.deal_close_won(deal["id"])
    assert post_hubspot(hubspot_portal.events_for(deal["id"])).status_code == 200
    drain(sent_tasks, include_delayed=True)

    order = Order.objects.get()
    assert (order.source_system, order.source_id, order.status) == ("hubspot", deal["id"], "fulfilled")
    [billed] = stripe_api.catalog.subscriptions.values()
    assert [(i["price"]["id"], i["quantity"]) for i in billed["items"]["data"]] == [(catalog.stripe["team-monthly-eur"], 3)]
    props = hubspot_portal.deals[deal["id"]]["properties"]
    assert (props["hub_subscription_id"], props["hub_subscription_status"]) == (billed["id"], "active")

    # The write-back's property changes come back as webhooks: the echo is ignored.
    echo = [e for e in hubspot_portal.events_for(deal["id"]) if e.get("propertyName", "").startswith("hub_")]
    assert len(echo) == 2
    post_hubspot(echo)
    drain(sent_tasks, include_delayed=True)
    assert Subscription.objects.count() == 1


def test_a_hubspot_deal_with_a_line_without_a_released_price_is_held(
    hub, hubspot_portal, stripe_api, post_hubspot, sent_tasks
):
    from tests.quote_to_cash.conftest import customer_onboarded

    company = hubspot_portal.company_create("Initech", emit=False)
    customer_onboarded(stripe_api, "hubspot", company["id"], "Initech")
    deal = hubspot_portal.deal_create(company["id"], "Initech – Gold", stage="closedwon", lines=[
        {"hs_sku": "GOLD", "quantity": "1", "hub_price_ref": "gold-monthly-eur"}])
    post_hubspot(hubspot_portal.events_for(deal["id"]))
    drain(sent_tasks, include_delayed=True)

    record = ExceptionRecord.objects.get()
    assert record.owner_team == "sales_operations" and "gold-monthly-eur has no released catalog version" in record.summary
    assert not Order.objects.exists()
