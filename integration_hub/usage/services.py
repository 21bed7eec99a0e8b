"""Usage aggregation's services: receive and load batches, match subscriptions, aggregate,
close periods and push aggregates to billing, reconcile. Tasks, views, the admin and the
management command only call these."""

from __future__ import annotations

import contextlib
import datetime as dt
import shutil
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import IO, Any

import structlog
from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models import Count, Sum
from django.utils import timezone

from connectors.base import ExternalDocument, MeterEvent
from connectors.services import connection_for_role, connector_for
from integration_hub.runtime.models import BusinessTransaction, ExceptionRecord
from integration_hub.runtime.services import delivery_plan, enqueue_after_commit, exception_open
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
from integration_hub.usage.rows import FileRefused, Rejected, file_rows, quantity_format, record_parse

log = structlog.get_logger(__name__)

LOAD_TASK = "hub.usage_batch_load"
MATCH_TASK = "hub.usage_subscriptions_match"
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
    controls = loading.rows_stage(batch, rows, progress=progress)
    refused = getattr(rows, "refused", None)
    if refused is not None:
        return _batch_refused(batch, str(refused))
    with transaction.atomic():
        result = loading.stage_commit(batch, controls)
        _batch_exceptions(batch, result)
    log.info("usage_batch_loaded", batch=batch.pk, **{k: getattr(batch, k) for k in UsageBatch.COUNT_FIELDS})
    return batch


@transaction.atomic
def _batch_refused(batch: UsageBatch, reason: str) -> UsageBatch:
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM usage_stage WHERE batch_id = %s", [batch.pk])
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
        if changed:
            cursor.execute("SELECT batch_id, SUM(CASE WHEN matched THEN 0 ELSE 1 END) FROM usage_record "
                           "WHERE batch_id IN (SELECT id FROM usage_usagebatch WHERE unmatched > 0) GROUP BY batch_id")
            for batch_id, unmatched in cursor.fetchall():
                UsageBatch.objects.filter(pk=batch_id).update(unmatched=int(unmatched))
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

STAGES = ("loaded", "aggregated", "pushed", "billed")


def _period_bounds(period: dt.date) -> tuple[dt.datetime, dt.datetime]:
    return (dt.datetime.combine(period, dt.time(), dt.UTC), dt.datetime.combine(month_after(period), dt.time(), dt.UTC))


