"""Fault injection with real processes: whatever fails, every accepted event reaches
the ERP exactly once, nothing is left unfinished, and per-currency totals match."""

import os
import signal
import threading
import time
from decimal import Decimal

import pytest

from integration_hub.runtime.models import Delivery, DeliveryAttempt, ExceptionRecord, InboundEvent
from tests.faults.harness import wait_until

pytestmark = [pytest.mark.faults, pytest.mark.django_db(transaction=True)]

CREATE, POST = "model.account.invoice.create", "model.account.invoice.post"
SEARCH = "model.account.invoice.search_read"


def finalized(stack, count, currency="usd"):
    return [stack.sandbox.event("invoice.finalized", stack.invoice(currency)) for _ in range(count)]


def test_worker_killed_while_the_erp_call_is_in_flight(stack):
    caught, release = threading.Event(), threading.Event()

    def hold_first_create(method, body):
        if method == CREATE and not caught.is_set():
            caught.set()
            release.wait(30)
            return {"drop": True}  # the request never reaches the ERP
        return None

    stack.proxy.fault = hold_first_create
    stack.send(finalized(stack, 3))
    wait_until(caught.is_set, what="a create call to be in flight")
    stack.kill_worker(release)
    stack.check(drain=stack.settle())


def test_worker_killed_after_the_erp_answered_before_the_hub_committed(stack):
    answered, release = threading.Event(), threading.Event()

    def hold_first_post_answer(method, body):
        if method == POST and not answered.is_set():
            return {"after_forward": lambda: (answered.set(), release.wait(30))}
        return None

    stack.proxy.fault = hold_first_post_answer
    stack.send(finalized(stack, 3, "eur"))
    wait_until(answered.is_set, what="the ERP to post while the answer is held")
    stack.kill_worker(release)
    stack.check(drain=stack.settle())
    assert Delivery.objects.filter(attempt_log__outcome="lost").exists()


def test_the_erps_answer_to_a_create_is_lost(stack):
    """The invoice is created in the ERP, the answer is lost on the way back: the
    attempt's outcome is unknown, and the retry looks the invoice up (and finishes the
    draft) instead of creating a second one."""
    dropped = threading.Event()

    def drop_first_create_answer(method, body):
        if method == CREATE and not dropped.is_set():
            dropped.set()
            return {"drop_answer": True}
        return None

    stack.proxy.fault = drop_first_create_answer
    stack.send(finalized(stack, 2, "eur"))
    wait_until(dropped.is_set, what="a create whose answer is dropped")
    stack.fault_ended_at = time.monotonic()
    stack.check(drain=stack.settle(), calls_to_failing=1)

    unknown = {attempt.delivery for attempt in DeliveryAttempt.objects.filter(outcome_unknown=True)}
    assert unknown and all(delivery.status == "posted" for delivery in unknown)
    creates = [call for call in stack.proxy.calls if call.method == CREATE]
    assert len(creates) == 2  # one per invoice: the lost answer's invoice was not created again
    lost = next(c for c in creates if c.injected)
    reference = next(ref.encode() for ref in stack.expected if ref.encode() in lost.body)
    # The retry looked the invoice up by its reference (it waits for the ERP to settle
    # first, so the other invoice's calls may come in between).
    assert any(c.method == SEARCH and reference in c.body for c in stack.proxy.calls if c.at > lost.at)


