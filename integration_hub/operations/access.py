"""Which records a person may see: the one place the console and the API scope by team.

Every list and detail of exceptions, transactions, deliveries, inbound events and
customers goes through these selectors, so a record of another team is neither listed
nor found (a 404, never a 403 that would confirm it exists). See ``roles.py``.
"""

from __future__ import annotations

from django.db.models import Exists, OuterRef, Q, QuerySet

from integration_hub.operations.roles import TEAM_OF_GROUP
from integration_hub.runtime import dispatch
from integration_hub.runtime.models import BusinessTransaction, Delivery, ExceptionRecord, InboundEvent

ALL_TEAMS = None


def user_teams(user) -> frozenset[str] | None:
    """The teams whose records ``user`` sees; None for every team."""
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return frozenset()
    if user.is_superuser or user.has_perm("operations.view_all_teams"):
        return ALL_TEAMS
    cached = getattr(user, "_hub_teams", None)
    if cached is None:
        names = user.groups.values_list("name", flat=True)
        cached = frozenset(TEAM_OF_GROUP[name] for name in names if name in TEAM_OF_GROUP)
        user._hub_teams = cached
    return cached


def _kinds_of(teams: frozenset[str]) -> list[str]:
    """Business-transaction kinds whose data the teams own (the workflows' declaration)."""
    return [
        subject
        for workflow in dispatch.workflows()
        if workflow.data_owner in teams
        for subject in workflow.subjects
    ]


def exceptions_visible(user, records: QuerySet | None = None) -> QuerySet:
    records = ExceptionRecord.objects.all() if records is None else records
    teams = user_teams(user)
    return records if teams is ALL_TEAMS else records.filter(owner_team__in=teams)


def transactions_visible(user, transactions: QuerySet | None = None) -> QuerySet:
    """Transactions of a kind the user's teams own, or carrying one of their exceptions."""
    transactions = BusinessTransaction.objects.all() if transactions is None else transactions
    teams = user_teams(user)
    if teams is ALL_TEAMS:
        return transactions
    theirs = ExceptionRecord.objects.filter(transaction=OuterRef("pk"), owner_team__in=teams)
    return transactions.filter(Q(kind__in=_kinds_of(teams)) | Exists(theirs))


def _through_transaction(user, queryset: QuerySet) -> QuerySet:
    if user_teams(user) is ALL_TEAMS:
        return queryset
    return queryset.filter(Exists(transactions_visible(user).filter(pk=OuterRef("transaction_id"))))


def deliveries_visible(user, deliveries: QuerySet | None = None) -> QuerySet:
    return _through_transaction(user, Delivery.objects.all() if deliveries is None else deliveries)


def events_visible(user, events: QuerySet | None = None) -> QuerySet:
    return _through_transaction(user, InboundEvent.objects.all() if events is None else events)


def owns_kind(user, kind: str) -> bool:
    """Whether the user's teams own the data of business transactions of ``kind``."""
    teams = user_teams(user)
    return teams is ALL_TEAMS or dispatch.data_owner(kind, "") in teams
