"""Usage aggregation's services: receive and load batches, match subscriptions, aggregate,
close periods and push aggregates to billing, reconcile. Tasks, views, the admin and the
management command only call these."""

from __future__ import annotations

import contextlib
import datetime as dt
import shutil
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import IO, Any

import structlog
from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models import Count
from django.utils import timezone

from canonical.models import CrossReference, Invoice, LegalEntity, PriceVersion
from connectors.base import ExternalDocument, MeterEvent
from connectors.errors import NeedsConfiguration
from connectors.services import connection_for_role, connector_for
from integration_hub.runtime.models import BusinessTransaction, Delivery, ExceptionRecord
from integration_hub.runtime.services import (
    delivery_plan,
    delivery_replay,
    enqueue_after_commit,
    exception_open,
    exception_resolve,
)
from integration_hub.usage import loading
from integration_hub.usage.models import (
    Checkpoint,
    UsageAggregate,
    UsageBatch,
    UsageMeterEvent,
    UsagePeriod,
    UsagePush,
    UsageSubscription,
)
from integration_hub.usage.rows import FileRefused, file_rows, quantity_format, record_parse

log = structlog.get_logger(__name__)

LOAD_TASK = "hub.usage_batch_load"
MATCH_TASK = "hub.usage_subscriptions_match"
CHECKPOINT_TASK = "hub.usage_checkpoint"
PUSH_ACTION = "usage.meter_events"
EVENTS_PER_PUSH = 100
Team, Category = ExceptionRecord.Team, ExceptionRecord.Category
DATA_OWNER = Team.PRODUCT_OPERATIONS


def _transaction(subject: str) -> BusinessTransaction:
    found, _ = BusinessTransaction.objects.get_or_create(subject=subject, defaults={"kind": "usage"})
    return found


def _storage() -> Path:
    path = Path(settings.HUB_USAGE_STORAGE_DIR)
    path.mkdir(parents=True, exist_ok=True)
    return path


# ---------------------------------------------------------------- intake


def batch_receive(*, stream: IO[bytes], filename: str, source: str, load: bool = True) -> UsageBatch:
    """Store an upload (copied in 1 MiB chunks: never whole in memory) and queue its load
    on the bulk usage queue. The file stays as it came (gzip included) for the worker."""
    name = f"{uuid.uuid4().hex}.usage"
    target = _storage() / name
    with target.open("wb") as out:
        shutil.copyfileobj(stream, out, 1 << 20)
    with transaction.atomic():
        batch = UsageBatch.objects.create(
            transaction=_transaction(f"usage:batch:{name}"), source=source, filename=Path(filename).name[:255],
            file_path=str(target))
        if load:
            enqueue_after_commit(LOAD_TASK, batch.pk)
    return batch


def batch_load(batch_id: int, *, progress: loading.Progress | None = None) -> UsageBatch | None:
    """Load a received batch from its stored file (or restart one whose worker died).
    One load of a batch at a time: a second message for it (the sweep re-sends a batch
    not started yet) finds it taken and leaves it, instead of resetting its stage."""
    batch = UsageBatch.objects.filter(pk=batch_id).first()
    if batch is None or batch.status in (UsageBatch.Status.LOADED, UsageBatch.Status.FAILED):
        return batch  # finished, or gone: a redelivered message is a no-op
    with _load_lock(batch_id) as taken:
        if not taken:
            log.info("usage_batch_load_skipped", batch=batch_id, reason="another worker is loading it")
            return batch
        batch.refresh_from_db()
        if batch.status in (UsageBatch.Status.LOADED, UsageBatch.Status.FAILED):
            return batch  # finished by the other worker just before
        with open(batch.file_path, "rb") as stream:
            return batch_load_rows(batch, _guarded(file_rows(stream)), progress=progress)


_LOAD_LOCK_CLASS = 0x05A6E  # the advisory lock namespace of usage batch loads


@contextlib.contextmanager
def _load_lock(batch_id: int):
    """A PostgreSQL session advisory lock on the batch (released if the worker dies: its
    connection closes); SQLite runs one process, so no lock."""
    if connection.vendor != "postgresql":
        yield True
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [_LOAD_LOCK_CLASS, batch_id & 0x7FFFFFFF])
        taken = cursor.fetchone()[0]
    try:
        yield taken
    finally:
        if taken:  # a connection that broke took its lock with it
            with contextlib.suppress(DatabaseError), connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [_LOAD_LOCK_CLASS, batch_id & 0x7FFFFFFF])


def rows_load(batch: UsageBatch, rows: Iterable[Mapping[str, Any]], **kwargs) -> UsageBatch:
    """The seam for a pull that yields records as mappings (the product platform's
    usage export): each mapping is one record, numbered from 1, through the same rules."""
    parsed = (record_parse(line, row, _raw(row)) for line, row in enumerate(rows, start=1))
    return batch_load_rows(batch, parsed, **kwargs)


def _raw(row: Mapping[str, Any]) -> str:
    return ",".join(f"{key}={value}" for key, value in row.items())


class _guarded:
    """Rows of a file; a FileRefused raised while reading is kept for the caller."""

    def __init__(self, rows):
        self.rows, self.refused = rows, None

    def __iter__(self):
        try:
            yield from self.rows
        except FileRefused as exc:
            self.refused = exc
        except (OSError, EOFError) as exc:  # a truncated gzip stream, an unreadable file
            self.refused = FileRefused(f"the file cannot be read: {exc}")


