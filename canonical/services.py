"""Writes to the canonical store. Each upsert is idempotent for the same input."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.utils import timezone

from canonical.contracts import CreditNoteV1, CustomerV1, InvoiceV1, PaymentV1, RefundV1
from canonical.dedupe import match_keys
from canonical.models import (
    CreditNote,
    CreditNoteLine,
    CrossReference,
    Customer,
    CustomerAlias,
    CustomerConfirmation,
    DuplicateCase,
    FieldConflict,
    Invoice,
    InvoiceLine,
    LegalEntity,
    Payment,
    Refund,
    SystemOfRecord,
)
from canonical.policy import PolicyMissing  # noqa: F401 - where workflows have always imported it from
from canonical.sor import DEFAULT_OWNERS, FIELD_GROUPS, sor_decide
from canonical.sql import insert_ignore


def xref_bind(*, system: str, object_type: str, canonical_id: int, external_id: str, number: str = "") -> CrossReference:
    """Record that ``canonical_id`` is ``external_id`` in ``system``. Re-binding the
    same pair is a no-op; binding either side to something else raises IntegrityError.
    That error is raised here, never by the database, so the caller's transaction
    stays usable after it without a savepoint."""
    key = {"system": system, "object_type": object_type, "external_id": external_id}
    xref = CrossReference.objects.filter(**key).first()
    if xref is None:
        values = {**key, "canonical_id": canonical_id, "external_number": number, "created_at": timezone.now()}
        created = insert_ignore(CrossReference, values)
        if created is not None:
            return CrossReference(pk=created, **values)
        # A unique constraint held: the id was bound meanwhile, or the record is bound to another id there.
        xref = CrossReference.objects.filter(**key).first()
        if xref is None:
            raise IntegrityError(f"{object_type} {canonical_id} is already bound to another id in {system}")
    if xref.canonical_id != canonical_id:
        raise IntegrityError(
            f"{system}:{object_type}:{external_id} is already bound to {object_type} {xref.canonical_id}"
        )
    if number and xref.external_number != number:
        xref.external_number = number
        xref.save(update_fields=["external_number"])
    return xref


def xref_lookup(*, system: str, object_type: str, external_id: str) -> int | None:
    return (
        CrossReference.objects.filter(system=system, object_type=object_type, external_id=external_id)
        .values_list("canonical_id", flat=True)
        .first()
    )


def _customer_fields(contract: CustomerV1) -> dict:
    address = contract.address.model_dump(exclude_none=True) if contract.address else {}
    return {
        "display_name": contract.display_name,
        "email": contract.email or "",
        "domain": contract.domain or "",
        "address": address,
        "country": address.get("country", ""),
        "tax_ids": [tax_id.model_dump() for tax_id in contract.tax_ids],
        "currency": contract.currency or "",
        "parent_ref": f"{contract.parent.system}:{contract.parent.external_id}" if contract.parent else "",
    }


def _refresh_keys(customer: Customer) -> None:
    for name, value in match_keys(
        display_name=customer.display_name, country=customer.country, domain=customer.domain,
        tax_ids=customer.tax_ids,
    ).items():
        setattr(customer, name, value)


# No savepoint: nothing inside is caught and recovered from, so a failure may as well
# undo the caller's whole transaction (the event's, which is retried as one).
@transaction.atomic(savepoint=False)
def invoice_upsert(
    contract: InvoiceV1, *, customer: Customer, legal_entity: LegalEntity, transaction_id: uuid.UUID | None = None
) -> Invoice:
    """Create the invoice, or advance its status. Lines are fixed once finalized (the
    billing system cannot change them), so later snapshots only move the status,
    payment and void facts forward — never back, whatever order events arrive in."""
    source = contract.source
    invoice = (
        Invoice.objects.select_for_update()
        .filter(source_system=source.system, source_id=source.external_id)
        .first()
    )
    if invoice is None:
        invoice = Invoice.objects.create(
            source_system=source.system,
            source_id=source.external_id,
            number=contract.number or "",
            customer=customer,
            legal_entity=legal_entity,
            currency=contract.currency,
            status=contract.status,
            issued_on=contract.issued_on,
            due_on=contract.due_on,
            subtotal=contract.subtotal,
            tax=contract.tax,
            total=contract.total,
            amount_paid=contract.amount_paid,
            paid_at=contract.paid_at,
            voided_at=contract.voided_at,
            subscription_ref=contract.subscription_ref or "",
            transaction_id=transaction_id,
        )
        InvoiceLine.objects.bulk_create(
            InvoiceLine(
                invoice=invoice,
                position=position,
                source_line_id=line.source_line_id or "",
                description=line.description,
                quantity=line.quantity,
                amount=line.amount,
                tax_amount=line.tax_amount,
                tax_rate=line.tax_rate,
                product_ref=line.product_ref or "",
                price_ref=line.price_ref or "",
                period_start=line.period_start,
                period_end=line.period_end,
            )
            for position, line in enumerate(contract.lines, start=1)
        )
        return invoice

    if Invoice.STATUS_RANK[contract.status] > Invoice.STATUS_RANK[invoice.status]:
        invoice.status = contract.status
        invoice.amount_paid = max(invoice.amount_paid, contract.amount_paid)
        invoice.paid_at = invoice.paid_at or contract.paid_at
        invoice.voided_at = invoice.voided_at or contract.voided_at
        invoice.number = invoice.number or contract.number or ""
        invoice.version += 1
        invoice.save()
    return invoice


@transaction.atomic
def payment_upsert(contract: PaymentV1, *, invoice: Invoice, transaction_id: uuid.UUID | None = None) -> Payment:
    payment, _ = Payment.objects.get_or_create(
        source_system=contract.source.system,
        source_id=contract.source.external_id,
        defaults={
            "invoice": invoice,
            "currency": contract.currency,
            "amount": contract.amount,
            "paid_at": contract.paid_at,
            "transaction_id": transaction_id,
        },
    )
    return payment


def invoice_find(*, system: str, external_id: str) -> Invoice | None:
    return Invoice.objects.filter(source_system=system, source_id=external_id).first()


def payment_find(*, system: str, external_ids: tuple[str, ...]) -> Payment | None:
    """The payment known under any of ``external_ids`` (a charge and its payment intent
    name one payment)."""
    return (
        Payment.objects.select_related("invoice")
        .filter(source_system=system, source_id__in=[i for i in external_ids if i])
        .order_by("pk")
        .first()
    )


class AdjustmentMismatch(ValueError):
    """An adjustment does not fit the document it adjusts (currency, amount)."""


@transaction.atomic
def credit_note_upsert(
    contract: CreditNoteV1, *, invoice: Invoice, transaction_id: uuid.UUID | None = None
) -> CreditNote:
    """Create the credit note, or move it to void. An issued credit note's amounts
    and lines are final (billing only lets memo and metadata change), so a later
    snapshot changes its status and nothing else. Raises AdjustmentMismatch for a
    credit in another currency than the invoice, or more than the invoice total."""
    if contract.currency != invoice.currency:
        raise AdjustmentMismatch(
            f"credit note {contract.source.external_id} is in {contract.currency}, "
            f"invoice {invoice.source_id} in {invoice.currency}"
        )
    source = contract.source
    note = CreditNote.objects.select_for_update().filter(
        source_system=source.system, source_id=source.external_id
    ).first()
    if note is None:
        credited = sum(
            CreditNote.objects.filter(invoice=invoice, status=CreditNote.Status.ISSUED).values_list("total", flat=True)
        )
        if contract.status == CreditNote.Status.ISSUED and credited + contract.total > invoice.total:
            raise AdjustmentMismatch(
                f"credit note {source.external_id} ({contract.total}) and earlier credits ({credited}) "
                f"exceed invoice {invoice.source_id}'s total {invoice.total}"
            )
        note = CreditNote.objects.create(
            invoice=invoice, source_system=source.system, source_id=source.external_id,
            number=contract.number or "", currency=contract.currency, status=contract.status,
            issued_on=contract.issued_on, reason=contract.reason or "", subtotal=contract.subtotal,
            tax=contract.tax, total=contract.total, pre_payment_amount=contract.pre_payment_amount,
            refund_amount=contract.refund_amount, credit_balance_amount=contract.credit_balance_amount,
            out_of_band_amount=contract.out_of_band_amount,
            refund_refs=[ref.external_id for ref in contract.refunds], voided_at=contract.voided_at,
            transaction_id=transaction_id,
        )
        CreditNoteLine.objects.bulk_create(
            CreditNoteLine(
                credit_note=note, position=position, source_line_id=line.source_line_id or "",
                invoice_line_ref=line.invoice_line_ref or "", description=line.description,
                quantity=line.quantity, amount=line.amount, tax_amount=line.tax_amount, tax_rate=line.tax_rate,
            )
            for position, line in enumerate(contract.lines, start=1)
        )
        return note
    refunds = sorted(set(note.refund_refs) | {ref.external_id for ref in contract.refunds})
    if contract.status == CreditNote.Status.VOID and note.status != CreditNote.Status.VOID:
        note.status, note.voided_at = contract.status, contract.voided_at
        note.version += 1
    if refunds != sorted(note.refund_refs):
        note.refund_refs = refunds
    note.save()
    return note


_REFUND_RANK = {"pending": 0, "requires_action": 0, "succeeded": 1, "failed": 2, "canceled": 2}


@transaction.atomic
def refund_upsert(contract: RefundV1, *, payment: Payment, transaction_id: uuid.UUID | None = None) -> Refund:
    """Create the refund, or move its status forward (pending → succeeded → failed or
    canceled), never back. Raises AdjustmentMismatch for a refund in another currency
    than its payment, or more than the payment less its other refunds."""
    if contract.currency != payment.currency:
        raise AdjustmentMismatch(
            f"refund {contract.source.external_id} is in {contract.currency}, payment {payment.source_id} "
            f"in {payment.currency}"
        )
    source = contract.source
    refund = Refund.objects.select_for_update().filter(source_system=source.system, source_id=source.external_id).first()
    if refund is None:
        others = sum(
            payment.refunds.exclude(status__in=["failed", "canceled"]).values_list("amount", flat=True)
        )
        if others + contract.amount > payment.amount:
            raise AdjustmentMismatch(
                f"refund {source.external_id} ({contract.amount}) and earlier refunds ({others}) exceed "
                f"payment {payment.source_id}'s amount {payment.amount}"
            )
        return Refund.objects.create(
            payment=payment, source_system=source.system, source_id=source.external_id, kind=contract.kind,
            currency=contract.currency, amount=contract.amount, status=contract.status,
            reason=contract.reason or "", refunded_at=contract.refunded_at, transaction_id=transaction_id,
        )
    if _REFUND_RANK[contract.status] > _REFUND_RANK.get(refund.status, 0):
        refund.status = contract.status
        refund.save(update_fields=["status", "updated_at"])
    return refund


# ---------------------------------------------------------------- customer mastering


class InvalidCaseTransition(Exception):
    """A conflict or duplicate case was already decided."""


def customer_resolve(*, system: str, external_id: str) -> Customer | None:
    """The canonical customer an external id stands for: its cross-reference, else an
    alias left by a merge (which points at the survivor)."""
    canonical_id = xref_lookup(system=system, object_type="customer", external_id=external_id)
    if canonical_id is None:
        canonical_id = (
            CustomerAlias.objects.filter(system=system, object_type="customer", external_id=external_id)
            .values_list("customer_id", flat=True)
            .first()
        )
    return Customer.objects.filter(pk=canonical_id).first() if canonical_id is not None else None


def customer_fields(contract: CustomerV1) -> dict:
    """The canonical field values a contract carries (empty strings for unknowns)."""
    return _customer_fields(contract)


def sor_owners(entity: str = "customer") -> dict[str, str]:
    rules = dict(SystemOfRecord.objects.filter(entity=entity).values_list("field_group", "owner_role"))
    return {**(DEFAULT_OWNERS if entity == "customer" else {}), **rules}


def _link_parent(customer: Customer) -> None:
    """Point ``parent`` at the canonical record ``parent_ref`` names, if the hub has it."""
    if not customer.parent_ref:
        customer.parent = None
        return
    system, _, external_id = customer.parent_ref.partition(":")
    parent = customer_resolve(system=system, external_id=external_id)
    customer.parent = parent if parent is not None and parent.pk != customer.pk else None


def children_link(parent: Customer) -> int:
    """Children that named this customer as parent before it was known: link them.
    Returns how many were linked."""
    refs = [
        f"{system}:{external_id}"
        for system, external_id in CrossReference.objects.filter(
            object_type="customer", canonical_id=parent.pk
        ).values_list("system", "external_id")
    ]
    return Customer.objects.filter(parent_ref__in=refs, parent__isnull=True).exclude(pk=parent.pk).update(
        parent=parent
    )


@transaction.atomic
def customer_create(
    contract: CustomerV1, *, status: str = Customer.Status.ACTIVE, transaction_id: uuid.UUID | None = None
) -> Customer:
    """A new canonical customer bound to ``contract.source``. IntegrityError if the
    source id is already bound (the caller resolves first, under its lock)."""
    customer = Customer(transaction_id=transaction_id, status=status, **_customer_fields(contract))
    _refresh_keys(customer)
    _link_parent(customer)
    customer.save()
    xref_bind(
        system=contract.source.system, object_type="customer", canonical_id=customer.pk,
        external_id=contract.source.external_id,
    )
    children_link(customer)
    return customer


@transaction.atomic
def customer_apply(
    customer: Customer, contract: CustomerV1, *, source_role: str, transaction_id: uuid.UUID | None = None
) -> tuple[bool, list[FieldConflict]]:
    """Apply what ``source_role``'s system may change (see ``canonical.sor``); open a
    conflict per group it may not. Returns (whether the record changed, new conflicts).
    A conflict identical to one still open is not opened twice."""
    customer = Customer.objects.select_for_update().get(pk=customer.pk)
    current = {name: getattr(customer, name) for names in FIELD_GROUPS.values() for name in names}
    decision = sor_decide(
        current=current, incoming=_customer_fields(contract), source_role=source_role, owners=sor_owners()
    )
    opened = []
    for conflict in decision.conflicts:
        duplicate = FieldConflict.objects.filter(
            customer=customer, field_group=conflict.field_group, source_system=contract.source.system,
            status=FieldConflict.Status.OPEN, proposed=conflict.proposed,
        ).exists()
        if not duplicate:
            opened.append(FieldConflict.objects.create(
                customer=customer, field_group=conflict.field_group, source_system=contract.source.system,
                source_role=source_role, owner_role=conflict.owner_role, proposed=conflict.proposed,
                current=conflict.current, transaction_id=transaction_id,
            ))
    if not decision.changes:
        return False, opened
    _customer_change(customer, decision.changes, transaction_id=transaction_id)
    return True, opened


@dataclass(frozen=True)
class CustomerIntake:
    """What ``customer_ingest`` did with a source's customer record."""

    customer: Customer
    created: bool = False
    held: bool = False  # a first sighting that looks like a known customer: a DuplicateCase is open
    changed: bool = False
    conflicts: tuple[FieldConflict, ...] = ()
    merged_alias: bool = False  # the record was merged into another; its change is not applied


