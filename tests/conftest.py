"""Shared fixtures: configured connections and legal entities, a recording broker for
unit tests, and an in-memory ERP connector whose behaviour a test scripts."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

# The test run gets its own queue so leftovers of other runs never reach its worker.
os.environ.setdefault("HUB_QUEUE", "hub-test")

import pytest  # noqa: E402

from canonical.contracts import InvoiceV1, PaymentV1  # noqa: E402
from connectors.base import Connector, ExternalDocument  # noqa: E402
from connectors.registry import register  # noqa: E402

WEBHOOK_SECRET = "whsec_test_secret_0123456789"


@dataclass
class ScriptedErp:
    """What the in-memory ERP does on each call: by default it posts; a test can
    queue exceptions (raised in order) to simulate a failing target."""

    failures: list[Exception] = field(default_factory=list)
    calls: list[tuple[str, str]] = field(default_factory=list)
    documents: dict[str, ExternalDocument] = field(default_factory=dict)

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

    def post_invoice(self, invoice: InvoiceV1, *, legal_entity: str, idempotency_key: str) -> ExternalDocument:
        return SCRIPT.handle("post", invoice.source.external_id)

    def record_payment(self, payment: PaymentV1, *, legal_entity: str, idempotency_key: str) -> ExternalDocument:
        return SCRIPT.handle("pay", payment.invoice.external_id)

    def void_invoice(self, invoice: InvoiceV1, *, legal_entity: str, idempotency_key: str) -> ExternalDocument:
        return SCRIPT.handle("void", invoice.source.external_id)


@pytest.fixture
def memory_erp(db):
    from connectors.services import connection_upsert

    SCRIPT.failures.clear()
    SCRIPT.calls.clear()
    SCRIPT.documents.clear()
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
    from canonical.models import LegalEntity

    return {
        entity.code: entity
        for entity in [
            LegalEntity.objects.create(code="US", name="Acme US Inc.", currency="USD", country="US"),
            LegalEntity.objects.create(code="EU", name="Acme Europe GmbH", currency="EUR", country="DE"),
            LegalEntity.objects.create(code="JP", name="Acme Japan KK", currency="JPY", country="JP"),
        ]
    }


@pytest.fixture
def sandbox():
    from connectors.stripe.sandbox import StripeSandbox

    return StripeSandbox(WEBHOOK_SECRET, seed=7)


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