def batch_load_rows(batch: UsageBatch, rows, *, progress: loading.Progress | None = None) -> UsageBatch:
    loading.stage_reset(batch)
    staging = loading.rows_stage(batch, rows, progress=progress)
    refused = getattr(rows, "refused", None)
    if refused is not None:
        return _batch_refused(batch, str(refused))
    with transaction.atomic():
        result = loading.stage_commit(batch, staging)
        _batch_exceptions(batch, result)
    log.info("usage_batch_loaded", batch=batch.pk, **{k: getattr(batch, k) for k in UsageBatch.COUNT_FIELDS})
    return batch


@transaction.atomic
def _batch_refused(batch: UsageBatch, reason: str) -> UsageBatch:
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM usage_stage WHERE batch_id = %s", [batch.pk])
    loading.stage_drop()
    batch.status, batch.error, batch.finished_at = UsageBatch.Status.FAILED, reason, timezone.now()
    batch.save(update_fields=["status", "error", "finished_at"])
    exception_open(transaction_id=batch.transaction_id, owner_team=DATA_OWNER, category=Category.MAPPING,
                   summary=f"Usage batch #{batch.pk} ({batch.filename}) refused: {reason}",
                   detail="Nothing of the file was loaded. Fix the file and upload it again.")
    return batch


def _batch_exceptions(batch: UsageBatch, result: dict[str, Any]) -> None:
    """One exception per kind of problem in the batch, each naming what to look at."""
    name = f"Usage batch #{batch.pk} ({batch.filename or batch.source})"
    if batch.conflicts:
        sample = list(batch.conflict_rows.values_list("event_id", "line", "first_batch_id", "first_line")[:20])
        exception_open(
            transaction_id=batch.transaction_id, owner_team=DATA_OWNER, category=Category.CONFLICT,
            summary=f"{name}: {batch.conflicts} record(s) reuse an id already loaded with other content",
            detail="The first record stays loaded; the later ones are kept as conflicts, never loaded over it.\n"
                   + "\n".join(f"id {eid!r} at line {line} (first: batch #{fb} line {fl})"
                               for eid, line, fb, fl in sample))
    if batch.rejected:
        reasons = dict(batch.rejects.values("reason").annotate(n=Count("id")).values_list("reason", "n"))
        exception_open(
            transaction_id=batch.transaction_id, owner_team=DATA_OWNER, category=Category.MAPPING,
            summary=f"{name}: {batch.rejected} row(s) rejected",
            detail="Reasons: " + ", ".join(f"{k} × {v}" for k, v in sorted(reasons.items()))
                   + f"\nDownload them: /api/usage/batches/{batch.pk}/rejects.csv")
    if any(not line["ok"] for line in batch.control_result):
        exception_open(
            transaction_id=batch.transaction_id, owner_team=DATA_OWNER, category=Category.RECONCILIATION,
            summary=f"{name}: the file's control totals do not match what it holds",
            detail="\n".join(
                f"{c['metric']}: expected {c['expected_records']} records / "
                f"{quantity_format(c['expected_quantity'])}, found {c['found_records']} / "
                f"{quantity_format(c['found_quantity'])}" for c in batch.control_result if not c["ok"]))
    if batch.late:
        policy = settings.HUB_USAGE_LATE_POLICY
        moved = ", ".join(f"{k} → {v or 'held'}" for k, v in result["late_periods"].items())
        exception_open(
            transaction_id=batch.transaction_id, owner_team=Team.FINANCE, category=Category.LATE_DATA,
            summary=f"{name}: {batch.late} record(s) for a period already closed ({moved})",
            detail=("Policy next_period: they bill in the next open period." if policy == "next_period" else
                    "Policy hold: they are held (billing period empty) until a person releases them."))


def rejects_csv_rows(batch: UsageBatch) -> Iterable[list[str]]:
    yield ["line", "reason", "id", "row"]
    for reject in batch.rejects.order_by("line").iterator(chunk_size=2000):
        yield [str(reject.line), reject.reason, reject.event_id, reject.raw]


def drop_folder_scan() -> list[int]:
    """Take every file in the drop folder (``HUB_USAGE_DROP_DIR``) as a batch; a taken
    file moves to ``done/`` so it is read once."""
    folder = settings.HUB_USAGE_DROP_DIR
    if not folder:
        return []
    done = Path(folder) / "done"
    done.mkdir(parents=True, exist_ok=True)
    batches = []
    for path in sorted(Path(folder).iterdir()):
        if not path.is_file() or path.name.startswith("."):
            continue  # hidden files are uploads still being written
        with path.open("rb") as stream:
            batches.append(batch_receive(stream=stream, filename=path.name, source=UsageBatch.Source.DROP_FOLDER).pk)
        path.rename(done / f"{timezone.now():%Y%m%dT%H%M%S}-{path.name}")
    return batches


def batches_stalled() -> list[int]:
    """Batches whose load message the broker lost, or whose worker died: load again."""
    now = timezone.now()
    lease = dt.timedelta(seconds=settings.HUB_USAGE_LOAD_LEASE_SECONDS)
    received = UsageBatch.objects.filter(status=UsageBatch.Status.RECEIVED,
                                         created_at__lt=now - dt.timedelta(seconds=settings.HUB_REENQUEUE_AFTER_SECONDS))
    loading_ = UsageBatch.objects.filter(status=UsageBatch.Status.LOADING, started_at__lt=now - lease)
    return [*received.values_list("pk", flat=True), *loading_.values_list("pk", flat=True)]


