"""Prometheus counters and histograms the hub's processes increment.

Multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``, set in settings before this module
is imported): every gunicorn worker and Celery worker process writes its own samples
to files in that directory, and ``GET /metrics`` adds them up. Figures that are state
rather than events (queue depth, open exceptions, held deliveries, circuits) are read
from the database when scraped (``operations.metrics``), so they are right whichever
process changed them.

Samples are recorded after the database transaction commits, so a rolled-back attempt
is never counted.
"""

from __future__ import annotations

import re

from django.db import transaction
from prometheus_client import Counter, Histogram

WEBHOOKS = Counter(
    "hub_webhooks", "Webhook requests answered, by source and outcome (accepted, duplicate or the error code)",
    ["source", "outcome"],
)
DELIVERIES = Counter(
    "hub_deliveries", "Deliveries finished, by connection, action and outcome (posted or dead)",
    ["connection", "action", "outcome"],
)
ATTEMPTS = Counter("hub_delivery_attempts", "Delivery attempts, by connection and outcome", ["connection", "outcome"])
ATTEMPT_SECONDS = Histogram(
    "hub_delivery_attempt_seconds", "Duration of delivery attempts (the call to the target), by connection and outcome",
    ["connection", "outcome"], buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
HOLDS = Counter("hub_governor_holds", "Deliveries held by the admission governor, by connection and reason",
                ["connection", "reason"])


def _after_commit(record) -> None:
    transaction.on_commit(record)


def webhook_observe(source: str, outcome: str) -> None:
    WEBHOOKS.labels(source=source, outcome=outcome).inc()


def attempt_observe(connection: str, outcome: str, seconds: float) -> None:
    def record() -> None:
        ATTEMPTS.labels(connection=connection, outcome=outcome).inc()
        ATTEMPT_SECONDS.labels(connection=connection, outcome=outcome).observe(seconds)

    _after_commit(record)


def delivery_observe(connection: str, action: str, outcome: str) -> None:
    _after_commit(lambda: DELIVERIES.labels(connection=connection, action=action, outcome=outcome).inc())


def hold_observe(connection: str, reason: str) -> None:
    # The reason's kind, not its figures, so the label set stays small.
    kind = re.sub(r"\d+(\.\d+)?", "N", reason)[:80]
    _after_commit(lambda: HOLDS.labels(connection=connection, reason=kind).inc())
