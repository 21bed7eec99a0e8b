"""Amendments as a saga: validate → billing → ERP (through the invoice workflow) → CRM,
ordered per subscription, with compensation when a step cannot go on."""

import pytest

from canonical.models import Amendment, AmendmentStep, Invoice, Subscription
from connectors.stripe.api_subscriptions import _half_up
from integration_hub.runtime.models import Delivery, ExceptionRecord
from tests.helpers import drain
from tests.quote_to_cash.conftest import close_won

pytestmark = pytest.mark.django_db(transaction=True)


def line(sku, quantity, ref=None):
    return {"ProductCode": sku, "Quantity": quantity, "Hub_Price_Ref__c": ref or f"{sku.lower()}-monthly-eur"}


@pytest.fixture
def sold(hub, account, salesforce_org, stripe_api, post_salesforce, sent_tasks, stripe_events):
    """Five Pro seats sold and billed; half of the first period has passed."""
    opportunity = close_won(salesforce_org, post_salesforce, sent_tasks, account["Id"], [line("PRO", 5)])
    stripe_events()
    drain(sent_tasks, include_delayed=True)
    subscription = Subscription.objects.get()
    stripe_api.billing.period_elapse(subscription.billing_id, 0.5)
    return opportunity


def amendment_event(salesforce_org, account, sold, number, lines, **fields):
    """A won amending Opportunity and its change event (not yet relayed)."""
    opportunity = salesforce_org.opportunity_create(
        account["Id"], f"Acme – amendment {number}", lines=lines, stage="Closed Won", emit=True,
        Amends__c=sold["Id"], Amendment_Number__c=number, **fields)
    return opportunity, salesforce_org.last_event(opportunity["Id"])


def amend(salesforce_org, post_salesforce, sent_tasks, account, sold, number, lines, **fields):
    opportunity, event = amendment_event(salesforce_org, account, sold, number, lines, **fields)
    assert post_salesforce(event).status_code == 200
    drain(sent_tasks, include_delayed=True)
    return opportunity


def expected_proration(before, after, item):
    """What billing charges for swapping ``before`` for ``after`` (price amount, quantity) at the amendment's time."""
    amendment = Amendment.objects.latest("pk")
    start, end = item["current_period_start"], item["current_period_end"]
    remaining = end - int(amendment.created_at.timestamp())
    return (_half_up(-before[0] * before[1] * remaining, end - start)
            + _half_up(after[0] * after[1] * remaining, end - start))


def test_an_upgrade_posts_exactly_one_proration_invoice_with_the_right_amount_and_reports_to_the_crm(
    sold, account, hub, salesforce_org, stripe_api, post_salesforce, sent_tasks, stripe_events
):
    subscription = Subscription.objects.get()
    item = dict(stripe_api.catalog.subscriptions[subscription.billing_id]["items"]["data"][0])
    upgrade = amend(salesforce_org, post_salesforce, sent_tasks, account, sold, 1, [line("TEAM", 5)])
    stripe_events()  # billing's own webhooks for the same invoice change nothing
    drain(sent_tasks, include_delayed=True)

    amendment = Amendment.objects.get()
    assert (amendment.kind, amendment.status) == ("upgrade", "done")
    proration = Invoice.objects.get(source_id=amendment.invoice_ref)
    assert proration.total == expected_proration((10_000, 5), (30_000, 5), item) > 0
    posts = [call for call in hub.calls if call[0] == "post"]
    assert posts.count(("post", amendment.invoice_ref)) == 1
    assert Delivery.objects.filter(action="invoice.post", object_id=proration.pk).get().status == "posted"
    assert [(s.name, s.state) for s in amendment.steps.all()] == [
        ("validate", "done"), ("apply", "done"), ("post", "done"), ("report", "done")]
    assert all(s.started_at and s.finished_at and s.idempotency_key for s in amendment.steps.all())
    record = salesforce_org.opportunities[upgrade["Id"]]
    assert record["Hub_Amendment_Status__c"] == "applied"
    assert amendment.invoice_ref in record["Hub_Amendment_Detail__c"]
    subscription.refresh_from_db()
    assert [(i.price_version.price.source_id, i.quantity) for i in subscription.items.all()] == [("team-monthly-eur", 5)]


