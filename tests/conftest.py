"""Shared fixtures: configured connections and legal entities, a recording broker for
unit tests, and an in-memory ERP connector whose behaviour a test scripts."""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

# The test run gets its own queue so leftovers of other runs never reach its worker.
os.environ.setdefault("HUB_QUEUE", "hub-test")

import pytest  # noqa: E402

from canonical.contracts import CreditNoteV1, InvoiceV1, PaymentV1, RefundV1  # noqa: E402
from connectors.base import Connector, ExternalDocument  # noqa: E402
from connectors.registry import register  # noqa: E402

WEBHOOK_SECRET = "whsec_test_secret_0123456789"


@dataclass
class ScriptedErp:
    """What the in-memory ERP does on each call: by default it posts; a test can
    queue exceptions (raised in order) to simulate a failing target."""

    failures: list[Exception] = field(default_factory=list)
    calls: list[tuple[str, str]] = field(default_factory=list)
    postings: dict[str, object] = field(default_factory=dict)  # reference -> PostingInstructions sent
    documents: dict[str, ExternalDocument] = field(default_factory=dict)
    refunds_via: dict[str, str] = field(default_factory=dict)
    write_off_accounts: list[str] = field(default_factory=list)

    def handle(self, operation: str, reference: str) -> ExternalDocument:
        self.calls.append((operation, reference))
        if self.failures:
            raise self.failures.pop(0)
        key = f"{operation}:{reference}"
        if key not in self.documents:
            self.documents[key] = ExternalDocument(
                external_id=str(len(self.documents) + 1), number=f"INV-{len(self.documents) + 1}",
                state="posted", related={"customer": "900"},
            )
        return self.documents[key]


SCRIPT = ScriptedErp()


@register("memory-erp")
class MemoryErpConnector(Connector):
    """An ERP held in this process, for unit tests of the runtime (no network)."""

    def find_invoice(self, invoice: InvoiceV1, *, legal_entity: str) -> ExternalDocument | None:
        SCRIPT.calls.append(("find", invoice.source.external_id))
        if SCRIPT.failures:
            raise SCRIPT.failures.pop(0)
        return SCRIPT.documents.get(f"post:{invoice.source.external_id}")

    def post_invoice(self, invoice: InvoiceV1, *, legal_entity: str, idempotency_key: str,
                     posting=None) -> ExternalDocument:
        SCRIPT.postings[invoice.source.external_id] = (self.name, legal_entity, posting)
        return SCRIPT.handle("post", invoice.source.external_id)

    def record_payment(self, payment: PaymentV1, *, legal_entity: str, idempotency_key: str) -> ExternalDocument:
        return SCRIPT.handle("pay", payment.invoice.external_id)

    def void_invoice(self, invoice: InvoiceV1, *, legal_entity: str, idempotency_key: str) -> ExternalDocument:
        return SCRIPT.handle("void", invoice.source.external_id)

    def find_credit_note(self, credit_note: CreditNoteV1, *, legal_entity: str) -> ExternalDocument | None:
        SCRIPT.calls.append(("find_credit", credit_note.source.external_id))
        return SCRIPT.documents.get(f"credit:{credit_note.source.external_id}")

    def post_credit_note(self, credit_note: CreditNoteV1, invoice: InvoiceV1, *, legal_entity: str,
                         idempotency_key: str) -> ExternalDocument:
        return SCRIPT.handle("credit", credit_note.source.external_id)

    def void_credit_note(self, credit_note: CreditNoteV1, *, legal_entity: str,
                         idempotency_key: str) -> ExternalDocument:
        return SCRIPT.handle("void_credit", credit_note.source.external_id)

    def find_refund(self, refund: RefundV1, *, legal_entity: str) -> ExternalDocument | None:
        SCRIPT.calls.append(("find_refund", refund.source.external_id))
        return SCRIPT.documents.get(f"refund:{refund.source.external_id}")

    def record_refund(self, refund: RefundV1, invoice: InvoiceV1, *, credit_note: CreditNoteV1 | None,
                      legal_entity: str, idempotency_key: str) -> ExternalDocument:
        via = f"via {credit_note.source.external_id}" if credit_note else "reversal"
        SCRIPT.refunds_via[refund.source.external_id] = via
        return SCRIPT.handle("refund", refund.source.external_id)

    def write_off_invoice(self, invoice: InvoiceV1, *, account: str, legal_entity: str,
                          idempotency_key: str) -> ExternalDocument:
        SCRIPT.write_off_accounts.append(account)
        return SCRIPT.handle("write_off", invoice.source.external_id)


