"""The webhook's baseline: a bare DRF endpoint that validates the same JSON body with a
plain serializer and inserts one row. No signature, no inbox logic, no broker."""

from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from benchmarks.baseline.models import Ping


class EventSerializer(serializers.Serializer):
    id = serializers.CharField(max_length=255)
    type = serializers.CharField(max_length=100)
    data = serializers.JSONField()


class BaselineInsertView(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes: list = []  # like the webhook it is measured against

    def post(self, request):
        serializer = EventSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        ping = Ping.objects.create(
            event_id=serializer.validated_data["id"],
            event_type=serializer.validated_data["type"],
            payload=serializer.validated_data["data"],
        )
        return Response({"id": ping.pk, "status": "accepted"})
