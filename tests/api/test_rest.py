"""The token-authenticated REST API: transaction traces, deliveries, exceptions, replay."""

import uuid

import pytest

from connectors.errors import Permanent
from integration_hub.runtime.models import Delivery, ExceptionRecord
from tests.helpers import drain

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def processed(stripe_connection, legal_entities, memory_erp, sandbox, post_webhook, sent_tasks):
    invoice = sandbox.finalize(sandbox.invoice("cus_1", [("Plan", 1, 700)], currency="jpy", tax_percent=None))
    response = post_webhook(sandbox.event("invoice.finalized", invoice))
    drain(sent_tasks)
    return response.json()["transaction_id"], invoice


def test_the_api_requires_a_token(client, processed):
    transaction_id, _ = processed
    assert client.get(f"/api/transactions/{transaction_id}/").status_code == 401
    assert client.get("/api/deliveries/").status_code == 401


def test_a_transaction_trace_tells_the_whole_story(api, processed):
    transaction_id, invoice = processed
    trace = api.get(f"/api/transactions/{transaction_id}/").json()

    assert trace["subject"] == f"stripe:invoice:{invoice['id']}"
    assert [e["type"] for e in trace["events"]] == ["invoice.finalized"]
    assert trace["records"]["invoices"][0]["currency"] == "JPY" and trace["records"]["invoices"][0]["total"] == 700
    [delivery] = trace["deliveries"]
    assert delivery["status"] == "posted" and delivery["attempt_log"][0]["outcome"] == "posted"
    [erp_invoice] = [x for x in trace["cross_references"] if x["object_type"] == "invoice"]
    assert (erp_invoice["system"], erp_invoice["number"]) == ("erp", "INV-1")
    assert {x["system"] for x in trace["cross_references"] if x["object_type"] == "customer"} == {"stripe", "erp"}
    assert len(trace["records"]["customers"]) == 1
    assert trace["exceptions"] == []


def test_an_unknown_transaction_is_404(api):
    assert api.get(f"/api/transactions/{uuid.uuid4()}/").status_code == 404


def test_deliveries_can_be_filtered_by_status(api, processed):
    assert len(api.get("/api/deliveries/?status=posted").json()["results"]) == 1
    assert api.get("/api/deliveries/?status=dead").json()["results"] == []


def test_an_exception_can_be_replayed_through_the_api(
    api, stripe_connection, legal_entities, memory_erp, sandbox, post_webhook, sent_tasks
):
    memory_erp.failures.append(Permanent("ERP rejected the document"))
    post_webhook(sandbox.event("invoice.finalized", sandbox.finalize(sandbox.invoice("cus_2", [("Plan", 1, 900)]))))
    drain(sent_tasks)
    record = ExceptionRecord.objects.get()
    listed = api.get("/api/exceptions/?status=open&owner_team=finance").json()["results"]
    assert [item["id"] for item in listed] == [record.pk]

    assert api.post(f"/api/exceptions/{record.pk}/replay/", {}, format="json").status_code == 400  # reason required
    response = api.post(f"/api/exceptions/{record.pk}/replay/", {"reason": "fixed in ERP"}, format="json")
    drain(sent_tasks)

    assert response.status_code == 202 and response.json()["status"] == "resolved"
    assert Delivery.objects.get().status == "posted"
    again = api.post(f"/api/exceptions/{record.pk}/replay/", {"reason": "twice"}, format="json")
    assert again.status_code == 409


def test_the_openapi_schema_is_published(api):
    response = api.get("/api/schema/")
    assert response.status_code == 200 and b"/api/transactions/" in response.content
