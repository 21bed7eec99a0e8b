"""REST endpoints of the catalog workflow: trigger a pull, list versions awaiting a
decision, approve or reject one (the caller needs the catalog-approver permission),
and read the released price for a price id (what orders and quotes reference)."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.decorators import api_view, throttle_classes
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import UserRateThrottle

from canonical.models import CatalogVersion, PriceVersion, ProductVersion
from canonical.selectors import price_released
from canonical.versions import InvalidVersionTransition
from connectors.errors import NeedsConfiguration
from integration_hub.api.serializers import ErrorSerializer, SyncRunSerializer
from integration_hub.api.views import SyncThrottle
from integration_hub.workflows.catalog import CatalogDecisionRefused, version_decide
from integration_hub.workflows.catalog_pull import catalog_connection, catalog_pull_request
from integration_hub.workflows.selectors import sync_run_detail

MODELS = {"product": ProductVersion, "price": PriceVersion}


class CatalogSyncSerializer(serializers.Serializer):
    connection = serializers.CharField(required=False, allow_blank=True,
                                       help_text="Product connection (default: the only active one)")
    full_scan = serializers.BooleanField(required=False, default=False)


class VersionSerializer(serializers.Serializer):
    kind = serializers.CharField()
    id = serializers.IntegerField()
    owner = serializers.CharField(help_text="SKU or price id")
    number = serializers.IntegerField()
    status = serializers.CharField()
    changes = serializers.DictField()
    content = serializers.DictField()
    decided_by = serializers.CharField(allow_null=True)
    decided_by_rule = serializers.CharField(allow_blank=True)
    decision_reason = serializers.CharField(allow_blank=True)
    released_at = serializers.DateTimeField(allow_null=True)


class DecisionSerializer(serializers.Serializer):
    reason = serializers.CharField(required=False, allow_blank=True, default="")


def version_data(version: CatalogVersion) -> dict:
    kind = "product" if isinstance(version, ProductVersion) else "price"
    owner = version.product.sku if kind == "product" else version.price.source_id
    return {"kind": kind, "id": version.pk, "owner": owner, "number": version.number, "status": version.status,
            "changes": version.changes, "content": version.content,
            "decided_by": version.decided_by.get_username() if version.decided_by else None,
            "decided_by_rule": version.decided_by_rule, "decision_reason": version.decision_reason,
            "released_at": version.released_at}


@extend_schema(request=CatalogSyncSerializer, responses={202: SyncRunSerializer, 409: ErrorSerializer})
@api_view(["POST"])
@throttle_classes([UserRateThrottle, SyncThrottle])
def catalog_sync(request: Request) -> Response:
    """Queue a catalog pull; poll ``GET /api/syncs/<id>/`` for its progress."""
    form = CatalogSyncSerializer(data=request.data)
    form.is_valid(raise_exception=True)
    try:
        connection = catalog_connection(form.validated_data.get("connection", ""))
    except NeedsConfiguration as exc:
        return Response({"error": "not_configured", "detail": str(exc)}, status=409)
    run = catalog_pull_request(connection, trigger="api", full_scan=form.validated_data["full_scan"])
    return Response(SyncRunSerializer(sync_run_detail(run)).data, status=status.HTTP_202_ACCEPTED)


@extend_schema(responses={200: VersionSerializer(many=True)})
@api_view(["GET"])
def catalog_versions(request: Request) -> Response:
    """Versions by ``status`` (default ``draft``: awaiting a decision), oldest first."""
    wanted = request.query_params.get("status", CatalogVersion.Status.DRAFT)
    rows = [version_data(v) for model in (ProductVersion, PriceVersion)
            for v in model.objects.filter(status=wanted).select_related("decided_by").order_by("pk")]
    return Response(VersionSerializer(rows, many=True).data)


@extend_schema(request=DecisionSerializer, responses={200: VersionSerializer, 403: ErrorSerializer,
                                                      409: ErrorSerializer})
@api_view(["POST"])
def catalog_decide(request: Request, kind: str, version_id: int, decision: str) -> Response:
    """``approve`` (plans the release) or ``reject`` (needs a reason)."""
    model = MODELS.get(kind)
    if model is None or decision not in ("approve", "reject"):
        return Response({"error": "not_found", "detail": "use product|price and approve|reject"}, status=404)
    version = get_object_or_404(model, pk=version_id)
    form = DecisionSerializer(data=request.data)
    form.is_valid(raise_exception=True)
    try:
        decided = version_decide(version, approve=decision == "approve", user=request.user,
                                 reason=form.validated_data["reason"])
    except CatalogDecisionRefused as exc:
        return Response({"error": "forbidden", "detail": str(exc)}, status=403)
    except (InvalidVersionTransition, ValueError) as exc:
        return Response({"error": "invalid_transition", "detail": str(exc)}, status=409)
    return Response(VersionSerializer(version_data(decided)).data)


@extend_schema(responses={200: VersionSerializer, 404: ErrorSerializer})
@api_view(["GET"])
def catalog_price_released(request: Request, ref: str) -> Response:
    """The released version of a price, by the platform's price id or billing's ``price_…`` id."""
    version = price_released(ref)
    if version is None:
        return Response({"error": "not_found", "detail": f"no released price for {ref!r}"}, status=404)
    return Response(VersionSerializer(version_data(version)).data)
