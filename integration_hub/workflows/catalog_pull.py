"""Catalog pulls: read a product platform page by page into the inbox and apply each
item at once, so a run's figures are exact.

* Incremental by default: items changed since the connection's watermark
  (``SyncWatermark`` ``catalog``). A **full scan** (every item; SKUs the hub has from
  that platform but no longer sees are retired) runs when the last one is older than
  the connection's ``full_scan_hours`` (default 24), or when asked.
* Each item is an inbox event whose id is a hash of the raw item: an unchanged item
  is a duplicate and counts as unchanged without any work; a changed one is mapped
  (the connection's mapping) and becomes draft versions where the canonical content
  changed. An item that fails mapping becomes an exception record for product
  operations (fix the mapping or the platform, replay it); the run goes on.
* Duplicate SKUs in one pull: the second is recorded and refused by name.
* A page the platform cannot serve after retries, or that is not JSON, ends the
  run as failed with the reason and an exception record; what was read stays, and
  the watermark only covers what was read.
* The ``catalog.changed`` webhook asks for an early pull, debounced: while a run of
  that connection is queued, further requests join it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json

import structlog
from django.db import transaction
from django.utils import timezone

from canonical.models import PriceVersion, Product, ProductVersion
from connectors.base import CatalogSource, ReceivedEvent
from connectors.errors import ConnectorError, NeedsConfiguration
from connectors.models import Connection
from connectors.services import connection_for_role, connection_named, connector_for
from integration_hub.runtime.models import ExceptionRecord, InboundEvent
from integration_hub.runtime.services import enqueue_after_commit, inbound_accept, inbound_process
from integration_hub.workflows.catalog_alerts import _transaction
from integration_hub.workflows.models import SyncRun, SyncWatermark

log = structlog.get_logger(__name__)

PULL_RUN_TASK = "hub.catalog_pull_run"
WATERMARK, FULL_SCAN = "catalog", "catalog-full-scan"
DEFAULT_DEBOUNCE_SECONDS = 30
DEFAULT_FULL_SCAN_HOURS = 24
COUNTERS = ("pages", "items_seen", "unchanged", "new_versions", "errors", "retrying", "retired")


def catalog_connection(name: str = "") -> Connection:
    return connection_named(name) if name else connection_for_role(Connection.Role.PRODUCT)


def catalog_pull_request(connection: Connection, *, trigger: str, full_scan: bool = False,
                         debounce: bool = False) -> SyncRun:
    """Queue a pull of ``connection``; with ``debounce`` a run already queued for it
    is returned instead (and the new run waits the connection's ``debounce_seconds``)."""
    with transaction.atomic():
        if debounce:
            queued = (SyncRun.objects.select_for_update().filter(kind="catalog", connection=connection,
                                                                status=SyncRun.Status.QUEUED).first())
            if queued is not None:
                return queued
        run = SyncRun.objects.create(kind="catalog", trigger=trigger, connection=connection,
                                     counts={"full_scan": full_scan})
        delay = float(connection.config.get("debounce_seconds", DEFAULT_DEBOUNCE_SECONDS)) if debounce else None
        enqueue_after_commit(PULL_RUN_TASK, run.pk, countdown=delay)
    return run


def catalog_pull_run(run_id: int) -> SyncRun | None:
    """Run a queued pull (the task); a run that is not queued any more is left alone."""
    with transaction.atomic():
        run = SyncRun.objects.select_for_update().filter(pk=run_id, status=SyncRun.Status.QUEUED).first()
        if run is None:
            return None
        run.status, run.started_at = SyncRun.Status.RUNNING, timezone.now()
        run.save(update_fields=["status", "started_at"])
    return catalog_pull(run)


def _full_scan_due(connection: Connection) -> bool:
    last = SyncWatermark.objects.filter(connection=connection, object_type=FULL_SCAN).values_list(
        "value", flat=True).first()
    hours = float(connection.config.get("full_scan_hours", DEFAULT_FULL_SCAN_HOURS))
    return last is None or timezone.now() - last >= dt.timedelta(hours=hours)


def _item_digest(item) -> str:
    return hashlib.sha256(json.dumps(item, sort_keys=True, default=str).encode()).hexdigest()


def _apply(connection: Connection, event: ReceivedEvent, counts: dict) -> None:
    row, created = inbound_accept(source=connection.name, event=event)
    if not created:
        counts["unchanged"] += 1
        return
    # Applied now (the queued task then finds it done), so the run's figures are exact.
    inbound_process(row.pk)
    status = InboundEvent.objects.filter(pk=row.pk).values_list("status", flat=True).first()
    if status == InboundEvent.Status.FAILED:
        counts["errors"] += 1
        return
    if status == InboundEvent.Status.RECEIVED:
        counts["retrying"] += 1  # a transient failure: the runtime retries it after a backoff
        return
    made = sum(m.objects.filter(source_event=row.pk).count() for m in (ProductVersion, PriceVersion))
    counts["new_versions"] += made
    if not made:
        counts["unchanged"] += 1


def catalog_pull(run: SyncRun) -> SyncRun:
    connection = run.connection
    if run.started_at is None:
        run.started_at = timezone.now()
    run.status = SyncRun.Status.RUNNING
    connector = connector_for(connection)
    full = bool(run.counts.get("full_scan")) or _full_scan_due(connection)
    counts = {"full_scan": full, **dict.fromkeys(COUNTERS, 0)}
    run.counts = counts
    run.save(update_fields=["status", "started_at", "counts"])
    watermark, _ = SyncWatermark.objects.get_or_create(connection=connection, object_type=WATERMARK)
    started, newest, seen, error = timezone.now(), watermark.value, {}, ""
    try:
        if not isinstance(connector, CatalogSource):
            raise NeedsConfiguration(f"connection {connection.name} is not a catalog source")
        for page in connector.catalog_pages(updated_since=None if full else watermark.value):
            counts["pages"] += 1
            for position, item in enumerate(page.items, start=1):
                counts["items_seen"] += 1
                sku = connector.catalog_item_key(item) if isinstance(item, dict) else None
                digest = _item_digest(item)
                payload = {"item": item, "page": page.number, "position": position, "sync_run": run.pk, "sku": sku}
                external_id = f"item:{sku}:{digest[:40]}"
                if sku is not None and sku in seen:
                    payload["duplicate_of"] = seen[sku]
                    external_id = f"duplicate:{run.pk}:{page.number}:{position}"
                elif sku is None:
                    external_id = f"item:unidentified:{digest[:40]}"
                else:
                    seen[sku] = f"item {position} of page {page.number}"
                _apply(connection, ReceivedEvent(
                    external_id=external_id, type="catalog.item", payload=payload,
                    subject=f"product:{sku}" if sku else f"product:unidentified-{digest[:12]}"), counts)
                updated = connector.catalog_item_updated_at(item) if isinstance(item, dict) else None
                if updated is not None and (newest is None or updated > newest):
                    newest = updated
            run.save(update_fields=["counts"])  # progress, page by page
        if full:
            gone = Product.objects.filter(source_system=connection.name, is_active=True).exclude(sku__in=list(seen))
            for sku in gone.values_list("sku", flat=True):
                before = counts["new_versions"]
                _apply(connection, ReceivedEvent(external_id=f"gone:{sku}:{run.pk}", type="catalog.item.gone",
                                                 subject=f"product:{sku}", payload={"sku": sku, "sync_run": run.pk}),
                       counts)
                counts["retired"] += 1 if counts["new_versions"] > before else 0
            SyncWatermark.objects.update_or_create(connection=connection, object_type=FULL_SCAN,
                                                   defaults={"value": started})
    except ConnectorError as exc:
        error = f"{type(exc).__name__}: {exc}"
        summary = f"catalog pull #{run.pk} of {connection.name} stopped after {counts['pages']} page(s): {exc}"
        ExceptionRecord.objects.create(
            transaction=_transaction(f"{connection.name}:catalog:pulls"),
            category=ExceptionRecord.Category.CONFIGURATION if isinstance(exc, NeedsConfiguration)
            else ExceptionRecord.Category.PROCESSING,
            owner_team=ExceptionRecord.Team.IT_OPERATIONS, summary=summary[:500],
            detail=f"{error}\nItems read before it were applied; the next pull continues from the watermark.")
        log.warning("catalog_pull_failed", run=run.pk, error=error)
    finally:
        with transaction.atomic():
            locked = SyncWatermark.objects.select_for_update().get(pk=watermark.pk)
            if newest is not None and (locked.value is None or newest > locked.value):
                locked.value = newest
                locked.save(update_fields=["value", "updated_at"])
    run.status = SyncRun.Status.FAILED if error else SyncRun.Status.SUCCEEDED
    run.error, run.finished_at, run.counts = error, timezone.now(), counts
    run.save(update_fields=["status", "error", "finished_at", "counts"])
    log.info("catalog_pull", run=run.pk, status=run.status, counts=counts)
    return run


def catalog_pull_now(connection: Connection, *, trigger: str = "schedule", full_scan: bool = False) -> SyncRun:
    """Create and run one pull in this process (beat task, demo, tests)."""
    run = SyncRun.objects.create(kind="catalog", trigger=trigger, connection=connection,
                                 counts={"full_scan": full_scan}, status=SyncRun.Status.RUNNING,
                                 started_at=timezone.now())
    return catalog_pull(run)