def test_worker_killed_while_a_batch_of_the_backlog_is_posting(stack, monkeypatch):
    """A maintenance window holds the posts; when it ends they go out in batches, and the
    worker is killed after the ERP posted a batch, before the hub recorded it. Every
    invoice of the batch is recovered (in-flight lease, then looked up first) and posted
    once; the others drain as before."""
    import datetime as dt
    import json

    from django.utils import timezone

    from connectors.models import Connection
    from integration_hub.celery import app
    from integration_hub.runtime.models import MaintenanceWindow
    from integration_hub.runtime.services import maintenance_window_end

    tryton = Connection.objects.get(name="tryton")
    tryton.config = {**tryton.config, "batch_size": 3}  # a batch's post well inside the suite's 3 s timeout
    tryton.save()
    now = timezone.now()
    window = MaintenanceWindow.objects.create(connection=tryton, starts_at=now - dt.timedelta(minutes=1),
                                              ends_at=now + dt.timedelta(hours=1), reason="fault suite")
    answered, release = threading.Event(), threading.Event()

    def hold_first_batch_answer(method, body):
        if method == POST and len(json.loads(body)["params"][0]) > 1 and not answered.is_set():
            return {"after_forward": lambda: (answered.set(), release.wait(30))}
        return None

    stack.proxy.fault = hold_first_batch_answer
    stack.send(finalized(stack, 6))
    wait_until(lambda: Delivery.objects.filter(status="held").count() == 6, what="the window to hold every post")
    # Ended as the admin's "End now" does; this process's broker is not the stack's, so
    # the released posts' messages are left to the stack's sweeper.
    monkeypatch.setattr(app, "send_task", lambda *args, **kwargs: None)
    maintenance_window_end(window, user=None, reason="fault suite: the ERP is back")
    wait_until(answered.is_set, what="the ERP to post a batch while its answer is held")
    stack.kill_worker(release)
    stack.check(drain=stack.settle())
    assert DeliveryAttempt.objects.filter(outcome="lost").count() > 1  # the whole batch was in flight
    assert DeliveryAttempt.objects.filter(message__startswith="posted in a batch of").exists()


def test_redis_flushed_mid_run(stack):
    stack.send(finalized(stack, 6))
    wait_until(lambda: Delivery.objects.filter(status="posted").exists(), what="a first posting")
    stack.redis.flush()  # every queued message is gone
    stack.fault_ended_at = time.monotonic()
    stack.check(drain=stack.settle())


def test_redis_down_for_a_while(stack):
    stack.redis.stop()
    started = time.monotonic()
    responses = stack.send(finalized(stack, 4, "jpy"))
    slowest = time.monotonic() - started
    assert [r.status_code for r in responses] == [200] * 4  # the database is the inbox
    assert InboundEvent.objects.count() == 4
    assert slowest < 60, "webhooks hung while the broker was down"
    time.sleep(2)
    stack.redis.start()
    stack.fault_ended_at = time.monotonic()
    stack.check(drain=stack.settle())


@pytest.mark.rabbitmq
def test_rabbitmq_broker_restarted_mid_run(stack):
    # The broker is SIGKILLed with tasks queued, running and delayed (retries after 503s
    # ride on native delayed delivery), webhooks arrive while it is down, then it comes
    # back on its own data: the quorum queues keep what they confirmed, and the sweeper
    # re-sends what was published while it was down.
    failing = {"left": 4}

    def fault(method, body):
        if method == CREATE and failing["left"] > 0:
            failing["left"] -= 1
            return {"status": 503}
        return None

    stack.proxy.fault = fault
    stack.send(finalized(stack, 8))
    wait_until(lambda: Delivery.objects.filter(status="posted").exists(), what="a first posting")
    stack.broker.kill()
    responses = stack.send(finalized(stack, 4, "eur"))
    assert [r.status_code for r in responses] == [200] * 4  # the database is the inbox
    time.sleep(2)
    stack.broker.start()
    stack.fault_ended_at = time.monotonic()
    stack.check(drain=stack.settle(timeout=180), calls_to_failing=4 - failing["left"])


def test_erp_answers_503_for_a_period(stack):
    outage = {"until": time.monotonic() + 8}

    def unavailable(method, body):
        if time.monotonic() < outage["until"]:
            return {"status": 503, "headers": {"Retry-After": "1"}}
        return None

    stack.proxy.fault = unavailable
    stack.send(finalized(stack, 4))
    wait_until(lambda: time.monotonic() > outage["until"], timeout=20, what="the outage to end")
    stack.fault_ended_at = outage["until"]
    calls_in_outage = sum(1 for call in stack.proxy.calls if call.injected)
    drain = stack.settle()
    # Three failures open the circuit; then one probe per open period (2 s) at most.
    assert calls_in_outage <= 3 + 8 / 2 + 2
    stack.check(drain=drain, calls_to_failing=calls_in_outage)


