"""Customer onboarding in-process (recorded broker), against the CRM and Stripe API
sandboxes over HTTP and an in-memory ERP party book."""

import pytest
from django.test import override_settings

from canonical.models import Customer, CustomerConfirmation, DuplicateCase, FieldConflict
from canonical.services import duplicate_case_release
from integration_hub.runtime.models import Delivery, ExceptionRecord, InboundEvent
from integration_hub.workflows.customer_onboarding import customer_resync
from integration_hub.workflows.models import SyncRun
from integration_hub.workflows.services import customers_pull, sync_run_create
from tests.helpers import drain

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def hub(crm_connections, party_erp, legal_entities, sent_tasks):
    return party_erp


def onboard(org, post, sent_tasks, name="Acme Robotics GmbH", **fields):
    fields.setdefault("BillingCountry", "DE")
    record = org.account_create(name, **fields)
    assert post(org.last_event(record["Id"])).status_code == 200
    drain(sent_tasks, include_delayed=True)
    return record


def test_a_crm_account_becomes_one_erp_party_and_one_billing_customer_with_write_back(
    hub, salesforce_org, stripe_api, post_salesforce, sent_tasks
):
    record = onboard(salesforce_org, post_salesforce, sent_tasks, Website="https://acme-robotics.de",
                     CurrencyIsoCode="EUR", BillingCity="Berlin")

    customer = Customer.objects.get()
    assert (customer.display_name, customer.country, customer.currency) == ("Acme Robotics GmbH", "DE", "EUR")
    assert list(hub.parties) == [f"HUB-{customer.pk}"]
    [billing] = stripe_api.customers_with_hub_id(customer.pk)
    assert billing["name"] == "Acme Robotics GmbH"
    erp_id = hub.parties[f"HUB-{customer.pk}"]["id"]
    assert salesforce_org.accounts[record["Id"]]["ERP_Id__c"] == erp_id
    confirmation = CustomerConfirmation.objects.get()
    assert confirmation.references == {"salesforce": record["Id"], "erp": erp_id, "stripe": billing["id"]}
    assert set(Delivery.objects.values_list("action", "status")) == {
        ("customer.upsert", "posted"), ("customer.writeback", "posted")}


def test_the_write_back_echo_does_not_sync_again(hub, salesforce_org, post_salesforce, sent_tasks):
    record = onboard(salesforce_org, post_salesforce, sent_tasks)
    deliveries = Delivery.objects.count()
    echo = salesforce_org.last_event(record["Id"])
    assert echo["data"]["payload"]["ChangeEventHeader"]["changedFields"] == ["ERP_Id__c", "LastModifiedDate"]

    assert post_salesforce(echo).status_code == 200
    drain(sent_tasks, include_delayed=True)
    assert InboundEvent.objects.get(external_id__endswith=echo["data"]["payload"]["LastModifiedDate"]).status == "ignored"
    assert Delivery.objects.count() == deliveries and hub.calls == [f"HUB-{Customer.objects.get().pk}"]


def test_a_crm_change_is_synced_as_a_new_version(hub, salesforce_org, stripe_api, post_salesforce, sent_tasks):
    record = onboard(salesforce_org, post_salesforce, sent_tasks)
    salesforce_org.account_update(record["Id"], Name="Acme Robotics AG")
    post_salesforce(salesforce_org.last_event(record["Id"]))
    drain(sent_tasks, include_delayed=True)

    customer = Customer.objects.get()
    assert (customer.display_name, customer.version) == ("Acme Robotics AG", 2)
    assert hub.parties[f"HUB-{customer.pk}"]["name"] == "Acme Robotics AG"
    assert [c["name"] for c in stripe_api.customers.values()] == ["Acme Robotics AG"]
    assert CustomerConfirmation.objects.filter(version=2).exists()


def test_a_likely_duplicate_is_held_as_a_case_and_not_sent(hub, salesforce_org, post_salesforce, sent_tasks):
    onboard(salesforce_org, post_salesforce, sent_tasks, "Globex Corporation", Website="globex.com")
    onboard(salesforce_org, post_salesforce, sent_tasks, "Globex Corp.", Website="https://www.globex.com/")

    held = Customer.objects.get(status="held")
    case = DuplicateCase.objects.get()
    assert case.customer == held and case.reasons[0]["reasons"] == ["same domain", "same name and country"]
    assert len(hub.parties) == 1 and not Delivery.objects.filter(object_id=held.pk).exists()

    customer_resync(duplicate_case_release(case), transaction_id=case.transaction_id)
    drain(sent_tasks, include_delayed=True)
    assert len(hub.parties) == 2


