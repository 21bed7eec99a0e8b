"""REST endpoints (token authentication): traces, deliveries, exceptions, replay."""

from __future__ import annotations

import uuid

from django.db import transaction
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action, api_view, throttle_classes
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import UserRateThrottle

from connectors.models import Connection
from integration_hub.api.serializers import (
    BulkReplayResultSerializer,
    BulkReplaySerializer,
    ConnectionHealthSerializer,
    CustomerDetailSerializer,
    DeliverySerializer,
    EditAndReplaySerializer,
    ErrorSerializer,
    ExceptionRecordSerializer,
    ReplaySerializer,
    SyncRunSerializer,
    TransactionTraceSerializer,
)
from integration_hub.operations import services as operations
from integration_hub.operations.selectors import deliveries_by_state, transaction_trace
from integration_hub.runtime import services
from integration_hub.runtime.governor import governor_status
from integration_hub.runtime.models import Delivery, ExceptionRecord
from integration_hub.workflows.models import SyncRun
from integration_hub.workflows.selectors import customer_detail, sync_run_detail
from integration_hub.workflows.services import PULL_RUN_TASK, sync_run_create


class SyncThrottle(UserRateThrottle):
    """Sync triggers spend the CRM's API quota: a lower rate per user."""

    scope = "sync"


class ReplayThrottle(UserRateThrottle):
    scope = "replay"


_REPLAY_THROTTLES = [UserRateThrottle, ReplayThrottle]


@extend_schema(responses={200: TransactionTraceSerializer, 404: ErrorSerializer})
@api_view(["GET"])
def transaction_detail(request: Request, transaction_id: uuid.UUID) -> Response:
    """One business transaction's trace: events, canonical records, deliveries with
    their attempts, and exceptions."""
    trace = transaction_trace(transaction_id)
    if trace is None:
        return Response({"error": "not_found", "detail": "no such business transaction"}, status=404)
    return Response(TransactionTraceSerializer(trace).data)


@extend_schema(responses={200: ConnectionHealthSerializer(many=True)})
@api_view(["GET"])
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

    def get_queryset(self):
        queryset = Delivery.objects.select_related("connection").order_by("-created_at")
        if status_filter := self.request.query_params.get("status"):
            queryset = queryset.filter(status=status_filter)
        return queryset


class ExceptionRecordViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    serializer_class = ExceptionRecordSerializer

    def get_queryset(self):
        queryset = ExceptionRecord.objects.order_by("-created_at")
        for field in ("status", "owner_team", "category"):
            if value := self.request.query_params.get(field):
                queryset = queryset.filter(**{field: value})
        return queryset

    @extend_schema(request=ReplaySerializer, responses={202: ExceptionRecordSerializer})
    @action(detail=True, methods=["post"], throttle_classes=_REPLAY_THROTTLES)
    def replay(self, request: Request, pk: str | None = None) -> Response:
        """Replay the dead delivery or failed event behind this exception."""
        return self._act_on_open(request, pk, ReplaySerializer, lambda record, data: services.exception_replay(
            record, user=request.user, reason=data["reason"]))

    @extend_schema(request=BulkReplaySerializer, responses={202: BulkReplayResultSerializer},
                   operation_id="exceptions_replay_many")
    @action(detail=False, methods=["post"], url_path="replay", throttle_classes=_REPLAY_THROTTLES)
    def replay_many(self, request: Request) -> Response:
        """Replay every open exception matching the ids or filters given."""
        form = BulkReplaySerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        records = ExceptionRecord.objects.filter(status=ExceptionRecord.Status.OPEN)
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

    def _act_on_open(self, request: Request, pk: str | None, form_class, act) -> Response:
        """Validate the request, act on the exception if it is still open, answer
        202 with its new state; 409 if resolved or not replayable, 400 if rejected."""
        record = get_object_or_404(ExceptionRecord, pk=pk)
        form = form_class(data=request.data)
        form.is_valid(raise_exception=True)
        if record.status != ExceptionRecord.Status.OPEN:
            return Response({"error": "not_open", "detail": "this exception is already resolved"}, status=409)
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
def customers_sync(request: Request) -> Response:
    """Start a pull of CRM customer changes since the watermark; returns the run id
    (poll ``GET /api/syncs/<id>/``)."""
    with transaction.atomic():
        run = sync_run_create(trigger="api")
        services.enqueue_after_commit(PULL_RUN_TASK, run.pk)
    return Response(SyncRunSerializer(sync_run_detail(run)).data, status=status.HTTP_202_ACCEPTED)


@extend_schema(responses={200: SyncRunSerializer, 404: ErrorSerializer})
@api_view(["GET"])
def sync_detail(request: Request, run_id: int) -> Response:
    run = SyncRun.objects.filter(pk=run_id).first()
    if run is None:
        return Response({"error": "not_found", "detail": "no such sync run"}, status=404)
    return Response(SyncRunSerializer(sync_run_detail(run)).data)


@extend_schema(responses={200: CustomerDetailSerializer, 404: ErrorSerializer})
@api_view(["GET"])
def customer_detail_view(request: Request, customer_id: int) -> Response:
    """The canonical customer with its cross-references, deliveries, confirmations,
    open conflicts and duplicate cases, and one-word sync status."""
    detail = customer_detail(customer_id)
    if detail is None:
        return Response({"error": "not_found", "detail": "no such customer"}, status=404)
    return Response(CustomerDetailSerializer(detail).data)
