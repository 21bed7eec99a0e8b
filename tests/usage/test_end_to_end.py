"""A batch → aggregates → Stripe (API sandbox over HTTP) meter events through the outbox →
a reconciliation that balances; one meter event lost in Stripe → the checkpoint names the
subscription and metric → the repair re-pushes it → balanced again."""

import datetime as dt

import pytest

from connectors.services import connection_upsert
from connectors.stripe.api_sandbox import StripeApiSandbox
from integration_hub.runtime.models import Delivery, ExceptionRecord
from integration_hub.runtime.services import DELIVER_TASK, delivery_attempt
from integration_hub.usage import services
from integration_hub.usage.models import UsageMeterEvent
from tests.usage.conftest import csv_file


@pytest.fixture
def stripe_api():
    sandbox = StripeApiSandbox(api_key="sk_test_usage")
    sandbox.serve()
    yield sandbox
    sandbox.stop()


@pytest.fixture
def billing(db, stripe_api, known):
    connection_upsert(name="stripe", vendor="stripe", role="billing", config=stripe_api.connection_config(),
                      credentials={"api_key": "sk_test_usage"})
    customers = {}
    for name in ("acme", "globex"):
        customer = stripe_api.objects.customer(name, f"{name}@example.com")
        stripe_api.customers[customer["id"]] = customer
        customers[name] = customer["id"]
    for metric in ("api_calls", "storage_gb"):
        stripe_api.meters.route(type("R", (), {"path": "/v1/billing/meters", "method": "POST", "query": {}})(),
                                {"display_name": metric, "event_name": metric,
                                 "default_aggregation": {"formula": "sum"}})
    known("sub_acme", customer=customers["acme"])
    known("sub_globex", customer=customers["globex"])
    return customers


def deliver(sent_tasks) -> int:
    ran = 0
    while any(name == DELIVER_TASK for name, _, _ in sent_tasks):
        name, object_id, _ = sent_tasks.pop(next(i for i, t in enumerate(sent_tasks) if t[0] == DELIVER_TASK))
        delivery_attempt(object_id)
        ran += 1
    return ran


def test_batch_to_meter_events_to_a_balanced_checkpoint_then_a_lost_event_is_repaired(
        load, billing, stripe_api, sent_tasks, django_capture_on_commit_callbacks):
    now = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(minutes=10)
    stamp = now.isoformat()
    batch = load(csv_file(f"a1,sub_acme,api_calls,100,{stamp}", f"a2,sub_acme,api_calls,20.5,{stamp}",
                          f"a3,sub_acme,storage_gb,3,{stamp}", f"g1,sub_globex,api_calls,7,{stamp}",
                          f"a1,sub_acme,api_calls,100,{stamp}"))
    assert (batch.loaded, batch.duplicates) == (4, 1)
    period = now.date().replace(day=1)
    with django_capture_on_commit_callbacks(execute=True):
        services.period_close(period)
    assert deliver(sent_tasks) == 1  # three aggregates, one stream request
    assert Delivery.objects.get(action="usage.meter_events").status == Delivery.Status.POSTED
    assert sorted((e["payload"]["value"], e["event_name"]) for e in stripe_api.meters.events.values()) == [
        ("120.5", "api_calls"), ("3", "storage_gb"), ("7", "api_calls")]

    balanced = services.checkpoint_run(period)
    assert balanced.status == "balanced" and not balanced.mismatches
    us_api = next(line for line in balanced.lines if line["metric"] == "api_calls")
    assert (us_api["legal_entity"], us_api["currency"], us_api["keys"]) == ("US", "USD", 2)
    assert us_api["loaded_count"] == 3 and us_api["billed_quantity"] == 127_500_000

    lost = UsageMeterEvent.objects.get(aggregate__subscription="sub_acme", aggregate__metric="api_calls")
    stripe_api.meters.meter_event_remove(lost.identifier)
    mismatch = services.checkpoint_run(period)
    assert mismatch.status == "mismatch"
    [lost_key] = mismatch.mismatches
    assert {k: lost_key[k] for k in ("subscriptions", "metric", "customer", "legal_entity", "loaded", "aggregated",
                                     "pushed", "billed", "differs", "actions")} == {
        "subscriptions": ["sub_acme"], "metric": "api_calls", "customer": billing["acme"], "legal_entity": "US",
        "loaded": "120.5", "aggregated": "120.5", "pushed": "120.5", "billed": "0", "differs": ["billed"],
        "actions": ["re-push"]}
    assert mismatch.checked == ["loaded", "aggregated", "billed"]  # this month's invoices are not due yet
    record = ExceptionRecord.objects.get(category="reconciliation")
    assert record.owner_team == "finance" and "sub_acme × api_calls" in record.detail

    with django_capture_on_commit_callbacks(execute=True):
        repair = services.checkpoint_repair(mismatch)
    assert (len(repair.pushes), repair.events, repair.replayed) == (1, 1, [])
    assert deliver(sent_tasks) == 1
    assert services.checkpoint_repair(mismatch).pushes == []  # a checkpoint is repaired once
    balanced = services.checkpoint_run(period)
    assert balanced.status == "balanced"
    # The mismatch is history now: resolved, its exception closed with a pointer to the balance.
    mismatch.refresh_from_db()
    record.refresh_from_db()
    assert mismatch.status == "resolved"
    assert record.status == "resolved" and f"checkpoint {balanced.pk} found" in record.resolution
    with django_capture_on_commit_callbacks(execute=True):
        assert services.checkpoint_repair(services.checkpoint_run(period)).pushes == []  # nothing left to repair


def test_the_push_failing_half_way_retries_without_losing_or_doubling_events(
        load, billing, stripe_api, sent_tasks, django_capture_on_commit_callbacks, settings):
    from integration_hub.usage.models import UsageSubscription

    stamp = (dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(minutes=10)).isoformat()
    customers = [stripe_api.objects.customer(f"c{n}", f"c{n}@example.com") for n in range(150)]
    stripe_api.customers.update({c["id"]: c for c in customers})
    UsageSubscription.objects.bulk_create([UsageSubscription(
        subscription=f"sub_{n}", legal_entity_id=UsageSubscription.objects.first().legal_entity_id,
        billing_customer=customers[n]["id"]) for n in range(150)])
    load(csv_file(*(f"e{n},sub_{n},api_calls,1,{stamp}" for n in range(150))))
    period = dt.date.fromisoformat(stamp[:10]).replace(day=1)
    with django_capture_on_commit_callbacks(execute=True):
        services.period_close(period)
    stripe_api.fail_next(500)  # the first of the two stream requests fails
    deliver(sent_tasks)
    failed = Delivery.objects.filter(action="usage.meter_events").exclude(status=Delivery.Status.POSTED).get()
    Delivery.objects.filter(pk=failed.pk).update(next_attempt_at=dt.datetime.now(dt.UTC))
    delivery_attempt(failed.pk)
    assert set(Delivery.objects.values_list("status", flat=True)) == {Delivery.Status.POSTED}
    assert len(stripe_api.meters.events) == 150
    assert services.checkpoint_run(period).status == "balanced"
