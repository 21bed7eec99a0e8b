"""Typed shapes of the usage endpoints' answers and requests, for the OpenAPI schema."""

from __future__ import annotations

from rest_framework import serializers

from integration_hub.usage.models import UsageBatch


class BatchCountsSerializer(serializers.Serializer):
    read = serializers.IntegerField()
    loaded = serializers.IntegerField()
    duplicates = serializers.IntegerField()
    conflicts = serializers.IntegerField()
    unmatched = serializers.IntegerField()
    rejected = serializers.IntegerField()
    late = serializers.IntegerField()


class ControlTotalSerializer(serializers.Serializer):
    metric = serializers.CharField(required=False)
    expected_quantity = serializers.CharField(help_text="Decimal string")
    found_quantity = serializers.CharField(help_text="Decimal string")


class BatchSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    status = serializers.ChoiceField(choices=UsageBatch.Status.choices)
    source = serializers.ChoiceField(choices=UsageBatch.Source.choices)
    filename = serializers.CharField()
    counts = BatchCountsSerializer()
    control_totals = serializers.ListField(child=serializers.DictField(), help_text="Declared vs found, per metric")
    error = serializers.CharField(allow_blank=True)
    transaction_id = serializers.CharField()
    rejects_csv = serializers.CharField(help_text="Where the rejected rows (line, reason code) download as CSV")
    created_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)


class PeriodClosedSerializer(serializers.Serializer):
    period = serializers.CharField(help_text="YYYY-MM")
    status = serializers.CharField()
    pushes = serializers.IntegerField(help_text="Pushes of aggregates to billing planned for the period")


class CheckpointRequestSerializer(serializers.Serializer):
    period = serializers.RegexField(r"^\d{4}-\d{2}$", help_text="YYYY-MM")
    invoice_stages = serializers.BooleanField(
        required=False, allow_null=True, default=None,
        help_text="Compare invoice lines and ERP postings too (default: once the period's invoices are due)")


class CheckpointSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    period = serializers.CharField(help_text="YYYY-MM")
    status = serializers.CharField(help_text="running (queued or running), balanced, mismatch, resolved (a mismatch "
                                             "a later checkpoint found balanced) or failed (see error)")
    trigger = serializers.CharField()
    created_at = serializers.DateTimeField()
    lines = serializers.ListField(
        child=serializers.DictField(),
        help_text="Per legal entity, currency and metric: count and quantity at each stage "
                  "(loaded, aggregated, pushed, billed, invoiced, posted)",
    )
    checked = serializers.ListField(child=serializers.CharField(), help_text="The stages compared")
    mismatches = serializers.ListField(
        child=serializers.DictField(),
        help_text="Per billing customer × metric that differs: its subscriptions, each stage's quantity, what "
                  "differs, the actions that fix it (re-push, replay, wait, person) and the invoices not in the ERP")
    exception = serializers.IntegerField(allow_null=True, help_text="The exception record opened for a mismatch")
    error = serializers.CharField(help_text="Why it could not run (status failed)")
    csv = serializers.CharField()


class RepairSerializer(serializers.Serializer):
    pushes = serializers.ListField(child=serializers.IntegerField())
    events = serializers.IntegerField(help_text="Meter events sent again")
    replayed = serializers.ListField(child=serializers.IntegerField(), help_text="ERP post deliveries replayed")
