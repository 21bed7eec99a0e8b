"""Batches: due deliveries of one action to one connection carried out in one connector
operation, where the connector declares it, admitted by the governor as its calls."""

import datetime as dt
import time
from types import SimpleNamespace

import pytest
from django.utils import timezone

from canonical.contracts import InvoiceV1
from connectors import cache
from connectors.base import Batching, ExternalDocument, InvoiceToPost
from connectors.errors import Permanent, Retryable
from connectors.registry import register
from connectors.services import connection_upsert
from integration_hub.runtime import services
from integration_hub.runtime.governor import Policy, admit, governor_status, release
from integration_hub.runtime.models import AdmissionPolicy, Delivery, MaintenanceWindow
from tests.conftest import SCRIPT, MemoryErpConnector
from tests.helpers import drain, planned_invoice_posts

LEASE = 60.0
BATCH_SIZE = 3


@register("memory-batch-erp")
class MemoryBatchErp(MemoryErpConnector):
    """The in-memory ERP, taking invoice posts in batches of three; ``SCRIPT.failures``
    fail a whole batch, ``REFUSED`` references fail alone."""

    invoice_batching = Batching(size=BATCH_SIZE, calls=2)

    def post_invoices(self, items: list[InvoiceToPost]) -> list[ExternalDocument | Exception]:
        references = [item.invoice.source.external_id for item in items]
        BATCHES.append(references)
        if SCRIPT.failures:
            raise SCRIPT.failures.pop(0)
        return [Permanent(f"ERP refused {reference}") if reference in REFUSED
                else self.post_invoice(item.invoice, legal_entity=item.legal_entity,
                                       idempotency_key=item.idempotency_key)
                for reference, item in zip(references, items, strict=True)]

    def find_invoice(self, invoice: InvoiceV1, *, legal_entity: str) -> ExternalDocument | None:
        raise AssertionError("a batch looks invoices up itself; the runtime never asks first")


BATCHES: list[list[str]] = []
REFUSED: set[str] = set()

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def posts(stripe_connection, legal_entities, memory_erp, sandbox, post_webhook, sent_tasks):
    """Five planned invoice posts to an ERP that batches, none attempted yet."""
    BATCHES.clear()
    REFUSED.clear()
    services._batch_pace.clear()
    connection = connection_upsert(name="erp", vendor="memory-batch-erp", role="erp", config={}, credentials={})
    cache.clear()
    return connection, planned_invoice_posts(5, sandbox=sandbox, post_webhook=post_webhook, sent_tasks=sent_tasks)


def _reference(delivery: Delivery) -> str:
    from canonical.models import Invoice

    return Invoice.objects.get(pk=delivery.object_id).source_id


def test_due_posts_go_in_batches_of_the_declared_size(posts, sent_tasks):
    connection, deliveries = posts
    services.delivery_attempt(deliveries[0].pk)

    assert BATCHES == [[_reference(d) for d in deliveries[:BATCH_SIZE]]]
    posted = Delivery.objects.filter(status="posted").order_by("pk")
    assert list(posted.values_list("pk", flat=True)) == [d.pk for d in deliveries[:BATCH_SIZE]]
    for delivery in posted:
        attempt = delivery.attempt_log.get()
        assert attempt.outcome == "posted" and attempt.message == f"posted in a batch of {BATCH_SIZE}"
        assert delivery.attempts == 1 and delivery.external_id

    # The messages of the riders find them done; the rest make the next batch.
    for delivery in deliveries:
        services.delivery_attempt(delivery.pk)
    assert [len(batch) for batch in BATCHES] == [BATCH_SIZE, 2]
    assert set(Delivery.objects.values_list("status", flat=True)) == {"posted"}
    assert governor_status(connection.pk)["calls_in_flight"] == 0


def test_a_post_the_erp_refuses_fails_alone(posts):
    _, deliveries = posts
    REFUSED.add(_reference(deliveries[1]))

    services.delivery_attempt(deliveries[0].pk)

    statuses = dict(Delivery.objects.values_list("pk", "status"))
    assert [statuses[d.pk] for d in deliveries[:BATCH_SIZE]] == ["posted", "dead", "posted"]
    refused = Delivery.objects.get(pk=deliveries[1].pk)
    assert "ERP refused" in refused.last_error and refused.exceptions.get().owner_team == "finance"


