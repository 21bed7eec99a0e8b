"""The operations console: inbox, deliveries with attempts, exceptions with replay."""

from __future__ import annotations

import json

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from integration_hub.operations import services as operations
from integration_hub.runtime import services
from integration_hub.runtime.governor import governor_status
from integration_hub.runtime.models import (
    AdmissionPolicy,
    AuditEntry,
    BusinessTransaction,
    Delivery,
    DeliveryAttempt,
    ExceptionRecord,
    InboundEvent,
    MaintenanceWindow,
)


def _replay(modeladmin, request: HttpRequest, queryset: QuerySet, replay_one) -> None:
    result = operations.each_replay(queryset, replay_one, user=request.user, reason="replayed from the admin")
    if result.replayed:
        modeladmin.message_user(request, f"{len(result.replayed)} replayed; they run in the background.",
                                messages.SUCCESS)
    for reason in result.skipped.values():
        modeladmin.message_user(request, f"Skipped: {reason}", messages.WARNING)


class ReadOnlyAdmin(admin.ModelAdmin):
    """Runtime rows are written by the hub only; people act through actions."""

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


def _link(obj, label=None) -> str:
    if obj is None:
        return "—"
    url = reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_change", args=[obj.pk])
    return format_html('<a href="{}">{}</a>', url, label or obj)


@admin.register(BusinessTransaction)
class BusinessTransactionAdmin(ReadOnlyAdmin):
    list_display = ("subject", "kind", "created_at", "id")
    list_filter = ("kind",)
    search_fields = ("subject", "id")
    date_hierarchy = "created_at"


@admin.register(InboundEvent)
class InboundEventAdmin(ReadOnlyAdmin):
    list_display = ("external_id", "source", "event_type", "status", "attempts", "received_at", "processed_at")
    list_filter = ("status", "source", "event_type")
    search_fields = ("external_id", "transaction__subject")
    readonly_fields = ("transaction_link", "pretty_payload")
    exclude = ("payload", "transaction")
    actions = ["replay_failed"]
    date_hierarchy = "received_at"

    @admin.display(description="transaction")
    def transaction_link(self, obj):
        return _link(obj.transaction)

    @admin.display(description="payload")
    def pretty_payload(self, obj):
        return format_html("<pre>{}</pre>", json.dumps(obj.payload, indent=2, sort_keys=True))

    @admin.action(description="Replay selected failed events")
    def replay_failed(self, request, queryset):
        _replay(self, request, queryset, services.inbound_replay)


class DeliveryAttemptInline(admin.TabularInline):
    model = DeliveryAttempt
    extra = 0
    can_delete = False
    fields = ("number", "started_at", "duration_ms", "outcome", "error_class", "http_status", "message")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Delivery)
class DeliveryAdmin(ReadOnlyAdmin):
    list_display = (
        "id", "action", "object_type", "object_id", "connection", "status", "hold_reason", "attempts",
        "next_attempt_at", "external_number", "short_error",
    )
    list_filter = ("status", "action", "connection")
    search_fields = ("idempotency_key", "external_id", "external_number", "transaction__subject")
    inlines = [DeliveryAttemptInline]
    actions = ["replay_dead"]
    date_hierarchy = "created_at"

    @admin.display(description="last error")
    def short_error(self, obj):
        return (obj.last_error[:80] + "…") if len(obj.last_error) > 80 else obj.last_error

    @admin.action(description="Replay selected dead deliveries")
    def replay_dead(self, request, queryset):
        _replay(self, request, queryset, services.delivery_replay)


class ExceptionRecordForm(forms.ModelForm):
    """Resolution notes, plus an optional correction that is applied before a replay."""

    correction = forms.JSONField(
        required=False,
        help_text="Edit, then “Save and replay”. For an inbound event: its payload. For a delivery: the "
                  'correctable fields of its record, e.g. an invoice\'s {"legal_entity": "EU", "lines": '
                  '[{"position": 1, "tax_amount": 0}]}.',
        widget=forms.Textarea(attrs={"rows": 16, "cols": 100, "style": "font-family: monospace"}),
    )
    reason = forms.CharField(required=False, max_length=500, help_text="Why (kept in the audit trail)")

    class Meta:
        model = ExceptionRecord
        fields = ("resolution",)


