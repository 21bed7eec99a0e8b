"""A billing stand-in for the reconciliation benchmark: its meter event summaries are the
meter events the hub sent (read in one grouped query on first use), so a checkpoint of
100,000 customers measures the hub's side, not 200,000 HTTP reads. Registered by import
(the benchmark's child step imports it); never used outside benchmarks."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from django.db import connection

from connectors.base import Connector, ExternalDocument, MeterEvent
from connectors.registry import register
from integration_hub.usage.rows import quantity_format


@register("bench-billing")
class BenchBillingConnector(Connector):
    _totals: dict[tuple[str, str], int] | None = None

    def send_meter_events(self, events: Sequence[MeterEvent], *, idempotency_key: str) -> ExternalDocument:
        return ExternalDocument(external_id=idempotency_key, number="", state="accepted")

    def meter_usage(self, *, event_name: str, customer: str, start: dt.datetime, end: dt.datetime) -> str:
        if self._totals is None:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT s.billing_customer, a.metric, SUM(e.quantity) FROM usage_usagemeterevent e "
                    "JOIN usage_usagepush p ON p.id = e.push_id JOIN usage_aggregate a ON a.id = e.aggregate_id "
                    "JOIN usage_usagesubscription s ON s.subscription = a.subscription "
                    "WHERE p.sent_at IS NOT NULL AND e.timestamp >= %s AND e.timestamp < %s GROUP BY 1, 2",
                    [start, end])
                self._totals = {(c, m): int(q) for c, m, q in cursor.fetchall()}
        return quantity_format(self._totals.get((customer, event_name), 0))
