"""CRM onboarding fixtures: the Salesforce, HubSpot and Stripe API sandboxes served
over HTTP, and an in-memory ERP party book (CustomerSink) a test can inspect."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from canonical.contracts import CustomerV1
from connectors.base import Connector, ExternalDocument
from connectors.errors import Retryable
from connectors.registry import register


@dataclass
class PartyBook:
    parties: dict[str, dict] = field(default_factory=dict)  # code -> values
    calls: list[str] = field(default_factory=list)


PARTIES = PartyBook()


@register("memory-party-erp")
class MemoryPartyErp(Connector):
    """Parties by code ``HUB-<id>``, with Tryton's rule that a parent must exist first."""

    def upsert_customer(self, customer: CustomerV1, *, idempotency_key: str,
                        external_id: str | None = None) -> ExternalDocument:
        code = f"HUB-{customer.canonical_id}"
        PARTIES.calls.append(code)
        if customer.parent is not None and f"HUB-{customer.parent_canonical_id}" not in PARTIES.parties:
            raise Retryable("parent not yet synced")
        party = PARTIES.parties.setdefault(code, {"id": str(len(PARTIES.parties) + 100)})
        party.update(name=customer.display_name, parent=customer.parent_canonical_id)
        return ExternalDocument(external_id=party["id"], number=code)


@pytest.fixture
def salesforce_org():
    from connectors.salesforce.sandbox import SalesforceSandbox

    org = SalesforceSandbox()
    org.serve()
    yield org
    org.stop()


@pytest.fixture
def hubspot_portal():
    from connectors.hubspot.sandbox import HubSpotSandbox

    portal = HubSpotSandbox()
    portal.serve()
    yield portal
    portal.stop()


@pytest.fixture
def stripe_api():
    from connectors.stripe.api_sandbox import StripeApiSandbox

    api = StripeApiSandbox()
    api.serve()
    yield api
    api.stop()


@pytest.fixture
def crm_connections(db, salesforce_org, hubspot_portal, stripe_api):
    """salesforce and hubspot (CRM) and stripe (billing, webhooks and API) connections."""
    from connectors.services import connection_upsert
    from tests.conftest import WEBHOOK_SECRET

    connection_upsert(name="salesforce", vendor="salesforce", role="crm", config=salesforce_org.connection_config(),
                      credentials=salesforce_org.credentials())
    connection_upsert(name="hubspot", vendor="hubspot", role="crm", config=hubspot_portal.connection_config(),
                      credentials=hubspot_portal.credentials())
    connection_upsert(name="stripe", vendor="stripe", role="billing", config=stripe_api.connection_config(),
                      credentials={"api_key": stripe_api.api_key, "webhook_secrets": [WEBHOOK_SECRET]})


@pytest.fixture
def party_erp(db):
    from connectors.services import connection_upsert

    PARTIES.parties.clear()
    PARTIES.calls.clear()
    connection_upsert(name="erp", vendor="memory-party-erp", role="erp", config={}, credentials={})
    return PARTIES


@pytest.fixture
def post_salesforce(client, salesforce_org):
    """POST a change event to the hub as the relay does."""

    def post(envelope, **headers):
        body, signed = salesforce_org.webhook_request(envelope)
        return client.post("/api/webhooks/salesforce/", data=body, content_type="application/json",
                           headers={**{k: v for k, v in signed.items() if k != "Content-Type"}, **headers})

    return post


@pytest.fixture
def post_hubspot(client, hubspot_portal):
    def post(events):
        body, signed = hubspot_portal.webhook_request(events, "http://testserver/api/webhooks/hubspot/")
        return client.post("/api/webhooks/hubspot/", data=body, content_type="application/json",
                           headers={k: v for k, v in signed.items() if k != "Content-Type"})

    return post
