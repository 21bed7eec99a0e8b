"""What one invoice event costs the database, phase by phase: the pipeline's own
cost is mostly round trips to PostgreSQL, so a statement added to the spine should be
a decision, not an accident. ``SHOW_STATEMENTS=1 pytest -s`` prints every statement."""

import os
from collections import defaultdict

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from integration_hub.runtime import services

pytestmark = [
    pytest.mark.django_db(transaction=True),
    # Counted on PostgreSQL, as deployed (SQLite takes no advisory lock, for one).
    pytest.mark.skipif(connection.vendor != "postgresql", reason="statement counts are PostgreSQL's"),
]

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


# One invoice event of a customer the hub knows (the steady state), delivered inline
# (tests/runtime/test_inline.py): issue 17 took it from 59 statements to 42.
BUDGET = {"_inbound_start": 2, "process": 18, "delivery_claim": 6, "_attempt_call": 5, "delivery_record_success": 11}


def test_an_invoice_event_stays_within_its_statement_budget(settings, stripe_connection, legal_entities, memory_erp,
                                                            sandbox, post_webhook, sent_tasks):
    settings.HUB_INLINE_DELIVERIES = 1
    customer = sandbox.customer("Grace Hopper", "grace@example.com", country="US")
    for n in range(2):  # the first makes the customer known and fills the per-process caches
        invoice = sandbox.finalize(sandbox.invoice(customer, [("Seats", 1 + n, 2500), ("Support", 1, 1000)]))
        post_webhook(sandbox.event("invoice.finalized", invoice))
        _, event_id, _ = sent_tasks.pop(0)
        phases = _statements_by_phase(event_id)
    if os.environ.get("SHOW_STATEMENTS"):
        for name, statements in phases.items():
            print(f"\n== {name}: {len(statements)}", *(f"    {sql[:200]}" for sql in statements), sep="\n")
    assert memory_erp.calls[-1] == ("post", invoice["id"])
    assert {name: len(statements) for name, statements in phases.items()} == BUDGET
