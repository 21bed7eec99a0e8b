"""Pure mapping of Stripe's invoice adjustments to canonical contracts: credit notes,
refunds and lost disputes.

Like ``mapping``: amounts are Stripe's minor-unit integers unchanged, both API shapes
are read (legacy ``tax_amounts``/``amount_excluding_tax``/``refund``; basil
``taxes``/``total_taxes``/``refunds``), and anything that cannot be mapped faithfully
raises MappingError naming the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from canonical.contracts import CreditNoteLineV1, CreditNoteV1, RefundV1, SourceRef
from connectors.stripe.mapping import (
    SYSTEM,
    _build,
    _currency,
    _date,
    _fail,
    _has_discount,
    _id_of,
    _int,
    _list,
    _mapping,
    _quantity,
    _str,
    _tax_entries,
    _tax_rate,
    _timestamp,
)

_REFUND_STATUSES = {"pending", "requires_action", "succeeded", "failed", "canceled"}


def credit_note_shape(note: Mapping[str, Any]) -> str:
    """"basil" when the note or a line carries a basil-only field, else "legacy"."""
    if "total_taxes" in note or "refunds" in note:
        return "basil"
    lines = note.get("lines")
    data = lines.get("data") if isinstance(lines, Mapping) else None
    for line in data if isinstance(data, list) else ():
        if isinstance(line, Mapping) and "taxes" in line:
            return "basil"
    return "legacy"


def _credit_line(line: Any, shape: str, path: str) -> CreditNoteLineV1:
    line = _mapping(line, path)
    if _has_discount(line.get("discount_amounts")) or line.get("discount_amount"):
        raise _fail(f"{path}.discount_amounts", "discounted credit note lines are not supported yet")
    kind = line.get("type")
    if kind not in ("invoice_line_item", "custom_line_item"):
        raise _fail(f"{path}.type", f"unsupported credit note line type {kind!r}")
    amount = _int(line.get("amount"), f"{path}.amount")
    entries = _tax_entries(line, shape, path)
    inclusive = sum(entry[0] for entry in entries if entry[1])
    # Stripe's credit line ``amount`` excludes exclusive tax and includes inclusive tax.
    excluding = line.get("amount_excluding_tax") if shape == "legacy" else None
    net = _int(excluding, f"{path}.amount_excluding_tax") if excluding is not None else amount - inclusive
    invoice_line = _str(line.get("invoice_line_item"), f"{path}.invoice_line_item", required=False)
    if kind == "invoice_line_item" and invoice_line is None:
        raise _fail(f"{path}.invoice_line_item", "an invoice_line_item credit must name the invoice line")
    description = _str(line.get("description"), f"{path}.description", required=False)
    quantity = _quantity(line, path) if line.get("quantity") is not None else None
    return _build(
        CreditNoteLineV1, path,
        source_line_id=_str(line.get("id"), f"{path}.id", required=False),
        invoice_line_ref=invoice_line if kind == "invoice_line_item" else None,
        description=description or ("Credit" if kind == "custom_line_item" else f"Credit of {invoice_line}"),
        quantity=quantity,
        amount=net,
        tax_amount=sum(entry[0] for entry in entries),
        tax_rate=_tax_rate(entries, line),
    )


def _refund_refs(note: Mapping[str, Any], shape: str, system: str) -> tuple[tuple[SourceRef, ...], int | None]:
    """(refunds that paid the credit out, their total when Stripe states it)."""
    if shape == "basil":
        refs, total = [], 0
        for index, item in enumerate(_list(note.get("refunds"), "credit_note.refunds")):
            path = f"credit_note.refunds[{index}]"
            item = _mapping(item, path)
            refund_id = _id_of(item.get("refund"), f"{path}.refund")
            if refund_id is None:  # a payment-record refund: no Stripe refund object to link
                refund_id = _id_of(item.get("payment_record_refund"), f"{path}.payment_record_refund") or None
            total += _int(item.get("amount_refunded"), f"{path}.amount_refunded")
            if refund_id:
                refs.append(SourceRef(system=system, external_id=refund_id))
        return tuple(refs), total
    refund_id = _id_of(note.get("refund"), "credit_note.refund")
    return ((SourceRef(system=system, external_id=refund_id),) if refund_id else ()), None


def credit_note_from_stripe(note: Mapping[str, Any], *, system: str = SYSTEM) -> CreditNoteV1:
    """Map a Stripe CreditNote (either API shape) to CreditNoteV1.

    - Lines credit an invoice line (``invoice_line_item``) or an amount of their own
      (``custom_line_item``); both keep their tax.
    - Settlement: ``pre_payment_amount`` comes off what the invoice asks for; the
      ``post_payment_amount`` splits into refunds (``refunds[].amount_refunded``),
      ``out_of_band_amount`` and, for the rest, the customer's credit balance.
      Legacy notes without the pre/post split are read as pre-payment unless they
      name a refund, an out-of-band amount or a balance transaction (then refused:
      the split cannot be known).
    - Discounts and shipping credits are refused rather than posted wrong.
    """
    note = _mapping(note, "credit_note")
    if note.get("object", "credit_note") != "credit_note":
        raise _fail("credit_note.object", f"expected 'credit_note', got {note.get('object')!r}")
    note_id = _str(note.get("id"), "credit_note.id")
    status = note.get("status")
    if status not in ("issued", "void"):
        raise _fail("credit_note.status", f"unsupported status {status!r}")
    invoice_id = _id_of(note.get("invoice"), "credit_note.invoice")
    if invoice_id is None:
        raise _fail("credit_note.invoice", "missing")
    if note.get("discount_amount") or _has_discount(note.get("discount_amounts")):
        raise _fail("credit_note.discount_amount", "credit notes with discounts are not supported yet")
    if note.get("amount_shipping"):
        raise _fail("credit_note.amount_shipping", "shipping credits are not supported yet")
    shape = credit_note_shape(note)
    lines_obj = _mapping(note.get("lines"), "credit_note.lines")
    if lines_obj.get("has_more"):
        raise _fail("credit_note.lines.has_more", "the embedded line list is truncated; it must not be posted")
    data = _list(lines_obj.get("data"), "credit_note.lines.data")
    if not data:
        raise _fail("credit_note.lines.data", "the credit note has no lines")
    lines = tuple(_credit_line(line, shape, f"credit_note.lines.data[{i}]") for i, line in enumerate(data))

    total = _int(note.get("total"), "credit_note.total")
    subtotal = sum(line.amount for line in lines)
    if note.get("subtotal_excluding_tax") is not None:
        stated = _int(note.get("subtotal_excluding_tax"), "credit_note.subtotal_excluding_tax")
        if stated != subtotal:
            raise _fail("credit_note.subtotal_excluding_tax", f"{stated} != sum of line amounts {subtotal}")
    tax = sum(line.tax_amount for line in lines)
    if subtotal + tax != total:
        raise _fail("credit_note.total", f"{total} != line amounts {subtotal} + line taxes {tax}")

    refunds, refunded = _refund_refs(note, shape, system)
    out_of_band = _int(note.get("out_of_band_amount"), "credit_note.out_of_band_amount", required=False) or 0
    pre = _int(note.get("pre_payment_amount"), "credit_note.pre_payment_amount", required=False)
    post = _int(note.get("post_payment_amount"), "credit_note.post_payment_amount", required=False)
    if pre is None or post is None:
        if refunds or out_of_band or note.get("customer_balance_transaction"):
            raise _fail("credit_note.post_payment_amount",
                        "missing, and the note settles part of its total after payment: the split is unknown")
        pre, post = total, 0
    if pre + post != total:
        raise _fail("credit_note.pre_payment_amount", f"pre {pre} + post {post} payment amounts != total {total}")
    if refunded is None:  # legacy: one refund pays out what the out-of-band amount did not
        if refunds and note.get("customer_balance_transaction"):
            raise _fail("credit_note.refund", "legacy credit notes do not say how much of the post-payment "
                                              "amount the refund took and how much the balance kept")
        refunded = post - out_of_band if refunds else 0
    balance = post - refunded - out_of_band
    if balance < 0:
        raise _fail("credit_note.refunds", f"refunds {refunded} + out of band {out_of_band} exceed the "
                                           f"post-payment amount {post}")
    if balance and not note.get("customer_balance_transaction"):
        raise _fail("credit_note.customer_balance_transaction",
                    f"{balance} of the post-payment amount is unaccounted for (no refund, out-of-band "
                    "amount or balance transaction covers it)")
    issued = note.get("effective_at") or note.get("created")
    return _build(
        CreditNoteV1, "credit_note",
        source=SourceRef(system=system, external_id=note_id),
        invoice=SourceRef(system=system, external_id=invoice_id),
        number=_str(note.get("number"), "credit_note.number", required=False),
        currency=_currency(note.get("currency"), "credit_note.currency"),
        status=status,
        issued_on=_date(issued, "credit_note.effective_at", required=True),
        reason=_str(note.get("reason"), "credit_note.reason", required=False),
        subtotal=subtotal, tax=tax, total=total,
        pre_payment_amount=pre, refund_amount=refunded, credit_balance_amount=balance,
        out_of_band_amount=out_of_band, refunds=refunds,
        voided_at=_timestamp(note.get("voided_at"), "credit_note.voided_at"),
        lines=lines,
    )


def refund_from_stripe(refund: Mapping[str, Any], *, system: str = SYSTEM, path: str = "refund") -> RefundV1:
    """Map a Stripe Refund to RefundV1. The payment it reverses is its PaymentIntent,
    else its Charge (the other kept as an alias, since a payment is known by either);
    a refund of neither (a customer-balance or payment-record refund) is refused."""
    refund = _mapping(refund, path)
    if refund.get("object", "refund") != "refund":
        raise _fail(f"{path}.object", f"expected 'refund', got {refund.get('object')!r}")
    refund_id = _str(refund.get("id"), f"{path}.id")
    status = refund.get("status")
    if status not in _REFUND_STATUSES:
        raise _fail(f"{path}.status", f"unsupported status {status!r}")
    intent = _id_of(refund.get("payment_intent"), f"{path}.payment_intent")
    charge = _id_of(refund.get("charge"), f"{path}.charge")
    if intent is None and charge is None:
        raise _fail(f"{path}.charge", f"refund {refund_id} names neither a charge nor a payment intent")
    return _build(
        RefundV1, path,
        source=SourceRef(system=system, external_id=refund_id),
        payment=SourceRef(system=system, external_id=intent or charge),
        payment_aliases=(charge,) if intent and charge else (),
        currency=_currency(refund.get("currency"), f"{path}.currency"),
        amount=_int(refund.get("amount"), f"{path}.amount"),
        status=status,
        refunded_at=_timestamp(refund.get("created"), f"{path}.created", required=True),
        reason=_str(refund.get("reason"), f"{path}.reason", required=False),
    )


def refunds_from_stripe_charge(charge: Mapping[str, Any], *, system: str = SYSTEM) -> list[RefundV1] | None:
    """The refunds a ``charge.refunded`` Charge embeds, or None when it embeds none
    (API versions from 2022-11-15 leave ``refunds`` out unless expanded; each refund
    then arrives as its own ``refund.created``)."""
    charge = _mapping(charge, "charge")
    refunds = charge.get("refunds")
    if not isinstance(refunds, Mapping):
        return None
    if refunds.get("has_more"):
        raise _fail("charge.refunds.has_more", "the embedded refund list is truncated")
    return [
        refund_from_stripe(item, system=system, path=f"charge.refunds.data[{index}]")
        for index, item in enumerate(_list(refunds.get("data"), "charge.refunds.data"))
    ]


def lost_dispute_from_stripe(dispute: Mapping[str, Any], *, closed_at: Any, system: str = SYSTEM) -> RefundV1:
    """A dispute closed as ``lost``: its amount left the account for good, which the
    books treat as a refund of the disputed payment (kind ``dispute_lost``), dated
    when the event says the dispute closed."""
    dispute = _mapping(dispute, "dispute")
    dispute_id = _str(dispute.get("id"), "dispute.id")
    intent = _id_of(dispute.get("payment_intent"), "dispute.payment_intent")
    charge = _id_of(dispute.get("charge"), "dispute.charge")
    if charge is None and intent is None:
        raise _fail("dispute.charge", "missing")
    return _build(
        RefundV1, "dispute",
        source=SourceRef(system=system, external_id=dispute_id),
        kind="dispute_lost",
        payment=SourceRef(system=system, external_id=intent or charge),
        payment_aliases=(charge,) if intent and charge else (),
        currency=_currency(dispute.get("currency"), "dispute.currency"),
        amount=_int(dispute.get("amount"), "dispute.amount"),
        status="succeeded",
        refunded_at=_timestamp(closed_at or dispute.get("created"), "dispute.created", required=True),
        reason=_str(dispute.get("reason"), "dispute.reason", required=False),
    )
