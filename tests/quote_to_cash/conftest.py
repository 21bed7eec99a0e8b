# ruff: noqa: F811 - the CRM sandboxes are the crm tests' fixtures, imported to be shared
"""Quote-to-cash fixtures: the Salesforce, HubSpot and Stripe API sandboxes over HTTP,
the in-memory ERP (``memory_erp``), a released catalog (prices released to the
Stripe sandbox), and an onboarded customer (CRM account ↔ canonical ↔ Stripe)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pytest

from tests.crm.conftest import hubspot_portal, post_hubspot, post_salesforce, salesforce_org, stripe_api  # noqa: F401
from tests.helpers import drain


@dataclass
class Catalog:
    prices: dict  # platform price id -> PriceVersion
    stripe: dict  # platform price id -> Stripe price id


def release_price(stripe_api, ref: str, sku: str, amount: int, *, currency: str = "EUR", interval: str = "month",
                  erp: str = "erp"):
    """A released price version of ``sku`` and its Stripe price, bound as the release does;
    its product released to the ERP connection ``erp`` too (created in Tryton when that
    connection is a Tryton one), since invoice lines on a catalog price post against it."""
    from canonical.contracts import ProductV1, SourceRef
    from canonical.models import CatalogVersion, CrossReference, Price, PriceVersion, Product
    from canonical.services import xref_bind
    from connectors.models import Connection
    from connectors.services import connector_for

    product, _ = Product.objects.get_or_create(sku=sku, defaults={"name": sku.title()})
    if not CrossReference.objects.filter(system=erp, object_type="product", canonical_id=product.pk).exists():
        target = Connection.objects.filter(name=erp, vendor="tryton").first()
        external_id = f"erp-{sku}"
        if target is not None:
            contract = ProductV1(source=SourceRef(system="platform", external_id=sku), sku=sku,
                                 display_name=sku.title())
            external_id = connector_for(target).upsert_product(contract, idempotency_key=f"test:{sku}").external_id
        xref_bind(system=erp, object_type="product", canonical_id=product.pk, external_id=external_id)
    price = Price.objects.create(product=product, currency=currency, source_system="platform", source_id=ref)
    number = 1
    version = PriceVersion.objects.create(
        price=price, number=number, status=CatalogVersion.Status.RELEASED, unit_amount=amount,
        content={"sku": sku, "source": {"system": "platform", "external_id": ref}, "currency": currency,
                 "unit_amount": amount, "type": "recurring", "interval": interval},
        content_hash=ref, released_at=dt.datetime.now(dt.UTC))
    if f"prod_{sku}" not in stripe_api.catalog.products:
        stripe_api.catalog._product_create({"id": f"prod_{sku}", "name": sku})
    answer = stripe_api.catalog._price_create({"product": f"prod_{sku}", "currency": currency.lower(),
                                               "unit_amount": str(amount), "nickname": ref,
                                               "recurring": {"interval": interval}})
    xref_bind(system="stripe", object_type="price_version", canonical_id=version.pk, external_id=answer.body["id"])
    return version, answer.body["id"]


@pytest.fixture
def catalog(db, stripe_api):
    prices, stripe = {}, {}
    for ref, sku, amount in (("pro-monthly-eur", "PRO", 10_000), ("team-monthly-eur", "TEAM", 30_000),
                             ("starter-monthly-eur", "STARTER", 3_000)):
        prices[ref], stripe[ref] = release_price(stripe_api, ref, sku, amount)
    return Catalog(prices, stripe)


@pytest.fixture
def hub(db, salesforce_org, hubspot_portal, stripe_api, memory_erp, legal_entities, catalog, sent_tasks):
    """salesforce and hubspot (CRM), stripe (billing) and the in-memory ERP."""
    from connectors.services import connection_upsert
    from tests.conftest import WEBHOOK_SECRET

    connection_upsert(name="salesforce", vendor="salesforce", role="crm", config=salesforce_org.connection_config(),
                      credentials=salesforce_org.credentials())
    connection_upsert(name="hubspot", vendor="hubspot", role="crm", config=hubspot_portal.connection_config(),
                      credentials=hubspot_portal.credentials())
    connection_upsert(name="stripe", vendor="stripe", role="billing", config=stripe_api.connection_config(),
                      credentials={"api_key": stripe_api.api_key, "webhook_secrets": [WEBHOOK_SECRET]})
    return memory_erp


def customer_onboarded(stripe_api, crm_system: str, crm_id: str, name: str = "Acme Robotics GmbH"):
    """A canonical customer bound to its CRM account and its Stripe customer (what the
    onboarding workflow leaves behind)."""
    from canonical.models import Customer
    from canonical.services import xref_bind

    customer = Customer.objects.create(display_name=name, country="DE", currency="EUR")
    billing = stripe_api.objects.customer(name, "billing@acme.example", country="DE")
    billing["metadata"] = {"hub_id": str(customer.pk)}
    stripe_api.customers[billing["id"]] = billing
    xref_bind(system=crm_system, object_type="customer", canonical_id=customer.pk, external_id=crm_id)
    xref_bind(system="stripe", object_type="customer", canonical_id=customer.pk, external_id=billing["id"])
    return customer


@pytest.fixture
def account(hub, salesforce_org, stripe_api):
    record = salesforce_org.account_create("Acme Robotics GmbH", emit=False, BillingCountry="DE",
                                           CurrencyIsoCode="EUR")
    customer_onboarded(stripe_api, "salesforce", record["Id"])
    return record


@pytest.fixture
def stripe_events(post_webhook, stripe_api):
    """Deliver what the Stripe sandbox emitted since the last call, in order, as webhooks."""
    seen = {"count": 0}

    def deliver(*, types: tuple[str, ...] | None = None) -> list[dict]:
        fresh = stripe_api.billing.events[seen["count"]:]
        seen["count"] = len(stripe_api.billing.events)
        sent = [event for event in fresh if types is None or event["type"] in types]
        for event in sent:
            assert post_webhook(event).status_code == 200
        return sent

    return deliver


def close_won(salesforce_org, post_salesforce, sent_tasks, account_id, lines, **fields):
    """An Opportunity with ``lines`` moved to Closed Won, its change event relayed and processed."""
    opportunity = salesforce_org.opportunity_create(account_id, fields.pop("name", "Acme – Pro"), lines=lines,
                                                    emit=False, **fields)
    salesforce_org.opportunity_close_won(opportunity["Id"])
    assert post_salesforce(salesforce_org.last_event(opportunity["Id"])).status_code == 200
    drain(sent_tasks, include_delayed=True)
    return opportunity
