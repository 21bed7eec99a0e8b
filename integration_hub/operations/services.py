"""What people do to exceptions: replay one or many, correct and replay, and work
them through open → acknowledged → resolved or dismissed, with an assignee and notes.

Each action checks its own permission (``operations.*``, granted by the role groups)
and that the exception is one the person's teams see, whichever interface calls it
(admin, API); every change is audited (who, when, why, before and after).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from integration_hub.operations.access import exceptions_visible, user_teams
from integration_hub.operations.models import ExceptionNote
from integration_hub.runtime import dispatch, services
from integration_hub.runtime.dispatch import CorrectionRejected
from integration_hub.runtime.models import Delivery, ExceptionRecord, InboundEvent

__all__ = ["BulkReplay", "CorrectionRejected", "exception_edit_and_replay", "exceptions_replay",
           "inbound_edit_and_replay"]

REPLAY, BULK_REPLAY, EDIT_AND_REPLAY, WORK = (
    "operations.replay_exception", "operations.bulk_replay_exception", "operations.edit_and_replay_exception",
    "operations.work_exception",
)


def authorize(user, permission: str, record: ExceptionRecord | None = None) -> None:
    """PermissionDenied unless ``user`` holds ``permission`` and sees ``record``."""
    if user is None or not user.has_perm(permission):
        raise PermissionDenied(f"{user} lacks the permission {permission}")
    if record is not None and not exceptions_visible(user).filter(pk=record.pk).exists():
        raise PermissionDenied(f"exception {record.pk} belongs to another team")


def exception_replay(record: ExceptionRecord, *, user, reason: str) -> None:
    """Replay the dead delivery or failed event behind one exception."""
    authorize(user, REPLAY, record)
    services.exception_replay(record, user=user, reason=reason)


@dataclass
class BulkReplay:
    replayed: list[int] = field(default_factory=list)
    skipped: dict[int, str] = field(default_factory=dict)


def exceptions_replay(records, *, user, reason: str) -> BulkReplay:
    """Replay every open exception in ``records`` the user's teams see, each on its
    own; one that cannot be replayed is reported, never stops the others."""
    authorize(user, REPLAY)
    if records.count() > 1:
        authorize(user, BULK_REPLAY)
    result = BulkReplay()
    active = exceptions_visible(user, records).filter(status__in=ExceptionRecord.ACTIVE)
    for record in active.select_related("delivery", "inbound_event"):
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
    authorize(user, EDIT_AND_REPLAY, record)
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
        exception_replay(record, user=user, reason=reason)
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
    """Close the active ones among ``records`` without replay (handled by hand)."""
    authorize(user, WORK)
    active = list(exceptions_visible(user, records).filter(status__in=ExceptionRecord.ACTIVE))
    for record in active:
        services.exception_resolve(record, user=user, note=record.resolution or note)
    return len(active)


# ---------------------------------------------------------------- the exception workflow


def _locked_active(record: ExceptionRecord, user, permission: str) -> ExceptionRecord:
    authorize(user, permission, record)
    locked = ExceptionRecord.objects.select_for_update().get(pk=record.pk)
    if locked.status not in ExceptionRecord.ACTIVE:
        raise services.InvalidTransition(locked, locked.status, "worked on")
    return locked


@transaction.atomic
def exception_acknowledge(record: ExceptionRecord, *, user, note: str = "") -> ExceptionRecord:
    """Someone has it: open → acknowledged (assigned to them unless it has an assignee)."""
    locked = _locked_active(record, user, WORK)
    if locked.status == ExceptionRecord.Status.ACKNOWLEDGED:
        return locked
    locked.status, locked.acknowledged_at = ExceptionRecord.Status.ACKNOWLEDGED, timezone.now()
    locked.assignee = locked.assignee or user
    locked.save(update_fields=["status", "acknowledged_at", "assignee"])
    services.audit_record(actor=user, action="acknowledge", obj=locked, reason=note,
                          changes={"status": {"before": "open", "after": locked.status}})
    if note:
        ExceptionNote.objects.create(exception=locked, author=user, text=note)
    return locked


@transaction.atomic
def exception_assign(record: ExceptionRecord, *, user, assignee, reason: str = "") -> ExceptionRecord:
    """Hand it to someone who can work it: a member of the owning team (or of every team)."""
    locked = _locked_active(record, user, WORK)
    if assignee is not None:
        teams = user_teams(assignee)
        if not assignee.has_perm(WORK) or (teams is not None and locked.owner_team not in teams):
            raise CorrectionRejected(f"{assignee} cannot work {locked.get_owner_team_display()} exceptions")
    before = locked.assignee.get_username() if locked.assignee else None
    locked.assignee = assignee
    locked.save(update_fields=["assignee"])
    services.audit_record(actor=user, action="assign", obj=locked, reason=reason, changes={
        "assignee": {"before": before, "after": assignee.get_username() if assignee else None}})
    return locked


@transaction.atomic
def exception_note_add(record: ExceptionRecord, *, user, text: str) -> ExceptionNote:
    authorize(user, WORK, record)
    if not text.strip():
        raise CorrectionRejected("a note needs text")
    note = ExceptionNote.objects.create(exception=record, author=user, text=text.strip())
    services.audit_record(actor=user, action="note", obj=record, reason=text.strip()[:500])
    return note


@transaction.atomic
def exception_close(record: ExceptionRecord, *, user, status: str, reason: str) -> ExceptionRecord:
    """Resolved (handled outside the hub) or dismissed (nothing to do), with a reason."""
    if status not in (ExceptionRecord.Status.RESOLVED, ExceptionRecord.Status.DISMISSED):
        raise CorrectionRejected(f"an exception is closed as resolved or dismissed, not {status}")
    if not reason.strip():
        raise CorrectionRejected(f"say why it is {status}")
    locked = _locked_active(record, user, WORK)
    before = locked.status
    locked.status, locked.resolution = status, reason.strip()
    locked.resolved_by, locked.resolved_at = user, timezone.now()
    locked.save(update_fields=["status", "resolution", "resolved_by", "resolved_at"])
    services.audit_record(actor=user, action="dismiss" if status == ExceptionRecord.Status.DISMISSED else "resolve",
                          obj=locked, reason=reason, changes={"status": {"before": before, "after": status}})
    return locked


def assignable_users(record: ExceptionRecord):
    """Who may be given this exception: active users who can work its team's exceptions."""
    from integration_hub.operations.roles import GROUP_OF_TEAM

    return get_user_model().objects.filter(
        Q(is_superuser=True) | Q(groups__name=GROUP_OF_TEAM.get(record.owner_team, "")), is_active=True
    ).distinct()
