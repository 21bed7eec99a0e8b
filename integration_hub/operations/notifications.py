"""E-mail to the owning team: new high-severity exceptions, and SLA breaches.

Run by beat (``hub.exceptions_notify``): each pass finds, with one query per kind, the
exceptions not yet announced, sends one message per team through Django's e-mail
backend, and stamps them (``notified_at``, ``breach_notified_at``), so each exception
is announced once and its breach once, whichever worker runs the pass. A failed send
leaves the stamps unset and the next pass tries again.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass

import structlog
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from integration_hub.operations.models import ExceptionSla
from integration_hub.operations.roles import GROUP_OF_TEAM
from integration_hub.runtime.models import ExceptionRecord

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class NotifyReport:
    announced: int
    breaches: int


def team_recipients(team: str) -> list[str]:
    """The team's configured addresses (HUB_TEAM_EMAILS) and its members' e-mails."""
    members = get_user_model().objects.filter(
        is_active=True, groups__name=GROUP_OF_TEAM.get(team, "")).exclude(email="")
    return sorted(set(settings.HUB_TEAM_EMAILS.get(team, [])) | set(members.values_list("email", flat=True)))


def sla_breached_q(now: dt.datetime) -> Q:
    """Active exceptions older than their category's SLA (categories without one never breach)."""
    breached = Q(pk__in=[])
    for sla in ExceptionSla.objects.all():
        breached |= Q(category=sla.category, created_at__lt=now - sla.window)
    return Q(status__in=ExceptionRecord.ACTIVE) & breached


def _send(team: str, subject: str, records: list[ExceptionRecord]) -> bool:
    recipients = team_recipients(team)
    if not recipients:
        log.warning("exception_notification_has_no_recipient", team=team, count=len(records))
        return True  # nobody to tell: stamp them, or every pass would retry forever
    lines = [f"- #{r.pk} [{r.get_category_display()}] {r.summary} (open since {r.created_at:%Y-%m-%d %H:%M} UTC)"
             for r in records]
    body = "\n".join([subject, "", *lines, "", "Open them in the operations console: /admin/runtime/exceptionrecord/"])
    try:
        send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, recipients)
    except OSError as exc:
        log.warning("exception_notification_failed", team=team, error=str(exc))
        return False
    return True


def _announce(records, stamp: str, subject: str) -> int:
    by_team: dict[str, list[ExceptionRecord]] = defaultdict(list)
    for record in records:
        by_team[record.owner_team].append(record)
    sent = 0
    for team, items in by_team.items():
        label = ExceptionRecord.Team(team).label
        if _send(team, subject.format(count=len(items), team=label), items):
            ExceptionRecord.objects.filter(pk__in=[r.pk for r in items]).update(**{stamp: timezone.now()})
            sent += len(items)
    return sent


def exceptions_notify(*, now: dt.datetime | None = None, limit: int = 200) -> NotifyReport:
    now = now or timezone.now()
    high = ExceptionSla.objects.filter(severity=ExceptionSla.Severity.HIGH).values_list("category", flat=True)
    with transaction.atomic():
        # skip_locked: two passes at once (two beat schedulers, a manual run) never double-send.
        fresh = list(ExceptionRecord.objects.select_for_update(skip_locked=True).filter(
            status__in=ExceptionRecord.ACTIVE, notified_at__isnull=True, category__in=list(high),
        ).order_by("created_at")[:limit])
        announced = _announce(fresh, "notified_at", "{count} new high-severity exception(s) for {team}")
    with transaction.atomic():
        late = list(ExceptionRecord.objects.select_for_update(skip_locked=True).filter(
            sla_breached_q(now), breach_notified_at__isnull=True).order_by("created_at")[:limit])
        breaches = _announce(late, "breach_notified_at", "{count} exception(s) for {team} passed their SLA")
    if announced or breaches:
        log.info("exceptions_notified", announced=announced, breaches=breaches)
    return NotifyReport(announced=announced, breaches=breaches)