def test_erp_answers_429_with_retry_after(stack):
    import datetime as dt

    from django.utils import timezone

    from integration_hub.runtime.models import DeliveryAttempt

    limited = {"at": None}

    def rate_limited_once(method, body):
        if limited["at"] is None and method == CREATE:
            limited["at"], limited["wall"] = time.monotonic(), timezone.now()
            return {"status": 429, "headers": {"Retry-After": "4"}}
        return None

    stack.proxy.fault = rate_limited_once
    stack.send(finalized(stack, 3))
    wait_until(lambda: limited["at"] is not None, what="the 429")
    stack.fault_ended_at = limited["at"] + 4
    drain = stack.settle()
    # Calls of attempts already under way may finish; no attempt starts inside the wait.
    early = DeliveryAttempt.objects.filter(
        started_at__gt=limited["wall"], started_at__lt=limited["wall"] + dt.timedelta(seconds=4)
    )
    assert not early.exists(), "an attempt started before Retry-After elapsed"
    stack.check(drain=drain, calls_to_failing=1)


def test_erp_hangs(stack):
    hung = {"count": 0}

    def hang_first_two_creates(method, body):
        if method == CREATE and hung["count"] < 2:
            hung["count"] += 1
            return {"hang": 6, "drop": True}  # longer than the connector's 3 s read timeout
        return None

    stack.proxy.fault = hang_first_two_creates
    stack.send(finalized(stack, 3, "eur"))
    wait_until(lambda: hung["count"] == 2, what="two hung calls")
    stack.fault_ended_at = time.monotonic()
    drain = stack.settle()
    attempts = Delivery.objects.values_list("attempt_log__error_class", flat=True)
    assert "Retryable" in attempts  # the timeout fired inside the task and was retried
    stack.check(drain=drain, calls_to_failing=2)


def test_the_same_webhook_three_times_concurrently_and_again_later(stack):
    event = finalized(stack, 1)[0]
    responses = stack.send([event, event, event], concurrently=True)
    assert sorted(r.json()["status"] for r in responses) == ["accepted", "duplicate", "duplicate"]
    stack.settle()
    again = stack.send([event])  # re-signed with a fresh timestamp, like a late Stripe retry
    assert again[0].json()["status"] == "duplicate"
    assert InboundEvent.objects.count() == 1
    stack.settle()
    stack.check()  # no fault to drain after: duplicates are absorbed at the door


def test_events_for_one_invoice_out_of_order(stack):
    sandbox = stack.sandbox
    paid_first = stack.invoice("usd")
    voided = stack.invoice("eur")
    events = [
        sandbox.event("invoice.paid", sandbox.pay(paid_first)),
        sandbox.event("invoice.voided", sandbox.void(voided)),
        sandbox.event("invoice.finalized", paid_first),
        sandbox.event("invoice.finalized", voided),
    ]
    stack.send(sandbox.reordered(events, seed=3))
    drain = stack.settle()
    [paid] = stack.erp.invoices(reference=paid_first["id"])
    assert paid["state"] == "paid"
    states = {i["state"] for i in stack.erp.invoices(reference=voided["id"]) if i["total_amount"] > 0}
    assert states == {"cancelled"}
    stack.check(drain=drain)


def test_a_credit_note_and_a_refund_out_of_order(stack):
    sandbox = stack.sandbox
    adjusted = stack.invoice("usd", lines=(("Seats", 4, 2500),))
    credit = sandbox.credit_note(adjusted, lines=[(0, 1)])  # 27.50 off before payment
    adjusted_paid = sandbox.pay(sandbox.apply_credit(adjusted, credit))
    refund = sandbox.refund(sandbox.payment_of(adjusted_paid), 2000)
    events = [
        sandbox.event("credit_note.created", credit),
        sandbox.event("refund.created", refund),
        sandbox.event("invoice.paid", adjusted_paid),
        sandbox.event("invoice.finalized", adjusted),
    ]
    stack.send(sandbox.reordered(events, seed=3))
    drain = stack.settle()
    [credit_note] = stack.erp.invoices(reference=credit["id"])
    assert credit_note["total_amount"] == Decimal("-27.50")
    [adjusted_erp] = stack.erp.invoices(reference=adjusted["id"])
    assert adjusted_erp["state"] == "paid"
    assert sorted(Delivery.objects.filter(action__in=["credit_note.post", "refund.post"])
                  .values_list("action", "status")) == [("credit_note.post", "posted"), ("refund.post", "posted")]
    stack.check(drain=drain)


