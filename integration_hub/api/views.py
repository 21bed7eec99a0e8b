"""REST endpoints (token authentication): traces, deliveries, exceptions, replay.

A token belongs to a user and can do what the user can: every endpoint checks the
user's permissions (the role groups, ``operations/roles.py``) and shows only the
records of the user's teams (``operations/access.py``); another team's record answers
404, as if it did not exist.
"""

from __future__ import annotations

import uuid

from django.contrib.auth import get_user_model
from django.db import transaction
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action, api_view, permission_classes, throttle_classes
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import UserRateThrottle

from connectors.models import Connection
from integration_hub.api.permissions import requires
from integration_hub.api.serializers import (
    AcknowledgeSerializer,
    AssignSerializer,
    BulkReplayResultSerializer,
    BulkReplaySerializer,
    CloseSerializer,
    ConnectionHealthSerializer,
    CustomerDetailSerializer,
    DeliverySerializer,
    EditAndReplaySerializer,
    ErrorSerializer,
    ExceptionNoteSerializer,
    ExceptionRecordSerializer,
    InventoryFlowSerializer,
    ReplaySerializer,
    SubscriptionDetailSerializer,
    SyncRunSerializer,
    TransactionTraceSerializer,
)
from integration_hub.operations import access
from integration_hub.operations import services as operations
from integration_hub.operations.inventory import inventory
from integration_hub.operations.selectors import deliveries_by_state, visible_trace
from integration_hub.runtime import services
from integration_hub.runtime.governor import governor_status
from integration_hub.runtime.models import ExceptionRecord
from integration_hub.workflows.models import SyncRun
from integration_hub.workflows.selectors import customer_detail, subscription_detail, sync_run_detail
from integration_hub.workflows.services import PULL_RUN_TASK, sync_run_create

NOT_FOUND = {"error": "not_found", "detail": "no such business transaction"}


class SyncThrottle(UserRateThrottle):
    """Sync triggers spend the CRM's API quota: a lower rate per user."""

    scope = "sync"


class ReplayThrottle(UserRateThrottle):
    scope = "replay"


_REPLAY_THROTTLES = [UserRateThrottle, ReplayThrottle]


@extend_schema(responses={200: TransactionTraceSerializer, 404: ErrorSerializer})
@api_view(["GET"])
@permission_classes([requires("runtime.view_businesstransaction")])
def transaction_detail(request: Request, transaction_id: uuid.UUID) -> Response:
    """One business transaction's trace: events, canonical records, deliveries with
    their attempts, and exceptions."""
    trace = visible_trace(request.user, transaction_id)
    if trace is None:
        return Response(NOT_FOUND, status=404)
    return Response(TransactionTraceSerializer(trace).data)


@extend_schema(responses={200: InventoryFlowSerializer(many=True)})
@api_view(["GET"])
@permission_classes([requires("operations.view_console")])
def inventory_list(request: Request) -> Response:
    """Every integration flow, generated from the workflow registry and the data: its
    pattern, connections, contracts, system-of-record rules, posting policy in force,
    owning team and last 30 days."""
    return Response(InventoryFlowSerializer(inventory(), many=True).data)


@extend_schema(responses={200: ConnectionHealthSerializer(many=True)})
@api_view(["GET"])
@permission_classes([requires("connectors.view_connection")])
def connections_health(request: Request) -> Response:
    """Each connection's governor state (circuit, calls in flight, Retry-After wait),
    and how many deliveries it holds or has dead-lettered, with the hold reasons."""
    return Response(ConnectionHealthSerializer([
        {"name": connection.name, "vendor": connection.vendor, "role": connection.role,
         "active": connection.is_active, **governor_status(connection.pk), **deliveries_by_state(connection)}
        for connection in Connection.objects.order_by("name")
    ], many=True).data)


class DeliveryViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = DeliverySerializer
    permission_classes = [requires("runtime.view_delivery")]

    def get_queryset(self):
        queryset = access.deliveries_visible(self.request.user).select_related("connection").order_by("-created_at")
        if status_filter := self.request.query_params.get("status"):
            queryset = queryset.filter(status=status_filter)
        return queryset


class ExceptionRecordViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Exceptions of the user's teams; each action needs its own permission."""

    serializer_class = ExceptionRecordSerializer
    ACTION_PERMISSIONS = {
        "replay": (operations.REPLAY,),
        "replay_many": (operations.REPLAY, operations.BULK_REPLAY),
        "edit_and_replay": (operations.EDIT_AND_REPLAY,),
        "acknowledge": (operations.WORK,),
        "assign": (operations.WORK,),
        "close": (operations.WORK,),
    }

    def get_permissions(self):
        needed = self.ACTION_PERMISSIONS.get(self.action, ())
        if self.action == "notes" and self.request.method == "POST":
            needed = (operations.WORK,)
        return [requires("runtime.view_exceptionrecord", *needed)()]

    def get_queryset(self):
        queryset = access.exceptions_visible(self.request.user).select_related("assignee").order_by("-created_at")
        for field in ("status", "owner_team", "category"):
            if value := self.request.query_params.get(field):
                queryset = queryset.filter(**{field: value})
        return queryset

    @extend_schema(request=ReplaySerializer, responses={202: ExceptionRecordSerializer})
    @action(detail=True, methods=["post"], throttle_classes=_REPLAY_THROTTLES)
    def replay(self, request: Request, pk: str | None = None) -> Response:
        """Replay the dead delivery or failed event behind this exception."""
        return self._act_on_open(request, pk, ReplaySerializer, lambda record, data: operations.exception_replay(
            record, user=request.user, reason=data["reason"]))

    @extend_schema(request=BulkReplaySerializer, responses={202: BulkReplayResultSerializer},
                   operation_id="exceptions_replay_many")
    @action(detail=False, methods=["post"], url_path="replay", throttle_classes=_REPLAY_THROTTLES)
    def replay_many(self, request: Request) -> Response:
        """Replay every open exception matching the ids or filters given."""
        form = BulkReplaySerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        records = self.get_queryset().filter(status__in=ExceptionRecord.ACTIVE)
        if "ids" in data:
            records = records.filter(pk__in=data["ids"])
        for name in ("owner_team", "category"):
            if name in data:
                records = records.filter(**{name: data[name]})
        if "connection" in data:
            records = records.filter(delivery__connection__name=data["connection"])
        result = operations.exceptions_replay(records, user=request.user, reason=data["reason"])
        return Response(BulkReplayResultSerializer(result).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=EditAndReplaySerializer, responses={202: ExceptionRecordSerializer})
    @action(detail=True, methods=["post"], url_path="edit-and-replay", throttle_classes=_REPLAY_THROTTLES)
    def edit_and_replay(self, request: Request, pk: str | None = None) -> Response:
        """Correct the payload or the canonical record behind this exception, then replay."""
        return self._act_on_open(request, pk, EditAndReplaySerializer, lambda record, data: (
            operations.exception_edit_and_replay(record, user=request.user, reason=data["reason"],
                                                 payload=data.get("payload"), corrections=data.get("corrections"))))

    @extend_schema(request=AcknowledgeSerializer, responses={202: ExceptionRecordSerializer})
    @action(detail=True, methods=["post"])
    def acknowledge(self, request: Request, pk: str | None = None) -> Response:
        """Take the exception on: open → acknowledged (assigned to you unless assigned)."""
        return self._act_on_open(request, pk, AcknowledgeSerializer, lambda record, data: (
            operations.exception_acknowledge(record, user=request.user, note=data["note"])))

    @extend_schema(request=AssignSerializer, responses={202: ExceptionRecordSerializer})
    @action(detail=True, methods=["post"])
    def assign(self, request: Request, pk: str | None = None) -> Response:
        """Give the exception to a member of its owning team (null: nobody)."""
        def act(record, data):
            assignee = None
            if data["assignee"]:
                assignee = get_user_model().objects.filter(username=data["assignee"], is_active=True).first()
                if assignee is None:
                    raise operations.CorrectionRejected(f"no active user {data['assignee']!r}")
            operations.exception_assign(record, user=request.user, assignee=assignee, reason=data["reason"])
        return self._act_on_open(request, pk, AssignSerializer, act)

    @extend_schema(request=CloseSerializer, responses={202: ExceptionRecordSerializer})
    @action(detail=True, methods=["post"])
    def close(self, request: Request, pk: str | None = None) -> Response:
        """Resolve (handled outside the hub) or dismiss (nothing to do), with a reason."""
        return self._act_on_open(request, pk, CloseSerializer, lambda record, data: operations.exception_close(
            record, user=request.user, status=data["status"], reason=data["reason"]))

    @extend_schema(methods=["GET"], request=None, responses={200: ExceptionNoteSerializer(many=True)})
    @extend_schema(methods=["POST"], request=ExceptionNoteSerializer, responses={201: ExceptionNoteSerializer})
    @action(detail=True, methods=["get", "post"])
    def notes(self, request: Request, pk: str | None = None) -> Response:
        """The exception's notes, oldest first; POST adds one."""
        record = get_object_or_404(self.get_queryset(), pk=pk)
        if request.method == "GET":
            return Response(ExceptionNoteSerializer(record.notes.select_related("author"), many=True).data)
        form = ExceptionNoteSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        try:
            note = operations.exception_note_add(record, user=request.user, text=form.validated_data["text"])
        except operations.CorrectionRejected as exc:
            return Response({"error": "invalid_note", "detail": str(exc)}, status=400)
        return Response(ExceptionNoteSerializer(note).data, status=status.HTTP_201_CREATED)

    def _act_on_open(self, request: Request, pk: str | None, form_class, act) -> Response:
        """Validate the request, act on the exception if it is still active, answer
        202 with its new state; 409 if closed or not replayable, 400 if rejected.
        Another team's exception is not found (404)."""
        record = get_object_or_404(self.get_queryset(), pk=pk)
        form = form_class(data=request.data)
        form.is_valid(raise_exception=True)
        if record.status not in ExceptionRecord.ACTIVE:
            return Response({"error": "not_open", "detail": f"this exception is already {record.status}"},
                            status=409)
        try:
            act(record, form.validated_data)
        except operations.CorrectionRejected as exc:
            return Response({"error": "correction_rejected", "detail": str(exc)}, status=400)
        except services.InvalidTransition as exc:
            return Response({"error": "invalid_transition", "detail": str(exc)}, status=409)
        record.refresh_from_db()
        return Response(ExceptionRecordSerializer(record).data, status=status.HTTP_202_ACCEPTED)


