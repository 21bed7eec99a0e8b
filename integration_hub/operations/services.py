"""What people do to exceptions: replay many, correct and replay. Every change is
audited (who, when, why, before and after)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from pydantic import ValidationError as ContractError

from canonical.models import Invoice, LegalEntity
from canonical.selectors import invoice_contract
from integration_hub.runtime import services
from integration_hub.runtime.models import Delivery, ExceptionRecord, InboundEvent


class CorrectionRejected(ValueError):
    """The correction would leave the record invalid; nothing was changed."""


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


INVOICE_FIELDS = {"number", "due_on"}
LINE_FIELDS = {"description", "tax_amount", "tax_rate"}


@transaction.atomic
def _checked(record, name: str, value: Any) -> Any:
    """``value`` as the model field holds it (a date, a bounded integer), or
    CorrectionRejected naming the field: bad input is a 400, never a 500."""
    from django.core.exceptions import ValidationError

    try:
        return type(record)._meta.get_field(name).clean(value, record)
    except ValidationError as exc:
        raise CorrectionRejected(f"{name}: {'; '.join(exc.messages)}") from None
    except (TypeError, ValueError, ArithmeticError) as exc:
        raise CorrectionRejected(f"{name}: {exc}") from None


def invoice_correct(invoice: Invoice, *, changes: dict[str, Any], user, reason: str) -> Invoice:
    """Correct the canonical invoice before a replay: its legal entity (the posting
    policy), number, due date, and per line the description and tax. The result must
    still be a valid contract (lines, tax and totals add up) or nothing changes."""
    locked = Invoice.objects.select_for_update().get(pk=invoice.pk)
    if not isinstance(changes.get("lines", []), list) or not all(isinstance(c, dict) for c in changes.get("lines", [])):
        raise CorrectionRejected("lines: expected a list of objects, each with a 'position'")
    unknown = set(changes) - INVOICE_FIELDS - {"legal_entity", "lines"}
    if unknown:
        raise CorrectionRejected(f"these invoice fields cannot be corrected here: {', '.join(sorted(unknown))}")
    diff: dict[str, Any] = {}
    for name in INVOICE_FIELDS & set(changes):
        diff[name] = {"before": str(getattr(locked, name)), "after": str(changes[name])}
        setattr(locked, name, _checked(locked, name, changes[name]))
    if "legal_entity" in changes:
        entity = LegalEntity.objects.filter(code=changes["legal_entity"]).first()
        if entity is None:
            raise CorrectionRejected(f"no legal entity {changes['legal_entity']!r}")
        diff["legal_entity"] = {"before": locked.legal_entity.code, "after": entity.code}
        locked.legal_entity = entity
    lines = {line.position: line for line in locked.lines.all()}
    for correction in changes.get("lines", []):
        line = lines.get(correction.get("position"))
        if line is None:
            raise CorrectionRejected(f"no line at position {correction.get('position')!r}")
        bad = set(correction) - LINE_FIELDS - {"position"}
        if bad:
            raise CorrectionRejected(f"these line fields cannot be corrected here: {', '.join(sorted(bad))}")
        for name in LINE_FIELDS & set(correction):
            diff[f"lines[{line.position}].{name}"] = {"before": str(getattr(line, name)), "after": str(correction[name])}
            setattr(line, name, _checked(line, name, correction[name]))
        line.save()
    locked.tax = sum(line.tax_amount for line in lines.values())
    locked.total = locked.subtotal + locked.tax
    locked.version += 1
    locked.save()
    try:
        invoice_contract(locked)
    except ContractError as exc:
        raise CorrectionRejected(f"the corrected invoice is not valid: {exc.errors()[0]['msg']}") from None
    services.audit_record(actor=user, action="edit", obj=locked, reason=reason, changes=diff)
    return locked


def exception_edit_and_replay(record: ExceptionRecord, *, user, reason: str,
                              payload: dict | None = None, invoice: dict | None = None) -> None:
    """Correct what the exception is about, then replay it, in one step."""
    if record.inbound_event_id is not None:
        if payload is None:
            raise CorrectionRejected("this exception is about an inbound event: send a corrected 'payload'")
        inbound_edit_and_replay(record.inbound_event, payload=payload, user=user, reason=reason)
        return
    delivery: Delivery | None = record.delivery
    if delivery is None or invoice is None:
        raise CorrectionRejected("this exception is about a delivery: send 'invoice' corrections")
    target = _delivery_invoice(delivery)
    with transaction.atomic():
        invoice_correct(target, changes=invoice, user=user, reason=reason)
        services.delivery_replay(delivery, user=user, reason=reason)


def _delivery_invoice(delivery: Delivery) -> Invoice:
    if delivery.object_type == "invoice":
        return Invoice.objects.get(pk=delivery.object_id)
    if delivery.object_type == "payment":
        return Invoice.objects.get(payments__pk=delivery.object_id)
    raise CorrectionRejected(f"corrections of {delivery.object_type} records are not supported")
