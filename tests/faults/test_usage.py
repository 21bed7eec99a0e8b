"""Fault injection for usage aggregation, with real processes: the usage worker killed in
the middle of a large load, and the billing sandbox failing half-way through a push of
meter events. After recovery every record is counted exactly once, and every meter event
is in billing exactly once."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import sys
import time
from collections import Counter
from decimal import Decimal

import httpx
import pytest

from tests.faults.conftest import FAST, LEGAL_ENTITIES, ROWS
from tests.faults.harness import FaultProxy, HubProcesses, free_port, wait_until

pytestmark = [pytest.mark.faults, pytest.mark.django_db(transaction=True)]

USAGE_QUEUE = "hub-faults-usage"
STREAM, V1_EVENTS = "/v2/billing/meter_event_stream", "/v1/billing/meter_events"


class UsageStack:
    """Web (gunicorn), the hub's workers and a sweeper loop on the private Redis and the
    test database, with an API token of a superuser."""

    def __init__(self, processes: HubProcesses, web_url: str, token: str):
        self.processes, self.web_url = processes, web_url
        self.headers = {"Authorization": f"Token {token}"}

    def usage_worker(self, name: str = "usage-worker") -> None:
        # As `make usage-worker`: the bulk queue, one process.
        self.processes.start(name, [sys.executable, "-m", "celery", "-A", "integration_hub", "worker", "-c", "1",
                                    "-Q", USAGE_QUEUE, "--without-gossip", "--without-mingle", "-l", "INFO",
                                    "-n", f"{name}-{os.getpid()}-{time.monotonic_ns()}@%h"], ready="ready.")

    def post(self, path: str, **kwargs) -> httpx.Response:
        return httpx.post(f"{self.web_url}{path}", headers={**self.headers, **kwargs.pop("headers", {})},
                          timeout=120, **kwargs)


@pytest.fixture
def usage_stack(transactional_db, fault_redis, admin_user, tmp_path):
    from django.conf import settings
    from rest_framework.authtoken.models import Token

    from canonical.models import LegalEntity
    from tests.conftest import _database_url

    if fault_redis.process.poll() is not None:
        fault_redis.start()
    fault_redis.flush()
    _bulk_tables_empty()
    for code, name, currency, country in LEGAL_ENTITIES:
        LegalEntity.objects.create(code=code, name=name, currency=currency, country=country)
    records = int(os.environ.get("FAULTS_USAGE_RECORDS", "100000"))
    # Time limits long enough for a whole load at this size on a busy machine; the lease
    # (when the sweep takes a loading batch as dead) just above the hard limit.
    soft = max(10, records // 2500)
    env = {**os.environ, **FAST, "PYTHONUNBUFFERED": "1",
           "DATABASE_URL": _database_url(settings.DATABASES["default"]),
           "CELERY_BROKER_URL": fault_redis.url, "HUB_REDIS_URL": fault_redis.url, "HUB_QUEUE": "hub-faults",
           "HUB_USAGE_QUEUE": USAGE_QUEUE, "HUB_USAGE_STORAGE_DIR": str(tmp_path / "usage"),
           "HUB_USAGE_TASK_SOFT_TIME_LIMIT": str(soft), "HUB_USAGE_TASK_TIME_LIMIT": str(soft + 3),
           "HUB_USAGE_LOAD_LEASE_SECONDS": str(soft + 5),
           # Four committed chunks at any size, so the kill lands after the first one.
           "HUB_USAGE_LOAD_CHUNK": str(max(1_000, records // 4)),
           # A v1 push is 100 sequential calls: more than the suite's 8 s on a busy machine.
           "HUB_TASK_SOFT_TIME_LIMIT": "30", "HUB_TASK_TIME_LIMIT": "35", "HUB_IN_FLIGHT_LEASE_SECONDS": "40"}
    processes = HubProcesses(env, tmp_path)
    port = free_port()
    processes.web(port)
    processes.sweeper()
    stack = UsageStack(processes, f"http://127.0.0.1:{port}", Token.objects.create(user=admin_user).key)
    stack.records = records
    yield stack
    processes.stop_all()
    _bulk_tables_empty()


def _bulk_tables_empty() -> None:
    """The bulk tables are created by SQL (migration 0002), so the flush between
    transactional tests leaves them: empty them around each scenario."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE usage_stage, usage_event, usage_record")


