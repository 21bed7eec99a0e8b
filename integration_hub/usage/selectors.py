"""Reads of usage aggregation for the API, the admin and CSV exports."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from integration_hub.usage.models import Checkpoint, UsageBatch
from integration_hub.usage.rows import quantity_format
from integration_hub.usage.services import STAGES


def batch_detail(batch: UsageBatch) -> dict[str, Any]:
    return {
        "id": batch.pk, "status": batch.status, "source": batch.source, "filename": batch.filename,
        "counts": {name: getattr(batch, name) for name in UsageBatch.COUNT_FIELDS},
        "control_totals": [{**c, "expected_quantity": quantity_format(c["expected_quantity"]),
                            "found_quantity": quantity_format(c["found_quantity"])} for c in batch.control_result],
        "error": batch.error, "transaction_id": str(batch.transaction_id),
        "rejects_csv": f"/api/usage/batches/{batch.pk}/rejects.csv",
        "created_at": batch.created_at, "finished_at": batch.finished_at,
    }


def checkpoint_detail(checkpoint: Checkpoint) -> dict[str, Any]:
    return {
        "id": checkpoint.pk, "period": f"{checkpoint.period.period:%Y-%m}", "status": checkpoint.status,
        "trigger": checkpoint.trigger, "created_at": checkpoint.created_at,
        # A checkpoint taken before a stage existed reports it as 0.
        "lines": [{**line, **{f"{stage}_count": line.get(f"{stage}_count", 0) for stage in STAGES},
                   **{f"{stage}_quantity": quantity_format(line.get(f"{stage}_quantity", 0)) for stage in STAGES}}
                  for line in checkpoint.lines],
        "checked": checkpoint.checked, "mismatches": checkpoint.mismatches, "exception": checkpoint.exception_id,
        "error": checkpoint.error,
        "csv": f"/api/reconciliations/{checkpoint.pk}/?as=csv",
    }


def checkpoint_csv_rows(checkpoint: Checkpoint) -> Iterable[list[str]]:
    """The report: one row per legal entity × currency × metric, then one per key that
    differs (billing customer × metric, its subscriptions, what differs, the fix)."""
    detail = checkpoint_detail(checkpoint)
    columns = ["legal_entity", "currency", "metric", "keys"] + [
        f"{stage}_{part}" for stage in STAGES for part in ("count", "quantity")]
    yield ["period", *columns]
    for line in detail["lines"]:
        yield [detail["period"], *(str(line[c]) for c in columns)]
    yield []
    yield ["mismatch: customer", "metric", "legal_entity", "currency", "subscriptions", *STAGES, "differs",
           "actions", "invoices not in the ERP"]
    for m in checkpoint.mismatches:
        differs = m.get("differs", [])
        yield [m.get("customer", ""), m["metric"], m["legal_entity"], m.get("currency", ""),
               " ".join(m.get("subscriptions", [m.get("subscription", "")])), *(m.get(s, "") for s in STAGES),
               " ".join(differs), " ".join(m.get("actions", [])),
               " ".join(f"{i['invoice']}:{i['status']}" for i in m.get("invoices", []) if "posted" in differs)]
