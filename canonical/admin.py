import datetime as dt

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path
from django.utils import timezone

from canonical import policy_services
from canonical.models import (
    Amendment,
    AmendmentStep,
    CrossReference,
    Customer,
    CustomerAlias,
    CustomerConfirmation,
    Invoice,
    InvoiceLine,
    LegalEntity,
    Order,
    OrderLine,
    Payment,
    PostingDecision,
    PostingPolicyVersion,
    PostingRule,
    Price,
    Product,
    ReconciliationRun,
    Region,
    Subscription,
    SubscriptionItem,
    SystemOfRecord,
    TaxMapping,
)


@admin.register(LegalEntity)
class LegalEntityAdmin(admin.ModelAdmin):
    list_display = ("code", "name", "currency", "country")


@admin.register(Customer)
class CustomerAdmin(admin.ModelAdmin):
    list_display = ("id", "display_name", "status", "country", "domain", "parent", "version", "updated_at")
    list_filter = ("status", "country")
    search_fields = ("display_name", "email", "domain")
    readonly_fields = ("name_key", "domain_key", "tax_key", "version", "transaction_id", "merged_into")


@admin.register(SystemOfRecord)
class SystemOfRecordAdmin(admin.ModelAdmin):
    """Which system owns which field group: edit an owner here, no deploy needed."""

    list_display = ("entity", "field_group", "owner_role", "note")
    list_editable = ("owner_role",)
    list_filter = ("entity", "owner_role")


@admin.register(CustomerAlias)
class CustomerAliasAdmin(admin.ModelAdmin):
    list_display = ("system", "external_id", "customer", "merged_from", "created_at")
    search_fields = ("external_id",)


@admin.register(CustomerConfirmation)
class CustomerConfirmationAdmin(admin.ModelAdmin):
    list_display = ("customer", "version", "references", "confirmed_at", "transaction_id")
    readonly_fields = ("customer", "version", "references", "confirmed_at", "transaction_id")


class InvoiceLineInline(admin.TabularInline):
    model = InvoiceLine
    extra = 0


class PaymentInline(admin.TabularInline):
    model = Payment
    extra = 0


@admin.register(Invoice)
class InvoiceAdmin(admin.ModelAdmin):
    list_display = ("source_id", "number", "customer", "legal_entity", "currency", "total", "status", "issued_on")
    list_filter = ("status", "currency", "legal_entity")
    search_fields = ("source_id", "number", "customer__display_name")
    inlines = [InvoiceLineInline, PaymentInline]
    readonly_fields = ("source_system", "source_id", "version", "transaction_id")


@admin.register(CrossReference)
class CrossReferenceAdmin(admin.ModelAdmin):
    list_display = ("object_type", "canonical_id", "system", "external_id", "external_number", "created_at")
    list_filter = ("system", "object_type")
    search_fields = ("external_id", "external_number")


admin.site.register(Product)
admin.site.register(Price)


# ---------------------------------------------------------------- posting policies


@admin.register(Region)
class RegionAdmin(admin.ModelAdmin):
    list_display = ("code", "name", "countries")


class _FrozenWhenApproved:
    """Inline rows of an approved version are read-only: it is frozen."""

    def _editable(self, obj) -> bool:
        return obj is None or obj.status == PostingPolicyVersion.Status.DRAFT

    def has_add_permission(self, request, obj=None):
        return self._editable(obj) and super().has_add_permission(request, obj)

    def has_change_permission(self, request, obj=None):
        return self._editable(obj) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        return self._editable(obj) and super().has_delete_permission(request, obj)


class PostingRuleInline(_FrozenWhenApproved, admin.TabularInline):
    model = PostingRule
    extra = 0
    fields = ("priority", "name", "countries", "region", "tax_status", "product_line", "currency",
              "legal_entity", "revenue_account", "cost_center", "currency_treatment")


class TaxMappingInline(_FrozenWhenApproved, admin.TabularInline):
    model = TaxMapping
    extra = 0
    fields = ("jurisdiction", "rate", "tax_status", "tax_code")