# ---------------------------------------------------------------- subscriptions


def subscription_upsert(*, subscription: str, legal_entity, billing_customer: str) -> UsageSubscription:
    """Make a subscription known (called by the subscription workflow, or the admin);
    its unmatched usage is matched after commit."""
    found, _ = UsageSubscription.objects.update_or_create(
        subscription=subscription, defaults={"legal_entity": legal_entity, "billing_customer": billing_customer})
    transaction.on_commit(lambda: _send_match())
    return found


def _send_match() -> None:
    from integration_hub.celery import app

    try:
        app.send_task(MATCH_TASK)
    except Exception as exc:  # noqa: BLE001 - the beat sweep matches later
        log.warning("enqueue_failed", task=MATCH_TASK, error=repr(exc))


@transaction.atomic
def subscriptions_match() -> int:
    """Held (unmatched) usage whose subscription is now known becomes matched; batch
    counts follow. Set-based."""
    known = "SELECT 1 FROM usage_usagesubscription u WHERE u.subscription = usage_record.subscription"
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE usage_record SET matched = TRUE WHERE NOT matched AND EXISTS ({known})")
        changed = cursor.rowcount
        if changed:  # recounted from the rows still held (the partial index on NOT matched)
            cursor.execute("SELECT batch_id, COUNT(*) FROM usage_record WHERE NOT matched GROUP BY batch_id")
            held = {batch_id: int(count) for batch_id, count in cursor.fetchall()}
            for batch_id in UsageBatch.objects.filter(unmatched__gt=0).values_list("pk", flat=True):
                UsageBatch.objects.filter(pk=batch_id).update(unmatched=held.get(batch_id, 0))
    return changed


# ---------------------------------------------------------------- periods and aggregation


def month_start(day: dt.date) -> dt.date:
    return day.replace(day=1)


def month_after(period: dt.date) -> dt.date:
    return (period.replace(day=28) + dt.timedelta(days=4)).replace(day=1)


def period_get(period: dt.date) -> UsagePeriod:
    period = month_start(period)
    found, _ = UsagePeriod.objects.get_or_create(
        period=period, defaults={"transaction": _transaction(f"usage:period:{period:%Y-%m}")})
    return found


def period_aggregate(period: dt.date) -> int:
    """Aggregates per subscription × metric for the billing period, and per day, from
    the matched records, by SQL. Returns the number of period aggregates."""
    now = timezone.now()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO usage_aggregate (period, subscription, metric, quantity, records, updated_at) "
            "SELECT billing_period, subscription, metric, SUM(quantity), COUNT(*), %s FROM usage_record "
            "WHERE billing_period = %s AND matched GROUP BY billing_period, subscription, metric "
            "ON CONFLICT (period, subscription, metric) DO UPDATE SET quantity = excluded.quantity, "
            "records = excluded.records, updated_at = excluded.updated_at", [now, period])
        count = cursor.rowcount
        cursor.execute(
            "INSERT INTO usage_daily (day, subscription, metric, quantity, records) "
            "SELECT day, subscription, metric, SUM(quantity), COUNT(*) FROM usage_record "
            "WHERE billing_period = %s AND matched GROUP BY day, subscription, metric "
            "ON CONFLICT (day, subscription, metric) DO UPDATE SET quantity = excluded.quantity, "
            "records = excluded.records", [period])
    return count


def period_close(period: dt.date) -> UsagePeriod:
    """Close the billing period: aggregate it one last time, then plan its push to billing
    (one delivery per 100 meter events). Later usage for it is late usage."""
    found = period_get(period)
    with transaction.atomic():
        locked = UsagePeriod.objects.select_for_update().get(pk=found.pk)
        if locked.status == UsagePeriod.Status.CLOSED:
            return locked
        period_aggregate(locked.period)
        locked.status, locked.closed_at = UsagePeriod.Status.CLOSED, timezone.now()
        locked.save(update_fields=["status", "closed_at"])
        aggregates = UsageAggregate.objects.filter(period=locked.period, quantity__gt=0).order_by("pk")
        _push_plan(locked, [(a, a.quantity, f"hub-usage-{a.pk}-p") for a in aggregates], kind="period")
    return locked


def periods_due() -> list[dt.date]:
    """Open periods whose month ended at least ``HUB_USAGE_CLOSE_AFTER_HOURS`` ago."""
    cutoff = (timezone.now() - dt.timedelta(hours=settings.HUB_USAGE_CLOSE_AFTER_HOURS)).date()
    with connection.cursor() as cursor:
        cursor.execute("SELECT DISTINCT billing_period FROM usage_record WHERE billing_period IS NOT NULL")
        used = {loading._date(value) for (value,) in cursor.fetchall()}
    closed = set(UsagePeriod.objects.filter(status=UsagePeriod.Status.CLOSED).values_list("period", flat=True))
    return sorted(p for p in used - closed if month_after(p) <= cutoff)


def _event_time(period: dt.date) -> dt.datetime:
    end = dt.datetime.combine(month_after(period), dt.time(), dt.UTC)
    return min(end - dt.timedelta(seconds=1), timezone.now().replace(microsecond=0))