def customer_ingest(
    contract: CustomerV1, *, source_role: str = "", transaction_id: uuid.UUID | None = None,
    second_hand: bool = False,
) -> CustomerIntake:
    """The one way a source system's customer record reaches the canonical store,
    whichever system sends it (CRM, billing, the customer block of an invoice).

    * Known (its cross-reference, the alias a merge left, or the canonical id the hub
      stamped on a record it created itself): the change is applied under the
      system-of-record rules for ``source_role``; a group that role does not own
      opens a ``FieldConflict``. A record merged into another changes nothing.
    * First sighting: a new customer bound to the source id; if it shares a match
      key with a live customer it is held and a ``DuplicateCase`` opens, so a person
      decides rather than the hub creating a twin downstream.
    * ``second_hand``: the data is a copy inside another document (an invoice's
      customer snapshot), not the record itself: it only fills empty fields and
      never opens conflicts.

    Safe under concurrency: two first sightings of one source id make one customer.
    """
    source = contract.source
    customer = customer_resolve(system=source.system, external_id=source.external_id)
    if customer is None and contract.canonical_id is not None:
        customer = _bind_stamped(contract)
    if customer is None:
        try:
            with transaction.atomic():
                return _customer_first_sighting(contract, transaction_id=transaction_id)
        except IntegrityError:
            # A concurrent intake bound this source id first: apply to its record.
            customer = customer_resolve(system=source.system, external_id=source.external_id)
            if customer is None:
                raise
    with transaction.atomic(savepoint=False):  # as invoice_upsert: nothing in it is recovered from
        if customer.aliases.filter(system=source.system, external_id=source.external_id).exists():
            return CustomerIntake(customer, merged_alias=True)
        if second_hand:
            customer, changed = _customer_fill(customer, contract, transaction_id=transaction_id)
            return CustomerIntake(customer, changed=changed)
        changed, conflicts = customer_apply(
            customer, contract, source_role=source_role, transaction_id=transaction_id
        )
    return CustomerIntake(Customer.objects.get(pk=customer.pk), changed=changed, conflicts=tuple(conflicts))


