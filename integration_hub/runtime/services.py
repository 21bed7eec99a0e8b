"""The spine every workflow travels: inbox → facts → outbox → connector.

Each function is one state transition, guarded, inside one database transaction.
Tasks only carry ids; enqueueing happens after commit, and anything the broker
loses is found again by ``sweep``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import random
import time
import traceback
import uuid
from collections.abc import Callable, Collection, Iterable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from functools import partial

import structlog
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db import connection as database
from django.db.models import Count, F, Q, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone

from canonical.sql import insert_ignore
from connectors import registry
from connectors.base import Batching, Connector, ExternalDocument, Ignored, ReceivedEvent
from connectors.cache import TTL_SECONDS
from connectors.errors import ConnectorError, NeedsConfiguration, Permanent, Retryable
from connectors.models import Connection
from connectors.payloads import check_event
from connectors.services import connection_vendor, connector_for
from integration_hub.celery import app as celery_app
from integration_hub.runtime import dispatch, metrics, routing
from integration_hub.runtime.failures import DATA_OWNER, Failure, WorkerLost, failure_of, outcome_unknown
from integration_hub.runtime.governor import (
    MAINTENANCE_HOLD,
    GovernorUnavailable,
    Woken,
    governor_admit,
    governor_release,
)
from integration_hub.runtime.models import (
    AuditEntry,
    BusinessTransaction,
    Delivery,
    DeliveryAttempt,
    ExceptionRecord,
    InboundEvent,
    MaintenanceWindow,
)
from integration_hub.runtime.retry import retry_delay
from integration_hub.runtime.sql import insert_ignore_with_parent, transaction_lock

log = structlog.get_logger(__name__)

PROCESS_TASK = "hub.process_inbound"
DELIVER_TASK = "hub.deliver"
# A delivery waiting for another on its serial key looks again after this, if no
# wake-up came first.
SERIAL_RECHECK_SECONDS = 2
SERIAL_HOLD = "waits for"  # how the hold reason of such a delivery begins

Outcome = DeliveryAttempt.Outcome
Team = ExceptionRecord.Team
Category = ExceptionRecord.Category


def _owner(failure: Failure, kind: str) -> str:
    """The team a failure belongs to: its row's, or the data owner of the workflow
    whose business transaction it is (IT operations when no workflow claims it)."""
    if failure.team == DATA_OWNER:
        return dispatch.data_owner(kind, default=Team.IT_OPERATIONS)
    return failure.team


class InvalidTransition(Exception):
    def __init__(self, obj: object, status: str, target: str):
        super().__init__(f"{obj} is {status}; cannot move to {target}")


def _send(task_name: str, object_id: int, countdown: float | None = None, queue: str | None = None) -> None:
    """Publish the task (to ``queue``: ``routing`` chooses it; None for the task's route)."""
    if countdown and settings.HUB_NATIVE_DELAYED_DELIVERY:
        # RabbitMQ's delayed delivery counts whole seconds and refuses less than one:
        # round up, so a task never arrives before its row is due.
        countdown = math.ceil(countdown)
    try:
        celery_app.send_task(task_name, args=[object_id], countdown=countdown, queue=queue)
    except Exception as exc:  # noqa: BLE001 - any broker failure; the row is safe in the database
        log.warning("enqueue_failed", task=task_name, object_id=object_id, error=repr(exc))


# Deliveries ready at once (id, queue), collected while an inbox event is processed so
# that its own task runs them after commit (``_inline_deliveries``); None outside of that.
_inline: ContextVar[list[tuple[int, str | None]] | None] = ContextVar("inline_deliveries", default=None)


def enqueue_after_commit(
    task_name: str, object_id: int, *, countdown: float | None = None, queue: str | None = None
) -> None:
    """Send the task once the current transaction commits (never for a rolled-back row).
    A broker that is down only delays the work: the sweeper finds the row again."""
    inline = _inline.get()
    if task_name == DELIVER_TASK and not countdown and inline is not None:
        transaction.on_commit(partial(inline.append, (object_id, queue)))
        return
    transaction.on_commit(partial(_send, task_name, object_id, countdown, queue))


def _enqueue_delivery(delivery_id: int, action: str, *, countdown: float | None = None) -> None:
    """``hub.deliver`` after commit, on the queue of the action's workflow."""
    enqueue_after_commit(DELIVER_TASK, delivery_id, countdown=countdown, queue=routing.delivery_queue(action))


def _enqueue_event(event_id: int, kind: str) -> None:
    """``hub.process_inbound`` after commit, on the queue of the workflow owning ``kind``."""
    enqueue_after_commit(PROCESS_TASK, event_id, queue=routing.inbound_queue(kind))


@contextlib.contextmanager
def _inline_deliveries() -> Iterator[None]:
    """Collect the deliveries planned ready while the block runs (and committed by it);
    after the block, run up to ``HUB_INLINE_DELIVERIES`` of them in this task and send
    the rest to the broker (all of them if the block failed after a commit). A worker
    that dies before running one leaves a pending row without a message, which the
    sweeper re-enqueues like any message the broker lost."""
    ready: list[tuple[int, str | None]] = []
    collecting, keep = _inline.set(ready), 0
    try:
        yield
        keep = settings.HUB_INLINE_DELIVERIES
    finally:
        _inline.reset(collecting)  # what the deliveries themselves plan goes to the broker
        for delivery_id, queue in ready[keep:]:
            _send(DELIVER_TASK, delivery_id, queue=queue)
    for position, (delivery_id, _) in enumerate(ready[:keep]):
        try:
            delivery_attempt(delivery_id)
        except Exception:
            for rest, queue in ready[position + 1:keep]:
                _send(DELIVER_TASK, rest, queue=queue)
            raise


# ---------------------------------------------------------------- inbox


def inbound_accept(*, source: str, event: ReceivedEvent) -> tuple[InboundEvent, bool]:
    """Store a verified vendor event in the inbox. Returns (row, created); a
    duplicate (same source and event id) returns the existing row untouched.
    Raises MalformedPayload, before touching the database, for an event the inbox
    cannot hold (``connectors.payloads.check_event``).

    The row is committed when this returns (or with the caller's transaction, if one
    is open), and its ``hub.process_inbound`` is sent after that commit; a send that
    fails leaves the row to the sweeper."""
    check_event(source, event)
    now = timezone.now()
    kind = event.subject.split(":", 1)[0]
    txn_values = {"id": uuid.uuid4(), "kind": kind, "subject": f"{source}:{event.subject}", "created_at": now}
    values = {
        "source": source, "external_id": event.external_id, "event_type": event.type,
        "payload": dict(event.payload), "occurred_at": event.occurred_at,
        "status": InboundEvent.Status.RECEIVED, "attempts": 0, "note": "", "received_at": now, "enqueued_at": now,
    }
    stored = _inbox_insert(txn_values, values)
    if stored is None:
        return InboundEvent.objects.get(source=source, external_id=event.external_id), False
    row_id, txn_id = stored
    _enqueue_event(row_id, kind)  # outside a transaction the row is committed: sent at once
    return InboundEvent(pk=row_id, transaction_id=txn_id, **values), True


def _inbox_insert(txn_values: dict, values: dict) -> tuple[int, uuid.UUID] | None:
    """Insert the business transaction (unless its subject has one) and the inbox row,
    atomically; returns (row id, business transaction id), or None for a duplicate.

    On PostgreSQL, outside a transaction, both go in one autocommitted statement: one
    round trip instead of BEGIN, two INSERTs and COMMIT, which was most of a webhook's
    database time. Inside a caller's transaction a savepoint keeps a refused value from
    breaking it, as before. SQLite (no INSERT in a WITH) takes the two-statement path,
    and so does PostgreSQL when the statement inserted nothing: a duplicate (the path
    finds it again) or a business transaction another request committed while the
    statement ran, which a separate statement can see."""
    if database.vendor == "postgresql":
        with transaction.atomic() if database.in_atomic_block else contextlib.nullcontext():
            stored = insert_ignore_with_parent(BusinessTransaction, txn_values, "subject",
                                               InboundEvent, values, "transaction")
        if stored is not None:
            return stored
    with transaction.atomic():
        txn_id = insert_ignore(BusinessTransaction, txn_values) or BusinessTransaction.objects.values_list(
            "pk", flat=True).get(subject=txn_values["subject"])
        row_id = insert_ignore(InboundEvent, {"transaction": txn_id, **values})
    return None if row_id is None else (row_id, txn_id)


def _inbound_start(event_id: int) -> InboundEvent | None:
    """Count an attempt (committed at once, so crash loops stay bounded) and return
    the event, or None if it is finished or gone."""
    started = InboundEvent.objects.filter(pk=event_id, status=InboundEvent.Status.RECEIVED).update(
        attempts=F("attempts") + 1
    )
    return InboundEvent.objects.select_related("transaction").filter(pk=event_id).first() if started else None


def inbound_process(event_id: int) -> None:
    """Translate an inbox event into canonical facts and let the workflows act on
    them, all in one transaction. Data faults open an exception record at once;
    anything else is re-raised and retried by the sweeper up to a budget."""
    event = _inbound_start(event_id)
    if event is None:
        return  # processed already, or deleted while queued
    with _inline_deliveries(), structlog.contextvars.bound_contextvars(
            txn=str(event.transaction_id), inbound_event=event.external_id):
        try:
            translate = registry.event_translator(connection_vendor(event.source))
            facts = translate(event.event_type, event.payload, system=event.source)
            # Calls to other systems happen here, outside the transaction and its locks.
            facts = dispatch.facts_resolve(facts)
            with transaction.atomic():
                # Events about one business object are applied one at a time, in
                # whatever order they arrive; the canonical upserts make order moot.
                # One statement locks the event and its business transaction.
                locked = (InboundEvent.objects.select_for_update(of=("self", "transaction"))
                          .select_related("transaction").get(pk=event.pk))
                if locked.status != InboundEvent.Status.RECEIVED:
                    return
                handled = [fact for fact in facts if not isinstance(fact, Ignored)]
                for fact in handled:
                    dispatch.fact_handler(fact)(fact, locked)
                locked.status = InboundEvent.Status.PROCESSED if handled else InboundEvent.Status.IGNORED
                locked.note = "; ".join(fact.reason for fact in facts if isinstance(fact, Ignored))
                locked.processed_at = timezone.now()
                locked.save(update_fields=["status", "note", "processed_at"])
            log.info("inbound_processed", status=locked.status, facts=len(handled))
        except Exception as exc:  # noqa: BLE001 - classified by the failure table, never swallowed
            _inbound_failed(event, exc)


def _inbound_failed(event: InboundEvent, exc: Exception) -> None:
    """Dead-letter the event at once or after its budget, as the failure table says;
    else try it again after a backoff (Retry-After as a floor)."""
    failure = failure_of(exc)
    team = _owner(failure, event.transaction.kind)
    if not failure.retry:
        _inbound_fail(event, team, failure.category, str(exc) or type(exc).__name__)
        return
    if event.attempts >= settings.HUB_INBOUND_MAX_ATTEMPTS:
        detail = "".join(traceback.format_exception(exc))
        _inbound_fail(event, team, failure.category, repr(exc), detail)
        return
    if failure.outcome == Outcome.ERROR:
        log.error("inbound_failed_will_retry", attempts=event.attempts, exc_info=exc)
    delay = retry_delay(event.attempts, retry_after=getattr(exc, "retry_after", None))
    InboundEvent.objects.filter(pk=event.pk).update(enqueued_at=timezone.now() + dt.timedelta(seconds=delay))
    _send(PROCESS_TASK, event.pk, countdown=delay, queue=routing.inbound_queue(event.transaction.kind))
    log.warning("inbound_retry_scheduled", attempts=event.attempts, delay=round(delay, 2), error=str(exc))


@transaction.atomic
def _inbound_fail(event: InboundEvent, team: str, category: str, summary: str, detail: str = "") -> None:
    locked = InboundEvent.objects.select_for_update().get(pk=event.pk)
    if locked.status != InboundEvent.Status.RECEIVED:
        return
    locked.status, locked.note = InboundEvent.Status.FAILED, summary
    locked.save(update_fields=["status", "note"])
    exception_open(
        transaction_id=locked.transaction_id, inbound_event=locked, owner_team=team, category=category,
        summary=f"{locked.event_type} {locked.external_id}: {summary}", detail=detail,
    )
    log.warning("inbound_dead_lettered", category=category, reason=summary)


# ---------------------------------------------------------------- outbox


def idempotency_key(*, action: str, target: str, object_type: str, object_id: int, version: int = 1) -> str:
    """The key of one intended effect: (workflow action, target, canonical record, version)."""
    return f"{action}:{target}:{object_type}:{object_id}:v{version}"


def delivery_plan(
    *,
    transaction_id: uuid.UUID,
    connection: Connection,
    action: str,
    object_type: str,
    object_id: int,
    after: Delivery | None = None,
    version: int = 1,
    serial: str = "",
) -> Delivery:
    """Write the outbox row for an effect (once: the key is unique) and enqueue it
    after commit if nothing it waits for is still outstanding.

    ``serial`` names what the effect changes in the target (``"invoice:42"``):
    deliveries with the same one are attempted one at a time, because the target
    checks them against each other (a payment and a credit note on one invoice)."""
    key = idempotency_key(
        action=action, target=connection.name, object_type=object_type, object_id=object_id, version=version
    )
    ready = after is None or after.status == Delivery.Status.POSTED
    now = timezone.now()
    values = {
        "idempotency_key": key, "transaction": transaction_id, "connection": connection.pk, "action": action,
        "object_type": object_type, "object_id": object_id, "after": after.pk if after else None,
        "status": Delivery.Status.PENDING, "attempts": 0, "next_attempt_at": now,
        "enqueued_at": now if ready else None, "hold_reason": "", "external_id": "", "external_number": "",
        "last_error": "", "lookup_first": False, "serial_key": serial, "created_at": now, "updated_at": now,
    }
    delivery_id = insert_ignore(Delivery, values)
    if delivery_id is None:  # planned before: the same effect, once
        return Delivery.objects.get(idempotency_key=key)
    if ready:
        _enqueue_delivery(delivery_id, action)
    for name in ("transaction", "connection", "after"):
        values[f"{name}_id"] = values.pop(name)
    return Delivery(pk=delivery_id, **values)


@transaction.atomic
def delivery_claim(delivery_id: int, *, handed: bool = False) -> Delivery | None:
    """Take a due delivery for one attempt (pending → in flight), or None if it is
    not due, waits for another delivery, or another worker has it. A ``handed``
    delivery was held for a concurrency slot that is now its own: it is due at once."""
    # NO KEY UPDATE, not UPDATE: a transaction that holds a KEY SHARE lock on the row
    # (one inserting a delivery that waits for this one, checking its foreign key, or
    # a workflow planning such a dependent) must not make the claim skip it.
    delivery = (
        Delivery.objects.select_for_update(skip_locked=True, no_key=True, of=("self",))
        .select_related("connection", "after")
        .filter(pk=delivery_id)
        .first()
    )
    now = timezone.now()
    if delivery is None or delivery.status not in Delivery.WAITING or (delivery.next_attempt_at > now and not handed):
        return None
    if delivery.after is not None and delivery.after.status != Delivery.Status.POSTED:
        return None
    if delivery.serial_key and _serial_wait(delivery, now):
        return None
    delivery.status, delivery.claimed_at, delivery.hold_reason = Delivery.Status.IN_FLIGHT, now, ""
    delivery.attempts += 1
    delivery.save(update_fields=["status", "claimed_at", "attempts", "hold_reason", "updated_at"])
    return delivery


def _serial_wait(delivery: Delivery, now: dt.datetime) -> bool:
    """Hold the delivery if another one with its serial key is in flight. The
    advisory lock makes check-then-claim atomic across workers; its holder only
    reads other rows, so it never waits on one while holding it."""
    transaction_lock(f"delivery-serial:{delivery.serial_key}")
    busy = (Delivery.objects.filter(serial_key=delivery.serial_key, status=Delivery.Status.IN_FLIGHT)
            .exclude(pk=delivery.pk).values_list("action", flat=True).first())
    if busy is None:
        return False
    # Woken when the other is done (_serial_wake); the countdown is the fallback.
    delivery.status = Delivery.Status.HELD
    delivery.hold_reason = f"{SERIAL_HOLD} {busy} on the same {delivery.serial_key.split(':')[0]}"[:200]
    delivery.next_attempt_at = delivery.enqueued_at = now + dt.timedelta(seconds=SERIAL_RECHECK_SECONDS)
    delivery.save(update_fields=["status", "hold_reason", "next_attempt_at", "enqueued_at", "updated_at"])
    _enqueue_delivery(delivery.pk, delivery.action, countdown=SERIAL_RECHECK_SECONDS)
    metrics.hold_observe(delivery.connection.name, delivery.hold_reason)
    return True


def _serial_wake(delivery: Delivery) -> None:
    """The delivery leaves flight: the next one waiting on its serial key may go."""
    if not delivery.serial_key:
        return
    now = timezone.now()
    waiting = (Delivery.objects.filter(serial_key=delivery.serial_key, status=Delivery.Status.HELD)
               .order_by("pk").values_list("pk", "action").first())
    if waiting is not None:
        waiting_id, action = waiting
        Delivery.objects.filter(pk=waiting_id).update(next_attempt_at=now, enqueued_at=now)
        _enqueue_delivery(waiting_id, action)


def delivery_attempt(delivery_id: int) -> None:
    """Claim the delivery, call its connector once, and record what happened. Where the
    action and the connector take batches, the call carries the due deliveries of the
    same action to the same connection along (``_riders_claim``).

    When the call frees a concurrency slot another delivery is queued for, the
    governor hands the slot to that delivery in the same write, and this worker
    takes it next: no broker round trip, no second admission. It does so for
    ``HUB_HANDOVER_SECONDS`` into the task; later waiters are woken through the broker."""
    started = time.monotonic()
    deadline = started + settings.CELERY_TASK_SOFT_TIME_LIMIT  # a batch is sized to fit before it

    def hand_over() -> bool:
        return time.monotonic() < started + settings.HUB_HANDOVER_SECONDS

    woken = _attempt(delivery_claim(delivery_id), slot=None, hand_over=hand_over(), deadline=deadline)
    while woken is not None:
        delivery = delivery_claim(woken.delivery_id, handed=True)
        if delivery is None:
            # Taken or changed meanwhile: its slot goes back (and on, to the next waiter).
            woken = _slot_release(woken.connection_id, woken.token, outcome="neutral", hand_over=hand_over())
            continue
        woken = _attempt(delivery, slot=woken.token, hand_over=hand_over(), deadline=deadline)


def _slot_release(connection_id: int, token: str, *, outcome: str, retry_after: float | None = None,
                  hand_over: bool, calls: int = 1, settled: Collection[int] = ()) -> Woken | None:
    """Give a concurrency slot back. The delivery queued for it is woken through the
    broker, or returned when the slot was handed over to it (admitted as ``calls``)."""
    try:
        woken = governor_release(connection_id, token=token, outcome=outcome, retry_after=retry_after,
                                 hand_over_slot=hand_over, calls=calls, settled=settled)
    except GovernorUnavailable:
        return None  # the slot's lease frees it
    if woken is not None and woken.token is None:
        delivery_wake(woken.delivery_id)
        return None
    return woken


def _attempt(delivery: Delivery | None, *, slot: str | None, hand_over: bool, deadline: float) -> Woken | None:
    """One attempt of a claimed delivery; ``slot`` is a concurrency slot handed over to
    it, else the governor is asked first. A batch is sized to end well before
    ``deadline`` (monotonic). Returns a delivery whose slot this call handed over
    (``hand_over``), for the caller to take next."""
    if delivery is None:
        return None
    with structlog.contextvars.bound_contextvars(txn=str(delivery.transaction_id), delivery=delivery.pk):
        batch = _batch_of(delivery)
        calls = batch.declared.calls if batch else 1
        token = slot or f"{delivery.pk}:{delivery.claimed_at.timestamp()}"
        if slot is None:
            try:
                decision = governor_admit(delivery.connection_id, token=token, waiter=delivery.pk, calls=calls)
            except GovernorUnavailable as exc:
                # Without its state the governor cannot protect the target: wait, don't call.
                delivery_hold(delivery, reason=f"governor unavailable: {exc}", until=time.time() + 5)
                return None
            if not decision.admitted:
                delivery_hold(delivery, reason=decision.reason, until=decision.retry_at)
                return None
        released, handed = False, None
        deliveries = ([delivery, *_riders_claim(delivery, _batch_size(delivery, batch.declared, deadline) - 1)]
                      if batch else [delivery])

        def release(outcome: str, retry_after: float | None = None) -> None:
            # The slot is the target's: give it back the moment the call is over,
            # before our own bookkeeping. If the store is unreachable, the lease frees it.
            nonlocal released, handed
            released = True
            handed = _slot_release(delivery.connection_id, token, outcome=outcome, retry_after=retry_after,
                                   hand_over=hand_over, calls=calls, settled=[d.pk for d in deliveries[1:]])

        try:
            if batch:
                _attempt_batch(deliveries, batch, release)
            else:
                _attempt_call(delivery, release)
        finally:
            if not released:
                release("failure")
    return handed


@transaction.atomic
def maintenance_window_end(window: MaintenanceWindow, *, user, reason: str) -> int:
    """The target is back before the window said: end the window now, and let the
    deliveries it holds go as at a planned end, spread over the drain period (after
    the few seconds other workers may still see the window in their cache). Returns
    how many deliveries were released."""
    now = timezone.now()
    if window.ends_at > now:
        window.ends_at = max(now, window.starts_at)
        window.save(update_fields=["ends_at"])
    audit_record(actor=user, action="end_maintenance", obj=window, reason=reason)
    held = list(Delivery.objects.select_for_update(skip_locked=True).filter(
        connection_id=window.connection_id, status=Delivery.Status.HELD, hold_reason__startswith=MAINTENANCE_HOLD))
    for delivery in held:
        delay = TTL_SECONDS + random.uniform(0, settings.HUB_MAINTENANCE_DRAIN_SECONDS)
        delivery.next_attempt_at = delivery.enqueued_at = now + dt.timedelta(seconds=delay)
        delivery.updated_at = now
        _enqueue_delivery(delivery.pk, delivery.action, countdown=delay)
    Delivery.objects.bulk_update(held, ["next_attempt_at", "enqueued_at", "updated_at"])
    log.info("maintenance_window_ended", connection=window.connection_id, released=len(held), reason=reason)
    return len(held)


def delivery_wake(delivery_id: int) -> None:
    """A held delivery's reason is gone (a concurrency slot freed): make it due now."""
    now = timezone.now()
    if Delivery.objects.filter(pk=delivery_id, status=Delivery.Status.HELD).update(next_attempt_at=now, enqueued_at=now):
        action = Delivery.objects.values_list("action", flat=True).get(pk=delivery_id)
        _send(DELIVER_TASK, delivery_id, queue=routing.delivery_queue(action))


def deliveries_retry_now(deliveries: Iterable[Delivery], *, reason: str) -> int:
    """What these deliveries failed on is gone (a record they need now exists): a dead one
    is replayed with a fresh retry budget, one waiting for its backoff is due now. Returns
    how many were sent. One in flight is left alone: its own attempt decides."""
    sent = 0
    for delivery in deliveries:
        with transaction.atomic():
            if delivery.status == Delivery.Status.DEAD:
                try:
                    delivery_replay(delivery, user=None, reason=reason)
                except InvalidTransition:  # replayed meanwhile
                    continue
            else:
                now = timezone.now()
                if not Delivery.objects.filter(pk=delivery.pk, status__in=Delivery.WAITING).update(
                        next_attempt_at=now, enqueued_at=now):
                    continue
                _enqueue_delivery(delivery.pk, delivery.action)
                log.info("delivery_due_now", delivery=delivery.pk, reason=reason)
        sent += 1
    return sent


@dataclass(frozen=True)
class _Batch:
    """A delivery's action in batches: the action's way, the connector, and its declaration."""

    send: dispatch.BatchSend
    connector: Connector
    declared: Batching


def _batch_of(delivery: Delivery) -> _Batch | None:
    """How the delivery's action batches on its connection's connector, if both offer it."""
    send = dispatch.delivery_action(delivery.action).batch
    if send is None:
        return None
    try:
        connector = connector_for(delivery.connection)
    except Exception:  # noqa: BLE001 - the single attempt records why the connector cannot be built
        return None
    if not isinstance(connector, send.capability):
        return None
    return _Batch(send, connector, send.batching(connector))


# Seconds a delivery of the last batches took, per (connection, action), in this worker
# process: the next batch carries as many as fit its time at that pace (``_batch_size``).
_batch_pace: dict[tuple[int, str], float] = {}
# A batch may take this share of the time its task has left before the soft time limit.
BATCH_TIME_SHARE = 2 / 3


def _batch_size(lead: Delivery, declared: Batching, deadline: float) -> int:
    """How many deliveries the batch ``lead`` leads carries: as many as fit in
    ``BATCH_TIME_SHARE`` of the time left before ``deadline`` and in the connector's
    ``seconds``, at the pace of the last batches; the declared ``first`` before any."""
    pace = _batch_pace.get((lead.connection_id, lead.action))
    if pace is None:
        return max(1, min(declared.size, declared.first or declared.size))
    budget = (deadline - time.monotonic()) * BATCH_TIME_SHARE
    if declared.seconds is not None:
        budget = min(budget, declared.seconds)
    return max(1, min(declared.size, int(budget / pace)))


def _batch_timed(lead: Delivery, seconds: float, count: int, *, cut_short: bool) -> None:
    """Learn the pace from a batch's time (averaged with the last). A batch cut short
    (time limit, timeout) would have taken longer than ``seconds``: the pace doubles."""
    key = (lead.connection_id, lead.action)
    pace, last = seconds / count, _batch_pace.get(key)
    if cut_short:
        pace = 2 * max(pace, last or pace)
    elif last is not None:
        pace = (pace + last) / 2
    _batch_pace[key] = pace


@transaction.atomic
def _riders_claim(lead: Delivery, limit: int) -> list[Delivery]:
    """Claim up to ``limit`` more deliveries to go in the lead's batch: the same action
    to the same connection, due (pending and due, or held by the governor, whose
    reasons the batch's admission has just settled), not waiting for another delivery
    and, with a serial key, with nothing of that key in flight (checked under the key's
    lock, as ``delivery_claim`` does)."""
    if limit <= 0:
        return []
    now = timezone.now()
    candidates = list(
        Delivery.objects.select_for_update(skip_locked=True, no_key=True, of=("self",))
        .select_related("connection")
        .filter(connection_id=lead.connection_id, action=lead.action)
        .filter(Q(status=Delivery.Status.PENDING, next_attempt_at__lte=now)
                | (Q(status=Delivery.Status.HELD) & ~Q(hold_reason__startswith=SERIAL_HOLD)))
        .filter(Q(after__isnull=True) | Q(after__status=Delivery.Status.POSTED))
        .exclude(pk=lead.pk)
        .order_by("next_attempt_at", "pk")[:limit]
    )
    keys = sorted({delivery.serial_key for delivery in candidates if delivery.serial_key})
    for key in keys:  # in one order, so two batches never wait on each other
        transaction_lock(f"delivery-serial:{key}")
    busy = set(Delivery.objects.filter(serial_key__in=keys, status=Delivery.Status.IN_FLIGHT)
               .values_list("serial_key", flat=True)) if keys else set()
    riders = [delivery for delivery in candidates if not delivery.serial_key or delivery.serial_key not in busy]
    for delivery in riders:
        delivery.status, delivery.claimed_at, delivery.hold_reason = Delivery.Status.IN_FLIGHT, now, ""
        delivery.attempts += 1
        delivery.updated_at = now
    Delivery.objects.bulk_update(riders, ["status", "claimed_at", "attempts", "hold_reason", "updated_at"])
    return riders


def _attempt_batch(deliveries: list[Delivery], batch: _Batch, release: Callable[..., None]) -> None:
    """One batch operation through the connector for claimed deliveries: tell the
    governor how it went, then record each delivery's own answer as its attempt. A
    failure of the whole batch is every delivery's failure (after an unknown outcome,
    each is looked up first next time: the batch send looks every document up)."""
    started, clock = timezone.now(), time.monotonic()
    timed, cut_short = True, False  # a batch that failed fast says nothing about the pace
    try:
        answers = list(batch.send.send(batch.connector, deliveries))
        if len(answers) != len(deliveries):
            raise RuntimeError(f"the batch send answered {len(answers)} times for {len(deliveries)} deliveries")
    except SoftTimeLimitExceeded:
        release("failure")
        cut_short = True
        answers = [Retryable("the task's time limit cut the batch short", outcome_unknown=True)] * len(deliveries)
    except Exception as exc:  # noqa: BLE001 - classified and recorded, never swallowed silently
        release(failure_of(exc).governor, getattr(exc, "retry_after", None))
        if not isinstance(exc, ConnectorError):
            log.exception("delivery_batch_unexpected_error", deliveries=len(deliveries))
        timed = cut_short = bool(getattr(exc, "outcome_unknown", False))  # a timeout: it took longer than this
        answers = [exc] * len(deliveries)
    else:
        release("success")
    seconds = time.monotonic() - clock
    if timed:
        _batch_timed(deliveries[0], seconds, len(deliveries), cut_short=cut_short)
    note = f"posted in a batch of {len(deliveries)}" if len(deliveries) > 1 else ""
    for delivery, answer in zip(deliveries, answers, strict=True):
        with structlog.contextvars.bound_contextvars(txn=str(delivery.transaction_id), delivery=delivery.pk):
            if isinstance(answer, Exception):
                delivery_record_failure(delivery, answer, started=started, seconds=seconds)
            else:
                _record_posted(delivery, answer, started=started, seconds=seconds, note=note)
    log.info("delivery_batch_done", deliveries=len(deliveries), seconds=round(seconds, 2),
             failed=sum(isinstance(answer, Exception) for answer in answers))


def _record_posted(delivery: Delivery, document: ExternalDocument, *, started: dt.datetime, seconds: float,
                   note: str) -> None:
    try:
        delivery_record_success(delivery, document, started=started, seconds=seconds, note=note)
    except IntegrityError as exc:
        # The target holds the document, but binding its id clashes with an existing
        # cross-reference (e.g. the target was restored from an old backup): a
        # person must look, so dead-letter instead of retrying.
        conflict = Permanent(f"posted as {document.external_id}, but its binding conflicts: {exc}")
        delivery_record_failure(delivery, conflict, started=started, seconds=seconds)


def _attempt_call(delivery: Delivery, release: Callable[..., None]) -> None:
    """One call through the connector: tell the governor how it went (``release``),
    then record it as an attempt. After an unknown outcome the action's ``lookup``
    runs first, and a document it finds is the answer: nothing is sent again."""
    action = dispatch.delivery_action(delivery.action)
    started, clock = timezone.now(), time.monotonic()
    found = False
    try:
        connector = connector_for(delivery.connection)
        if not isinstance(connector, action.capability):
            raise NeedsConfiguration(
                f"connection {delivery.connection.name} ({delivery.connection.vendor}) cannot do {action.name}"
            )
        document = action.lookup(connector, delivery) if delivery.lookup_first and action.lookup else None
        found = document is not None
        if document is None:
            document = action.send(connector, delivery)
    except SoftTimeLimitExceeded:
        release("failure")
        failure = Retryable("the task's time limit cut the call short", outcome_unknown=True)
        delivery_record_failure(delivery, failure, started=started, seconds=time.monotonic() - clock)
        return
    except Exception as exc:  # noqa: BLE001 - classified and recorded, never swallowed silently
        release(failure_of(exc).governor, getattr(exc, "retry_after", None))
        if not isinstance(exc, ConnectorError):
            log.exception("delivery_unexpected_error")
        delivery_record_failure(delivery, exc, started=started, seconds=time.monotonic() - clock)
        return
    seconds = time.monotonic() - clock
    release("success")
    note = "found in the target after an unknown outcome; not sent again" if found else ""
    _record_posted(delivery, document, started=started, seconds=seconds, note=note)


@transaction.atomic
def delivery_hold(delivery: Delivery, *, reason: str, until: float) -> Delivery:
    """The governor said not now: park the delivery without spending its retry
    budget, visible as held with the reason, until ``until`` (epoch seconds)."""
    locked = Delivery.objects.select_for_update().get(pk=delivery.pk)
    if locked.status != Delivery.Status.IN_FLIGHT:
        return locked
    now = timezone.now()
    resume = dt.datetime.fromtimestamp(until, tz=dt.UTC)
    locked.status, locked.hold_reason = Delivery.Status.HELD, reason[:200]
    locked.attempts -= 1  # the claim counted an attempt that never happened
    locked.next_attempt_at = max(resume, now)
    delay = (locked.next_attempt_at - now).total_seconds()
    if delay <= settings.HUB_REENQUEUE_AFTER_SECONDS:
        locked.enqueued_at = locked.next_attempt_at
        _enqueue_delivery(locked.pk, locked.action, countdown=delay)
    else:
        locked.enqueued_at = None
    locked.save(update_fields=["status", "hold_reason", "attempts", "next_attempt_at", "enqueued_at", "updated_at"])
    metrics.hold_observe(locked.connection.name, reason)
    log.info("delivery_held", reason=reason, until=locked.next_attempt_at.isoformat())
    return locked


def _attempt_row(delivery: Delivery, *, started: dt.datetime, seconds: float, outcome: str, **fields) -> None:
    """Append the attempt to the delivery's log (the caller holds the delivery's row
    lock). Its number counts the log, not ``attempts``: a replay restarts that budget,
    and a hold gives back an attempt that never happened."""
    metrics.attempt_observe(delivery.connection.name, outcome, seconds)
    logged = DeliveryAttempt.objects.filter(delivery=delivery.pk).order_by().values("delivery")
    DeliveryAttempt.objects.create(
        delivery=delivery,
        # Counted inside the INSERT, not by a round trip of its own.
        number=Coalesce(Subquery(logged.annotate(count=Count("pk")).values("count")), 0) + 1,
        started_at=started,
        duration_ms=round(seconds * 1000),
        outcome=outcome,
        **fields,
    )


@transaction.atomic
def delivery_record_success(
    delivery: Delivery, document: ExternalDocument, *, started: dt.datetime, seconds: float, note: str = ""
) -> Delivery:
    locked = Delivery.objects.select_for_update(of=("self",)).select_related("connection").get(pk=delivery.pk)
    _attempt_row(locked, started=started, seconds=seconds, outcome=Outcome.POSTED, message=note)
    if locked.status == Delivery.Status.POSTED:
        return locked  # a replay or a redelivered message: nothing more to do
    if locked.status != Delivery.Status.IN_FLIGHT:
        raise InvalidTransition(locked, locked.status, Delivery.Status.POSTED)
    locked.status = Delivery.Status.POSTED
    locked.external_id, locked.external_number = document.external_id, document.number or ""
    locked.last_error, locked.lookup_first = "", False
    locked.save(update_fields=["status", "external_id", "external_number", "last_error", "lookup_first", "updated_at"])
    dispatch.delivery_action(locked.action).bind(locked, document)
    metrics.delivery_observe(locked.connection.name, locked.action, "posted")
    _serial_wake(locked)
    dependents = list(locked.dependents.filter(status=Delivery.Status.PENDING).values_list("pk", "action"))
    if dependents:
        now = timezone.now()
        Delivery.objects.filter(pk__in=[pk for pk, _ in dependents]).update(enqueued_at=now, updated_at=now)
        for pk, action in dependents:
            _enqueue_delivery(pk, action)
    log.info("delivery_posted", action=locked.action, external_id=locked.external_id, number=locked.external_number)
    return locked


@transaction.atomic
def delivery_record_failure(delivery: Delivery, exc: Exception, *, started: dt.datetime, seconds: float) -> Delivery:
    """Record the failed attempt, then, as the failure table says: schedule the next
    try (full-jitter backoff, Retry-After as a floor) or, for a failure that is not
    retried or an exhausted budget, dead-letter it and open an exception."""
    locked = Delivery.objects.select_for_update().get(pk=delivery.pk)
    return _delivery_failed(locked, exc, started=started, seconds=seconds)


def _delivery_failed(locked: Delivery, exc: Exception, *, started: dt.datetime, seconds: float) -> Delivery:
    failure = failure_of(exc)
    unknown = outcome_unknown(exc)
    message = str(exc) or type(exc).__name__
    _attempt_row(
        locked, started=started, seconds=seconds, outcome=failure.outcome, error_class=type(exc).__name__,
        message=message[:2000], http_status=getattr(exc, "http_status", None), outcome_unknown=unknown,
    )
    if locked.status != Delivery.Status.IN_FLIGHT:
        return locked
    _serial_wake(locked)
    # Once unknown, the effect must be looked up before anything is sent again,
    # however the attempts after it fail.
    locked.lookup_first = locked.lookup_first or unknown
    locked.last_error = message[:2000]
    if failure.retry and locked.attempts < settings.HUB_DELIVERY_MAX_ATTEMPTS:
        delay = retry_delay(locked.attempts, retry_after=getattr(exc, "retry_after", None)) if failure.backoff else 0
        if unknown:
            # A lookup while the target still processes the lost call would miss it:
            # not before the settle time (and twice the call's length) since it began.
            settled = started + dt.timedelta(seconds=max(settings.HUB_UNKNOWN_OUTCOME_SETTLE_SECONDS, 2 * seconds))
            delay = max(delay, (settled - timezone.now()).total_seconds())
        locked.status = Delivery.Status.PENDING
        locked.next_attempt_at = timezone.now() + dt.timedelta(seconds=delay)
        if delay <= settings.HUB_REENQUEUE_AFTER_SECONDS:
            # Short waits ride on a countdown; long ones are left to the sweeper, so
            # no message ever waits near the broker's visibility timeout.
            locked.enqueued_at = locked.next_attempt_at
            _enqueue_delivery(locked.pk, locked.action, countdown=delay)
        else:
            locked.enqueued_at = None
        locked.save(update_fields=[
            "status", "next_attempt_at", "enqueued_at", "last_error", "lookup_first", "updated_at",
        ])
        log.info("delivery_retry_scheduled", outcome=failure.outcome, delay=round(delay, 2), error=message)
        return locked

    locked.status = Delivery.Status.DEAD
    locked.save(update_fields=["status", "last_error", "lookup_first", "updated_at"])
    metrics.delivery_observe(locked.connection.name, locked.action, "dead")
    exception_open(
        transaction_id=locked.transaction_id, delivery=locked,
        owner_team=_owner(failure, locked.transaction.kind), category=failure.category,
        summary=f"{locked.action} to {locked.connection.name} failed: {message}"[:500],
        detail=f"{type(exc).__name__} after {locked.attempts} attempt(s): {message}",
    )
    log.warning("delivery_dead_lettered", category=failure.category, error=message)
    return locked


# ---------------------------------------------------------------- exceptions and replay


def exception_open(
    *,
    transaction_id: uuid.UUID,
    owner_team: str,
    category: str,
    summary: str,
    detail: str = "",
    delivery: Delivery | None = None,
    inbound_event: InboundEvent | None = None,
) -> ExceptionRecord:
    return ExceptionRecord.objects.create(
        transaction_id=transaction_id, delivery=delivery, inbound_event=inbound_event,
        owner_team=owner_team, category=category, summary=summary[:500], detail=detail,
    )


def audit_record(
    *, actor, action: str, obj: object, reason: str, changes: dict | None = None,
    transaction_id: uuid.UUID | None = None,
) -> AuditEntry:
    """Write who did what to which record, when and why."""
    return AuditEntry.objects.create(
        actor=actor if getattr(actor, "pk", None) else None, action=action,
        object_type=type(obj)._meta.model_name, object_id=str(obj.pk), reason=reason,
        changes=changes or {}, transaction_id=transaction_id or getattr(obj, "transaction_id", None),
    )


def _resolve_open(records, *, user, note: str) -> None:
    records.filter(status__in=ExceptionRecord.ACTIVE).update(
        status=ExceptionRecord.Status.RESOLVED, resolution=note, resolved_by=user, resolved_at=timezone.now()
    )


@transaction.atomic
def delivery_replay(delivery: Delivery, *, user, reason: str) -> Delivery:
    """Give a dead delivery a fresh retry budget. Safe to repeat: the connector looks
    the document up before creating it, and a posted delivery is left alone."""
    locked = Delivery.objects.select_for_update().get(pk=delivery.pk)
    if locked.status != Delivery.Status.DEAD:
        raise InvalidTransition(locked, locked.status, Delivery.Status.PENDING)
    now = timezone.now()
    locked.status, locked.attempts = Delivery.Status.PENDING, 0
    locked.next_attempt_at = locked.enqueued_at = now
    locked.save(update_fields=["status", "attempts", "next_attempt_at", "enqueued_at", "updated_at"])
    _resolve_open(locked.exceptions.all(), user=user, note=f"Replayed by {user or 'the hub'}: {reason}")
    audit_record(actor=user, action="replay", obj=locked, reason=reason)
    _enqueue_delivery(locked.pk, locked.action)
    log.info("delivery_replayed", delivery=locked.pk, by=str(user or "the hub"), reason=reason)
    return locked


@transaction.atomic
def inbound_replay(event: InboundEvent, *, user, reason: str) -> InboundEvent:
    """Process a failed inbox event again (after its cause was fixed)."""
    locked = InboundEvent.objects.select_for_update(of=("self",)).select_related("transaction").get(pk=event.pk)
    if locked.status != InboundEvent.Status.FAILED:
        raise InvalidTransition(locked, locked.status, InboundEvent.Status.RECEIVED)
    locked.status, locked.attempts, locked.enqueued_at = InboundEvent.Status.RECEIVED, 0, timezone.now()
    locked.save(update_fields=["status", "attempts", "enqueued_at"])
    _resolve_open(locked.exceptions.all(), user=user, note=f"Replayed by {user}: {reason}")
    audit_record(actor=user, action="replay", obj=locked, reason=reason)
    _enqueue_event(locked.pk, locked.transaction.kind)
    log.info("inbound_replayed", inbound_event=locked.pk, by=str(user), reason=reason)
    return locked


def exception_replay(record: ExceptionRecord, *, user, reason: str) -> None:
    if record.delivery_id is not None:
        delivery_replay(record.delivery, user=user, reason=reason)
    elif record.inbound_event_id is not None:
        inbound_replay(record.inbound_event, user=user, reason=reason)
    else:
        raise InvalidTransition(record, "not replayable", "replayed")


@transaction.atomic
def exception_resolve(record: ExceptionRecord, *, user, note: str) -> None:
    """Close an exception without replaying it (handled by hand in the target)."""
    _resolve_open(ExceptionRecord.objects.filter(pk=record.pk), user=user,
                  note=f"Resolved by {user or 'the hub'}: {note}")
    audit_record(actor=user, action="resolve", obj=record, reason=note)


# ---------------------------------------------------------------- sweeper


@dataclass(frozen=True)
class SweepReport:
    inbound_requeued: int
    deliveries_requeued: int
    in_flight_recovered: int


def sweep(*, limit: int = 500) -> SweepReport:
    """Re-enqueue what the broker may have lost: inbox rows and due deliveries whose
    message is overdue, and in-flight deliveries whose worker died (their outcome is
    unknown, so the connector looks the document up before re-sending)."""
    now = timezone.now()
    stale = now - dt.timedelta(seconds=settings.HUB_REENQUEUE_AFTER_SECONDS)
    with transaction.atomic():
        events = list(
            InboundEvent.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("transaction")
            .filter(status=InboundEvent.Status.RECEIVED)
            .exclude(enqueued_at__gt=stale)
            .order_by("enqueued_at")[:limit]
        )
        for event in events:
            event.enqueued_at = now
            _enqueue_event(event.pk, event.transaction.kind)
        InboundEvent.objects.bulk_update(events, ["enqueued_at"])

    with transaction.atomic():
        deliveries = list(
            Delivery.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(status__in=Delivery.WAITING, next_attempt_at__lte=now)
            .exclude(enqueued_at__gt=stale)
            .exclude(after__isnull=False, after__status__in=[s for s in Delivery.Status if s != Delivery.Status.POSTED])
            .order_by("next_attempt_at")[:limit]
        )
        for delivery in deliveries:
            delivery.enqueued_at = now
            _enqueue_delivery(delivery.pk, delivery.action)
        Delivery.objects.bulk_update(deliveries, ["enqueued_at"])

    lease = now - dt.timedelta(seconds=settings.HUB_IN_FLIGHT_LEASE_SECONDS)
    recovered = 0
    for delivery_id in Delivery.objects.filter(status=Delivery.Status.IN_FLIGHT, claimed_at__lt=lease).values_list(
        "pk", flat=True
    )[:limit]:
        recovered += _delivery_recover(delivery_id, lease)
    report = SweepReport(len(events), len(deliveries), recovered)
    if any((report.inbound_requeued, report.deliveries_requeued, report.in_flight_recovered)):
        log.info("sweep", **report.__dict__)
    return report


@transaction.atomic
def _delivery_recover(delivery_id: int, lease: dt.datetime) -> int:
    delivery = (
        Delivery.objects.select_for_update(skip_locked=True)
        .select_related("connection", "transaction")
        .filter(pk=delivery_id, status=Delivery.Status.IN_FLIGHT, claimed_at__lt=lease)
        .first()
    )
    if delivery is None:
        return 0
    _delivery_failed(delivery, WorkerLost(), started=delivery.claimed_at, seconds=0)
    return 1
