"""The catalog approval console: versions with their diff against the released one,
bulk approval, rejection with a reason, and the auto-approval rules. Every decision
goes through ``catalog.version_decide`` (permission check, audit, release plan)."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.shortcuts import render
from django.utils.html import format_html, format_html_join

from canonical.models import CatalogApprovalRule, CatalogVersion, PriceVersion, ProductVersion
from canonical.versions import InvalidVersionTransition
from integration_hub.workflows.catalog import CatalogDecisionRefused, version_decide, versions_approve


class RejectForm(forms.Form):
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), help_text="Kept with each version")


class CatalogVersionAdmin(admin.ModelAdmin):
    list_filter = ("status",)
    readonly_fields = ("number", "status", "diff", "content", "content_hash", "effective_from", "decided_by",
                       "decided_by_rule", "decided_at", "decision_reason", "released_at", "transaction_id",
                       "source_event", "created_at")
    exclude = ("changes",)
    actions = ["approve", "reject"]

    def has_add_permission(self, request):
        return False  # versions come from the platform only

    def has_delete_permission(self, request, obj=None):
        return False  # history is kept

    @admin.display(description="changes against the released version")
    def diff(self, obj: CatalogVersion):
        if not obj.changes:
            return "—"
        return format_html("<table>{}</table>", format_html_join(
            "", "<tr><th>{}</th><td style='color:#a00'>{}</td><td>→</td><td style='color:#070'>{}</td></tr>",
            ((field, before, after) for field, (before, after) in sorted(obj.changes.items()))))

    @admin.display(description="changed")
    def changed_fields(self, obj: CatalogVersion):
        return ", ".join(sorted(obj.changes)) or "—"

    @admin.action(description="Approve for release (products before their prices)")
    def approve(self, request, queryset):
        try:
            done, skipped = versions_approve(list(queryset), user=request.user)
        except CatalogDecisionRefused as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return
        for reason in skipped:
            self.message_user(request, f"Skipped: {reason}", messages.WARNING)
        if done:
            self.message_user(request, f"{done} approved; their release is under way.", messages.SUCCESS)

    @admin.action(description="Reject (with a reason)")
    def reject(self, request, queryset):
        form = RejectForm(request.POST if "reason" in request.POST else None)
        if not form.is_valid():
            return render(request, "admin/catalog/reject.html", {
                "form": form, "versions": queryset, "action": "reject", "opts": self.model._meta,
                "selected": request.POST.getlist(admin.helpers.ACTION_CHECKBOX_NAME)})
        for version in queryset:
            try:
                version_decide(version, approve=False, user=request.user, reason=form.cleaned_data["reason"])
            except (InvalidVersionTransition, CatalogDecisionRefused, ValueError) as exc:
                self.message_user(request, f"Skipped: {exc}", messages.WARNING)
        return None


@admin.register(ProductVersion)
class ProductVersionAdmin(CatalogVersionAdmin):
    list_display = ("product", "number", "status", "changed_fields", "decided_by", "decided_by_rule", "created_at")
    search_fields = ("product__sku", "product__name")


@admin.register(PriceVersion)
class PriceVersionAdmin(CatalogVersionAdmin):
    list_display = ("price", "number", "status", "unit_amount", "changed_fields", "effective_from", "decided_by",
                    "created_at")
    list_filter = ("status", "price__currency")
    search_fields = ("price__source_id", "price__product__sku")


@admin.register(CatalogApprovalRule)
class CatalogApprovalRuleAdmin(admin.ModelAdmin):
    list_display = ("name", "applies_to", "kind", "fields", "percent", "is_active")
