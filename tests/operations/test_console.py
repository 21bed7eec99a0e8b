"""The dashboard's figures come from the workflows' declared indicators and the
runtime tables; the inventory from the registry; /metrics from every process."""

from __future__ import annotations

import pytest

from integration_hub.operations.dashboard import business_figures, changelist, exceptions_by_team
from integration_hub.runtime import dispatch

pytestmark = pytest.mark.django_db(transaction=True)


def _figures(user) -> dict[str, tuple[int, str]]:
    return {f.title: (f.value, f.link) for flow in business_figures(user) for f in flow["figures"]}


def test_each_indicator_counts_exactly_the_list_it_links_to(people, client, two_teams):
    """The figure and the filtered changelist behind it never disagree."""
    client.force_login(people["readonly"])
    figures = _figures(people["readonly"])
    assert figures["Invoices stuck in validation: tax and totals (ERP)"][0] == 1
    assert figures["Invoices stuck in validation: posting policy"][0] == 1
    assert figures["Invoices awaiting ERP posting"][0] == 0
    for title, (value, link) in figures.items():
        page = client.get(link)
        assert page.status_code == 200, (title, link)
        assert page.context["cl"].result_count == value, title


def test_the_workflows_declare_indicators_with_valid_filters(people):
    assert dispatch.workflow_named("invoice_posting").indicators
    assert dispatch.workflow_named("customer_onboarding").indicators
    for workflow in dispatch.workflows():
        for indicator in workflow.indicators:
            changelist(indicator.model, **indicator.filters)  # the model and its admin exist


def test_open_exceptions_per_team_with_the_oldest_against_its_sla(people, two_teams):
    teams = {row["team"]: row for row in exceptions_by_team(people["readonly"])}
    assert teams["Finance operations"]["count"] == 2 and teams["IT operations"]["count"] == 1
    assert teams["IT operations"]["oldest_sla"] == "2.0 h" and not teams["IT operations"]["overdue"]
    assert set(t["team"] for t in exceptions_by_team(people["finance"])) == {"Finance operations"}


def test_the_dashboard_page_renders_for_an_operator_and_refuses_others(people, client, two_teams):
    client.force_login(people["it"])
    page = client.get("/admin/dashboard/")
    assert page.status_code == 200
    assert b"Invoices awaiting ERP posting" in page.content and b"<svg" in page.content
    assert b"cdn" not in page.content.lower()
    client.force_login(people["nobody"])
    assert client.get("/admin/dashboard/").status_code == 403


def test_the_inventory_is_generated_from_the_registry(people, token_client, two_teams):
    from canonical.models import SystemOfRecord

    SystemOfRecord.objects.get_or_create(entity="customer", field_group="identity", defaults={"owner_role": "crm"})
    flows = {flow["name"]: flow for flow in token_client(people["readonly"]).get("/api/inventory/").json()}
    assert set(flows) == {workflow.name for workflow in dispatch.workflows()}
    invoices = flows["invoice_posting"]
    assert [c["name"] for c in invoices["sources"]] == ["stripe"] and [c["name"] for c in invoices["targets"]] == ["erp"]
    assert [c["schema"] for c in invoices["contracts"]] == ["invoice.v1", "payment.v1", "credit_note.v1", "refund.v1"]
    assert invoices["owner_team"] == "finance" and "posting policy v" in invoices["policy_in_force"]
    window = invoices["last_30_days"]
    assert window["volume"] == 3 and window["open_exceptions"] == 3 and window["attempts"] == 2
    assert window["failure_rate"] == 1.0
    customers = flows["customer_onboarding"]
    assert {r["field_group"] for r in customers["system_of_record"]} >= {"identity"}


def test_metrics_need_a_token_and_show_every_family(people, client, two_teams, settings, post_webhook, sandbox):
    settings.HUB_METRICS_TOKEN = "scrape-me"
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    post_webhook(sandbox.event("invoice.finalized", sandbox.finalize(sandbox.invoice("cus_9", [("x", 1, 100)]))))
    body = client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-me").content.decode()
    for family in ("hub_webhooks_total", "hub_deliveries_total", "hub_delivery_attempts_total",
                   "hub_delivery_attempt_seconds_bucket", "hub_queue_depth", "hub_open_exceptions",
                   "hub_deliveries_held", "hub_circuit_state"):
        assert family in body, family
    assert 'hub_open_exceptions{category="configuration",team="it_operations"} 1.0' in body
    assert 'hub_webhooks_total{outcome="accepted",source="stripe"}' in body
    assert 'hub_queue_depth{queue="inbox",state="received"} 1.0' in body
    client.force_login(people["it"])
    assert client.get("/metrics").status_code == 200
