"""The operations console: inbox, deliveries with attempts, exceptions with their
workflow (acknowledge, assign, notes, replay, resolve or dismiss).

Every list shows only the records of the user's teams (``operations.access``); every
action needs its own permission (``@admin.action(permissions=[…])`` → the
``has_<name>_permission`` methods below), and the services check it again.
"""

from __future__ import annotations

import json

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from integration_hub.operations import access
from integration_hub.operations import services as operations
from integration_hub.operations.models import ExceptionNote, ExceptionSla
from integration_hub.operations.notifications import sla_breached_q
from integration_hub.runtime import dispatch, services
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
    if queryset.count() > 1 and not request.user.has_perm(operations.BULK_REPLAY):
        modeladmin.message_user(request, "Replaying several at once needs the bulk replay permission.", messages.ERROR)
        return
    result = operations.each_replay(queryset, replay_one, user=request.user, reason="replayed from the admin")
    if result.replayed:
        modeladmin.message_user(request, f"{len(result.replayed)} replayed; they run in the background.",
                                messages.SUCCESS)
    for reason in result.skipped.values():
        modeladmin.message_user(request, f"Skipped: {reason}", messages.WARNING)


class ReplayPermission:
    def has_replay_permission(self, request) -> bool:
        return request.user.has_perm(operations.REPLAY)


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
    list_display = ("subject", "kind", "created_at", "timeline")
    list_filter = ("kind",)
    search_fields = ("subject", "id")
    date_hierarchy = "created_at"

    def get_queryset(self, request):
        return access.transactions_visible(request.user, super().get_queryset(request))

    @admin.display(description="timeline")
    def timeline(self, obj):
        return format_html('<a href="{}">timeline</a>', reverse("hub-transaction", args=[obj.pk]))


def _timeline_link(obj) -> str:
    return format_html('<a href="{}">{}</a>', reverse("hub-transaction", args=[obj.transaction_id]),
                       "timeline across systems")


@admin.register(InboundEvent)
class InboundEventAdmin(ReplayPermission, ReadOnlyAdmin):
    list_display = ("external_id", "source", "event_type", "status", "attempts", "received_at", "processed_at")
    list_filter = ("status", "source", "event_type")
    search_fields = ("external_id", "transaction__subject")
    readonly_fields = ("transaction_link", "pretty_payload")
    exclude = ("payload", "transaction")
    actions = ["replay_failed"]
    date_hierarchy = "received_at"

    def get_queryset(self, request):
        return access.events_visible(request.user, super().get_queryset(request))

    @admin.display(description="transaction")
    def transaction_link(self, obj):
        return format_html("{} · {}", _link(obj.transaction), _timeline_link(obj))

    @admin.display(description="payload")
    def pretty_payload(self, obj):
        return format_html("<pre>{}</pre>", json.dumps(obj.payload, indent=2, sort_keys=True))

    @admin.action(description="Replay selected failed events", permissions=["replay"])
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
class DeliveryAdmin(ReplayPermission, ReadOnlyAdmin):
    list_display = (
        "id", "action", "object_type", "object_id", "connection", "status", "hold_reason", "attempts",
        "next_attempt_at", "external_number", "short_error",
    )
    list_filter = ("status", "action", "connection")
    search_fields = ("idempotency_key", "external_id", "external_number", "transaction__subject")
    inlines = [DeliveryAttemptInline]
    actions = ["replay_dead"]
    date_hierarchy = "created_at"

    def get_queryset(self, request):
        return access.deliveries_visible(request.user, super().get_queryset(request))

    def lookup_allowed(self, lookup, value, request=None) -> bool:
        # The dashboard's links: the workflows' indicators and the per-connection lists.
        return (lookup in dispatch.indicator_lookups("runtime.Delivery") or lookup == "connection__name"
                or super().lookup_allowed(lookup, value, request))

    @admin.display(description="last error")
    def short_error(self, obj):
        return (obj.last_error[:80] + "…") if len(obj.last_error) > 80 else obj.last_error

    @admin.action(description="Replay selected dead deliveries", permissions=["replay"])
    def replay_dead(self, request, queryset):
        _replay(self, request, queryset, services.delivery_replay)


class SlaFilter(admin.SimpleListFilter):
    title = "SLA"
    parameter_name = "sla"

    def lookups(self, request, model_admin):
        return [("breached", "past its SLA"), ("within", "within its SLA")]

    def queryset(self, request, queryset):
        breached = sla_breached_q(timezone.now())
        if self.value() == "breached":
            return queryset.filter(breached)
        if self.value() == "within":
            return queryset.filter(status__in=ExceptionRecord.ACTIVE).exclude(breached)
        return queryset


