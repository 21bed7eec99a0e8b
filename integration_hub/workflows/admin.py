"""Master-data cases for people: conflicts (accept / reject) and possible duplicates
(merge / not a duplicate). Deciding re-plans the customer's sync where needed."""

from __future__ import annotations

from django.contrib import admin, messages

from canonical.models import DuplicateCase, FieldConflict
from canonical.services import InvalidCaseTransition
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