@extend_schema(request=None, responses={202: SyncRunSerializer})
@api_view(["POST"])
@throttle_classes([UserRateThrottle, SyncThrottle])
@permission_classes([requires("operations.trigger_sync")])
def customers_sync(request: Request) -> Response:
    """Start a pull of CRM customer changes since the watermark; returns the run id
    (poll ``GET /api/syncs/<id>/``)."""
    with transaction.atomic():
        run = sync_run_create(trigger="api")
        services.enqueue_after_commit(PULL_RUN_TASK, run.pk)
    return Response(SyncRunSerializer(sync_run_detail(run)).data, status=status.HTTP_202_ACCEPTED)


@extend_schema(responses={200: SyncRunSerializer, 404: ErrorSerializer})
@api_view(["GET"])
@permission_classes([IsAuthenticated])
def sync_detail(request: Request, run_id: int) -> Response:
    """A customer pull's state (for those who may start one, or see every team's)."""
    user = request.user
    allowed = user.has_perm("operations.trigger_sync") or access.user_teams(user) is access.ALL_TEAMS
    run = SyncRun.objects.filter(pk=run_id).first() if allowed else None
    if run is None:
        return Response({"error": "not_found", "detail": "no such sync run"}, status=404)
    return Response(SyncRunSerializer(sync_run_detail(run)).data)


@extend_schema(responses={200: CustomerDetailSerializer, 404: ErrorSerializer})
@api_view(["GET"])
def customer_detail_view(request: Request, customer_id: int) -> Response:
    """The canonical customer with its cross-references, deliveries, confirmations,
    open conflicts and duplicate cases, and one-word sync status. For the team that
    owns customer data (and those who see every team's)."""
    if not (request.user.has_perm("canonical.view_customer") and access.owns_kind(request.user, "customer")):
        return Response({"error": "not_found", "detail": "no such customer"}, status=404)
    detail = customer_detail(customer_id)
    if detail is None:
        return Response({"error": "not_found", "detail": "no such customer"}, status=404)
    return Response(CustomerDetailSerializer(detail).data)


@extend_schema(responses={200: SubscriptionDetailSerializer, 404: ErrorSerializer})
@api_view(["GET"])
def subscription_detail_view(request: Request, subscription_id: int) -> Response:
    """The canonical subscription (SubscriptionV1), the order it came from and its
    history: each amendment with its saga's steps, and the deliveries that carried
    them out. For the team that owns subscription data."""
    if not (request.user.has_perm("canonical.view_subscription") and access.owns_kind(request.user, "subscription")):
        return Response({"error": "not_found", "detail": "no such subscription"}, status=404)
    detail = subscription_detail(subscription_id)
    if detail is None:
        return Response({"error": "not_found", "detail": "no such subscription"}, status=404)
    return Response(SubscriptionDetailSerializer(detail).data)
