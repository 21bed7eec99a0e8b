"""Typed shapes of every REST answer and request, so the OpenAPI schema documents them."""

from __future__ import annotations

from rest_framework import serializers

from integration_hub.runtime.models import Delivery, ExceptionRecord

# ---------------------------------------------------------------- reads


class DeliverySerializer(serializers.ModelSerializer):
    target = serializers.CharField(source="connection.name")

    class Meta:
        model = Delivery
        fields = [
            "id", "transaction", "action", "target", "object_type", "object_id", "idempotency_key", "status",
            "hold_reason", "attempts", "next_attempt_at", "external_id", "external_number", "last_error",
            "lookup_first", "created_at", "updated_at",
        ]


_TRACEBACK = "Traceback (most recent call last)"


def detail_without_traceback(detail: str) -> str:
    """An exception's detail for API clients: a traceback becomes its last line."""
    if _TRACEBACK not in detail:
        return detail
    before, _, trace = detail.partition(_TRACEBACK)
    last = next((line for line in reversed(trace.strip().splitlines()) if line.strip()), "")
    return f"{before.strip()} {last.strip()} (traceback in the hub's logs)".strip()


class ExceptionRecordSerializer(serializers.ModelSerializer):
    assignee = serializers.CharField(source="assignee.username", allow_null=True, read_only=True)

    """``detail`` without tracebacks: those stay in the logs and the admin."""

    detail = serializers.SerializerMethodField()

    def get_detail(self, record: ExceptionRecord) -> str:
        return detail_without_traceback(record.detail)

    class Meta:
        model = ExceptionRecord
        fields = [
            "id", "transaction", "delivery", "inbound_event", "owner_team", "category", "summary", "detail",
            "status", "assignee", "acknowledged_at", "resolution", "resolved_at", "created_at",
        ]


class TraceEventSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    source = serializers.CharField(help_text="Name of the connection the event came through")
    external_id = serializers.CharField()
    type = serializers.CharField()
    status = serializers.CharField()
    attempts = serializers.IntegerField()
    note = serializers.CharField(allow_blank=True)
    received_at = serializers.DateTimeField()
    processed_at = serializers.DateTimeField(allow_null=True)


class CrossReferenceSerializer(serializers.Serializer):
    system = serializers.CharField(help_text="Name of the connection the id belongs to")
    object_type = serializers.CharField()
    canonical_id = serializers.IntegerField()
    external_id = serializers.CharField()
    number = serializers.CharField(allow_blank=True)


class AttemptSerializer(serializers.Serializer):
    number = serializers.IntegerField()
    started_at = serializers.DateTimeField()
    duration_ms = serializers.IntegerField()
    outcome = serializers.CharField()
    outcome_unknown = serializers.BooleanField()
    error_class = serializers.CharField(allow_blank=True)
    message = serializers.CharField(allow_blank=True)
    http_status = serializers.IntegerField(allow_null=True)


class TraceDeliverySerializer(serializers.Serializer):
    id = serializers.IntegerField()
    action = serializers.CharField()
    target = serializers.CharField()
    object = serializers.CharField(help_text="object_type:canonical id")
    idempotency_key = serializers.CharField()
    status = serializers.CharField()
    attempts = serializers.IntegerField()
    after = serializers.IntegerField(allow_null=True)
    next_attempt_at = serializers.DateTimeField()
    external_id = serializers.CharField(allow_blank=True)
    external_number = serializers.CharField(allow_blank=True)
    last_error = serializers.CharField(allow_blank=True)
    attempt_log = AttemptSerializer(many=True)


class TraceExceptionSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    owner_team = serializers.CharField()
    category = serializers.CharField()
    summary = serializers.CharField()
    status = serializers.CharField()
    resolution = serializers.CharField(allow_blank=True)
    created_at = serializers.DateTimeField()


class TransactionTraceSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    kind = serializers.CharField()
    subject = serializers.CharField()
    created_at = serializers.DateTimeField()
    events = TraceEventSerializer(many=True)
    records = serializers.DictField(
        child=serializers.ListField(child=serializers.DictField()),
        help_text="Canonical records the transaction touched, by kind (invoices, payments, customers, …), "
                  "as each workflow declares them",
    )
    cross_references = CrossReferenceSerializer(many=True)
    deliveries = TraceDeliverySerializer(many=True)
    exceptions = TraceExceptionSerializer(many=True)