def usage_file(records: int, stamp: dt.datetime) -> tuple[bytes, dict]:
    """A CSV of ``records`` lines: mostly valid usage of ten known subscriptions, with
    exact duplicates (1 %), conflicts (0.1 %), bad rows of five kinds (1 %) and usage of
    a subscription the hub does not know yet (1 %). Returns the file and what it holds."""
    at = stamp.isoformat()
    lines = ["id,subscription,metric,quantity,timestamp,region"]
    valid: dict[str, str] = {}
    expected = Counter()
    bad = ["abc", "-1", "no-offset", "no-id", "no-metric"]

    def row(event_id: str) -> str:
        n = int(event_id[1:])
        return f"{event_id},sub_{n % 10},{'api_calls' if n % 2 else 'storage_gb'},{n % 7 + 1}.5,{at},eu-west"

    for i in range(records):
        kind = i % 100
        if kind == 10:  # the same id and content as a line five before: a duplicate
            lines.append(row(f"u{i - 5}"))
            expected["duplicates"] += 1
        elif kind == 20 and i % 1000 == 20:  # the same id, another quantity: a conflict
            lines.append(row(f"u{i - 5}").replace(",eu-west", ",us-east"))
            expected["conflicts"] += 1
        elif kind == 30:
            reason = bad[(i // 100) % len(bad)]
            lines.append({"abc": f"b{i},sub_1,api_calls,abc,{at},eu",
                          "-1": f"b{i},sub_1,api_calls,-1,{at},eu",
                          "no-offset": f"b{i},sub_1,api_calls,1,{at[:19]},eu",
                          "no-id": f",sub_1,api_calls,1,{at},eu",
                          "no-metric": f"b{i},sub_1,,1,{at},eu"}[reason])
            expected["rejected"] += 1
        elif kind == 40:  # usage of a subscription that arrives later
            event_id = f"u{i}"
            valid[event_id] = line = f"{event_id},sub_later,api_calls,2,{at},eu-west"
            lines.append(line)
            expected["unmatched"] += 1
        else:
            event_id = f"u{i}"
            valid[event_id] = line = row(event_id)
            lines.append(line)
    expected["records"], expected["loaded"] = records, len(valid)
    return ("\n".join(lines) + "\n").encode(), {"ids": set(valid), **expected}


def test_usage_worker_killed_in_the_middle_of_a_large_load(usage_stack):
    """``FAULTS_USAGE_RECORDS`` records (100,000 by default; CI runs 20,000) uploaded
    through POST /api/usage/batches/; the usage worker is SIGKILLed while it loads them
    and started again; the sweep (``hub_sweep``: ``batches_stalled`` after the load
    lease) loads the batch again. Every record is counted exactly once."""
    from django.db import connection

    from canonical.models import LegalEntity
    from integration_hub.usage.models import UsageBatch, UsageConflict, UsageReject
    from integration_hub.usage.services import subscription_upsert

    records = usage_stack.records
    us = LegalEntity.objects.get(code="US")
    for n in range(10):
        subscription_upsert(subscription=f"sub_{n}", legal_entity=us, billing_customer=f"cus_{n}")
    content, expected = usage_file(records, dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(hours=1))
    usage_stack.usage_worker()
    answer = usage_stack.post("/api/usage/batches/?filename=usage.csv", content=content,
                              headers={"Content-Type": "text/csv"})
    assert answer.status_code == 202, answer.text
    batch_id = answer.json()["id"]

    def stage_rows() -> int:  # the shared stage (SQLite); on PostgreSQL it is the load's own session's
        with connection.cursor() as cursor:
            cursor.execute("SELECT COUNT(*) FROM usage_stage WHERE batch_id = %s", [batch_id])
            return cursor.fetchone()[0]

    # Mid-way: once the first of its four chunks is staged and committed with its counts.
    def loading_now():
        batch = UsageBatch.objects.get(pk=batch_id)
        if batch.status == UsageBatch.Status.LOADED:
            pytest.fail("the load finished before the worker could be killed")
        return batch.status == UsageBatch.Status.LOADING and batch.read > 0

    wait_until(loading_now, timeout=60, what="the load to be under way", every=0.02)
    usage_stack.processes.signal("usage-worker", signal.SIGKILL)
    usage_stack.processes.wait("usage-worker")
    killed_at = time.monotonic()
    at_kill = UsageBatch.objects.get(pk=batch_id)
    assert at_kill.status == UsageBatch.Status.LOADING  # killed mid-load
    read_at_kill = at_kill.read
    assert 0 < read_at_kill < records  # some chunks committed, not all
    usage_stack.usage_worker("usage-worker2")

    loaded = wait_until(lambda: UsageBatch.objects.filter(pk=batch_id, status__in=["loaded", "failed"]).first(),
                        timeout=180, what="the batch to be loaded again", every=0.3)
    drain = round(time.monotonic() - killed_at, 1)
    with connection.cursor() as cursor:
        cursor.execute("SELECT event_id FROM usage_record WHERE batch_id = %s", [batch_id])
        in_records = [event_id for (event_id,) in cursor.fetchall()]
        cursor.execute("SELECT COUNT(*) FROM usage_event WHERE batch_id = %s", [batch_id])
        events = cursor.fetchone()[0]
    stored = Counter(in_records)
    lost = expected["ids"] - set(stored)
    duplicated = [event_id for event_id, n in stored.items() if n > 1]
    conflicts = UsageConflict.objects.filter(batch_id=batch_id).count()
    rejects = UsageReject.objects.filter(batch_id=batch_id).count()
    counted = len(in_records) + loaded.duplicates + loaded.conflicts + loaded.rejected
    ROWS.append({
        "scenario": "usage_worker_killed_in_the_middle_of_a_large_load", "events sent": f"{records} records",
        "accepted": f"{loaded.read} read", "posted exactly once": f"{len(stored) - len(duplicated)} loaded",
        "lost": len(lost), "duplicated": len(duplicated) + max(0, counted - records),
        "drain after fault (s)": drain,
        "calls to failing endpoint": f"killed at {read_at_kill} read (chunks of {max(1_000, records // 4)} committed); the load again "
                                     f"took {(loaded.finished_at - loaded.started_at).total_seconds():.1f} s",
    })
    assert loaded.status == UsageBatch.Status.LOADED, loaded.error
    assert lost == set() and duplicated == []
    assert counted == records  # every line of the file is a record, a duplicate, a conflict or a reject
    assert (loaded.read, loaded.loaded, loaded.duplicates, loaded.conflicts, loaded.rejected, loaded.unmatched) == (
        records, expected["loaded"], expected["duplicates"], expected["conflicts"], expected["rejected"],
        expected["unmatched"])
    assert loaded.loaded + loaded.duplicates + loaded.conflicts + loaded.rejected == loaded.read
    assert (events, conflicts, rejects, stage_rows()) == (expected["loaded"], expected["conflicts"],
                                                          expected["rejected"], 0)

    # The held usage's subscription arrives: the sweep matches it, nothing is counted again.
    subscription_upsert(subscription="sub_later", legal_entity=us, billing_customer="cus_later")
    wait_until(lambda: UsageBatch.objects.get(pk=batch_id).unmatched == 0, timeout=30,
               what="the unmatched usage to be matched")
    assert UsageBatch.objects.get(pk=batch_id).loaded == expected["loaded"]


@pytest.mark.parametrize("api", ["v2", "v1"])
def test_usage_billing_failing_half_way_through_a_push(usage_stack, api):
    """A closed period's aggregates pushed as meter events (v2: the meter event stream,
    100 a request; v1: one request per event under its identifier as Idempotency-Key)
    through the outbox to the Stripe API sandbox behind a fault proxy. Once half the
    events are in, billing fails for a while: 5xx, and requests it processed whose answer
    never reaches the hub. After it recovers each meter event is in billing exactly once
    and the reconciliation balances."""
    from canonical.models import LegalEntity
    from connectors.services import connection_upsert
    from connectors.stripe.api_sandbox import StripeApiSandbox
    from integration_hub.runtime.models import AdmissionPolicy, Delivery
    from integration_hub.usage import services
    from integration_hub.usage.models import UsageAggregate, UsageMeterEvent, UsageSubscription

    # × 2 metrics: 2,000 events in 20 pushes on the stream, or one push of 100 events on v1
    # (100 sequential calls: billing fails in the middle of it).
    subscriptions = 1000 if api == "v2" else 50
    stripe_api = StripeApiSandbox(api_key="sk_test_faults")
    stripe_api.serve()
    proxy = FaultProxy(upstream=stripe_api.url,
                       forward_headers=("authorization", "content-type", "idempotency-key", "stripe-version")).start()
    try:
        billing = connection_upsert(name="stripe", vendor="stripe", role="billing",
                                    config={"api_base": proxy.url, "meter_events_api": api, "timeout": 5},
                                    credentials={"api_key": stripe_api.api_key})
        # The suite's circuit (as the ERP's in conftest): three failures open it for 2 s.
        AdmissionPolicy.objects.create(connection=billing, failure_threshold=3, open_seconds=2)
        for metric in ("api_calls", "storage_gb"):
            stripe_api.meters.route(type("R", (), {"path": "/v1/billing/meters", "method": "POST", "query": {}})(),
                                    {"display_name": metric, "event_name": metric,
                                     "default_aggregation": {"formula": "sum"}})
        customers = [stripe_api.objects.customer(f"c{n}", f"c{n}@example.com") for n in range(subscriptions)]
        stripe_api.customers.update({c["id"]: c for c in customers})
        us = LegalEntity.objects.get(code="US")
        UsageSubscription.objects.bulk_create([UsageSubscription(subscription=f"sub_{n}", legal_entity=us,
                                                                 billing_customer=customers[n]["id"])
                                               for n in range(subscriptions)])
        now = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(minutes=10)
        rows = ["id,subscription,metric,quantity,timestamp"]
        for n in range(subscriptions):
            for k, metric in enumerate(("api_calls", "storage_gb")):
                rows += [f"e{n}-{k}-a,sub_{n},{metric},{n % 9 + 1},{now.isoformat()}",
                         f"e{n}-{k}-b,sub_{n},{metric},0.25,{now.isoformat()}"]
        import io

        batch = services.batch_receive(stream=io.BytesIO(("\n".join(rows) + "\n").encode()), filename="usage.csv",
                                       source="shell", load=False)
        assert services.batch_load(batch.pk).loaded == 4 * subscriptions
        period = now.date().replace(day=1)
        total = 2 * subscriptions
        # The meter pushes are usage deliveries: they travel on the usage queue, which the
        # stack's worker leaves to a usage worker (docs/scaling.md).
        usage_stack.usage_worker()

        # Half-way, billing fails requests in a row (fewer than a push's 6 attempts,
        # HUB_DELIVERY_MAX_ATTEMPTS, should they all fall on one; on v1 they do): 503 or
        # 500, the connection dropped before the request, or the request processed and
        # the connection dropped before the answer (the hub cannot tell if it landed).
        target = STREAM if api == "v2" else V1_EVENTS
        pattern = ["drop_answer", 503, "drop_answer", 500, "drop"] if api == "v2" else [
            "drop_answer", 503, "drop_answer", "drop"]
        injected: list = []

        def half_way(path, body):
            if path != target or len(stripe_api.meters.events) < total // 2 or len(injected) >= len(pattern):
                return None
            action = pattern[len(injected)]
            injected.append(action)
            return {action: True} if isinstance(action, str) else {"status": action}

        proxy.fault = half_way
        answer = usage_stack.post(f"/api/usage/periods/{period:%Y-%m}/close/")
        assert answer.status_code == 200, answer.text
        usage_stack.processes.worker()
        wait_until(lambda: len(injected) == len(pattern), timeout=60, what="billing to fail half-way")
        fault_ended = time.monotonic()

        def settled():
            statuses = set(Delivery.objects.filter(action=services.PUSH_ACTION).values_list("status", flat=True))
            return statuses == {Delivery.Status.POSTED} or Delivery.Status.DEAD in statuses

        wait_until(settled, timeout=120, what="every push to be posted", every=0.3)
        drain = round(time.monotonic() - fault_ended, 1)

        planned = {e.identifier: e for e in UsageMeterEvent.objects.select_related("aggregate")}
        in_billing = stripe_api.meters.events
        lost = [i for i in planned if i not in in_billing]
        unexpected = [i for i in in_billing if i not in planned]
        wrong_value = [i for i, e in planned.items() if i in in_billing
                       and in_billing[i]["payload"]["value"] != services.quantity_format(e.quantity)]
        arrivals: Counter = Counter()
        for call in proxy.calls:
            if call.method != target or call.status == 0:
                continue  # never reached billing
            if api == "v2":
                arrivals.update(event["identifier"] for event in json.loads(call.body)["events"])
            else:
                arrivals.update(value for key, value in _form(call.body) if key == "identifier")
        ROWS.append({
            "scenario": f"usage_billing_failing_half_way_through_a_push ({api})",
            "events sent": f"{len(planned)} meter events", "accepted": len(in_billing),
            "posted exactly once": len(planned) - len(lost) - len(wrong_value),
            "lost": len(lost), "duplicated": len(unexpected) + len(wrong_value), "drain after fault (s)": drain,
            "calls to failing endpoint": f"{len(pattern)} failed ({sum(1 for a in pattern if a == 'drop_answer')} "
                                         f"after processing); {sum(1 for n in arrivals.values() if n > 1)} events "
                                         "re-sent, kept once",
        })
        assert set(Delivery.objects.filter(action=services.PUSH_ACTION).values_list("status", flat=True)) == {
            Delivery.Status.POSTED}
        assert len(planned) == total == UsageAggregate.objects.count()
        assert lost == [] and unexpected == [] and wrong_value == [] and stripe_api.meters.stream_errors == []
        assert any(n > 1 for n in arrivals.values())  # the retries re-sent events billing already held
        # What billing bills per customer × meter is each aggregate, no more, no less.
        billed: Counter = Counter()
        for event in in_billing.values():
            billed[(event["payload"]["stripe_customer_id"], event["event_name"])] += Decimal(event["payload"]["value"])
        customer_of = dict(UsageSubscription.objects.values_list("subscription", "billing_customer"))
        assert billed == Counter({(customer_of[a.subscription], a.metric): Decimal(services.quantity_format(a.quantity))
                                  for a in UsageAggregate.objects.all()})
    finally:
        proxy.stop()
        stripe_api.stop()


def _form(body: bytes) -> list[tuple[str, str]]:
    import urllib.parse

    return urllib.parse.parse_qsl(body.decode())
