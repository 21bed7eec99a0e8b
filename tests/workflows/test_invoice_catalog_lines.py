"""Invoice lines know their product: a line whose billing price belongs to a released
catalog SKU posts against that SKU's ERP product; a SKU the ERP does not have yet is
retried, then a product-operations exception replayed after the release; a line the
catalog does not know posts as free text, as before."""

import pytest
from django.utils import timezone

from canonical.models import CatalogVersion, Price, PriceVersion, Product
from canonical.services import xref_bind
from connectors.errors import ProductMissing
from integration_hub.runtime.models import Delivery, ExceptionRecord
from integration_hub.runtime.services import DELIVER_TASK, exception_replay
from tests.helpers import drain

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def hub(stripe_connection, legal_entities, memory_erp, sent_tasks):
    return memory_erp


def catalog_price(sku: str, platform_id: str, *, billing_ids=(), in_erp: bool = True) -> Product:
    """A catalog SKU with one price whose versions were released to billing as
    ``billing_ids`` (oldest first: all but the last are replaced), and its product
    released to the ERP connection ``erp`` when ``in_erp``."""
    product = Product.objects.create(sku=sku, name=sku.title(), source_system="catalog")
    price = Price.objects.create(product=product, currency="USD", source_system="catalog", source_id=platform_id)
    for number, billing_id in enumerate(billing_ids, start=1):
        last = number == len(billing_ids)
        version = PriceVersion.objects.create(
            price=price, number=number, content={}, content_hash=str(number), unit_amount=2500,
            status=CatalogVersion.Status.RELEASED if last else CatalogVersion.Status.SUPERSEDED,
            released_at=timezone.now())
        xref_bind(system="stripe", object_type="price_version", canonical_id=version.pk, external_id=billing_id)
    if in_erp:
        release_to_erp(product)
    return product


def release_to_erp(product: Product) -> None:
    xref_bind(system="erp", object_type="product", canonical_id=product.pk, external_id=f"{product.pk + 100}")


def issue(post_webhook, sandbox, lines):
    customer = sandbox.customer("Grace Hopper", "grace@example.com", country="US")
    invoice = sandbox.finalize(sandbox.invoice(customer, lines, currency="usd"))
    post_webhook(sandbox.event("invoice.finalized", invoice))
    return invoice


def posted_products(hub, invoice) -> list[str]:
    _, _, posting = hub.postings[invoice["id"]]
    return [line.product for line in posting.lines]


def test_a_line_on_a_released_sku_posts_against_its_product_and_other_lines_as_text(
        hub, post_webhook, sandbox, sent_tasks):
    catalog_price("PRO", "pro-monthly-usd", billing_ids=["price_pro_v1"])
    invoice = issue(post_webhook, sandbox, [("Pro plan", 2, 2500, "PRO", "price_pro_v1"),
                                            ("Consulting", 1, 1000)])
    drain(sent_tasks)

    assert Delivery.objects.get().status == "posted"
    assert posted_products(hub, invoice) == ["PRO", ""]


def test_a_line_billed_on_a_replaced_price_is_still_revenue_of_its_sku(hub, post_webhook, sandbox, sent_tasks):
    catalog_price("PRO", "pro-monthly-usd", billing_ids=["price_pro_old", "price_pro_new"])
    invoice = issue(post_webhook, sandbox, [("Pro plan (old price)", 1, 2500, "PRO", "price_pro_old")])
    drain(sent_tasks)

    assert posted_products(hub, invoice) == ["PRO"]


def test_the_platform_price_id_on_a_line_maps_too(hub, post_webhook, sandbox, sent_tasks):
    catalog_price("STARTER", "starter-monthly-usd", billing_ids=["price_starter"])
    invoice = issue(post_webhook, sandbox, [("Starter", 1, 2500, "STARTER", "starter-monthly-usd")])
    drain(sent_tasks)

    assert posted_products(hub, invoice) == ["STARTER"]


