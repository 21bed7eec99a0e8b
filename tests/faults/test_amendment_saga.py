"""Fault injection for the amendment saga, with real processes: the worker is killed
after billing applied an amendment and before the hub recorded it, so before the ERP
step. After recovery the saga resumes (billing is found changed, not changed again)
and goes on to the ERP: the proration invoice posts exactly once."""

import threading
import time

import pytest

from canonical.models import Amendment, Customer, Order, Subscription, SubscriptionItem
from canonical.money import to_major
from canonical.services import xref_bind
from connectors.salesforce.sandbox import SalesforceSandbox
from connectors.services import connection_upsert
from connectors.stripe.api_sandbox import StripeApiSandbox
from integration_hub.runtime.models import Delivery
from tests.conftest import WEBHOOK_SECRET
from tests.faults.harness import wait_until
from tests.quote_to_cash.conftest import release_price

pytestmark = [pytest.mark.faults, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def billing():
    """The Stripe API sandbox, whose answer to the first subscription update can be
    held after the update is applied (the worker is killed while it waits)."""
    api = StripeApiSandbox()
    api.applied, api.release = threading.Event(), threading.Event()
    handle = api.handle

    def held(request):
        response = handle(request)
        if (request.method == "POST" and request.path.startswith("/v1/subscriptions/")
                and response.status == 200 and not api.applied.is_set()):
            api.applied.set()
            api.release.wait(30)
        return response

    api.handle = held
    api.serve()
    yield api
    api.release.set()
    api.stop()


@pytest.fixture
def crm():
    org = SalesforceSandbox()
    org.serve()
    yield org
    org.stop()


def test_worker_killed_after_billing_applied_an_amendment_before_the_erp_step(stack, billing, crm):
    connection_upsert(name="stripe", vendor="stripe", role="billing", config=billing.connection_config(),
                      credentials={"api_key": billing.api_key, "webhook_secrets": [WEBHOOK_SECRET]})
    connection_upsert(name="salesforce", vendor="salesforce", role="crm", config=crm.connection_config(),
                      credentials=crm.credentials())
    pro, pro_price = release_price(billing, f"pro-{stack.name[:8]}", f"PRO-{time.time_ns()}", 10_000, erp="tryton")
    team, team_price = release_price(billing, f"team-{stack.name[:8]}", f"TEAM-{time.time_ns()}", 30_000, erp="tryton")
    # A subscription sold earlier: 5 Pro seats, half of its period gone.
    account = crm.account_create("Globex GmbH", emit=False, BillingCountry="DE", CurrencyIsoCode="EUR")
    won = crm.opportunity_create(account["Id"], "Globex – Pro", stage="Closed Won", emit=False)
    customer = Customer.objects.create(display_name="Globex GmbH", country="DE", currency="EUR")
    stripe_customer = billing.objects.customer("Globex GmbH", "ap@globex.example", country="DE")
    billing.customers[stripe_customer["id"]] = stripe_customer
    xref_bind(system="stripe", object_type="customer", canonical_id=customer.pk, external_id=stripe_customer["id"])
    sold = billing.billing._create({"customer": stripe_customer["id"], "items": {"0": {"price": pro_price,
                                                                                      "quantity": "5"}}}).body
    billing.billing.period_elapse(sold["id"], 0.5)
    order = Order.objects.create(source_system="salesforce", source_id=won["Id"], customer=customer,
                                 customer_ref=account["Id"], currency="EUR", closed_on="2026-12-01",
                                 start_on="2026-12-01", status="fulfilled")
    subscription = Subscription.objects.create(order=order, customer=customer, currency="EUR", status="active",
                                               start_on="2026-12-01", billing_system="stripe", billing_id=sold["id"],
                                               crm_system="salesforce", crm_id=won["Id"])
    SubscriptionItem.objects.create(subscription=subscription, price_version=pro, quantity=5)

    # The upgrade arrives from the CRM; billing applies it and its answer is held.
    upgrade = crm.opportunity_create(account["Id"], "Globex – Team", stage="Closed Won", Amends__c=won["Id"],
                                     Amendment_Number__c=1, lines=[{"ProductCode": team.price.product.sku,
                                                                    "Quantity": 5,
                                                                    "Hub_Price_Ref__c": team.price.source_id}])
    assert crm.deliver(crm.last_event(upgrade["Id"]), f"{stack.web_url}/api/webhooks/salesforce/").status_code == 200
    wait_until(billing.applied.is_set, what="billing to apply the upgrade")
    stack.kill_worker(billing.release)

    wait_until(lambda: Amendment.objects.filter(status="done").exists(), timeout=120, what="the saga to finish")
    amendment = Amendment.objects.get()
    proration = billing.billing.invoices[amendment.invoice_ref]
    stack.expected[amendment.invoice_ref] = ("EUR", to_major(proration["total"], "EUR"))
    stack.check(drain=stack.settle())

    updates = [r for r in billing.requests if r[0] == "POST" and r[1] == f"/v1/subscriptions/{sold['id']}"]
    assert len(updates) == 1  # billing changed once: the recovery looked it up
    assert len(billing.billing.invoices_of(sold["id"])) == 2  # the first period's and one proration
    apply = Delivery.objects.get(action="amendment.apply")
    assert apply.attempt_log.filter(outcome="lost").exists()
    assert [(s.name, s.state) for s in amendment.steps.all()] == [
        ("validate", "done"), ("apply", "done"), ("post", "done"), ("report", "done")]
    assert crm.opportunities[upgrade["Id"]]["Hub_Amendment_Status__c"] == "applied"
