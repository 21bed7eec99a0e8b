"""Usage aggregation for revenue processes: batch plus exception events.

Usage arrives in bulk (``integration_hub/usage``: the API, the admin, the drop folder,
``manage.py usage_load``), is loaded set-based, aggregated per subscription × metric ×
billing period, and pushed to billing as meter events through the outbox; reconciliation
checkpoints compare every stage. This declaration plugs the push into the runtime.

Connections: a subscription's legal entity names its billing connection
(``LegalEntity.billing_connection``), else the only active billing connection.
"""

from __future__ import annotations

from connectors.base import ExternalDocument, MeterEventSink
from integration_hub.runtime.dispatch import (
    DeliveryAction,
    Indicator,
    QueueClass,
    TraceSection,
    Workflow,
    register_workflow,
)
from integration_hub.runtime.models import Delivery, ExceptionRecord
from integration_hub.usage import services
from integration_hub.usage.models import UsageBatch, UsagePeriod


def meter_events_send(connector: MeterEventSink, delivery: Delivery) -> ExternalDocument:
    """Send one push (≤ 100 meter events). No lookup is needed: each event carries its
    identifier (Stripe keeps one per identifier), so repeating the whole push after an
    unknown outcome, or a failure half-way, never counts usage twice."""
    return connector.send_meter_events(services.push_events(delivery.object_id),
                                       idempotency_key=delivery.idempotency_key)


def meter_events_bind(delivery: Delivery, document: ExternalDocument) -> None:
    services.push_bind(delivery.object_id, document)


def _batches(transaction_id, delivered) -> list[dict]:
    return [{"id": b.pk, "status": b.status, "filename": b.filename,
             **{name: getattr(b, name) for name in UsageBatch.COUNT_FIELDS}}
            for b in UsageBatch.objects.filter(transaction_id=transaction_id)]


def _periods(transaction_id, delivered) -> list[dict]:
    return [{"id": p.pk, "period": f"{p.period:%Y-%m}", "status": p.status,
             "pushes": list(p.pushes.values("id", "kind", "sent_at"))}
            for p in UsagePeriod.objects.filter(transaction_id=transaction_id)]


WORKFLOW = register_workflow(Workflow(
    name="usage_aggregation",
    title="Usage aggregation (product platform → billing)",
    pattern="batch + exception events; reconciliation checkpoints",
    data_owner=ExceptionRecord.Team.PRODUCT_OPERATIONS,
    queue=QueueClass.USAGE,
    subjects=("usage",),
    actions=(DeliveryAction(name=services.PUSH_ACTION, capability=MeterEventSink, send=meter_events_send,
                            bind=meter_events_bind),),
    indicators=(
        Indicator("batches_not_loaded", "Usage batches not loaded yet", "usage.UsageBatch",
                  {"status__in": "received,loading"}, team=ExceptionRecord.Team.PRODUCT_OPERATIONS),
        Indicator("batches_failed", "Usage batches refused", "usage.UsageBatch", {"status": "failed"},
                  team=ExceptionRecord.Team.PRODUCT_OPERATIONS, help="a file refused as a whole (control totals, format)"),
        Indicator("checkpoints_unreconciled", "Reconciliation checkpoints not balanced", "usage.Checkpoint",
                  {"status": "mismatch"}, team=ExceptionRecord.Team.FINANCE,
                  help="usage loaded, aggregated, pushed and billed disagree; repair re-pushes what is missing"),
    ),
    trace=(TraceSection("usage_batches", "usage_batch", _batches), TraceSection("usage_periods", "usage_period",
                                                                                  _periods)),
))
