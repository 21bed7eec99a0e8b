"""The whole stack for customer onboarding: signed CRM change events → inbox → a real
Celery worker → the real Tryton ERP, the Stripe API sandbox and the Salesforce
sandbox (both real HTTP servers the worker calls). Assertions read the targets."""

import pytest

from canonical.models import Customer, CustomerConfirmation, DuplicateCase, FieldConflict
from connectors.services import connection_upsert
from integration_hub.celery import app as celery_app
from integration_hub.runtime.models import Delivery, InboundEvent
from tests.conftest import WEBHOOK_SECRET, wait_for
from tests.crm.conftest import post_salesforce, salesforce_org, stripe_api  # noqa: F401 - fixtures

pytestmark = [pytest.mark.e2e, pytest.mark.stack, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def hub(celery_worker_process, tryton_server, legal_entities, salesforce_org, stripe_api):  # noqa: F811
    connection_upsert(name="tryton", vendor="tryton", role="erp", config=tryton_server.connection_config(),
                      credentials=tryton_server.credentials())
    connection_upsert(name="salesforce", vendor="salesforce", role="crm", config=salesforce_org.connection_config(),
                      credentials=salesforce_org.credentials())
    connection_upsert(name="stripe", vendor="stripe", role="billing", config=stripe_api.connection_config(),
                      credentials={"api_key": stripe_api.api_key, "webhook_secrets": [WEBHOOK_SECRET]})


def inbox_settled():
    return not InboundEvent.objects.filter(status="received").exists()


def deliveries_settled():
    return inbox_settled() and not Delivery.objects.exclude(status__in=["posted", "dead"]).exists()


def test_a_crm_account_becomes_one_erp_party_one_billing_customer_and_its_erp_id_lands_in_the_crm(
    hub, erp, salesforce_org, stripe_api, post_salesforce  # noqa: F811
):
    record = salesforce_org.account_create("Vandelay Industries GmbH", BillingCountry="DE", BillingCity="Hamburg",
                                           BillingStreet="Elbchaussee 1", BillingPostalCode="22763",
                                           CurrencyIsoCode="EUR", Website="https://vandelay.example")
    event = salesforce_org.last_event(record["Id"])
    for _ in range(2):  # the relay delivers at least once
        assert post_salesforce(event).status_code == 200

    confirmation = wait_for(lambda: CustomerConfirmation.objects.first(), what="the onboarding confirmation")
    customer = Customer.objects.get()
    party = erp.party(f"HUB-{customer.pk}")
    assert party["name"] == "Vandelay Industries GmbH"
    [billing] = stripe_api.customers_with_hub_id(customer.pk)
    assert salesforce_org.accounts[record["Id"]]["ERP_Id__c"] == str(party["id"])
    assert confirmation.references == {"salesforce": record["Id"], "tryton": str(party["id"]),
                                       "stripe": billing["id"]}

    # The write-back's own change event comes back: recognised, nothing re-synced.
    assert post_salesforce(salesforce_org.last_event(record["Id"])).status_code == 200
    wait_for(deliveries_settled, what="the echo to be processed")
    assert InboundEvent.objects.filter(status="ignored").count() == 1
    assert Delivery.objects.count() == 3 and len(stripe_api.customers) == 1


def test_a_duplicate_is_held_and_a_billing_rename_opens_a_conflict(
    hub, erp, salesforce_org, stripe_api, post_salesforce, post_webhook, sandbox  # noqa: F811
):
    first = salesforce_org.account_create("Kramerica Industries", BillingCountry="US", Website="kramerica.example")
    post_salesforce(salesforce_org.last_event(first["Id"]))
    wait_for(lambda: CustomerConfirmation.objects.exists(), what="the first account to be onboarded")
    second = salesforce_org.account_create("Kramerica Industries, Inc.", BillingCountry="US",
                                           Website="https://www.kramerica.example/")
    post_salesforce(salesforce_org.last_event(second["Id"]))
    wait_for(deliveries_settled, what="the second account to be processed")

    case = DuplicateCase.objects.get()
    assert case.customer.status == "held" and case.survivor.display_name == "Kramerica Industries"
    assert erp.party(f"HUB-{case.customer.pk}") is None
    assert not salesforce_org.accounts[second["Id"]]["ERP_Id__c"]

    original = case.survivor
    [billing] = stripe_api.customers_with_hub_id(original.pk)
    assert post_webhook(sandbox.event("customer.updated", {**billing, "name": "Kramerica LLC"})).status_code == 200
    conflict = wait_for(lambda: FieldConflict.objects.first(), what="the conflict")
    assert (conflict.field_group, conflict.source_system, conflict.owner_role) == ("name", "stripe", "crm")
    original.refresh_from_db()
    assert original.display_name == "Kramerica Industries"
    assert erp.party(f"HUB-{original.pk}")["name"] == "Kramerica Industries"


def test_a_missed_webhook_is_caught_by_the_scheduled_pull(hub, erp, salesforce_org):  # noqa: F811
    missed = salesforce_org.account_create("Pendant Publishing", BillingCountry="US")  # its event never arrives
    celery_app.send_task("hub.customers_pull")  # what beat sends on its schedule

    written = wait_for(lambda: salesforce_org.accounts[missed["Id"]]["ERP_Id__c"], what="the pulled write-back")
    customer = Customer.objects.get()
    assert str(erp.party(f"HUB-{customer.pk}")["id"]) == written


def test_a_child_account_waits_for_its_parent_and_records_it_in_the_erp(
    hub, erp, salesforce_org, post_salesforce  # noqa: F811
):
    parent = salesforce_org.account_create("Monks Holding", BillingCountry="US", emit=False)
    child = salesforce_org.account_create("Monks Diner", BillingCountry="US", ParentId=parent["Id"])
    post_salesforce(salesforce_org.last_event(child["Id"]))
    wait_for(lambda: Delivery.objects.filter(last_error__contains="parent not yet synced").exists(),
             what="the child to wait for its parent")

    salesforce_org.account_update(parent["Id"], BillingCity="New York")
    post_salesforce(salesforce_org.last_event(parent["Id"]))
    wait_for(lambda: salesforce_org.accounts[child["Id"]]["ERP_Id__c"], what="the child to sync", timeout=120)

    holding, diner = Customer.objects.get(display_name="Monks Holding"), Customer.objects.get(display_name="Monks Diner")
    party = erp.party(f"HUB-{diner.pk}")
    identifiers = erp.client.call("party.identifier", "search_read", [("party", "=", party["id"])], 0, None, None,
                                  ["code"])
    assert [i["code"] for i in identifiers] == [f"parent:HUB-{holding.pk}"]
