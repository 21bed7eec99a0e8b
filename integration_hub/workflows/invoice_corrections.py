"""Edit-and-replay for invoice postings: correct the canonical invoice a dead
delivery carries (its legal entity, number, due date, per line the description and
tax), then the runtime replays the delivery. Every change is audited."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from pydantic import ValidationError as ContractError

from canonical.models import Invoice, LegalEntity
from canonical.selectors import invoice_contract
from integration_hub.runtime import services
from integration_hub.runtime.dispatch import Correction, CorrectionRejected
from integration_hub.runtime.models import Delivery

INVOICE_FIELDS = {"number", "due_on"}
LINE_FIELDS = {"description", "tax_amount", "tax_rate"}


def _checked(record, name: str, value: Any) -> Any:
    """``value`` as the model field holds it (a date, a bounded integer), or
    CorrectionRejected naming the field: bad input is a 400, never a 500."""
    try:
        return type(record)._meta.get_field(name).clean(value, record)
    except ValidationError as exc:
        raise CorrectionRejected(f"{name}: {'; '.join(exc.messages)}") from None
    except (TypeError, ValueError, ArithmeticError) as exc:
        raise CorrectionRejected(f"{name}: {exc}") from None


@transaction.atomic
def invoice_correct(invoice: Invoice, *, changes: dict[str, Any], user, reason: str) -> Invoice:
    """Correct the canonical invoice before a replay. The result must still be a
    valid contract (lines, tax and totals add up) or nothing changes."""
    locked = Invoice.objects.select_for_update().get(pk=invoice.pk)
    line_changes = changes.get("lines", [])
    if not isinstance(line_changes, list) or not all(isinstance(c, dict) for c in line_changes):
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


def _delivery_invoice(delivery: Delivery) -> Invoice:
    if delivery.object_type == "invoice":
        return Invoice.objects.get(pk=delivery.object_id)
    if delivery.object_type == "payment":
        return Invoice.objects.get(payments__pk=delivery.object_id)
    raise CorrectionRejected(f"corrections of {delivery.object_type} records are not supported")


def _template(delivery: Delivery) -> dict[str, Any]:
    invoice = _delivery_invoice(delivery)
    return {
        "legal_entity": invoice.legal_entity.code,
        "number": invoice.number,
        "lines": [{"position": line.position, "description": line.description, "tax_amount": line.tax_amount,
                   "tax_rate": str(line.tax_rate) if line.tax_rate is not None else None}
                  for line in invoice.lines.all()],
    }


def _apply(delivery: Delivery, changes: dict[str, Any], *, user, reason: str) -> None:
    invoice_correct(_delivery_invoice(delivery), changes=changes, user=user, reason=reason)


INVOICE_CORRECTION = Correction(template=_template, apply=_apply)
"""The invoice posting workflow's edit-and-replay: the invoice behind an ``invoice.*`` delivery."""
