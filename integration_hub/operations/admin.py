"""The operations console: inbox, deliveries with attempts, exceptions with replay."""

from __future__ import annotations

import json

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from integration_hub.runtime import services
from integration_hub.runtime.models import (
    BusinessTransaction,
    Delivery,
    DeliveryAttempt,
    ExceptionRecord,
    InboundEvent,
)


def _replay(modeladmin, request: HttpRequest, queryset: QuerySet, replay_one) -> None:
    done, skipped = 0, []
    for obj in queryset:
        try:
            replay_one(obj, user=request.user, reason="replayed from the admin")
            done += 1
        except services.InvalidTransition as exc:
            skipped.append(str(exc))
    if done:
        modeladmin.message_user(request, f"{done} replayed; they run in the background.", messages.SUCCESS)
    for reason in skipped:
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
        "id", "action", "object_type", "object_id", "connection", "status", "attempts", "next_attempt_at",
        "external_number", "short_error",
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


@admin.register(ExceptionRecord)
class ExceptionRecordAdmin(admin.ModelAdmin):
    list_display = ("summary", "owner_team", "category", "status", "created_at", "delivery_link", "event_link")
    list_filter = ("status", "owner_team", "category")
    search_fields = ("summary", "detail", "transaction__subject")
    readonly_fields = (
        "transaction", "delivery_link", "event_link", "owner_team", "category", "summary", "detail",
        "status", "resolved_by", "resolved_at", "created_at",
    )
    fields = readonly_fields + ("resolution",)
    actions = ["replay", "resolve"]
    date_hierarchy = "created_at"

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="delivery")
    def delivery_link(self, obj):
        return _link(obj.delivery, f"delivery {obj.delivery_id}") if obj.delivery_id else "—"

    @admin.display(description="event")
    def event_link(self, obj):
        return _link(obj.inbound_event, obj.inbound_event and obj.inbound_event.external_id)

    @admin.action(description="Replay (after fixing the cause)")
    def replay(self, request, queryset):
        _replay(self, request, queryset.filter(status=ExceptionRecord.Status.OPEN), services.exception_replay)

    @admin.action(description="Mark resolved without replay (handled by hand)")
    def resolve(self, request, queryset):
        for record in queryset.filter(status=ExceptionRecord.Status.OPEN):
            services.exception_resolve(record, user=request.user, note=record.resolution or "handled by hand")
        self.message_user(request, "Resolved.", messages.SUCCESS)
