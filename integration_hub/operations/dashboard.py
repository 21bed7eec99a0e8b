"""The figures of the operations dashboard, each a set-based query with the link to
the list behind it.

Business figures come from the workflows' declared ``Indicator``s (the dashboard
knows no workflow); the generic ones come from the runtime tables: held deliveries by
reason, open exceptions per team with the oldest against its SLA, queue depth,
latency per connection, retry rate, circuits, and 24 hours of throughput. Every query
filters on unfinished states or the last 24 hours through an index, so it stays cheap
as history grows (benchmarks/ measures it at 1M rows).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from urllib.parse import urlencode

from django.apps import apps
from django.contrib.admin.utils import prepare_lookup_value
from django.db import connection as db
from django.db.models import Count, Min, Q
from django.db.models.functions import TruncHour
from django.urls import reverse
from django.utils import timezone

from connectors.models import Connection
from integration_hub.operations.access import ALL_TEAMS, exceptions_visible, user_teams
from integration_hub.operations.models import ExceptionSla
from integration_hub.runtime import dispatch
from integration_hub.runtime.governor import governor_status
from integration_hub.runtime.models import Delivery, DeliveryAttempt, ExceptionRecord, InboundEvent

DAY = dt.timedelta(hours=24)


def changelist(model_label: str, **filters: str) -> str:
    model = apps.get_model(model_label)
    url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
    return f"{url}?{urlencode(filters)}" if filters else url


def _parsed(filters) -> dict:
    return {key: prepare_lookup_value(key, value) for key, value in filters.items()}


@dataclass
class Figure:
    title: str
    value: int
    link: str
    team: str = ""
    help: str = ""
    alert: bool = False


def indicator_figure(indicator: dispatch.Indicator) -> Figure:
    model = apps.get_model(indicator.model)
    value = model._default_manager.filter(**_parsed(indicator.filters)).count()
    team = ExceptionRecord.Team(indicator.team).label if indicator.team else ""
    return Figure(indicator.title, value, changelist(indicator.model, **indicator.filters), team, indicator.help,
                  alert=value > 0)


def business_figures(user) -> list[dict]:
    """Per workflow, its declared indicators (those of the user's teams first)."""
    teams = user_teams(user)
    flows = []
    for workflow in dispatch.workflows():
        if not workflow.indicators:
            continue
        mine = teams is ALL_TEAMS or workflow.data_owner in teams
        flows.append({"name": workflow.name, "title": workflow.title, "mine": mine,
                      "owner": ExceptionRecord.Team(workflow.data_owner).label,
                      "figures": [indicator_figure(indicator) for indicator in workflow.indicators]})
    return sorted(flows, key=lambda flow: not flow["mine"])


def held_by_reason() -> list[Figure]:
    rows = (Delivery.objects.filter(status=Delivery.Status.HELD).values("connection__name", "hold_reason")
            .annotate(count=Count("pk")).order_by("-count")[:20])
    return [Figure(f"{row['connection__name']}: {row['hold_reason'] or '—'}", row["count"],
                   changelist("runtime.Delivery", status="held", hold_reason=row["hold_reason"]))
            for row in rows]


def exceptions_by_team(user, *, now: dt.datetime | None = None) -> list[dict]:
    """Active exceptions per owning team: how many, how many past their SLA, and the
    oldest one's age against its category's SLA."""
    now = now or timezone.now()
    slas = {sla.category: sla for sla in ExceptionSla.objects.all()}
    rows = (exceptions_visible(user).filter(status__in=ExceptionRecord.ACTIVE)
            .values("owner_team", "category").annotate(count=Count("pk"), oldest=Min("created_at")))
    breached = Q(pk__in=[])
    for sla in slas.values():
        breached |= Q(category=sla.category, created_at__lt=now - sla.window)
    late = dict(exceptions_visible(user).filter(breached, status__in=ExceptionRecord.ACTIVE)
                .values_list("owner_team").annotate(n=Count("pk")))
    teams: dict[str, dict] = {}
    for row in rows:
        team = teams.setdefault(row["owner_team"], {
            "team": ExceptionRecord.Team(row["owner_team"]).label, "count": 0, "oldest_age": None,
            "oldest_sla": None, "breached": late.get(row["owner_team"], 0),
            "link": changelist("runtime.ExceptionRecord", owner_team=row["owner_team"], status__in="open,acknowledged"),
            "breached_link": changelist("runtime.ExceptionRecord", owner_team=row["owner_team"],
                                        status__in="open,acknowledged", sla="breached"),
        })
        team["count"] += row["count"]
        age = now - row["oldest"]
        if team["oldest_age"] is None or age > team["oldest_age"]:
            sla = slas.get(row["category"])
            team["oldest_age"], team["oldest_sla"] = age, sla.window if sla else None
    for team in teams.values():
        team["overdue"] = team["oldest_sla"] is not None and team["oldest_age"] > team["oldest_sla"]
        team["oldest_age"] = duration_text(team["oldest_age"])
        team["oldest_sla"] = duration_text(team["oldest_sla"]) if team["oldest_sla"] else None
    return sorted(teams.values(), key=lambda team: team["team"])


def duration_text(age: dt.timedelta) -> str:
    seconds = int(age.total_seconds())
    if seconds < 3600:
        return f"{seconds // 60} min" if seconds >= 60 else f"{seconds} s"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def queue_depth() -> list[Figure]:
    """Work waiting in the hub's tables (the source of truth), and in the broker's queue."""
    waiting = dict(Delivery.objects.filter(status__in=[*Delivery.WAITING, Delivery.Status.IN_FLIGHT])
                   .values_list("status").annotate(n=Count("pk")))
    figures = [
        Figure("inbox events to process", InboundEvent.objects.filter(status=InboundEvent.Status.RECEIVED).count(),
               changelist("runtime.InboundEvent", status="received")),
        *[Figure(f"deliveries {status}", waiting.get(status, 0), changelist("runtime.Delivery", status=status))
          for status in (Delivery.Status.PENDING, Delivery.Status.HELD, Delivery.Status.IN_FLIGHT)],
    ]
    broker = broker_queue_length()
    if broker is not None:
        figures.append(Figure("messages in the broker queue", broker, ""))
    return figures


def broker_queue_length() -> int | None:
    """Messages waiting in the Celery queue; None when the broker cannot say quickly."""
    from django.conf import settings

    from integration_hub.celery import app

    if not settings.CELERY_BROKER_URL.startswith(("redis://", "rediss://", "amqp://")):
        return None
    try:
        with app.connection_for_read() as connection:
            connection.ensure_connection(max_retries=1, timeout=2)
            return connection.default_channel.queue_declare(
                queue=settings.CELERY_TASK_DEFAULT_QUEUE, passive=True).message_count
    except Exception:  # noqa: BLE001 - a figure, not a reason to fail the page
        return None


def latency_by_connection(*, now: dt.datetime | None = None) -> list[dict]:
    """p50/p95 attempt duration and attempt count per connection over the last 24 hours."""
    since = (now or timezone.now()) - DAY
    if db.vendor == "postgresql":
        with db.cursor() as cursor:
            cursor.execute(
                """
                SELECT c.name, count(*),
                       percentile_cont(0.5) WITHIN GROUP (ORDER BY a.duration_ms),
                       percentile_cont(0.95) WITHIN GROUP (ORDER BY a.duration_ms)
                FROM runtime_deliveryattempt a
                JOIN runtime_delivery d ON d.id = a.delivery_id
                JOIN connectors_connection c ON c.id = d.connection_id
                WHERE a.started_at >= %s
                GROUP BY c.name ORDER BY c.name
                """,
                [since],
            )
            rows = cursor.fetchall()
    else:  # SQLite (development): no percentile function; small data by nature
        durations: dict[str, list[int]] = {}
        for name, ms in (DeliveryAttempt.objects.filter(started_at__gte=since)
                         .values_list("delivery__connection__name", "duration_ms").order_by("duration_ms")):
            durations.setdefault(name, []).append(ms)
        rows = [(name, len(values), _percentile(values, 0.5), _percentile(values, 0.95))
                for name, values in sorted(durations.items())]
    return [{"connection": name, "attempts": count, "p50_ms": round(p50 or 0), "p95_ms": round(p95 or 0),
             "link": changelist("runtime.Delivery", connection__name=name)} for name, count, p50, p95 in rows]


def _percentile(ordered: list[int], fraction: float) -> float:
    """Linear interpolation between closest ranks, as PostgreSQL's percentile_cont."""
    position = (len(ordered) - 1) * fraction
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def retry_rate(*, now: dt.datetime | None = None) -> dict:
    """Of the last 24 hours' attempts, the share that were retries (attempt 2 or later)."""
    since = (now or timezone.now()) - DAY
    counts = DeliveryAttempt.objects.filter(started_at__gte=since).aggregate(
        total=Count("pk"), retries=Count("pk", filter=Q(number__gt=1)),
        failed=Count("pk", filter=~Q(outcome=DeliveryAttempt.Outcome.POSTED)))
    total = counts["total"] or 0
    return {**counts, "rate": (counts["retries"] / total) if total else 0.0}


def breakers() -> list[dict]:
    return [{"connection": c.name, "role": c.role, **governor_status(c.pk),
             "link": changelist("runtime.AdmissionPolicy")}
            for c in Connection.objects.filter(is_active=True).order_by("name")]


def throughput(*, now: dt.datetime | None = None) -> dict:
    """Per hour of the last 24: webhooks received, attempts posted and attempts failed."""
    now = (now or timezone.now()).replace(minute=0, second=0, microsecond=0)
    hours = [now - dt.timedelta(hours=h) for h in range(23, -1, -1)]
    since = hours[0]

    def per_hour(queryset, field: str) -> dict:
        return {row["hour"]: row["n"] for row in queryset.filter(**{f"{field}__gte": since})
                .annotate(hour=TruncHour(field)).values("hour").annotate(n=Count("pk")).order_by()}

    received = per_hour(InboundEvent.objects, "received_at")
    attempts = DeliveryAttempt.objects
    posted = per_hour(attempts.filter(outcome=DeliveryAttempt.Outcome.POSTED), "started_at")
    failed = per_hour(attempts.exclude(outcome=DeliveryAttempt.Outcome.POSTED), "started_at")
    return {"hours": hours, "series": [
        ("webhooks received", [received.get(h, 0) for h in hours]),
        ("attempts posted", [posted.get(h, 0) for h in hours]),
        ("attempts failed", [failed.get(h, 0) for h in hours]),
    ]}


@dataclass
class Chart:
    """A bar chart drawn as inline SVG (no JavaScript, no CDN)."""

    title: str
    bars: list[dict] = field(default_factory=list)
    peak: int = 0
    total: int = 0


def chart_of(title: str, hours: list[dt.datetime], values: list[int], *, height: int = 80) -> Chart:
    peak = max(values) if values else 0
    width = 12
    bars = [{"x": i * (width + 2), "width": width, "height": round(height * v / peak) if peak else 0,
             "y": height - (round(height * v / peak) if peak else 0), "value": v, "hour": f"{h:%H}:00"}
            for i, (h, v) in enumerate(zip(hours, values, strict=True))]
    return Chart(title=title, bars=bars, peak=peak, total=sum(values))


def dashboard(user) -> dict:
    now = timezone.now()
    flow = throughput(now=now)
    return {
        "now": now,
        "flows": business_figures(user),
        "teams": exceptions_by_team(user, now=now),
        "held": held_by_reason(),
        "queue": queue_depth(),
        "latency": latency_by_connection(now=now),
        "retry": retry_rate(now=now),
        "breakers": breakers(),
        "charts": [chart_of(title, flow["hours"], values) for title, values in flow["series"]],
    }
