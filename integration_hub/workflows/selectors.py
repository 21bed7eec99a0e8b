"""Read models of the customer workflows for the API."""

from __future__ import annotations

from typing import Any

from django.db.models import Q

from canonical.models import CrossReference, Customer, Subscription
from canonical.selectors import subscription_contract, subscription_history
from integration_hub.runtime.models import Delivery
from integration_hub.workflows.customer_onboarding import UPSERT, WRITE_BACK
from integration_hub.workflows.models import SyncRun


def customer_sync_status(customer: Customer, deliveries: list[Delivery]) -> str:
    """One word for people: merged, held, confirmed (this version reached every
    target), failed (a delivery is dead), syncing, or not_synced."""
    if customer.status != Customer.Status.ACTIVE:
        return customer.status
    if any(d.status == Delivery.Status.DEAD for d in deliveries):
        return "failed"
    if customer.confirmations.filter(version=customer.version).exists():
        return "confirmed"
    return "syncing" if deliveries else "not_synced"


def customer_detail(customer_id: int) -> dict[str, Any] | None:
    customer = Customer.objects.filter(pk=customer_id).select_related("parent", "merged_into").first()
    if customer is None:
        return None
    deliveries = list(Delivery.objects.filter(object_type="customer", object_id=customer.pk,
                                              action__in=[UPSERT, WRITE_BACK]).select_related("connection")
                      .order_by("created_at"))
    return {
        "id": customer.pk, "display_name": customer.display_name, "status": customer.status,
        "version": customer.version, "email": customer.email, "domain": customer.domain,
        "address": customer.address, "country": customer.country, "tax_ids": customer.tax_ids,
        "currency": customer.currency, "credit_terms": customer.credit_terms,
        "parent": customer.parent_id, "parent_ref": customer.parent_ref,
        "merged_into": customer.merged_into_id, "transaction_id": customer.transaction_id,
        "sync_status": customer_sync_status(customer, deliveries),
        "cross_references": [
            {"system": x.system, "external_id": x.external_id, "number": x.external_number}
            for x in CrossReference.objects.filter(object_type="customer", canonical_id=customer.pk).order_by("pk")
        ],
        "aliases": [{"system": a.system, "external_id": a.external_id, "merged_from": a.merged_from}
                    for a in customer.aliases.order_by("pk")],
        "deliveries": [
            {"id": d.pk, "action": d.action, "target": d.connection.name, "status": d.status,
             "idempotency_key": d.idempotency_key, "attempts": d.attempts, "external_id": d.external_id,
             "last_error": d.last_error}
            for d in deliveries
        ],
        "confirmations": [{"version": c.version, "references": c.references, "confirmed_at": c.confirmed_at,
                           "transaction_id": c.transaction_id} for c in customer.confirmations.all()],
        "open_conflicts": [{"id": c.pk, "field_group": c.field_group, "source_system": c.source_system,
                            "owner_role": c.owner_role, "proposed": c.proposed, "current": c.current}
                           for c in customer.conflicts.filter(status="open")],
        "duplicate_cases": [{"id": c.pk, "status": c.status, "survivor": c.survivor_id, "reasons": c.reasons}
                            for c in customer.duplicate_cases.all()],
    }


def sync_run_detail(run: SyncRun) -> dict[str, Any]:
    return {"id": run.pk, "kind": run.kind, "trigger": run.trigger, "status": run.status, "counts": run.counts,
            "error": run.error, "created_at": run.created_at, "started_at": run.started_at,
            "finished_at": run.finished_at}


def subscription_detail(subscription_id: int) -> dict[str, Any] | None:
    """A subscription as the API shows it: its contract, its order, its history and
    the deliveries of its sagas (create in billing, amendments, reports to the CRM)."""
    subscription = Subscription.objects.filter(pk=subscription_id).select_related("order").first()
    if subscription is None:
        return None
    amendment_ids = list(subscription.amendments.values_list("pk", flat=True))
    deliveries = Delivery.objects.filter(
        Q(object_type="subscription", object_id=subscription.pk)
        | Q(object_type="amendment", object_id__in=amendment_ids)
    ).select_related("connection").order_by("created_at", "pk")
    order = subscription.order
    return {
        "subscription": subscription_contract(subscription).model_dump(mode="json"),
        "order": None if order is None else {
            "id": order.pk, "source": f"{order.source_system}:{order.source_id}", "status": order.status,
            "closed_on": order.closed_on.isoformat(),
        },
        "history": subscription_history(subscription),
        "deliveries": [
            {"id": d.pk, "action": d.action, "target": d.connection.name, "object_type": d.object_type,
             "object_id": d.object_id, "status": d.status, "idempotency_key": d.idempotency_key,
             "attempts": d.attempts, "external_id": d.external_id, "last_error": d.last_error}
            for d in deliveries
        ],
    }