def test_an_invoice_without_catalog_prices_posts_as_before(hub, post_webhook, sandbox, sent_tasks):
    catalog_price("PRO", "pro-monthly-usd", billing_ids=["price_pro_v1"])
    invoice = issue(post_webhook, sandbox, [("Seats", 3, 2500), ("Support", 1, 1000)])
    drain(sent_tasks)

    assert Delivery.objects.get().status == "posted"
    assert posted_products(hub, invoice) == ["", ""]


def retry_now(delivery: Delivery, sent_tasks) -> None:
    Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())
    sent_tasks.append((DELIVER_TASK, delivery.pk, None))
    drain(sent_tasks)


def test_a_sku_the_erp_lacks_is_retried_then_product_operations_replay_it_after_release(
        hub, post_webhook, sandbox, sent_tasks, settings, admin_user):
    settings.HUB_DELIVERY_MAX_ATTEMPTS = 2
    product = catalog_price("ENTERPRISE", "enterprise-monthly-usd", in_erp=False)
    invoice = issue(post_webhook, sandbox, [("Enterprise", 1, 2500, "ENTERPRISE", "enterprise-monthly-usd"),
                                            ("Support", 1, 1000)])
    drain(sent_tasks)

    delivery = Delivery.objects.get(action="invoice.post")
    assert delivery.status == "pending"  # retried: its release may be on the way
    attempt = delivery.attempt_log.get()
    assert (attempt.outcome, attempt.error_class) == ("retryable", ProductMissing.__name__)
    assert "catalog SKU ENTERPRISE, which is not released to erp yet" in attempt.message
    assert invoice["id"] not in hub.postings  # never posted as free text

    retry_now(delivery, sent_tasks)
    delivery.refresh_from_db()
    assert delivery.status == "dead"
    record = ExceptionRecord.objects.get(delivery=delivery)
    assert (record.owner_team, record.category, record.status) == (
        "product_operations", "retries_exhausted", "open")
    assert "ENTERPRISE" in record.summary
    assert invoice["id"] not in hub.postings

    release_to_erp(product)
    exception_replay(record, user=admin_user, reason="ENTERPRISE released")
    drain(sent_tasks)
    delivery.refresh_from_db()
    assert delivery.status == "posted"
    assert posted_products(hub, invoice) == ["ENTERPRISE", ""]


def test_a_sku_released_during_the_retries_posts_without_anyone_replaying(hub, post_webhook, sandbox, sent_tasks):
    product = catalog_price("ADDON", "addon-usd", in_erp=False)
    invoice = issue(post_webhook, sandbox, [("Add-on", 1, 2500, "ADDON", "addon-usd")])
    drain(sent_tasks)
    delivery = Delivery.objects.get(action="invoice.post")
    assert delivery.status == "pending"

    release_to_erp(product)
    retry_now(delivery, sent_tasks)
    delivery.refresh_from_db()
    assert delivery.status == "posted" and not ExceptionRecord.objects.exists()
    assert posted_products(hub, invoice) == ["ADDON"]


def test_the_erp_refusing_the_product_code_is_retried_the_same_way(hub, post_webhook, sandbox, sent_tasks,
                                                                    settings):
    """The binding says released, but the ERP has no active product of that code
    (deactivated by hand): the connector's ProductMissing is retried, then product ops'."""
    settings.HUB_DELIVERY_MAX_ATTEMPTS = 1
    catalog_price("PRO", "pro-monthly-usd", billing_ids=["price_pro_v1"])
    hub.failures.append(ProductMissing("line 'Pro' bills catalog SKU PRO, which the ERP has no active product for",
                                       sku="PRO"))
    issue(post_webhook, sandbox, [("Pro plan", 1, 2500, "PRO", "price_pro_v1")])
    drain(sent_tasks)

    record = ExceptionRecord.objects.get()
    assert (record.owner_team, record.category) == ("product_operations", "retries_exhausted")