def test_a_poison_message_is_dead_lettered_without_blocking_others(stack):
    poison = stack.invoice("usd")
    stack.expected.pop(poison["id"])  # it never reaches the ERP, by design

    def poison_fault(method, body):
        if poison["id"].encode() in body:
            return {"status": 500}
        return None

    stack.proxy.fault = poison_fault
    stack.send([stack.sandbox.event("invoice.finalized", poison)] + finalized(stack, 3))
    drain = stack.settle()
    dead = Delivery.objects.get(status="dead")
    assert dead.attempts == 6  # HUB_DELIVERY_MAX_ATTEMPTS: then it stops, no loop
    assert ExceptionRecord.objects.get().category == "retries_exhausted"
    assert stack.erp.invoices(reference=poison["id"]) == []
    stack.check(drain=drain, allow_dead=1, calls_to_failing=sum(1 for c in stack.proxy.calls if c.injected))


def test_sigterm_during_a_run_loses_no_prefetched_task(stack):
    stack.send(finalized(stack, 6))
    wait_until(lambda: Delivery.objects.filter(status="posted").exists(), what="a first posting")
    stack.processes.signal("worker", signal.SIGTERM)  # a deploy: warm shutdown
    assert stack.processes.wait("worker", timeout=60) is not None
    stack.fault_ended_at = time.monotonic()
    stack.processes.worker("worker2")
    stack.check(drain=stack.settle())


def test_two_sweepers_at_once(stack):
    stack.processes.sweeper("sweeper2", every=0.5)
    stack.send(finalized(stack, 5))
    stack.redis.flush()  # make both sweepers busy re-enqueueing the same rows
    stack.fault_ended_at = time.monotonic()
    stack.check(drain=stack.settle())


def test_postgresql_restarted_mid_run(fault_redis, fault_proxy, tryton_server, erp, tmp_path):
    """On a PostgreSQL of its own: ingress answers 503 (never 500, never 2xx without a
    commit) while the database is away, and workers recover without a restart."""
    import json
    import random
    import subprocess
    import sys

    from connectors.stripe.sandbox import StripeSandbox
    from tests.conftest import WEBHOOK_SECRET
    from tests.faults.conftest import FAST, LEGAL_ENTITIES, ROWS
    from tests.faults.harness import ROOT, HubProcesses, PrivatePostgres, free_port

    pg = PrivatePostgres().start()
    fault_redis.flush()
    fault_proxy.reset()
    env = {**__import__("os").environ, **FAST, "PYTHONUNBUFFERED": "1", "DATABASE_URL": pg.url,
           "CELERY_BROKER_URL": fault_redis.url, "HUB_REDIS_URL": fault_redis.url, "HUB_QUEUE": "hub-faults-pg"}
    subprocess.run([sys.executable, "manage.py", "migrate", "--no-input", "-v", "0"], cwd=ROOT, env=env, check=True)
    subprocess.run([sys.executable, "-m", "tests.faults.configure", json.dumps({
        "legal_entities": LEGAL_ENTITIES, "webhook_secret": WEBHOOK_SECRET,
        "erp_config": {**tryton_server.connection_config(), "url": fault_proxy.url, "timeout": {"connect": 2, "read": 3}},
        "erp_credentials": tryton_server.credentials(),
    })], cwd=ROOT, env=env, check=True)
    processes = HubProcesses(env, tmp_path)
    port = free_port()
    try:
        processes.web(port)
        processes.worker()
        processes.sweeper()
        sandbox = StripeSandbox(WEBHOOK_SECRET, seed=random.getrandbits(64))
        url = f"http://127.0.0.1:{port}/api/webhooks/stripe/"
        invoices = [sandbox.finalize(sandbox.invoice("cus_pg", [("Plan", 1, 5000)])) for _ in range(6)]
        events = [sandbox.event("invoice.finalized", invoice) for invoice in invoices]
        statuses = {}

        def count(sql):
            return pg.query(sql)[0][0]

        for event in events[:3]:
            statuses[event["id"]] = sandbox.deliver(event, url).status_code
        wait_until(lambda: count("select count(*) from runtime_delivery where status = 'posted'") >= 1,
                   what="a first posting")

        stopper = threading.Thread(target=lambda: (pg.pg_ctl("stop"), time.sleep(3), pg.pg_ctl("start")))
        stopper.start()
        time.sleep(0.5)
        during = [sandbox.deliver(event, url).status_code for event in events[3:]]  # while the database is away
        stopper.join()
        fault_ended = time.monotonic()
        assert set(during) <= {200, 503} and 500 not in during
        for event, status in zip(events[3:], during, strict=True):
            statuses[event["id"]] = status
        for event in events:  # the vendor retries what was not acknowledged
            if statuses[event["id"]] != 200:
                statuses[event["id"]] = sandbox.deliver(event, url).status_code
        assert set(statuses.values()) == {200}

        def settled():
            unfinished = count("select count(*) from runtime_inboundevent where status = 'received'") + count(
                "select count(*) from runtime_delivery where status not in ('posted', 'dead')")
            return not unfinished and count("select count(*) from runtime_delivery where status = 'posted'") == 6

        wait_until(settled, timeout=120, what="everything to be posted after the restart")
        drain = round(time.monotonic() - fault_ended, 1)
        stored = {row[0] for row in pg.query("select external_id from runtime_inboundevent")}
        docs = {invoice["id"]: erp.invoices(reference=invoice["id"]) for invoice in invoices}
        lost = [ref for ref, found in docs.items() if not found]
        duplicated = [ref for ref, found in docs.items() if len(found) > 1]
        ROWS.append({"scenario": "postgresql_restarted_mid_run", "events sent": len(statuses) + len(during),
                     "accepted": 6, "posted exactly once": sum(1 for found in docs.values() if len(found) == 1),
                     "lost": len(lost), "duplicated": len(duplicated), "drain after fault (s)": drain,
                     "calls to failing endpoint": f"{during.count(503)}×503 at ingress"})
        assert stored == {event["id"] for event in events}
        assert lost == [] and duplicated == []
        assert count("select count(*) from runtime_delivery where status = 'dead'") == 0
    finally:
        processes.stop_all()
        pg.stop()


