"""The admission governor: circuit breaker, token bucket, concurrency cap, Retry-After
and maintenance windows — as pure logic, on both stores, and in front of deliveries."""

import datetime as dt
import threading

import pytest
from django.conf import settings as django_settings
from django.utils import timezone
from hypothesis import given
from hypothesis import strategies as st

from connectors import cache
from connectors.errors import Permanent, RateLimited, Retryable
from connectors.models import Connection
from integration_hub.runtime import services
from integration_hub.runtime.governor import (
    DatabaseStore,
    Policy,
    RedisStore,
    admit,
    governor_status,
    hand_over,
    release,
)
from integration_hub.runtime.models import AdmissionPolicy, Delivery, MaintenanceWindow
from tests.helpers import drain, planned_invoice_posts

LEASE = 60.0


def _admit(state, policy, now, token="t"):
    return admit(state, policy, now=now, token=token, lease=LEASE)


def test_the_circuit_opens_after_consecutive_failures_and_probes_once_when_half_open():
    policy, state = Policy(failure_threshold=3, open_seconds=30), {}
    for i in range(3):
        assert _admit(state, policy, 100, f"t{i}").admitted
        release(state, policy, now=100, token=f"t{i}", outcome="failure")

    denied = _admit(state, policy, 110)
    assert not denied.admitted and "circuit open" in denied.reason and denied.retry_at == 130

    assert _admit(state, policy, 131, "probe").admitted  # half-open: one probe
    second = _admit(state, policy, 131.5, "other")
    assert not second.admitted and "probe" in second.reason

    release(state, policy, now=132, token="probe", outcome="failure")  # the probe failed: open again
    assert not _admit(state, policy, 133).admitted
    assert _admit(state, policy, 163, "probe2").admitted
    release(state, policy, now=163, token="probe2", outcome="success")  # closed
    assert all(_admit(state, policy, 164, f"x{i}").admitted for i in range(5))


def test_a_rejected_request_does_not_count_against_the_target():
    policy, state = Policy(failure_threshold=2), {}
    for i in range(5):
        assert _admit(state, policy, 100, f"t{i}").admitted
        release(state, policy, now=100, token=f"t{i}", outcome="neutral")
    assert _admit(state, policy, 100, "next").admitted


def test_the_concurrency_cap_counts_live_slots_and_frees_expired_ones():
    policy, state = Policy(max_concurrency=2), {}
    assert _admit(state, policy, 100, "a").admitted and _admit(state, policy, 100, "b").admitted
    denied = _admit(state, policy, 100, "c")
    assert not denied.admitted and "concurrency cap of 2" in denied.reason
    release(state, policy, now=101, token="a", outcome="success")
    assert _admit(state, policy, 101, "c").admitted
    # A killed worker never releases: its slot expires with the lease.
    assert _admit(state, policy, 100 + LEASE + 1, "d").admitted


def test_retry_after_blocks_every_call_to_the_target_until_it_passes():
    policy, state = Policy(), {}
    assert _admit(state, policy, 100, "a").admitted
    release(state, policy, now=100, token="a", outcome="rate_limited", retry_after=20)
    denied = _admit(state, policy, 119.9)
    assert not denied.admitted and denied.retry_at == 120 and "Retry-After" in denied.reason
    assert _admit(state, policy, 120.1, "b").admitted


@given(rate=st.floats(0.5, 50), burst=st.integers(1, 10), times=st.lists(st.floats(0, 10), min_size=1, max_size=200))
def test_the_token_bucket_never_admits_more_than_burst_plus_rate_times_elapsed(rate, burst, times):
    policy, state, admitted = Policy(rate_per_second=rate, burst=burst), {}, 0
    times = sorted(times)
    for i, now in enumerate(times):
        decision = _admit(state, policy, now, f"t{i}")
        if decision.admitted:
            admitted += 1
            release(state, policy, now=now, token=f"t{i}", outcome="success")
        else:
            assert decision.retry_at > now
    assert admitted <= burst + rate * (times[-1] - times[0]) + 1e-6