def test_a_batch_cut_short_leaves_every_delivery_to_be_looked_up(posts, sent_tasks):
    _, deliveries = posts
    SCRIPT.failures.append(Retryable("read timeout", outcome_unknown=True))

    services.delivery_attempt(deliveries[0].pk)

    batch = Delivery.objects.filter(pk__in=[d.pk for d in deliveries[:BATCH_SIZE]])
    assert set(batch.values_list("status", "lookup_first", "attempts")) == {("pending", True, 1)}
    assert all(d.attempt_log.get().outcome_unknown for d in batch)
    # Retried, they go in a batch again (which looks each one up first), one document each.
    batch.update(next_attempt_at=timezone.now())
    for delivery in deliveries:
        services.delivery_attempt(delivery.pk)
    assert sorted(sum(BATCHES[1:], [])) == sorted(_reference(d) for d in deliveries)
    assert set(Delivery.objects.values_list("status", flat=True)) == {"posted"}
    assert len(SCRIPT.documents) == 5


def test_a_post_not_due_yet_or_waiting_on_its_invoice_is_not_taken_along(posts):
    _, deliveries = posts
    later = timezone.now() + dt.timedelta(minutes=5)
    Delivery.objects.filter(pk=deliveries[1].pk).update(next_attempt_at=later)  # in its backoff
    # Another effect on the invoice of deliveries[2] is in flight: its serial key is busy.
    Delivery.objects.filter(pk=deliveries[4].pk).update(serial_key=deliveries[2].serial_key)
    Delivery.objects.filter(pk=deliveries[4].pk).update(status="in_flight", claimed_at=timezone.now())

    services.delivery_attempt(deliveries[0].pk)

    assert BATCHES == [[_reference(deliveries[0]), _reference(deliveries[3])]]


def test_held_posts_ride_along_once_the_maintenance_window_is_over(posts, sent_tasks):
    connection, deliveries = posts
    now = timezone.now()
    window = MaintenanceWindow.objects.create(connection=connection, starts_at=now - dt.timedelta(minutes=1),
                                              ends_at=now + dt.timedelta(hours=1), reason="month-end freeze")
    for delivery in deliveries:
        services.delivery_attempt(delivery.pk)
    assert set(Delivery.objects.values_list("status", flat=True)) == {"held"} and BATCHES == []

    window.ends_at = now
    window.save()
    cache.clear()
    Delivery.objects.filter(pk=deliveries[0].pk).update(next_attempt_at=now)  # the first one drains first
    services.delivery_attempt(deliveries[0].pk)
    assert len(BATCHES) == 1 and len(BATCHES[0]) == BATCH_SIZE  # the others, still held, went along


def test_a_batch_is_admitted_as_its_calls(posts):
    connection, deliveries = posts
    AdmissionPolicy.objects.create(connection=connection, rate_per_second=0.001, burst=3)

    services.delivery_attempt(deliveries[0].pk)  # 2 calls of the 3 tokens
    services.delivery_attempt(deliveries[3].pk)  # 1 token left: held

    assert len(BATCHES) == 1
    held = Delivery.objects.get(pk=deliveries[3].pk)
    assert held.status == "held" and held.hold_reason == "rate limit"


def test_the_rate_charges_a_batch_its_calls_and_lets_one_larger_than_the_burst_through():
    policy, state = Policy(rate_per_second=1.0, burst=2), {}
    assert admit(state, policy, now=100, token="a", lease=LEASE, calls=2).admitted
    assert not admit(state, policy, now=100.5, token="b", lease=LEASE).admitted  # half a token back
    # A batch of 5 calls waits for a full bucket, then leaves it 3 in debt.
    assert admit(state, policy, now=102, token="c", lease=LEASE, calls=5).admitted
    assert state["tokens"] == pytest.approx(-3)
    later = admit(state, policy, now=104, token="d", lease=LEASE)
    assert not later.admitted and later.retry_at == pytest.approx(106)


def test_deliveries_a_batch_carried_leave_the_queue_of_waiters():
    policy, state = Policy(max_concurrency=1), {}
    assert admit(state, policy, now=100, token="a", lease=LEASE).admitted
    for waiter in (7, 8, 9):
        assert not admit(state, policy, now=100, token=f"w{waiter}", lease=LEASE, waiter=waiter).admitted
    assert release(state, policy, now=101, token="a", outcome="success", settled={7, 8}) == 9
    assert state["waiters"] == []


def test_through_the_broker_a_backlog_drains_in_batches(posts, sent_tasks):
    _, deliveries = posts
    for delivery in deliveries:
        services.enqueue_after_commit(services.DELIVER_TASK, delivery.pk)
    drain(sent_tasks)
    assert [len(batch) for batch in BATCHES] == [BATCH_SIZE, 2]
    assert Delivery.objects.filter(status="posted").count() == 5