def test_a_downgrade_is_credited_in_billing_and_posted_to_the_erp_as_a_credit(
    sold, account, hub, salesforce_org, stripe_api, post_salesforce, sent_tasks
):
    amend(salesforce_org, post_salesforce, sent_tasks, account, sold, 1, [line("STARTER", 5)])

    amendment = Amendment.objects.get()
    assert (amendment.kind, amendment.status) == ("downgrade", "done")
    credit = Invoice.objects.get(source_id=amendment.invoice_ref)
    assert credit.total < 0 and ("post", amendment.invoice_ref) in hub.calls
    assert stripe_api.customers[next(iter(stripe_api.customers))]["balance"] == credit.total


def test_a_quantity_change_prorates_only_the_added_seats(sold, account, hub, salesforce_org, post_salesforce,
                                                          sent_tasks):
    amend(salesforce_org, post_salesforce, sent_tasks, account, sold, 1, [line("PRO", 8)])
    amendment = Amendment.objects.get()
    assert amendment.kind == "quantity"
    assert 0 < Invoice.objects.get(source_id=amendment.invoice_ref).total <= 15_000


def test_cancellation_at_period_end_posts_nothing_and_no_invoice_follows(
    sold, account, hub, salesforce_org, stripe_api, post_salesforce, sent_tasks, stripe_events
):
    invoices_before = len(stripe_api.billing.invoices)
    amend(salesforce_org, post_salesforce, sent_tasks, account, sold, 1, [], Cancellation__c="period_end")
    subscription = Subscription.objects.get()
    stripe_api.billing.period_advance(subscription.billing_id)
    stripe_events()
    drain(sent_tasks, include_delayed=True)

    amendment = Amendment.objects.get()
    assert (amendment.kind, amendment.status, amendment.invoice_ref) == ("cancel_at_period_end", "done", "")
    assert amendment.steps.get(name="post").detail.startswith("billing made no proration invoice")
    subscription.refresh_from_db()
    assert subscription.status == "canceled"
    assert len(stripe_api.billing.invoices) == invoices_before
    assert Invoice.objects.count() == 1  # the first period's only


def test_three_amendments_sent_in_reverse_order_apply_in_crm_order(
    sold, account, hub, salesforce_org, stripe_api, post_salesforce, sent_tasks
):
    events = [amendment_event(salesforce_org, account, sold, n, [line("PRO", 5 + n)])[1] for n in (1, 2, 3)]
    for event in reversed(events):
        assert post_salesforce(event).status_code == 200
    drain(sent_tasks, include_delayed=True)

    amendments = list(Amendment.objects.order_by("sequence"))
    assert [(a.sequence, a.status) for a in amendments] == [(1, "done"), (2, "done"), (3, "done")]
    applied = [key for method, path, key in stripe_api.requests
               if method == "POST" and path.startswith("/v1/subscriptions/") and key]
    assert applied == [f"amendment.apply:stripe:amendment:{a.pk}:v1" for a in amendments]
    assert Subscription.objects.get().items.get().quantity == 8


def test_a_later_amendment_waits_for_the_earlier_one_that_has_not_arrived(
    sold, account, hub, salesforce_org, stripe_api, post_salesforce, sent_tasks
):
    _, second = amendment_event(salesforce_org, account, sold, 2, [line("PRO", 7)])
    _, first = amendment_event(salesforce_org, account, sold, 1, [line("PRO", 6)])
    post_salesforce(second)
    drain(sent_tasks, include_delayed=True)
    assert Amendment.objects.get().status == "waiting"
    assert not [p for m, p, k in stripe_api.requests if m == "POST" and p.startswith("/v1/subscriptions/")]

    post_salesforce(first)
    drain(sent_tasks, include_delayed=True)
    assert list(Amendment.objects.order_by("sequence").values_list("status", flat=True)) == ["done", "done"]


