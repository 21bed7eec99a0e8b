"""The integration inventory: every flow, generated from the workflow registry and
the data, never written by hand — the governance view before an ERP cutover.

Per workflow: its pattern, the connections playing its source and target roles, the
contracts and versions it carries, the system-of-record rules of its entities, the
posting policy in force, the owning team, and the last 30 days (volume, failure
rate, p95 latency, open exceptions).
"""

from __future__ import annotations

import datetime as dt

from django.db import connection as db
from django.db.models import Count, Q
from django.utils import timezone

from canonical.models import SystemOfRecord
from connectors.models import Connection
from integration_hub.runtime import dispatch
from integration_hub.runtime.models import BusinessTransaction, DeliveryAttempt, ExceptionRecord

WINDOW = dt.timedelta(days=30)


def _connections(role: str) -> list[dict]:
    return [{"name": c.name, "vendor": c.vendor, "role": c.role, "active": c.is_active}
            for c in Connection.objects.filter(role=role).order_by("name")]


def _p95(actions: list[str], since: dt.datetime) -> float | None:
    attempts = DeliveryAttempt.objects.filter(started_at__gte=since, delivery__action__in=actions)
    if db.vendor == "postgresql":
        with db.cursor() as cursor:
            cursor.execute(
                "SELECT percentile_cont(0.95) WITHIN GROUP (ORDER BY a.duration_ms) FROM runtime_deliveryattempt a "
                "JOIN runtime_delivery d ON d.id = a.delivery_id WHERE a.started_at >= %s AND d.action = ANY(%s)",
                [since, actions],
            )
            value = cursor.fetchone()[0]
        return None if value is None else float(value)
    durations = list(attempts.order_by("duration_ms").values_list("duration_ms", flat=True))
    if not durations:
        return None
    position = (len(durations) - 1) * 0.95
    low = int(position)
    high = min(low + 1, len(durations) - 1)
    return durations[low] + (durations[high] - durations[low]) * (position - low)


def workflow_inventory(workflow: dispatch.Workflow, *, now: dt.datetime) -> dict:
    since = now - WINDOW
    actions = [action.name for action in workflow.actions]
    attempts = DeliveryAttempt.objects.filter(started_at__gte=since, delivery__action__in=actions).aggregate(
        total=Count("pk"), failed=Count("pk", filter=~Q(outcome=DeliveryAttempt.Outcome.POSTED)))
    p95 = _p95(actions, since)
    return {
        "name": workflow.name,
        "title": workflow.title,
        "pattern": workflow.pattern,
        "owner_team": workflow.data_owner,
        "owner_team_label": ExceptionRecord.Team(workflow.data_owner).label,
        "sources": _connections(workflow.source_role) if workflow.source_role else [],
        "targets": [c for role in workflow.target_roles for c in _connections(role)],
        "actions": actions,
        "contracts": [{"name": c.name, "version": c.version, "schema": c.schema_id()} for c in workflow.contracts],
        "system_of_record": [
            {"entity": row.entity, "field_group": row.field_group, "owner_role": row.owner_role}
            for row in SystemOfRecord.objects.filter(entity__in=workflow.subjects).order_by("entity", "field_group")
        ],
        "policy_in_force": workflow.policy_in_force() if workflow.policy_in_force else "",
        "last_30_days": {
            "volume": BusinessTransaction.objects.filter(kind__in=workflow.subjects, created_at__gte=since).count(),
            "attempts": attempts["total"],
            "failure_rate": (attempts["failed"] / attempts["total"]) if attempts["total"] else 0.0,
            "p95_latency_ms": None if p95 is None else round(p95),
            "open_exceptions": ExceptionRecord.objects.filter(
                status__in=ExceptionRecord.ACTIVE, transaction__kind__in=workflow.subjects).count(),
        },
    }


def inventory(*, now: dt.datetime | None = None) -> list[dict]:
    now = now or timezone.now()
    return [workflow_inventory(workflow, now=now) for workflow in sorted(dispatch.workflows(), key=lambda w: w.title)]
