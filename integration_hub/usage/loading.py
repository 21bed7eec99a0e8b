"""Loading a batch, set-based: rows → ``usage_stage`` (COPY on PostgreSQL, batched
inserts on SQLite) in chunks that commit with the batch's live counts, then one
transaction that moves the batch into ``usage_event`` / ``usage_record`` with
INSERT … SELECT … ON CONFLICT DO NOTHING, records the conflicts, counts everything
and empties the stage. A load that dies part-way leaves nothing but stage rows and
rejects, which the next attempt deletes before starting again: every record is
counted exactly once.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from itertools import islice

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from integration_hub.usage.models import UsageBatch, UsagePeriod, UsageReject
from integration_hub.usage.rows import Control, Record, Rejected

CHUNK = 50_000
STAGE_COLUMNS = ("batch_id", "line", "event_id", "subscription", "metric", "quantity", "occurred_at", "day",
                 "period", "dimensions", "digest")
Progress = Callable[[int], None]


def _postgres() -> bool:
    return connection.vendor == "postgresql"


def stage_reset(batch: UsageBatch) -> None:
    """Forget what an interrupted attempt wrote (stage rows, rejects, counts)."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("DELETE FROM usage_stage WHERE batch_id = %s", [batch.pk])
        UsageReject.objects.filter(batch=batch).delete()
        for name in UsageBatch.COUNT_FIELDS:
            setattr(batch, name, 0)
        batch.control_totals, batch.control_result, batch.error = [], [], ""
        batch.status, batch.started_at = UsageBatch.Status.LOADING, timezone.now()
        batch.save()


def _stage_write(cursor, batch_id: int, records: list[Record]) -> None:
    values = ((batch_id, r.line, r.event_id, r.subscription, r.metric, r.quantity, r.occurred_at, r.day, r.period,
               r.dimensions, r.digest) for r in records)
    if _postgres():
        with cursor.copy(f"COPY usage_stage ({', '.join(STAGE_COLUMNS)}) FROM STDIN") as copy:
            for row in values:
                copy.write_row(row)
    else:
        cursor.executemany(f"INSERT INTO usage_stage ({', '.join(STAGE_COLUMNS)}) VALUES "
                           f"({', '.join(['%s'] * len(STAGE_COLUMNS))})", list(values))


def rows_stage(batch: UsageBatch, rows: Iterable[Record | Rejected | Control], *,
               progress: Progress | None = None) -> list[Control]:
    """Write the rows to the stage in committed chunks; returns the file's control totals."""
    controls: list[Control] = []
    iterator = iter(rows)
    while chunk := list(islice(iterator, CHUNK)):
        records = [row for row in chunk if isinstance(row, Record)]
        rejects = [UsageReject(batch=batch, line=row.line, reason=row.reason, event_id=row.event_id, raw=row.raw[:2000])
                   for row in chunk if isinstance(row, Rejected)]
        controls.extend(row for row in chunk if isinstance(row, Control))
        with transaction.atomic(), connection.cursor() as cursor:
            _stage_write(cursor, batch.pk, records)
            UsageReject.objects.bulk_create(rejects, batch_size=1000)
            batch.read += len(records) + len(rejects)
            batch.rejected += len(rejects)
            batch.save(update_fields=["read", "rejected"])
        if progress:
            progress(len(chunk))
    return controls