def _bind_stamped(contract: CustomerV1) -> Customer | None:
    """A record the hub created in the source (it carries the canonical id), seen
    before the delivery bound its id: bind it now rather than create a twin."""
    customer = Customer.objects.filter(pk=contract.canonical_id).first()
    if customer is None:
        return None
    try:
        with transaction.atomic():
            xref_bind(system=contract.source.system, object_type="customer", canonical_id=customer.pk,
                      external_id=contract.source.external_id)
    except IntegrityError:
        return None  # the canonical record is bound to another id there: treat as new
    return customer


def _customer_first_sighting(contract: CustomerV1, *, transaction_id: uuid.UUID | None) -> CustomerIntake:
    customer = customer_create(contract, transaction_id=transaction_id)
    candidates = duplicate_candidates(customer)
    if not candidates:
        return CustomerIntake(customer, created=True)
    customer.status = Customer.Status.HELD
    customer.save(update_fields=["status", "updated_at"])
    duplicate_case_open(customer, candidates, transaction_id=transaction_id)
    return CustomerIntake(customer, created=True, held=True)


def _customer_fill(customer: Customer, contract: CustomerV1, *,
                   transaction_id: uuid.UUID | None) -> tuple[Customer, bool]:
    """Fill the customer's empty fields from ``contract``; returns the record as it
    now is (read under its lock) and whether anything changed."""
    customer = Customer.objects.select_for_update().get(pk=customer.pk)
    filled = {
        name: value for name, value in _customer_fields(contract).items()
        if value and not getattr(customer, name)
    }
    if filled:
        _customer_change(customer, filled, transaction_id=transaction_id)
    return customer, bool(filled)


