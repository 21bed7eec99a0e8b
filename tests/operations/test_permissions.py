"""Roles and BOLA: every endpoint reads and acts only on the records of the caller's
teams, and each action needs its own permission — through an API token, which can do
what its user can and nothing more."""

from __future__ import annotations

import pytest
from django.urls import reverse

from integration_hub.runtime.models import AuditEntry, Delivery, ExceptionRecord

pytestmark = pytest.mark.django_db(transaction=True)

ACTIONS = [
    ("replay", {"reason": "x"}),
    ("edit-and-replay", {"reason": "x", "corrections": {"legal_entity": "US"}}),
    ("acknowledge", {}),
    ("assign", {"assignee": None}),
    ("close", {"status": "dismissed", "reason": "x"}),
    ("notes", {"text": "looked at it"}),
]


def _endpoints_for(record: ExceptionRecord, *, with_transaction: bool) -> list[tuple[str, str, dict | None]]:
    """Every endpoint that reads or acts on one exception or (unless the caller owns
    the transaction's data) on what it is about."""
    reads = [
        ("get", f"/api/exceptions/{record.pk}/", None),
        ("get", f"/api/exceptions/{record.pk}/notes/", None),
    ]
    if with_transaction:
        reads.append(("get", f"/api/transactions/{record.transaction_id}/", None))
        if record.delivery_id:
            reads.append(("get", f"/api/deliveries/{record.delivery_id}/", None))
    return reads + [("post", f"/api/exceptions/{record.pk}/{name}/", body) for name, body in ACTIONS]


def test_no_endpoint_reads_or_acts_on_another_teams_exception(people, token_client, two_teams):
    """BOLA: for each (caller, other team's exception, endpoint), the answer is 404 —
    the record is not found, and nothing changes."""
    finance_record = two_teams["rejected"]
    it_record = two_teams["configuration"]
    # Sales and product operations own none of these; finance and IT each own one.
    attempts = [
        (people["sales"], finance_record), (people["sales"], it_record),
        (people["product"], finance_record), (people["product"], it_record),
        (people["finance"], it_record),
    ]
    audit_before = AuditEntry.objects.count()
    crossings = []
    for user, record in attempts:
        client = token_client(user)
        # Finance owns the invoice behind IT's exception: it reads the transaction, not IT's exception.
        owns_data = user == people["finance"]
        for method, path, body in _endpoints_for(record, with_transaction=not owns_data):
            response = getattr(client, method)(path, body, format="json") if body is not None else client.get(path)
            if response.status_code != 404:
                crossings.append((user.username, method, path, response.status_code))
    assert crossings == []
    trace = token_client(people["finance"]).get(f"/api/transactions/{it_record.transaction_id}/").json()
    assert trace["deliveries"] and [x for x in trace["exceptions"] if x["id"] == it_record.pk] == []
    assert AuditEntry.objects.count() == audit_before
    assert set(ExceptionRecord.objects.values_list("status", flat=True)) == {"open"}
    assert not ExceptionRecord.objects.exclude(assignee=None).exists()


def test_lists_hold_only_the_callers_teams_records(people, token_client, two_teams):
    def ids(user, path):
        return {row["id"] for row in token_client(user).get(path).json()["results"]}

    finance_ids = {r.pk for r in two_teams.values() if r.owner_team == "finance"}
    it_ids = {r.pk for r in two_teams.values() if r.owner_team == "it_operations"}
    assert ids(people["finance"], "/api/exceptions/") == finance_ids
    assert ids(people["it"], "/api/exceptions/") == it_ids
    assert ids(people["sales"], "/api/exceptions/") == set()
    assert ids(people["sales"], "/api/exceptions/?owner_team=finance") == set()
    assert ids(people["readonly"], "/api/exceptions/") == finance_ids | it_ids
    # Deliveries: finance sees its invoices' deliveries; sales owns none of them.
    assert len(ids(people["finance"], "/api/deliveries/")) == Delivery.objects.count()
    assert ids(people["sales"], "/api/deliveries/") == set()


def test_bulk_replay_reaches_only_the_callers_teams_records(people, token_client, two_teams):
    everything = [r.pk for r in two_teams.values()]
    response = token_client(people["finance"]).post(
        "/api/exceptions/replay/", {"reason": "all of them", "ids": everything}, format="json")
    assert response.status_code == 202
    finance_ids = sorted(r.pk for r in two_teams.values() if r.owner_team == "finance")
    assert sorted(response.json()["replayed"]) == finance_ids
    assert ExceptionRecord.objects.get(pk=two_teams["configuration"].pk).status == "open"