def partitions_ensure(cursor, periods: Iterable[dt.date]) -> None:
    """One partition per month present in the load (PostgreSQL), created if missing."""
    if not _postgres():
        return
    cursor.execute("SELECT pg_advisory_xact_lock(hashtext('usage_record_partitions'))")
    for period in periods:
        following = (period.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
        cursor.execute(
            f"CREATE TABLE IF NOT EXISTS usage_record_y{period:%Y}m{period:%m} PARTITION OF usage_record "
            f"FOR VALUES FROM ('{period.isoformat()} 00:00:00+00') TO ('{following.isoformat()} 00:00:00+00')"
        )


def billing_periods(periods: Iterable[dt.date]) -> dict[dt.date, dt.date | None]:
    """Where late usage goes: a period already closed bills in the first open period
    after it (policy ``next_period``) or is held for a person (``hold``: None)."""
    closed = set(UsagePeriod.objects.filter(status=UsagePeriod.Status.CLOSED).values_list("period", flat=True))
    moved: dict[dt.date, dt.date | None] = {}
    for period in periods:
        if period not in closed:
            continue
        if settings.HUB_USAGE_LATE_POLICY == "hold":
            moved[period] = None
            continue
        target = period
        while target in closed:
            target = (target.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
        moved[period] = target
    return moved


_SAME = "e.batch_id = s.batch_id AND e.line = s.line"


def stage_commit(batch: UsageBatch, controls: list[Control]) -> dict[str, int]:
    """Move the staged batch into the usage tables; returns its counts. One transaction."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT DISTINCT period FROM usage_stage WHERE batch_id = %s", [batch.pk])
        periods = sorted(_date(value) for (value,) in cursor.fetchall())
        partitions_ensure(cursor, periods)
        late = billing_periods(periods)
        case_sql, case_params = "s.period", []
        if late:
            case_sql = "CASE " + " ".join("WHEN s.period = %s THEN %s" for _ in late) + " ELSE s.period END"
            for period, target in late.items():
                case_params += [period, target]
        dims = "NULLIF(s.dimensions, '')::jsonb" if _postgres() else "NULLIF(s.dimensions, '')"
        matched = "EXISTS (SELECT 1 FROM usage_usagesubscription u WHERE u.subscription = s.subscription)"
        select = (f"SELECT s.event_id, s.batch_id, s.line, s.subscription, s.metric, s.quantity, s.occurred_at, "
                  f"s.day, s.period, {case_sql}, {dims}, {matched} FROM usage_stage s")
        insert = ("INSERT INTO usage_record (event_id, batch_id, line, subscription, metric, quantity, occurred_at, "
                  "day, period, billing_period, dimensions, matched) ")
        keys = ("INSERT INTO usage_event (event_id, digest, batch_id, line) SELECT event_id, digest, batch_id, line "
                "FROM usage_stage WHERE batch_id = %s ORDER BY line ON CONFLICT (event_id) DO NOTHING")
        if _postgres():
            # One statement: the first line of each new id claims the key, and exactly those rows load.
            cursor.execute(f"WITH claimed AS ({keys} RETURNING event_id, line) {insert}{select} "
                           "JOIN claimed c ON c.event_id = s.event_id AND c.line = s.line WHERE s.batch_id = %s",
                           [batch.pk, *case_params, batch.pk])
        else:
            cursor.execute(keys, [batch.pk])
            cursor.execute(f"{insert}{select} JOIN usage_event e ON e.event_id = s.event_id AND {_SAME} "
                           "WHERE s.batch_id = %s", [*case_params, batch.pk])
        cursor.execute(
            "INSERT INTO usage_conflict (batch_id, line, event_id, first_batch_id, first_line, subscription, metric, "
            "quantity, occurred_at, dimensions) SELECT s.batch_id, s.line, s.event_id, e.batch_id, e.line, "
            "s.subscription, s.metric, s.quantity, s.occurred_at, s.dimensions FROM usage_stage s "
            f"JOIN usage_event e ON e.event_id = s.event_id WHERE s.batch_id = %s AND NOT ({_SAME}) "
            "AND e.digest <> s.digest", [batch.pk])
        late_list = list(late) or [dt.date(1, 1, 1)]
        cursor.execute(
            f"SELECT COALESCE(SUM(CASE WHEN {_SAME} THEN 1 ELSE 0 END), 0), "
            f"COALESCE(SUM(CASE WHEN NOT ({_SAME}) AND e.digest = s.digest THEN 1 ELSE 0 END), 0), "
            f"COALESCE(SUM(CASE WHEN NOT ({_SAME}) AND e.digest <> s.digest THEN 1 ELSE 0 END), 0), "
            f"COALESCE(SUM(CASE WHEN {_SAME} AND NOT {matched} THEN 1 ELSE 0 END), 0), "
            f"COALESCE(SUM(CASE WHEN {_SAME} AND s.period IN ({', '.join(['%s'] * len(late_list))}) "
            "THEN 1 ELSE 0 END), 0) "
            "FROM usage_stage s JOIN usage_event e ON e.event_id = s.event_id WHERE s.batch_id = %s",
            [*late_list, batch.pk])
        loaded, duplicates, conflicts, unmatched, late_count = (int(v) for v in cursor.fetchone())
        cursor.execute("SELECT metric, COUNT(*), SUM(quantity) FROM usage_stage WHERE batch_id = %s GROUP BY metric",
                       [batch.pk])
        found = {metric: (int(count), int(total)) for metric, count, total in cursor.fetchall()}
        cursor.execute("DELETE FROM usage_stage WHERE batch_id = %s", [batch.pk])
        batch.loaded, batch.duplicates, batch.conflicts = loaded, duplicates, conflicts
        batch.unmatched, batch.late = unmatched, late_count
        batch.control_totals = [{"metric": c.metric, "records": c.records, "quantity": c.quantity} for c in controls]
        batch.control_result = [
            {"metric": c.metric, "expected_records": c.records, "expected_quantity": c.quantity,
             "found_records": found.get(c.metric, (0, 0))[0], "found_quantity": found.get(c.metric, (0, 0))[1],
             "ok": found.get(c.metric, (0, 0)) == (c.records, c.quantity)}
            for c in controls
        ]
        batch.status, batch.finished_at = UsageBatch.Status.LOADED, timezone.now()
        batch.save()
        return {"loaded": loaded, "duplicates": duplicates, "conflicts": conflicts, "unmatched": unmatched,
                "late": late_count, "late_periods": {str(k): str(v) if v else None for k, v in late.items()}}


def _date(value) -> dt.date:
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value)[:10])
