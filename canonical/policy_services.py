"""Posting policies as data: versions, approval, decisions and dry runs.

The engine (``canonical.policy``) is pure; this module reads the rows it needs and
writes what it decided. A version is edited as a draft, checked, dry-run against
the last real documents, and approved by a finance user with the date it takes
effect from; approval freezes it into a JSON snapshot, the only thing decisions
read. Each invoice is decided once, by the version in effect on its issue date,
and keeps that decision (``PostingDecision``) through retries and replays.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from canonical.contracts import InvoiceV1
from canonical.models import (
    CrossReference,
    Invoice,
    LegalEntity,
    PostingDecision,
    PostingPolicyVersion,
    PostingRule,
    Product,
    Region,
    TaxMapping,
)
from canonical.policy import (
    Decision,
    Difference,
    DocumentFacts,
    LineFacts,
    PolicyMissing,
    compare,
    decide,
    tax_status_of,
)
from canonical.sql import insert_ignore

APPROVE_PERMISSION = "canonical.approve_postingpolicyversion"


class PolicyInvalid(ValueError):
    """A version that cannot be approved; the message lists every problem."""


class PolicyNotEditable(ValueError):
    """An approved version is frozen; make a new draft from it."""


# ---------------------------------------------------------------- snapshots


def _jurisdiction(mapping: TaxMapping, regions: dict[str, list[str]]) -> dict[str, Any]:
    code = mapping.jurisdiction.strip().upper()
    if code == "*":
        return {"kind": "any", "countries": []}
    if "-" in code:
        return {"kind": "subdivision", "countries": [code.split("-", 1)[0]]}
    if len(code) == 2 and code not in regions:
        return {"kind": "country", "countries": [code]}
    if code in regions:
        return {"kind": "region", "countries": regions[code]}
    return {"kind": "unknown", "countries": []}


def policy_snapshot(version: PostingPolicyVersion) -> dict[str, Any]:
    """The version as the engine reads it: the frozen snapshot once approved, else
    built from its current rows (a draft being dry-run)."""
    if version.status == PostingPolicyVersion.Status.APPROVED and version.snapshot:
        return version.snapshot
    regions = {region.code.upper(): [c.upper() for c in region.countries] for region in Region.objects.all()}
    rules = [
        {
            "id": rule.pk, "priority": rule.priority, "name": rule.name,
            "countries": [c.upper() for c in rule.countries or ()],
            "region": rule.region.code if rule.region else "",
            "region_countries": [c.upper() for c in rule.region.countries] if rule.region else [],
            "tax_status": rule.tax_status, "product_line": rule.product_line, "currency": rule.currency,
            "legal_entity": rule.legal_entity.code, "functional_currency": rule.legal_entity.currency,
            "revenue_account": rule.revenue_account, "cost_center": rule.cost_center,
            "currency_treatment": rule.currency_treatment,
        }
        for rule in version.rules.select_related("legal_entity", "region").order_by("priority", "pk")
    ]
    taxes = []
    for mapping in version.tax_mappings.order_by("jurisdiction", "rate", "pk"):
        place = _jurisdiction(mapping, regions)
        taxes.append({
            "jurisdiction": mapping.jurisdiction.strip().upper(), **place, "rate": str(mapping.rate.normalize()),
            "tax_status": mapping.tax_status, "tax_code": mapping.tax_code,
        })
    return {"version": version.number, "rules": rules, "taxes": taxes}


def policy_problems(version: PostingPolicyVersion) -> list[str]:
    """Why the version cannot be approved (empty when it can)."""
    snapshot = policy_snapshot(version)
    problems = []
    if not snapshot["rules"]:
        problems.append("the version has no rules")
    for priority, count in Counter(rule["priority"] for rule in snapshot["rules"]).items():
        if count > 1:
            names = ", ".join(repr(r["name"]) for r in snapshot["rules"] if r["priority"] == priority)
            problems.append(f"rules {names} share priority {priority}: the first match would be ambiguous")
    for tax in snapshot["taxes"]:
        if tax["kind"] == "unknown":
            problems.append(f"tax jurisdiction {tax['jurisdiction']!r} is neither a country, a country-subdivision "
                            "nor a region code")
    keys = Counter((tax["jurisdiction"], Decimal(tax["rate"]), tax["tax_status"]) for tax in snapshot["taxes"])
    for (jurisdiction, rate, status), count in keys.items():
        if count > 1:
            problems.append(f"{count} tax mappings for {jurisdiction} at {rate.normalize():f} % "
                            f"(tax status {status or 'any'})")
    return problems


# ---------------------------------------------------------------- versions


@transaction.atomic
def policy_version_draft(*, base: PostingPolicyVersion | None = None, note: str = "") -> PostingPolicyVersion:
    """A new draft, a copy of ``base``'s rules and tax mappings (or empty)."""
    number = (PostingPolicyVersion.objects.aggregate(n=Max("number"))["n"] or 0) + 1
    draft = PostingPolicyVersion.objects.create(number=number, note=note)
    if base is not None:
        for rule in base.rules.all():
            rule.pk, rule.version = None, draft
            rule.save()
        for mapping in base.tax_mappings.all():
            mapping.pk, mapping.version = None, draft
            mapping.save()
    return draft


