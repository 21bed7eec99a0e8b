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
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from integration_hub.usage.models import UsageBatch, UsagePeriod, UsageReject
from integration_hub.usage.rows import Control, Record, Rejected, Staged

WRITE_EVERY = 2_000  # rows per COPY write: the server ingests while the next rows are parsed
STAGE_COLUMNS = ("batch_id", "line", "event_id", "subscription", "metric", "quantity", "occurred_at", "day",
                 "period", "dimensions", "digest")
# On PostgreSQL the load stages into a temporary table of its own session: nothing to
# index, WAL-log, delete or vacuum afterwards, and gone with the session if the worker dies.
TEMP_STAGE = "pg_temp.usage_load_stage"
TEMP_COLUMNS = ("line", "event_id", "subscription", "metric", "quantity", "occurred_at", "day", "period",
                "dimensions", "digest")
Progress = Callable[[int], None]
NULL = "\\N"
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _postgres() -> bool:
    return connection.vendor == "postgresql"


def stage_reset(batch: UsageBatch) -> None:
    """Forget what an interrupted attempt wrote (stage rows, rejects, counts)."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("DELETE FROM usage_stage WHERE batch_id = %s", [batch.pk])
        if _postgres():
            cursor.execute(f"DROP TABLE IF EXISTS {TEMP_STAGE}")
            cursor.execute(f"CREATE TEMPORARY TABLE {TEMP_STAGE.split('.')[1]} (line integer NOT NULL, "
                           "event_id text NOT NULL, subscription text NOT NULL, metric text NOT NULL, "
                           "quantity bigint NOT NULL, occurred_at timestamptz NOT NULL, day date NOT NULL, "
                           "period date NOT NULL, dimensions jsonb, digest text NOT NULL)")
        UsageReject.objects.filter(batch=batch).delete()
        for name in UsageBatch.COUNT_FIELDS:
            setattr(batch, name, 0)
        batch.control_totals, batch.control_result, batch.error = [], [], ""
        batch.status, batch.started_at = UsageBatch.Status.LOADING, timezone.now()
        batch.save()


def stage_drop() -> None:
    if _postgres():
        with connection.cursor() as cursor:
            cursor.execute(f"DROP TABLE IF EXISTS {TEMP_STAGE}")


def _copy_escaped(row: Staged) -> Staged:
    """A row whose text may hold what COPY's text format escapes (the CSV fast path
    hands over only rows that hold none)."""
    line, event_id, subscription, metric, quantity, occurred, day, period, dims, digest = row
    return (line, event_id.translate(_COPY_ESCAPES), subscription.translate(_COPY_ESCAPES),
            metric.translate(_COPY_ESCAPES), quantity, occurred, day, period, dims.translate(_COPY_ESCAPES), digest)


class _Stage:
    """Writes one chunk of stage rows: streamed COPY on PostgreSQL (opened at the first
    row, fed every ``WRITE_EVERY`` rows), batched inserts on SQLite."""

    def __init__(self, cursor, batch_id: int):
        self.cursor, self.batch_id, self.pending, self.copy, self.rows = cursor, batch_id, [], None, 0

    def flush(self) -> None:
        if not self.pending:
            return
        self.rows += len(self.pending)
        if _postgres():
            if self.copy is None:
                self._context = self.cursor.copy(f"COPY {TEMP_STAGE} ({', '.join(TEMP_COLUMNS)}) FROM STDIN")
                self.copy = self._context.__enter__()
            self.copy.write("".join([f"{line}\t{event_id}\t{subscription}\t{metric}\t{quantity}\t{occurred}\t"
                                     f"{day}\t{period}\t{dims or NULL}\t{digest}\n" for line, event_id, subscription,
                                     metric, quantity, occurred, day, period, dims, digest in self.pending]))
        else:
            values = []
            for line, event_id, subscription, metric, quantity, occurred, day, period, dims, digest in self.pending:
                when = dt.datetime.fromisoformat(occurred.replace("Z", "+00:00"))
                values.append((self.batch_id, line, event_id, subscription, metric, quantity, when,
                               dt.date.fromisoformat(day), dt.date.fromisoformat(period), dims, digest))
            self.cursor.executemany(f"INSERT INTO usage_stage ({', '.join(STAGE_COLUMNS)}) VALUES "
                                    f"({', '.join(['%s'] * len(STAGE_COLUMNS))})", values)
        self.pending = []

    def close(self) -> None:
        self.flush()
        if self.copy is not None:
            self.copy = None
            self._context.__exit__(None, None, None)

    def abort(self, exc: BaseException) -> None:
        if self.copy is not None:
            self.copy = None
            self._context.__exit__(type(exc), exc, exc.__traceback__)


class Staging:
    """What staging learnt for the commit: the file's control totals, how many records
    were staged, and the months they fall in."""

    def __init__(self):
        self.controls: list[Control] = []
        self.staged = 0
        self.months: set[str] = set()  # ISO dates, first of the month

    @property
    def periods(self) -> list[dt.date]:
        return sorted(dt.date.fromisoformat(month) for month in self.months)


def rows_stage(batch: UsageBatch, rows: Iterable[Staged | Record | Rejected | Control], *,
               progress: Progress | None = None) -> Staging:
    """Write the rows to the stage in committed chunks (each with the batch's live counts)."""
    staging = Staging()
    months, postgres = staging.months, _postgres()
    iterator = iter(rows)
    while True:
        rejects: list[UsageReject] = []
        seen = 0
        with transaction.atomic(), connection.cursor() as cursor:
            stage = _Stage(cursor, batch.pk)
            pending = stage.pending
            try:
                for row in islice(iterator, settings.HUB_USAGE_LOAD_CHUNK):
                    seen += 1
                    if type(row) is not tuple:
                        if isinstance(row, Record):
                            row = _copy_escaped(row.staged()) if postgres else row.staged()
                        elif isinstance(row, Rejected):
                            rejects.append(UsageReject(batch=batch, line=row.line, reason=row.reason,
                                                       event_id=row.event_id, raw=row.raw[:2000]))
                            continue
                        else:
                            staging.controls.append(row)
                            continue
                    months.add(row[7])
                    pending.append(row)
                    if len(pending) >= WRITE_EVERY:
                        stage.flush()
                        pending = stage.pending
            except BaseException as exc:
                stage.abort(exc)
                raise
            stage.close()
            if not seen:
                break
            UsageReject.objects.bulk_create(rejects, batch_size=1000)
            staging.staged += stage.rows
            batch.read += stage.rows + len(rejects)
            batch.rejected += len(rejects)
            batch.save(update_fields=["read", "rejected"])
        if progress:
            progress(seen)
    return staging


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
_RECORD_COLUMNS = ("event_id, batch_id, line, subscription, metric, quantity, occurred_at, day, period, "
                   "billing_period, dimensions, matched")
_CONFLICT_COLUMNS = ("batch_id, line, event_id, first_batch_id, first_line, subscription, metric, quantity, "
                     "occurred_at, dimensions")


def _billing_case(late: dict[dt.date, dt.date | None], column: str) -> tuple[str, list]:
    if not late:
        return column, []
    params: list = []
    for period, target in late.items():
        params += [period, target]
    return "CASE " + " ".join(f"WHEN {column} = %s THEN %s" for _ in late) + f" ELSE {column} END", params


def stage_commit(batch: UsageBatch, staging: Staging) -> dict[str, int]:
    """Move the staged batch into the usage tables; returns its counts. One transaction."""
    with transaction.atomic(), connection.cursor() as cursor:
        periods = staging.periods
        partitions_ensure(cursor, periods)
        late = billing_periods(periods)
        if _postgres():
            loaded, unmatched, late_count, conflicts, found = _commit_postgres(cursor, batch, staging, late)
        else:
            loaded, unmatched, late_count, conflicts, found = _commit_sqlite(cursor, batch, staging, late)
        duplicates = staging.staged - loaded - conflicts
        batch.loaded, batch.duplicates, batch.conflicts = loaded, duplicates, conflicts
        batch.unmatched, batch.late = unmatched, late_count
        controls = staging.controls
        batch.control_totals = [{"metric": c.metric, "records": c.records, "quantity": c.quantity} for c in controls]
        batch.control_result = [
            {"metric": c.metric, "expected_records": c.records, "expected_quantity": c.quantity,
             "found_records": found.get(c.metric, (0, 0))[0], "found_quantity": found.get(c.metric, (0, 0))[1],
             "ok": found.get(c.metric, (0, 0)) == (c.records, c.quantity)}
            for c in controls
        ]
        batch.status, batch.finished_at = UsageBatch.Status.LOADED, timezone.now()
        batch.save()
        stage_drop()
        return {"loaded": loaded, "duplicates": duplicates, "conflicts": conflicts, "unmatched": unmatched,
                "late": late_count, "late_periods": {str(k): str(v) if v else None for k, v in late.items()}}


def _commit_postgres(cursor, batch: UsageBatch, staging: Staging, late) -> tuple[int, int, int, int, dict]:
    """Every stage row is loaded (its id is new), a duplicate (the id is known with the same
    digest) or a conflict (known, another digest). Writers of ``usage_event`` take turns
    (the table lock), so what is known cannot change under the statement.

    Fast path, one statement (its parts all see ``usage_event`` as it was before it): the
    stage rows whose id is not known claim their key and load, the known ones with another
    digest are kept as conflicts. It holds when no id
    repeats within the file; if one does, the key insert fails on the unique key, the
    statement is rolled back to its savepoint and the file takes the ordered path (the
    first line of each id claims it: ``ON CONFLICT DO NOTHING`` in line order)."""
    cursor.execute("LOCK TABLE usage_event IN SHARE ROW EXCLUSIVE MODE")
    billing, billing_params = _billing_case(late, "s.period")
    late_list = list(late) or [dt.date(1, 1, 1)]
    record_select = (
        f"SELECT s.event_id, %s, s.line, s.subscription, s.metric, s.quantity, s.occurred_at, "
        f"s.day, s.period, {billing}, s.dimensions, "
        f"u.id IS NOT NULL FROM {{source}} LEFT JOIN usage_usagesubscription u ON u.subscription = s.subscription")
    counts = ("SELECT (SELECT COUNT(*) FROM rec), (SELECT COUNT(*) FROM rec WHERE NOT matched), "
              "(SELECT COUNT(*) FROM rec WHERE period = ANY(%s)), (SELECT COUNT(*) FROM cf)")
    new = "NOT EXISTS (SELECT 1 FROM usage_event e WHERE e.event_id = s.event_id)"
    try:
        with transaction.atomic():
            cursor.execute(
                "WITH ev AS (INSERT INTO usage_event (event_id, digest, batch_id, line) "
                f"SELECT s.event_id, s.digest, %s, s.line FROM {TEMP_STAGE} s WHERE {new}), "
                f"rec AS (INSERT INTO usage_record ({_RECORD_COLUMNS}) "
                + record_select.format(source=f"{TEMP_STAGE} s") + f" WHERE {new} RETURNING matched, period), "
                f"cf AS (INSERT INTO usage_conflict ({_CONFLICT_COLUMNS}) SELECT %s, s.line, s.event_id, e.batch_id, "
                f"e.line, s.subscription, s.metric, s.quantity, s.occurred_at, COALESCE(s.dimensions::text, '') "
                f"FROM {TEMP_STAGE} s "
                "JOIN usage_event e ON e.event_id = s.event_id WHERE e.digest <> s.digest RETURNING 1) " + counts,
                [batch.pk, batch.pk, *billing_params, batch.pk, late_list])
            loaded, unmatched, late_count, conflicts = (int(v) for v in cursor.fetchone())
    except IntegrityError:
        # An id repeats within the file: the first line of each claims it.
        cursor.execute(
            "WITH claimed AS (INSERT INTO usage_event (event_id, digest, batch_id, line) "
            f"SELECT event_id, digest, %s, line FROM {TEMP_STAGE} ORDER BY line ON CONFLICT (event_id) DO NOTHING "
            "RETURNING event_id, line), "
            f"rec AS (INSERT INTO usage_record ({_RECORD_COLUMNS}) "
            + record_select.format(source=f"{TEMP_STAGE} s JOIN claimed c ON c.event_id = s.event_id "
                                          "AND c.line = s.line")
            + " RETURNING matched, period), cf AS (SELECT 1 WHERE FALSE) " + counts,
            [batch.pk, batch.pk, *billing_params, late_list])
        loaded, unmatched, late_count, _ = (int(v) for v in cursor.fetchone())
        cursor.execute(
            f"INSERT INTO usage_conflict ({_CONFLICT_COLUMNS}) SELECT %s, s.line, s.event_id, e.batch_id, e.line, "
            f"s.subscription, s.metric, s.quantity, s.occurred_at, COALESCE(s.dimensions::text, '') FROM {TEMP_STAGE} s "
            "JOIN usage_event e ON e.event_id = s.event_id WHERE NOT (e.batch_id = %s AND e.line = s.line) "
            "AND e.digest <> s.digest", [batch.pk, batch.pk])
        conflicts = cursor.rowcount
    found = {}
    if staging.controls:
        cursor.execute(f"SELECT metric, COUNT(*), SUM(quantity) FROM {TEMP_STAGE} GROUP BY metric")
        found = {metric: (int(count), int(total)) for metric, count, total in cursor.fetchall()}
    return loaded, unmatched, late_count, conflicts, found


def _commit_sqlite(cursor, batch: UsageBatch, staging: Staging, late) -> tuple[int, int, int, int, dict]:
    case_sql, case_params = _billing_case(late, "s.period")
    matched = "EXISTS (SELECT 1 FROM usage_usagesubscription u WHERE u.subscription = s.subscription)"
    cursor.execute("INSERT INTO usage_event (event_id, digest, batch_id, line) SELECT event_id, digest, batch_id, "
                   "line FROM usage_stage WHERE batch_id = %s ORDER BY line ON CONFLICT (event_id) DO NOTHING",
                   [batch.pk])
    cursor.execute(f"INSERT INTO usage_record ({_RECORD_COLUMNS}) SELECT s.event_id, s.batch_id, s.line, "
                   f"s.subscription, s.metric, s.quantity, s.occurred_at, s.day, s.period, {case_sql}, "
                   f"NULLIF(s.dimensions, ''), {matched} FROM usage_stage s JOIN usage_event e "
                   f"ON e.event_id = s.event_id AND {_SAME} WHERE s.batch_id = %s", [*case_params, batch.pk])
    cursor.execute(
        f"INSERT INTO usage_conflict ({_CONFLICT_COLUMNS}) SELECT s.batch_id, s.line, s.event_id, e.batch_id, e.line, "
        "s.subscription, s.metric, s.quantity, s.occurred_at, s.dimensions FROM usage_stage s "
        f"JOIN usage_event e ON e.event_id = s.event_id WHERE s.batch_id = %s AND NOT ({_SAME}) "
        "AND e.digest <> s.digest", [batch.pk])
    late_list = list(late) or [dt.date(1, 1, 1)]
    cursor.execute(
        f"SELECT COALESCE(SUM(CASE WHEN {_SAME} THEN 1 ELSE 0 END), 0), "
        f"COALESCE(SUM(CASE WHEN NOT ({_SAME}) AND e.digest <> s.digest THEN 1 ELSE 0 END), 0), "
        f"COALESCE(SUM(CASE WHEN {_SAME} AND NOT {matched} THEN 1 ELSE 0 END), 0), "
        f"COALESCE(SUM(CASE WHEN {_SAME} AND s.period IN ({', '.join(['%s'] * len(late_list))}) "
        "THEN 1 ELSE 0 END), 0) "
        "FROM usage_stage s JOIN usage_event e ON e.event_id = s.event_id WHERE s.batch_id = %s",
        [*late_list, batch.pk])
    loaded, conflicts, unmatched, late_count = (int(v) for v in cursor.fetchone())
    cursor.execute("SELECT metric, COUNT(*), SUM(quantity) FROM usage_stage WHERE batch_id = %s GROUP BY metric",
                   [batch.pk])
    found = {metric: (int(count), int(total)) for metric, count, total in cursor.fetchall()}
    cursor.execute("DELETE FROM usage_stage WHERE batch_id = %s", [batch.pk])
    return loaded, unmatched, late_count, conflicts, found


def _date(value) -> dt.date:
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value)[:10])