@pytest.fixture(autouse=True)
def _fresh_governor_config():
    """Secrets, policies and windows are cached per process for a few seconds; tests edit them.
    The governor's Redis state outlives a test database: start each test without it."""
    from connectors import cache
    from integration_hub.runtime.governor import RedisStore, store

    cache.clear()
    if isinstance(store(), RedisStore):
        store().clear()  # the test database's ids restart every run; Redis keeps its keys
    yield
    cache.clear()


@pytest.fixture(autouse=True)
def _deliveries_through_the_broker(settings):
    """In-process tests run the hub's tasks one by one from ``sent_tasks``: an inbox event
    sends its deliveries there instead of running them in its own task. Inline delivery
    has its own tests (tests/runtime/test_inline.py) and runs in every real worker
    (stack, e2e and fault suites)."""
    settings.HUB_INLINE_DELIVERIES = 0


@pytest.fixture
def memory_erp(db):
    from connectors.services import connection_upsert

    SCRIPT.failures.clear()
    SCRIPT.calls.clear()
    SCRIPT.documents.clear()
    SCRIPT.postings.clear()
    SCRIPT.refunds_via.clear()
    SCRIPT.write_off_accounts.clear()
    connection_upsert(name="erp", vendor="memory-erp", role="erp", config={}, credentials={})
    return SCRIPT


@pytest.fixture
def stripe_connection(db):
    from connectors.services import connection_upsert

    return connection_upsert(
        name="stripe", vendor="stripe", role="billing", config={},
        credentials={"webhook_secrets": [WEBHOOK_SECRET]},
    )


@pytest.fixture
def legal_entities(db):
    """Three entities and an approved bootstrap posting policy: each entity books its
    functional currency; 10 % tax (anywhere) posts as ERP tax VAT-10, 0 % without tax."""
    from canonical.models import LegalEntity
    from canonical.policy_services import policy_bootstrap

    entities = {
        entity.code: entity
        for entity in [
            LegalEntity.objects.create(code="US", name="Acme US Inc.", currency="USD", country="US"),
            LegalEntity.objects.create(code="EU", name="Acme Europe GmbH", currency="EUR", country="DE"),
            LegalEntity.objects.create(code="JP", name="Acme Japan KK", currency="JPY", country="JP"),
        ]
    }
    policy_bootstrap(taxes={"10": "VAT-10", "0": ""})
    return entities


@pytest.fixture
def sandbox():
    from connectors.stripe.sandbox import StripeSandbox

    # A fresh seed per test: the e2e ERP lives for the whole session, so ids must
    # never repeat across tests.
    return StripeSandbox(WEBHOOK_SECRET, seed=random.getrandbits(64))


@pytest.fixture
def api(db, admin_user):
    """A REST client authenticated with an admin's token."""
    from rest_framework.authtoken.models import Token
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=admin_user).key}")
    return client


@pytest.fixture
def sent_tasks(monkeypatch) -> list[tuple[str, int, float | None]]:
    """Records what the hub sends to the broker instead of sending it."""
    from integration_hub.celery import app

    sent: list[tuple[str, int, float | None]] = []

    def record(name, args=None, countdown=None, **options):
        sent.append((name, args[0], countdown))

    monkeypatch.setattr(app, "send_task", record)
    return sent


