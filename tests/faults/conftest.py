"""Fixtures of the fault-injection suite: the stack in real processes, and the
reliability table printed at the end of the run (``make faults``)."""

from __future__ import annotations

import concurrent.futures
import os
import signal
import threading
import time
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from tests.conftest import WEBHOOK_SECRET, _database_url
from tests.e2e.conftest import erp, tryton_server  # noqa: F401 - shared fixtures
from tests.faults.harness import FaultProxy, HubProcesses, RabbitMQServer, RedisServer, free_port

ROWS: list[dict] = []
COLUMNS = ["scenario", "events sent", "accepted", "posted exactly once", "lost", "duplicated",
           "drain after fault (s)", "calls to failing endpoint"]
REPORT = Path(__file__).resolve().parents[2] / "var" / "reliability-report.md"


def pytest_terminal_summary(terminalreporter):
    if not ROWS:
        return
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(str(row.get(column, "")) for column in COLUMNS) + " |" for row in ROWS]
    REPORT.parent.mkdir(exist_ok=True)
    REPORT.write_text("\n".join(lines) + "\n")
    terminalreporter.section("reliability report")
    for line in lines:
        terminalreporter.write_line(line)
    terminalreporter.write_line(f"(also written to {REPORT})")


@pytest.fixture(scope="session")
def fault_redis(tmp_path_factory):
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def fault_rabbitmq():
    """A private RabbitMQ node, for the scenarios marked ``rabbitmq`` (the machine's own
    is shared: it is never restarted). Fails, never skips, when it cannot start."""
    try:
        server = RabbitMQServer().start()
    except RuntimeError as exc:
        pytest.fail(f"could not start a private RabbitMQ node: {exc}", pytrace=False)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def fault_proxy(tryton_server):  # noqa: F811
    proxy = FaultProxy(upstream=tryton_server.url).start()
    yield proxy
    proxy.stop()


class Scenario:
    """One scenario's stack and bookkeeping: what was sent, what the ERP must hold."""

    def __init__(self, name, processes, proxy, redis, erp_reader, sandbox, web_url, broker=None):
        self.name, self.processes, self.proxy, self.redis = name, processes, proxy, redis
        self.broker = broker  # the private RabbitMQ node of a scenario marked rabbitmq
        self.erp, self.sandbox, self.web_url = erp_reader, sandbox, web_url
        self.expected: dict[str, tuple[str, Decimal]] = {}
        self.responses: list[httpx.Response] = []
        self.sent_events: list[str] = []
        self.fault_ended_at: float | None = None

    def invoice(self, currency="usd", lines=(("Plan", 1, 10000),), tax_percent=10):
        from canonical.money import to_major

        invoice = self.sandbox.finalize(self.sandbox.invoice("cus_" + self.name[:12], list(lines), currency=currency,
                                                             tax_percent=tax_percent))
        self.expected[invoice["id"]] = (currency.upper(), to_major(invoice["total"], currency))
        return invoice

    def send(self, events, *, concurrently=False):
        def post(event):
            return self.sandbox.deliver(event, f"{self.web_url}/api/webhooks/stripe/")

        for event in events:
            self.sent_events.append(event["id"])
        if concurrently:
            with concurrent.futures.ThreadPoolExecutor(len(events)) as pool:
                responses = list(pool.map(post, events))
        else:
            responses = [post(event) for event in events]
        self.responses += responses
        return responses

    def kill_worker(self, release: threading.Event) -> None:
        """SIGKILL the worker while the ERP traffic it waits on is held, then let that
        traffic go (the fault ends there) and start a second worker."""
        self.processes.signal("worker", signal.SIGKILL)
        self.processes.wait("worker")
        release.set()
        self.fault_ended_at = time.monotonic()
        self.processes.worker("worker2")

    def unfinished(self) -> int:
        from integration_hub.runtime.models import Delivery, InboundEvent

        return (InboundEvent.objects.filter(status="received").count()
                + Delivery.objects.exclude(status__in=["posted", "dead"]).count())

    def settle(self, timeout=120) -> float:
        """Wait until nothing is unfinished and every expected invoice is posted;
        returns the seconds it took from the end of the fault (or from now)."""
        from integration_hub.runtime.models import Delivery

        start = self.fault_ended_at or time.monotonic()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.unfinished() and Delivery.objects.filter(status="posted").count() >= len(self.expected):
                return round(time.monotonic() - start, 1)
            time.sleep(0.3)
        pytest.fail(f"{self.name}: {self.unfinished()} unfinished after {timeout}s")

    def check(self, *, calls_to_failing="-", drain=None, allow_dead=0):
        """Assert the invariants and record the scenario's row in the report."""
        from integration_hub.runtime.models import Delivery, InboundEvent

        accepted = [r for r in self.responses if r.status_code == 200]
        stored = set(InboundEvent.objects.values_list("external_id", flat=True))
        missing_events = [e for e, r in zip(self.sent_events, self.responses, strict=True) if r.status_code == 200 and e not in stored]
        counts = {ref: [i for i in self.erp.invoices(reference=ref) if i["total_amount"] > 0] for ref in self.expected}
        lost = [ref for ref, docs in counts.items() if not docs]
        duplicated = [ref for ref, docs in counts.items() if len(docs) > 1]
        totals_expected: dict[str, Decimal] = {}
        totals_erp: dict[str, Decimal] = {}
        for ref, (currency, total) in self.expected.items():
            totals_expected[currency] = totals_expected.get(currency, Decimal(0)) + total
            for doc in counts[ref]:
                totals_erp[doc["currency"]] = totals_erp.get(doc["currency"], Decimal(0)) + doc["total_amount"]
        ROWS.append({
            "scenario": self.name, "events sent": len(self.sent_events), "accepted": len(accepted),
            "posted exactly once": sum(1 for docs in counts.values() if len(docs) == 1),
            "lost": len(lost) + len(missing_events), "duplicated": len(duplicated),
            "drain after fault (s)": drain if drain is not None else "-", "calls to failing endpoint": calls_to_failing,
        })
        assert missing_events == [], "accepted events without an inbox row"
        assert lost == [] and duplicated == [], f"lost {lost}, duplicated {duplicated}"
        assert totals_erp == totals_expected
        assert self.unfinished() == 0
        assert Delivery.objects.filter(status="dead").count() == allow_dead