def _customer_change(customer: Customer, changes: dict, *, transaction_id: uuid.UUID | None) -> None:
    for name, value in changes.items():
        setattr(customer, name, value)
    if "parent_ref" in changes:
        _link_parent(customer)
    _refresh_keys(customer)
    customer.version += 1
    customer.transaction_id = transaction_id or customer.transaction_id
    customer.save()


@transaction.atomic
def conflict_decide(conflict: FieldConflict, *, accept: bool, user=None) -> Customer:
    """Accept (apply the proposed values as a new version) or reject (keep the
    canonical values) an open conflict. Returns the customer."""
    locked = FieldConflict.objects.select_for_update().get(pk=conflict.pk)
    if locked.status != FieldConflict.Status.OPEN:
        raise InvalidCaseTransition(f"conflict {locked.pk} is already {locked.status}")
    locked.status = FieldConflict.Status.ACCEPTED if accept else FieldConflict.Status.REJECTED
    locked.decided_by, locked.decided_at = user, timezone.now()
    locked.save(update_fields=["status", "decided_by", "decided_at"])
    customer = Customer.objects.select_for_update().get(pk=locked.customer_id)
    if accept:
        changes = {name: value for name, value in locked.proposed.items() if getattr(customer, name) != value}
        if changes:
            _customer_change(customer, changes, transaction_id=customer.transaction_id)
    return customer


