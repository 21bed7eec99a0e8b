"""Release deliveries under concurrency, on PostgreSQL with two real connections:

* a version's last two deliveries posting at the same moment still release it;
* a product delivery is never skipped by a worker while a price is being planned
  after it, and the price planned meanwhile is woken when the product posts.

Each test holds one transaction open in a thread at the point of the race and
checks what the other connection does meanwhile (blocks, or goes through)."""

from __future__ import annotations

import threading

import pytest
from django.db import connection, transaction
from django.utils import timezone

from canonical.models import CatalogVersion, PriceVersion, ProductVersion
from connectors.base import ExternalDocument
from connectors.models import Connection
from integration_hub.runtime.models import Delivery
from integration_hub.runtime.services import DELIVER_TASK, delivery_claim, delivery_record_success
from integration_hub.workflows import catalog as workflow
from integration_hub.workflows.catalog import version_decide
from integration_hub.workflows.catalog_pull import catalog_pull_now

pytestmark = pytest.mark.django_db(transaction=True)
Status = CatalogVersion.Status


@pytest.fixture(autouse=True)
def _server_database():
    if connection.vendor != "postgresql":
        pytest.skip("SQLite serializes writers; the race needs a server database (CI runs PostgreSQL)")


class Held(threading.Thread):
    """Runs ``work`` in a transaction on its own connection, then keeps the
    transaction open until ``finish()``."""

    def __init__(self, work):
        super().__init__(daemon=True)
        self.work, self.ready, self.go, self.error = work, threading.Event(), threading.Event(), None

    def run(self):
        try:
            with transaction.atomic():
                self.work()
                self.ready.set()
                self.go.wait(30)
        except Exception as exc:  # noqa: BLE001 - reported to the test
            self.error = exc
            self.ready.set()
        finally:
            connection.close()

    def start_and_hold(self):
        self.start()
        assert self.ready.wait(30), "the held transaction never got ready"
        assert self.error is None, self.error

    def finish(self):
        self.go.set()
        self.join(30)
        assert self.error is None, self.error


def blocked_backends() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                       "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()")
        return cursor.fetchone()[0]


def wait_blocked(thread: threading.Thread) -> None:
    for _ in range(300):
        if blocked_backends():
            return
        thread.join(0.05)
    raise AssertionError("the second transaction never waited for the first")


def posted(delivery: Delivery) -> Delivery:
    """Run the delivery's claim and record its success as the runtime does."""
    claimed = delivery_claim(delivery.pk)
    assert claimed is not None
    return delivery_record_success(claimed, ExternalDocument(external_id=f"x{delivery.pk}"),
                                   started=timezone.now(), seconds=0)


@pytest.fixture
def pro(catalog, approver):
    """PRO pulled and its product version approved (two deliveries: ERP and billing)."""
    catalog_pull_now(Connection.objects.get(name="catalog"))
    version = ProductVersion.objects.get(product__sku="PRO")
    version_decide(version, approve=True, user=approver)
    catalog.clear()
    return version


def test_a_versions_last_two_deliveries_posting_at_once_release_it(pro):
    first, second = Delivery.objects.filter(object_type="product_version", object_id=pro.pk).order_by("pk")
    claimed_first, claimed_second = delivery_claim(first.pk), delivery_claim(second.pk)

    # The first posting is committed only after the second has started.
    holder = Held(lambda: delivery_record_success(claimed_first, ExternalDocument(external_id="1"),
                                                  started=timezone.now(), seconds=0))
    holder.start_and_hold()
    other = threading.Thread(target=lambda: (delivery_record_success(
        claimed_second, ExternalDocument(external_id="2"), started=timezone.now(), seconds=0), connection.close()),
        daemon=True)
    other.start()
    wait_blocked(other)  # the second waits for the version the first holds
    holder.finish()
    other.join(30)

    pro.refresh_from_db()
    assert set(Delivery.objects.filter(object_id=pro.pk, object_type="product_version")
               .values_list("status", flat=True)) == {"posted"}
    assert pro.status == Status.RELEASED


def test_a_product_delivery_is_claimed_while_a_price_is_being_planned_after_it(pro, approver):
    erp_delivery = Delivery.objects.get(object_type="product_version", object_id=pro.pk, connection__name="erp")
    price = PriceVersion.objects.get(price__source_id="pro-monthly-usd")

    planner = Held(lambda: version_decide(price, approve=True, user=approver))
    planner.start_and_hold()  # the price's plan holds its lock on the product delivery
    claimed = delivery_claim(erp_delivery.pk)
    assert claimed is not None and claimed.status == Delivery.Status.IN_FLIGHT  # not skipped
    planner.finish()


def test_a_price_planned_while_its_product_posts_is_woken(pro, approver, catalog):
    erp_delivery = Delivery.objects.get(object_type="product_version", object_id=pro.pk, connection__name="erp")
    price = PriceVersion.objects.get(price__source_id="pro-monthly-eur")  # EUR: a list price for the ERP
    claimed = delivery_claim(erp_delivery.pk)

    planner = Held(lambda: version_decide(price, approve=True, user=approver))
    planner.start_and_hold()  # planned while the product is pending: the price's row waits
    poster = threading.Thread(target=lambda: (delivery_record_success(
        claimed, ExternalDocument(external_id="1"), started=timezone.now(), seconds=0), connection.close()),
        daemon=True)
    poster.start()
    wait_blocked(poster)  # the posting waits for the plan before it looks for dependents
    planner.finish()
    poster.join(30)

    list_price = Delivery.objects.get(action=workflow.LIST_PRICE_RELEASE, object_id=price.pk)
    assert list_price.after_id == erp_delivery.pk and list_price.enqueued_at is not None
    assert (DELIVER_TASK, list_price.pk, None) in catalog