LEGAL_ENTITIES = [("US", "Acme US Inc.", "USD", "US"), ("EU", "Acme Europe GmbH", "EUR", "DE"),
                  ("JP", "Acme Japan KK", "JPY", "JP")]

FAST = {
    "HUB_TASK_SOFT_TIME_LIMIT": "8",
    "HUB_TASK_TIME_LIMIT": "10",
    "HUB_IN_FLIGHT_LEASE_SECONDS": "12",
    "HUB_REENQUEUE_AFTER_SECONDS": "3",
    "HUB_RETRY_BASE_SECONDS": "0.3",
    "HUB_RETRY_CAP_SECONDS": "3",
    "HUB_DELIVERY_MAX_ATTEMPTS": "6",
    "HUB_MAINTENANCE_DRAIN_SECONDS": "2",
    # More than the suite's 3 s ERP read timeout: a lookup never races the lost call.
    "HUB_UNKNOWN_OUTCOME_SETTLE_SECONDS": "5",
}


@pytest.fixture
def stack(request, transactional_db, fault_redis, fault_proxy, tryton_server, erp, tmp_path):  # noqa: F811
    """Web (gunicorn), one worker and a sweeper loop in real processes, on a private
    Redis, the test database and the real Tryton behind the fault proxy. A scenario
    marked ``rabbitmq`` has a private RabbitMQ node as its broker (quorum queues), the
    governor's state staying in the private Redis."""
    from django.conf import settings

    from canonical.models import LegalEntity
    from canonical.policy_services import policy_bootstrap
    from connectors.services import connection_upsert
    from connectors.stripe.sandbox import StripeSandbox
    from integration_hub.runtime.models import AdmissionPolicy

    if fault_redis.process.poll() is not None:
        fault_redis.start()
    fault_redis.flush()
    fault_proxy.reset()
    for code, name, currency, country in LEGAL_ENTITIES:
        LegalEntity.objects.create(code=code, name=name, currency=currency, country=country)
    # Invoices post by an approved posting policy (issue 13): the bootstrap one, as tests/conftest's.
    policy_bootstrap(taxes={"10": "VAT-10", "0": ""})
    connection_upsert(name="stripe", vendor="stripe", role="billing", config={},
                      credentials={"webhook_secrets": [WEBHOOK_SECRET]})
    erp_connection = connection_upsert(
        name="tryton", vendor="tryton", role="erp",
        config={**tryton_server.connection_config(), "url": fault_proxy.url, "timeout": {"connect": 2, "read": 3}},
        credentials=tryton_server.credentials(),
    )
    AdmissionPolicy.objects.create(connection=erp_connection, failure_threshold=3, open_seconds=2)

    env = {**os.environ, **FAST, "PYTHONUNBUFFERED": "1",
           "DATABASE_URL": _database_url(settings.DATABASES["default"]),
           "CELERY_BROKER_URL": fault_redis.url, "HUB_REDIS_URL": fault_redis.url, "HUB_QUEUE": "hub-faults"}
    broker = None
    if request.node.get_closest_marker("rabbitmq"):
        broker = request.getfixturevalue("fault_rabbitmq")
        if broker.process.poll() is not None:
            broker.start()
        env["CELERY_BROKER_URL"] = broker.url
    processes = HubProcesses(env, tmp_path)
    port = free_port()
    processes.web(port)
    processes.worker()
    processes.sweeper()
    import random

    scenario = Scenario(request.node.name.removeprefix("test_"), processes, fault_proxy, fault_redis, erp,
                        StripeSandbox(WEBHOOK_SECRET, seed=random.getrandbits(64)), f"http://127.0.0.1:{port}",
                        broker=broker)
    yield scenario
    processes.stop_all()
    fault_proxy.reset()