def _push_plan(period: UsagePeriod, items: list[tuple[UsageAggregate, int, str]], *, kind: str) -> list[UsagePush]:
    subscriptions = {s.subscription: s for s in UsageSubscription.objects.select_related("legal_entity").filter(
        subscription__in={a.subscription for a, _, _ in items})}
    by_connection: dict[int, tuple[Any, list]] = {}
    for aggregate, quantity, identifier in items:
        entity = subscriptions[aggregate.subscription].legal_entity
        billing = connection_for_role("billing", name=entity.billing_connection)
        by_connection.setdefault(billing.pk, (billing, []))[1].append((aggregate, quantity, identifier))
    pushes, stamp = [], _event_time(period.period)
    for billing, planned in by_connection.values():
        for start in range(0, len(planned), EVENTS_PER_PUSH):
            push = UsagePush.objects.create(period=period, connection=billing, kind=kind)
            UsageMeterEvent.objects.bulk_create([
                UsageMeterEvent(aggregate=a, push=push, identifier=identifier, quantity=q, timestamp=stamp)
                for a, q, identifier in planned[start:start + EVENTS_PER_PUSH]])
            delivery_plan(transaction_id=period.transaction_id, connection=billing, action=PUSH_ACTION,
                          object_type="usage_push", object_id=push.pk)
            pushes.append(push)
    return pushes


def push_events(push_id: int) -> list[MeterEvent]:
    """The meter events of a push, as the billing connector takes them."""
    rows = UsageMeterEvent.objects.filter(push_id=push_id).select_related("aggregate").order_by("pk")
    customers = dict(UsageSubscription.objects.filter(
        subscription__in={r.aggregate.subscription for r in rows}).values_list("subscription", "billing_customer"))
    return [MeterEvent(event_name=r.aggregate.metric, customer=customers[r.aggregate.subscription],
                       value=quantity_format(r.quantity), identifier=r.identifier, timestamp=r.timestamp)
            for r in rows]


def push_bind(push_id: int, document: ExternalDocument) -> None:
    UsagePush.objects.filter(pk=push_id, sent_at__isnull=True).update(sent_at=timezone.now())


# ---------------------------------------------------------------- reconciliation

# Counts and sums per stage: records loaded, aggregated, meter events pushed, what billing
# aggregated (meter event summaries), invoice lines billed, and of those the ones whose
# invoice is posted to the ERP.
STAGES = ("loaded", "aggregated", "pushed", "billed", "invoiced", "posted")
INVOICE_STAGES = ("invoiced", "posted")
INVOICE_POST = "invoice.post"
_MILLIONTHS = 1_000_000


def _period_bounds(period: dt.date) -> tuple[dt.datetime, dt.datetime]:
    return (dt.datetime.combine(period, dt.time(), dt.UTC), dt.datetime.combine(month_after(period), dt.time(), dt.UTC))


def invoices_due(period: dt.date) -> bool:
    """Billing invoices a month's usage after it ends (Stripe: the draft of the period's
    invoice finalizes about an hour later); ``HUB_USAGE_INVOICE_AFTER_HOURS`` after the
    month, the invoice stages are part of the key control."""
    end = _period_bounds(period)[1]
    return timezone.now() >= end + dt.timedelta(hours=settings.HUB_USAGE_INVOICE_AFTER_HOURS)


def _metered_prices(systems: Iterable[str]) -> list[tuple[str, str, str]]:
    """(billing system, price id on its invoices, meter event name) of every metered
    catalog price: the billing price bound when a version was released there, and the
    platform's own price id (for invoices that name it) in every billing system. The
    catalog is small."""
    metric_of = {pk: content.get("meter_event_name") for pk, content in PriceVersion.objects.filter(
        content__usage_type="metered").values_list("pk", "content")}
    metric_of = {pk: metric for pk, metric in metric_of.items() if metric}
    found = {(system, ref): metric_of[pk] for system, ref, pk in CrossReference.objects.filter(
        object_type="price_version", canonical_id__in=metric_of).values_list("system", "external_id", "canonical_id")}
    for pk, ref in PriceVersion.objects.filter(pk__in=metric_of).values_list("pk", "price__source_id"):
        for system in systems:
            found.setdefault((system, ref), metric_of[pk])
    return [(system, ref, metric) for (system, ref), metric in sorted(found.items())]


def _values(rows: list[tuple], width: int) -> tuple[str, list]:
    """A VALUES list and its parameters; one row of NULLs (matching nothing) when empty."""
    if not rows:
        return "(" + ", ".join(["NULL"] * width) + ")", []
    return ", ".join(["(" + ", ".join(["%s"] * width) + ")"] * len(rows)), [v for row in rows for v in row]


# Per subscription × metric: records loaded, its aggregate, the meter events sent for it.
_PER_SUBSCRIPTION = """
    loaded AS (SELECT subscription, metric, COUNT(*) AS c, SUM(quantity) AS q FROM usage_record
               WHERE billing_period = %s AND matched GROUP BY subscription, metric),
    pushed AS (SELECT e.aggregate_id, COUNT(*) AS c, SUM(e.quantity) AS q FROM usage_usagemeterevent e
               JOIN usage_usagepush p ON p.id = e.push_id WHERE p.period_id = %s AND p.sent_at IS NOT NULL
               GROUP BY e.aggregate_id),
    per_sub AS (
      SELECT COALESCE(l.subscription, a.subscription) AS subscription, COALESCE(l.metric, a.metric) AS metric,
             COALESCE(l.c, 0) AS lc, COALESCE(l.q, 0) AS lq, COALESCE(a.records, 0) AS ac,
             COALESCE(a.quantity, 0) AS aq, COALESCE(pu.c, 0) AS pc, COALESCE(pu.q, 0) AS pq
      FROM loaded l
      FULL JOIN (SELECT id, subscription, metric, records, quantity FROM usage_aggregate WHERE period = %s) a
        ON a.subscription = l.subscription AND a.metric = l.metric
      LEFT JOIN pushed pu ON pu.aggregate_id = a.id)"""