@pytest.fixture
def post_webhook(client, sandbox) -> Callable:
    """POST a Stripe event to the hub as Stripe would, signed by the sandbox."""

    def post(event: dict, **extra_headers):
        body, headers = sandbox.webhook_request(event)
        headers = {**headers, **extra_headers}
        return client.post(
            "/api/webhooks/stripe/", data=body, content_type="application/json",
            headers={k: v for k, v in headers.items() if k != "Content-Type"},
        )

    return post


def _database_url(db_settings: dict) -> str:
    if db_settings["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db_settings['NAME']}"
    user, password = db_settings.get("USER") or "", db_settings.get("PASSWORD") or ""
    auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    return f"postgres://{auth}{db_settings.get('HOST') or '127.0.0.1'}:{db_settings.get('PORT') or 5432}/{db_settings['NAME']}"


# CI's RabbitMQ (the machine's own, .ci/run); a developer may point it at a vhost of their own.
AMQP_URL = os.environ.get("HUB_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")


def require_rabbitmq(url: str = AMQP_URL) -> str:
    """``url`` once RabbitMQ answers there; fails (never skips) when it does not, like
    CI's other services: a green run means the hub ran on RabbitMQ."""
    from kombu import Connection

    try:
        with Connection(url, connect_timeout=5) as connection:
            connection.ensure_connection(max_retries=1)
    except Exception as exc:  # noqa: BLE001 - any failure to reach the broker
        pytest.fail(f"RabbitMQ is unreachable at HUB_TEST_AMQP_URL={url}: {exc}", pytrace=False)
    return url


def _purge_hub_queues() -> None:
    """Declare every hub queue as this process's settings do (quorum queues on RabbitMQ)
    and empty it: leftovers of an earlier run must not reach the new worker."""
    from integration_hub.celery import app

    with app.connection_for_write() as connection:
        for queue in app.amqp.queues.values():
            queue(connection.default_channel).declare()
            queue(connection.default_channel).purge()


def _start_worker(log_dir, tag: str, env: dict[str, str]):
    """A real Celery worker process on the test database, with ``env`` over this
    process's environment; returns once it is ready. Fails (never skips) if it does
    not come up."""
    import subprocess
    import sys
    import time
    from pathlib import Path

    from django.conf import settings

    log_path = log_dir / "worker.log"
    env = {**os.environ, "DATABASE_URL": _database_url(settings.DATABASES["default"]), "PYTHONUNBUFFERED": "1", **env}
    command = [
        # No -Q: one worker consumes every hub queue (settings.CELERY_TASK_QUEUES), as `make worker`.
        sys.executable, "-m", "celery", "-A", "integration_hub", "worker", "-c", "2",
        "--without-gossip", "--without-mingle", "-l", "INFO", "-n", f"test-{os.getpid()}-{tag}@%h",
    ]
    log_file = open(log_path, "w")
    process = subprocess.Popen(
        command, cwd=Path(__file__).resolve().parent.parent, env=env, stdout=log_file, stderr=subprocess.STDOUT
    )
    deadline = time.monotonic() + 60
    while "ready." not in log_path.read_text():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            log_file.close()
            pytest.fail(f"the Celery worker ({tag}) did not start; its log:\n{log_path.read_text()[-4000:]}")
        time.sleep(0.2)
    process.log_path, process.log_file = log_path, log_file
    return process


def _stop_worker(process) -> None:
    import subprocess

    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
    process.log_file.close()


@pytest.fixture(scope="session")
def celery_worker_process(django_db_setup, django_db_blocker, tmp_path_factory):
    """A real Celery worker process on the configured broker and the test database.

    Fails (never skips) if the worker does not come up: a green run means the real
    broker was exercised.
    """
    from django.conf import settings

    _purge_hub_queues()
    process = _start_worker(tmp_path_factory.mktemp("worker"), "configured",
                            {"HUB_QUEUE": settings.CELERY_TASK_DEFAULT_QUEUE})
    yield process
    _stop_worker(process)


def _broker_scheme() -> str:
    return os.environ.get("CELERY_BROKER_URL", "filesystem://").split(":", 1)[0]


@contextlib.contextmanager
def _hub_on_broker(broker_url: str, queue: str) -> Iterator[None]:
    """This process's hub on another broker, as the hub's own processes are set up for
    it: settings.py evaluated again with ``CELERY_BROKER_URL=broker_url`` and
    ``HUB_QUEUE=queue``, and every ``CELERY_*``/``HUB_*`` setting that differs (the broker,
    the queues and their declarations — quorum queues on topic exchanges for RabbitMQ —,
    publisher confirms, delayed delivery) put in Django's settings and the Celery app's
    configuration, with its connections dropped. What a test sends (a webhook's event,
    the sweeper's re-enqueue) then goes where the worker listens. Celery reads the
    broker URL from the environment before its configuration, so that is set too."""
    import runpy
    from unittest import mock

    from django.conf import settings
    from django.test import override_settings

    import integration_hub.settings as settings_module
    from integration_hub.celery import app

    missing = object()
    environment = {"CELERY_BROKER_URL": broker_url, "HUB_QUEUE": queue,
                   "HUB_REDIS_URL": settings.HUB_REDIS_URL}  # one governor state for the test and its worker
    with mock.patch.dict(os.environ, environment):
        evaluated = runpy.run_path(settings_module.__file__)
    changed = {name: value for name, value in evaluated.items()
               if name.isupper() and name.startswith(("CELERY_", "HUB_")) and getattr(settings, name, missing) != value}
    celery_keys = {name: name.removeprefix("CELERY_").lower() for name in changed if name.startswith("CELERY_")}
    earlier = {key: app.conf.get(key) for key in celery_keys.values()}

    def reconnect() -> None:
        if app._pool is not None:
            app._pool.force_close_all()
        app._pool = None
        app.__dict__.pop("amqp", None)  # its queues, router and producer pool are built from the configuration

    with mock.patch.dict(os.environ, {"CELERY_BROKER_URL": broker_url}), override_settings(**changed):
        app.conf.update({key: changed[name] for name, key in celery_keys.items()})
        reconnect()
        try:
            yield
        finally:
            app.conf.update(earlier)
            reconnect()


@pytest.fixture(scope="module", params=[pytest.param("configured", id=_broker_scheme()),
                                        pytest.param("rabbitmq", id="rabbitmq")])
def stack_worker(request, tmp_path_factory):
    """A real Celery worker process on each broker the hub supports, the test module's
    tests run once per broker: the configured one (CI: Redis; the session's worker) and
    RabbitMQ (``HUB_TEST_AMQP_URL``, quorum queues; a missing RabbitMQ fails the test). On
    RabbitMQ this process sends on RabbitMQ too, on queues of its own (``<HUB_QUEUE>-amqp``)."""
    if request.param == "configured":
        yield request.getfixturevalue("celery_worker_process")
        return
    from django.conf import settings

    request.getfixturevalue("django_db_setup")
    url, queue = require_rabbitmq(), f"{settings.CELERY_TASK_DEFAULT_QUEUE}-amqp"
    with _hub_on_broker(url, queue):
        _purge_hub_queues()
        process = _start_worker(tmp_path_factory.mktemp("worker-amqp"), "amqp",
                                {"CELERY_BROKER_URL": url, "HUB_QUEUE": queue, "HUB_REDIS_URL": settings.HUB_REDIS_URL})
        try:
            yield process
        finally:
            _stop_worker(process)
            _purge_hub_queues()


def wait_for(predicate: Callable[[], object], *, timeout: float = 60, interval: float = 0.2, what: str = "condition"):
    """Poll until ``predicate()`` is truthy; fail with ``what`` after ``timeout`` seconds."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := predicate():
            return result
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout}s waiting for {what}")