class ExceptionRecordForm(forms.ModelForm):
    """The exception's workflow on one page: assignee, a note, an optional correction
    applied before a replay, and closing it as resolved or dismissed with a reason."""

    correction = forms.JSONField(
        required=False,
        help_text="Edit, then “Save and replay”. For an inbound event: its payload. For a delivery: the "
                  'correctable fields of its record, e.g. an invoice\'s {"legal_entity": "EU", "lines": '
                  '[{"position": 1, "tax_amount": 0}]}.',
        widget=forms.Textarea(attrs={"rows": 16, "cols": 100, "style": "font-family: monospace"}),
    )
    note = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3, "cols": 100}),
                           help_text="Added to the exception's notes")
    reason = forms.CharField(required=False, max_length=500,
                             help_text="Why (kept in the audit trail); required to resolve or dismiss")

    class Meta:
        model = ExceptionRecord
        fields = ("assignee",)


class ExceptionNoteInline(admin.TabularInline):
    model = ExceptionNote
    extra = 0
    can_delete = False
    fields = ("created_at", "author", "text")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(ExceptionRecord)
class ExceptionRecordAdmin(admin.ModelAdmin):
    form = ExceptionRecordForm
    change_form_template = "admin/operations/exceptionrecord/change_form.html"
    list_display = ("summary", "owner_team", "category", "status", "assignee", "age", "delivery_link", "event_link")
    list_filter = ("status", "owner_team", "category", SlaFilter, "assignee")
    search_fields = ("summary", "detail", "transaction__subject")
    readonly_fields = (
        "transaction_link", "delivery_link", "event_link", "owner_team", "category", "summary", "detail",
        "status", "age", "acknowledged_at", "resolution", "resolved_by", "resolved_at", "created_at",
    )
    inlines = [ExceptionNoteInline]
    actions = ["replay", "acknowledge", "resolve"]
    _slas: dict = {}
    date_hierarchy = "created_at"
    list_select_related = ("assignee", "delivery", "inbound_event")

    # -------------------------------------------------------------- who sees and does what

    def get_queryset(self, request):
        return access.exceptions_visible(request.user, super().get_queryset(request))

    def lookup_allowed(self, lookup, value, request=None) -> bool:
        return (lookup in dispatch.indicator_lookups("runtime.ExceptionRecord") or lookup == "status__in"
                or super().lookup_allowed(lookup, value, request))

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        """Working an exception (notes, assignee, replay, closing) is its change."""
        user = request.user
        return user.has_perm(operations.WORK) or user.has_perm(operations.REPLAY)

    def has_replay_permission(self, request) -> bool:
        return request.user.has_perm(operations.REPLAY)

    def has_work_permission(self, request) -> bool:
        return request.user.has_perm(operations.WORK)

    def get_fields(self, request, obj=None):
        active = obj is not None and obj.status in ExceptionRecord.ACTIVE
        editable = ("assignee", "note", "correction", "reason") if active and self.has_change_permission(request) else ()
        return self.readonly_fields + editable

    def get_form(self, request, obj=None, **kwargs):
        form = super().get_form(request, obj, **kwargs)
        if obj is not None and "assignee" in form.base_fields:  # someone who may work it
            form.base_fields["correction"].initial = operations.correction_template(obj)
            form.base_fields["assignee"].queryset = operations.assignable_users(obj)
        return form

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        user = request.user
        context.update({
            "can_replay": bool(obj and obj.status in ExceptionRecord.ACTIVE and user.has_perm(operations.REPLAY)),
            "can_work": bool(obj and obj.status in ExceptionRecord.ACTIVE and user.has_perm(operations.WORK)),
            "is_open": bool(obj and obj.status == ExceptionRecord.Status.OPEN),
        })
        return super().render_change_form(request, context, add, change, form_url, obj)

    def save_model(self, request, obj, form, change):
        """Each button is one service call; the services check permissions and audit."""
        data, user = form.cleaned_data, request.user
        reason = data.get("reason") or ""
        try:
            if "assignee" in form.changed_data:
                operations.exception_assign(obj, user=user, assignee=data["assignee"], reason=reason)
            if data.get("note"):
                operations.exception_note_add(obj, user=user, text=data["note"])
            if "_acknowledge" in request.POST:
                operations.exception_acknowledge(obj, user=user)
                self.message_user(request, "Acknowledged.", messages.SUCCESS)
            elif "_resolve" in request.POST or "_dismiss" in request.POST:
                status = ExceptionRecord.Status.RESOLVED if "_resolve" in request.POST else ExceptionRecord.Status.DISMISSED
                operations.exception_close(obj, user=user, status=status, reason=reason)
                self.message_user(request, f"Marked {status}.", messages.SUCCESS)
            elif "_save_and_replay" in request.POST:
                operations.exception_fix(obj, correction=data.get("correction"), user=user,
                                         reason=reason or "corrected and replayed from the admin")
                self.message_user(request, "Replayed; it runs in the background.", messages.SUCCESS)
        except PermissionDenied as exc:
            self.message_user(request, f"Not allowed: {exc}", messages.ERROR)
        except (operations.CorrectionRejected, services.InvalidTransition) as exc:
            self.message_user(request, f"Not done: {exc}", messages.ERROR)

    def changelist_view(self, request, extra_context=None):
        self._slas = _slas()  # one query per page, not per row (the same table for every request)
        return super().changelist_view(request, extra_context)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        self._slas = _slas()
        return super().change_view(request, object_id, form_url, extra_context)

    # -------------------------------------------------------------- columns

    @admin.display(description="transaction")
    def transaction_link(self, obj):
        return format_html("{} · {}", _link(obj.transaction), _timeline_link(obj))

    @admin.display(description="delivery")
    def delivery_link(self, obj):
        return _link(obj.delivery, f"delivery {obj.delivery_id}") if obj.delivery_id else "—"

    @admin.display(description="event")
    def event_link(self, obj):
        return _link(obj.inbound_event, obj.inbound_event and obj.inbound_event.external_id)

    @admin.display(description="age", ordering="created_at")
    def age(self, obj):
        """Age against the category's SLA: red once past it, amber past half of it."""
        end = obj.resolved_at if obj.status not in ExceptionRecord.ACTIVE and obj.resolved_at else timezone.now()
        age = end - obj.created_at
        sla = self._slas.get(obj.category)
        hours = f"{age.total_seconds() / 3600:.1f} h"
        if sla is None or obj.status not in ExceptionRecord.ACTIVE:
            return hours
        colour = "#ba2121" if age > sla.window else ("#c57b00" if age > sla.window / 2 else "#417690")
        return format_html('<span style="color:{}" class="sla-{}">{} / SLA {} h</span>', colour,
                           "breached" if age > sla.window else "ok", hours, sla.hours)

    # -------------------------------------------------------------- bulk actions

    @admin.action(description="Replay (after fixing the cause)", permissions=["replay"])
    def replay(self, request, queryset):
        try:
            result = operations.exceptions_replay(queryset, user=request.user, reason="replayed from the admin")
        except PermissionDenied as exc:
            self.message_user(request, f"Not allowed: {exc}", messages.ERROR)
            return
        if result.replayed:
            self.message_user(request, f"{len(result.replayed)} replayed; they run in the background.", messages.SUCCESS)
        for pk, reason in result.skipped.items():
            self.message_user(request, f"Exception {pk} skipped: {reason}", messages.WARNING)

    @admin.action(description="Acknowledge (I am on it)", permissions=["work"])
    def acknowledge(self, request, queryset):
        done = 0
        for record in access.exceptions_visible(request.user, queryset).filter(status=ExceptionRecord.Status.OPEN):
            operations.exception_acknowledge(record, user=request.user)
            done += 1
        self.message_user(request, f"{done} acknowledged.", messages.SUCCESS)

    @admin.action(description="Mark resolved without replay (handled by hand)", permissions=["work"])
    def resolve(self, request, queryset):
        count = operations.exceptions_resolve(queryset, user=request.user, note="handled by hand")
        self.message_user(request, f"{count} resolved.", messages.SUCCESS)


def _slas() -> dict[str, ExceptionSla]:
    return {sla.category: sla for sla in ExceptionSla.objects.all()}


@admin.register(ExceptionSla)
class ExceptionSlaAdmin(admin.ModelAdmin):
    list_display = ("category", "hours", "severity")
    list_editable = ("hours", "severity")


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
    actions = ["end_now"]

    @admin.action(description="End now: the system is back, send what the window holds", permissions=["change"])
    def end_now(self, request, queryset):
        released = sum(services.maintenance_window_end(window, user=request.user, reason="ended early in the admin")
                       for window in queryset)
        self.message_user(request, f"Ended {queryset.count()} window(s); {released} held deliveries go out over the"
                          " next minute.", messages.SUCCESS)


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "actor", "action", "object_type", "object_id", "reason")
    list_filter = ("action", "object_type")
    search_fields = ("object_id", "reason")
    date_hierarchy = "created_at"