# Per billing system × customer × metric: the hub's stages, and the invoice lines that
# bill the period's usage (a metered price, a service period starting in the month, not
# void) with how many of them are on an invoice posted to the ERP.
_KEYS = """
WITH em(entity_id, system) AS (VALUES {entities}),
    pm(system, price_ref, metric) AS (VALUES {prices}),
    {per_subscription},
    hub AS (
      SELECT em.system, s.billing_customer AS customer, ps.metric, MIN(s.legal_entity_id) AS entity_id,
             MAX(s.legal_entity_id) AS entity_max, SUM(lc) AS lc, SUM(lq) AS lq, SUM(ac) AS ac, SUM(aq) AS aq,
             SUM(pc) AS pc, SUM(pq) AS pq, SUM(CASE WHEN lc <> ac OR lq <> aq THEN 1 ELSE 0 END) AS unaggregated
      FROM per_sub ps JOIN usage_usagesubscription s ON s.subscription = ps.subscription
      JOIN em ON em.entity_id = s.legal_entity_id
      GROUP BY em.system, s.billing_customer, ps.metric),
    usage_lines AS (
      SELECT i.source_system AS system, COALESCE(x.external_id, '') AS customer, pm.metric, i.legal_entity_id,
             i.currency, l.quantity,
             CASE WHEN o.object_id IS NULL THEN 0 ELSE 1 END AS posted
      FROM canonical_invoiceline l JOIN canonical_invoice i ON i.id = l.invoice_id
      LEFT JOIN (SELECT DISTINCT object_id FROM runtime_delivery
                 WHERE object_type = 'invoice' AND action = %s AND status = 'posted') o ON o.object_id = i.id
      JOIN pm ON pm.price_ref = l.price_ref AND pm.system = i.source_system
      LEFT JOIN canonical_crossreference x
        ON x.system = i.source_system AND x.object_type = 'customer' AND x.canonical_id = i.customer_id
      WHERE l.period_start >= %s AND l.period_start < %s AND i.status <> 'void'),
    billed_lines AS (
      SELECT system, customer, metric, MIN(legal_entity_id) AS entity_id, MIN(currency) AS currency,
             COUNT(*) AS ic, SUM(quantity) AS iq, SUM(posted) AS oc, SUM(posted * quantity) AS oq
      FROM usage_lines GROUP BY system, customer, metric)
SELECT COALESCE(h.system, b.system), COALESCE(h.customer, b.customer), COALESCE(h.metric, b.metric),
       COALESCE(h.entity_id, b.entity_id), COALESCE(h.entity_max, b.entity_id), b.currency,
       CAST(COALESCE(h.lc, 0) AS BIGINT), CAST(COALESCE(h.lq, 0) AS BIGINT), CAST(COALESCE(h.ac, 0) AS BIGINT),
       CAST(COALESCE(h.aq, 0) AS BIGINT), CAST(COALESCE(h.pc, 0) AS BIGINT), CAST(COALESCE(h.pq, 0) AS BIGINT),
       COALESCE(h.unaggregated, 0), CAST(COALESCE(b.ic, 0) AS BIGINT),
       CAST(ROUND(COALESCE(b.iq, 0) * 1000000) AS BIGINT), CAST(COALESCE(b.oc, 0) AS BIGINT),
       CAST(ROUND(COALESCE(b.oq, 0) * 1000000) AS BIGINT)
FROM hub h FULL JOIN billed_lines b ON b.system = h.system AND b.customer = h.customer AND b.metric = h.metric"""


def checkpoint_request(period: dt.date, *, invoice_stages: bool | None = None, trigger: str = "api") -> Checkpoint:
    """A checkpoint asked for on demand: queued (``running``) and filled by the usage worker,
    because it reads billing once per key — a month of customers takes longer than a web
    request may. Poll ``GET /api/reconciliations/<id>/``."""
    checkpoint = Checkpoint.objects.create(period=period_get(period), trigger=trigger, invoice_stages=invoice_stages,
                                           status=Checkpoint.Status.RUNNING)
    enqueue_after_commit(CHECKPOINT_TASK, checkpoint.pk)
    return checkpoint


def checkpoint_fill(checkpoint_id: int) -> Checkpoint | None:
    """The worker's side of ``checkpoint_request``; a checkpoint already filled is left alone
    (a redelivered task). One that cannot run says why and stays for a person to see."""
    queued = Checkpoint.objects.filter(pk=checkpoint_id, status=Checkpoint.Status.RUNNING).select_related(
        "period").first()
    if queued is None:
        return None
    try:
        return checkpoint_run(queued.period.period, trigger=queued.trigger, invoice_stages=queued.invoice_stages,
                              into=queued)
    except Exception as exc:
        Checkpoint.objects.filter(pk=queued.pk).update(status=Checkpoint.Status.FAILED,
                                                       error=f"{type(exc).__name__}: {exc}"[:2000])
        log.warning("usage_checkpoint_failed", checkpoint=queued.pk, error=str(exc))
        raise