def duplicate_candidates(customer: Customer) -> list[tuple[Customer, list[str]]]:
    """Other live customers sharing a match key with ``customer``, strongest first
    (tax id, then domain, then name + country)."""
    found: dict[int, tuple[Customer, list[str]]] = {}
    for key, reason in (("tax_key", "same tax id"), ("domain_key", "same domain"),
                        ("name_key", "same name and country")):
        value = getattr(customer, key)
        if not value:
            continue
        for other in (Customer.objects.filter(**{key: value}).exclude(pk=customer.pk)
                      .exclude(status=Customer.Status.MERGED).order_by("pk")):
            found.setdefault(other.pk, (other, []))[1].append(reason)
    return sorted(found.values(), key=lambda item: (-len(item[1]), item[0].pk))


@transaction.atomic
def duplicate_case_open(customer: Customer, candidates: list[tuple[Customer, list[str]]], *,
                        transaction_id: uuid.UUID | None = None) -> DuplicateCase:
    case = DuplicateCase.objects.create(
        customer=customer, survivor=candidates[0][0], transaction_id=transaction_id,
        reasons=[{"customer": other.pk, "name": other.display_name, "reasons": reasons}
                 for other, reasons in candidates],
    )
    case.candidates.set([other for other, _ in candidates])
    return case


