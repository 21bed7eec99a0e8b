"""What one invoice event costs the database, phase by phase (issue 17: the
pipeline's own cost). ``SHOW_STATEMENTS=1 pytest -s`` prints every statement."""

import os
from collections import defaultdict

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from integration_hub.runtime import services

pytestmark = pytest.mark.django_db(transaction=True)

PHASES = ("_inbound_start", "delivery_claim", "_attempt_call", "delivery_record_success")


def _marking(function, name: str, marks: list[tuple[int, str]], captured):
    """``function``, noting where in the captured statements its phase starts and ends."""
    after = "process" if name == "_inbound_start" else "rest"

    def marked(*args, **kwargs):
        marks.append((len(captured.captured_queries), name))
        try:
            return function(*args, **kwargs)
        finally:
            marks.append((len(captured.captured_queries), after))

    return marked


def _statements_by_phase(event_id: int) -> dict[str, list[str]]:
    marks: list[tuple[int, str]] = []
    with CaptureQueriesContext(connection) as captured, pytest.MonkeyPatch.context() as patch:
        for name in PHASES:
            patch.setattr(services, name, _marking(getattr(services, name), name, marks, captured))
        services.inbound_process(event_id)
    phases: dict[str, list[str]] = defaultdict(list)
    phase = "?"
    for index, query in enumerate(captured.captured_queries):
        phase = next((name for position, name in reversed(marks) if position <= index), phase)
        phases[phase].append(query["sql"])
    return phases


def test_statements_per_phase(settings, stripe_connection, legal_entities, memory_erp, sandbox,
                              post_webhook, sent_tasks):
    settings.HUB_INLINE_DELIVERIES = 1
    customer = sandbox.customer("Grace Hopper", "grace@example.com", country="US")
    for n, label in enumerate(("new customer", "known customer")):
        invoice = sandbox.finalize(sandbox.invoice(customer, [("Seats", 1 + n, 2500), ("Support", 1, 1000)]))
        post_webhook(sandbox.event("invoice.finalized", invoice))
        _, event_id, _ = sent_tasks.pop(0)
        phases = _statements_by_phase(event_id)
        if os.environ.get("SHOW_STATEMENTS"):
            for name, statements in phases.items():
                print(f"\n== {label} / {name}: {len(statements)}")
                for sql in statements:
                    print("   ", sql[:200])
        print(label, {name: len(statements) for name, statements in phases.items()},
              sum(map(len, phases.values())))
