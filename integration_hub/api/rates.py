"""``POST /api/rates/load/``: read the reference rates in force on a date from the rate
source and plan their loads into every ERP (``workflows.exchange_rates``). The source
is read in the request (one small public file); the ERP loads go through the outbox."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.decorators import api_view, permission_classes, throttle_classes
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import UserRateThrottle

from connectors.errors import ConnectorError, NeedsConfiguration, Retryable
from integration_hub.api.permissions import requires
from integration_hub.api.serializers import ErrorSerializer
from integration_hub.api.views import SyncThrottle
from integration_hub.workflows.exchange_rates import (
    LOAD_PERMISSION,
    NoRatesPublished,
    rates_load,
    rates_source,
)


class RatesLoadRequestSerializer(serializers.Serializer):
    date = serializers.DateField(required=False, help_text="Rates in force on this date (default today)")
    connection = serializers.CharField(required=False, allow_blank=True, max_length=50,
                                       help_text="Rate-source connection (default: the only active one)")


class RatesLoadSerializer(serializers.Serializer):
    source = serializers.CharField()
    requested = serializers.DateField()
    published = serializers.DateField(help_text="The publication day the rates are from")
    stored = serializers.IntegerField(help_text="Rates stored now (0 when loaded before)")
    planned = serializers.IntegerField(help_text="ERP loads planned now (one per currency × date × ERP)")
    currencies = serializers.ListField(child=serializers.CharField())
    unpublished = serializers.ListField(child=serializers.CharField(),
                                        help_text="Wanted currencies the source does not publish")
    erps = serializers.ListField(child=serializers.CharField())


@extend_schema(request=RatesLoadRequestSerializer,
               responses={200: RatesLoadSerializer, 400: ErrorSerializer, 409: ErrorSerializer,
                          502: ErrorSerializer, 503: ErrorSerializer})
@api_view(["POST"])
@permission_classes([requires(LOAD_PERMISSION)])
@throttle_classes([UserRateThrottle, SyncThrottle])
def rates_load_view(request: Request) -> Response:
    """Load the reference rates in force on ``date``. 409 when nothing is configured
    or nothing was published by then; 503 when the source cannot answer now; 502 when
    its answer is unusable."""
    form = RatesLoadRequestSerializer(data=request.data)
    form.is_valid(raise_exception=True)
    try:
        source = rates_source(form.validated_data.get("connection", ""))
        result = rates_load(on=form.validated_data.get("date"), source=source)
    except NeedsConfiguration as exc:
        return Response({"error": "not_configured", "detail": str(exc)}, status=409)
    except NoRatesPublished as exc:
        return Response({"error": "no_rates", "detail": str(exc)}, status=409)
    except Retryable as exc:
        return Response({"error": "source_unavailable", "detail": str(exc)}, status=503)
    except ConnectorError as exc:
        return Response({"error": "source_rejected", "detail": str(exc)}, status=502)
    return Response(RatesLoadSerializer(result.as_dict()).data)
