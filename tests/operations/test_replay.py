"""Dead-letter and replay from both the API and the admin: one, many (filtered), and
edit-and-replay; every replay and edit is audited."""

import json

import pytest

from canonical.models import Invoice, LegalEntity
from connectors.errors import Permanent
from integration_hub.runtime.models import AuditEntry, Delivery, ExceptionRecord, InboundEvent
from tests.helpers import drain

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def hub(stripe_connection, legal_entities, memory_erp, sent_tasks):
    return memory_erp


def _send(post_webhook, sandbox, sent_tasks, *, currency="usd", count=1):
    invoices = []
    for _ in range(count):
        invoice = sandbox.finalize(sandbox.invoice("cus_1", [("Plan", 2, 1000), ("Extra", 1, 500)], currency=currency))
        post_webhook(sandbox.event("invoice.finalized", invoice))
        invoices.append(invoice)
    drain(sent_tasks)
    return invoices


def test_replay_many_by_filter_replays_only_the_matching_open_exceptions(
    hub, api, post_webhook, sandbox, sent_tasks
):
    hub.failures.extend(Permanent("ERP rejected") for _ in range(3))
    _send(post_webhook, sandbox, sent_tasks, count=3)
    gbp = sandbox.finalize(sandbox.invoice("cus_2", [("Plan", 1, 100)], currency="gbp"))
    post_webhook(sandbox.event("invoice.finalized", gbp))  # a policy exception, another category
    drain(sent_tasks)
    assert ExceptionRecord.objects.filter(status="open").count() == 4

    assert api.post("/api/exceptions/replay/", {"reason": "all"}, format="json").status_code == 400
    response = api.post("/api/exceptions/replay/", {"reason": "ERP fixed", "category": "rejected"}, format="json")
    drain(sent_tasks)

    assert response.status_code == 202 and len(response.json()["replayed"]) == 3
    assert Delivery.objects.filter(status="posted").count() == 3
    assert ExceptionRecord.objects.get(status="open").category == "policy"
    assert AuditEntry.objects.filter(action="replay", reason="ERP fixed").count() == 3


def test_edit_and_replay_of_a_payload_fixes_a_mapping_failure(hub, api, admin_user, post_webhook, sandbox, sent_tasks):
    invoice = sandbox.finalize(sandbox.invoice("cus_1", [("Plan", 1, 1000)]))
    event = sandbox.event("invoice.finalized", dict(invoice, currency="usx"))  # typo at the vendor
    post_webhook(event)
    drain(sent_tasks)
    record = ExceptionRecord.objects.get()
    assert record.category == "mapping"

    fixed = json.loads(json.dumps(event))
    fixed["data"]["object"]["currency"] = "usd"
    response = api.post(f"/api/exceptions/{record.pk}/edit-and-replay/",
                        {"reason": "currency typo", "payload": fixed}, format="json")
    drain(sent_tasks)

    assert response.status_code == 202
    assert InboundEvent.objects.get().status == "processed"
    assert Delivery.objects.get().status == "posted"
    edit = AuditEntry.objects.get(action="edit")
    assert edit.actor == admin_user and edit.changes["payload"]["before"]["data"]["object"]["currency"] == "usx"


def test_edit_and_replay_of_an_invoice_picks_another_policy_and_rejects_invalid_corrections(
    hub, api, post_webhook, sandbox, sent_tasks
):
    hub.failures.append(Permanent("no tax 10% in this company"))
    _send(post_webhook, sandbox, sent_tasks)
    record = ExceptionRecord.objects.get()
    invoice = Invoice.objects.get()

    bad = api.post(f"/api/exceptions/{record.pk}/edit-and-replay/",
                   {"reason": "x", "corrections": {"lines": [{"position": 9, "tax_amount": 0}]}}, format="json")
    assert bad.status_code == 400 and "position 9" in bad.json()["detail"]
    unknown = api.post(f"/api/exceptions/{record.pk}/edit-and-replay/",
                       {"reason": "x", "corrections": {"total": 1}}, format="json")
    assert unknown.status_code == 400

    LegalEntity.objects.create(code="US2", name="Acme US Services", currency="CAD", country="CA")
    response = api.post(
        f"/api/exceptions/{record.pk}/edit-and-replay/",
        {"reason": "book without tax in US2",
         "corrections": {"legal_entity": "US2", "lines": [{"position": 1, "tax_amount": 0}, {"position": 2, "tax_amount": 0}]}},
        format="json",
    )
    drain(sent_tasks)

    assert response.status_code == 202
    invoice.refresh_from_db()
    assert (invoice.legal_entity.code, invoice.tax, invoice.total, invoice.version) == ("US2", 0, invoice.subtotal, 2)
    assert Delivery.objects.get().status == "posted"
    assert set(AuditEntry.objects.values_list("action", flat=True)) == {"edit", "replay"}


NO_NOTES = {"notes-TOTAL_FORMS": 0, "notes-INITIAL_FORMS": 0, "notes-MIN_NUM_FORMS": 0, "notes-MAX_NUM_FORMS": 1000}


def test_the_admin_replays_and_edits_and_replays(hub, admin_client, post_webhook, sandbox, sent_tasks):
    hub.failures.extend([Permanent("rejected"), Permanent("rejected")])
    _send(post_webhook, sandbox, sent_tasks, count=2)
    first, second = ExceptionRecord.objects.order_by("pk")

    page = admin_client.get(f"/admin/runtime/exceptionrecord/{first.pk}/change/")
    assert page.status_code == 200 and b"Save and replay" in page.content and b"legal_entity" in page.content

    correction = {"legal_entity": "US", "number": "", "lines": [
        {"position": 1, "description": "Plan (corrected)", "tax_amount": 200, "tax_rate": "10.0000"},
        {"position": 2, "description": "Extra", "tax_amount": 50, "tax_rate": "10.0000"}]}
    response = admin_client.post(f"/admin/runtime/exceptionrecord/{first.pk}/change/", {
        "assignee": "", "correction": json.dumps(correction), "reason": "renamed line",
        "_save_and_replay": "Save and replay", **NO_NOTES,
    })
    assert response.status_code == 302
    listing = admin_client.post("/admin/runtime/exceptionrecord/", {
        "action": "replay", "_selected_action": [second.pk],
    })
    assert listing.status_code == 302
    drain(sent_tasks)

    assert set(ExceptionRecord.objects.values_list("status", flat=True)) == {"resolved"}
    assert set(Delivery.objects.values_list("status", flat=True)) == {"posted"}
    assert Invoice.objects.filter(lines__description="Plan (corrected)").count() == 1


def test_admin_pages_render(hub, admin_client, post_webhook, sandbox, sent_tasks):
    hub.failures.append(Permanent("rejected"))
    _send(post_webhook, sandbox, sent_tasks)
    for path in ["/admin/", "/admin/runtime/delivery/", "/admin/runtime/inboundevent/", "/admin/runtime/exceptionrecord/",
                 "/admin/runtime/admissionpolicy/", "/admin/runtime/maintenancewindow/", "/admin/runtime/auditentry/",
                 "/admin/connectors/connection/", "/admin/canonical/invoice/", "/admin/runtime/businesstransaction/",
                 f"/admin/runtime/delivery/{Delivery.objects.get().pk}/change/",
                 f"/admin/runtime/inboundevent/{InboundEvent.objects.get().pk}/change/"]:
        assert admin_client.get(path).status_code == 200, path