def test_ending_a_window_early_releases_what_it_holds_over_the_drain_period(posts, sent_tasks, settings, admin_client):
    connection, deliveries = posts
    now = timezone.now()
    window = MaintenanceWindow.objects.create(connection=connection, starts_at=now - dt.timedelta(minutes=1),
                                              ends_at=now + dt.timedelta(hours=2), reason="ERP upgrade")
    for delivery in deliveries:
        services.delivery_attempt(delivery.pk)
    assert sent_tasks == []  # two hours away: left to the sweeper

    response = admin_client.post("/admin/runtime/maintenancewindow/",
                                 {"action": "end_now", "_selected_action": [window.pk]}, follow=True)
    assert "5 held deliveries go out" in response.content.decode()

    window.refresh_from_db()
    assert window.ends_at <= timezone.now()
    latest = timezone.now() + dt.timedelta(seconds=cache.TTL_SECONDS + settings.HUB_MAINTENANCE_DRAIN_SECONDS)
    for delivery in Delivery.objects.all():
        assert delivery.status == "held" and now < delivery.next_attempt_at <= latest
    assert sorted(pk for _, pk, countdown in sent_tasks if countdown) == [d.pk for d in deliveries]
    cache.clear()
    Delivery.objects.update(next_attempt_at=timezone.now())  # as when the countdowns are over
    drain(sent_tasks, include_delayed=True)
    assert set(Delivery.objects.values_list("status", flat=True)) == {"posted"}
    assert [len(batch) for batch in BATCHES] == [BATCH_SIZE, 2]


def test_a_batch_carries_what_fits_its_time_at_the_pace_of_the_last_ones(posts, settings):
    connection, deliveries = posts
    settings.CELERY_TASK_SOFT_TIME_LIMIT = 60  # a batch may take two thirds of it: 40 s
    services._batch_pace[(connection.pk, "invoice.post")] = 19.0  # seconds a delivery: 2 fit

    services.delivery_attempt(deliveries[0].pk)

    assert [len(batch) for batch in BATCHES] == [2]
    assert Delivery.objects.filter(status="posted").count() == 2


def test_batch_sizes_follow_the_declaration_the_pace_and_the_time_left():
    lead = SimpleNamespace(connection_id=1, action="invoice.post")
    declared = Batching(size=100, calls=12, seconds=30, first=25)
    services._batch_pace.clear()
    later = time.monotonic() + 61
    assert services._batch_size(lead, declared, later) == 25  # nothing timed yet: the declared first

    services._batch_timed(lead, 12.5, 25, cut_short=False)  # 0.5 s a delivery
    assert services._batch_size(lead, declared, later) == 60  # the connector's 30 s, not the task's 40
    assert services._batch_size(lead, Batching(size=100, calls=12), later) == 81  # two thirds of 61 s
    assert services._batch_size(lead, declared, time.monotonic() + 3.3) == 4  # little time left
    assert services._batch_size(lead, declared, time.monotonic()) == 1  # never none

    services._batch_timed(lead, 5, 25, cut_short=False)  # 0.2 s: averaged with the last, 0.35
    assert services._batch_size(lead, declared, later) == 85
    services._batch_timed(lead, 30, 75, cut_short=True)  # timed out: slower than it looked
    assert services._batch_pace[(1, "invoice.post")] == pytest.approx(0.8)
    assert services._batch_size(lead, declared, later) == 37
    services._batch_pace.clear()


def test_a_batch_cut_short_by_a_timeout_makes_the_next_one_smaller(posts, settings):
    connection, deliveries = posts
    settings.CELERY_TASK_SOFT_TIME_LIMIT = 60
    services._batch_pace[(connection.pk, "invoice.post")] = 10.0  # 4 would fit; 3 are declared
    SCRIPT.failures.append(Retryable("read timeout", outcome_unknown=True))

    services.delivery_attempt(deliveries[0].pk)

    assert [len(batch) for batch in BATCHES] == [BATCH_SIZE]
    assert services._batch_pace[(connection.pk, "invoice.post")] >= 20.0  # doubled: 2 fit now


def test_a_batch_refused_at_once_leaves_the_pace_as_it_was(posts, settings):
    connection, deliveries = posts
    settings.CELERY_TASK_SOFT_TIME_LIMIT = 60
    services._batch_pace[(connection.pk, "invoice.post")] = 19.0  # 2 fit
    SCRIPT.failures.append(Retryable("503 Service Unavailable", http_status=503))

    services.delivery_attempt(deliveries[0].pk)

    assert [len(batch) for batch in BATCHES] == [2]
    assert services._batch_pace[(connection.pk, "invoice.post")] == 19.0  # not a near-zero pace from a quick no