class ConnectionHealthSerializer(serializers.Serializer):
    name = serializers.CharField()
    vendor = serializers.CharField()
    role = serializers.CharField()
    active = serializers.BooleanField()
    circuit = serializers.ChoiceField(choices=["closed", "open", "half-open"])
    consecutive_failures = serializers.IntegerField()
    calls_in_flight = serializers.IntegerField()
    blocked_for_seconds = serializers.FloatField(help_text="Retry-After wait still to run")
    pending = serializers.IntegerField()
    held = serializers.DictField(child=serializers.IntegerField(), help_text="Held deliveries by reason")
    dead = serializers.IntegerField()


class SyncRunSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.CharField()
    trigger = serializers.CharField()
    status = serializers.CharField()
    counts = serializers.DictField(help_text="Per connection: read, accepted, duplicates")
    error = serializers.CharField(allow_blank=True)
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)


class CustomerReferenceSerializer(serializers.Serializer):
    system = serializers.CharField()
    external_id = serializers.CharField()
    number = serializers.CharField(allow_blank=True)


class CustomerAliasSerializer(serializers.Serializer):
    system = serializers.CharField()
    external_id = serializers.CharField()
    merged_from = serializers.IntegerField()


class CustomerDeliverySerializer(serializers.Serializer):
    id = serializers.IntegerField()
    action = serializers.CharField()
    target = serializers.CharField()
    status = serializers.CharField()
    idempotency_key = serializers.CharField()
    attempts = serializers.IntegerField()
    external_id = serializers.CharField(allow_blank=True)
    last_error = serializers.CharField(allow_blank=True)


class CustomerConfirmationSerializer(serializers.Serializer):
    version = serializers.IntegerField()
    references = serializers.DictField(child=serializers.CharField())
    confirmed_at = serializers.DateTimeField()
    transaction_id = serializers.UUIDField(allow_null=True)


class FieldConflictSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    field_group = serializers.CharField()
    source_system = serializers.CharField()
    owner_role = serializers.CharField()
    proposed = serializers.DictField()
    current = serializers.DictField()


class DuplicateCaseSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    status = serializers.CharField()
    survivor = serializers.IntegerField(allow_null=True)
    reasons = serializers.ListField(child=serializers.DictField())


class CustomerDetailSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    display_name = serializers.CharField()
    status = serializers.CharField()
    version = serializers.IntegerField()
    email = serializers.CharField(allow_blank=True)
    domain = serializers.CharField(allow_blank=True)
    address = serializers.DictField()
    country = serializers.CharField(allow_blank=True)
    tax_ids = serializers.ListField(child=serializers.DictField())
    currency = serializers.CharField(allow_blank=True)
    credit_terms = serializers.CharField(allow_blank=True)
    parent = serializers.IntegerField(allow_null=True)
    parent_ref = serializers.CharField(allow_blank=True)
    merged_into = serializers.IntegerField(allow_null=True)
    transaction_id = serializers.UUIDField(allow_null=True)
    sync_status = serializers.ChoiceField(
        choices=["merged", "held", "confirmed", "failed", "syncing", "not_synced"]
    )
    cross_references = CustomerReferenceSerializer(many=True)
    aliases = CustomerAliasSerializer(many=True)
    deliveries = CustomerDeliverySerializer(many=True)
    confirmations = CustomerConfirmationSerializer(many=True)
    open_conflicts = FieldConflictSerializer(many=True)
    duplicate_cases = DuplicateCaseSerializer(many=True)


class BulkReplayResultSerializer(serializers.Serializer):
    replayed = serializers.ListField(child=serializers.IntegerField())
    skipped = serializers.DictField(child=serializers.CharField(), help_text="Exception id → why it was skipped")


class ErrorSerializer(serializers.Serializer):
    error = serializers.CharField()
    detail = serializers.CharField()


# ---------------------------------------------------------------- requests


class ReplaySerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=500)