def checkpoint_run(period: dt.date, *, trigger: str = "api", invoice_stages: bool | None = None,
                   into: Checkpoint | None = None) -> Checkpoint:
    """Reconcile a billing period. The key is billing customer × metric (per billing
    connection), because that is what billing aggregates: records loaded ↔ aggregates ↔
    meter events pushed ↔ billing's meter event summary ↔ the usage lines of billing's
    invoices for the period ↔ those of them posted to the ERP. Every loaded record must
    be in its aggregate (per subscription), billing must hold the aggregates, and, once
    the period's invoices are due (``invoices_due``, or ``invoice_stages``), the invoices
    must bill what billing holds and the ERP must have them all. The report is per legal
    entity × currency × metric (a key's entity is its subscriptions'; its currency its
    invoices', else the entity's); a mismatch opens one exception for finance naming the
    keys (customer, subscriptions, metric, invoices), repairable with ``checkpoint_repair``.
    Set-based: one query for every key's stages, then one billing read per key."""
    found = period_get(period)
    start, end = _period_bounds(found.period)
    check_invoices = invoices_due(found.period) if invoice_stages is None else invoice_stages
    entities = {e.pk: e for e in LegalEntity.objects.all()}
    system_of = {}
    for entity in entities.values():
        try:
            system_of[entity.pk] = connection_for_role("billing", name=entity.billing_connection).name
        except NeedsConfiguration:
            continue  # an entity without billing has no usage to reconcile
    entity_sql, entity_params = _values(sorted(system_of.items()), 2)
    price_sql, price_params = _values(_metered_prices(set(system_of.values())), 3)
    sql = _KEYS.format(entities=entity_sql, prices=price_sql, per_subscription=_PER_SUBSCRIPTION)
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # One pass over every key: JIT compiling it costs more than it saves, and the
            # grouping of a month's keys should not spill to disk.
            cursor.execute("SET LOCAL jit = off")
            cursor.execute("SET LOCAL work_mem = '128MB'")
        cursor.execute(sql, [*entity_params, *price_params, found.period, found.pk, found.period, INVOICE_POST,
                             start.date(), end.date()])
        rows = cursor.fetchall()

    sinks: dict[str, Any] = {}
    for name in {row[0] for row in rows}:
        try:
            sinks[name] = connector_for(connection_for_role("billing", name=name))
        except NeedsConfiguration:  # invoices of a billing system no longer connected: nothing to ask
            log.warning("usage_checkpoint_billing_unknown", connection=name)
    lines: dict[tuple[str, str, str], list[int]] = {}
    differing: list[tuple] = []
    for system, customer, metric, entity_id, entity_max, currency, *figures in rows:
        lc, lq, ac, aq, pc, pq, unaggregated, ic, iq, oc, oq = figures  # quantities in millionths
        sink = sinks.get(system)
        bq = loading_quantity(sink.meter_usage(event_name=metric, customer=customer, start=start, end=end)) \
            if sink is not None else 0
        entity = entities[entity_id]
        currency = currency or entity.currency
        stages = (lc, lq, ac, aq, pc, pq, pc, bq, ic, iq, oc, oq)
        acc = lines.get((entity.code, currency, metric))
        if acc is None:
            acc = lines[(entity.code, currency, metric)] = [0] * 13
        acc[0] += 1
        for index, value in enumerate(stages, start=1):
            acc[index] += value
        differs = []
        if unaggregated:
            differs.append("aggregated")  # records not in their aggregate: a person looks at the period
        if aq != bq:
            differs.append("billed")
        if check_invoices and iq != bq:
            differs.append("invoiced")  # billing's invoice lacks or exceeds its usage: billing's to answer
        if check_invoices and (oc, oq) != (ic, iq):
            differs.append("posted")
        if differs:
            codes = entity.code if entity_max == entity_id else f"{entity.code}+{entities[entity_max].code}"
            quantities = dict(zip(STAGES, stages[1::2], strict=True))
            differing.append(((system, customer, metric, codes, currency, quantities), differs))

    columns = [f"{stage}_{part}" for stage in STAGES for part in ("count", "quantity")]
    report = [{"legal_entity": code, "currency": currency, "metric": metric, "keys": acc[0],
               **dict(zip(columns, acc[1:], strict=True))} for (code, currency, metric), acc in sorted(lines.items())]
    mismatches = _mismatches(found, differing, start.date(), end.date(), entity_sql, entity_params,
                             price_sql, price_params)
    checked = ["loaded", "aggregated", "billed", *(INVOICE_STAGES if check_invoices else ())]
    with transaction.atomic():
        checkpoint = into or Checkpoint(period=found, trigger=trigger)
        checkpoint.lines, checkpoint.mismatches, checkpoint.checked = report, mismatches, checked
        checkpoint.status = Checkpoint.Status.MISMATCH if mismatches else Checkpoint.Status.BALANCED
        checkpoint.save()
        if mismatches:
            checkpoint.exception = exception_open(
                transaction_id=found.transaction_id, owner_team=Team.FINANCE, category=Category.RECONCILIATION,
                summary=f"Usage {found.period:%Y-%m} does not reconcile: {len(mismatches)} key(s) differ",
                detail=_mismatch_detail(checkpoint, mismatches))
            checkpoint.save(update_fields=["exception"])
        else:
            _earlier_mismatches_resolve(checkpoint)
    log.info("usage_checkpoint", period=f"{found.period:%Y-%m}", status=checkpoint.status, keys=len(rows),
             mismatches=len(mismatches))
    return checkpoint


