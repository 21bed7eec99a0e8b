"""REST endpoints of usage aggregation: batches in (streamed), their counts and rejects,
periods closed on demand, reconciliation checkpoints and their repair."""

from __future__ import annotations

import csv
import datetime as dt
import io

from django.http import StreamingHttpResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.decorators import api_view, parser_classes, permission_classes
from rest_framework.parsers import BaseParser
from rest_framework.request import Request
from rest_framework.response import Response

from integration_hub.api.permissions import owner_of
from integration_hub.usage import selectors, services
from integration_hub.usage.models import Checkpoint, UsageBatch
from integration_hub.usage.serializers import (
    BatchSerializer,
    CheckpointRequestSerializer,
    CheckpointSerializer,
    PeriodClosedSerializer,
    RepairSerializer,
)


class _Raw(BaseParser):
    """Leaves the body unread: the view streams it to storage."""

    media_type = "*/*"

    def parse(self, stream, media_type=None, parser_context=None):
        return {}


class _BodyStream(io.RawIOBase):
    """The request body as a file, read in chunks (never whole into memory)."""

    def __init__(self, request):
        self._request = request

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self._request.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


# Usage is product operations' data: other teams neither read nor act on it.
USAGE_OWNERS = owner_of("usage")


def _csv_response(rows, filename: str) -> StreamingHttpResponse:
    class Echo:
        def write(self, value):
            return value

    writer = csv.writer(Echo())
    response = StreamingHttpResponse((writer.writerow(row) for row in rows), content_type="text/csv")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@extend_schema(methods=["GET"], responses={200: BatchSerializer(many=True)}, operation_id="usage_batches_list")
@extend_schema(methods=["POST"], request={"text/csv": bytes, "application/x-ndjson": bytes},
               responses={202: BatchSerializer}, operation_id="usage_batches_create")
@api_view(["GET", "POST"])
@permission_classes([USAGE_OWNERS])
@parser_classes([_Raw])
def batches(request: Request) -> Response:
    """POST: a usage file as the body (CSV with a header or JSON lines; gzip by
    ``Content-Encoding: gzip`` or by content), streamed to storage and loaded by the
    usage worker; 202 with the batch. GET: the latest batches."""
    if request.method == "GET":
        return Response([selectors.batch_detail(b) for b in UsageBatch.objects.all()[:50]])
    filename = request.query_params.get("filename") or "upload"
    batch = services.batch_receive(stream=io.BufferedReader(_BodyStream(request._request), 1 << 20),
                                   filename=filename, source=UsageBatch.Source.API)
    return Response(selectors.batch_detail(batch), status=status.HTTP_202_ACCEPTED,
                    headers={"Location": f"/api/usage/batches/{batch.pk}/"})


@extend_schema(responses={200: BatchSerializer})
@api_view(["GET"])
@permission_classes([USAGE_OWNERS])
def batch_detail(request: Request, batch_id: int) -> Response:
    return Response(selectors.batch_detail(get_object_or_404(UsageBatch, pk=batch_id)))


@extend_schema(responses={(200, "text/csv"): bytes})
@api_view(["GET"])
@permission_classes([USAGE_OWNERS])
def batch_rejects(request: Request, batch_id: int) -> StreamingHttpResponse:
    batch = get_object_or_404(UsageBatch, pk=batch_id)
    return _csv_response(services.rejects_csv_rows(batch), f"usage-batch-{batch.pk}-rejects.csv")


def _period(value: str) -> dt.date | None:
    try:
        return dt.date.fromisoformat(f"{value}-01" if len(value) == 7 else value).replace(day=1)
    except (TypeError, ValueError):
        return None


@extend_schema(request=None, responses={200: PeriodClosedSerializer})
@api_view(["POST"])
@permission_classes([USAGE_OWNERS])
def period_close(request: Request, period: str) -> Response:
    parsed = _period(period)
    if parsed is None:
        return Response({"detail": "period must be YYYY-MM"}, status=status.HTTP_400_BAD_REQUEST)
    closed = services.period_close(parsed)
    return Response({"period": f"{closed.period:%Y-%m}", "status": closed.status,
                     "pushes": closed.pushes.count()})


@extend_schema(methods=["GET"], responses={200: CheckpointSerializer(many=True)},
               operation_id="reconciliations_list")
@extend_schema(methods=["POST"], request=CheckpointRequestSerializer, responses={202: CheckpointSerializer},
               operation_id="reconciliations_run")
@api_view(["GET", "POST"])
@permission_classes([USAGE_OWNERS])
def reconciliations(request: Request) -> Response:
    """POST ``{"period": "YYYY-MM"}`` (and ``"invoice_stages": true`` to compare invoice lines
    and ERP postings before the period's invoices are due): queue a checkpoint (202, status
    ``running``); the usage worker fills it — poll ``GET /api/reconciliations/<id>/``."""
    if request.method == "GET":
        return Response([selectors.checkpoint_detail(c) for c in Checkpoint.objects.all()[:50]])
    parsed = _period(str(request.data.get("period", "")))
    if parsed is None:
        return Response({"period": ["YYYY-MM required"]}, status=status.HTTP_400_BAD_REQUEST)
    invoice_stages = request.data.get("invoice_stages")
    if invoice_stages not in (None, True, False):
        return Response({"invoice_stages": ["true, false or null"]}, status=status.HTTP_400_BAD_REQUEST)
    checkpoint = services.checkpoint_request(parsed, invoice_stages=invoice_stages)
    return Response(selectors.checkpoint_detail(checkpoint), status=status.HTTP_202_ACCEPTED,
                    headers={"Location": f"/api/reconciliations/{checkpoint.pk}/"})


@extend_schema(responses={200: CheckpointSerializer, (200, "text/csv"): bytes},
               operation_id="reconciliations_detail")
@api_view(["GET"])
@permission_classes([USAGE_OWNERS])
def reconciliation_detail(request: Request, checkpoint_id: int):
    checkpoint = get_object_or_404(Checkpoint, pk=checkpoint_id)
    if request.query_params.get("as") == "csv":
        return _csv_response(selectors.checkpoint_csv_rows(checkpoint), f"usage-checkpoint-{checkpoint.pk}.csv")
    return Response(selectors.checkpoint_detail(checkpoint))


@extend_schema(request=None, responses={202: RepairSerializer})
@api_view(["POST"])
@permission_classes([USAGE_OWNERS])
def reconciliation_repair(request: Request, checkpoint_id: int) -> Response:
    checkpoint = get_object_or_404(Checkpoint, pk=checkpoint_id)
    repair = services.checkpoint_repair(checkpoint, user=request.user)
    return Response({"pushes": [p.pk for p in repair.pushes], "events": repair.events, "replayed": repair.replayed},
                    status=status.HTTP_202_ACCEPTED)