def test_a_read_only_token_can_look_and_never_act(people, token_client, two_teams):
    client = token_client(people["readonly"])
    record = two_teams["rejected"]
    assert client.get(f"/api/exceptions/{record.pk}/").status_code == 200
    assert client.get(f"/api/transactions/{record.transaction_id}/").status_code == 200
    for name, body in ACTIONS:
        assert client.post(f"/api/exceptions/{record.pk}/{name}/", body, format="json").status_code == 403, name
    assert client.post("/api/exceptions/replay/", {"reason": "x", "ids": [record.pk]}, format="json").status_code == 403
    assert client.post("/api/syncs/customers/").status_code == 403
    assert ExceptionRecord.objects.get(pk=record.pk).status == "open"


def test_each_action_needs_its_own_permission(people, token_client, two_teams):
    """A finance user without bulk replay can replay one, not many; without
    edit-and-replay cannot correct; a user without any role sees nothing."""
    from django.contrib.auth.models import Permission

    fiona = people["finance"]
    record = two_teams["rejected"]
    fiona.user_permissions.clear()
    group = fiona.groups.get()
    group.permissions.remove(*Permission.objects.filter(
        codename__in=["bulk_replay_exception", "edit_and_replay_exception"]))
    client = token_client(type(fiona).objects.get(pk=fiona.pk))
    assert client.post("/api/exceptions/replay/", {"reason": "x", "ids": [record.pk]},
                       format="json").status_code == 403
    assert client.post(f"/api/exceptions/{record.pk}/edit-and-replay/",
                       {"reason": "x", "corrections": {"legal_entity": "US"}}, format="json").status_code == 403
    assert client.post(f"/api/exceptions/{record.pk}/replay/", {"reason": "ERP tax added"},
                       format="json").status_code == 202

    nobody = token_client(people["nobody"])
    assert nobody.get("/api/exceptions/").status_code == 403
    assert nobody.get(f"/api/transactions/{record.transaction_id}/").status_code == 403
    assert nobody.get("/api/inventory/").status_code == 403
    assert nobody.get("/api/connections/").status_code == 403


def test_the_customer_endpoints_belong_to_sales_operations(people, token_client, two_teams):
    from canonical.models import Customer

    customer = Customer.objects.first()
    assert token_client(people["finance"]).get(f"/api/customers/{customer.pk}/").status_code == 404
    assert token_client(people["sales"]).get(f"/api/customers/{customer.pk}/").status_code == 200
    assert token_client(people["finance"]).post("/api/syncs/customers/").status_code == 403


def test_the_schema_and_its_viewers_are_for_authenticated_users(client, people, token_client):
    assert client.get("/api/schema/").status_code in (401, 403)
    response = token_client(people["readonly"]).get("/api/schema/")
    assert response.status_code == 200 and b"/api/inventory/" in response.content
    client.force_login(people["readonly"])
    swagger = client.get(reverse("swagger-ui"))
    redoc = client.get(reverse("redoc"))
    assert swagger.status_code == 200 and redoc.status_code == 200
    # Served by the app (drf-spectacular-sidecar), never from a CDN.
    for page in (swagger, redoc):
        assert b"cdn." not in page.content and b"unpkg" not in page.content and b"jsdelivr" not in page.content
        assert b"/static/drf_spectacular_sidecar/" in page.content


def test_every_role_permission_exists(db):
    """The migration grants permissions by name: a typo would grant nothing, silently."""
    from django.contrib.auth.models import Group, Permission

    from integration_hub.operations.roles import ROLES

    for role in ROLES:
        for name in role.permissions:
            app_label, codename = name.split(".")
            assert Permission.objects.filter(content_type__app_label=app_label, codename=codename).exists(), name
        assert Group.objects.get(name=role.group).permissions.count() == len(set(role.permissions))


def test_usage_endpoints_belong_to_product_operations(people, token_client, db):
    paths = ["/api/usage/batches/", "/api/reconciliations/"]
    for who in ("finance", "sales", "it", "nobody"):
        client = token_client(people[who])
        for path in paths:
            assert client.get(path).status_code == 403, (who, path)
        assert client.post("/api/usage/periods/2026-01/close/").status_code == 403, who
    for path in paths:
        assert token_client(people["product"]).get(path).status_code == 200, path