@transaction.atomic
def policy_version_approve(version: PostingPolicyVersion, *, user: Any, effective_from: dt.date) -> PostingPolicyVersion:
    """Approve a draft: only a user with the approve permission; only a version
    with no problems. From ``effective_from`` on, documents follow it; documents
    already decided keep the version they were decided by."""
    if not user.has_perm(APPROVE_PERMISSION):
        raise PermissionError(f"{user} may not approve posting policies (needs {APPROVE_PERMISSION})")
    locked = PostingPolicyVersion.objects.select_for_update().get(pk=version.pk)
    if locked.status != PostingPolicyVersion.Status.DRAFT:
        raise PolicyNotEditable(f"{locked} is already approved")
    if problems := policy_problems(locked):
        raise PolicyInvalid("; ".join(problems))
    locked.snapshot = policy_snapshot(locked)
    locked.status, locked.effective_from = PostingPolicyVersion.Status.APPROVED, effective_from
    locked.approved_by, locked.approved_at = user, timezone.now()
    locked.save()
    return locked


def policy_version_in_effect(on: dt.date) -> PostingPolicyVersion | None:
    """The approved version for documents issued ``on``: the latest effective date
    not after it (the higher number when two share a date)."""
    return (
        PostingPolicyVersion.objects.filter(status=PostingPolicyVersion.Status.APPROVED, effective_from__lte=on)
        .order_by("-effective_from", "-number")
        .first()
    )


def policy_bootstrap(*, effective_from: dt.date = dt.date(2000, 1, 1), user: Any = None,
                     taxes: dict[str, str] | None = None) -> PostingPolicyVersion:
    """An approved first version reproducing the hub's old rule as data: each legal
    entity books its functional currency on the ERP's default revenue account;
    ``taxes`` maps rates (percent, any jurisdiction) to ERP tax codes. For fresh
    installations and tests; real policies are edited in the admin."""
    draft = policy_version_draft(note="Bootstrap: each entity books its functional currency")
    for priority, entity in enumerate(LegalEntity.objects.order_by("code"), start=1):
        PostingRule.objects.create(
            version=draft, priority=priority * 10, name=f"{entity.currency} → {entity.code}",
            currency=entity.currency, legal_entity=entity, revenue_account="",
            currency_treatment=PostingRule.CurrencyTreatment.FUNCTIONAL_ONLY,
        )
    for rate, code in (taxes or {"0": ""}).items():
        TaxMapping.objects.create(version=draft, jurisdiction="*", rate=Decimal(rate), tax_code=code)
    draft.snapshot = policy_snapshot(draft)
    draft.status, draft.effective_from = PostingPolicyVersion.Status.APPROVED, effective_from
    draft.approved_by, draft.approved_at = user, timezone.now()
    draft.save()
    return draft


def rules_edit_guard(version: PostingPolicyVersion) -> None:
    """Raise unless the version's rules may still change (drafts only)."""
    if version.status != PostingPolicyVersion.Status.DRAFT:
        raise PolicyNotEditable(f"{version} is approved and frozen; make a new draft from it")