def checkpoint_run(period: dt.date, *, trigger: str = "api") -> Checkpoint:
    """Reconcile a billing period, per legal entity × currency × metric: records loaded ↔
    aggregates ↔ meter events pushed ↔ what billing aggregated (Stripe's meter event
    summaries). Keys (subscription × metric) that differ are listed; a mismatch opens
    one exception for finance, repairable with ``checkpoint_repair``."""
    found = period_get(period)
    keys: dict[tuple[str, str], dict[str, Any]] = {}

    def key(subscription: str, metric: str) -> dict[str, Any]:
        return keys.setdefault((subscription, metric), {stage: [0, 0] for stage in STAGES})

    with connection.cursor() as cursor:
        cursor.execute("SELECT subscription, metric, COUNT(*), SUM(quantity) FROM usage_record "
                       "WHERE billing_period = %s AND matched GROUP BY subscription, metric", [found.period])
        for subscription, metric, count, total in cursor.fetchall():
            key(subscription, metric)["loaded"] = [int(count), int(total)]
    for a in UsageAggregate.objects.filter(period=found.period):
        key(a.subscription, a.metric)["aggregated"] = [a.records, a.quantity]
    sent = (UsageMeterEvent.objects.filter(push__period=found, push__sent_at__isnull=False)
            .values("aggregate__subscription", "aggregate__metric").annotate(n=Count("id"), q=Sum("quantity"))
            .values_list("aggregate__subscription", "aggregate__metric", "n", "q"))
    for subscription, metric, count, total in sent:
        key(subscription, metric)["pushed"] = [int(count), int(total)]
    subscriptions = {s.subscription: s for s in UsageSubscription.objects.select_related("legal_entity")
                     .filter(subscription__in={s for s, _ in keys})}
    start, end = _period_bounds(found.period)
    for (subscription, metric), stages in keys.items():
        sub = subscriptions[subscription]
        billing = connection_for_role("billing", name=sub.legal_entity.billing_connection)
        value = connector_for(billing).meter_usage(event_name=metric, customer=sub.billing_customer,
                                                   start=start, end=end)
        stages["billed"] = [stages["pushed"][0], loading_quantity(value)]
    lines: dict[tuple[str, str, str], dict[str, Any]] = {}
    mismatches = []
    for (subscription, metric), stages in sorted(keys.items()):
        entity = subscriptions[subscription].legal_entity
        line = lines.setdefault((entity.code, entity.currency, metric), {
            "legal_entity": entity.code, "currency": entity.currency, "metric": metric, "keys": 0,
            **{f"{stage}_{part}": 0 for stage in STAGES for part in ("count", "quantity")}})
        line["keys"] += 1
        for stage in STAGES:
            line[f"{stage}_count"] += stages[stage][0]
            line[f"{stage}_quantity"] += stages[stage][1]
        quantities = {stage: stages[stage][1] for stage in STAGES}
        # The key control: every loaded record is in its aggregate, and billing holds each
        # aggregate. "pushed" is what the hub sent (a lost event plus its repair is more).
        if (quantities["loaded"], stages["loaded"][0]) != (quantities["aggregated"], stages["aggregated"][0]) \
                or quantities["aggregated"] != quantities["billed"]:
            mismatches.append({"subscription": subscription, "metric": metric, "legal_entity": entity.code,
                               **{stage: quantity_format(q) for stage, q in quantities.items()}})
    with transaction.atomic():
        checkpoint = Checkpoint.objects.create(
            period=found, trigger=trigger, lines=list(lines.values()), mismatches=mismatches,
            status=Checkpoint.Status.MISMATCH if mismatches else Checkpoint.Status.BALANCED)
        if mismatches:
            checkpoint.exception = exception_open(
                transaction_id=found.transaction_id, owner_team=Team.FINANCE, category=Category.RECONCILIATION,
                summary=f"Usage {found.period:%Y-%m} does not reconcile: {len(mismatches)} key(s) differ",
                detail="\n".join(f"{m['subscription']} × {m['metric']} ({m['legal_entity']}): loaded {m['loaded']}, "
                                 f"aggregated {m['aggregated']}, pushed {m['pushed']}, billed {m['billed']}"
                                 for m in mismatches)
                + f"\nRepair (re-push what billing lacks): POST /api/reconciliations/{checkpoint.pk}/repair/")
            checkpoint.save(update_fields=["exception"])
    return checkpoint


def periods_to_reconcile() -> list[dt.date]:
    """Closed periods with every push sent and no balanced checkpoint since the last push."""
    due = []
    for period in UsagePeriod.objects.filter(status=UsagePeriod.Status.CLOSED):
        pushes = period.pushes.all()
        if pushes.filter(sent_at__isnull=True).exists():
            continue
        last_push = pushes.order_by("-sent_at").values_list("sent_at", flat=True).first()
        latest = period.checkpoints.order_by("-created_at").first()
        if latest is None or latest.status == Checkpoint.Status.MISMATCH and last_push and \
                last_push > latest.created_at:
            due.append(period.period)
    return due


def loading_quantity(value: str) -> int:
    parsed = record_parse(0, {"id": "x", "subscription": "x", "metric": "x", "quantity": value,
                              "timestamp": "0"}, "")
    return 0 if isinstance(parsed, Rejected) else parsed.quantity


@transaction.atomic
def checkpoint_repair(checkpoint: Checkpoint) -> list[UsagePush]:
    """Re-push what billing lacks: for each mismatched key where billing holds less than
    the aggregate, one meter event for the difference (a new identifier, so billing
    counts it). Billing holding more than the hub cannot be fixed by an event: it stays
    in the exception for a person."""
    period = UsagePeriod.objects.select_for_update().get(pk=checkpoint.period_id)
    items = []
    repairs = UsageMeterEvent.objects.filter(push__period=period, push__kind="repair").count()
    for mismatch in checkpoint.mismatches:
        aggregate = UsageAggregate.objects.get(period=period.period, subscription=mismatch["subscription"],
                                               metric=mismatch["metric"])
        if aggregate.meter_events.filter(push__sent_at__isnull=True).exists():
            continue  # still on its way to billing: re-pushing now would count it twice
        missing = aggregate.quantity - loading_quantity(mismatch["billed"])
        if missing > 0:
            repairs += 1
            items.append((aggregate, missing, f"hub-usage-{aggregate.pk}-r{repairs}"))
    return _push_plan(period, items, kind="repair") if items else []