STORES = ["database"] + (["redis"] if django_settings.HUB_REDIS_URL else [])


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("kind", STORES)
def test_a_store_makes_admission_atomic_across_threads(kind, memory_erp):
    from django.db import connection as db

    if kind == "database" and db.vendor == "sqlite":
        pytest.skip("SQLite serializes writers; the race needs a server database (CI runs PostgreSQL)")
    connection = Connection.objects.get(name="erp")
    store = RedisStore(django_settings.HUB_REDIS_URL) if kind == "redis" else DatabaseStore()
    policy, admitted, barrier = Policy(max_concurrency=3), [], threading.Barrier(8)

    def worker(i):
        barrier.wait()
        admitted.append(store.update(connection.pk, lambda s: admit(s, policy, now=100, token=f"t{i}", lease=LEASE)))
        db.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [d.admitted for d in admitted].count(True) == 3
    assert len(store.read(connection.pk)["slots"]) == 3


# ---------------------------------------------------------------- in front of deliveries

pytestmark_db = pytest.mark.django_db(transaction=True)


@pytest.fixture
def invoice_deliveries(stripe_connection, legal_entities, memory_erp, sandbox, post_webhook, sent_tasks):
    """Planned post deliveries for three invoices, not yet attempted."""
    connection = Connection.objects.get(name="erp")
    return connection, planned_invoice_posts(3, sandbox=sandbox, post_webhook=post_webhook, sent_tasks=sent_tasks)


@pytestmark_db
def test_an_open_circuit_holds_deliveries_without_calling_the_target(invoice_deliveries, memory_erp):
    connection, deliveries = invoice_deliveries
    AdmissionPolicy.objects.create(connection=connection, failure_threshold=1, open_seconds=300)
    memory_erp.failures.append(Retryable("503", http_status=503))

    for delivery in deliveries:
        services.delivery_attempt(delivery.pk)

    assert len(memory_erp.calls) == 1  # only the call that opened the circuit
    held = Delivery.objects.filter(status="held")
    assert held.count() == 2
    assert all("circuit open" in d.hold_reason and d.attempts == 0 for d in held)
    assert governor_status(connection.pk)["circuit"] == "open"


@pytestmark_db
def test_a_maintenance_window_holds_without_spending_budget_and_drains_after(
    invoice_deliveries, memory_erp, sent_tasks, settings
):
    connection, deliveries = invoice_deliveries
    now = timezone.now()
    window = MaintenanceWindow.objects.create(
        connection=connection, starts_at=now - dt.timedelta(minutes=1), ends_at=now + dt.timedelta(hours=1),
        reason="ERP upgrade",
    )
    for delivery in deliveries:
        services.delivery_attempt(delivery.pk)

    assert memory_erp.calls == []
    for delivery in Delivery.objects.all():
        assert delivery.status == "held" and delivery.attempts == 0 and "ERP upgrade" in delivery.hold_reason
        assert window.ends_at <= delivery.next_attempt_at <= window.ends_at + dt.timedelta(
            seconds=settings.HUB_MAINTENANCE_DRAIN_SECONDS
        )
    assert sent_tasks == []  # an hour away: left to the sweeper

    window.ends_at = now
    window.starts_at = now - dt.timedelta(hours=1)
    window.save()
    cache.clear()  # as if the few seconds of the per-process cache had passed
    Delivery.objects.update(next_attempt_at=now)
    services.sweep()
    drain(sent_tasks)
    assert set(Delivery.objects.values_list("status", flat=True)) == {"posted"}


@pytestmark_db
def test_a_429_holds_other_deliveries_to_the_same_target(invoice_deliveries, memory_erp):
    connection, deliveries = invoice_deliveries
    memory_erp.failures.append(RateLimited("429", retry_after=120, http_status=429))
    for delivery in deliveries:
        services.delivery_attempt(delivery.pk)
    assert len(memory_erp.calls) == 1
    assert Delivery.objects.filter(status="held", hold_reason__contains="Retry-After").count() == 2


@pytestmark_db
def test_permanent_rejections_do_not_open_the_circuit(invoice_deliveries, memory_erp):
    connection, deliveries = invoice_deliveries
    AdmissionPolicy.objects.create(connection=connection, failure_threshold=1)
    memory_erp.failures.extend([Permanent("bad tax"), Permanent("bad tax")])
    for delivery in deliveries:
        services.delivery_attempt(delivery.pk)
    assert len(memory_erp.calls) == 3
    assert governor_status(connection.pk)["circuit"] == "closed"