def test_worker_killed_mid_release_of_the_approved_catalog(stack, admin_user):
    """``FAULTS_CATALOG_PLANS`` plans (40 by default; CI runs 10) pulled from the
    product-platform sandbox (a product and 4 prices each: 200 versions by default),
    approved through the API, released to Tryton (behind the fault
    proxy) and the Stripe API sandbox. The first Tryton product create reaches the ERP
    but its answer is held; the worker is killed mid-release with it in flight. After
    recovery each SKU is one Tryton product with its list prices, and each version is
    in Stripe exactly once."""
    import concurrent.futures
    import uuid

    import httpx
    from rest_framework.authtoken.models import Token

    from canonical.models import CatalogVersion, PriceVersion, ProductVersion
    from connectors.models import Connection
    from connectors.product_platform.sandbox import ProductPlatformSandbox
    from connectors.services import connection_upsert
    from connectors.stripe.api_sandbox import StripeApiSandbox
    from integration_hub.workflows.catalog_pull import catalog_pull_now
    from tests.conftest import WEBHOOK_SECRET

    plans = int(os.environ.get("FAULTS_CATALOG_PLANS", "40"))
    versions, prices = 5 * plans, 4 * plans
    tag = f"F{uuid.uuid4().hex[:5].upper()}"
    platform, stripe_api = ProductPlatformSandbox(items=[]), StripeApiSandbox()
    skus = platform.scale(plans, prefix=tag)
    platform.serve()
    stripe_api.serve()
    try:
        connection_upsert(name="stripe", vendor="stripe", role="billing", config=stripe_api.connection_config(),
                          credentials={"api_key": stripe_api.api_key, "webhook_secrets": [WEBHOOK_SECRET]})
        connection_upsert(name="catalog", vendor="product_platform", role="product",
                          config=platform.connection_config(), credentials=platform.credentials())
        assert catalog_pull_now(Connection.objects.get(name="catalog")).counts["new_versions"] == versions

        caught, release = threading.Event(), threading.Event()

        def hold_first_product_answer(method, body):
            if method == "model.product.template.create" and not caught.is_set():
                return {"after_forward": lambda: (caught.set(), release.wait(60))}
            return None

        stack.proxy.fault = hold_first_product_answer
        token = Token.objects.create(user=admin_user).key

        def approve(kind_and_id):
            kind, version_id = kind_and_id
            return httpx.post(f"{stack.web_url}/api/catalog/versions/{kind}/{version_id}/approve/",
                              json={"reason": "release"}, headers={"Authorization": f"Token {token}"}, timeout=30)

        with concurrent.futures.ThreadPoolExecutor(4) as pool:  # products first: a price needs its product
            answers = list(pool.map(approve, [("product", v) for v in
                                              ProductVersion.objects.values_list("pk", flat=True)]))
            answers += pool.map(approve, [("price", v) for v in PriceVersion.objects.values_list("pk", flat=True)])
        assert [a.status_code for a in answers] == [200] * versions
        wait_until(caught.is_set, what="a Tryton product create whose answer is held")
        wait_until(lambda: Delivery.objects.filter(status="posted").count() >= plans // 2, timeout=120,
                   what="the release to be under way")

        stack.processes.signal("worker", signal.SIGKILL)  # mid-release, a Tryton call in flight
        stack.processes.wait("worker")
        posted_at_kill = Delivery.objects.filter(status="posted").count()
        release.set()
        stack.fault_ended_at = time.monotonic()
        stack.processes.worker("worker2")
        drain = stack.settle(timeout=600)

        variants = stack.erp.client.call(
            "product.product", "search_read", [("code", "like", f"{tag}-%")], 0, None, [("id", "ASC")],
            ["code", "template"], context={"active_test": False})
        templates = stack.erp.client.call("product.template", "search", [("products.code", "like", f"{tag}-%")],
                                          0, None, None, context={"active_test": False})
        in_tryton = {sku: sum(1 for v in variants if v["code"] == sku) for sku in skus}
        companies = stack.erp.client.call("company.company", "search_read", [], 0, None, None,
                                          ["id", "currency.code"])
        list_prices = {}
        for company in companies:
            for row in stack.erp.client.call("product.template", "read", templates, ["list_price"],
                                             context={"company": company["id"]}):
                if row["list_price"] is not None:
                    list_prices.setdefault(company["currency."]["code"], set()).add(Decimal(str(row["list_price"])))
        in_stripe: dict[str, int] = {}
        for price in stripe_api.catalog.prices.values():
            version = price["metadata"].get("hub_price_version")
            in_stripe[version] = in_stripe.get(version, 0) + 1
        prices_once = [v for v in PriceVersion.objects.values_list("pk", flat=True) if in_stripe.get(str(v)) == 1]
        products_once = [sku for sku in skus if in_tryton[sku] == 1 and sku in stripe_api.catalog.products]

        from tests.faults.conftest import ROWS

        ROWS.append({
            "scenario": stack.name, "events sent": f"{versions} approved versions", "accepted": len(answers),
            "posted exactly once": len(products_once) + len(prices_once),
            "lost": sum(1 for n in in_tryton.values() if n == 0) + (prices - len(in_stripe)),
            "duplicated": sum(1 for n in in_tryton.values() if n > 1) + sum(1 for n in in_stripe.values() if n > 1),
            "drain after fault (s)": drain, "calls to failing endpoint": 1,
        })
        assert plans // 2 <= posted_at_kill < Delivery.objects.count()  # the kill came mid-release
        assert in_tryton == {sku: 1 for sku in skus} and len(templates) == plans
        assert len(products_once) == plans and len(prices_once) == prices and len(stripe_api.catalog.prices) == prices
        assert list_prices == {"USD": {Decimal("29")}, "EUR": {Decimal("27")}, "JPY": {Decimal("4400")}}
        assert set(ProductVersion.objects.values_list("status", flat=True)) == {CatalogVersion.Status.RELEASED}
        assert set(PriceVersion.objects.values_list("status", flat=True)) == {CatalogVersion.Status.RELEASED}
        assert set(Delivery.objects.values_list("status", flat=True)) == {"posted"}
        assert Delivery.objects.filter(attempt_log__outcome="lost").exists()  # recovered, not re-sent blindly
    finally:
        release_all = locals().get("release")
        if release_all is not None:
            release_all.set()
        platform.stop()
        stripe_api.stop()