def _earlier_mismatches_resolve(balanced: Checkpoint) -> None:
    """The period balances now (after a repair, or once late usage was billed): its earlier
    mismatches are history — marked resolved, their exceptions closed with a pointer here."""
    earlier = Checkpoint.objects.filter(period=balanced.period, status=Checkpoint.Status.MISMATCH,
                                        created_at__lte=balanced.created_at).exclude(pk=balanced.pk)
    for checkpoint in earlier.select_related("exception"):
        if checkpoint.exception is not None and checkpoint.exception.status in ExceptionRecord.ACTIVE:
            exception_resolve(checkpoint.exception, user=None,
                              note=f"checkpoint {balanced.pk} found {balanced.period.period:%Y-%m} balanced")
    earlier.update(status=Checkpoint.Status.RESOLVED)


def _mismatches(found: UsagePeriod, differing: list[tuple], start: dt.date, end: dt.date, entity_sql: str,
                entity_params: list, price_sql: str, price_params: list) -> list[dict[str, Any]]:
    """The keys that differ, each named: its subscriptions (and those whose records are
    not all in their aggregate), its invoices not in the ERP with their post delivery's
    state, and the actions that fix it (re-push, replay, wait, or a person)."""
    if not differing:
        return []
    customers = sorted({(system, customer) for (system, customer, *_), _ in differing})
    subscriptions: dict[tuple[str, str, str], list[str]] = {}
    unaggregated: dict[tuple[str, str, str], list[str]] = {}
    invoices: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    with connection.cursor() as cursor:
        for chunk in range(0, len(customers), 500):
            names = sorted({customer for _, customer in customers[chunk:chunk + 500]})
            marks = ", ".join(["%s"] * len(names))
            cursor.execute(
                f"WITH em(entity_id, system) AS (VALUES {entity_sql}), {_PER_SUBSCRIPTION} "
                "SELECT em.system, s.billing_customer, ps.metric, ps.subscription, "
                "CASE WHEN lc <> ac OR lq <> aq THEN 1 ELSE 0 END FROM per_sub ps "
                "JOIN usage_usagesubscription s ON s.subscription = ps.subscription "
                f"JOIN em ON em.entity_id = s.legal_entity_id WHERE s.billing_customer IN ({marks}) "
                "ORDER BY ps.subscription", [*entity_params, found.period, found.pk, found.period, *names])
            for system, customer, metric, subscription, off in cursor.fetchall():
                subscriptions.setdefault((system, customer, metric), []).append(subscription)
                if off:
                    unaggregated.setdefault((system, customer, metric), []).append(subscription)
        cursor.execute(
            f"WITH pm(system, price_ref, metric) AS (VALUES {price_sql}) "
            "SELECT DISTINCT i.source_system, COALESCE(x.external_id, ''), pm.metric, i.source_id, d.id, d.status "
            "FROM canonical_invoiceline l JOIN canonical_invoice i ON i.id = l.invoice_id "
            "JOIN pm ON pm.price_ref = l.price_ref AND pm.system = i.source_system "
            "LEFT JOIN canonical_crossreference x ON x.system = i.source_system AND x.object_type = 'customer' "
            "AND x.canonical_id = i.customer_id "
            "LEFT JOIN runtime_delivery d ON d.object_type = 'invoice' AND d.object_id = i.id AND d.action = %s "
            "WHERE l.period_start >= %s AND l.period_start < %s AND i.status <> 'void' "
            "AND NOT EXISTS (SELECT 1 FROM runtime_delivery p WHERE p.object_type = 'invoice' AND p.object_id = i.id "
            "AND p.action = %s AND p.status = 'posted') ORDER BY i.source_id",
            [*price_params, INVOICE_POST, start, end, INVOICE_POST])
        for system, customer, metric, invoice, delivery, state in cursor.fetchall():
            invoices.setdefault((system, customer, metric), []).append(
                {"invoice": invoice, "delivery": delivery, "status": state or "not planned"})
    mismatches = []
    for (system, customer, metric, codes, currency, quantity), differs in differing:
        key = (system, customer, metric)
        unposted = invoices.get(key, [])
        actions = []
        if "billed" in differs:
            actions.append("re-push" if quantity["billed"] < quantity["aggregated"] else "person")
        if "invoiced" in differs or "aggregated" in differs:
            actions.append("person")
        if "posted" in differs:
            states = {invoice["status"] for invoice in unposted}
            actions.append("replay" if states == {"dead"} else
                           "wait" if states and states <= {"pending", "held", "in_flight", "dead"} else "person")
        names = subscriptions.get(key, [])
        mismatches.append({
            "customer": customer, "metric": metric, "legal_entity": codes, "currency": currency,
            "subscription": ", ".join(names), "subscriptions": names,
            **{stage: quantity_format(q) for stage, q in quantity.items()},
            "differs": differs, "actions": sorted(set(actions)), "unaggregated": unaggregated.get(key, []),
            "invoices": unposted[:50], "connection": system})
    return mismatches