@transaction.atomic
def duplicate_case_release(case: DuplicateCase, *, user=None) -> Customer:
    """Declare the held customer distinct: it becomes active (the caller onboards it)."""
    locked = DuplicateCase.objects.select_for_update().get(pk=case.pk)
    if locked.status != DuplicateCase.Status.OPEN:
        raise InvalidCaseTransition(f"duplicate case {locked.pk} is already {locked.status}")
    locked.status, locked.decided_by, locked.decided_at = DuplicateCase.Status.DISTINCT, user, timezone.now()
    locked.save(update_fields=["status", "decided_by", "decided_at"])
    customer = Customer.objects.select_for_update().get(pk=locked.customer_id)
    customer.status = Customer.Status.ACTIVE
    customer.save(update_fields=["status", "updated_at"])
    return customer


@transaction.atomic
def customer_merge(merged: Customer, survivor: Customer) -> Customer:
    """Fold ``merged`` into ``survivor`` without losing any external id.

    Rule: for each cross-reference of the merged record, if the survivor has none in
    that system (and object type), the cross-reference moves to the survivor;
    otherwise it becomes a ``CustomerAlias`` of the survivor (cross-references are
    unique both ways, so a record cannot hold two ids in one system). Aliases of the
    merged record move too. Invoices and children follow; empty fields of the
    survivor are filled from the merged record. The merged record stays, marked
    ``merged`` with ``merged_into``, so old references still lead somewhere.
    """
    if merged.pk == survivor.pk:
        raise InvalidCaseTransition("a customer cannot be merged into itself")
    merged = Customer.objects.select_for_update().get(pk=merged.pk)
    survivor = Customer.objects.select_for_update().get(pk=survivor.pk)
    if merged.status == Customer.Status.MERGED or survivor.status == Customer.Status.MERGED:
        raise InvalidCaseTransition("one of the records is already merged")
    for xref in CrossReference.objects.select_for_update().filter(object_type="customer", canonical_id=merged.pk):
        taken = CrossReference.objects.filter(
            system=xref.system, object_type=xref.object_type, canonical_id=survivor.pk
        ).exists()
        if taken:
            CustomerAlias.objects.create(
                customer=survivor, system=xref.system, object_type=xref.object_type,
                external_id=xref.external_id, merged_from=merged.pk,
            )
            xref.delete()
        else:
            xref.canonical_id = survivor.pk
            xref.save(update_fields=["canonical_id"])
    CustomerAlias.objects.filter(customer=merged).update(customer=survivor)
    Invoice.objects.filter(customer=merged).update(customer=survivor)
    Customer.objects.filter(parent=merged).exclude(pk=survivor.pk).update(parent=survivor)
    filled = {
        name: getattr(merged, name)
        for names in FIELD_GROUPS.values() for name in names
        if not getattr(survivor, name) and getattr(merged, name)
    }
    if filled:
        _customer_change(survivor, filled, transaction_id=survivor.transaction_id)
    merged.status, merged.merged_into = Customer.Status.MERGED, survivor
    merged.save(update_fields=["status", "merged_into", "updated_at"])
    DuplicateCase.objects.filter(customer=merged, status=DuplicateCase.Status.OPEN).update(
        status=DuplicateCase.Status.MERGED, survivor=survivor, decided_at=timezone.now()
    )
    return survivor


def confirmation_record(*, customer: Customer, references: dict[str, str],
                        transaction_id: uuid.UUID | None) -> CustomerConfirmation:
    confirmation, _ = CustomerConfirmation.objects.get_or_create(
        customer=customer, version=customer.version,
        defaults={"references": references, "transaction_id": transaction_id},
    )
    return confirmation
