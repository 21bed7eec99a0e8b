"""What people do to exceptions: replay many, correct and replay. Every change is
audited (who, when, why, before and after)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.db import transaction

from integration_hub.runtime import dispatch, services
from integration_hub.runtime.dispatch import CorrectionRejected
from integration_hub.runtime.models import Delivery, ExceptionRecord, InboundEvent

__all__ = ["BulkReplay", "CorrectionRejected", "exception_edit_and_replay", "exceptions_replay",
           "inbound_edit_and_replay"]


@dataclass
class BulkReplay:
    replayed: list[int] = field(default_factory=list)
    skipped: dict[int, str] = field(default_factory=dict)


def exceptions_replay(records, *, user, reason: str) -> BulkReplay:
    """Replay every open exception in ``records``, each on its own; one that cannot
    be replayed is reported, never stops the others."""
    result = BulkReplay()
    for record in records.filter(status=ExceptionRecord.Status.OPEN).select_related("delivery", "inbound_event"):
        try:
            services.exception_replay(record, user=user, reason=reason)
            result.replayed.append(record.pk)
        except services.InvalidTransition as exc:
            result.skipped[record.pk] = str(exc)
    return result


@transaction.atomic
def inbound_edit_and_replay(event: InboundEvent, *, payload: dict[str, Any], user, reason: str) -> InboundEvent:
    """Replace a failed event's payload (a fix of what the vendor sent) and process it
    again. The original payload is kept in the audit trail."""
    locked = InboundEvent.objects.select_for_update().get(pk=event.pk)
    if locked.status != InboundEvent.Status.FAILED:
        raise services.InvalidTransition(locked, locked.status, "edited")
    if not isinstance(payload, dict):
        raise CorrectionRejected("the payload must be a JSON object")
    before = locked.payload
    locked.payload = payload
    locked.save(update_fields=["payload"])
    services.audit_record(actor=user, action="edit", obj=locked, reason=reason,
                          changes={"payload": {"before": before, "after": payload}})
    return services.inbound_replay(locked, user=user, reason=reason)


def _correction(delivery: Delivery) -> dispatch.Correction | None:
    return dispatch.workflow_of_action(delivery.action).correct


def correction_template(record: ExceptionRecord) -> dict[str, Any] | None:
    """What a person edits to fix the exception: the event's payload, or the
    correctable fields of the record behind the delivery (None if not correctable)."""
    if record.inbound_event_id is not None:
        return record.inbound_event.payload
    if record.delivery_id is not None and (correction := _correction(record.delivery)) is not None:
        return correction.template(record.delivery)
    return None


def exception_edit_and_replay(record: ExceptionRecord, *, user, reason: str,
                              payload: dict | None = None, corrections: dict | None = None) -> None:
    """Correct what the exception is about, then replay it, in one step: the payload
    of a failed inbound event, or (through the workflow's correction hook) the
    canonical record a dead delivery carries."""
    if record.inbound_event_id is not None:
        if payload is None:
            raise CorrectionRejected("this exception is about an inbound event: send a corrected 'payload'")
        inbound_edit_and_replay(record.inbound_event, payload=payload, user=user, reason=reason)
        return
    delivery: Delivery | None = record.delivery
    if delivery is None or corrections is None:
        raise CorrectionRejected("this exception is about a delivery: send 'corrections' to its record")
    correction = _correction(delivery)
    if correction is None:
        raise CorrectionRejected(f"{delivery.action} deliveries cannot be corrected here; fix the source and replay")
    with transaction.atomic():
        correction.apply(delivery, corrections, user=user, reason=reason)
        services.delivery_replay(delivery, user=user, reason=reason)


def exception_fix(record: ExceptionRecord, *, correction: dict | None, user, reason: str) -> None:
    """The admin's "save and replay": apply the edited correction when it differs
    from what was there, then replay; a plain replay otherwise."""
    if correction is None or correction == correction_template(record):
        services.exception_replay(record, user=user, reason=reason)
    elif record.inbound_event_id is not None:
        exception_edit_and_replay(record, user=user, reason=reason, payload=correction)
    else:
        exception_edit_and_replay(record, user=user, reason=reason, corrections=correction)


def each_replay(objects, replay_one, *, user, reason: str) -> BulkReplay:
    """Replay each of ``objects`` (dead deliveries, failed events) on its own; one that
    cannot be replayed is reported and never stops the others."""
    result = BulkReplay()
    for obj in objects:
        try:
            replay_one(obj, user=user, reason=reason)
            result.replayed.append(obj.pk)
        except services.InvalidTransition as exc:
            result.skipped[obj.pk] = str(exc)
    return result


def exceptions_resolve(records, *, user, note: str) -> int:
    """Close the open ones among ``records`` without replay (handled by hand)."""
    open_records = list(records.filter(status=ExceptionRecord.Status.OPEN))
    for record in open_records:
        services.exception_resolve(record, user=user, note=record.resolution or note)
    return len(open_records)