def test_a_billing_change_to_a_crm_owned_field_opens_a_conflict(
    hub, salesforce_org, stripe_api, post_salesforce, post_webhook, sandbox, sent_tasks
):
    onboard(salesforce_org, post_salesforce, sent_tasks)
    customer = Customer.objects.get()
    [billing] = stripe_api.customers_with_hub_id(customer.pk)
    assert post_webhook(sandbox.event("customer.updated", {**billing, "name": "Renamed In Billing"})).status_code == 200
    drain(sent_tasks)

    conflict = FieldConflict.objects.get()
    assert (conflict.field_group, conflict.source_system, conflict.owner_role) == ("name", "stripe", "crm")
    assert conflict.proposed["display_name"] == "Renamed In Billing"
    customer.refresh_from_db()
    assert customer.display_name == "Acme Robotics GmbH" and customer.version == 1


def test_a_child_waits_for_its_parent_then_syncs(hub, salesforce_org, post_salesforce, sent_tasks):
    parent = salesforce_org.account_create("Initech Holding", BillingCountry="US", emit=False)
    child = onboard(salesforce_org, post_salesforce, sent_tasks, "Initech Services", BillingCountry="US",
                    ParentId=parent["Id"])
    child_delivery = Delivery.objects.get(action="customer.upsert", connection__name="erp")
    assert child_delivery.status == "pending" and "parent not yet synced" in child_delivery.last_error

    salesforce_org.account_update(parent["Id"], BillingCity="Austin")
    post_salesforce(salesforce_org.last_event(parent["Id"]))
    drain(sent_tasks, include_delayed=True)
    Delivery.objects.filter(pk=child_delivery.pk).update(next_attempt_at=child_delivery.created_at)
    sent_tasks.append(("hub.deliver", child_delivery.pk, None))
    drain(sent_tasks, include_delayed=True)

    parent_customer = Customer.objects.get(display_name="Initech Holding")
    child_customer = Customer.objects.get(display_name="Initech Services")
    assert child_customer.parent == parent_customer
    assert hub.parties[f"HUB-{child_customer.pk}"]["parent"] == parent_customer.pk
    assert salesforce_org.accounts[child["Id"]]["ERP_Id__c"]


@override_settings(HUB_DELIVERY_MAX_ATTEMPTS=2)
def test_a_parent_that_never_arrives_becomes_an_exception_not_a_crash(hub, salesforce_org, post_salesforce,
                                                                      sent_tasks):
    onboard(salesforce_org, post_salesforce, sent_tasks, "Orphan Ltd", BillingCountry="GB",
            ParentId="001000000000MISSING")
    delivery = Delivery.objects.get(action="customer.upsert", connection__name="erp")
    Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=delivery.created_at)
    sent_tasks.append(("hub.deliver", delivery.pk, None))
    drain(sent_tasks, include_delayed=True)

    delivery.refresh_from_db()
    assert delivery.status == "dead"
    record = ExceptionRecord.objects.get(delivery=delivery)
    assert record.category == "retries_exhausted" and "parent not yet synced" in record.summary


def test_an_invalid_record_fails_into_an_exception_and_sends_nothing(hub, salesforce_org, post_salesforce,
                                                                     sent_tasks):
    onboard(salesforce_org, post_salesforce, sent_tasks, "Nowhere Inc", BillingCountry="ZZ", CurrencyIsoCode="CHF")
    event = InboundEvent.objects.get()
    assert event.status == "failed" and "ZZ" in event.note and "CHF" in event.note
    record = ExceptionRecord.objects.get()
    assert (record.category, record.owner_team) == ("mapping", "sales_operations")  # customer data: sales ops
    assert not Customer.objects.exists() and not hub.parties


def test_the_scheduled_pull_catches_a_missed_webhook_once(hub, salesforce_org, post_salesforce, sent_tasks):
    missed = salesforce_org.account_create("Missed Webhook GmbH", BillingCountry="DE")  # never delivered
    run = customers_pull(sync_run_create(trigger="schedule"))
    drain(sent_tasks, include_delayed=True)

    assert run.status == SyncRun.Status.SUCCEEDED and run.counts["salesforce"]["accepted"] == 1
    assert salesforce_org.accounts[missed["Id"]]["ERP_Id__c"]
    # The webhook arriving late, and the next pull, are the same change: duplicates.
    assert post_salesforce(salesforce_org.change_events[0]).json()["status"] == "duplicate"
    deliveries = Delivery.objects.count()
    again = customers_pull(sync_run_create(trigger="schedule"))
    drain(sent_tasks, include_delayed=True)
    # Only the version the write-back made is new, and it changes nothing canonical.
    assert again.counts["salesforce"]["accepted"] == 1
    assert Delivery.objects.count() == deliveries
    assert Customer.objects.get().version == 1 and len(hub.parties) == 1