@pytestmark_db
def test_held_work_is_visible_with_its_reason_in_the_api(invoice_deliveries, memory_erp, api):
    connection, deliveries = invoice_deliveries
    MaintenanceWindow.objects.create(connection=connection, starts_at=timezone.now() - dt.timedelta(minutes=1),
                                     ends_at=timezone.now() + dt.timedelta(hours=1), reason="month-end freeze")
    for delivery in deliveries:
        services.delivery_attempt(delivery.pk)

    [erp] = [c for c in api.get("/api/connections/").json() if c["name"] == "erp"]
    [(reason, count)] = erp["held"].items()
    assert count == 3 and "month-end freeze" in reason and erp["circuit"] == "closed"
    listed = api.get("/api/deliveries/?status=held").json()["results"]
    assert len(listed) == 3 and all("month-end freeze" in d["hold_reason"] for d in listed)


@pytestmark_db
def test_an_unreachable_governor_holds_instead_of_calling(invoice_deliveries, memory_erp, monkeypatch):
    from integration_hub.runtime import governor

    class Down:
        def update(self, connection_id, change):
            raise governor.GovernorUnavailable("Connection refused")

    monkeypatch.setattr(governor, "store", lambda: Down())
    connection, deliveries = invoice_deliveries
    services.delivery_attempt(deliveries[0].pk)

    delivery = Delivery.objects.get(pk=deliveries[0].pk)
    assert delivery.status == "held" and "governor unavailable" in delivery.hold_reason and delivery.attempts == 0
    assert memory_erp.calls == []


def test_a_call_refused_by_the_cap_is_woken_when_a_slot_frees():
    policy, state = Policy(max_concurrency=1), {}
    assert admit(state, policy, now=100, token="a", lease=LEASE, waiter=1).admitted
    denied = admit(state, policy, now=100, token="b", lease=LEASE, waiter=2)
    assert not denied.admitted and denied.retry_at > 100
    admit(state, policy, now=100, token="b2", lease=LEASE, waiter=2)  # queued once
    assert release(state, policy, now=101, token="a", outcome="success") == 2
    assert release(state, policy, now=101, token="unknown", outcome="success") is None


def test_without_limits_an_ordinary_call_leaves_the_state_untouched():
    policy, state = Policy(), {"failures": 0}
    before = dict(state)
    assert admit(state, policy, now=100, token="a", lease=LEASE).admitted
    release(state, policy, now=100, token="a", outcome="success")
    assert state == before  # so the store skips the write: one round trip per call


@pytestmark_db
def test_a_freed_slot_wakes_the_held_delivery_at_once(invoice_deliveries, memory_erp, sent_tasks):
    from integration_hub.runtime.governor import governor_admit

    connection, deliveries = invoice_deliveries
    AdmissionPolicy.objects.create(connection=connection, max_concurrency=1)
    assert governor_admit(connection.pk, token="someone-else").admitted  # the only slot is taken
    services.delivery_attempt(deliveries[0].pk)
    held = Delivery.objects.get(pk=deliveries[0].pk)
    assert held.status == "held" and "concurrency cap of 1" in held.hold_reason
    sent_tasks.clear()

    from integration_hub.runtime.governor import governor_release

    woken = governor_release(connection.pk, token="someone-else", outcome="success")
    assert (woken.delivery_id, woken.token) == (held.pk, None)  # not handed over: woken
    services.delivery_wake(woken.delivery_id)
    assert sent_tasks == [("hub.deliver", held.pk, None)]
    drain(sent_tasks)
    assert Delivery.objects.get(pk=held.pk).status == "posted"


# ---------------------------------------------------------------- slot hand-over


def test_a_freed_slot_is_handed_to_its_waiter_without_a_second_admission():
    policy, state = Policy(max_concurrency=1), {}
    assert admit(state, policy, now=100, token="a", lease=LEASE).admitted
    assert not admit(state, policy, now=100, token="b", lease=LEASE, waiter=2).admitted
    assert release(state, policy, now=101, token="a", outcome="success") == 2
    token = hand_over(state, policy, now=101, waiter=2, lease=LEASE)
    assert token is not None and list(state["slots"]) == [token]  # the slot is the waiter's
    assert not admit(state, policy, now=101, token="c", lease=LEASE).admitted  # and taken for others


def test_no_hand_over_while_the_circuit_is_open():
    policy, state = Policy(max_concurrency=1, failure_threshold=1, open_seconds=30), {}
    assert admit(state, policy, now=100, token="a", lease=LEASE).admitted
    assert not admit(state, policy, now=100, token="b", lease=LEASE, waiter=2).admitted
    assert release(state, policy, now=101, token="a", outcome="failure") == 2  # this failure opens it
    assert hand_over(state, policy, now=101, waiter=2, lease=LEASE) is None
    assert state.get("slots") == {}