def _mismatch_detail(checkpoint: Checkpoint, mismatches: list[dict[str, Any]]) -> str:
    rows = []
    for m in mismatches[:200]:
        stages = ", ".join(f"{stage} {m[stage]}" for stage in STAGES)
        row = (f"{m['subscription'] or '(no subscription)'} × {m['metric']} (customer {m['customer'] or '?'}, "
               f"{m['legal_entity']}): {stages}; differs: {', '.join(m['differs'])}; action: {', '.join(m['actions'])}")
        if m["invoices"] and "posted" in m["differs"]:
            row += "; not in the ERP: " + ", ".join(f"{i['invoice']} ({i['status']})" for i in m["invoices"][:10])
        rows.append(row)
    if len(mismatches) > 200:
        rows.append(f"… and {len(mismatches) - 200} more key(s): see the report")
    return "\n".join(rows) + (
        f"\nRepair (re-push what billing lacks, replay dead ERP postings): "
        f"POST /api/reconciliations/{checkpoint.pk}/repair/ — report: /api/reconciliations/{checkpoint.pk}/?as=csv")


def periods_to_reconcile() -> list[dt.date]:
    """Closed periods with every push sent whose latest checkpoint is missing or stale:
    a mismatch with a push (or an ERP posting) since, or a checkpoint taken before the
    period's invoices were due."""
    due = []
    for period in UsagePeriod.objects.filter(status=UsagePeriod.Status.CLOSED):
        pushes = period.pushes.all()
        if pushes.filter(sent_at__isnull=True).exists():
            continue
        latest = period.checkpoints.exclude(status=Checkpoint.Status.FAILED).order_by("-created_at").first()
        if latest is None:
            due.append(period.period)
            continue
        if "invoiced" not in latest.checked and invoices_due(period.period):
            due.append(period.period)
            continue
        if latest.status != Checkpoint.Status.MISMATCH:
            continue
        last_push = pushes.order_by("-sent_at").values_list("sent_at", flat=True).first()
        posted_since = "invoiced" in latest.checked and (
            Delivery.objects.filter(action=INVOICE_POST, updated_at__gt=latest.created_at).exists()
            or Invoice.objects.filter(updated_at__gt=latest.created_at).exists())
        if last_push and last_push > latest.created_at or posted_since:
            due.append(period.period)
    return due


def loading_quantity(value: str) -> int:
    """A billing figure (a decimal string) in millionths; 0 for what is not a number."""
    try:
        return int((Decimal(value) * _MILLIONTHS).to_integral_value())
    except (InvalidOperation, TypeError, ValueError):
        return 0


@dataclass(frozen=True)
class Repair:
    pushes: list[UsagePush]
    replayed: list[int]  # the ERP post deliveries given a fresh retry budget

    @property
    def events(self) -> int:
        return sum(push.events.count() for push in self.pushes)


@transaction.atomic
def checkpoint_repair(checkpoint: Checkpoint, *, user=None) -> Repair:
    """One action for what a re-push or a replay fixes; once per checkpoint (a second
    call finds it repaired and does nothing: run a new checkpoint first).

    * billing holds less than the aggregates of a customer × metric: one meter event per
      subscription for the difference (new identifiers, so billing counts them), skipped
      while a push of the key is still on its way (it would count twice);
    * invoices of a key not in the ERP because their post delivery is dead: replayed.

    Billing holding more than the hub, invoices that disagree with billing, records not
    in their aggregate cannot be fixed this way: they stay in the exception for a person."""
    locked = Checkpoint.objects.select_for_update().get(pk=checkpoint.pk)
    if locked.repaired_at is not None or locked.status != Checkpoint.Status.MISMATCH:
        return Repair(pushes=[], replayed=[])
    period = UsagePeriod.objects.select_for_update().get(pk=locked.period_id)
    items, replayed = [], []
    repairs = UsageMeterEvent.objects.filter(push__period=period, push__kind="repair").count()
    for mismatch in locked.mismatches:
        actions = mismatch.get("actions", [])  # a checkpoint taken before actions were stated has none
        if "re-push" in actions:
            aggregates = list(UsageAggregate.objects.filter(
                period=period.period, subscription__in=mismatch["subscriptions"], metric=mismatch["metric"],
                quantity__gt=0).order_by("subscription"))
            if not aggregates or UsageMeterEvent.objects.filter(
                    aggregate__in=aggregates, push__sent_at__isnull=True).exists():
                continue  # nothing to send for, or still on its way to billing
            missing = sum(a.quantity for a in aggregates) - loading_quantity(mismatch["billed"])
            for index, aggregate in enumerate(aggregates):
                share = missing if index == len(aggregates) - 1 else min(missing, aggregate.quantity)
                if share > 0:
                    repairs += 1
                    items.append((aggregate, share, f"hub-usage-{aggregate.pk}-r{repairs}"))
                    missing -= share
        if "replay" in actions:
            for invoice in mismatch["invoices"]:
                delivery = Delivery.objects.filter(pk=invoice["delivery"], status=Delivery.Status.DEAD).first()
                if delivery is not None:
                    delivery_replay(delivery, user=user, reason=f"usage checkpoint #{locked.pk}: not in the ERP")
                    replayed.append(delivery.pk)
    locked.repaired_at = timezone.now()
    locked.save(update_fields=["repaired_at"])
    return Repair(pushes=_push_plan(period, items, kind="repair") if items else [], replayed=replayed)
