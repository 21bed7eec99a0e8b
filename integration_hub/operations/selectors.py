"""Read models for people: one business transaction's whole story."""

from __future__ import annotations

import uuid
from collections import defaultdict
from typing import Any

from django.db.models import Count, Q

from canonical.models import CrossReference
from integration_hub.operations import access
from integration_hub.runtime import dispatch
from integration_hub.runtime.models import BusinessTransaction, Delivery


def transaction_trace(transaction_id: uuid.UUID) -> dict[str, Any] | None:
    """Events, canonical records, deliveries with attempts, and exceptions of one
    business transaction, oldest first; None if there is no such transaction. Which
    records it shows is the workflows' declaration (``TraceSection``)."""
    txn = BusinessTransaction.objects.filter(pk=transaction_id).first()
    if txn is None:
        return None
    deliveries = list(
        Delivery.objects.filter(transaction=txn).select_related("connection").prefetch_related("attempt_log")
        .order_by("created_at")
    )
    delivered: dict[str, set[int]] = defaultdict(set)
    for delivery in deliveries:
        delivered[delivery.object_type].add(delivery.object_id)
    records: dict[str, list[dict[str, Any]]] = {}
    touched = Q(pk__in=[])
    for workflow in dispatch.workflows():
        for section in workflow.trace:
            rows = section.rows(txn.pk, delivered)
            records.setdefault(section.key, []).extend(rows)
            touched |= Q(object_type=section.object_type, canonical_id__in=[row["id"] for row in rows])
    return {
        "id": txn.pk,
        "kind": txn.kind,
        "subject": txn.subject,
        "created_at": txn.created_at,
        "events": [
            {
                "id": e.pk, "source": e.source, "external_id": e.external_id, "type": e.event_type,
                "status": e.status, "attempts": e.attempts, "note": e.note,
                "received_at": e.received_at, "processed_at": e.processed_at,
            }
            for e in txn.events.order_by("received_at")
        ],
        "records": records,
        "cross_references": [
            {"system": x.system, "object_type": x.object_type, "canonical_id": x.canonical_id,
             "external_id": x.external_id, "number": x.external_number}
            for x in CrossReference.objects.filter(touched).order_by("pk")
        ],
        "deliveries": [
            {
                "id": d.pk, "action": d.action, "target": d.connection.name, "object": f"{d.object_type}:{d.object_id}",
                "idempotency_key": d.idempotency_key, "status": d.status, "attempts": d.attempts,
                "after": d.after_id, "next_attempt_at": d.next_attempt_at, "external_id": d.external_id,
                "external_number": d.external_number, "last_error": d.last_error,
                "attempt_log": [
                    {"number": a.number, "started_at": a.started_at, "duration_ms": a.duration_ms,
                     "outcome": a.outcome, "error_class": a.error_class, "message": a.message,
                     "http_status": a.http_status, "outcome_unknown": a.outcome_unknown}
                    for a in d.attempt_log.all()
                ],
            }
            for d in deliveries
        ],
        "exceptions": [
            {"id": x.pk, "owner_team": x.owner_team, "category": x.category, "summary": x.summary,
             "status": x.status, "resolution": x.resolution, "created_at": x.created_at}
            for x in txn.exceptions.order_by("created_at")
        ],
    }


def deliveries_by_state(connection) -> dict[str, Any]:
    """Waiting, held (with reasons) and dead deliveries of one connection."""
    deliveries = Delivery.objects.filter(connection=connection)
    held = deliveries.filter(status=Delivery.Status.HELD).values("hold_reason").annotate(count=Count("pk"))
    return {
        "pending": deliveries.filter(status=Delivery.Status.PENDING).count(),
        "held": {row["hold_reason"]: row["count"] for row in held},
        "dead": deliveries.filter(status=Delivery.Status.DEAD).count(),
    }


def visible_trace(user, transaction_id: uuid.UUID) -> dict[str, Any] | None:
    """The trace, if the user's teams see the transaction, with only their exceptions;
    None otherwise (as if it did not exist)."""
    if not access.transactions_visible(user).filter(pk=transaction_id).exists():
        return None
    trace = transaction_trace(transaction_id)
    teams = access.user_teams(user)
    if trace is not None and teams is not access.ALL_TEAMS:
        trace["exceptions"] = [x for x in trace["exceptions"] if x["owner_team"] in teams]
    return trace
