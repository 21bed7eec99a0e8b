"""Master-data cases for people: conflicts (accept / reject) and possible duplicates
(merge / not a duplicate). Deciding re-plans the customer's sync where needed. And
the exchange rates the rate source published, with a page that loads them."""

from __future__ import annotations

import datetime as dt

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path
from django.utils import timezone

from canonical.models import DuplicateCase, ExchangeRate, FieldConflict
from canonical.services import InvalidCaseTransition
from connectors.errors import ConnectorError
from connectors.models import Connection
from integration_hub.workflows import exchange_rates
from integration_hub.workflows.customer_onboarding import conflict_settle, duplicate_merge, duplicate_release
from integration_hub.workflows.models import SyncRun, SyncWatermark


def _each(modeladmin, request, queryset, decide, done_text: str) -> None:
    done = 0
    for obj in queryset:
        try:
            decide(obj)
            done += 1
        except InvalidCaseTransition as exc:
            modeladmin.message_user(request, f"Skipped: {exc}", messages.WARNING)
    if done:
        modeladmin.message_user(request, f"{done} {done_text}", messages.SUCCESS)


@admin.register(FieldConflict)
class FieldConflictAdmin(admin.ModelAdmin):
    list_display = ("customer", "field_group", "source_system", "owner_role", "proposed", "current", "status",
                    "created_at")
    list_filter = ("status", "owner_role", "field_group", "source_system")
    search_fields = ("customer__display_name",)
    readonly_fields = ("customer", "field_group", "source_system", "source_role", "owner_role", "proposed",
                       "current", "status", "transaction_id", "decided_by", "decided_at")
    actions = ["accept", "reject"]

    def has_decide_permission(self, request) -> bool:
        return request.user.has_perm("operations.decide_conflict")

    @admin.action(description="Accept: apply the proposed values (and sync them)", permissions=["decide"])
    def accept(self, request, queryset):
        _each(self, request, queryset, lambda c: conflict_settle(c, accept=True, user=request.user), "accepted.")

    @admin.action(description="Reject: keep the canonical values", permissions=["decide"])
    def reject(self, request, queryset):
        _each(self, request, queryset, lambda c: conflict_settle(c, accept=False, user=request.user), "rejected.")


@admin.register(DuplicateCase)
class DuplicateCaseAdmin(admin.ModelAdmin):
    list_display = ("customer", "survivor", "reasons", "status", "created_at")
    list_filter = ("status",)
    search_fields = ("customer__display_name",)
    readonly_fields = ("customer", "reasons", "status", "transaction_id", "decided_by", "decided_at")
    fields = ("customer", "survivor", "reasons", "status", "transaction_id", "decided_by", "decided_at")
    actions = ["merge", "distinct"]

    def has_merge_permission(self, request) -> bool:
        return request.user.has_perm("operations.merge_duplicate")

    @admin.action(description="Merge into the chosen survivor", permissions=["merge"])
    def merge(self, request, queryset):
        _each(self, request, queryset, lambda case: duplicate_merge(case, user=request.user), "merged.")

    @admin.action(description="Not a duplicate: onboard it", permissions=["merge"])
    def distinct(self, request, queryset):
        _each(self, request, queryset, lambda case: duplicate_release(case, user=request.user),
              "released and onboarding.")


@admin.register(SyncRun)
class SyncRunAdmin(admin.ModelAdmin):
    list_display = ("id", "kind", "trigger", "status", "counts", "created_at", "finished_at")
    list_filter = ("status", "trigger")


@admin.register(SyncWatermark)
class SyncWatermarkAdmin(admin.ModelAdmin):
    list_display = ("connection", "object_type", "value", "updated_at")
from integration_hub.workflows import catalog_admin  # noqa: E402,F401 - registers the catalog console


@admin.register(ExchangeRate)
class ExchangeRateAdmin(admin.ModelAdmin):
    """Reference rates as the rate source published them; *Load reference rates* reads
    the rates in force on a date and plans their loads into every ERP."""

    list_display = ("date", "currency", "rate", "base", "source", "created_at")
    list_filter = ("source", "currency", "date")
    date_hierarchy = "date"
    readonly_fields = ("source", "date", "currency", "base", "rate", "created_at")
    change_list_template = "admin/canonical/exchangerate/change_list.html"

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def get_urls(self):
        return [path("load/", self.admin_site.admin_view(self.load_view), name="canonical_exchangerate_load"),
                *super().get_urls()]

    def load_view(self, request):
        if not request.user.has_perm(exchange_rates.LOAD_PERMISSION):
            raise PermissionDenied
        if request.method == "POST":
            try:
                on = dt.date.fromisoformat(request.POST.get("date") or timezone.localdate().isoformat())
                result = exchange_rates.rates_load(on=on, source=exchange_rates.rates_source(
                    request.POST.get("connection", "")))
            except (ValueError, exchange_rates.NoRatesPublished) as exc:  # a malformed date, nothing published
                self.message_user(request, f"Nothing loaded: {exc}", messages.ERROR)
            except ConnectorError as exc:
                self.message_user(request, f"Nothing loaded: {type(exc).__name__}: {exc}", messages.ERROR)
            else:
                unpublished = f"; not published: {', '.join(result.unpublished)}" if result.unpublished else ""
                self.message_user(
                    request, f"Rates of {result.published} from {result.source}: {result.stored} stored, "
                    f"{result.planned} ERP loads planned ({', '.join(result.currencies)} into "
                    f"{', '.join(result.erps)}){unpublished}", messages.SUCCESS)
            return redirect("admin:canonical_exchangerate_changelist")
        sources = Connection.objects.filter(role=Connection.Role.RATES, is_active=True).order_by("name")
        return TemplateResponse(request, "admin/canonical/exchangerate/load.html", {
            **self.admin_site.each_context(request), "title": "Load reference rates",
            "today": timezone.localdate(), "sources": sources, "opts": self.model._meta,
        })