class BulkReplaySerializer(ReplaySerializer):
    ids = serializers.ListField(child=serializers.IntegerField(), required=False)
    owner_team = serializers.ChoiceField(choices=ExceptionRecord.Team.choices, required=False)
    category = serializers.ChoiceField(choices=ExceptionRecord.Category.choices, required=False)
    connection = serializers.CharField(required=False, help_text="Connection name of the dead deliveries")

    def validate(self, data):
        if not set(data) - {"reason"}:
            raise serializers.ValidationError("give ids or at least one filter; replaying everything is not offered")
        return data


class EditAndReplaySerializer(ReplaySerializer):
    payload = serializers.DictField(required=False, help_text="Corrected vendor payload (inbound-event exceptions)")
    corrections = serializers.DictField(
        required=False,
        help_text="Corrections of the record behind a dead delivery, as its workflow takes them; for an invoice "
                  'e.g. {"legal_entity": "EU", "lines": [{"position": 1, "tax_amount": 0}]}',
    )
    invoice = serializers.DictField(required=False, help_text="Deprecated name of 'corrections'")

    def validate(self, data):
        if "invoice" in data:
            data.setdefault("corrections", data.pop("invoice"))
        return data


# ---------------------------------------------------------------- the exception workflow


class ExceptionNoteSerializer(serializers.Serializer):
    id = serializers.IntegerField(read_only=True)
    author = serializers.CharField(source="author.username", read_only=True, allow_null=True)
    text = serializers.CharField(max_length=5000)
    created_at = serializers.DateTimeField(read_only=True)


class AcknowledgeSerializer(serializers.Serializer):
    note = serializers.CharField(required=False, allow_blank=True, max_length=5000, default="")


class AssignSerializer(serializers.Serializer):
    assignee = serializers.CharField(allow_null=True, help_text="Username of a member of the owning team; null unassigns")
    reason = serializers.CharField(required=False, allow_blank=True, max_length=500, default="")


class CloseSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=[ExceptionRecord.Status.RESOLVED, ExceptionRecord.Status.DISMISSED])
    reason = serializers.CharField(max_length=2000, help_text="How it was resolved, or why it is dismissed")


# ---------------------------------------------------------------- the integration inventory


class InventoryConnectionSerializer(serializers.Serializer):
    name = serializers.CharField()
    vendor = serializers.CharField()
    role = serializers.CharField()
    active = serializers.BooleanField()


class InventoryContractSerializer(serializers.Serializer):
    name = serializers.CharField()
    version = serializers.IntegerField()
    schema = serializers.CharField(help_text="Published JSON Schema id (canonical/schemas/)")


class InventoryRuleSerializer(serializers.Serializer):
    entity = serializers.CharField()
    field_group = serializers.CharField()
    owner_role = serializers.CharField()


class InventoryWindowSerializer(serializers.Serializer):
    volume = serializers.IntegerField(help_text="Business transactions started")
    attempts = serializers.IntegerField()
    failure_rate = serializers.FloatField(help_text="Share of attempts that did not post")
    p95_latency_ms = serializers.IntegerField(allow_null=True)
    open_exceptions = serializers.IntegerField()


class InventoryFlowSerializer(serializers.Serializer):
    name = serializers.CharField()
    title = serializers.CharField()
    pattern = serializers.CharField()
    owner_team = serializers.CharField()
    owner_team_label = serializers.CharField()
    sources = InventoryConnectionSerializer(many=True)
    targets = InventoryConnectionSerializer(many=True)
    actions = serializers.ListField(child=serializers.CharField())
    contracts = InventoryContractSerializer(many=True)
    system_of_record = InventoryRuleSerializer(many=True)
    policy_in_force = serializers.CharField(allow_blank=True)
    last_30_days = InventoryWindowSerializer()


class SubscriptionDetailSerializer(serializers.Serializer):
    subscription = serializers.JSONField(help_text="The SubscriptionV1 contract")
    order = serializers.JSONField(allow_null=True)
    history = serializers.ListField(child=serializers.DictField(), help_text="The order, then each amendment and its steps")
    deliveries = serializers.ListField(child=serializers.DictField())
