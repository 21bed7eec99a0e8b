"""People with roles: one user per role group (created by the migration), each with an
API token, and a hub with one exception per team."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, User

from connectors.errors import NeedsConfiguration, Permanent
from integration_hub.runtime.models import ExceptionRecord
from tests.helpers import drain


def _person(username: str, group: str | None, **extra) -> User:
    user = User.objects.create_user(username, email=f"{username}@example.com", password="pw", is_staff=True, **extra)
    if group:
        user.groups.add(Group.objects.get(name=group))
    return user


@pytest.fixture
def people(db):
    return {
        "finance": _person("fiona", "Finance operations"),
        "sales": _person("sam", "Sales operations"),
        "it": _person("ivan", "IT operations"),
        "product": _person("pia", "Product operations"),
        "readonly": _person("rita", "Read-only"),
        "nobody": _person("nemo", None),
    }


@pytest.fixture
def token_client():
    from rest_framework.authtoken.models import Token
    from rest_framework.test import APIClient

    def client_for(user: User) -> APIClient:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.get_or_create(user=user)[0].key}")
        return client

    return client_for


@pytest.fixture
def two_teams(stripe_connection, legal_entities, memory_erp, post_webhook, sandbox, sent_tasks):
    """A finance exception (the ERP rejects an invoice), an IT one (the ERP needs
    configuration) and a policy exception (no legal entity books GBP)."""
    memory_erp.failures.extend([Permanent("no 10 % tax in this company"), NeedsConfiguration("ERP login expired")])
    for currency in ("usd", "usd", "gbp"):
        invoice = sandbox.finalize(sandbox.invoice("cus_1", [("Plan", 1, 1000)], currency=currency))
        post_webhook(sandbox.event("invoice.finalized", invoice))
        drain(sent_tasks)
    records = {r.category: r for r in ExceptionRecord.objects.all()}
    assert set(records) == {"rejected", "configuration", "policy"}
    assert {r.owner_team for r in records.values()} == {"finance", "it_operations"}
    return records


@pytest.fixture(autouse=True)
def console_seeded(db):
    """The migration's groups and SLAs (a transactional test's flush removes them)."""
    from django.apps import apps

    from integration_hub.operations.roles import console_seed

    console_seed(apps)