@pytest.fixture
def one_call_at_a_time(invoice_deliveries, monkeypatch):
    """A cap of 1; while the first delivery's call is in flight, the second is attempted
    (and held for the cap, queued for the slot)."""
    connection, deliveries = invoice_deliveries
    AdmissionPolicy.objects.create(connection=connection, max_concurrency=1)
    original, calls = services._attempt_call, []

    def call(delivery, release):
        calls.append(delivery.pk)
        if len(calls) == 1:
            services.delivery_attempt(deliveries[1].pk)
            assert Delivery.objects.get(pk=deliveries[1].pk).status == "held"
        original(delivery, release)

    monkeypatch.setattr(services, "_attempt_call", call)
    return connection, deliveries, calls


@pytestmark_db
def test_the_worker_that_frees_a_slot_takes_the_waiting_delivery_itself(one_call_at_a_time, sent_tasks):
    connection, deliveries, calls = one_call_at_a_time
    services.delivery_attempt(deliveries[0].pk)

    assert calls == [deliveries[0].pk, deliveries[1].pk]
    assert set(Delivery.objects.filter(pk__in=calls).values_list("status", flat=True)) == {"posted"}
    # No wake-up through the broker: only the held delivery's fallback countdown was sent.
    assert [(name, pk) for name, pk, countdown in sent_tasks if not countdown] == []
    assert governor_status(connection.pk)["calls_in_flight"] == 0
    second = Delivery.objects.get(pk=deliveries[1].pk)
    assert second.attempts == 1 and second.attempt_log.get().outcome == "posted"


@pytestmark_db
def test_after_its_hand_over_time_a_worker_wakes_the_waiter_through_the_broker(one_call_at_a_time, sent_tasks,
                                                                                 settings):
    settings.HUB_HANDOVER_SECONDS = 0
    connection, deliveries, calls = one_call_at_a_time
    services.delivery_attempt(deliveries[0].pk)

    assert calls == [deliveries[0].pk]
    assert ("hub.deliver", deliveries[1].pk, None) in sent_tasks
    drain(sent_tasks)
    assert Delivery.objects.get(pk=deliveries[1].pk).status == "posted"


@pytestmark_db
def test_a_handed_slot_whose_delivery_was_taken_meanwhile_goes_back(one_call_at_a_time, monkeypatch):
    connection, deliveries, calls = one_call_at_a_time
    original_claim = services.delivery_claim

    def claim(delivery_id, *, handed=False):
        if handed:  # its fallback countdown fired and another worker posted it
            Delivery.objects.filter(pk=delivery_id).update(status="posted")
        return original_claim(delivery_id, handed=handed)

    monkeypatch.setattr(services, "delivery_claim", claim)
    services.delivery_attempt(deliveries[0].pk)

    assert calls == [deliveries[0].pk]
    assert governor_status(connection.pk)["calls_in_flight"] == 0  # the slot did not leak
    services.delivery_attempt(deliveries[2].pk)
    assert Delivery.objects.get(pk=deliveries[2].pk).status == "posted"


@pytestmark_db
def test_no_hand_over_into_a_maintenance_window(one_call_at_a_time, sent_tasks, monkeypatch):
    connection, deliveries, calls = one_call_at_a_time
    call_with_a_waiter = services._attempt_call

    def call(delivery, release):
        def release_once_the_window_began(*args, **kwargs):
            now = timezone.now()
            MaintenanceWindow.objects.create(connection=connection, starts_at=now - dt.timedelta(seconds=1),
                                             ends_at=now + dt.timedelta(hours=1), reason="month-end freeze")
            cache.clear()
            release(*args, **kwargs)

        call_with_a_waiter(delivery, release_once_the_window_began)

    monkeypatch.setattr(services, "_attempt_call", call)
    services.delivery_attempt(deliveries[0].pk)

    assert calls == [deliveries[0].pk]
    # Woken instead, and its own admission holds it for the window.
    assert ("hub.deliver", deliveries[1].pk, None) in sent_tasks
    services.delivery_attempt(deliveries[1].pk)
    held = Delivery.objects.get(pk=deliveries[1].pk)
    assert held.status == "held" and "maintenance window" in held.hold_reason
