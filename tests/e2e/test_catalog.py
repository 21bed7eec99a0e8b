"""The catalog workflow on the whole stack: the product-platform sandbox → pull →
drafts → approval → a real Celery worker → the real Tryton ERP and the Stripe API
sandbox; a price change, a retired SKU still in use, drift made directly in Tryton.
Assertions read the targets."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
from django.conf import settings
from django.utils import timezone

from canonical.models import CatalogVersion, PriceVersion, ProductVersion
from connectors.models import Connection
from connectors.services import connection_upsert
from integration_hub.runtime.models import Delivery, DeliveryAttempt, ExceptionRecord
from integration_hub.runtime.services import DELIVER_TASK, _send
from integration_hub.workflows.catalog import version_decide, versions_approve
from integration_hub.workflows.catalog_alerts import catalog_drift_check
from integration_hub.workflows.catalog_pull import catalog_pull_now
from tests.conftest import WEBHOOK_SECRET, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.stack, pytest.mark.django_db(transaction=True)]
Status = CatalogVersion.Status


@pytest.fixture
def tag():
    return f"E{uuid.uuid4().hex[:6].upper()}"


@pytest.fixture
def platform(tag):
    from connectors.product_platform.sandbox import ProductPlatformSandbox

    sandbox = ProductPlatformSandbox(prefix=tag)
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
def hub(celery_worker_process, tryton_server, legal_entities, platform, stripe_api):
    connection_upsert(name="tryton", vendor="tryton", role="erp", config=tryton_server.connection_config(),
                      credentials=tryton_server.credentials())
    connection_upsert(name="stripe", vendor="stripe", role="billing", config=stripe_api.connection_config(),
                      credentials={"api_key": stripe_api.api_key, "webhook_secrets": [WEBHOOK_SECRET]})
    connection_upsert(name="catalog", vendor="product_platform", role="product",
                      config=platform.connection_config(), credentials=platform.credentials())


def pull():
    return catalog_pull_now(Connection.objects.get(name="catalog"))


def released():
    return not Delivery.objects.exclude(status__in=["posted", "dead"]).exists()


def erp_products(erp, tag):
    rows = erp.client.call("product.product", "search_read", [("code", "like", f"{tag}-%")], 0, None,
                           [("code", "ASC")], ["code", "active", "template", "template.name",
                                               "template.account_category"], context={"active_test": False})
    return {row["code"]: row for row in rows}


def erp_list_price(erp, template: int, company: int) -> Decimal:
    row, = erp.client.call("product.template", "read", [template], ["list_price"], context={"company": company})
    return Decimal(str(row["list_price"]))


def test_the_catalog_reaches_tryton_and_stripe_only_once_approved(hub, erp, tryton_server, platform, stripe_api, tag,
                                                                   admin_user):
    companies = tryton_server.connection_config()["companies"]
    run = pull()
    assert run.status == "succeeded" and run.counts["new_versions"] == 22
    assert erp_products(erp, tag) == {} and stripe_api.catalog.prices == {}

    done, skipped = versions_approve(list(ProductVersion.objects.all()) + list(PriceVersion.objects.all()),
                                     user=admin_user)
    assert (done, skipped) == (22, [])
    wait_for(released, what="the approved versions to be released", timeout=180)
    assert not Delivery.objects.filter(status="dead").exists()

    products = erp_products(erp, tag)
    assert sorted(products) == sorted(f"{tag}-{sku}" for sku in (
        "STARTER", "PRO", "ENTERPRISE", "ADDON-API-CALLS", "ADDON-STORAGE", "LEGACY-BASIC"))
    pro = products[f"{tag}-PRO"]
    assert pro["template."]["name"] == "Pro" and pro["template."]["account_category"]
    assert not products[f"{tag}-LEGACY-BASIC"]["active"]  # Tryton on SQLite answers 0
    assert erp_list_price(erp, pro["template"], companies["US"]) == Decimal("99")
    assert erp_list_price(erp, pro["template"], companies["EU"]) == Decimal("92")
    assert erp_list_price(erp, pro["template"], companies["JP"]) == Decimal("15000")
    # One Stripe price per approved price version, one Tryton product per product.
    assert len(stripe_api.catalog.prices) == PriceVersion.objects.filter(status=Status.RELEASED).count() == 16
    assert ProductVersion.objects.filter(status=Status.RELEASED).count() == 6
    lookup = f"{tag.lower()}-pro-monthly-usd"
    [old] = [p for p in stripe_api.catalog.prices.values() if p["lookup_key"] == lookup]

    # A price change: a new version, nothing sent until it is approved.
    platform.price_set(lookup, "119.00")
    assert pull().counts["new_versions"] == 1
    draft = PriceVersion.objects.get(price__source_id=lookup, status=Status.DRAFT)
    wait_for(released, what="nothing to release")
    assert erp_list_price(erp, pro["template"], companies["US"]) == Decimal("99")
    assert len(stripe_api.catalog.prices) == 16
    version_decide(draft, approve=True, user=admin_user)
    wait_for(released, what="the new price to be released")
    [new] = [p for p in stripe_api.catalog.prices.values() if p["lookup_key"] == lookup]
    assert (new["unit_amount"], new["active"]) == (11900, True) and new["id"] != old["id"]
    assert stripe_api.catalog.prices[old["id"]]["active"] is False
    assert erp_list_price(erp, pro["template"], companies["US"]) == Decimal("119")
    assert ExceptionRecord.objects.filter(category="alert", summary__contains="changes by +20.20%").exists()

    # Retiring a SKU that an active subscription still bills raises an alert.
    stripe_api.catalog.subscription_add(new["id"])
    platform.item_retire(f"{tag}-PRO")
    pull()
    alert = wait_for(lambda: ExceptionRecord.objects.filter(category="alert", summary__contains="is retired").first(),
                     what="the retirement alert")
    assert f"SKU {tag}-PRO is retired while 1 active subscription(s) still use it" in alert.summary
    assert erp_products(erp, tag)[f"{tag}-PRO"]["active"]  # the retirement awaits approval

    # Drift made directly in Tryton is found by the nightly comparison.
    starter = erp_products(erp, tag)[f"{tag}-STARTER"]
    erp.client.call("product.template", "write", [starter["template"]], {"name": "Starter (edited in ERP)"})
    erp.client.call("product.template", "write", [starter["template"]], {"list_price": Decimal("1")},
                    context={"company": companies["EU"]})
    findings = catalog_drift_check()
    assert f"{tag}-STARTER: name is 'Starter (edited in ERP)', released 'Starter'" in findings["tryton"]
    assert f"{tag}-STARTER: price EUR unit_amount is 100, released 2700" in findings["tryton"]
    assert not [f for f in findings["stripe"] if tag in f]
    assert ExceptionRecord.objects.filter(category="drift", owner_team="product_operations",
                                          summary__contains=f"{tag}-STARTER: name").exists()


def approve_sku(sku: str, user) -> None:
    done, skipped = versions_approve(list(ProductVersion.objects.filter(product__sku=sku))
                                     + list(PriceVersion.objects.filter(price__product__sku=sku)), user=user)
    assert done and not skipped
    wait_for(released, what=f"{sku} to be released", timeout=180)


def erp_invoice_lines(erp, invoice_id: int) -> list[tuple[str | None, str]]:
    rows = erp.client.call("account.invoice.line", "search_read", [("invoice", "=", invoice_id)], 0, None,
                           [("id", "ASC")], ["product.code", "description"])
    return [((row.get("product.") or {}).get("code"), row["description"]) for row in rows]


def test_invoice_lines_on_catalog_skus_post_against_their_tryton_products(hub, erp, platform, stripe_api, tag,
                                                                          admin_user, sandbox, post_webhook):
    pull()
    approve_sku(f"{tag}-PRO", admin_user)
    [pro_usd] = [p for p in stripe_api.catalog.prices.values() if p["lookup_key"] == f"{tag.lower()}-pro-monthly-usd"]

    customer = sandbox.customer("Catalog Buyer Inc.", "ap@buyer.example", country="US")
    invoice = sandbox.finalize(sandbox.invoice(customer, [
        ("Pro plan", 2, 9900, f"{tag}-PRO", pro_usd["id"]),  # a released SKU, by its Stripe price
        ("Enterprise plan", 1, 49900, f"{tag}-ENTERPRISE", f"{tag.lower()}-enterprise-monthly-usd"),  # not yet
        ("Onboarding workshop", 1, 5000),  # not in the catalog
    ], currency="usd"))
    assert post_webhook(sandbox.event("invoice.finalized", invoice)).status_code == 200

    # The Enterprise SKU is not in Tryton yet: the post is retried, nothing is posted as text.
    attempt = wait_for(lambda: DeliveryAttempt.objects.filter(delivery__action="invoice.post",
                                                              error_class="ProductMissing").first(),
                       what="the post to wait for the Enterprise SKU")
    assert "catalog SKU " + f"{tag}-ENTERPRISE" in attempt.message
    assert erp.invoices(reference=invoice["id"]) == []

    # Spend the retry budget now rather than minutes of backoff: then it is product operations'.
    post = attempt.delivery
    Delivery.objects.filter(pk=post.pk, status="pending").update(
        attempts=settings.HUB_DELIVERY_MAX_ATTEMPTS - 1, next_attempt_at=timezone.now())
    _send(DELIVER_TASK, post.pk)
    record = wait_for(lambda: ExceptionRecord.objects.filter(delivery=post, status="open").first(),
                      what="the product-operations exception")
    assert (record.owner_team, record.category) == ("product_operations", "retries_exhausted")
    assert erp.invoices(reference=invoice["id"]) == []

    # Released: the waiting post goes on by itself (nobody replays it), and every catalog
    # line is booked against its Tryton product.
    approve_sku(f"{tag}-ENTERPRISE", admin_user)
    wait_for(lambda: Delivery.objects.filter(pk=post.pk, status="posted").exists(), what="the resumed post")
    record.refresh_from_db()
    assert record.status == "resolved" and "released to" in record.resolution
    [posted] = erp.invoices(reference=invoice["id"])
    assert posted["state"] == "posted" and posted["total_amount"] == Decimal("821.70")
    assert erp_invoice_lines(erp, posted["id"]) == [
        (f"{tag}-PRO", "Pro plan"), (f"{tag}-ENTERPRISE", "Enterprise plan"), (None, "Onboarding workshop")]