def test_a_billing_refusal_marks_the_crm_amendment_failed_and_nothing_posts(
    sold, account, hub, salesforce_org, stripe_api, post_salesforce, sent_tasks
):
    posts_before = [call for call in hub.calls if call[0] == "post"]
    stripe_api.billing.decline_next_payment()
    refused = amend(salesforce_org, post_salesforce, sent_tasks, account, sold, 1, [line("TEAM", 5)])

    amendment = Amendment.objects.get()
    assert amendment.status == "failed" and "card_declined" in amendment.reason
    assert [(s.name, s.state) for s in amendment.steps.all()] == [
        ("validate", "done"), ("apply", "failed"), ("post", "skipped"), ("report", "done")]
    assert salesforce_org.opportunities[refused["Id"]]["Hub_Amendment_Status__c"] == "failed"
    assert [call for call in hub.calls if call[0] == "post"] == posts_before
    assert Subscription.objects.get().items.get().price_version.price.source_id == "pro-monthly-eur"
    assert not Delivery.objects.filter(action="amendment.post").exists()

    # The next amendment is not blocked by the failed one.
    amend(salesforce_org, post_salesforce, sent_tasks, account, sold, 2, [line("PRO", 6)])
    assert Amendment.objects.get(sequence=2).status == "done"


def test_an_amendment_of_a_cancelled_subscription_is_rejected_back_to_the_crm(
    sold, account, hub, salesforce_org, stripe_api, post_salesforce, sent_tasks, stripe_events
):
    amend(salesforce_org, post_salesforce, sent_tasks, account, sold, 1, [], Cancellation__c="now")
    stripe_events()
    drain(sent_tasks, include_delayed=True)
    assert Subscription.objects.get().status == "canceled"
    late = amend(salesforce_org, post_salesforce, sent_tasks, account, sold, 2, [line("TEAM", 5)])

    amendment = Amendment.objects.get(sequence=2)
    assert amendment.status == "rejected" and "cancelled" in amendment.reason
    assert salesforce_org.opportunities[late["Id"]]["Hub_Amendment_Status__c"] == "rejected"
    assert "cancelled" in salesforce_org.opportunities[late["Id"]]["Hub_Amendment_Detail__c"]
    assert [(s.name, s.state) for s in amendment.steps.all()] == [
        ("validate", "failed"), ("apply", "skipped"), ("post", "skipped"), ("report", "done")]


def test_a_downgrade_below_zero_seats_is_rejected_with_the_reason(
    sold, account, hub, salesforce_org, stripe_api, post_salesforce, sent_tasks
):
    requests = len(stripe_api.requests)
    amend(salesforce_org, post_salesforce, sent_tasks, account, sold, 1, [line("PRO", -2)])

    amendment = Amendment.objects.get()
    assert amendment.status == "rejected" and "below one seat" in amendment.reason
    assert not [r for r in stripe_api.requests[requests:] if r[0] == "POST"]


def test_an_amendment_of_a_deal_the_hub_never_sold_is_held_for_sales_operations(
    hub, account, salesforce_org, post_salesforce, sent_tasks
):
    opportunity = salesforce_org.opportunity_create(account["Id"], "Stray", lines=[line("PRO", 2)],
                                                    stage="Closed Won", Amends__c="006000000000000AAA",
                                                    Amendment_Number__c=1)
    post_salesforce(salesforce_org.last_event(opportunity["Id"]))
    drain(sent_tasks, include_delayed=True)

    record = ExceptionRecord.objects.get()
    assert record.owner_team == "sales_operations" and "no subscription in the hub" in record.summary
    assert not Amendment.objects.exists()


def test_a_billing_webhook_about_an_unknown_subscription_is_an_exception_not_a_drop(
    hub, post_webhook, stripe_api
):
    event = stripe_api.objects.event("customer.subscription.updated", {
        "id": "sub_1Unknown", "object": "subscription", "status": "active", "metadata": {},
        "items": {"data": []}})
    assert post_webhook(event).status_code == 200
    from integration_hub.runtime.models import InboundEvent
    from integration_hub.runtime.services import inbound_process

    inbound_process(InboundEvent.objects.get().pk)
    record = ExceptionRecord.objects.get()
    assert record.owner_team == "sales_operations" and "sub_1Unknown" in record.summary


