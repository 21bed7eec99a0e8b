"""GET /metrics: the Prometheus exposition of every hub process, plus state read from
the database at scrape time.

Counters and histograms (webhooks, deliveries, attempts and their latency, governor
holds) are written by each gunicorn and Celery process into PROMETHEUS_MULTIPROC_DIR
(``runtime/metrics.py``) and summed here. Gauges that describe state — queue depth,
open exceptions by team and category, held deliveries, circuits — are one grouped
query each, so they are right whichever process changed the state.

Protected: ``Authorization: Bearer <HUB_METRICS_TOKEN>`` (what Prometheus sends with
``authorization: {credentials: …}``), or a signed-in user with
``operations.view_console``.
"""

from __future__ import annotations

import hmac

from django.conf import settings
from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily

from connectors.models import Connection
from integration_hub.runtime.governor import governor_status
from integration_hub.runtime.models import Delivery, ExceptionRecord, InboundEvent

CIRCUIT_VALUE = {"closed": 0, "half-open": 1, "open": 2}


class HubStateCollector:
    """State gauges, read from the database when scraped."""

    def collect(self):
        depth = GaugeMetricFamily("hub_queue_depth", "Work waiting in the hub: inbox events to process and "
                                  "deliveries pending, held or in flight", labels=["queue", "state"])
        depth.add_metric(["inbox", "received"],
                         InboundEvent.objects.filter(status=InboundEvent.Status.RECEIVED).count())
        waiting = dict(Delivery.objects.filter(status__in=[*Delivery.WAITING, Delivery.Status.IN_FLIGHT])
                       .values_list("status").annotate(n=Count("pk")))
        for state in (Delivery.Status.PENDING, Delivery.Status.HELD, Delivery.Status.IN_FLIGHT):
            depth.add_metric(["deliveries", state], waiting.get(state, 0))
        yield depth

        exceptions = GaugeMetricFamily("hub_open_exceptions", "Exceptions waiting for a person (open or "
                                       "acknowledged), by owning team and category", labels=["team", "category"])
        for team, category, count in (ExceptionRecord.objects.filter(status__in=ExceptionRecord.ACTIVE)
                                      .values_list("owner_team", "category").annotate(n=Count("pk"))):
            exceptions.add_metric([team, category], count)
        yield exceptions

        held = GaugeMetricFamily("hub_deliveries_held", "Deliveries the admission governor holds now, by connection",
                                 labels=["connection"])
        for name, count in (Delivery.objects.filter(status=Delivery.Status.HELD)
                            .values_list("connection__name").annotate(n=Count("pk"))):
            held.add_metric([name], count)
        yield held

        circuit = GaugeMetricFamily("hub_circuit_state", "Circuit breaker per connection: 0 closed, 1 half-open, "
                                    "2 open", labels=["connection"])
        for connection in Connection.objects.filter(is_active=True).only("pk", "name"):
            try:
                state = governor_status(connection.pk)["circuit"]
            except Exception:  # noqa: BLE001 - an unreachable governor store must not break the scrape
                continue
            circuit.add_metric([connection.name], CIRCUIT_VALUE.get(state, 0))
        yield circuit


def _allowed(request: HttpRequest) -> bool:
    token = settings.HUB_METRICS_TOKEN
    header = request.headers.get("Authorization", "")
    if token and header.startswith("Bearer ") and hmac.compare_digest(header[7:].strip(), token):
        return True
    user = request.user
    return user.is_authenticated and user.has_perm("operations.view_console")


def metrics_exposition() -> bytes:
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(settings.PROMETHEUS_MULTIPROC_DIR))
    registry.register(HubStateCollector())
    return generate_latest(registry)


def metrics_view(request: HttpRequest) -> HttpResponse:
    if not _allowed(request):
        response = HttpResponse("metrics need a bearer token or a signed-in operator\n", status=401,
                                content_type="text/plain")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(metrics_exposition(), content_type=CONTENT_TYPE_LATEST)
