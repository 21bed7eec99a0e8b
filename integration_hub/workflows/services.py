"""Scheduled pulls: read each CRM's changes since its watermark into the inbox.

Pulled records enter exactly like webhooks (``inbound_accept``) with an inbox id
that is deterministic per record version, so a change the webhook already brought
(Salesforce: the same ``<Id>:<LastModifiedDate>``) or an earlier pull read is a
duplicate and dropped; anything else is processed by the same workflow.
"""

from __future__ import annotations

import structlog
from django.db import transaction
from django.utils import timezone

from connectors.base import CustomerSource
from connectors.errors import ConnectorError
from connectors.models import Connection
from connectors.services import connector_for
from integration_hub.runtime.services import inbound_accept
from integration_hub.workflows.models import SyncRun, SyncWatermark

log = structlog.get_logger(__name__)

PULL_RUN_TASK = "hub.customers_pull_run"


def sync_run_create(*, trigger: str, kind: str = "customers") -> SyncRun:
    return SyncRun.objects.create(kind=kind, trigger=trigger)


def _pull_connection(connection: Connection) -> dict[str, int]:
    watermark, _ = SyncWatermark.objects.get_or_create(connection=connection, object_type="customer")
    connector = connector_for(connection)
    counts = {"read": 0, "accepted": 0, "duplicates": 0}
    newest = watermark.value
    try:
        if not isinstance(connector, CustomerSource):
            return counts
        for event in connector.customers_changed_since(watermark.value):
            _, created = inbound_accept(source=connection.vendor, event=event)
            counts["read"] += 1
            counts["accepted" if created else "duplicates"] += 1
            if event.occurred_at is not None and (newest is None or event.occurred_at > newest):
                newest = event.occurred_at
    finally:
        # Advance past what was stored even when the pull broke off midway; the
        # rest is read next time (never move backwards: runs may overlap).
        with transaction.atomic():
            locked = SyncWatermark.objects.select_for_update().get(pk=watermark.pk)
            if newest is not None and (locked.value is None or newest > locked.value):
                locked.value = newest
                locked.save(update_fields=["value", "updated_at"])
    return counts


def customers_pull(run: SyncRun) -> SyncRun:
    """Pull every active CRM connection; one failing source does not stop the others
    and fails the run with its reason."""
    run.status, run.started_at = SyncRun.Status.RUNNING, timezone.now()
    run.save(update_fields=["status", "started_at"])
    errors = []
    for connection in Connection.objects.filter(role=Connection.Role.CRM, is_active=True).order_by("name"):
        try:
            run.counts[connection.name] = _pull_connection(connection)
        except ConnectorError as exc:
            errors.append(f"{connection.name}: {type(exc).__name__}: {exc}")
            log.warning("crm_pull_failed", connection=connection.name, error=str(exc))
    run.status = SyncRun.Status.FAILED if errors else SyncRun.Status.SUCCEEDED
    run.error, run.finished_at = "\n".join(errors), timezone.now()
    run.save(update_fields=["status", "counts", "error", "finished_at"])
    log.info("crm_pull", run=run.pk, status=run.status, counts=run.counts)
    return run


def customers_pull_run(run_id: int) -> None:
    with transaction.atomic():
        run = SyncRun.objects.select_for_update().filter(pk=run_id, status=SyncRun.Status.QUEUED).first()
        if run is None:
            return  # already run, or deleted while queued
        run.status = SyncRun.Status.RUNNING
        run.save(update_fields=["status"])
    customers_pull(run)
