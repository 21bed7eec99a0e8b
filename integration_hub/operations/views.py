"""The console's own pages, beside the admin: the dashboard, one transaction's
timeline, and the integration inventory. Thin: selectors compute, templates show."""

from __future__ import annotations

import uuid

from django.contrib import admin
from django.contrib.auth.decorators import permission_required
from django.http import Http404, HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from connectors.models import Connection
from integration_hub.operations.dashboard import dashboard
from integration_hub.operations.inventory import inventory
from integration_hub.operations.selectors import visible_trace


def _page(request: HttpRequest, template: str, title: str, **context) -> HttpResponse:
    return TemplateResponse(request, template, {**admin.site.each_context(request), "title": title, **context})


@permission_required("operations.view_console", raise_exception=True)
def dashboard_view(request: HttpRequest) -> HttpResponse:
    return _page(request, "operations/dashboard.html", "Operations dashboard", **dashboard(request.user))


@permission_required("operations.view_console", raise_exception=True)
def inventory_view(request: HttpRequest) -> HttpResponse:
    return _page(request, "operations/inventory.html", "Integration inventory", flows=inventory())


def _external_link(system: str, external_id: str, templates: dict[str, str]) -> str:
    """A link into the external system when its connection declares ``record_url``
    (e.g. ``https://erp.example/#model=account.invoice&id={external_id}``)."""
    template = templates.get(system)
    return template.format(external_id=external_id) if template else ""


@permission_required("runtime.view_businesstransaction", raise_exception=True)
def transaction_view(request: HttpRequest, transaction_id: uuid.UUID) -> HttpResponse:
    trace = visible_trace(request.user, transaction_id)
    if trace is None:
        raise Http404("no such business transaction")
    templates = {c.name: c.config.get("record_url", "") for c in Connection.objects.only("name", "config")}
    for xref in trace["cross_references"]:
        xref["link"] = _external_link(xref["system"], xref["external_id"], templates)
    timeline = sorted(
        [{"at": e["received_at"], "system": e["source"], "kind": "event", "what": e["type"], "status": e["status"],
          "detail": e["note"], "admin": f"/admin/runtime/inboundevent/{e['id']}/change/"} for e in trace["events"]]
        + [{"at": a["started_at"], "system": d["target"], "kind": "attempt",
            "what": f"{d['action']} #{a['number']}", "status": a["outcome"],
            "detail": a["message"] or (f"{a['duration_ms']} ms" + (f", HTTP {a['http_status']}" if a["http_status"]
                                                                   else "")),
            "admin": f"/admin/runtime/delivery/{d['id']}/change/"}
           for d in trace["deliveries"] for a in d["attempt_log"]]
        + [{"at": x["created_at"], "system": "hub", "kind": "exception", "what": x["category"],
            "status": x["status"], "detail": x["summary"], "admin": f"/admin/runtime/exceptionrecord/{x['id']}/change/"}
           for x in trace["exceptions"]],
        key=lambda row: row["at"],
    )
    return _page(request, "operations/transaction.html", f"Transaction {trace['subject']}", trace=trace,
                 timeline=timeline)