def test_a_self_service_change_in_billing_is_recorded_and_reported_to_the_crm(
    sold, hub, salesforce_org, stripe_api, sent_tasks, stripe_events, catalog
):
    subscription = Subscription.objects.get()
    billed = stripe_api.catalog.subscriptions[subscription.billing_id]
    item = billed["items"]["data"][0]
    stripe_api.billing._update(billed, {"items": {"0": {"id": item["id"], "quantity": "9"}},
                                        "proration_behavior": "create_prorations"})
    stripe_events()
    drain(sent_tasks, include_delayed=True)

    change = Amendment.objects.get()
    assert (change.kind, change.status, change.sequence) == ("billing_change", "done", None)
    assert Subscription.objects.get().items.get().quantity == 9
    assert AmendmentStep.objects.get(amendment=change, name="report").state == "done"
    assert salesforce_org.opportunities[sold["Id"]]["Hub_Subscription_Status__c"] == "active"


def test_the_saga_steps_show_in_the_admin_and_in_the_transaction_trace(
    sold, account, hub, salesforce_org, post_salesforce, sent_tasks, api, admin_client
):
    amend(salesforce_org, post_salesforce, sent_tasks, account, sold, 1, [line("TEAM", 5)])
    amendment = Amendment.objects.get()
    subscription = Subscription.objects.get()

    page = admin_client.get(f"/admin/canonical/amendment/{amendment.pk}/change/")
    assert page.status_code == 200
    for step in amendment.steps.all():
        assert step.idempotency_key in page.content.decode()
    assert admin_client.get(f"/admin/canonical/subscription/{subscription.pk}/change/").status_code == 200
    assert admin_client.get("/admin/canonical/order/").status_code == 200
    # They mirror the CRM and billing: shown, never edited or added by hand.
    assert admin_client.get("/admin/canonical/subscription/add/").status_code == 403
    before = subscription.status
    admin_client.post(f"/admin/canonical/subscription/{subscription.pk}/change/", {"status": "canceled"})
    subscription.refresh_from_db()
    assert subscription.status == before

    trace = api.get(f"/api/transactions/{amendment.transaction_id}/").json()
    assert "amendment" in str(trace) and amendment.steps.get(name="apply").idempotency_key in str(trace)
    history = api.get(f"/api/subscriptions/{subscription.pk}/").json()["history"]
    assert [entry["kind"] for entry in history] == ["order", "amendment"]
    assert [s["state"] for s in history[1]["steps"]] == ["done", "done", "done", "done"]


def test_billings_webhooks_in_any_order_leave_its_latest_state(
    sold, account, hub, salesforce_org, stripe_api, post_salesforce, post_webhook, sent_tasks, stripe_events
):
    """Webhooks arrive in any order: an update billing sent before the subscription ended
    (in the same second, or earlier) does not bring it back."""
    stripe_events()
    drain(sent_tasks, include_delayed=True)
    start = len(stripe_api.billing.events)
    amend(salesforce_org, post_salesforce, sent_tasks, account, sold, 1, [], Cancellation__c="period_end")
    subscription = Subscription.objects.get()
    stripe_api.billing.period_advance(subscription.billing_id)
    late = [e for e in stripe_api.billing.events[start:] if e["type"].startswith("customer.subscription.")]
    assert late[-1]["type"] == "customer.subscription.deleted" and len(late) >= 2
    assert late[-2]["data"]["object"]["status"] != "canceled"

    for event in reversed(late):  # the deletion first, the updates before it after
        assert post_webhook(event).status_code == 200
        drain(sent_tasks, include_delayed=True)
    subscription.refresh_from_db()
    assert subscription.status == "canceled" and subscription.canceled_at is not None
    assert subscription.billing_event_at == late[-1]["created"]