def test_a_pull_from_an_unreachable_crm_fails_the_run_with_its_reason(hub, salesforce_org, sent_tasks):
    salesforce_org.fail_next(403, code="REQUEST_LIMIT_EXCEEDED")
    run = customers_pull(sync_run_create(trigger="api"))
    assert run.status == SyncRun.Status.FAILED and "REQUEST_LIMIT_EXCEEDED" in run.error


def test_a_hubspot_batch_is_one_inbox_row_per_event_and_read_through_the_api(
    hub, hubspot_portal, post_hubspot, sent_tasks
):
    company = hubspot_portal.company_create("Umbrella Corp", country="US", domain="umbrella.example")
    hubspot_portal.company_update(company["id"], city="Raccoon City")
    response = post_hubspot(hubspot_portal.events_for(company["id"]))
    assert response.status_code == 200 and len(response.json()["events"]) == 2
    drain(sent_tasks, include_delayed=True)

    customer = Customer.objects.get()
    assert customer.address["city"] == "Raccoon City"
    assert hubspot_portal.companies[company["id"]]["properties"]["hub_erp_id"] == hub.parties[f"HUB-{customer.pk}"]["id"]
    echo = hubspot_portal.events_for(company["id"])[-1]
    post_hubspot([echo])
    drain(sent_tasks, include_delayed=True)
    assert InboundEvent.objects.filter(status="ignored").count() == 1


def test_a_hubspot_request_signed_for_another_url_is_refused(client, hub, hubspot_portal):
    company = hubspot_portal.company_create("Umbrella Corp", country="US")
    body, headers = hubspot_portal.webhook_request(hubspot_portal.events_for(company["id"]),
                                                   "https://elsewhere.example/api/webhooks/hubspot/")
    response = client.post("/api/webhooks/hubspot/", data=body, content_type="application/json",
                           headers={k: v for k, v in headers.items() if k != "Content-Type"})
    assert response.status_code == 400 and response.json()["error"] == "invalid_signature"


class TestApi:
    def test_a_sync_is_triggered_and_reported(self, api, hub, salesforce_org, sent_tasks):
        salesforce_org.account_create("Pulled Co", BillingCountry="US")
        response = api.post("/api/syncs/customers/")
        assert response.status_code == 202 and response.json()["status"] == "queued"
        run_id = response.json()["id"]
        [(task, object_id, _)] = [t for t in sent_tasks if t[0] == "hub.customers_pull_run"]
        sent_tasks.clear()
        from integration_hub.workflows.services import customers_pull_run
        customers_pull_run(object_id)
        drain(sent_tasks, include_delayed=True)
        run = api.get(f"/api/syncs/{run_id}/").json()
        assert run["status"] == "succeeded" and run["counts"]["salesforce"]["accepted"] == 1

        customer = Customer.objects.get()
        detail = api.get(f"/api/customers/{customer.pk}/").json()
        assert detail["sync_status"] == "confirmed"
        assert {x["system"] for x in detail["cross_references"]} == {"salesforce", "erp", "stripe"}
        assert detail["confirmations"][0]["version"] == 1

    def test_the_endpoints_need_a_token_and_unknown_ids_are_404(self, client, api, hub):
        assert client.post("/api/syncs/customers/").status_code == 401
        assert client.get("/api/customers/1/").status_code == 401
        assert api.get("/api/customers/999999/").status_code == 404
        assert api.get("/api/syncs/999999/").status_code == 404


def test_a_crm_outage_while_reading_a_notice_retries_the_event_after_retry_after(
    hub, salesforce_org, post_salesforce, sent_tasks
):
    import datetime as dt

    from django.utils import timezone

    from integration_hub.runtime.services import inbound_process

    record = salesforce_org.account_create("Flaky Read GmbH", BillingCountry="DE")
    salesforce_org.fail_next(503, code="SERVER_UNAVAILABLE", retry_after=7, method="GET")
    assert post_salesforce(salesforce_org.last_event(record["Id"])).status_code == 200
    before = timezone.now()
    drain(sent_tasks)  # the read fails: nothing is applied, nothing is lost

    event = InboundEvent.objects.get()
    assert (event.status, event.attempts) == ("received", 1)
    assert event.enqueued_at >= before + dt.timedelta(seconds=7)  # its retry honours Retry-After
    assert not Customer.objects.exists()

    inbound_process(event.pk)  # the countdown has run out and the CRM is back
    drain(sent_tasks)
    assert InboundEvent.objects.get().status == "processed"
    assert Customer.objects.get().display_name == "Flaky Read GmbH"
