"""Catalog fixtures: the product-platform and Stripe API sandboxes served over HTTP,
an in-memory ERP item master, the connections, a catalog approver, and ``drain``
(runs what the hub sent to the broker, in this process, until nothing is left)."""

from __future__ import annotations

import pytest

from connectors.base import Connector, ExternalDocument, TargetProduct
from connectors.registry import register


class MemoryItemMaster:
    def __init__(self):
        self.products: dict[str, dict] = {}
        self.list_prices: dict[tuple[str, str], int] = {}
        self.calls: list[tuple[str, str]] = []
        self.failures: list[Exception] = []

    def _call(self, what: str, key: str) -> None:
        self.calls.append((what, key))
        if self.failures:
            raise self.failures.pop(0)


ITEM_MASTER = MemoryItemMaster()


@register("memory-item-master")
class MemoryItemMasterConnector(Connector):
    """An ERP item master in this process (ProductSink + ListPriceSink)."""

    def upsert_product(self, product, *, idempotency_key):
        ITEM_MASTER._call("upsert", product.sku)
        record = ITEM_MASTER.products.setdefault(product.sku, {"id": str(len(ITEM_MASTER.products) + 1)})
        record.update(name=product.display_name, active=product.active)
        return ExternalDocument(external_id=record["id"], number=product.sku)

    def set_list_price(self, price, *, legal_entity, idempotency_key):
        ITEM_MASTER._call("list_price", f"{price.sku}:{price.currency}")
        ITEM_MASTER.list_prices[(price.sku, price.currency)] = price.unit_amount
        return ExternalDocument(external_id=ITEM_MASTER.products[price.sku]["id"])

    def catalog_snapshot(self, skus):
        return {sku: TargetProduct(sku=sku, external_id=p["id"], name=p["name"], active=p["active"],
                                   prices={ccy: {"currency": ccy, "unit_amount": amount}
                                           for (s, ccy), amount in ITEM_MASTER.list_prices.items() if s == sku})
                for sku, p in ITEM_MASTER.products.items()}


@pytest.fixture
def platform():
    from connectors.product_platform.sandbox import ProductPlatformSandbox

    sandbox = ProductPlatformSandbox()
    sandbox.serve()
    yield sandbox
    sandbox.stop()


@pytest.fixture
def stripe_api():
    from connectors.stripe.api_sandbox import StripeApiSandbox

    sandbox = StripeApiSandbox()
    sandbox.serve()
    yield sandbox
    sandbox.stop()


@pytest.fixture
def item_master(db):
    global ITEM_MASTER
    ITEM_MASTER.__init__()
    return ITEM_MASTER


@pytest.fixture
def catalog(db, platform, stripe_api, item_master, legal_entities, sent_tasks):
    """Connections: ``catalog`` (the platform), ``stripe`` (billing), ``erp`` (memory)."""
    from connectors.services import connection_upsert

    connection_upsert(name="catalog", vendor="product_platform", role="product",
                      config=platform.connection_config(), credentials=platform.credentials())
    connection_upsert(name="stripe", vendor="stripe", role="billing", config=stripe_api.connection_config(),
                      credentials={"api_key": stripe_api.api_key, "webhook_secrets": ["whsec_x"]})
    connection_upsert(name="erp", vendor="memory-item-master", role="erp", config={}, credentials={})
    return sent_tasks


@pytest.fixture
def approver(db, django_user_model):
    from django.contrib.auth.models import Permission

    user = django_user_model.objects.create_user("pat", password="x")
    user.user_permissions.add(Permission.objects.get(codename="approve_catalog"))
    return django_user_model.objects.get(pk=user.pk)  # fresh permission cache


@pytest.fixture
def drain(catalog):
    """Run every delivery and task the hub queued, until none is left."""
    from integration_hub.runtime.services import DELIVER_TASK, PROCESS_TASK, delivery_attempt, inbound_process

    def run(limit: int = 500):
        from integration_hub.workflows import tasks

        handlers = {DELIVER_TASK: delivery_attempt, PROCESS_TASK: inbound_process, "hub.catalog_retirement_check":
                    tasks.catalog_retirement_check_task, "hub.catalog_pull_run": tasks.catalog_pull_run_task}
        done = 0
        while catalog and done < limit:
            name, object_id, _ = catalog.pop(0)
            if name in handlers:
                handlers[name](object_id)
            done += 1
        return done

    return run