@admin.register(PostingPolicyVersion)
class PostingPolicyVersionAdmin(admin.ModelAdmin):
    """Edit a draft, dry-run it against the last real documents, approve it (finance).
    An approved version is frozen; "new draft from" copies it for the next change."""

    list_display = ("number", "status", "effective_from", "note", "approved_by", "approved_at")
    list_filter = ("status",)
    inlines = (PostingRuleInline, TaxMappingInline)
    readonly_fields = ("number", "status", "effective_from", "approved_by", "approved_at", "created_at")
    actions = ("new_draft_from",)
    DRY_RUN_SIZE = 20

    def has_change_permission(self, request, obj=None):
        if obj is not None and obj.status != PostingPolicyVersion.Status.DRAFT:
            return False
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        if obj is not None and obj.status != PostingPolicyVersion.Status.DRAFT:
            return False
        return super().has_delete_permission(request, obj)

    def save_model(self, request, obj, form, change):
        if change:
            # Serialises with approval (same row lock): an approval that won the race
            # makes this edit fail instead of changing a frozen version.
            policy_services.policy_version_edit_lock(obj)
        else:
            from django.db.models import Max

            obj.number = (PostingPolicyVersion.objects.aggregate(n=Max("number"))["n"] or 0) + 1
        super().save_model(request, obj, form, change)

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except policy_services.PolicyNotEditable as exc:
            self.message_user(request, f"Not saved: {exc}", level=messages.ERROR)
            return redirect(request.path)

    @admin.action(description="New draft from the selected version")
    def new_draft_from(self, request, queryset):
        for version in queryset:
            draft = policy_services.policy_version_draft(base=version, note=f"from v{version.number}")
            self.message_user(request, f"Draft v{draft.number} created from v{version.number}.")

    def get_urls(self):
        return [
            path("<int:pk>/dry-run/", self.admin_site.admin_view(self.dry_run_view), name="canonical_policy_dry_run"),
            path("<int:pk>/approve/", self.admin_site.admin_view(self.approve_view), name="canonical_policy_approve"),
            *super().get_urls(),
        ]

    def dry_run_view(self, request, pk):
        if not self.has_view_permission(request):
            raise PermissionDenied
        version = get_object_or_404(PostingPolicyVersion, pk=pk)
        limit = int(request.GET.get("n", self.DRY_RUN_SIZE))
        rows = policy_services.policy_dry_run(version, limit=limit)
        context = {
            **self.admin_site.each_context(request), "version": version, "rows": rows, "limit": limit,
            "changed": sum(1 for row in rows if row.changed),
            "current": policy_services.policy_version_in_effect(timezone.localdate()),
            "problems": policy_services.policy_problems(version),
            "can_approve": request.user.has_perm(policy_services.APPROVE_PERMISSION),
            "today": timezone.localdate(), "title": f"Dry run of {version}",
        }
        return TemplateResponse(request, "admin/canonical/postingpolicyversion/dry_run.html", context)

    def approve_view(self, request, pk):
        if request.method != "POST":
            return redirect("../dry-run/")
        version = get_object_or_404(PostingPolicyVersion, pk=pk)
        try:
            effective_from = dt.date.fromisoformat(request.POST.get("effective_from", ""))
            policy_services.policy_version_approve(version, user=request.user, effective_from=effective_from)
        except PermissionError as exc:
            raise PermissionDenied(str(exc)) from exc
        except (ValueError, policy_services.PolicyInvalid, policy_services.PolicyNotEditable) as exc:
            self.message_user(request, f"Not approved: {exc}", level=messages.ERROR)
            return redirect("../dry-run/")
        self.message_user(request, f"{version} approved, effective from {effective_from}.")
        return redirect("../change/")


@admin.register(PostingDecision)
class PostingDecisionAdmin(admin.ModelAdmin):
    list_display = ("invoice", "policy_version", "legal_entity", "currency_treatment", "company_currency",
                    "company_total", "created_at")
    list_filter = ("policy_version", "legal_entity")
    readonly_fields = [f.name for f in PostingDecision._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(ReconciliationRun)
class ReconciliationRunAdmin(admin.ModelAdmin):
    list_display = ("label", "differences", "created_at")
    readonly_fields = ("label", "rows", "differences", "table", "created_at")

    def has_add_permission(self, request):
        return False


class MirrorAdmin(admin.ModelAdmin):
    """Orders, subscriptions and amendments mirror the CRM and billing: they change
    through their workflows (a CRM amendment, a billing webhook, a replay), never by
    hand here, so the admin shows them read-only."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class MirrorInline(admin.TabularInline):
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class OrderLineInline(MirrorInline):
    model = OrderLine
    extra = 0
    fields = ("position", "source_line_id", "sku", "price_ref", "price_version", "quantity")
    readonly_fields = fields


@admin.register(Order)
class OrderAdmin(MirrorAdmin):
    list_display = ("id", "name", "source_system", "source_id", "customer", "status", "closed_on", "created_at")
    list_filter = ("status", "source_system")
    search_fields = ("source_id", "name")
    readonly_fields = ("transaction_id", "created_at", "updated_at")
    inlines = [OrderLineInline]


class SubscriptionItemInline(MirrorInline):
    model = SubscriptionItem
    extra = 0
    readonly_fields = ("price_version", "quantity", "billing_item_id")


class AmendmentInline(MirrorInline):
    model = Amendment
    extra = 0
    fields = ("sequence", "kind", "status", "reason", "invoice_ref", "source_id", "created_at")
    readonly_fields = fields
    show_change_link = True


@admin.register(Subscription)
class SubscriptionAdmin(MirrorAdmin):
    list_display = ("id", "customer", "status", "billing_id", "crm_id", "current_period_end",
                    "cancel_at_period_end", "updated_at")
    list_filter = ("status", "cancel_at_period_end")
    search_fields = ("billing_id", "crm_id")
    readonly_fields = ("transaction_id", "created_at", "updated_at")
    inlines = [SubscriptionItemInline, AmendmentInline]


class AmendmentStepInline(MirrorInline):
    model = AmendmentStep
    extra = 0
    fields = ("name", "state", "idempotency_key", "delivery_id", "started_at", "finished_at", "detail")
    readonly_fields = fields
    can_delete = False


@admin.register(Amendment)
class AmendmentAdmin(MirrorAdmin):
    """Each saga with its steps (state, timestamps, idempotency key)."""

    list_display = ("id", "subscription", "sequence", "kind", "status", "source_system", "source_id", "updated_at")
    list_filter = ("status", "kind")
    search_fields = ("source_id", "subscription__billing_id")
    readonly_fields = ("transaction_id", "created_at", "updated_at", "finished_at")
    inlines = [AmendmentStepInline]