@admin.register(ExceptionRecord)
class ExceptionRecordAdmin(admin.ModelAdmin):
    form = ExceptionRecordForm
    change_form_template = "admin/operations/exceptionrecord/change_form.html"
    list_display = ("summary", "owner_team", "category", "status", "created_at", "delivery_link", "event_link")
    list_filter = ("status", "owner_team", "category")
    search_fields = ("summary", "detail", "transaction__subject")
    readonly_fields = (
        "transaction", "delivery_link", "event_link", "owner_team", "category", "summary", "detail",
        "status", "resolved_by", "resolved_at", "created_at",
    )
    actions = ["replay", "resolve"]
    date_hierarchy = "created_at"

    def get_fields(self, request, obj=None):
        editable = ("correction", "reason") if obj and obj.status == ExceptionRecord.Status.OPEN else ()
        return self.readonly_fields + ("resolution",) + editable

    def get_form(self, request, obj=None, **kwargs):
        form = super().get_form(request, obj, **kwargs)
        if obj is not None and obj.status == ExceptionRecord.Status.OPEN:
            form.base_fields["correction"].initial = operations.correction_template(obj)
        return form

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if "_save_and_replay" not in request.POST:
            return
        reason = form.cleaned_data.get("reason") or "corrected and replayed from the admin"
        correction = form.cleaned_data.get("correction")
        try:
            operations.exception_fix(obj, correction=correction, user=request.user, reason=reason)
        except (operations.CorrectionRejected, services.InvalidTransition) as exc:
            self.message_user(request, f"Not replayed: {exc}", messages.ERROR)
        else:
            self.message_user(request, "Replayed; it runs in the background.", messages.SUCCESS)

    @admin.display(description="delivery")
    def delivery_link(self, obj):
        return _link(obj.delivery, f"delivery {obj.delivery_id}") if obj.delivery_id else "—"

    @admin.display(description="event")
    def event_link(self, obj):
        return _link(obj.inbound_event, obj.inbound_event and obj.inbound_event.external_id)

    @admin.action(description="Replay (after fixing the cause)")
    def replay(self, request, queryset):
        result = operations.exceptions_replay(queryset, user=request.user, reason="replayed from the admin")
        if result.replayed:
            self.message_user(request, f"{len(result.replayed)} replayed; they run in the background.", messages.SUCCESS)
        for pk, reason in result.skipped.items():
            self.message_user(request, f"Exception {pk} skipped: {reason}", messages.WARNING)

    @admin.action(description="Mark resolved without replay (handled by hand)")
    def resolve(self, request, queryset):
        count = operations.exceptions_resolve(queryset, user=request.user, note="handled by hand")
        self.message_user(request, f"{count} resolved.", messages.SUCCESS)


@admin.register(AdmissionPolicy)
class AdmissionPolicyAdmin(admin.ModelAdmin):
    list_display = ("connection", "rate_per_second", "burst", "max_concurrency", "failure_threshold",
                    "open_seconds", "live_state")

    @admin.display(description="now")
    def live_state(self, obj):
        status = governor_status(obj.connection_id)
        return (f"circuit {status['circuit']}, {status['calls_in_flight']} in flight"
                + (f", waiting {status['blocked_for_seconds']}s (Retry-After)" if status["blocked_for_seconds"] else ""))


@admin.register(MaintenanceWindow)
class MaintenanceWindowAdmin(admin.ModelAdmin):
    list_display = ("connection", "starts_at", "ends_at", "reason")
    list_filter = ("connection",)
    date_hierarchy = "starts_at"


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "actor", "action", "object_type", "object_id", "reason")
    list_filter = ("action", "object_type")
    search_fields = ("object_id", "reason")
    date_hierarchy = "created_at"