def policy_version_edit_lock(version: PostingPolicyVersion) -> PostingPolicyVersion:
    """Take the version's row lock for an edit of its rules and tax mappings (call it
    inside the edit's transaction), and raise PolicyNotEditable unless it is still a
    draft. Approval takes the same lock, so an edit and an approval never interleave:
    the snapshot holds the whole edit or none of it, and nothing edits a version
    once it is approved."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("policy_version_edit_lock must run inside the edit's transaction")
    locked = PostingPolicyVersion.objects.select_for_update().get(pk=version.pk)
    rules_edit_guard(locked)
    return locked


# ---------------------------------------------------------------- decisions


def document_facts(contract: InvoiceV1) -> DocumentFacts:
    """The facts a policy may look at, from the invoice as billing issued it. A
    line's product line comes from the catalog (the product bound to the line's
    product id in the billing system), blank when the hub does not know it."""
    customer = contract.customer
    address = customer.address
    refs = {line.product_ref for line in contract.lines if line.product_ref}
    bound = dict(
        CrossReference.objects.filter(system=contract.source.system, object_type="product", external_id__in=refs)
        .values_list("external_id", "canonical_id")
    ) if refs else {}
    product_lines = dict(Product.objects.filter(pk__in=bound.values()).values_list("pk", "product_line"))
    return DocumentFacts(
        currency=contract.currency,
        country=(address.country or "") if address else "",
        subdivision=((address.state or "").upper() if address else "")[:3],
        tax_status=tax_status_of(tax_ids=customer.tax_ids, tax_exempt=customer.tax_exempt),
        lines=tuple(
            LineFacts(
                amount=line.amount, tax_amount=line.tax_amount,
                tax_rate=str(line.tax_rate.normalize()) if line.tax_rate is not None else None,
                product_line=product_lines.get(bound.get(line.product_ref or ""), "") or "",
            )
            for line in contract.lines
        ),
    )


def posting_decide(contract: InvoiceV1) -> tuple[PostingPolicyVersion, DocumentFacts, Decision]:
    """Decide where an invoice posts by the version in effect on its issue date.
    Raises PolicyMissing (no version, no rule, no tax mapping …), never guesses."""
    version = policy_version_in_effect(contract.issued_on)
    if version is None:
        raise PolicyMissing(f"no approved posting policy version is in effect on {contract.issued_on}; "
                            "approve one in the admin, then replay")
    facts = document_facts(contract)
    return version, facts, decide(policy_snapshot(version), facts)


def posting_decision_record(invoice: Invoice, version: PostingPolicyVersion, facts: DocumentFacts,
                            decision: Decision) -> None:
    """Store the decision for the invoice once; an existing one is kept as is (one
    statement, and no savepoint: a conflict raises nothing)."""
    entity = invoice.legal_entity
    if entity.code != decision.legal_entity:  # an invoice held, undecided, since before policies
        entity = LegalEntity.objects.get(code=decision.legal_entity)
    insert_ignore(PostingDecision, {
        "invoice": invoice.pk, "policy_version": version.pk, "legal_entity": entity.pk,
        "currency_treatment": decision.currency_treatment, "facts": facts.to_json(), "lines": decision.lines_json(),
        "company_currency": "", "company_total": None, "company_tax": None, "created_at": timezone.now(),
    })


def posting_company_amounts_record(invoice_id: int, *, currency: str, total: int, tax: int) -> None:
    """The invoice's amounts in company currency, as the ERP reported them."""
    PostingDecision.objects.filter(invoice_id=invoice_id).update(
        company_currency=currency, company_total=total, company_tax=tax
    )


def policy_dry_run(version: PostingPolicyVersion, *, limit: int = 20,
                   on: dt.date | None = None) -> list[Difference]:
    """``version`` applied to the last ``limit`` decided documents, each against the
    version in effect ``on`` (today): what would change (entity, account, cost
    center, tax, currency treatment), or which exception either raises."""
    current = policy_version_in_effect(on or timezone.localdate())
    current_snapshot = policy_snapshot(current) if current else None
    draft_snapshot = policy_snapshot(version)
    decisions = PostingDecision.objects.select_related("invoice").order_by("-created_at", "-pk")[:limit]
    return [
        compare(current_snapshot, draft_snapshot, DocumentFacts.from_json(record.facts),
                document=record.invoice.number or record.invoice.source_id)
        for record in decisions
    ]
