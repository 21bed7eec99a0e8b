"""The demo's quote-to-cash section: a Salesforce Opportunity closes into a Stripe
subscription, is upgraded mid-period, and the proration invoice is read back from
Tryton with the outcome written back to Salesforce. Uses the catalog the demo's
catalog section released (Starter and Pro in EUR)."""

from __future__ import annotations

import httpx

from canonical.models import Amendment, CrossReference, Subscription
from connectors.tryton.client import TrytonClient
from integration_hub.operations.polling import wait_for


def quote_to_cash_demo(cmd, tryton, web_url: str, timeout: float) -> None:
    org, stripe = cmd.salesforce, cmd.stripe_api
    relay = f"{web_url}/api/webhooks/salesforce/"

    def deliver_billing_events(since: int) -> int:
        with httpx.Client(timeout=10) as client:
            for event in stripe.billing.events[since:]:
                cmd.sandbox.deliver(event, f"{web_url}/api/webhooks/stripe/", client=client)
        return len(stripe.billing.events)

    cmd.step("Quote to cash: an Opportunity for 5 Starter seats closes won in Salesforce")
    account = org.account_create("Kessler Robotik GmbH", BillingCountry="DE", BillingCity="Bremen",
                                 Website="https://kessler-robotik.example", CurrencyIsoCode="EUR")
    org.deliver(org.last_event(account["Id"]), relay)
    wait_for(lambda: CrossReference.objects.filter(system="stripe", object_type="customer").filter(
        canonical_id__in=CrossReference.objects.filter(system="salesforce", external_id=account["Id"])
        .values("canonical_id")).exists(), timeout, "the account to be onboarded")
    won = org.opportunity_create(account["Id"], "Kessler – Starter", lines=[
        {"ProductCode": "STARTER", "Quantity": 5, "Hub_Price_Ref__c": "starter-monthly-eur"}])
    org.opportunity_close_won(won["Id"])
    org.deliver(org.last_event(won["Id"]), relay)
    sub_id = wait_for(lambda: org.opportunities[won["Id"]]["Hub_Subscription_Id__c"], timeout,
                   "the subscription id in Salesforce")
    seen = deliver_billing_events(0)
    cmd.follow(timeout)
    cmd.say(f"  Stripe {sub_id} ({org.opportunities[won['Id']]['Hub_Subscription_Status__c']}) written back on "
            f"{won['Id']}; its first invoice {stripe.catalog.subscriptions[sub_id]['latest_invoice']} posted")

    cmd.step("Mid-period the customer upgrades to Pro: an amending Opportunity (Amends__c, number 1)")
    stripe.billing.period_elapse(sub_id, 0.5)
    upgrade = org.opportunity_create(account["Id"], "Kessler – upgrade to Pro", stage="Closed Won",
                                     Amends__c=won["Id"], Amendment_Number__c=1, lines=[
                                         {"ProductCode": "PRO", "Quantity": 5, "Hub_Price_Ref__c": "pro-monthly-eur"}])
    org.deliver(org.last_event(upgrade["Id"]), relay)
    amendment = wait_for(lambda: Amendment.objects.filter(source_id=upgrade["Id"], status__in=Amendment.FINISHED)
                      .first(), timeout, "the amendment saga")
    deliver_billing_events(seen)
    cmd.follow(timeout)
    for step in amendment.steps.all():
        cmd.say(f"  {step.get_name_display():<34} {step.state:<8} {step.detail[:90]}")
    client = TrytonClient(tryton.url, tryton.database, **tryton.credentials())
    try:
        posted = client.call("account.invoice", "search_read", [("reference", "=", amendment.invoice_ref)], 0, None,
                             None, ["number", "state", "total_amount"])
    finally:
        client.close()
    for invoice in posted:
        cmd.say(f"  proration invoice {amendment.invoice_ref} in Tryton: {invoice['number']} {invoice['state']} "
                f"EUR {invoice['total_amount']}")
    record = org.opportunities[upgrade["Id"]]
    cmd.say(f"  Salesforce {upgrade['Id']}: Hub_Amendment_Status__c={record['Hub_Amendment_Status__c']!r}, "
            f"Hub_Amendment_Detail__c={record['Hub_Amendment_Detail__c']!r}")
    subscription = Subscription.objects.get(billing_id=sub_id)
    cmd.say(f"  GET /api/subscriptions/{subscription.pk}/ shows the subscription and its history")
