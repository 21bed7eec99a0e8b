"""Invoice lines know their product: a line whose billing price belongs to a released
catalog SKU posts against that SKU's ERP product; a SKU the ERP does not have yet is
retried, then a product-operations exception replayed after the release; a line the
catalog does not know posts as free text, as before."""

import pytest
from django.db import transaction
from django.utils import timezone

from canonical.models import CatalogVersion, Invoice, Price, PriceVersion, Product, ProductVersion
from canonical.services import xref_bind
from canonical.signals import product_released
from connectors.base import ExternalDocument
from connectors.errors import ProductMissing
from connectors.models import Connection
from integration_hub.runtime.models import BusinessTransaction, Delivery, ExceptionRecord
from integration_hub.runtime.services import DELIVER_TASK, exception_replay
from integration_hub.workflows.catalog import _product_bind
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


def test_a_dead_post_waiting_for_its_sku_posts_by_itself_once_the_sku_is_released(
        hub, post_webhook, sandbox, sent_tasks, settings):
    settings.HUB_DELIVERY_MAX_ATTEMPTS = 1
    product = catalog_price("SCALE", "scale-usd", in_erp=False)
    other = issue(post_webhook, sandbox, [("Support", 1, 1000)])
    invoice = issue(post_webhook, sandbox, [("Scale", 1, 2500, "SCALE", "scale-usd")])
    drain(sent_tasks)
    delivery = Delivery.objects.get(action="invoice.post", status="dead")
    record = ExceptionRecord.objects.get(delivery=delivery, status="open")

    release_to_erp(product)
    product_released.send(sender=Product, product_id=product.pk, system="erp")
    drain(sent_tasks)

    delivery.refresh_from_db()
    record.refresh_from_db()
    assert delivery.status == "posted" and posted_products(hub, invoice) == ["SCALE"]
    assert record.status == "resolved" and "its catalog SKU was released to erp" in record.resolution
    assert other["id"] in hub.postings  # posted before, not posted twice
    assert Delivery.objects.filter(action="invoice.post", status="posted").count() == 2


def test_a_post_in_its_backoff_is_due_at_once_and_posts_waiting_for_other_skus_stay(
        hub, post_webhook, sandbox, sent_tasks):
    team = catalog_price("TEAM", "team-usd", in_erp=False)
    catalog_price("SOLO", "solo-usd", in_erp=False)
    on_team = issue(post_webhook, sandbox, [("Team", 1, 2500, "TEAM", "team-usd")])
    on_solo = issue(post_webhook, sandbox, [("Solo", 1, 900, "SOLO", "solo-usd")])
    drain(sent_tasks)

    def post_of(invoice) -> Delivery:
        return Delivery.objects.get(action="invoice.post", object_id=Invoice.objects.get(source_id=invoice["id"]).pk)

    due = {}
    for invoice in (on_team, on_solo):
        waiting = post_of(invoice)
        assert (waiting.status, waiting.attempts) == ("pending", 1)  # in its backoff
        due[invoice["id"]] = waiting.next_attempt_at

    release_to_erp(team)
    product_released.send(sender=Product, product_id=team.pk, system="another-erp")  # none of its posts there
    assert post_of(on_team).next_attempt_at == due[on_team["id"]] and not sent_tasks
    product_released.send(sender=Product, product_id=team.pk, system="erp")
    drain(sent_tasks)

    assert (post_of(on_team).status, post_of(on_team).attempts) == ("posted", 2)  # one retry, at once
    assert posted_products(hub, on_team) == ["TEAM"]
    solo = post_of(on_solo)
    assert (solo.status, solo.attempts, solo.next_attempt_at) == ("pending", 1, due[on_solo["id"]])  # untouched


def test_the_catalog_announces_a_product_bound_in_a_system(memory_erp):
    """The catalog's ERP binding sends the notice the posts wait for, once it commits."""
    product = Product.objects.create(sku="NOTICE", name="Notice", source_system="catalog")
    version = ProductVersion.objects.create(product=product, number=1, content={}, content_hash="1",
                                            status=CatalogVersion.Status.APPROVED)
    delivery = Delivery.objects.create(
        transaction=BusinessTransaction.objects.create(kind="product", subject="catalog:product:NOTICE"),
        connection=Connection.objects.get(name="erp"), action="catalog.product.release",
        object_type="product_version", object_id=version.pk, idempotency_key="notice", next_attempt_at=timezone.now())
    heard = []
    product_released.connect(lambda sender, **kw: heard.append(kw), weak=False, dispatch_uid="notice-test")
    try:
        with transaction.atomic():
            _product_bind(delivery, ExternalDocument(external_id="77"))
            assert heard == []  # not before the binding commits
        assert heard == [{"signal": product_released, "product_id": product.pk, "system": "erp"}]
    finally:
        product_released.disconnect(dispatch_uid="notice-test")
